/**
 * Distributed mode, end to end (issue #4): Kafka → evidence writer → ClickHouse engine, the gateway's
 * CPU with the Kafka producer, and kafkajs versus @platformatic/kafka on the evidence workload.
 *
 *   node --import tsx bench/distributed.bench.ts [--parts pipeline,gateway,clients] [--seconds 60]
 *        [--rate 20000] [--stores server,chdb] [--partitions 12] [--batch 10000] [--chunk 20]
 *        [--gw-duration 10] [--gw-runs 3] [--client-messages 100000] [--client-batches 250,1000]
 *        [--client-runs 3] [--profile] [--cache DIR]
 *
 * One real single-node Kafka 4.4 broker (test/harness/kafka.ts startKafka(), or KAFKA_BROKERS) for
 * all parts. Every figure is printed with the load average (1/5/15 min) when it was taken.
 *
 * 1. pipeline (per --stores entry): a producer PROCESS (this script, --role producer) appends
 *    realistic, correctly chained evidence events (the store's generator: newEvent, chainEvent, the
 *    real Avro codec, 4 gateways + console + processor chains, checkpoints every 256 events) to a
 *    fresh events topic (--partitions, lz4, acks=all, idempotent: the adapter's defaults) at a fixed
 *    offered rate for --seconds, in append() calls of --chunk records (the adapter coalesces them as
 *    it does a gateway's concurrent calls). The events are generated before the window (in two
 *    generator processes, cached under --cache): at ≈ 65 µs of CPU per event the generator could not
 *    keep 20k/s on this machine, and its cost is the gateway's, not the pipeline's.
 *    Meanwhile an EvidenceWriter (this process) consumes the topic as its consumer group into the store:
 *      - server: ClickHouseServerStore over HTTP against test/harness/chdb-http.ts (the ClickHouse
 *        engine in its own process behind the HTTP interface), as distributed mode runs it;
 *      - chdb: the in-process ChdbEvidenceStore (embedded engine, writer and engine share a process).
 *    Reported: rows counted in the store at the end, events/s over the window and per second,
 *    the drain after the producer stopped, lag = store insert completion − the record's appendTimeMs
 *    (broker LogAppendTime) for EVERY record (p50/p99/max), produce call latency, and CPU per event of
 *    each process (writer, producer, broker JVM, ClickHouse engine process) from /proc.
 *    --profile: a V8 CPU profile of the writer process over the window (self time by component).
 * 2. gateway: `attest gateway` processes (auth + masking + signed evidence, as bench/gateway.bench.ts
 *    configures them), one with the file log and one with log.kind kafka, in front of the Messages
 *    API stand-in, loaded by autocannon (its own process) at c=1 and c=16, interleaved rounds;
 *    CPU µs/request of the gateway process from /proc/PID/stat, medians of --gw-runs.
 * 3. clients: the same records (the generated events, keyed by session id, --partitions partitions,
 *    no compression), sent in sequential batches of --client-batches records, one request in flight
 *    (how the adapter sends), idempotent, acks=all: kafkajs, raw @platformatic/kafka, and the adapter
 *    itself (none, lz4). msgs/s, client CPU µs/msg, broker CPU µs/msg; median of interleaved runs.
 */
import { fork, spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, readdirSync, writeSync, mkdtempSync, rmSync, writeFileSync, copyFileSync, chmodSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Session } from 'node:inspector';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const SELF = fileURLToPath(import.meta.url);

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? dflt) : dflt;
}
const flag = (name: string): boolean => process.argv.includes(`--${name}`);
const ROLE = arg('role', 'main');
const SECONDS = Number(arg('seconds', '60'));
const RATE = Number(arg('rate', '20000'));
const PARTITIONS = Number(arg('partitions', '12'));
const BATCH = Number(arg('batch', '10000'));
const CHUNK = Number(arg('chunk', '20'));
const CACHE = arg('cache', join(tmpdir(), 'attest-distbench-cache'));
const DAY_US = 86_400_000_000;
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const loadavg = (): string => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const err = (s: string): void => void process.stderr.write(`[distributed.bench ${new Date().toISOString().slice(11, 19)} load ${loadavg()}] ${s}\n`);
const median = (xs: number[]): number => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[s.length >> 1]! : (s[(s.length >> 1) - 1]! + s[s.length >> 1]!) / 2;
};
function pctSorted(s: ArrayLike<number>, p: number): number {
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}
const f0 = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '–');
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '–');

// ------------------------------------------------------------------------------------------------
// /proc CPU of processes

function cpuMicros(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1e6) / CLK_TCK;
  } catch {
    return NaN;
  }
}
function childPids(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      try {
        out.push(...readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
      } catch {
        /* gone */
      }
    }
  } catch {
    /* gone */
  }
  return out;
}
function comm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}
/** The broker JVM when this process started it (a `java` child), else undefined (KAFKA_BROKERS). */
function brokerPid(): number | undefined {
  return childPids(process.pid).find((p) => comm(p) === 'java');
}

// ------------------------------------------------------------------------------------------------
// Fixtures: generated chained events, cached as [u16 keyLen][key][u32 len][bytes]…

interface Fixture {
  key: string;
  value: Buffer;
}

function fixtureFile(seed: number, count: number): string {
  return join(CACHE, `events-seed${seed}-n${count}.bin`);
}

