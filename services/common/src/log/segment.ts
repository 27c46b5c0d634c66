import { open, readFile, type FileHandle } from 'node:fs/promises';
import { LogError } from './errors';
import { checkBatchRecords, findLaterBatch, readBatchHeader, type BatchHeader, type DecodedRecord } from './frame';

/** One segment file of a partition. `durableBytes` grows while it is the active segment. */
export interface Segment {
  readonly baseOffset: number;
  readonly path: string;
  /**
   * The logical end of the durable batches. Equal to the file size for a sealed segment (a roll
   * truncates it); smaller than the file size for a preallocated active segment.
   */
  durableBytes: number;
  /** Time of the last write (log clock), for retention. */
  lastWriteMs: number;
}

export function segmentFileName(baseOffset: number): string {
  return `${String(baseOffset).padStart(20, '0')}.seg`;
}

export const SEGMENT_FILE = /^(\d{20})\.seg$/;

export function corruptError(path: string, partition: number, atByte: number, offset: number, reason: string): LogError {
  return new LogError(
    'log_corrupt',
    `event log segment ${path} (partition ${partition}) is corrupt at byte ${atByte}, record offset ${offset}: ${reason}`,
    {
      where: `${path}:${atByte}`,
      fix: 'Restore the segment from backup; the log never skips corrupt records on its own.',
    },
  );
}

export interface RecoveredSegment {
  readonly nextOffset: number;
  /** The logical end: where the last valid batch ends and the next batch goes. */
  readonly validBytes: number;
  readonly fileBytes: number;
  /** Set when torn data was found after the last valid batch: the reason the first bad batch failed. */
  readonly tornReason?: string;
  /**
   * Bytes of torn data: from validBytes through the last non-zero byte of the file. Zero bytes after
   * it are not counted; they cannot be told apart from preallocated space.
   */
  readonly tornBytes?: number;
}

const ZERO_SCAN = Buffer.alloc(64 * 1024);

/** Position of the last non-zero byte of buf at or after `from`, or -1 when buf[from..] is all zero. */
export function lastNonZeroByte(buf: Buffer, from: number): number {
  let end = buf.length;
  while (end > from) {
    const start = Math.max(from, end - ZERO_SCAN.length);
    // Buffer.equals is a native memcmp: a 64 MiB zero tail scans in a few milliseconds.
    if (!buf.subarray(start, end).equals(ZERO_SCAN.subarray(0, end - start))) {
      for (let i = end - 1; i >= start; i--) if (buf[i] !== 0) return i;
    }
    end = start;
  }
  return -1;
}

/**
 * Validates the last segment of a partition and finds its logical end: where its last valid batch
 * ends. Each flush cycle writes one batch per partition and starts only after the previous cycle's
 * write was durable, so at a crash only the final batch can be incomplete or garbled.
 *
 * - The rest of the file all zero: a clean end. Preallocated segments are zero-filled to their full
 *   size, so this is their normal state; nothing is reported and nothing is cut.
 * - A damaged batch followed by a valid later batch: real corruption (acknowledged data), fails loudly.
 * - Otherwise the final batch is torn: never acknowledged, reported (tornReason, tornBytes), and cut
 *   off by the caller.
 */
export async function recoverSegment(path: string, baseOffset: number, partition: number): Promise<RecoveredSegment> {
  const buf = await readFile(path);
  let pos = 0;
  let expected = baseOffset;
  while (pos < buf.length) {
    const h = readBatchHeader(buf, pos);
    let defect: { atByte: number; offset: number; reason: string; searchFrom: number };
    if (h.kind === 'incomplete') {
      defect = { atByte: pos, offset: expected, reason: 'batch header cut short', searchFrom: pos };
    } else if (h.kind === 'invalid') {
      defect = { atByte: pos, offset: expected, reason: h.reason, searchFrom: pos };
    } else if (h.header.baseOffset !== expected) {
      defect = { atByte: pos, offset: expected, reason: `batch starts at offset ${h.header.baseOffset}`, searchFrom: pos };
    } else if (pos + h.header.totalBytes > buf.length) {
      defect = { atByte: pos, offset: expected, reason: 'batch cut short', searchFrom: pos };
    } else {
      const r = checkBatchRecords(buf, pos, h.header, false);
      if (r.kind === 'ok') {
        pos += h.header.totalBytes;
        expected += h.header.recordCount;
        continue;
      }
      // The header is intact, so anything inside its extent is this batch's payload, not a later batch.
      defect = { atByte: r.atByte, offset: r.offset, reason: r.reason, searchFrom: pos + h.header.totalBytes - 1 };
    }
    const lastData = lastNonZeroByte(buf, pos);
    if (lastData === -1) break;
    const later = findLaterBatch(buf, defect.searchFrom, expected);
    if (later !== -1) {
      throw corruptError(path, partition, defect.atByte, defect.offset, `${defect.reason}; a valid batch follows at byte ${later}, so this is not a torn tail`);
    }
    return { nextOffset: expected, validBytes: pos, fileBytes: buf.length, tornReason: defect.reason, tornBytes: lastData + 1 - pos };
  }
  return { nextOffset: expected, validBytes: pos, fileBytes: buf.length };
}

