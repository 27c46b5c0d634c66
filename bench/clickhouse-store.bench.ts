/**
 * The ClickHouse server adapter (services/common/src/store/clickhouse-store.ts) over HTTP: insert
 * throughput through the adapter and the latency of evidence queries through the readonly user.
 *
 *   node --import tsx bench/clickhouse-store.bench.ts [--events 100000] [--batch 5000] [--runs 5]
 *
 * Against CLICKHOUSE_URL (+ CLICKHOUSE_USER / CLICKHOUSE_PASSWORD / CLICKHOUSE_READONLY_USER /
 * CLICKHOUSE_READONLY_PASSWORD) when set, otherwise the chdb HTTP harness in a child process
 * (test/harness/chdb-http.ts): the same engine as the embedded store behind a small Node HTTP
 * front, so figures are the adapter + HTTP + engine on this machine, not a tuned server.
 * Generation and Avro encoding of the events are not timed. Machines here are shared: compare rows
 * of one run, not runs.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { ClickHouseLogLevel, createClient } from '@clickhouse/client';
import { startChdbHttp, type ChdbHttpProcess } from '../test/harness/chdb-http';
import { ClickHouseServerStore, type ClickHouseServerStoreOptions } from '../services/common/src/store/clickhouse-store';
import { runEvidenceQuery } from '../services/common/src/store/evidence-queries';
import type { StoredEvent } from '../services/common/src/store/rows';
import { cardFingerprint, generateEvents } from '../services/common/src/store/testing';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? dflt) : dflt;
}
const EVENTS = Number(arg('events', '100000'));
const BATCH = Number(arg('batch', '5000'));
const RUNS = Number(arg('runs', '5'));
const DAY_US = 86_400_000_000;

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
/** utime + stime of a process, µs (the harness's engine process); NaN when not readable. */
function processCpuUs(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const x = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return ((Number(x[11]) + Number(x[12])) * 1e6) / CLK_TCK;
  } catch {
    return Number.NaN;
  }
}
const ownCpuUs = (): number => {
  const c = process.cpuUsage();
  return c.user + c.system;
};

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
};

async function main(): Promise<void> {
  let harness: ChdbHttpProcess | undefined;
  let base: Omit<ClickHouseServerStoreOptions, 'database' | 'retention'>;
  const url = process.env['CLICKHOUSE_URL'];
  if (url !== undefined && url !== '') {
    const ru = process.env['CLICKHOUSE_READONLY_USER'];
    base = {
      url,
      username: process.env['CLICKHOUSE_USER'] ?? 'default',
      password: process.env['CLICKHOUSE_PASSWORD'] ?? '',
      ...(ru === undefined ? {} : { readonlyUsername: ru, readonlyPassword: process.env['CLICKHOUSE_READONLY_PASSWORD'] ?? '' }),
    };
  } else {
    harness = await startChdbHttp();
    base = { url: harness.url, username: harness.writer.username, password: harness.writer.password, readonlyUsername: harness.reader.username, readonlyPassword: harness.reader.password };
  }
  console.log(`# ClickHouse server adapter: ${EVENTS} events, batches of ${BATCH}, ${RUNS} query runs; ${cpus().length} cores; target ${harness === undefined ? 'CLICKHOUSE_URL' : `chdb HTTP harness (engine ${harness.version})`}`);

  const startUs = Date.now() * 1000 - 60 * DAY_US;
  const events: StoredEvent[] = [];
  for (const g of generateEvents({ count: EVENTS, seed: 1234, startUs, spanUs: 50 * DAY_US, cardRate: 0.1, cardPool: 1000 })) events.push(g.stored);
  const bytes = events.reduce((n, e) => n + e.eventBytes.length + e.payload.length, 0);
  console.log(`generated ${events.length} events (${(bytes / 1e6).toFixed(0)} MB of payload + encoded bytes)`);

  const databases: string[] = [];
  try {
    const variants: { label: string; opts: Partial<ClickHouseServerStoreOptions> }[] = [
      { label: 'insertEvents (id lookup + token)', opts: {} },
      { label: 'insertEvents, token only (dedupByEventId: false)', opts: { dedupByEventId: false } },
      { label: 'insertEvents, async_insert + wait', opts: { asyncInsert: true } },
    ];
    let queryDb = '';
    for (const v of variants) {
      const database = `attest_bench_${randomBytes(4).toString('hex')}`;
      databases.push(database);
      const store = await ClickHouseServerStore.open({ ...base, ...v.opts, database, retention: { days: 365 } });
      await store.migrate();
      const e0 = processCpuUs(harness?.pid);
      const c0 = ownCpuUs();
      const t0 = performance.now();
      for (let i = 0; i < events.length; i += BATCH) await store.insertEvents(events.slice(i, i + BATCH), `bench:${i}`);
      const ms = performance.now() - t0;
      const clientCpu = (ownCpuUs() - c0) / events.length;
      const engineCpu = (processCpuUs(harness?.pid) - e0) / events.length;
      const r0 = performance.now();
      const again = await store.insertEvents(events.slice(0, BATCH), 'bench:0');
      const redeliveryMs = performance.now() - r0;
      console.log(
        `${v.label.padEnd(50)} ${((events.length / ms) * 1000).toFixed(0).padStart(7)} events/s  (${ms.toFixed(0)} ms; CPU µs/event client ${clientCpu.toFixed(1)}, engine ${engineCpu.toFixed(1)}; load ${loadavg()[0]?.toFixed(1)}; one redelivered batch: ${redeliveryMs.toFixed(0)} ms, ${again.duplicates} duplicates found)`,
      );
      if (queryDb === '') queryDb = database;
      await store.close();
    }

    const store = await ClickHouseServerStore.open({ ...base, database: queryDb, retention: { days: 365 } });
    const session = events.find((e) => e.type === 'gateway.response.completed')?.sessionId ?? '';
    const cases: [string, unknown][] = [
      ['pci.10.2.1.1', undefined],
      ['pci.10.2.1.4', undefined],
      ['pci.10.2.2', undefined],
      ['pci.10.5.1', undefined],
      ['pan-lookup', { fingerprint: cardFingerprint(3).toString('hex') }],
      ['session-replay', { sessionId: session }],
    ];
    console.log(`\nquery latency (readonly user, median of ${RUNS}, ${events.length} events):`);
    for (const [id, args] of cases) {
      const times: number[] = [];
      let rows = 0;
      for (let i = 0; i < RUNS; i++) {
        const t0 = performance.now();
        const r = await runEvidenceQuery(store, id, {}, args, { maxRows: 10_000 });
        times.push(performance.now() - t0);
        rows = r.rows.length;
      }
      console.log(`  ${id.padEnd(16)} ${median(times).toFixed(1).padStart(8)} ms  (${rows} rows)`);
    }
    const st: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t0 = performance.now();
      await store.query('SELECT 1');
      st.push(performance.now() - t0);
    }
    console.log(`  ${'SELECT 1'.padEnd(16)} ${median(st).toFixed(1).padStart(8)} ms  (round trip floor)`);
    await store.close();
  } finally {
    const admin = createClient({ url: base.url, username: base.username, password: base.password, log: { level: ClickHouseLogLevel.OFF } });
    for (const d of databases) await admin.command({ query: `DROP DATABASE IF EXISTS \`${d}\`` }).catch(() => undefined);
    await admin.close();
    await harness?.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
