import { appendFile, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LogError } from './errors';
import { FileEventLog, type FileLogOptions } from './file-log';
import { encodeBatchHeader } from './frame';
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
        expect(log.recovery).toEqual([expect.objectContaining({ partition: 0, truncatedAtByte: 2 * twoBatches, truncatedBytes: cut - 2 * twoBatches })]);
        expect((await stat(seg)).size).toBe(2 * twoBatches);
        expect(await log.endOffsets()).toEqual([4]);
        await log.close();
      }
    });

    it('truncates garbage and zero-filled tails, then appends at the right offset', async () => {
      const dir = await newDir();
      const seg = await logWithBatches(dir, 2);
      const size = (await stat(seg)).size;
      await appendFile(seg, Buffer.alloc(4096));
      let log = await FileEventLog.open({ dir });
      expect(log.recovery[0]).toMatchObject({ truncatedAtByte: size, truncatedBytes: 4096, reason: 'no batch magic' });
      await log.close();
      // A complete batch header whose records never made it to disk.
      await appendFile(seg, Buffer.concat([encodeBatchHeader(4, 3, 500), Buffer.alloc(100, 7)]));
      log = await FileEventLog.open({ dir });
      expect(log.recovery[0]).toMatchObject({ truncatedAtByte: size, reason: 'batch cut short' });
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

