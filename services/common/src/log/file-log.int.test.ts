import { appendFile, open, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LogError } from './errors';
import { FileEventLog, SPARE_FILE, SPARE_TMP_FILE, type FileLogOptions } from './file-log';
import { encodeBatchHeader, encodeRecord, readBatchHeader } from './frame';
import { zeroFill } from './fs-util';
import { measureRecord } from './record';
import { eventLogConformance } from './log-conformance';
import { positionsAfter, type EventLog, type LogConsumer } from './port';
import { freshDir } from './test-dirs';

eventLogConformance('embedded file log', async () => {
  const { dir, remove } = await freshDir('conf');
  return { open: (opts) => FileEventLog.open({ dir, ...opts }), dispose: remove };
});

const enc = new TextEncoder();
const dec = new TextDecoder();
const rec = (key: string, value: string) => ({ key, value: enc.encode(value) });

/** Writes bytes at a position inside a file, as a torn positional write leaves them. */
async function writeAt(path: string, position: number, bytes: Buffer): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.write(bytes, 0, bytes.length, position);
  } finally {
    await fh.close();
  }
}

async function drain(c: LogConsumer, count: number) {
  const out = [];
  while (out.length < count) {
    const got = await c.poll(1000, 2000);
    if (got.length === 0) throw new Error(`expected ${count} records, got ${out.length}`);
    out.push(...got);
  }
  return out;
}

