/**
 * Binary layout of the embedded log's segment files (little-endian). A segment is a sequence of
 * batches; each flush cycle writes exactly one batch per partition, so after a crash at most the last
 * batch of a partition can be torn (see recovery in segment.ts).
 *
 * batch  = magic u32 'ATLB' | headerCrc u32 | version u8 | flags u8 | reserved u16
 *          | baseOffset u64 | recordCount u32 | recordsBytes u32 | record*
 * record = length u32 (bytes after this field) | crc u32 (CRC-32 of the bytes after this field)
 *          | offset u64 | appendTimeMs u64 | keyLen u16 | key | headerCount u16
 *          | (nameLen u16 | name | valueLen u16 | value)* | valueLen u32 | value
 *
 * CRC-32 is zlib's (IEEE polynomial, native in Node ≥ 20.15): it runs at ~3 GB/s here; CRC-32C
 * would need a JavaScript table loop ~10× slower for the same protection against torn and flipped bytes.
 */
import { crc32 } from 'node:zlib';
import type { MeasuredRecord } from './record';

export const BATCH_MAGIC = 0x424c5441; // bytes 'A' 'T' 'L' 'B'
export const FORMAT_VERSION = 1;
export const BATCH_HEADER_BYTES = 28;
const TWO_32 = 0x1_0000_0000;

function writeU64(buf: Buffer, pos: number, v: number): void {
  buf.writeUInt32LE(v % TWO_32, pos);
  buf.writeUInt32LE(Math.floor(v / TWO_32), pos + 4);
}

function readU64(buf: Buffer, pos: number): number {
  return buf.readUInt32LE(pos + 4) * TWO_32 + buf.readUInt32LE(pos);
}

/** Encodes one record frame, offset and time included, with its CRC. */
export function encodeRecord(m: MeasuredRecord, offset: number, appendTimeMs: number): Buffer {
  const buf = Buffer.allocUnsafe(m.frameBytes);
  buf.writeUInt32LE(m.frameBytes - 4, 0);
  writeU64(buf, 8, offset);
  writeU64(buf, 16, appendTimeMs);
  let pos = 24;
  buf.writeUInt16LE(m.key.length, pos);
  pos += 2;
  pos += m.key.copy(buf, pos);
  buf.writeUInt16LE(m.headers.length, pos);
  pos += 2;
  for (const [n, v] of m.headers) {
    buf.writeUInt16LE(n.length, pos);
    pos += 2;
    pos += n.copy(buf, pos);
    buf.writeUInt16LE(v.length, pos);
    pos += 2;
    pos += v.copy(buf, pos);
  }
  const value = m.record.value;
  buf.writeUInt32LE(value.length, pos);
  pos += 4;
  buf.set(value, pos);
  buf.writeUInt32LE(crc32(buf.subarray(8)), 4);
  return buf;
}

export function encodeBatchHeader(baseOffset: number, recordCount: number, recordsBytes: number): Buffer {
  const buf = Buffer.alloc(BATCH_HEADER_BYTES);
  buf.writeUInt32LE(BATCH_MAGIC, 0);
  buf.writeUInt8(FORMAT_VERSION, 8);
  writeU64(buf, 12, baseOffset);
  buf.writeUInt32LE(recordCount, 20);
  buf.writeUInt32LE(recordsBytes, 24);
  buf.writeUInt32LE(crc32(buf.subarray(8, BATCH_HEADER_BYTES)), 4);
  return buf;
}

export interface BatchHeader {
  readonly baseOffset: number;
  readonly recordCount: number;
  readonly recordsBytes: number;
  /** Header plus records. */
  readonly totalBytes: number;
}

export type HeaderRead =
  | { readonly kind: 'ok'; readonly header: BatchHeader }
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'invalid'; readonly reason: string };

export function readBatchHeader(buf: Buffer, pos: number): HeaderRead {
  if (buf.length - pos < BATCH_HEADER_BYTES) return { kind: 'incomplete' };
  if (buf.readUInt32LE(pos) !== BATCH_MAGIC) return { kind: 'invalid', reason: 'no batch magic' };
  if (buf.readUInt32LE(pos + 4) !== crc32(buf.subarray(pos + 8, pos + BATCH_HEADER_BYTES))) {
    return { kind: 'invalid', reason: 'batch header checksum mismatch' };
  }
  const version = buf.readUInt8(pos + 8);
  if (version !== FORMAT_VERSION) return { kind: 'invalid', reason: `unknown batch format version ${version}` };
  const recordsBytes = buf.readUInt32LE(pos + 24);
  return {
    kind: 'ok',
    header: {
      baseOffset: readU64(buf, pos + 12),
      recordCount: buf.readUInt32LE(pos + 20),
      recordsBytes,
      totalBytes: BATCH_HEADER_BYTES + recordsBytes,
    },
  };
}

