/**
 * Embedded event log throughput: appends/s with fsync group commit at several concurrencies, and
 * consume throughput. Each figure is the median of several runs; CPU µs per record comes from
 * process.cpuUsage (steadier than wall time on a shared machine).
 *
 *   node --import tsx bench/log.bench.ts [--seconds 3] [--runs 3] [--partitions 1,4] [--concurrency 1,16,256]
 *     [--value-bytes 800] [--warmup 0] [--preallocate default|true|false] [--inline default|true|false] [--no-consume]
 *
 * --warmup appends for that many seconds (untimed, same log) before each timed run: the steady state
 * of a log that has already switched to preallocated segments (a new log's first segment grows by
 * appending until it holds 1 MiB, see docs/event-log.md). --preallocate false measures growing
 * segments, as before preallocation.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { FileEventLog } from '../services/common/src/log/file-log';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? dflt) : dflt;
}
const SECONDS = Number(arg('seconds', '3'));
const RUNS = Number(arg('runs', '3'));
const PARTITIONS = arg('partitions', '1,4').split(',').map(Number);
const CONCURRENCY = arg('concurrency', '1,16,256').split(',').map(Number);
const VALUE_BYTES = Number(arg('value-bytes', '800'));
const WARMUP_S = Number(arg('warmup', '0'));
const PREALLOCATE = arg('preallocate', 'default');
const INLINE = arg('inline', 'default');
const CONSUME = !process.argv.includes('--no-consume');

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};
const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;

interface AppendRun {
  perSec: number;
  cpuUsPerRecord: number;
  recordsPerSync: number;
  p50us: number;
  p99us: number;
  records: number;
}

async function appendRun(dir: string, partitions: number, concurrency: number, durability: 'fsync' | 'none'): Promise<AppendRun> {
  const preallocate = PREALLOCATE === 'default' ? {} : { preallocate: PREALLOCATE === 'true' };
  const inline = INLINE === 'default' ? {} : { inlineWrites: INLINE === 'true' };
  const log = await FileEventLog.open({ dir, partitions, durability, ...preallocate, ...inline });
  const value = new Uint8Array(VALUE_BYTES).map((_, i) => i & 0xff);
  let latencies: number[] = [];
  let id = 0;
  let stop = false;
  const caller = async (): Promise<void> => {
    while (!stop) {
      const n = id++;
      const s = process.hrtime.bigint();
      await log.append([{ key: `session-${n % 1000}`, value, headers: { 'event-type': 'response.completed' } }]);
      latencies.push(Number(process.hrtime.bigint() - s) / 1000);
    }
  };
  const phase = async (seconds: number): Promise<void> => {
    stop = false;
    const timer = setTimeout(() => (stop = true), seconds * 1000);
    await Promise.all(Array.from({ length: concurrency }, caller));
    clearTimeout(timer);
  };
  if (WARMUP_S > 0) await phase(WARMUP_S);
  latencies = [];
  const records0 = log.stats.records;
  const syncs0 = log.stats.syncs;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await phase(SECONDS);
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const records = log.stats.records - records0;
  const syncs = log.stats.syncs - syncs0;
  await log.close();
  latencies.sort((a, b) => a - b);
  return {
    perSec: records / wallS,
    cpuUsPerRecord: (cpu.user + cpu.system) / records,
    recordsPerSync: syncs === 0 ? NaN : records / syncs,
    p50us: pct(latencies, 0.5),
    p99us: pct(latencies, 0.99),
    records,
  };
}

async function consumeRun(dir: string): Promise<{ perSec: number; mbPerSec: number; cpuUsPerRecord: number; records: number }> {
  const log = await FileEventLog.open({ dir });
  const total = (await log.endOffsets()).reduce((a, b) => a + b, 0);
  const c = await log.consumer(`bench-${Date.now()}`);
  let n = 0;
  let bytes = 0;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  while (n < total) {
    const got = await c.poll(2000, 1000);
    if (got.length === 0) throw new Error(`consumer stalled at ${n}/${total}`);
    n += got.length;
    for (const r of got) bytes += r.value.length;
  }
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  await log.close();
  return { perSec: n / wallS, mbPerSec: bytes / wallS / 1e6, cpuUsPerRecord: (cpu.user + cpu.system) / n, records: n };
}

async function main(): Promise<void> {
  console.log(`# event log bench  ${new Date().toISOString()}  node ${process.version}  ${cpus().length} cores  ${(totalmem() / 2 ** 30).toFixed(1)} GiB`);
  console.log(`# ${SECONDS}s per run, median of ${RUNS} runs, ${VALUE_BYTES}-byte values, one record per append() call, temp dir under ${tmpdir()}`);
  console.log(`# warm-up ${WARMUP_S}s per run, preallocate ${PREALLOCATE}, inline ${INLINE}, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}\n`);
  console.log('| durability | partitions | concurrency | appends/s | records per fdatasync | CPU µs/record | p50 µs | p99 µs |');
  console.log('|---|---|---|---|---|---|---|---|');
  const configs: Array<{ durability: 'fsync' | 'none'; partitions: number; concurrency: number }> = [];
  for (const partitions of PARTITIONS) for (const concurrency of CONCURRENCY) configs.push({ durability: 'fsync', partitions, concurrency });
  if (CONCURRENCY.includes(256)) configs.push({ durability: 'none', partitions: PARTITIONS[0]!, concurrency: 256 });
  let consumeDir: string | undefined;
  for (const cfg of configs) {
    const runs: AppendRun[] = [];
    for (let r = 0; r < RUNS; r++) {
      const dir = await mkdtemp(join(tmpdir(), 'attest-log-bench-'));
      runs.push(await appendRun(dir, cfg.partitions, cfg.concurrency, cfg.durability));
      if (CONSUME && consumeDir === undefined && cfg.concurrency === 256 && cfg.durability === 'fsync') consumeDir = dir;
      else await rm(dir, { recursive: true, force: true });
    }
    const m = (f: (r: AppendRun) => number) => median(runs.map(f));
    const label = cfg.durability === 'none' ? "'none' (benchmark only, not durable)" : 'fsync';
    console.log(
      `| ${label} | ${cfg.partitions} | ${cfg.concurrency} | ${Math.round(m((r) => r.perSec))} | ${m((r) => r.recordsPerSync).toFixed(1)} | ${m((r) => r.cpuUsPerRecord).toFixed(1)} | ${Math.round(m((r) => r.p50us))} | ${Math.round(m((r) => r.p99us))} |`,
    );
  }
  console.log(`\n# load average at the end ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  if (consumeDir !== undefined) {
    const runs = [];
    for (let r = 0; r < RUNS; r++) runs.push(await consumeRun(consumeDir));
    console.log(`\n| consume (poll 2000) | records | records/s | MB/s of values | CPU µs/record |`);
    console.log('|---|---|---|---|---|');
    console.log(
      `| ${PARTITIONS.find((p) => p > 0)} partition(s), page cache warm | ${runs[0]!.records} | ${Math.round(median(runs.map((r) => r.perSec)))} | ${median(runs.map((r) => r.mbPerSec)).toFixed(1)} | ${median(runs.map((r) => r.cpuUsPerRecord)).toFixed(2)} |`,
    );
    await rm(consumeDir, { recursive: true, force: true });
  }
}

await main();