describe('FileEventLog', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function newDir(): Promise<string> {
    const { dir, remove } = await freshDir('file');
    cleanups.push(remove);
    return dir;
  }

  async function openLog(opts: FileLogOptions): Promise<FileEventLog> {
    const log = await FileEventLog.open(opts);
    cleanups.push(() => log.close());
    return log;
  }

  async function reopen(log: EventLog, opts: FileLogOptions): Promise<FileEventLog> {
    await log.close();
    return openLog(opts);
  }

  it('lays out log.json, one directory per partition, 20-digit segment names and group files', async () => {
    const dir = await newDir();
    const log = await openLog({ dir, partitions: 2 });
    await log.append([rec('a', '1')]);
    const c = await log.consumer('writer');
    await drain(c, 1);
    await c.commit();
    expect(JSON.parse(await readFile(join(dir, 'log.json'), 'utf8'))).toEqual({ format: 'attest-event-log', formatVersion: 1, partitions: 2 });
    expect((await readdir(dir)).sort()).toEqual(['LOCK', 'groups', 'log.json', 'p0', 'p1']);
    expect(await readdir(join(dir, 'p0'))).toEqual(['00000000000000000000.seg']);
    const group = JSON.parse(await readFile(join(dir, 'groups', 'writer.json'), 'utf8'));
    expect(group).toMatchObject({ format: 'attest-event-log-group', group: 'writer' });
    expect(group.offsets.reduce((a: number, b: number) => a + b, 0)).toBe(1);
  });

  it('batches appends issued in one tick into one write and one fdatasync per partition', async () => {
    const dir = await newDir();
    const log = await openLog({ dir, partitions: 1 });
    await Promise.all(Array.from({ length: 256 }, (_, i) => log.append([rec(`s${i}`, 'x'.repeat(800))])));
    expect(log.stats.records).toBe(256);
    expect(log.stats.flushCycles).toBe(1);
    expect(log.stats.syncs).toBe(1);
  });

  it('keeps gathering while a flush is in flight: far fewer syncs than appends under concurrency', async () => {
    const dir = await newDir();
    const log = await openLog({ dir, partitions: 1 });
    let next = 0;
    const worker = async () => {
      while (next < 2000) await log.append([rec(`s${next}`, `${next++}`)]);
    };
    await Promise.all(Array.from({ length: 32 }, worker));
    expect(log.stats.records).toBeGreaterThanOrEqual(2000);
    expect(log.stats.syncs).toBeLessThan(log.stats.records / 4);
  });

  it('writes a lone append on the calling thread, a cycle of several on the pool, and backs off after a slow inline write', async () => {
    const dir = await newDir();
    const log = await openLog({ dir, partitions: 1 });
    await log.append([rec('a', '1')]);
    await log.append([rec('a', '2')]);
    expect(log.stats.inlineWrites).toBe(2);
    await Promise.all([log.append([rec('a', '3')]), log.append([rec('b', '4')])]);
    expect(log.stats).toMatchObject({ inlineWrites: 2, flushCycles: 3, records: 4 });
    // A lone append larger than 64 KiB goes to the pool too.
    await log.append([rec('a', 'x'.repeat(70_000))]);
    expect(log.stats.inlineWrites).toBe(2);
    const c = await log.consumer('r');
    expect((await drain(c, 5)).slice(0, 4).map((r) => new TextDecoder().decode(r.value))).toEqual(['1', '2', '3', '4']);

    // Every inline write is slow against a 0 ms bound: the next lone append goes to the pool.
    const slow = await reopen(log, { dir, inlineSlowMs: 0 });
    await slow.append([rec('a', '5')]);
    await slow.append([rec('a', '6')]);
    expect(slow.stats.inlineWrites).toBe(1);
    const off = await reopen(slow, { dir, inlineWrites: false });
    await off.append([rec('a', '7')]);
    expect(off.stats.inlineWrites).toBe(0);
    expect(await off.endOffsets()).toEqual([8]);
  });

  it("does not fdatasync in durability 'none' (benchmarks only)", async () => {
    const dir = await newDir();
    const log = await openLog({ dir, durability: 'none' });
    await log.append([rec('a', '1')]);
    expect(log.stats.syncs).toBe(0);
    expect(log.durability).toBe('none');
  });

  it('rolls segments by size, names them by base offset and reads across them', async () => {
    const dir = await newDir();
    const log = await openLog({ dir, partitions: 1, segmentBytes: 4096 });
    for (let i = 0; i < 40; i++) await log.append([rec('k', `${i}:${'y'.repeat(300)}`)]);
    const files = log.segmentFiles(0);
    expect(files.length).toBeGreaterThan(3);
    for (const f of files.slice(0, -1)) expect((await stat(f)).size).toBeLessThanOrEqual(4096);
    const c = await log.consumer('across');
    const got = await drain(c, 40);
    expect(got.map((r) => Number(dec.decode(r.value).split(':')[0]))).toEqual(Array.from({ length: 40 }, (_, i) => i));
    // Each file is named after the offset of its first record.
    const bases = files.map((f) => Number(f.slice(-24, -4)));
    expect(bases[0]).toBe(0);
    for (const b of bases.slice(1)) expect(got.some((r) => r.offset === b)).toBe(true);
    const log2 = await reopen(log, { dir, segmentBytes: 4096 });
    const c2 = await log2.consumer('across2');
    expect((await drain(c2, 40)).length).toBe(40);
    expect((await log2.append([rec('k', 'after')]))[0]!.offset).toBe(40);
  });

  describe('retention', () => {
    async function fill(now: { t: number }, opts: Partial<FileLogOptions> = {}) {
      const dir = await newDir();
      const log = await openLog({ dir, partitions: 1, segmentBytes: 2048, now: () => now.t, retention: { minAgeMs: 60_000, ...opts.retention }, ...opts });
      for (let i = 0; i < 30; i++) await log.append([rec('k', `${i}:${'z'.repeat(200)}`)]);
      return { dir, log };
    }

    // Commits also start a retention pass in the background; awaiting enforceRetention() waits for it.
    it('deletes a segment only after every group committed past it and it is older than the minimum', async () => {
      const now = { t: 1_000_000 };
      const { log } = await fill(now);
      const segments = log.segmentFiles(0);
      expect(segments.length).toBeGreaterThan(3);
      const a = await log.consumer('a');
      const b = await log.consumer('b');
      const gotA = await drain(a, 30);
      await drain(b, 30);
      await a.commit();
      now.t += 120_000;
      // Group b has committed nothing: nothing may go.
      await log.enforceRetention();
      expect(log.segmentFiles(0)).toEqual(segments);
      await b.commit(positionsAfter(gotA.filter((r) => r.offset < Number(segments[2]!.slice(-24, -4)))));
      await log.enforceRetention();
      expect(log.segmentFiles(0)).toEqual(segments.slice(2));
      for (const f of segments.slice(0, 2)) await expect(stat(f)).rejects.toMatchObject({ code: 'ENOENT' });
      for (const f of segments.slice(2)) expect((await stat(f)).isFile()).toBe(true);
      expect(log.stats.deletedSegments).toBe(2);
    });

    it('counts an ephemeral group only while it is open, and stores nothing of it', async () => {
      const now = { t: 1_000_000 };
      const { dir, log } = await fill(now);
      const segments = log.segmentFiles(0);
      const a = await log.consumer('a');
      await drain(a, 30);
      await a.commit();
      // A throwaway reader (a rebuild's replay) that never gets past the first record.
      const replay = await log.consumer('a.replay.1', { ephemeral: true });
      const got = await drain(replay, 1);
      await replay.commit(positionsAfter(got.slice(0, 1)));
      now.t += 120_000;
      await log.enforceRetention();
      expect(log.segmentFiles(0)).toEqual(segments);
      await replay.close();
      await log.enforceRetention();
      expect(log.segmentFiles(0)).toEqual(segments.slice(-1));
      await expect(stat(join(dir, 'groups', 'a.replay.1.json'))).rejects.toMatchObject({ code: 'ENOENT' });
      // Nothing survives: the same name starts afresh, at the oldest retained record.
      const again = await log.consumer('a.replay.1', { ephemeral: true });
      expect((await drain(again, 1))[0]!.offset).toBe(Number(segments.at(-1)!.slice(-24, -4)));
    });

    it('keeps segments younger than the minimum age even when every group is past them, and never the active one', async () => {
      const now = { t: 1_000_000 };
      const { log } = await fill(now);
      const segments = log.segmentFiles(0);
      const c = await log.consumer('a');
      await drain(c, 30);
      await c.commit();
      now.t += 59_000;
      await log.enforceRetention();
      expect(log.segmentFiles(0)).toEqual(segments);
      now.t += 2_000;
      expect(await log.enforceRetention()).toEqual(segments.slice(0, -1));
      expect(log.segmentFiles(0)).toEqual(segments.slice(-1));
    });

    it('deletes nothing while a required group has never connected, or when no group exists', async () => {
      const now = { t: 1_000_000 };
      const { log } = await fill(now, { retention: { minAgeMs: 0, requiredGroups: ['evidence-writer'] } });
      const segments = log.segmentFiles(0);
      now.t += 1;
      expect(await log.enforceRetention()).toEqual([]);
      const other = await log.consumer('other');
      await drain(other, 30);
      await other.commit();
      await log.enforceRetention();
      expect(log.segmentFiles(0)).toEqual(segments);
      const writer = await log.consumer('evidence-writer');
      await drain(writer, 30);
      await writer.commit();
      await log.enforceRetention();
      expect(log.segmentFiles(0)).toEqual(segments.slice(-1));
    });

    it('starts a new group at the oldest retained record after deletion', async () => {
      const now = { t: 1_000_000 };
      const { log } = await fill(now, { retention: { minAgeMs: 0 } });
      const c = await log.consumer('a');
      await drain(c, 30);
      await c.commit();
      now.t += 1;
      await log.enforceRetention();
      const oldest = Number(log.segmentFiles(0)[0]!.slice(-24, -4));
      expect(oldest).toBeGreaterThan(0);
      const late = await log.consumer('late');
      const got = await drain(late, 30 - oldest);
      expect(got[0]!.offset).toBe(oldest);
    });
  });

  describe('recovery and corruption', () => {
    async function logWithBatches(dir: string, batches: number) {
      const log = await FileEventLog.open({ dir, partitions: 1 });
      for (let i = 0; i < batches; i++) await log.append([rec('k', `r${i}-a`), rec('k', `r${i}-b`)]);
      await log.close();
      return join(dir, 'p0', '00000000000000000000.seg');
    }

    it('cuts every possible torn tail of the last batch back to the previous batch, and reports it', async () => {
      const dir = await newDir();
      const seg = await logWithBatches(dir, 3);
      const full = await readFile(seg);
      const log2 = await FileEventLog.open({ dir });
      await log2.close();
      const twoBatches = (full.length / 3) | 0;
      expect(twoBatches * 3).toBe(full.length);
      for (let cut = 2 * twoBatches + 1; cut < full.length; cut++) {
        await writeFile(seg, full.subarray(0, cut));
        const log = await FileEventLog.open({ dir });
        // Torn bytes are counted through the last non-zero one (zeros cannot be told from preallocated space).
        let torn = cut;
        while (full[torn - 1] === 0) torn--;
        expect(log.recovery).toEqual([expect.objectContaining({ partition: 0, truncatedAtByte: 2 * twoBatches, truncatedBytes: torn - 2 * twoBatches })]);
        expect((await stat(seg)).size).toBe(2 * twoBatches);
        expect(await log.endOffsets()).toEqual([4]);
        await log.close();
      }
    });

    it('keeps a zero-filled tail without reporting it, truncates a garbage tail, then appends at the right offset', async () => {
      const dir = await newDir();
      const seg = await logWithBatches(dir, 2);
      const size = (await stat(seg)).size;
      // Zeros after the last batch hold no data: the normal state of a preallocated segment.
      await appendFile(seg, Buffer.alloc(4096));
      let log = await FileEventLog.open({ dir });
      expect(log.recovery).toEqual([]);
      expect(await log.endOffsets()).toEqual([4]);
      expect((await stat(seg)).size).toBe(size + 4096);
      await log.close();
      // A complete batch header whose records never made it to disk, at the logical end.
      await writeAt(seg, size, Buffer.concat([encodeBatchHeader(4, 3, 500), Buffer.alloc(100, 7)]));
      log = await FileEventLog.open({ dir });
      expect(log.recovery).toEqual([expect.objectContaining({ truncatedAtByte: size, truncatedBytes: 128, reason: 'record length runs past the batch' })]);
      expect((await stat(seg)).size).toBe(size);
      await log.close();
      // The same beyond the end of the file: the batch is cut short.
      await appendFile(seg, Buffer.concat([encodeBatchHeader(4, 3, 500), Buffer.alloc(100, 7)]));
      log = await FileEventLog.open({ dir });
      expect(log.recovery[0]).toMatchObject({ truncatedAtByte: size, truncatedBytes: 128, reason: 'batch cut short' });
      expect((await log.append([rec('k', 'next')]))[0]!.offset).toBe(4);
      const c = await log.consumer('all');
      expect((await drain(c, 5)).map((r) => dec.decode(r.value))).toEqual(['r0-a', 'r0-b', 'r1-a', 'r1-b', 'next']);
      await log.close();
    });

    it('refuses to open when a batch in the middle of the last segment is corrupt, naming file, byte and offset', async () => {
      const dir = await newDir();
      const seg = await logWithBatches(dir, 3);
      const full = await readFile(seg);
      const batch = full.length / 3;
      // Flip one byte inside the value of the second batch's first record.
      const at = batch + 60;
      full[at] = full[at]! ^ 0x01;
      await writeFile(seg, full);
      const err = await FileEventLog.open({ dir }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(LogError);
      expect(err).toMatchObject({ code: 'log_corrupt', where: `${seg}:${batch + 28}` });
      expect((err as Error).message).toContain(`${seg} (partition 0) is corrupt at byte ${batch + 28}, record offset 2`);
      expect((err as Error).message).toContain('not a torn tail');
      // The failed open left nothing behind that blocks a retry.
      await expect(FileEventLog.open({ dir })).rejects.toMatchObject({ code: 'log_corrupt' });
    });

    it('fails a read, never skips, when an older segment is corrupt', async () => {
      const dir = await newDir();
      const opts = { dir, partitions: 1, segmentBytes: 1024 };
      let log = await FileEventLog.open(opts);
      for (let i = 0; i < 20; i++) await log.append([rec('k', `${i}:${'q'.repeat(200)}`)]);
      const first = log.segmentFiles(0)[0]!;
      await log.close();
      const bytes = await readFile(first);
      const at = bytes.length - 10;
      bytes[at] = bytes[at]! ^ 0xff;
      await writeFile(first, bytes);
      log = await openLog(opts);
      const c = await log.consumer('reader');
      const err = await c.poll(100, 0).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'log_corrupt' });
      expect((err as LogError).where).toMatch(new RegExp(`^${first}:\\d+$`));
      expect((err as Error).message).toMatch(/record offset \d+: record checksum mismatch/);
      // Still failing on the next poll: corruption is never stepped over.
      await expect(c.poll(100, 0)).rejects.toMatchObject({ code: 'log_corrupt' });
    });
  });

  describe('preallocated segments', () => {
    // Small segments: the next one is prepared once the active one holds half of this.
    const SEG = 16 * 1024;
    const big = (i: number) => rec('k', `${i}:${'p'.repeat(1000)}`);

    /** Logical end of a segment file (where its batches end) and its batch count. */
    function batchesOf(buf: Buffer): { end: number; batches: number } {
      let pos = 0;
      let batches = 0;
      for (;;) {
        const h = readBatchHeader(buf, pos);
        if (h.kind !== 'ok' || pos + h.header.totalBytes > buf.length) return { end: pos, batches };
        pos += h.header.totalBytes;
        batches++;
      }
    }

    async function exists(path: string): Promise<boolean> {
      return stat(path).then(
        () => true,
        () => false,
      );
    }

    async function waitFor(cond: () => Promise<boolean> | boolean, what: string): Promise<void> {
      const deadline = Date.now() + 10_000;
      while (!(await cond())) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 5));
      }
    }

    /** Appends until the active segment is a preallocated one (its file is SEG long); returns how many records were appended. */
    async function appendUntilPreallocated(log: FileEventLog, first: number): Promise<number> {
      let n = first;
      while ((await stat(log.segmentFiles(0).at(-1)!)).size !== SEG) {
        await log.append([big(n++)]);
        if (n - first > 200) throw new Error('the log never switched to a preallocated segment');
        // Let a background preparation finish now and then, so the switch comes before the size limit.
        if (await exists(join(log.dir, 'p0', SPARE_TMP_FILE))) await new Promise((r) => setTimeout(r, 5));
      }
      return n;
    }

    function frameBatch(base: number, values: string[]): Buffer {
      const frames = values.map((v, i) => encodeRecord(measureRecord(rec('k', v), 0, 1 << 20), base + i, Date.now()));
      const bytes = frames.reduce((a, f) => a + f.length, 0);
      return Buffer.concat([encodeBatchHeader(base, frames.length, bytes), ...frames]);
    }

    it('creates the first segment empty, prepares the next in the background, rolls to it and seals each segment at its logical end', async () => {
      const dir = await newDir();
      const log = await openLog({ dir, partitions: 1, segmentBytes: SEG });
      const p0 = join(dir, 'p0');
      for (let i = 0; i < 5; i++) await log.append([big(i)]);
      // Small so far: nothing zero-filled, the first segment grows by appending.
      expect(await readdir(p0)).toEqual(['00000000000000000000.seg']);
      expect((await stat(log.segmentFiles(0)[0]!)).size).toBe(batchesOf(await readFile(log.segmentFiles(0)[0]!)).end);
      for (let i = 5; i < 9; i++) await log.append([big(i)]);
      await waitFor(() => exists(join(p0, SPARE_FILE)), 'the prepared segment');
      expect((await stat(join(p0, SPARE_FILE))).size).toBe(SEG);
      expect(log.stats.preallocatedSegments).toBe(1);
      // The next batch switches to it, well before the first segment is full.
      await log.append([big(9)]);
      expect(log.segmentFiles(0)).toHaveLength(2);
      expect(await exists(join(p0, SPARE_FILE))).toBe(false);
      expect((await stat(log.segmentFiles(0)[1]!)).size).toBe(SEG);
      let n = 10;
      while (log.stats.rolls < 5) await log.append([big(n++)]);
      const files = log.segmentFiles(0);
      for (const f of files.slice(0, -1)) {
        const bytes = await readFile(f);
        // Sealed: truncated to the end of its last batch, no zero tail.
        expect(bytes.length).toBeLessThanOrEqual(SEG);
        expect(batchesOf(bytes).end).toBe(bytes.length);
      }
      // Every segment after the first was zero-filled to its full size before it became active.
      expect((await stat(files.at(-1)!)).size).toBe(SEG);
      expect(log.stats.preallocatedSegments).toBeGreaterThanOrEqual(log.stats.rolls);
      const c = await log.consumer('all');
      const got = await drain(c, n);
      expect(got.map((r) => Number(dec.decode(r.value).split(':')[0]))).toEqual(Array.from({ length: n }, (_, i) => i));
      expect(await c.poll(10, 20)).toEqual([]);
    });

    it('reopens a preallocated segment without reporting its zero tail and appends at its logical end', async () => {
      const dir = await newDir();
      let log = await openLog({ dir, partitions: 1, segmentBytes: SEG });
      const n = await appendUntilPreallocated(log, 0);
      await log.append([big(n)]);
      const active = log.segmentFiles(0).at(-1)!;
      const before = await readFile(active);
      const { end } = batchesOf(before);
      expect(end).toBeLessThan(SEG / 2);
      log = await reopen(log, { dir, segmentBytes: SEG });
      expect(log.recovery).toEqual([]);
      expect(await log.endOffsets()).toEqual([n + 1]);
      // Nothing cut: the preallocated space stays.
      expect((await stat(active)).size).toBe(SEG);
      expect((await log.append([big(n + 1)]))[0]).toEqual({ partition: 0, offset: n + 1 });
      const after = await readFile(active);
      expect(after.subarray(0, end).equals(before.subarray(0, end))).toBe(true);
      expect(batchesOf(after).batches).toBe(batchesOf(before).batches + 1);
      log = await reopen(log, { dir, segmentBytes: SEG });
      expect(log.recovery).toEqual([]);
      const c = await log.consumer('all');
      expect((await drain(c, n + 2)).map((r) => r.offset)).toEqual(Array.from({ length: n + 2 }, (_, i) => i));
      expect(await c.poll(10, 20)).toEqual([]);
    });

    it('cuts torn data inside a preallocated segment, reports only it, and never reads it back', async () => {
      const dir = await newDir();
      let log = await openLog({ dir, partitions: 1, segmentBytes: SEG });
      let n = await appendUntilPreallocated(log, 0);
      const active = log.segmentFiles(0).at(-1)!;
      await log.close();
      const end = batchesOf(await readFile(active)).end;

      // A kill inside writev: the batch header and part of its records reached the disk, zeros follow.
      const batch = frameBatch(n, ['torn-a', 'torn-b']);
      const torn = batch.subarray(0, batch.length - 20);
      await writeAt(active, end, torn);
      log = await openLog({ dir, segmentBytes: SEG });
      expect(log.recovery).toEqual([
        { partition: 0, segment: active, truncatedAtByte: end, truncatedBytes: torn.length, reason: 'record checksum mismatch' },
      ]);
      expect((await stat(active)).size).toBe(end);
      expect(await log.endOffsets()).toEqual([n]);
      n = await appendUntilPreallocated(log, n);
      const active2 = log.segmentFiles(0).at(-1)!;
      expect(active2).not.toBe(active);
      await log.close();

      // Power loss with the header's sector lost but a later one written: no magic at the end, data after it.
      const end2 = batchesOf(await readFile(active2)).end;
      await writeAt(active2, end2 + 512, Buffer.alloc(300, 0x5a));
      log = await openLog({ dir, segmentBytes: SEG });
      expect(log.recovery).toEqual([
        { partition: 0, segment: active2, truncatedAtByte: end2, truncatedBytes: 812, reason: 'no batch magic' },
      ]);
      expect((await stat(active2)).size).toBe(end2);
      expect((await log.append([big(n)]))[0]).toEqual({ partition: 0, offset: n });
      log = await reopen(log, { dir, segmentBytes: SEG });
      // Nothing torn is left to be found again.
      expect(log.recovery).toEqual([]);
      const c = await log.consumer('all');
      const got = await drain(c, n + 1);
      expect(got.map((r) => Number(dec.decode(r.value).split(':')[0]))).toEqual(Array.from({ length: n + 1 }, (_, i) => i));
      expect(await c.poll(10, 20)).toEqual([]);
    });

    it('opens a legacy segment written without preallocation, appends to it, then moves to a preallocated one (and back)', async () => {
      const dir = await newDir();
      // preallocate: false writes segments exactly as earlier versions did: growing files, no zero tail.
      let log = await openLog({ dir, partitions: 1, segmentBytes: SEG, preallocate: false });
      for (let i = 0; i < 12; i++) await log.append([big(i)]);
      const legacy = log.segmentFiles(0)[0]!;
      await log.close();
      const legacyBytes = await readFile(legacy);
      expect(batchesOf(legacyBytes).end).toBe(legacyBytes.length);
      expect(await readdir(join(dir, 'p0'))).toEqual(['00000000000000000000.seg']);

      log = await openLog({ dir, segmentBytes: SEG });
      expect(log.recovery).toEqual([]);
      expect((await log.append([big(12)]))[0]!.offset).toBe(12);
      const n = await appendUntilPreallocated(log, 13);
      expect(log.segmentFiles(0)).toHaveLength(2);
      // The legacy segment kept its bytes and was sealed where its batches end.
      const sealed = await readFile(legacy);
      expect(sealed.subarray(0, legacyBytes.length).equals(legacyBytes)).toBe(true);
      expect(batchesOf(sealed).end).toBe(sealed.length);

      // And back: a log written with preallocation opens and rolls with preallocate: false.
      log = await reopen(log, { dir, segmentBytes: SEG, preallocate: false });
      expect(log.recovery).toEqual([]);
      const rollsBefore = log.stats.rolls;
      let m = n;
      while (log.stats.rolls === rollsBefore) await log.append([big(m++)]);
      const files = log.segmentFiles(0);
      const prev = await readFile(files.at(-2)!);
      expect(batchesOf(prev).end).toBe(prev.length);
      expect((await stat(files.at(-1)!)).size).toBe(batchesOf(await readFile(files.at(-1)!)).end);
      expect(log.stats.preallocatedSegments).toBe(0);
      const c = await log.consumer('all');
      const got = await drain(c, m);
      expect(got.map((r) => Number(dec.decode(r.value).split(':')[0]))).toEqual(Array.from({ length: m }, (_, i) => i));
    });

    it('reads only up to the logical end, whatever lies in the zero-filled space after it', async () => {
      const dir = await newDir();
      const log = await openLog({ dir, partitions: 1, segmentBytes: SEG });
      const n = await appendUntilPreallocated(log, 0);
      const c = await log.consumer('reader');
      await drain(c, n);
      const active = log.segmentFiles(0).at(-1)!;
      const end = batchesOf(await readFile(active)).end;
      // A well-formed batch for the next offset beyond the logical end, never appended through the log.
      await writeAt(active, end, frameBatch(n, ['phantom']));
      expect(await c.poll(10, 30)).toEqual([]);
      expect(await log.endOffsets()).toEqual([n]);
      await log.append([rec('k', 'real')]);
      const got = await c.poll(10, 1000);
      expect(got.map((r) => [r.offset, dec.decode(r.value)])).toEqual([[n, 'real']]);
      expect(await c.poll(10, 30)).toEqual([]);
    });

    it('fails appends clearly when the disk fills during preallocation, and keeps every acknowledged record', async () => {
      const dir = await newDir();
      let attempts = 0;
      const log = await FileEventLog.open({
        dir,
        partitions: 1,
        segmentBytes: SEG,
        preallocateFile: async (fh, bytes) => {
          attempts++;
          await fh.write(Buffer.alloc(bytes / 2), 0, bytes / 2, 0);
          throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
        },
      });
      const acked: string[] = [];
      let err: unknown;
      for (let i = 0; i < 100 && err === undefined; i++) {
        try {
          await log.append([big(i)]);
          acked.push(`${i}`);
        } catch (e) {
          err = e;
        }
      }
      // The background attempt failed quietly (the active segment could still take appends); the roll
      // that needed the segment retried once and failed the append.
      expect(attempts).toBe(2);
      expect(acked.length).toBeGreaterThan(8);
      expect(log.stats.lastPreallocError).toMatchObject({ code: 'log_unavailable' });
      expect(err).toMatchObject({ code: 'log_unavailable', retriable: true, where: join(dir, 'p0', SPARE_TMP_FILE) });
      expect((err as Error).message).toContain('could not preallocate the next segment of partition 0');
      expect((err as Error).message).toContain('ENOSPC');
      expect((err as LogError).fix).toContain('Free disk space');
      // The partial file was removed at once, and the log refuses appends until reopened.
      expect(await readdir(join(dir, 'p0'))).toEqual(['00000000000000000000.seg']);
      await expect(log.append([rec('k', 'after')])).rejects.toMatchObject({ code: 'log_unavailable' });
      await log.close();

      const again = await openLog({ dir, segmentBytes: SEG });
      expect(again.recovery).toEqual([]);
      expect(await again.endOffsets()).toEqual([acked.length]);
      const c = await again.consumer('check');
      expect((await drain(c, acked.length)).map((r) => dec.decode(r.value).split(':')[0])).toEqual(acked);
      expect(await c.poll(10, 20)).toEqual([]);
      await appendUntilPreallocated(again, acked.length);
    });

    it('removes an interrupted preparation at open and reuses a complete one', async () => {
      const dir = await newDir();
      let log = await openLog({ dir, partitions: 1, segmentBytes: SEG });
      await log.close();
      const p0 = join(dir, 'p0');
      await writeFile(join(p0, SPARE_TMP_FILE), Buffer.alloc(100));
      await writeFile(join(p0, SPARE_FILE), Buffer.alloc(SEG - 1));
      log = await openLog({ dir, segmentBytes: SEG });
      expect(await readdir(p0)).toEqual(['00000000000000000000.seg']);
      for (let i = 0; i < 9; i++) await log.append([big(i)]);
      await waitFor(() => exists(join(p0, SPARE_FILE)), 'the prepared segment');
      expect(log.stats.preallocatedSegments).toBe(1);
      log = await reopen(log, { dir, segmentBytes: SEG });
      // Reused: the switch needs no new zero-fill.
      await log.append([big(9)]);
      expect(log.segmentFiles(0)).toHaveLength(2);
      expect((await stat(log.segmentFiles(0)[1]!)).size).toBe(SEG);
      expect(log.stats.preallocatedSegments).toBe(0);
      // A different segment size cannot use it.
      await log.append([big(10)]);
      for (let i = 11; i < 20; i++) await log.append([big(i)]);
      await waitFor(() => exists(join(p0, SPARE_FILE)), 'the next prepared segment');
      log = await reopen(log, { dir, segmentBytes: 2 * SEG });
      expect(await exists(join(p0, SPARE_FILE))).toBe(false);
    });

    it('paces the next segment behind a preallocated active one, fills the rest at once when a roll needs it, and stops at close', async () => {
      const dir = await newDir();
      const MIB = 1024 * 1024;
      const opts = { dir, partitions: 1, segmentBytes: 8 * MIB, maxBatchBytes: 16 * MIB };
      let log = await openLog(opts);
      const p0 = join(dir, 'p0');
      // 12 KB records, one per batch: under PREALLOCATE_MAX_AVG_BATCH_BYTES on average.
      const value = (i: number) => rec('k', `${i}:${'v'.repeat(12_000)}`);
      let n = 0;
      const appendUntil = async (done: () => Promise<boolean> | boolean, what: string) => {
        for (let i = 0; !(await done()); i++) {
          if (i > 3000) throw new Error(`never ${what}`);
          await log.append([value(n++)]);
          if (await exists(join(p0, SPARE_TMP_FILE))) await new Promise((r) => setTimeout(r, 1));
        }
      };
      // The first segment was created empty: past 1 MiB the next one is filled at once, and taken.
      await appendUntil(() => log.segmentFiles(0).length > 1, 'switched');
      expect((await stat(log.segmentFiles(0)[1]!)).size).toBe(8 * MIB);
      // Past 1 MiB of the preallocated segment, the next one is prepared at a pace: at most 1.5× its data (+ one chunk).
      await appendUntil(() => exists(join(p0, SPARE_TMP_FILE)), 'started the paced preparation');
      await new Promise((r) => setTimeout(r, 100));
      const written = batchesOf(await readFile(log.segmentFiles(0)[1]!)).end;
      const paced = (await stat(join(p0, SPARE_TMP_FILE))).size;
      expect(paced).toBeGreaterThan(0);
      expect(paced).toBeLessThanOrEqual(written * 1.5 + MIB);
      expect(paced).toBeLessThan(8 * MIB);
      // One batch that does not fit: the roll completes the preparation at once and takes it.
      const rolls = log.stats.rolls;
      await Promise.all(Array.from({ length: 650 }, () => log.append([value(n++)])));
      expect(log.stats.rolls).toBe(rolls + 1);
      expect((await stat(log.segmentFiles(0).at(-1)!)).size).toBe(8 * MIB);
      // A paced preparation waiting for appends stops at close and leaves nothing behind. (After that
      // 7.8 MB batch the average batch size needs a few dozen small ones to fall under the limit.)
      await appendUntil(() => exists(join(p0, SPARE_TMP_FILE)), 'started the next paced preparation');
      await log.close();
      expect((await readdir(p0)).filter((f) => f.startsWith('next.'))).toEqual([]);
      log = await openLog(opts);
      expect(log.recovery).toEqual([]);
      const c = await log.consumer('all');
      const got = await drain(c, n);
      expect(got.map((r) => Number(dec.decode(r.value).split(':')[0]))).toEqual(Array.from({ length: n }, (_, i) => i));
    });

    it('prepares no segment while batches are large (the zeros would cost more than they save) and rolls to growing ones', async () => {
      const dir = await newDir();
      const log = await openLog({ dir, partitions: 1, segmentBytes: 1024 * 1024 });
      let n = 0;
      while (log.stats.rolls < 3) await log.append([rec('k', `${n++}:${'b'.repeat(100_000)}`)]);
      expect(log.stats.preallocatedSegments).toBe(0);
      expect((await readdir(join(dir, 'p0'))).filter((f) => f.startsWith('next.'))).toEqual([]);
      for (const f of log.segmentFiles(0)) expect((await stat(f)).size).toBe(batchesOf(await readFile(f)).end);
      // Small batches again: the next segment is prepared and the log switches to it.
      let m = n;
      while ((await stat(log.segmentFiles(0).at(-1)!)).size !== 1024 * 1024) {
        await log.append([big(m++)]);
        if (m - n > 2000) throw new Error('the log never switched to a preallocated segment');
      }
      expect(log.stats.preallocatedSegments).toBe(1);
      const c = await log.consumer('all');
      expect((await drain(c, m)).map((r) => r.offset)).toEqual(Array.from({ length: m }, (_, i) => i));
    });

    it('zero-fills in 1 MiB chunks and stops between chunks when asked', async () => {
      const dir = await newDir();
      const fh = await open(join(dir, 'f'), 'w');
      let chunks = 0;
      const beforeChunk = () => {
        if (++chunks > 2) throw new Error('preallocation stopped');
      };
      await expect(zeroFill(fh, 4 * 1024 * 1024, { beforeChunk, syncEveryBytes: 1024 * 1024 })).rejects.toThrow('preallocation stopped');
      await fh.close();
      expect((await stat(join(dir, 'f'))).size).toBe(2 * 1024 * 1024);
      const fh2 = await open(join(dir, 'g'), 'w');
      await zeroFill(fh2, 1500);
      await fh2.close();
      expect(await readFile(join(dir, 'g'))).toEqual(Buffer.alloc(1500));
    });
  });

  describe('failure handling', () => {
    it('rejects with retriable log_unavailable when fdatasync fails, then refuses every append until reopened', async () => {
      const dir = await newDir();
      let fail = false;
      const log = await FileEventLog.open({
        dir,
        partitions: 1,
        syncFile: async (fh) => {
          if (fail) throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
          await fh.datasync();
        },
      });
      await log.append([rec('k', 'ok')]);
      fail = true;
      const err = await log.append([rec('k', 'lost')]).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'log_unavailable', retriable: true });
      fail = false;
      await expect(log.append([rec('k', 'after')])).rejects.toMatchObject({ code: 'log_unavailable' });
      await log.close();
      const log2 = await openLog({ dir });
      const c = await log2.consumer('check');
      // The failed batch was truncated away: only the acknowledged record remains.
      expect((await drain(c, 1)).map((r) => dec.decode(r.value))).toEqual(['ok']);
      expect(await c.poll(10, 20)).toEqual([]);
    });

    it('holds the directory with a lock, and takes over a lock left by a dead process', async () => {
      const dir = await newDir();
      const log = await FileEventLog.open({ dir });
      await expect(FileEventLog.open({ dir })).rejects.toMatchObject({ code: 'log_locked' });
      await log.close();
      await writeFile(join(dir, 'LOCK'), '999999999');
      const again = await openLog({ dir });
      expect(again.partitionCount).toBe(1);
    });

    it('refuses a partition count different from the one the log was created with', async () => {
      const dir = await newDir();
      await (await FileEventLog.open({ dir, partitions: 2 })).close();
      await expect(FileEventLog.open({ dir, partitions: 3 })).rejects.toMatchObject({ code: 'log_config_mismatch' });
      const log = await openLog({ dir });
      expect(log.partitionCount).toBe(2);
    });

    it('allows one open consumer per group', async () => {
      const dir = await newDir();
      const log = await openLog({ dir });
      const c = await log.consumer('g');
      await expect(log.consumer('g')).rejects.toMatchObject({ code: 'log_group_busy' });
      await c.close();
      await (await log.consumer('g')).close();
    });

    it('ignores a commit temp file left by a crash and keeps the last committed position', async () => {
      const dir = await newDir();
      let log = await FileEventLog.open({ dir, partitions: 1 });
      await log.append([rec('k', 'a'), rec('k', 'b')]);
      const c = await log.consumer('g');
      await drain(c, 2);
      await c.commit([{ partition: 0, nextOffset: 1 }]);
      await log.close();
      await writeFile(join(dir, 'groups', '.g.json.tmp'), '{"torn');
      log = await openLog({ dir });
      const c2 = await log.consumer('g');
      expect((await drain(c2, 1)).map((r) => dec.decode(r.value))).toEqual(['b']);
      expect(await readdir(join(dir, 'groups'))).toEqual(['g.json']);
    });
  });

  it('keeps appending under the limit of one writev per partition per cycle for big batches', async () => {
    const dir = await newDir();
    const log = await openLog({ dir, partitions: 1, maxBatchBytes: 64 * 1024 });
    await Promise.all(Array.from({ length: 400 }, (_, i) => log.append([rec('k', `${i}:${'w'.repeat(900)}`)])));
    // 400 × ~950 bytes over a 64 KiB cycle cap: several cycles, each one batch.
    expect(log.stats.flushCycles).toBeGreaterThan(4);
    const c = await log.consumer('big');
    const got = await drain(c, 400);
    expect(got.map((r) => Number(dec.decode(r.value).split(':')[0]))).toEqual(Array.from({ length: 400 }, (_, i) => i));
  });
});

