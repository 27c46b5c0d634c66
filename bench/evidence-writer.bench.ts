/**
 * Evidence writer, log → store, sustained: a producer appends realistic chained events (the store's
 * generator: newEvent, chainEvent, the real codec) to a FileEventLog at a fixed offered rate while
 * the writer consumes them into chdb; then a backlog drain (the writer started after N events).
 *
 *   node --import tsx bench/evidence-writer.bench.ts [--seconds 60] [--rate 50000] [--backlog 300000]
 *        [--batch N (default: the writer's, 20000)] [--partitions 1] [--durability fsync|none] [--only drain|sustained] [--drains 1]
 *
 * No JWKS is given: the generator's checkpoints carry stand-in signatures (they would all be findings).
 * Everything runs in one process on this machine's cores: the producer's event generation and
 * encoding compete with the writer for CPU (in production the gateway is another process).
 * Reported: offered and achieved events/s, per-batch lag append → queryable (p50/p99/max of the
 * batch maxima), batch latency, final lag, and the process's CPU per event (writer, embedded engine
 * and, in the sustained run, the producer's event generation: only the backlog drain isolates the
 * writer and the engine), with the load average.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { openEvidence } from '../services/common/src/evidence/producer';
import { FileEventLog } from '../services/common/src/log';
import { ChdbEvidenceStore } from '../services/common/src/store';
import { generateEvents } from '../services/common/src/store/testing';
import { EvidenceWriter, type BatchStats } from '../services/processors/src/evidence-writer';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? dflt) : dflt;
}
const SECONDS = Number(arg('seconds', '60'));
const RATE = Number(arg('rate', '50000'));
const BACKLOG = Number(arg('backlog', '300000'));
/** Default: the writer's own default (maxBatchRecords). */
const BATCH = process.argv.includes('--batch') ? Number(arg('batch', '20000')) : undefined;
const PARTITIONS = Number(arg('partitions', '1'));
const DURABILITY = arg('durability', 'fsync') as 'fsync' | 'none';
/** Run only the backlog drain or only the sustained run; `--drains N` repeats the drain N times. */
const ONLY = arg('only', 'both') as 'both' | 'drain' | 'sustained';
const DRAINS = Number(arg('drains', '1'));
const DAY_US = 86_400_000_000;

const cpuUs = (): number => {
  const c = process.cpuUsage();
  return c.user + c.system;
};
/** The main (JavaScript) thread's CPU, µs, from /proc (the rest of the process CPU is the engine's and libuv's threads). */
const mainThreadCpuUs = (): number => {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1e6) / 100;
  } catch {
    return Number.NaN;
  }
};
const load = (): string => loadavg().map((x) => x.toFixed(1)).join(' ');

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
};