async function genRole(): Promise<void> {
  const { generateEvents } = await import('../services/common/src/store/testing');
  const seed = Number(arg('seed', '1'));
  const count = Number(arg('count', '1000'));
  const out = arg('out', '');
  const tmp = `${out}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w');
  const startUs = Date.now() * 1000 - DAY_US;
  let buf = Buffer.allocUnsafe(8 << 20);
  let at = 0;
  const flush = () => {
    writeSync(fd, buf, 0, at);
    at = 0;
  };
  let n = 0;
  for (const g of generateEvents({ count, seed, startUs, spanUs: DAY_US, cardRate: 0.1, cardPool: 1000, gateways: 4 })) {
    const key = Buffer.from(g.event.correlation.sessionId);
    const need = 6 + key.length + g.bytes.length;
    if (at + need > buf.length) flush();
    if (need > buf.length) buf = Buffer.allocUnsafe(need * 2);
    buf.writeUInt16LE(key.length, at);
    key.copy(buf, at + 2);
    buf.writeUInt32LE(g.bytes.length, at + 2 + key.length);
    buf.set(g.bytes, at + 6 + key.length);
    at += need;
    if (++n % 100_000 === 0) process.stderr.write(`[gen ${seed}] ${n}/${count}\n`);
  }
  flush();
  closeSync(fd);
  const { renameSync } = await import('node:fs');
  renameSync(tmp, out);
}

function readFixtures(file: string, limit: number): Fixture[] {
  const b = readFileSync(file);
  const out: Fixture[] = [];
  let at = 0;
  while (at < b.length && out.length < limit) {
    const kl = b.readUInt16LE(at);
    const key = b.toString('utf8', at + 2, at + 2 + kl);
    const vl = b.readUInt32LE(at + 2 + kl);
    out.push({ key, value: b.subarray(at + 6 + kl, at + 6 + kl + vl) });
    at += 6 + kl + vl;
  }
  return out;
}

/** Two streams (seeds 101, 102: distinct producer epochs), each ≥ `each` events; generated once and cached. */
async function ensureFixtures(each: number): Promise<string[]> {
  mkdirSync(CACHE, { recursive: true });
  const files: string[] = [];
  const jobs: Promise<void>[] = [];
  for (const seed of [101, 102]) {
    const have = readdirSync(CACHE)
      .map((f) => new RegExp(`^events-seed${seed}-n(\\d+)\\.bin$`).exec(f))
      .filter((m): m is RegExpExecArray => m !== null && Number(m[1]) >= each)
      .sort((a, b) => Number(a[1]) - Number(b[1]))[0];
    if (have) {
      files.push(join(CACHE, have[0]));
      continue;
    }
    const out = fixtureFile(seed, each);
    files.push(out);
    err(`generating ${each} chained events for seed ${seed} into ${out} (once; ≈ 65 µs CPU per event)`);
    const child = fork(SELF, ['--role', 'gen', '--seed', String(seed), '--count', String(each), '--out', out], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    jobs.push(
      new Promise((res, rej) => {
        child.on('exit', (code) => (code === 0 ? res() : rej(new Error(`generator ${seed} exited ${code}`))));
      }),
    );
  }
  const t0 = performance.now();
  await Promise.all(jobs);
  if (jobs.length) err(`generated in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  return files;
}

/** Interleaves the two streams in chunks (each stream stays in its own order). */
function interleave(streams: Fixture[][], n: number, chunk = 50): Fixture[] {
  const out: Fixture[] = [];
  const at = streams.map(() => 0);
  while (out.length < n) {
    let moved = false;
    for (let s = 0; s < streams.length && out.length < n; s++) {
      const src = streams[s]!;
      const end = Math.min(src.length, at[s]! + chunk, at[s]! + (n - out.length));
      for (let i = at[s]!; i < end; i++) out.push(src[i]!);
      moved ||= end > at[s]!;
      at[s] = end;
    }
    if (!moved) break;
  }
  return out;
}

function loadWorkload(files: string[], n: number): Fixture[] {
  const each = Math.ceil(n / files.length);
  return interleave(files.map((f) => readFixtures(f, each)), n);
}

// ------------------------------------------------------------------------------------------------
// Producer role (child process): paced appends through the Kafka adapter

interface ProducerReport {
  offered: number;
  acked: number;
  failed: number;
  firstError?: string;
  sendMs: number;
  ackMs: number;
  cpuUs: number;
  produceRequests: number;
  callP50Ms: number;
  callP99Ms: number;
  callMaxMs: number;
  behindMaxEvents: number;
}

async function producerRole(): Promise<void> {
  const { openKafkaEventLog } = await import('../services/common/src/log/kafka-log');
  const brokers = arg('brokers', '').split(',');
  const topic = arg('topic', '');
  const total = Math.round(RATE * SECONDS);
  const events = loadWorkload(arg('files', '').split(','), total);
  const log = await openKafkaEventLog({ brokers, topic, clientId: 'bench-producer', partitions: PARTITIONS });
  const send = (m: unknown) => process.send!(m);
  send({ type: 'ready', events: events.length });
  await new Promise<void>((r) => process.once('message', () => r()));
  const lat: number[] = [];
  let acked = 0;
  let failed = 0;
  let firstError: string | undefined;
  let behindMax = 0;
  const pending = new Set<Promise<void>>();
  const cpu0 = process.cpuUsage();
  const req0 = log.stats.produceRequests;
  const t0 = performance.now();
  let sent = 0;
  while (sent < events.length) {
    const elapsed = performance.now() - t0;
    if (elapsed >= SECONDS * 1000) break;
    const due = Math.min(events.length, Math.floor((elapsed / 1000) * RATE)) - sent;
    for (let k = 0; k < due; k += CHUNK) {
      const recs = events.slice(sent, sent + Math.min(CHUNK, due - k)).map((e) => ({ key: e.key, value: e.value }));
      sent += recs.length;
      const s = performance.now();
      const p: Promise<void> = log.append(recs).then(
        () => {
          acked += recs.length;
          lat.push(performance.now() - s);
        },
        (e: unknown) => {
          failed += recs.length;
          firstError ??= (e as { code?: string }).code ?? String(e);
        },
      );
      pending.add(p);
      void p.finally(() => pending.delete(p));
    }
    behindMax = Math.max(behindMax, sent - acked - failed);
    await sleep(2);
  }
  const sendMs = performance.now() - t0;
  await Promise.all([...pending]);
  const ackMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  lat.sort((a, b) => a - b);
  const rep: ProducerReport = {
    offered: sent, acked, failed, ...(firstError ? { firstError } : {}), sendMs, ackMs,
    cpuUs: cpu.user + cpu.system, produceRequests: log.stats.produceRequests - req0,
    callP50Ms: pctSorted(lat, 50), callP99Ms: pctSorted(lat, 99), callMaxMs: lat[lat.length - 1] ?? NaN, behindMaxEvents: behindMax,
  };
  await log.close();
  send({ type: 'done', report: rep });
  process.disconnect();
}

// ------------------------------------------------------------------------------------------------
// CPU profile of this process (inspector), summarised by component