export interface DecodedRecord {
  readonly offset: number;
  readonly appendTimeMs: number;
  readonly key: string;
  readonly headers: Record<string, string>;
  readonly value: Uint8Array;
}

/** Where and why a complete batch failed validation. */
export interface BatchDefect {
  /** Byte position (in the buffer) of the bad record frame, or of the batch for batch-level defects. */
  readonly atByte: number;
  /** The offset the bad record should have had. */
  readonly offset: number;
  readonly reason: string;
}

/**
 * Validates every record of a batch whose bytes are all in `buf`. With `decode`, returns the records;
 * otherwise only checks them. Values are views into `buf` (no copy).
 */
export function checkBatchRecords(
  buf: Buffer,
  pos: number,
  header: BatchHeader,
  decode: boolean,
): { readonly kind: 'ok'; readonly records: DecodedRecord[] } | ({ readonly kind: 'invalid' } & BatchDefect) {
  const records: DecodedRecord[] = [];
  const end = pos + header.totalBytes;
  let p = pos + BATCH_HEADER_BYTES;
  for (let i = 0; i < header.recordCount; i++) {
    const expected = header.baseOffset + i;
    const bad = (reason: string) => ({ kind: 'invalid' as const, atByte: p, offset: expected, reason });
    if (end - p < 8) return bad('record frame runs past the batch');
    const len = buf.readUInt32LE(p);
    const frameEnd = p + 4 + len;
    if (len < 28 || frameEnd > end) return bad('record length runs past the batch');
    if (buf.readUInt32LE(p + 4) !== crc32(buf.subarray(p + 8, frameEnd))) return bad('record checksum mismatch');
    const offset = readU64(buf, p + 8);
    if (offset !== expected) return bad(`record carries offset ${offset}`);
    // The checksum matched, so inner lengths were written by us; still bound them, never trust a length blindly.
    let q = p + 24;
    const keyLen = buf.readUInt16LE(q);
    q += 2;
    const keyStart = q;
    q += keyLen;
    if (q + 2 > frameEnd) return bad('key runs past the record');
    const headerCount = buf.readUInt16LE(q);
    q += 2;
    const headers: Record<string, string> = {};
    for (let h = 0; h < headerCount; h++) {
      if (q + 2 > frameEnd) return bad('header runs past the record');
      const nl = buf.readUInt16LE(q);
      const ns = q + 2;
      q = ns + nl;
      if (q + 2 > frameEnd) return bad('header runs past the record');
      const vl = buf.readUInt16LE(q);
      const vs = q + 2;
      q = vs + vl;
      if (q > frameEnd) return bad('header runs past the record');
      if (decode) headers[buf.toString('utf8', ns, ns + nl)] = buf.toString('utf8', vs, vs + vl);
    }
    if (q + 4 > frameEnd) return bad('value length runs past the record');
    const valueLen = buf.readUInt32LE(q);
    q += 4;
    if (q + valueLen !== frameEnd) return bad('value length disagrees with the record length');
    if (decode) {
      records.push({
        offset,
        appendTimeMs: readU64(buf, p + 16),
        key: buf.toString('utf8', keyStart, keyStart + keyLen),
        headers,
        value: new Uint8Array(buf.buffer, buf.byteOffset + q, valueLen),
      });
    }
    p = frameEnd;
  }
  if (p !== end) {
    return { kind: 'invalid', atByte: p, offset: header.baseOffset + header.recordCount, reason: 'bytes after the last record of the batch' };
  }
  return { kind: 'ok', records };
}

/** Finds the first byte position > from where a header-valid batch with baseOffset ≥ minOffset starts. */
export function findLaterBatch(buf: Buffer, from: number, minOffset: number): number {
  const magic = Buffer.alloc(4);
  magic.writeUInt32LE(BATCH_MAGIC, 0);
  let i = buf.indexOf(magic, from + 1);
  while (i !== -1) {
    const h = readBatchHeader(buf, i);
    if (h.kind === 'ok' && h.header.baseOffset >= minOffset) return i;
    i = buf.indexOf(magic, i + 1);
  }
  return -1;
}