async function setup(label: string) {
  const dir = await mkdtemp(join(tmpdir(), `attest-ewbench-${label}-`));
  const log = await FileEventLog.open({ dir: join(dir, 'log'), partitions: PARTITIONS, durability: DURABILITY });
  const logger = pino({ level: 'silent' });
  const rt = await openEvidence({
    dataDir: dir, component: 'evidence-writer', producerId: 'evidence-writer-bench', tenantId: 'acme', logger,
    configText: 'bench', configFile: 'bench.yaml', softwareVersion: 'bench', log,
  });
  const store = await ChdbEvidenceStore.open({ dataDir: join(dir, 'store'), retention: { days: 365 } });
  await store.migrate();
  const batches: BatchStats[] = [];
  const writer = new EvidenceWriter({ log, store, emitter: rt.emitter, logger, ...(BATCH === undefined ? {} : { maxBatchRecords: BATCH }), onBatch: (b) => batches.push(b) });
  return {
    log, store, writer, batches,
    async close() {
      await writer.stop();
      await rt.close('shutdown');
      await log.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function source(seed: number) {
  const startUs = Date.now() * 1000 - DAY_US;
  return generateEvents({ count: Number.MAX_SAFE_INTEGER, seed, startUs, spanUs: DAY_US, cardRate: 0.1, cardPool: 1000, gateways: 4 });
}

async function appendN(log: FileEventLog, gen: ReturnType<typeof source>, n: number): Promise<void> {
  const chunk: { key: string; value: Uint8Array }[] = [];
  const pending: Promise<unknown>[] = [];
  for (let i = 0; i < n; i++) {
    const g = gen.next().value as { event: { correlation: { sessionId: string } }; bytes: Uint8Array };
    chunk.push({ key: g.event.correlation.sessionId, value: g.bytes });
    if (chunk.length === 100) pending.push(log.append(chunk.splice(0)));
  }
  if (chunk.length > 0) pending.push(log.append(chunk.splice(0)));
  await Promise.all(pending);
}

async function sustained(): Promise<void> {
  const b = await setup('sustained');
  await b.writer.start();
  const gen = source(7);
  const c0 = cpuUs();
  const l0 = load();
  const t0 = performance.now();
  let sent = 0;
  const tickMs = 20;
  while (performance.now() - t0 < SECONDS * 1000) {
    const due = Math.floor(((performance.now() - t0) / 1000) * RATE) - sent;
    if (due > 0) {
      await appendN(b.log, gen, due);
      sent += due;
    }
    await new Promise((r) => setTimeout(r, tickMs));
  }
  const sendMs = performance.now() - t0;
  await b.writer.idle();
  const totalMs = performance.now() - t0;
  const lags = b.batches.map((x) => x.appendToQueryableMaxMs);
  const lat = b.batches.map((x) => x.latencyMs);
  const rows = Number((await b.store.query('SELECT count() FROM events')).rows[0]?.[0]);
  const cpu = (cpuUs() - c0) / Math.max(1, b.writer.stats.records);
  console.log(`| sustained, offered ${RATE}/s for ${SECONDS} s | ${sent} | ${(sent / (sendMs / 1000)).toFixed(0)} | ${(b.writer.stats.records / (totalMs / 1000)).toFixed(0)} | ${pct(lags, 50)} | ${pct(lags, 99)} | ${Math.max(...lags)} | ${pct(lat, 50)} | ${b.batches.length} | ${(totalMs - sendMs).toFixed(0)} | ${rows} | ${b.writer.stats.findingsEmitted} | ${cpu.toFixed(1)} (incl. generation) | ${l0} → ${load()} |`);
  await b.close();
}

async function backlog(): Promise<void> {
  const b = await setup('backlog');
  const gen = source(11);
  await appendN(b.log, gen, BACKLOG);
  const c0 = cpuUs();
  const m0 = mainThreadCpuUs();
  const l0 = load();
  const t0 = performance.now();
  await b.writer.start();
  await b.writer.idle();
  const ms = performance.now() - t0;
  const cpu = (cpuUs() - c0) / Math.max(1, b.writer.stats.records);
  const mainCpu = (mainThreadCpuUs() - m0) / Math.max(1, b.writer.stats.records);
  const lat = b.batches.map((x) => x.latencyMs);
  console.log(`| backlog drain, ${BACKLOG} events | ${b.writer.stats.records} | — | ${(b.writer.stats.records / (ms / 1000)).toFixed(0)} | — | — | — | ${pct(lat, 50)} | ${b.batches.length} | — | ${Number((await b.store.query('SELECT count() FROM events')).rows[0]?.[0])} | ${b.writer.stats.findingsEmitted} | ${cpu.toFixed(1)} (main thread ${mainCpu.toFixed(1)}) | ${l0} → ${load()} |`);
  await b.close();
}

console.log(`evidence writer bench: ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}, partitions ${PARTITIONS}, durability ${DURABILITY}, batch ${BATCH ?? 'writer default'}, ${new Date().toISOString()}`);
console.log('| run | events | offered/s achieved by producer | log→store events/s | lag p50 ms | lag p99 ms | lag max ms | batch latency p50 ms | batches | drain after producer stopped ms | rows in store | findings | process CPU µs/event | load average |');
console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
if (ONLY !== 'sustained') for (let i = 0; i < DRAINS; i++) await backlog();
if (ONLY !== 'drain') await sustained();
