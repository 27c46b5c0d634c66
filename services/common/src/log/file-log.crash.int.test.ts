import { spawn } from 'node:child_process';
import { open, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { crashKey, crashValue } from './crash-fixture';
import { FileEventLog } from './file-log';
import { encodeBatchHeader, encodeRecord, readBatchHeader } from './frame';
import type { ConsumedRecord } from './port';
import { measureRecord } from './record';
import { freshDir } from './test-dirs';

const repoRoot = fileURLToPath(new URL('../../../../', import.meta.url));
const writerScript = fileURLToPath(new URL('./crash-writer.ts', import.meta.url));
const SEGMENT_BYTES = 256 * 1024;

interface Ack {
  readonly id: number;
  readonly partition: number;
  readonly offset: number;
}

/** Runs the writer until it has printed `minAcks` acks, SIGKILLs it mid-load, returns every complete ack line. */
async function runAndKill(dir: string, firstId: number, minAcks: number, callers: number): Promise<Ack[]> {
  const child = spawn(process.execPath, ['--import', 'tsx', writerScript, dir, String(firstId), String(SEGMENT_BYTES), String(callers)], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  let acks = 0;
  let killed = false;
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  child.stdout.on('data', (d: Buffer) => {
    const s = d.toString();
    out += s;
    for (const ch of s) if (ch === '\n') acks++;
    // The first line is "ready", not an ack.
    if (!killed && acks > minAcks) {
      killed = true;
      child.kill('SIGKILL');
    }
  });
  const guard = setTimeout(() => child.kill('SIGKILL'), 25_000);
  const signal = await exited;
  clearTimeout(guard);
  expect(killed, `writer exited before ${minAcks} acks (${acks}); stderr: ${err}`).toBe(true);
  expect(signal).toBe('SIGKILL');
  // A line cut by the kill was never fully printed, so it does not count as an ack.
  const lines = out.split('\n').slice(0, -1);
  expect(lines[0]).toMatch(/^ready \d+$/);
  return lines.slice(1).map((l) => {
    const m = /^ack (\d+) (\d+) (\d+)$/.exec(l);
    if (m === null) throw new Error(`bad ack line ${JSON.stringify(l)}`);
    return { id: Number(m[1]), partition: Number(m[2]), offset: Number(m[3]) };
  });
}

async function readEverything(dir: string): Promise<{ records: ConsumedRecord[]; log: FileEventLog }> {
  const log = await FileEventLog.open({ dir, segmentBytes: SEGMENT_BYTES });
  const c = await log.consumer(`verify-${Date.now()}-${Math.random().toString(36).slice(2)}`);
  const end = (await log.endOffsets()).reduce((a, b) => a + b, 0);
  const records: ConsumedRecord[] = [];
  while (records.length < end) {
    const got = await c.poll(5000, 1000);
    if (got.length === 0) throw new Error(`log ends at ${end} records but only ${records.length} were readable`);
    records.push(...got);
  }
  await c.close();
  return { records, log };
}

function verifyAcked(records: readonly ConsumedRecord[], acks: readonly Ack[]): void {
  const byId = new Map<number, ConsumedRecord[]>();
  for (const r of records) {
    const id = Number(r.headers.id);
    byId.set(id, [...(byId.get(id) ?? []), r]);
  }
  // The writer never retries, so every id in the log, acknowledged or not, appears exactly once.
  for (const [id, rs] of byId) expect(rs.length, `id ${id}`).toBe(1);
  for (const a of acks) {
    const found = byId.get(a.id);
    expect(found, `acknowledged id ${a.id} is missing`).toBeDefined();
    const r = found![0]!;
    expect({ partition: r.partition, offset: r.offset }).toEqual({ partition: a.partition, offset: a.offset });
    expect(r.key).toBe(crashKey(a.id));
    expect(Buffer.from(r.value).equals(Buffer.from(crashValue(a.id)))).toBe(true);
  }
  for (let p = 0; p < 2; p++) {
    const offsets = records.filter((r) => r.partition === p).map((r) => r.offset);
    expect(offsets).toEqual(offsets.map((_, i) => i));
  }
}

/** Logical end of a segment file and its batch count: where its batches end (a preallocated segment has zeros after it). */
function batchesOf(seg: Buffer): { end: number; batches: number } {
  let pos = 0;
  let batches = 0;
  for (;;) {
    const h = readBatchHeader(seg, pos);
    if (h.kind !== 'ok' || pos + h.header.totalBytes > seg.length) return { end: pos, batches };
    pos += h.header.totalBytes;
    batches++;
  }
}

/** Bytes up to and including the last non-zero one: how much of a torn write recovery can see. */
function nonZeroExtent(bytes: Buffer): number {
  let n = bytes.length;
  while (n > 0 && bytes[n - 1] === 0) n--;
  return n;
}

/** The record frame that contains byte `at` of a segment: its start and offset. */
function frameAround(seg: Buffer, at: number): { start: number; offset: number } {
  let pos = 0;
  for (;;) {
    const h = readBatchHeader(seg, pos);
    if (h.kind !== 'ok') throw new Error(`no batch at ${pos}`);
    if (at < pos + h.header.totalBytes) {
      let q = pos + 28;
      for (let i = 0; ; i++) {
        const len = seg.readUInt32LE(q);
        if (at < q + 4 + len) return { start: q, offset: h.header.baseOffset + i };
        q += 4 + len;
      }
    }
    pos += h.header.totalBytes;
  }
}

describe('FileEventLog under SIGKILL', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it(
    'keeps every acknowledged record exactly once and intact across repeated kills, truncates a torn tail, and names corruption precisely',
    async () => {
      const { dir, remove } = await freshDir('crash');
      cleanups.push(remove);

      // Three rounds: each child recovers what the previous one left (stale lock, possible torn tail).
      // 64 callers make large batches, written into growing segments; 4 make small ones, written into
      // preallocated segments, so the kills land in both.
      const acks: Ack[] = [];
      let killedInPreallocated = 0;
      for (let round = 0; round < 3; round++) {
        const got = await runAndKill(dir, round * 1_000_000, 4000, round === 0 ? 64 : 4);
        expect(got.length).toBeGreaterThanOrEqual(4000);
        acks.push(...got);
        for (const p of ['p0', 'p1']) {
          const last = (await readdir(join(dir, p))).filter((f) => f.endsWith('.seg')).sort().at(-1)!;
          if ((await stat(join(dir, p, last))).size === SEGMENT_BYTES) killedInPreallocated++;
        }
        const { records, log } = await readEverything(dir);
        verifyAcked(records, acks);
        await log.close();
      }

      // The kills hit the log while it wrote into zero-filled segments, not only growing ones.
      expect(killedInPreallocated).toBeGreaterThan(0);

      // A torn tail: half of a batch that would come next, written at the segment's logical end (inside
      // its zero-filled space when it is preallocated), as a kill in the middle of writev leaves it.
      let { log } = await readEverything(dir);
      let seg = log.segmentFiles(0).at(-1)!;
      const end = (await log.endOffsets())[0]!;
      await log.close();
      const logicalEnd = batchesOf(await readFile(seg)).end;
      const frames = [0, 1, 2].map((i) => encodeRecord(measureRecord({ key: 'torn', value: crashValue(i) }, 0, 1 << 20), end + i, Date.now()));
      const bytes = frames.reduce((a, f) => a + f.length, 0);
      const batch = Buffer.concat([encodeBatchHeader(end, 3, bytes), ...frames]);
      const torn = batch.subarray(0, Math.floor(batch.length / 2));
      // In a preallocated segment zeros follow the cut, so the batch fits and its half-written record fails its checksum.
      const preallocated = (await stat(seg)).size >= logicalEnd + batch.length;
      const fh = await open(seg, 'r+');
      await fh.write(torn, 0, torn.length, logicalEnd);
      await fh.close();
      const reopened = await readEverything(dir);
      log = reopened.log;
      expect(log.recovery).toEqual([
        { partition: 0, segment: seg, truncatedAtByte: logicalEnd, truncatedBytes: nonZeroExtent(torn), reason: preallocated ? 'record checksum mismatch' : 'batch cut short' },
      ]);
      // Cut, so the torn bytes can never be read as a batch.
      expect((await stat(seg)).size).toBe(logicalEnd);
      verifyAcked(reopened.records, acks);
      expect((await log.append([{ key: 'torn', value: new Uint8Array(1) }]))[0]).toEqual({ partition: 0, offset: end });
      // At least two batches in the last segment, so its first batch is certainly not its last (a damaged
      // last batch is a torn tail). The log may switch to a preallocated segment between appends.
      for (let i = 0; i < 20 && batchesOf(await readFile(log.segmentFiles(0).at(-1)!)).batches < 2; i++) {
        await log.append([{ key: 'torn', value: new Uint8Array(1) }]);
      }
      seg = log.segmentFiles(0).at(-1)!;
      await log.close();

      // Corruption in the middle of the last segment: open fails, naming the segment, byte and offset.
      const last = await readFile(seg);
      const firstBatch = readBatchHeader(last, 0);
      if (firstBatch.kind !== 'ok') throw new Error('segment does not start with a batch');
      expect(batchesOf(last).batches).toBeGreaterThanOrEqual(2);
      const flipAt = Math.floor(firstBatch.header.totalBytes / 2);
      const frame = frameAround(last, flipAt);
      last[flipAt] = last[flipAt]! ^ 0x10;
      await writeFile(seg, last);
      const openErr = await FileEventLog.open({ dir }).catch((e: unknown) => e);
      expect(openErr).toMatchObject({ code: 'log_corrupt', where: `${seg}:${frame.start}` });
      expect((openErr as Error).message).toContain(`${seg} (partition 0) is corrupt at byte ${frame.start}, record offset ${frame.offset}`);
      last[flipAt] = last[flipAt]! ^ 0x10;
      await writeFile(seg, last);

      // Corruption in the middle of an older segment: open succeeds (only the last segment can be torn),
      // and reading fails at that record instead of skipping it.
      log = await FileEventLog.open({ dir });
      const older = log.segmentFiles(1)[0]!;
      expect(log.segmentFiles(1).length).toBeGreaterThan(1);
      await log.close();
      const old = await readFile(older);
      // A sealed segment was truncated to its logical end at the roll: no zero tail.
      expect(batchesOf(old).end).toBe(old.length);
      const oldFlip = Math.floor(old.length / 2);
      const oldFrame = frameAround(old, oldFlip);
      old[oldFlip] = old[oldFlip]! ^ 0x01;
      await writeFile(older, old);
      log = await FileEventLog.open({ dir });
      cleanups.push(() => log.close());
      const c = await log.consumer('after-corruption');
      let readErr: unknown;
      const seen: ConsumedRecord[] = [];
      for (;;) {
        try {
          const got = await c.poll(5000, 0);
          if (got.length === 0) break;
          seen.push(...got);
        } catch (e) {
          readErr = e;
          break;
        }
      }
      expect(readErr).toMatchObject({ code: 'log_corrupt', where: `${older}:${oldFrame.start}` });
      expect((readErr as Error).message).toContain(`record offset ${oldFrame.offset}: record checksum mismatch`);
      expect(seen.filter((r) => r.partition === 1).every((r) => r.offset < oldFrame.offset)).toBe(true);
    },
    120_000,
  );
});