const READ_CHUNK_BYTES = 1024 * 1024;

/**
 * Sequential reader over one partition's segments for a consumer. Reads only the durable region
 * (`durableBytes`, the logical end; never the file size, which for a preallocated active segment
 * includes its zero-filled space), verifies every batch and record checksum, and never skips: a
 * defect is a log_corrupt error naming the segment file, byte position and offset.
 */
export class PartitionReader {
  /** Offset of the next record this reader will return. */
  private next: number;
  private seg: Segment | undefined;
  private fh: FileHandle | undefined;
  private filePos = 0;
  /** Offset of the batch expected at filePos. */
  private scanOffset = 0;

  constructor(
    private readonly partition: number,
    private readonly segments: () => readonly Segment[],
    startOffset: number,
  ) {
    this.next = startOffset;
  }

  /** Returns the next records (one read's worth), or [] when none are durable yet. */
  async read(): Promise<DecodedRecord[]> {
    let want = READ_CHUNK_BYTES;
    for (;;) {
      const segs = this.segments();
      const seg = this.seg;
      if (seg === undefined || !segs.includes(seg)) {
        await this.locate(segs);
        continue;
      }
      const limit = seg.durableBytes;
      if (this.filePos >= limit) {
        const following = segs[segs.indexOf(seg) + 1];
        if (following === undefined) return [];
        if (following.baseOffset !== this.scanOffset) {
          throw corruptError(seg.path, this.partition, this.filePos, this.scanOffset, `segment ends before offset ${this.scanOffset} but the next segment starts at ${following.baseOffset}`);
        }
        await this.open(following);
        continue;
      }
      const len = Math.min(limit - this.filePos, want);
      const buf = Buffer.allocUnsafe(len);
      await this.readFully(buf, seg);
      const out: DecodedRecord[] = [];
      let p = 0;
      while (p < buf.length) {
        const at = this.filePos + p;
        const h = readBatchHeader(buf, p);
        if (h.kind === 'incomplete') {
          if (at + 28 > limit) throw corruptError(seg.path, this.partition, at, this.scanOffset, 'durable region ends inside a batch header');
          break;
        }
        if (h.kind === 'invalid') throw corruptError(seg.path, this.partition, at, this.scanOffset, h.reason);
        const header: BatchHeader = h.header;
        if (header.baseOffset !== this.scanOffset) {
          throw corruptError(seg.path, this.partition, at, this.scanOffset, `batch starts at offset ${header.baseOffset}`);
        }
        if (p + header.totalBytes > buf.length) {
          if (at + header.totalBytes > limit) throw corruptError(seg.path, this.partition, at, this.scanOffset, 'batch runs past the durable end of the segment');
          if (p === 0) want = header.totalBytes;
          break;
        }
        const r = checkBatchRecords(buf, p, header, true);
        if (r.kind === 'invalid') throw corruptError(seg.path, this.partition, this.filePos + r.atByte, r.offset, r.reason);
        for (const rec of r.records) if (rec.offset >= this.next) out.push(rec);
        p += header.totalBytes;
        this.scanOffset += header.recordCount;
      }
      this.filePos += p;
      if (p > 0) want = READ_CHUNK_BYTES;
      const last = out[out.length - 1];
      if (last !== undefined) {
        this.next = last.offset + 1;
        return out;
      }
    }
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    this.seg = undefined;
    if (fh !== undefined) await fh.close();
  }

  private async locate(segs: readonly Segment[]): Promise<void> {
    let found: Segment | undefined;
    for (const s of segs) if (s.baseOffset <= this.next) found = s;
    const first = segs[0];
    if (found === undefined || first === undefined) {
      throw new LogError('log_offset_out_of_range', `partition ${this.partition}: offset ${this.next} is before the oldest retained offset ${first?.baseOffset ?? 0}`);
    }
    await this.open(found);
  }

  private async open(seg: Segment): Promise<void> {
    await this.close();
    this.fh = await open(seg.path, 'r');
    this.seg = seg;
    this.filePos = 0;
    this.scanOffset = seg.baseOffset;
  }

  private async readFully(buf: Buffer, seg: Segment): Promise<void> {
    const fh = this.fh;
    if (fh === undefined) throw new Error('reader has no open segment');
    let done = 0;
    while (done < buf.length) {
      const { bytesRead } = await fh.read(buf, done, buf.length - done, this.filePos + done);
      if (bytesRead === 0) {
        throw corruptError(seg.path, this.partition, this.filePos + done, this.scanOffset, 'segment file is shorter than its durable size');
      }
      done += bytesRead;
    }
  }
}