interface ProfNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
function startProfile(): { stop(): Promise<string[]> } {
  const s = new Session();
  s.connect();
  const post = <T>(m: string, p?: object) => new Promise<T>((res, rej) => s.post(m, p ?? {}, (e, r) => (e ? rej(e) : res(r as T))));
  const started = post('Profiler.enable').then(() => post('Profiler.setSamplingInterval', { interval: 1000 })).then(() => post('Profiler.start'));
  return {
    async stop() {
      await started;
      const { profile } = await post<{ profile: { nodes: ProfNode[]; samples: number[]; timeDeltas: number[] } }>('Profiler.stop');
      s.disconnect();
      const byId = new Map(profile.nodes.map((n) => [n.id, n]));
      const comp = new Map<string, number>();
      const fn = new Map<string, number>();
      let busy = 0;
      let idle = 0;
      for (let i = 0; i < profile.samples.length; i++) {
        const n = byId.get(profile.samples[i]!);
        const dt = (profile.timeDeltas[i + 1] ?? profile.timeDeltas[i] ?? 0) / 1000;
        if (!n) continue;
        if (n.callFrame.functionName === '(idle)' || n.callFrame.functionName === '(program)') {
          idle += dt;
          continue;
        }
        busy += dt;
        const u = n.callFrame.url;
        const nm = u.lastIndexOf('node_modules/');
        const c = !u
          ? n.callFrame.functionName.startsWith('(') ? n.callFrame.functionName : '(native: JSON, Buffer, crypto, syscalls…)'
          : u.startsWith('node:')
            ? `node:${/^node:(?:internal\/)?([^/]+)/.exec(u)?.[1] ?? u}`
            : nm >= 0
              ? `npm:${u.slice(nm + 13).split('/').slice(0, u.slice(nm + 13).startsWith('@') ? 2 : 1).join('/')}`
              : u.replace(/^file:\/\//, '').replace(ROOT + '/', '');
        comp.set(c, (comp.get(c) ?? 0) + dt);
        const k = `${n.callFrame.functionName || '(anonymous)'} ${u.replace(/^file:\/\//, '').replace(ROOT + '/', '').replace(/.*node_modules\//, '')}`;
        fn.set(k, (fn.get(k) ?? 0) + dt);
      }
      const top = (m: Map<string, number>, k: number) => [...m].sort((a, b) => b[1] - a[1]).slice(0, k);
      return [
        `writer process main thread: busy ${f0(busy)} ms, idle/program ${f0(idle)} ms (1 ms sampling)`,
        '| component (self time) | ms | % busy |',
        '|---|---:|---:|',
        ...top(comp, 14).map(([k, ms]) => `| ${k} | ${f0(ms)} | ${f1((100 * ms) / busy)} |`),
        '',
        '| function (self time) | ms | % busy |',
        '|---|---:|---:|',
        ...top(fn, 16).map(([k, ms]) => `| \`${k.slice(0, 110)}\` | ${f0(ms)} | ${f1((100 * ms) / busy)} |`),
      ];
    },
  };
}

// ------------------------------------------------------------------------------------------------
// Part 1: the sustained pipeline

async function pipeline(storeKind: 'server' | 'chdb', brokers: string[], files: string[]): Promise<string[]> {
  const pino = (await import('pino')).default;
  const { openKafkaEventLog } = await import('../services/common/src/log/kafka-log');
  const { openEvidence } = await import('../services/common/src/evidence/producer');
  const { EvidenceWriter, dedupToken } = await import('../services/processors/src/evidence-writer');
  const { ClickHouseServerStore, ChdbEvidenceStore } = await import('../services/common/src/store');
  type EvidenceStore = import('../services/common/src/store').EvidenceStore;
  type EventLog = import('../services/common/src/log').EventLog;
  type LogConsumer = import('../services/common/src/log').LogConsumer;
  const { startChdbHttp } = await import('../test/harness/chdb-http');

  // Counts the writer's findings by code (it logs one warn line per finding).
  const findingCodes = new Map<string, number>();
  const logger = pino({ level: 'warn' }, {
    write(line: string) {
      const m = /"code":"([a-z_]+)"/.exec(line);
      const k = /"finding":/.test(line) ? (m?.[1] ?? 'unknown') : `log:${m?.[1] ?? /"msg":"([^"]{0,60})/.exec(line)?.[1] ?? '?'}`;
      findingCodes.set(k, (findingCodes.get(k) ?? 0) + 1);
    },
  });
  const dir = mkdtempSync(join(tmpdir(), `attest-distbench-${storeKind}-`));
  const topic = `distbench-${randomBytes(4).toString('hex')}.events`;
  const log = await openKafkaEventLog({ brokers, topic, clientId: 'bench-writer', partitions: PARTITIONS, createTopic: { replicationFactor: 1 } });
  const harness = storeKind === 'server' ? await startChdbHttp() : undefined;
  let store: EvidenceStore;
  if (harness) {
    store = await ClickHouseServerStore.open({
      url: harness.url, username: harness.writer.username, password: harness.writer.password,
      readonlyUsername: harness.reader.username, readonlyPassword: harness.reader.password,
      database: `attest_distbench_${randomBytes(4).toString('hex')}`, retention: { days: 365 },
    });
  } else {
    store = await ChdbEvidenceStore.open({ dataDir: join(dir, 'store'), retention: { days: 365 } });
  }
  await store.migrate();
  const rt = await openEvidence({
    dataDir: dir, component: 'evidence-writer', producerId: 'evidence-writer-bench', tenantId: 'acme', logger,
    configText: 'bench', configFile: 'bench.yaml', softwareVersion: 'bench', log,
  });

  // Lag taps: the appendTimeMs of each polled batch's records, keyed by the batch's dedup token (the
  // writer polls batch N+1 while batch N is being stored), timed when the store confirms them.
  const lags = new Float64Array(Math.round(RATE * SECONDS) + 1_000_000);
  let nLag = 0;
  const polled = new Map<string, number[]>();
  let insertMs = 0;
  let inserts = 0;
  let polledRecords = 0;
  const tappedStore = new Proxy(store, {
    get(t, p) {
      if (p === 'insertEvents') {
        return async (...a: Parameters<EvidenceStore['insertEvents']>) => {
          const s = performance.now();
          const r = await t.insertEvents(...a);
          insertMs += performance.now() - s;
          inserts++;
          const now = Date.now();
          for (const at of polled.get(a[1]) ?? []) if (nLag < lags.length) lags[nLag++] = now - at;
          polled.delete(a[1]);
          return r;
        };
      }
      const v = Reflect.get(t, p, t) as unknown;
      return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(t) : v;
    },
  });
  const tapConsumer = (c: LogConsumer): LogConsumer =>
    new Proxy(c, {
      get(t, p) {
        if (p === 'poll') {
          return async (...a: Parameters<LogConsumer['poll']>) => {
            const recs = await t.poll(...a);
            if (recs.length > 0) {
              polled.set(dedupToken(t.group, recs), recs.map((r) => r.appendTimeMs));
              polledRecords += recs.length;
            }
            return recs;
          };
        }
        const v = Reflect.get(t, p, t) as unknown;
        return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(t) : v;
      },
    });
  const tappedLog = new Proxy(log, {
    get(t, p) {
      if (p === 'consumer') return async (...a: Parameters<EventLog['consumer']>) => tapConsumer(await t.consumer(...a));
      const v = Reflect.get(t, p, t) as unknown;
      return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(t) : v;
    },
  });

  const writer = new EvidenceWriter({ log: tappedLog, store: tappedStore, emitter: rt.emitter, logger, maxBatchRecords: BATCH });
  await writer.start();
  await writer.idle(); // the emitter's own start events

  const producer: ChildProcess = fork(
    SELF,
    ['--role', 'producer', '--brokers', brokers.join(','), '--topic', topic, '--rate', String(RATE), '--seconds', String(SECONDS), '--partitions', String(PARTITIONS), '--chunk', String(CHUNK), '--files', files.join(',')],
    { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
  );
  const messages: { type: string; report?: ProducerReport }[] = [];
  const waiters: (() => void)[] = [];
  producer.on('message', (m) => {
    messages.push(m as { type: string });
    for (const w of waiters.splice(0)) w();
  });
  const next = async (type: string) => {
    for (;;) {
      const m = messages.find((x) => x.type === type);
      if (m) return m;
      if (producer.exitCode !== null) throw new Error(`producer exited ${producer.exitCode} before '${type}'`);
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 1000);
      });
    }
  };
  await next('ready');

  const base = { records: writer.stats.records, written: writer.stats.eventsWritten };
  const pids = { writer: process.pid, producer: producer.pid!, broker: brokerPid(), engine: harness?.pid };
  const cpu0 = { writer: cpuMicros(pids.writer), producer: cpuMicros(pids.producer), broker: pids.broker ? cpuMicros(pids.broker) : NaN, engine: pids.engine ? cpuMicros(pids.engine) : NaN };
  const load0 = loadavg();
  const prof = flag('profile') ? startProfile() : undefined;
  nLag = 0;
  insertMs = 0;
  inserts = 0;
  const batches0 = writer.stats.batches;
  const perSecond: number[] = [];
  let lastRecords = writer.stats.records;
  const ticker = setInterval(() => {
    perSecond.push(writer.stats.records - lastRecords);
    lastRecords = writer.stats.records;
  }, 1000);
  const t0 = performance.now();
  producer.send('go');
  const done = (await next('done')).report!;
  const tSend = performance.now();
  const inWindow = writer.stats.records - base.records;
  const backlogAtStop = writer.stats.lag;
  const cpuWindow = { writer: cpuMicros(pids.writer), producer: cpuMicros(pids.producer), broker: pids.broker ? cpuMicros(pids.broker) : NaN, engine: pids.engine ? cpuMicros(pids.engine) : NaN };
  const loadWindow = loadavg();
  const profile = await prof?.stop();
  const DRAIN_MAX = Number(arg('drain-max', '60'));
  const drained = await Promise.race([writer.idle().then(() => true), sleep(DRAIN_MAX * 1000).then(() => false)]);
  const tIdle = performance.now();
  clearInterval(ticker);
  const cpu1 = { writer: cpuMicros(pids.writer), broker: pids.broker ? cpuMicros(pids.broker) : NaN, engine: pids.engine ? cpuMicros(pids.engine) : NaN };
  const consumed = writer.stats.records - base.records;
  const written = writer.stats.eventsWritten - base.written;
  const rows = Number((await store.query('SELECT count() FROM events')).rows[0]?.[0]);
  const producerRows = Number((await store.query("SELECT count() FROM events WHERE producer LIKE 'gateway-%' OR producer IN ('console-1', 'processor-1')")).rows[0]?.[0]);
  // Acknowledged generated events not in the store when the drain was cut off (stats.lag is only as fresh as the last commit).
  const backlogAtCutoff = drained ? 0 : Math.max(0, done.acked - producerRows);
  const sorted = lags.subarray(0, nLag).sort();
  const windowSecs = (tSend - t0) / 1000;
  const totalSecs = (tIdle - t0) / 1000;
  const steady = perSecond.slice(2, Math.max(2, Math.floor(windowSecs) - 1));
  const pcpu = (a: number, b: number, n: number) => ((b - a) / n);
  const out: string[] = [];
  const label = storeKind === 'server' ? 'ClickHouseServerStore → chdb-http harness (engine in its own process)' : 'ChdbEvidenceStore (engine in the writer process)';
  out.push(`### Pipeline: Kafka → EvidenceWriter → ${label}`, '');
  out.push(`offered ${f0(RATE)}/s for ${SECONDS} s, ${PARTITIONS} partitions, lz4, acks=all; append() calls of ${CHUNK} records from a separate producer process; writer batches ≤ ${BATCH}; load average at start ${load0}, at end of window ${loadWindow}, after drain ${loadavg()}`, '');
  out.push('| figure | value |', '|---|---:|');
  out.push(`| events offered by the producer (acked / failed) | ${f0(done.offered)} (${f0(done.acked)} / ${f0(done.failed)}${done.firstError ? `, ${done.firstError}` : ''}) |`);
  out.push(`| producer offered rate achieved | ${f0(done.offered / (done.sendMs / 1000))}/s |`);
  out.push(`| producer acked rate (acked / time to last ack) | ${f0(done.acked / (done.ackMs / 1000))}/s |`);
  out.push(`| produce: ${f0(done.produceRequests)} requests, records/request | ${f1(done.acked / Math.max(1, done.produceRequests))} |`);
  out.push(`| produce call latency p50 / p99 / max ms | ${f1(done.callP50Ms)} / ${f1(done.callP99Ms)} / ${f1(done.callMaxMs)} |`);
  out.push(`| max events offered but not yet acked | ${f0(done.behindMaxEvents)} |`);
  out.push(`| **into the store during the ${f1(windowSecs)} s window** | **${f0(inWindow / windowSecs)}/s** (${f0(inWindow)}) |`);
  out.push(`| per-second store rate, steady seconds 3..${Math.floor(windowSecs) - 1}: min / median / max | ${f0(Math.min(...steady))} / ${f0(median(steady))} / ${f0(Math.max(...steady))} |`);
  out.push(`| backlog (log end − committed) when the producer stopped | ${f0(backlogAtStop)} |`);
  out.push(drained ? `| drain after the producer stopped | ${f1(totalSecs - windowSecs)} s |` : `| drain after the producer stopped | **cut off after ${DRAIN_MAX} s (--drain-max) with ${f0(backlogAtCutoff)} records not yet stored: their lag is > ${f1(totalSecs - windowSecs)} s and not in the percentiles below** |`);
  out.push(`| **overall: records consumed / (start → writer idle)** | **${f0(consumed / totalSecs)}/s** (${f0(consumed)} in ${f1(totalSecs)} s) |`);
  out.push(`| rows in the store at the end (all / generated producers' / newly written by the writer) | ${f0(rows)} / ${f0(producerRows)} / ${f0(written)} |`);
  out.push(`| findings emitted by the writer (by code) | ${f0(writer.stats.findingsEmitted)} (${[...findingCodes].map(([k, v]) => `${k} ${f0(v)}`).join(', ') || 'none'}) |`);
  out.push(`| **lag append → stored, every record: p50 / p99 / max ms** | **${f0(pctSorted(sorted, 50))} / ${f0(pctSorted(sorted, 99))} / ${f0(sorted[sorted.length - 1] ?? NaN)}** (${f0(nLag)} samples) |`);
  out.push(`| writer batches / mean records per batch / mean insertEvents ms | ${f0(writer.stats.batches - batches0)} / ${f0(consumed / Math.max(1, writer.stats.batches - batches0))} / ${f1(insertMs / Math.max(1, inserts))} |`);
  out.push(`| insertEvents share of the writer's wall time (start → idle) | ${f1((100 * insertMs) / (tIdle - t0))} % |`);
  out.push(`| CPU µs/event in the window: writer process | ${f1(pcpu(cpu0.writer, cpuWindow.writer, Math.max(1, inWindow)))} |`);
  out.push(`| CPU µs/event: producer process (appends only) | ${f1(done.cpuUs / Math.max(1, done.acked))} |`);
  out.push(`| CPU µs/event in the window: Kafka broker JVM | ${f1(pcpu(cpu0.broker, cpuWindow.broker, Math.max(1, done.acked)))} |`);
  if (pids.engine) out.push(`| CPU µs/event in the window: ClickHouse engine process (chdb-http) | ${f1(pcpu(cpu0.engine, cpuWindow.engine, Math.max(1, inWindow)))} |`);
  out.push(`| CPU µs/event start → idle: writer / broker${pids.engine ? ' / engine' : ''} | ${f1(pcpu(cpu0.writer, cpu1.writer, consumed))} / ${f1(pcpu(cpu0.broker, cpu1.broker, consumed))}${pids.engine ? ` / ${f1(pcpu(cpu0.engine, cpu1.engine, consumed))}` : ''} |`);
  out.push(`| all processes' CPU in the window / wall (2 cores = 200 %) | ${f0((100 * ((cpuWindow.writer - cpu0.writer) + (cpuWindow.producer - cpu0.producer) + (cpuWindow.broker - cpu0.broker || 0) + (cpuWindow.engine - cpu0.engine || 0))) / (windowSecs * 1e6))} % |`);
  out.push('', `per-second store rate: ${perSecond.join(' ')}`, '');
  if (profile) out.push(...profile, '');
  out.push(`Targets: ≥ 20,000 events/s through Kafka → ${inWindow / windowSecs >= 20_000 ? '**met**' : '**not met**'} (window); p99 lag ≤ 2 s → ${pctSorted(sorted, 99) <= 2000 ? '**met**' : '**not met**'}.`, '');

  await writer.stop();
  await rt.close('shutdown');
  await log.close();
  await store.close();
  await harness?.stop();
  if (producer.exitCode === null) producer.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
  return out;
}

