import { hash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { leafHashInto, leafHashWords, nodeHashInto, nodeHashWords, wordsToBytes } from './sha256-small';

const native = (...parts: Uint8Array[]): Buffer => hash('sha256', Buffer.concat(parts), 'buffer');
const bytes32 = fc.uint8Array({ minLength: 32, maxLength: 32 });

describe('JavaScript SHA-256 for Merkle leaves and nodes', () => {
  it('Given any 32-byte hash, When hashed as a leaf, Then it equals node:crypto SHA-256(0x00 || hash)', () => {
    fc.assert(
      fc.property(bytes32, fc.nat(7), (h, pad) => {
        const src = new Uint8Array(pad + 32);
        src.set(h, pad);
        const out = new Uint8Array(40);
        leafHashInto(src, pad, out, 3);
        expect(Buffer.from(out.subarray(3, 35))).toEqual(native(Uint8Array.of(0), h));
      }),
      { numRuns: 500 },
    );
  });

  it('Given two 32-byte hashes, When hashed as a node, Then it equals node:crypto SHA-256(0x01 || l || r)', () => {
    fc.assert(
      fc.property(bytes32, bytes32, (l, r) => {
        const out = new Uint8Array(32);
        nodeHashInto(l, 0, r, 0, out, 0);
        expect(Buffer.from(out)).toEqual(native(Uint8Array.of(1), l, r));
      }),
      { numRuns: 500 },
    );
  });

  it('Given digests kept as words (the Merkle accumulator), When hashed as leaves and nodes, Then they equal node:crypto', () => {
    fc.assert(
      fc.property(bytes32, bytes32, fc.boolean(), (l, r, intoRight) => {
        const st = new Int32Array(24);
        leafHashWords(l, 0, st, 0);
        leafHashWords(r, 0, st, 8);
        const out = new Uint8Array(32);
        wordsToBytes(st, 0, out, 0);
        expect(Buffer.from(out)).toEqual(native(Uint8Array.of(0), l));
        const ll = native(Uint8Array.of(0), l);
        const rl = native(Uint8Array.of(0), r);
        const to = intoRight ? 8 : 0; // the result may replace either child
        nodeHashWords(st, 0, 8, to);
        wordsToBytes(st, to, out, 0);
        expect(Buffer.from(out)).toEqual(native(Uint8Array.of(1), ll, rl));
      }),
      { numRuns: 500 },
    );
  });

  it('Given the output aliases an input, When hashing, Then the result is still correct', () => {
    fc.assert(
      fc.property(bytes32, bytes32, (l, r) => {
        const expected = native(Uint8Array.of(1), l, r);
        const right = r.slice();
        nodeHashInto(l, 0, right, 0, right, 0);
        expect(Buffer.from(right)).toEqual(expected);
        const both = new Uint8Array(64);
        both.set(l, 0);
        both.set(r, 32);
        nodeHashInto(both, 0, both, 32, both, 0);
        expect(Buffer.from(both.subarray(0, 32))).toEqual(expected);
        const leaf = l.slice();
        leafHashInto(leaf, 0, leaf, 0);
        expect(Buffer.from(leaf)).toEqual(native(Uint8Array.of(0), l));
      }),
      { numRuns: 200 },
    );
  });
});
