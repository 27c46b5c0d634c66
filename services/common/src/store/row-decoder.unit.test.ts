import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeEvent, encodeEvent, EVENT_TYPES, type AnyAttestEvent, type AttestEvent } from '../events';
import { listFixtures, sampleEvent } from '../events/fixtures';
import { readStoredEvent } from './row-decoder';
import { toStoredEvent, type StoredEvent } from './rows';
import { generateEvents } from './testing';

const hashOf = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest();

/** Binary fields as hex, so rows compare by content (the fast path gives views, the codec copies). */
function comparable(r: StoredEvent): Record<string, unknown> {
  return { ...r, prevHash: Buffer.from(r.prevHash).toString('hex'), eventHash: Buffer.from(r.eventHash).toString('hex'), eventBytes: Buffer.from(r.eventBytes).toString('hex') };
}

/** The codec path's row, or undefined when the codec refuses the bytes. */
function codecRow(bytes: Buffer): StoredEvent | undefined {
  try {
    return toStoredEvent(decodeEvent(bytes).event as AttestEvent, bytes, hashOf(bytes));
  } catch {
    return undefined;
  }
}

function expectSameAsCodec(bytes: Buffer): 'fast' | 'codec' {
  const fast = readStoredEvent(bytes, hashOf(bytes));
  if (fast === undefined) return 'codec';
  const ref = codecRow(bytes);
  expect(ref, 'the fast path read bytes the codec refuses').toBeDefined();
  expect(comparable(fast.row)).toEqual(comparable(ref as StoredEvent));
  // The payload decoded alone is the decoded event's payload.
  const payload = fast.payloadType.decode(bytes, fast.payloadOffset);
  expect(payload.offset).toBe(bytes.length);
  expect(payload.value).toEqual((decodeEvent(bytes).event as AnyAttestEvent).payload);
  return 'fast';
}

describe('readStoredEvent (one-pass row from the encoded bytes)', () => {
  it.each(listFixtures().map((f) => [`${f.type} v${f.version}`, f] as const))('gives the codec path’s row for the golden fixture %s, or leaves it to the codec', (_n, f) => {
    expectSameAsCodec(f.bytes);
  });

  it.each(EVENT_TYPES)('gives the codec path’s row for a sample %s', (type) => {
    const bytes = Buffer.from(encodeEvent(sampleEvent(type) as AnyAttestEvent));
    const path = expectSameAsCodec(bytes);
    // Only the types whose rows need the decoded payload (PAN sightings, checkpoint checks) take the codec.
    expect(path).toBe(type === 'data.masked' || type === 'integrity.checkpoint' ? 'codec' : 'fast');
  });

  it('gives the codec path’s row for every event of a generated mix (cards, approvals, checkpoints, findings)', () => {
    let fast = 0;
    for (const g of generateEvents({ count: 3000, seed: 5, cardRate: 0.3, gateways: 3 })) if (expectSameAsCodec(Buffer.from(g.bytes)) === 'fast') fast++;
    expect(fast).toBeGreaterThan(2500);
  });

  it('prints strings as JSON.stringify does: quotes, backslashes, control characters, non-ASCII, a lone surrogate', () => {
    const base = sampleEvent('gateway.request.received') as AttestEvent<'gateway.request.received'>;
    const tricky = ['', 'a"b\\c', '\u0000\u0001\b\t\n\u000b\f\r\u001f\u007f', 'é ü — 漢字 😀', '\u2028\u2029', 'x\ud800y', '</script>'];
    for (const s of tricky) {
      const event = { ...base, actor: { ...base.actor, subject: `user ${s}` }, payload: { ...base.payload, content: s, route: `/v1/${s}` } };
      const bytes = Buffer.from(encodeEvent(event as unknown as AnyAttestEvent));
      expect(expectSameAsCodec(bytes)).toBe('fast');
      const row = readStoredEvent(bytes, hashOf(bytes))?.row;
      expect(JSON.parse(row?.payload ?? 'null').content).toBe((decodeEvent(bytes).event as AttestEvent<'gateway.request.received'>).payload.content);
    }
  });

  it('leaves malformed bytes to the codec (truncated, trailing bytes, a bad union index), never a different row', () => {
    const bytes = Buffer.from(encodeEvent(sampleEvent('policy.decided') as AnyAttestEvent));
    for (let cut = 0; cut < bytes.length; cut += 7) expect(readStoredEvent(bytes.subarray(0, cut), hashOf(bytes))).toBeUndefined();
    expect(readStoredEvent(Buffer.concat([bytes, Buffer.from([0])]), hashOf(bytes))).toBeUndefined();
    for (let i = 10; i < bytes.length; i++) {
      const flipped = Buffer.from(bytes);
      flipped[i] = (flipped[i] as number) ^ 0xff;
      const fast = readStoredEvent(flipped, hashOf(flipped));
      if (fast !== undefined) expect(comparable(fast.row)).toEqual(comparable(codecRow(flipped) as StoredEvent));
    }
    expect(readStoredEvent(bytes, new Uint8Array(31))).toBeUndefined();
  });
});