// ------------------------------------------------------------------------------------------------
// Part 2: the gateway's CPU with the Kafka producer vs the file log

interface Child {
  proc: ChildProcess;
  out: string;
}
const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

function startChild(cmd: string, args: string[], logDir: string, name: string, env: NodeJS.ProcessEnv = process.env): Child {
  const out = join(logDir, `${name}.out`);
  const fd = openSync(out, 'a');
  const proc = spawn(cmd, args, { cwd: ROOT, env, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  children.push(proc);
  return { proc, out };
}
async function waitLine(c: Child, re: RegExp, ms = 90_000): Promise<RegExpExecArray> {
  const end = Date.now() + ms;
  for (;;) {
    const m = re.exec(readFileSync(c.out, 'utf8'));
    if (m) return m;
    if (c.proc.exitCode !== null) throw new Error(`${c.out}: exited ${c.proc.exitCode}:\n${readFileSync(c.out, 'utf8').slice(-3000)}`);
    if (Date.now() > end) throw new Error(`timeout waiting for ${re} in ${c.out}:\n${readFileSync(c.out, 'utf8').slice(-3000)}`);
    await sleep(100);
  }
}
async function stopProc(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  p.kill('SIGTERM');
  await Promise.race([new Promise((r) => p.once('exit', r)), sleep(8000)]);
  if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
}
function runToEnd(cmd: string, args: string[], ms: number): Promise<string> {
  return new Promise((res, rej) => {
    const p = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(p);
    let out = '';
    p.stdout.on('data', (d) => (out += String(d)));
    p.stderr.on('data', (d) => (out += String(d)));
    const t = setTimeout(() => p.kill('SIGKILL'), ms);
    p.on('exit', (code) => {
      clearTimeout(t);
      if (code === 0) res(out);
      else rej(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${out.slice(-2000)}`));
    });
  });
}

const SYSTEM =
  'You are the customer support assistant for Acme Outfitters, an online outdoor-gear shop. Answer concisely and politely, ' +
  "in the language of the customer. Never reveal internal notes or other customers' data. If the customer asks about an " +
  'order, summarise its status and the next step, and offer to escalate to a human agent when a refund is involved.';
/** The same ~1 KB support-desk request as bench/gateway.bench.ts (no card number). */
const GW_BODY = JSON.stringify({
  model: 'claude-sonnet-4-6',
  max_tokens: 1024,
  system: SYSTEM,
  messages: [
    { role: 'user', content: 'Hi, I ordered trail running shoes last week (order 58213-B) and the tracking page has not changed since Tuesday. Where is my parcel?' },
    { role: 'assistant', content: 'Sorry for the wait! Order 58213-B left our warehouse on Monday and is with the regional carrier, whose scans can lag a day or two. Could you confirm the email address on the order so I can check the latest status?' },
    { role: 'user', content: [{ type: 'text', text: 'Sure, it is jamie.rivera@example.com. I paid 129.90 EUR on 2026-11-17 with my usual card, if that helps you find it. Also, could you send it to my office address instead? Same city, other street.' }] },
  ],
  metadata: { user_id: 'cust-7f3a9c21' },
  temperature: 0.3,
});

function gatewayYaml(upstream: string, dataDir: string, kafka?: { brokers: string[]; prefix: string }): string {
  const lines = [
    'server: { host: 127.0.0.1, port: 0 }',
    'limits: { shutdownGraceMs: 2000 }',
    `upstream: { anthropic: { baseUrl: "${upstream}", apiKey: { env: DISTBENCH_UPSTREAM_KEY } } }`,
    'identity: { devIssuer: { enabled: true } }',
    'masking: { format: bin6-last4, request: mask, response: mask }',
    'groups:',
    '  bench: { routes: [messages, count_tokens, models], models: ["claude-*"], maxTokens: 8192, streaming: true }',
    `dataDir: ${dataDir}`,
    'logging: { level: warn }',
  ];
  if (kafka) {
    lines.push(
      'log:',
      '  kind: kafka',
      '  kafka:',
      `    brokers: [${kafka.brokers.join(', ')}]`,
      `    clientId: ${kafka.prefix}`,
      `    topics: { events: "${kafka.prefix}.events", control: "${kafka.prefix}.control", deadLetter: "${kafka.prefix}.dlq" }`,
      `    partitions: ${PARTITIONS}`,
      '    replicationFactor: 1',
      '    minInsyncReplicas: 1',
    );
  }
  return lines.join('\n') + '\n';
}

async function gatewayPart(brokers: string[]): Promise<string[]> {
  const DUR = Number(arg('gw-duration', '10'));
  const RUNS = Number(arg('gw-runs', '3'));
  const tmp = mkdtempSync(join(tmpdir(), 'attest-distbench-gw-'));
  const env = { ...process.env, DISTBENCH_UPSTREAM_KEY: 'sk-ant-bench-not-a-real-key' };
  const out: string[] = [];
  const procs: Child[] = [];
  try {
    const standin = startChild(process.execPath, ['--import', 'tsx', 'test/harness/anthropic-standin-main.ts', '--port', '0', '--reply', 'fixed-json'], tmp, 'standin');
    procs.push(standin);
    const upstream = (await waitLine(standin, /\{"url":"([^"]+)"\}/))[1]!;
    const kinds = ['file', 'kafka'] as const;
    const gws = new Map<string, { child: Child; url: string; cfg: string }>();
    for (const k of kinds) {
      const dataDir = join(tmp, `data-${k}`);
      mkdirSync(dataDir, { recursive: true });
      if (k === 'kafka') {
        copyFileSync(join(tmp, 'data-file', 'dev-issuer.jwk.json'), join(dataDir, 'dev-issuer.jwk.json'));
        chmodSync(join(dataDir, 'dev-issuer.jwk.json'), 0o600);
      }
      const cfg = join(tmp, `attest-${k}.yaml`);
      writeFileSync(cfg, gatewayYaml(upstream, dataDir, k === 'kafka' ? { brokers, prefix: `gwbench-${randomBytes(4).toString('hex')}` } : undefined));
      if (k === 'file') await runToEnd(process.execPath, ['bin/attest.mjs', 'dev-token', '--config', cfg, '--group', 'bench'], 60_000).then((t) => writeFileSync(join(tmp, 'token'), t.trim().split('\n').pop()!.trim()));
      // A topic the gateway has just created can be missing from the broker's metadata for a moment
      // ("topic … does not exist" at start): start it again, as a supervisor would.
      for (let attempt = 1; ; attempt++) {
        const child = startChild(process.execPath, ['bin/attest.mjs', 'gateway', '--config', cfg], tmp, `gateway-${k}-${attempt}`, env);
        procs.push(child);
        try {
          const url = (await waitLine(child, /Attest gateway listening on (http:\/\/\S+)/))[1]!;
          gws.set(k, { child, url, cfg });
          break;
        } catch (e) {
          if (attempt >= 5 || !/does not exist/.test((e as Error).message)) throw e;
          err(`gateway ${k}: ${(e as Error).message.split('\n')[1] ?? ''}; starting it again`);
          await sleep(1000);
        }
      }
    }
    const token = readFileSync(join(tmp, 'token'), 'utf8').trim();
    if (!/^[\w-]+\.[\w-]+\.[\w-]+$/.test(token)) throw new Error(`no dev token: ${token.slice(0, 100)}`);
    const bodyFile = join(tmp, 'body.json');
    writeFileSync(bodyFile, GW_BODY);
    const load = async (url: string, c: number, secs: number) => {
      const args = [join(ROOT, 'node_modules/autocannon/autocannon.js'), '-c', String(c), '-d', String(secs), '-m', 'POST', '-i', bodyFile, '-j',
        '-H', 'content-type=application/json', '-H', 'anthropic-version=2023-06-01', '-H', `authorization=Bearer ${token}`, `${url}/v1/messages`];
      const o = await runToEnd(process.execPath, args, (secs + 60) * 1000);
      const r = JSON.parse(o.slice(o.indexOf('{'))) as { requests: { total: number }; latency: { p50: number; p99: number }; duration: number; errors: number; timeouts: number; non2xx: number };
      return r;
    };
    // Sanity: one request through each.
    for (const [k, g] of gws) {
      const res = await fetch(`${g.url}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', authorization: `Bearer ${token}` }, body: GW_BODY });
      if (res.status !== 200) throw new Error(`gateway ${k}: ${res.status} ${await res.text()}`);
    }
    for (const g of gws.values()) await load(g.url, 16, 3); // warm-up
    const res = new Map<string, { cpu: number; rps: number; p50: number; p99: number; errors: number; load: string }[]>();
    for (let r = 0; r < RUNS; r++) {
      for (const c of [1, 16]) {
        for (const [k, g] of gws) {
          const pid = g.child.proc.pid!;
          const a = cpuMicros(pid);
          const l = await load(g.url, c, DUR);
          const cpu = (cpuMicros(pid) - a) / Math.max(1, l.requests.total);
          const row = { cpu, rps: l.requests.total / l.duration, p50: l.latency.p50 * 1000, p99: l.latency.p99 * 1000, errors: l.errors + l.timeouts + l.non2xx, load: loadavg() };
          res.set(`${k}\t${c}`, [...(res.get(`${k}\t${c}`) ?? []), row]);
          err(`gateway ${k} c=${c} run ${r + 1}: ${f1(cpu)} CPU µs/req, ${f0(row.rps)} req/s, p50 ${f0(row.p50)} µs, errors ${row.errors}`);
        }
      }
    }
    out.push('### Gateway CPU per request: Kafka producer vs file log (same run)', '');
    out.push(`\`attest gateway\` processes (dev-issuer JWT auth, masking, signed evidence; log level warn) in front of the fixed-JSON stand-in; autocannon (its own process) for ${DUR} s per measurement, ${RUNS} interleaved rounds, medians; CPU = utime+stime of the gateway process from /proc/PID/stat / requests completed. Kafka: ${PARTITIONS} partitions, lz4, acks=all, idempotent, replication 1 (one broker). autocannon's latency has 1 ms resolution.`, '');
    out.push('| evidence log | c | CPU µs/req | req/s | p50 µs | p99 µs | errors | load average (per run) |', '|---|---:|---:|---:|---:|---:|---:|---|');
    for (const c of [1, 16]) {
      for (const k of kinds) {
        const rs = res.get(`${k}\t${c}`) ?? [];
        out.push(`| ${k} | ${c} | ${f1(median(rs.map((x) => x.cpu)))} | ${f0(median(rs.map((x) => x.rps)))} | ${f0(median(rs.map((x) => x.p50)))} | ${f0(median(rs.map((x) => x.p99)))} | ${rs.reduce((a, x) => a + x.errors, 0)} | ${rs.map((x) => x.load.split(' ')[0]).join(', ')} |`);
      }
    }
    const kc = (c: number) => median((res.get(`kafka\t${c}`) ?? []).map((x) => x.cpu));
    const fc = (c: number) => median((res.get(`file\t${c}`) ?? []).map((x) => x.cpu));
    out.push('', `Kafka / file CPU per request: c=1 ${(kc(1) / fc(1)).toFixed(2)}×, c=16 ${(kc(16) / fc(16)).toFixed(2)}×. Target ≤ 150 µs/request with the Kafka producer: c=1 ${kc(1) <= 150 ? '**met**' : '**not met**'}, c=16 ${kc(16) <= 150 ? '**met**' : '**not met**'}. bench/RESULTS.md (file log, wrk): 1,116 µs c=1, 557 µs c=16.`, '');
  } finally {
    for (const p of procs.reverse()) await stopProc(p.proc);
    rmSync(tmp, { recursive: true, force: true });
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// Part 3: kafkajs vs @platformatic/kafka vs the adapter on the evidence records

async function clientsPart(brokers: string[], files: string[]): Promise<string[]> {
  const { Kafka, Partitioners, logLevel, CompressionTypes } = await import('kafkajs');
  const { Admin, ProduceAcks, Producer } = await import('@platformatic/kafka');
  const { openKafkaEventLog } = await import('../services/common/src/log/kafka-log');
  const N = Number(arg('client-messages', '100000'));
  const BATCHES = arg('client-batches', '250,1000').split(',').map(Number);
  const RUNS = Number(arg('client-runs', '3'));
  const recs = loadWorkload(files, N);
  const avg = recs.reduce((a, r) => a + r.value.length, 0) / recs.length;
  const kjs = new Kafka({ clientId: 'distbench', brokers, logLevel: logLevel.ERROR });
  const admin = new Admin({ clientId: 'distbench', bootstrapBrokers: brokers });
  const bpid = brokerPid();
  type Sender = { send(batch: Fixture[]): Promise<unknown>; close(): Promise<void> };
  const clients: Record<string, (topic: string) => Promise<Sender>> = {
    'kafkajs 2.2.4 (none)': async (topic) => {
      const p = kjs.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: Partitioners.DefaultPartitioner });
      await p.connect();
      return { send: (b) => p.send({ topic, acks: -1, compression: CompressionTypes.None, messages: b.map((r) => ({ key: r.key, value: r.value })) }), close: () => p.disconnect() };
    },
    '@platformatic/kafka 1.35 raw (none)': async (topic) => {
      const p = new Producer({ clientId: 'distbench', bootstrapBrokers: brokers, idempotent: true, acks: ProduceAcks.ALL });
      return { send: (b) => p.send({ messages: b.map((r) => ({ topic, key: Buffer.from(r.key), value: r.value })) }), close: () => p.close() };
    },
    'adapter openKafkaEventLog (none)': async (topic) => {
      const l = await openKafkaEventLog({ brokers, topic, clientId: 'distbench', partitions: PARTITIONS, compression: 'none' });
      return { send: (b) => l.append(b), close: () => l.close() };
    },
    'adapter openKafkaEventLog (lz4, default)': async (topic) => {
      const l = await openKafkaEventLog({ brokers, topic, clientId: 'distbench', partitions: PARTITIONS, compression: 'lz4' });
      return { send: (b) => l.append(b), close: () => l.close() };
    },
  };
  const res = new Map<string, { rate: number; cpu: number; broker: number; load: string }[]>();
  try {
    for (let r = 0; r < RUNS; r++) {
      for (const B of BATCHES) {
        for (const [name, make] of Object.entries(clients)) {
          const topic = `distbench-clients-${randomUUID()}`;
          await admin.createTopics({ topics: [topic], partitions: PARTITIONS, replicas: 1 });
          let s: Sender | undefined;
          for (let attempt = 1; s === undefined; attempt++) {
            // A new topic's metadata and leaders take a moment to reach every client.
            try {
              const x = await make(topic);
              try {
                await x.send(recs.slice(0, 10));
              } catch (e) {
                await x.close().catch(() => undefined);
                throw e;
              }
              s = x;
            } catch (e) {
              if (attempt >= 20) throw e;
              await sleep(500);
            }
          }
          const c0 = process.cpuUsage();
          const b0 = bpid ? cpuMicros(bpid) : NaN;
          const t0 = performance.now();
          let ok = true;
          try {
            for (let i = 0; i < recs.length; i += B) await s.send(recs.slice(i, i + B));
          } catch (e) {
            ok = false;
            err(`${name} batch ${B}: FAILED ${(e as Error).message}`);
          }
          const secs = (performance.now() - t0) / 1000;
          const c = process.cpuUsage(c0);
          const row = { rate: recs.length / secs, cpu: (c.user + c.system) / recs.length, broker: ((bpid ? cpuMicros(bpid) : NaN) - b0) / recs.length, load: loadavg() };
          await s.close().catch(() => undefined);
          await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
          if (!ok) continue;
          res.set(`${name}\t${B}`, [...(res.get(`${name}\t${B}`) ?? []), row]);
          err(`clients run ${r + 1} ${name} batch ${B}: ${f0(row.rate)} msgs/s, ${f1(row.cpu)} client CPU µs/msg, broker ${f1(row.broker)} µs/msg`);
        }
      }
    }
  } finally {
    await admin.close();
  }
  const out: string[] = [];
  out.push('### Kafka clients on the evidence workload', '');
  out.push(`${f0(N)} generated evidence events (avg ${f0(avg)} B, keyed by session id), ${PARTITIONS} partitions, idempotent, acks=all, sequential batches (one request in flight, as the adapter sends); median of ${RUNS} interleaved runs, each on a fresh topic. Client CPU = this process's CPU / messages; broker CPU = the broker JVM's.`, '');
  out.push('| client | records per send | msgs/s | client CPU µs/msg | broker CPU µs/msg | load average (per run) |', '|---|---:|---:|---:|---:|---|');
  for (const B of BATCHES) {
    for (const name of Object.keys(clients)) {
      const rs = res.get(`${name}\t${B}`) ?? [];
      out.push(`| ${name} | ${B} | ${rs.length ? f0(median(rs.map((x) => x.rate))) : 'failed'} | ${f1(median(rs.map((x) => x.cpu)))} | ${f1(median(rs.map((x) => x.broker)))} | ${rs.map((x) => x.load.split(' ')[0]).join(', ')} |`);
    }
  }
  out.push('');
  return out;
}

// ------------------------------------------------------------------------------------------------

/** CPU µs this process needs for a fixed piece of work (SHA-256 of 64 MiB + a JS loop): how slow CPU time is right now. */
function calibrate(): string {
  const { createHash } = require('node:crypto') as typeof import('node:crypto');
  const buf = Buffer.alloc(1 << 20, 7);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const h = createHash('sha256');
  for (let i = 0; i < 64; i++) h.update(buf);
  h.digest();
  let x = 0;
  for (let i = 0; i < 50_000_000; i++) x = (x + i * 31) | 0;
  const c = process.cpuUsage(c0);
  return `calibration (SHA-256 of 64 MiB + 50M-step JS loop): ${f0((c.user + c.system) / 1000)} ms CPU, ${f0(performance.now() - t0)} ms wall${x === 1 ? '' : ''}, load ${loadavg()}`;
}

async function main(): Promise<void> {
  const parts = arg('parts', 'pipeline,gateway,clients').split(',');
  const stores = arg('stores', 'server,chdb').split(',') as ('server' | 'chdb')[];
  const header = `# Distributed-mode bench — ${new Date().toISOString()}, ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}; load average at start ${loadavg()}`;
  console.log(header);
  console.log(`command: node --import tsx bench/distributed.bench.ts ${process.argv.slice(2).join(' ')}\n`);
  console.log(`${calibrate()}\n`);
  const need = Math.max(parts.includes('pipeline') ? Math.round(RATE * SECONDS) : 0, parts.includes('clients') ? Number(arg('client-messages', '100000')) : 0);
  const files = need > 0 ? await ensureFixtures(Math.ceil(need / 2) + 1000) : [];
  const { startKafka } = await import('../test/harness/kafka');
  const t0 = performance.now();
  const broker = await startKafka();
  err(`broker ${broker.brokers.join(',')} up in ${((performance.now() - t0) / 1000).toFixed(1)} s (pid ${brokerPid() ?? 'external'})`);
  try {
    if (parts.includes('pipeline')) {
      for (const s of stores) {
        err(`pipeline with the ${s} store: ${RATE}/s for ${SECONDS} s`);
        console.log((await pipeline(s, broker.brokers, files)).join('\n'));
      }
    }
    if (parts.includes('gateway')) {
      err('gateway CPU with the Kafka producer vs the file log');
      console.log((await gatewayPart(broker.brokers)).join('\n'));
    }
    if (parts.includes('clients')) {
      err('kafkajs vs @platformatic/kafka vs the adapter');
      console.log((await clientsPart(broker.brokers, files)).join('\n'));
    }
  } finally {
    await broker.close();
  }
  console.log(calibrate());
  console.log(`load average at the end ${loadavg()}`);
}

if (ROLE === 'gen') await genRole();
else if (ROLE === 'producer') await producerRole();
else {
  await main().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}

