import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BATCH_HEADER_BYTES, checkBatchRecords, encodeBatchHeader, encodeRecord, findLaterBatch, readBatchHeader } from './frame';
import { positionsAfter, type ConsumedRecord } from './port';
import { measureRecord, nextCommitted, partitionForKey } from './record';
import { lastNonZeroByte } from './segment';

function batch(records: { key: string; value: Uint8Array; headers?: Record<string, string> }[], base: number, timeMs: number): Buffer {
  const frames = records.map((r, i) => encodeRecord(measureRecord(r, i, 1 << 20), base + i, timeMs));
  const bytes = frames.reduce((a, f) => a + f.length, 0);
  return Buffer.concat([encodeBatchHeader(base, frames.length, bytes), ...frames]);
}

function decodeAll(buf: Buffer) {
  const h = readBatchHeader(buf, 0);
  if (h.kind !== 'ok') return h;
  if (h.header.totalBytes !== buf.length) return { kind: 'invalid' as const, reason: 'length' };
  return checkBatchRecords(buf, 0, h.header, true);
}

describe('frame codec', () => {
  it('round-trips records, including offsets and times beyond 32 bits', () => {
    const base = 2 ** 40 + 5;
    const time = 1_767_225_600_123;
    const buf = batch(
      [
        { key: 'sess', value: new Uint8Array([1, 2, 3]), headers: { a: 'b', 'ü': '🔑' } },
        { key: '', value: new Uint8Array(0) },
      ],
      base,
      time,
    );
    const r = decodeAll(buf);
    expect(r.kind).toBe('ok');
    if (r.kind !== 'ok') return;
    expect(r.records.map((x) => ({ ...x, value: Array.from(x.value) }))).toEqual([
      { offset: base, appendTimeMs: time, key: 'sess', headers: { a: 'b', 'ü': '🔑' }, value: [1, 2, 3] },
      { offset: base + 1, appendTimeMs: time, key: '', headers: {}, value: [] },
    ]);
  });

  it('sizes a record exactly as encoded', () => {
    fc.assert(
      fc.property(fc.string(), fc.uint8Array({ maxLength: 300 }), fc.dictionary(fc.string(), fc.string(), { maxKeys: 4 }), (key, value, headers) => {
        const m = measureRecord({ key, value, headers }, 0, 1 << 20);
        expect(encodeRecord(m, 0, 0).length).toBe(m.frameBytes);
      }),
    );
  });

  it('detects every single-byte change anywhere in a batch', () => {
    const buf = batch(
      [
        { key: 'k1', value: new TextEncoder().encode('first value'), headers: { h: 'v' } },
        { key: 'k2', value: new TextEncoder().encode('second') },
      ],
      7,
      1234,
    );
    expect(decodeAll(buf).kind).toBe('ok');
    for (let i = 0; i < buf.length; i++) {
      for (const mask of [0x01, 0x80, 0xff]) {
        const bad = Buffer.from(buf);
        bad[i] = bad[i]! ^ mask;
        expect(decodeAll(bad).kind, `byte ${i} ^ ${mask}`).toBe('invalid');
      }
    }
  });

  it('reports an incomplete header, and the record that fails with its offset and byte position', () => {
    const buf = batch([{ key: 'a', value: new Uint8Array(10) }, { key: 'b', value: new Uint8Array(10) }], 100, 0);
    expect(readBatchHeader(buf.subarray(0, BATCH_HEADER_BYTES - 1), 0).kind).toBe('incomplete');
    const secondRecordAt = BATCH_HEADER_BYTES + (buf.length - BATCH_HEADER_BYTES) / 2;
    const bad = Buffer.from(buf);
    bad[buf.length - 1] = bad[buf.length - 1]! ^ 1;
    const h = readBatchHeader(bad, 0);
    expect(h.kind).toBe('ok');
    if (h.kind !== 'ok') return;
    expect(checkBatchRecords(bad, 0, h.header, false)).toEqual({ kind: 'invalid', atByte: secondRecordAt, offset: 101, reason: 'record checksum mismatch' });
  });

  it('finds a later batch only at or beyond the given offset', () => {
    const a = batch([{ key: 'a', value: new Uint8Array(3) }], 0, 0);
    const b = batch([{ key: 'b', value: new Uint8Array(3) }], 1, 0);
    const both = Buffer.concat([a, b]);
    expect(findLaterBatch(both, 0, 1)).toBe(a.length);
    expect(findLaterBatch(both, 0, 2)).toBe(-1);
    expect(findLaterBatch(both, a.length, 0)).toBe(-1);
  });
});

describe('record rules', () => {
  it('hashes keys to partitions with FNV-1a, pinned: stored logs depend on it', () => {
    const p = (k: string, n: number) => partitionForKey(Buffer.from(k, 'utf8'), n);
    expect([p('', 1000), p('a', 1000), p('session-1', 1000), p('session-2', 1000), p('sess-ü-🔑', 1000)]).toEqual([261, 220, 597, 740, 542]);
    expect(p('anything', 1)).toBe(0);
  });

  it('computes the positions after a set of records, per partition', () => {
    const r = (partition: number, offset: number) => ({ partition, offset }) as ConsumedRecord;
    expect(positionsAfter([r(1, 4), r(0, 2), r(1, 9), r(1, 5)])).toEqual([
      { partition: 0, nextOffset: 3 },
      { partition: 1, nextOffset: 10 },
    ]);
    expect(positionsAfter([])).toEqual([]);
  });

  it('commits forward within what was delivered, and everything delivered when no positions are given', () => {
    expect(nextCommitted('g', [1, 2], [5, 2], undefined)).toEqual([5, 2]);
    expect(nextCommitted('g', [1, 2], [5, 2], [{ partition: 0, nextOffset: 3 }])).toEqual([3, 2]);
    expect(() => nextCommitted('g', [1, 2], [5, 2], [{ partition: 1, nextOffset: 3 }])).toThrow(/only up to 2 was delivered/);
    expect(() => nextCommitted('g', [1, 2], [5, 2], [{ partition: 0, nextOffset: 0 }])).toThrow(/already committed 1/);
  });
});

describe('zero tail scan (recovery of preallocated segments)', () => {
  it('finds the last non-zero byte at or after a position, across its 64 KiB scan chunks', () => {
    const size = 3 * 64 * 1024 + 100;
    const buf = Buffer.alloc(size);
    expect(lastNonZeroByte(buf, 0)).toBe(-1);
    expect(lastNonZeroByte(buf, size)).toBe(-1);
    for (const at of [0, 1, 64 * 1024 - 1, 64 * 1024, 2 * 64 * 1024 + 7, size - 1]) {
      buf.fill(0);
      buf[at] = 1;
      expect(lastNonZeroByte(buf, 0)).toBe(at);
      expect(lastNonZeroByte(buf, at)).toBe(at);
      expect(lastNonZeroByte(buf, at + 1)).toBe(-1);
    }
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 4000 }), fc.integer({ min: 0, max: 4000 }), fc.array(fc.integer({ min: 0, max: 3999 }), { maxLength: 5 }), (len, from, marks) => {
        const b = Buffer.alloc(len);
        for (const m of marks) if (m < len) b[m] = 0xff;
        let want = -1;
        for (let i = len - 1; i >= from; i--) {
          if (b[i] !== 0) {
            want = i;
            break;
          }
        }
        expect(lastNonZeroByte(b, from)).toBe(want);
      }),
    );
  });
});
