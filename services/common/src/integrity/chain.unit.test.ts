import { describe, expect, it } from 'vitest';
import { advance, eventHash, genesis, nextMetadata } from './chain';
import { ZERO_HASH, sha256 } from './hash';

describe('hash chain', () => {
  it('Given a new producer with no checkpoint, When it emits, Then sequence 1 links to the zero hash', () => {
    const s = genesis('gw-1', 'e1');
    expect(nextMetadata(s)).toEqual({ sequence: 1, prevHash: ZERO_HASH });
  });

  it('Given a new epoch after a checkpoint, When it emits, Then sequence 1 links to that checkpoint hash', () => {
    const link = sha256(new TextEncoder().encode('checkpoint'));
    expect(nextMetadata(genesis('gw-1', 'e2', link))).toEqual({ sequence: 1, prevHash: link });
  });

  it('Given events appended in turn, When advancing, Then each prevHash is the SHA-256 of the previous bytes', () => {
    let s = genesis('gw-1', 'e1');
    const seen: Array<{ sequence: number; prevHash: Uint8Array; hash: Uint8Array }> = [];
    for (let i = 0; i < 5; i++) {
      const meta = nextMetadata(s);
      const bytes = new TextEncoder().encode(`event ${meta.sequence}`);
      const r = advance(s, bytes);
      seen.push({ ...meta, hash: r.hash });
      expect(r.hash).toEqual(eventHash(bytes));
      s = r.state;
    }
    expect(seen.map((e) => e.sequence)).toEqual([1, 2, 3, 4, 5]);
    for (let i = 1; i < 5; i++) expect(seen[i]!.prevHash).toEqual(seen[i - 1]!.hash);
    expect(s.sequence).toBe(5);
    expect(s.lastHash).toEqual(seen[4]!.hash);
  });

  it('Given a state, When advancing, Then the input state is not modified (pure)', () => {
    const s = genesis('gw-1', 'e1');
    advance(s, new Uint8Array([1]));
    expect(s.sequence).toBe(0);
    expect(s.lastHash).toEqual(ZERO_HASH);
  });

  it('Given a link that is not 32 bytes, When starting an epoch, Then it is refused', () => {
    expect(() => genesis('gw-1', 'e1', new Uint8Array(31))).toThrow(RangeError);
  });
});
