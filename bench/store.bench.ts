/**
 * Evidence store (chdb, in-process ClickHouse): insert throughput for the insert paths we tried,
 * and the latency of every documented evidence query on 1M (and optionally 10M) synthetic events.
 *
 *   node --import tsx bench/store.bench.ts [--insert-events 200000] [--batch 10000] [--events 1000000]
 *                                          [--scale 10] [--runs 5] [--skip-inserts] [--skip-queries]
 *
 * Insert paths, each into a fresh table from the same pre-built StoredEvents (generation and
 * Avro encoding are not timed: they are the producer's and the writer's cost):
 *   store.insertEvents        the adapter: RowBinary file + INSERT … SELECT FROM file(), event-id lookup, sightings
 *   … without id lookup       the same with dedupByEventId: false (the engine's token only)
 *   insert({ values })        chdb's object insert (SQL VALUES built by chdb in JS)
 *   JSONEachRow               NDJSON objects built in JS, chdb raw insert
 *   JSONCompactEachRow        NDJSON arrays ("lean rows") built in JS, chdb raw insert
 * The text formats carry binary columns as base64 (text cannot hold raw bytes), into a twin table
 * whose binary columns are String. CPU is reported per event: main thread (from /proc, what the
 * gateway's event loop pays) and whole process (engine threads included). Machines here are shared:
 * compare rows of one run, not runs.
 *
 * 10M (--scale 10): the 1M generated events are copied in the engine nine times with shifted times
 * and fresh ids (INSERT … SELECT), which keeps the data realistic for every query but session replay
 * and pan-lookup, whose copies multiply.
 */
import { cpus, totalmem } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { drainPending, Session } from 'chdb';
import { ChdbEvidenceStore } from '../services/common/src/store/chdb-store';
import { EVIDENCE_QUERIES, runEvidenceQuery } from '../services/common/src/store/evidence-queries';
import { EVENT_COLUMNS, PAN_SIGHTING_COLUMNS, type StoredEvent } from '../services/common/src/store/rows';
import { cardFingerprint, freshStoreDir, generateEvents, mainThreadCpuMs } from '../services/common/src/store/testing';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? dflt) : dflt;
}
const flag = (name: string): boolean => process.argv.includes(`--${name}`);
const INSERT_EVENTS = Number(arg('insert-events', '200000'));
const BATCH = Number(arg('batch', '10000'));
const EVENTS = Number(arg('events', '1000000'));
const SCALE = Number(arg('scale', '1'));
const RUNS = Number(arg('runs', '5'));
const DAY_US = 86_400_000_000;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
};

function generate(count: number, startUs: number, spanUs: number): StoredEvent[] {
  const out: StoredEvent[] = [];
  for (const g of generateEvents({ count, seed: 1234, startUs, spanUs, cardRate: 0.1, cardPool: 1000 })) out.push(g.stored);
  return out;
}

interface Measured {
  wallMs: number;
  mainCpuMs: number;
  processCpuMs: number;
  loopP99Ms: number;
  loopMaxMs: number;
}

async function measured(fn: () => Promise<void>): Promise<Measured> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const main0 = mainThreadCpuMs();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const mainCpuMs = mainThreadCpuMs() - main0;
  h.disable();
  return { wallMs, mainCpuMs, processCpuMs: (cpu.user + cpu.system) / 1000, loopP99Ms: h.percentile(99) / 1e6, loopMaxMs: h.max / 1e6 };
}

const TEXT_COLUMNS = EVENT_COLUMNS.map(([name, type]) => [name, name === 'prev_hash' || name === 'event_hash' || name === 'event_bytes' ? 'String' : type] as const);

function timeText(us: number): string {
  const ms = Math.floor(us / 1000);
  return `${new Date(ms).toISOString().slice(0, 19).replace('T', ' ')}.${String(us % 1_000_000).padStart(6, '0')}`;
}

function textRow(e: StoredEvent): Record<string, unknown> {
  return {
    event_id: e.eventId,
    type: e.type,
    code: e.code,
    schema_version: e.schemaVersion,
    time: timeText(e.timeUs),
    producer: e.producer,
    producer_epoch: e.producerEpoch,
    sequence: e.sequence,
    prev_hash: Buffer.from(e.prevHash).toString('base64'),
    event_hash: Buffer.from(e.eventHash).toString('base64'),
    tenant_id: e.tenantId,
    pci_requirements: e.pciRequirements,
    actor_subject: e.actorSubject,
    actor_issuer: e.actorIssuer,
    actor_client_id: e.actorClientId,
    actor_groups: e.actorGroups,
    actor_kind: e.actorKind,
    actor_on_behalf_of: e.actorOnBehalfOf,
    actor_dev: e.actorDev,
    source_address: e.sourceAddress,
    source_user_agent: e.sourceUserAgent,
    target_protocol: e.targetProtocol,
    target_service: e.targetService,
    target_resource: e.targetResource,
    target_model: e.targetModel,
    outcome_result: e.outcomeResult,
    outcome_status: e.outcomeStatus,
    outcome_reason: e.outcomeReason,
    session_id: e.sessionId,
    request_id: e.requestId,
    upstream_request_id: e.upstreamRequestId,
    card_data_present: e.cardDataPresent,
    payload: e.payload,
    event_bytes: Buffer.from(e.eventBytes).toString('base64'),
  };
}

async function insertBench(events: StoredEvent[]): Promise<void> {
  console.log(`\n## Insert throughput: ${events.length} events in batches of ${BATCH}\n`);
  console.log('| path | events/s | main-thread CPU µs/event | process CPU µs/event | loop delay p99 / max (ms) |');
  console.log('|---|---|---|---|---|');
  const batches: StoredEvent[][] = [];
  for (let i = 0; i < events.length; i += BATCH) batches.push(events.slice(i, i + BATCH));
  const report = (label: string, m: Measured): void => {
    console.log(
      `| ${label} | ${Math.round(events.length / (m.wallMs / 1000))} | ${((m.mainCpuMs * 1000) / events.length).toFixed(1)} | ${((m.processCpuMs * 1000) / events.length).toFixed(1)} | ${m.loopP99Ms.toFixed(1)} / ${m.loopMaxMs.toFixed(0)} |`,
    );
  };

  for (const dedupByEventId of [true, false]) {
    const dir = await freshStoreDir('bench-insert');
    const store = await ChdbEvidenceStore.open({ dataDir: dir.dir, retention: { days: 365 }, dedupByEventId });
    await store.migrate();
    const m = await measured(async () => {
      for (let i = 0; i < batches.length; i++) await store.insertEvents(batches[i] ?? [], `b${i}`);
    });
    report(dedupByEventId ? 'store.insertEvents (RowBinary file, id lookup, sightings)' : 'store.insertEvents without id lookup (token only)', m);
    await store.close();
    await dir.remove();
  }

  // The alternatives run on a raw chdb session in a fresh directory, into a text-typed twin table.
  await drainPending();
  const dir = await freshStoreDir('bench-alt');
  const s = new Session(dir.dir);
  const ddl = (table: string): string =>
    `CREATE TABLE ${table} (${TEXT_COLUMNS.map(([n, t]) => `${n} ${t}`).join(', ')}) ENGINE = MergeTree PARTITION BY toYYYYMM(time) ORDER BY (tenant_id, toStartOfDay(time), type, actor_subject, time, event_id)`;
  const columns = TEXT_COLUMNS.map(([n]) => n);
  const alternatives: [string, (table: string, batch: StoredEvent[]) => Promise<unknown>][] = [
    ['chdb insert({ values }) with JS objects', (table, batch) => s.insert({ table, values: batch.map(textRow) })],
    ['JSONEachRow (NDJSON objects built in JS)', (table, batch) => s.insert({ table, values: Buffer.from(batch.map((e) => JSON.stringify(textRow(e))).join('\n')), format: 'JSONEachRow' })],
    [
      'JSONCompactEachRow (NDJSON arrays, lean rows)',
      (table, batch) => s.insert({ table, values: Buffer.from(batch.map((e) => { const r = textRow(e); return JSON.stringify(columns.map((c) => r[c])); }).join('\n')), format: 'JSONCompactEachRow' }),
    ],
  ];
  let n = 0;
  for (const [label, insert] of alternatives) {
    const table = `events_text_${++n}`;
    await s.queryAsync(ddl(table));
    const m = await measured(async () => {
      for (const b of batches) await insert(table, b);
    });
    report(label, m);
  }
  s.close();
  await drainPending();
  await dir.remove();
}

async function queryBench(): Promise<void> {
  const nowUs = Date.now() * 1000;
  // 1M events over 30 days ending 330 days ago at most; copies for --scale shift by 30 days each
  // and must stay inside the 365-day TTL.
  const span = 30 * DAY_US;
  const startUs = nowUs - (SCALE * 30 + 5) * DAY_US;
  const dir = await freshStoreDir('bench-query');
  const store = await ChdbEvidenceStore.open({ dataDir: dir.dir, retention: { days: 365 } });
  await store.migrate();
  console.log(`\n## Evidence query latency: ${EVENTS * SCALE} events\n`);
  let inserted = 0;
  let sessionId = '';
  const g0 = performance.now();
  let genMs = 0;
  let insertMs = 0;
  let batch: StoredEvent[] = [];
  const flush = async (): Promise<void> => {
    const t = performance.now();
    await store.insertEvents(batch, `fill-${inserted}`);
    insertMs += performance.now() - t;
    inserted += batch.length;
    batch = [];
  };
  let t = performance.now();
  for (const g of generateEvents({ count: EVENTS, seed: 99, startUs, spanUs: span, cardRate: 0.1, cardPool: 1000 })) {
    if (sessionId === '' && g.event.metadata.type === 'gateway.response.completed') sessionId = g.event.correlation.sessionId;
    batch.push(g.stored);
    if (batch.length === 20_000) {
      genMs += performance.now() - t;
      await flush();
      t = performance.now();
    }
  }
  genMs += performance.now() - t;
  if (batch.length > 0) await flush();
  console.log(`filled ${inserted} events: generation ${(genMs / 1000).toFixed(0)} s, insertEvents ${(insertMs / 1000).toFixed(1)} s (${Math.round(inserted / (insertMs / 1000))} events/s sustained, batches of 20k), total ${((performance.now() - g0) / 1000).toFixed(0)} s`);
  if (SCALE > 1) {
    // Shifted copies with fresh ids. The source rows are selected in a subquery: an outer
    // `… AS time` alias would otherwise capture the WHERE's `time`.
    const shifted = (columns: readonly (readonly [string, string])[], k: number): string =>
      columns.map(([c]) => (c === 'event_id' ? 'generateUUIDv7(sequence) AS event_id' : c === 'time' ? `time + toIntervalDay(${30 * k}) AS time` : c)).join(', ');
    const names = (columns: readonly (readonly [string, string])[]): string => columns.map(([c]) => c).join(', ');
    const firstMonth = `time < fromUnixTimestamp64Micro(toInt64(${startUs + span}), 'UTC')`;
    const copy = new Session(dir.dir);
    const t1 = performance.now();
    for (let k = 1; k < SCALE; k++) {
      await copy.queryAsync(`INSERT INTO events (${names(EVENT_COLUMNS)}) SELECT ${shifted(EVENT_COLUMNS, k)} FROM (SELECT * FROM events WHERE ${firstMonth})`);
      const sightingCols = PAN_SIGHTING_COLUMNS.map(([c, t]) => [c === 'event_id' ? 'event_id' : c, t] as const);
      await copy.queryAsync(
        `INSERT INTO pan_sightings (${names(sightingCols)}) SELECT ${shifted(sightingCols, k).replace('generateUUIDv7(sequence)', 'generateUUIDv7(char_offset)')} FROM (SELECT * FROM pan_sightings WHERE ${firstMonth})`,
      );
    }
    copy.close();
    console.log(`copied to ${Number((await store.query('SELECT count() FROM events')).rows[0]?.[0])} events in ${((performance.now() - t1) / 1000).toFixed(0)} s (engine-side INSERT … SELECT)`);
  }
  const parts = await store.query("SELECT count(), sum(rows), formatReadableSize(sum(data_compressed_bytes)), formatReadableSize(sum(data_uncompressed_bytes)) FROM system.parts WHERE active AND table = 'events' AND database = currentDatabase()");
  console.log(`events table: ${String(parts.rows[0]?.[0])} active parts, ${String(parts.rows[0]?.[1])} rows, ${String(parts.rows[0]?.[2])} compressed (${String(parts.rows[0]?.[3])} uncompressed)`);

  const day = { from: startUs + 10 * DAY_US, to: startUs + 11 * DAY_US };
  const person = 'u-1100';
  const cases: [string, string, Record<string, unknown>, unknown][] = [];
  for (const id of Object.keys(EVIDENCE_QUERIES)) {
    const args = id === 'pan-lookup' ? { fingerprint: cardFingerprint(7).toString('hex') } : id === 'session-replay' ? { sessionId } : undefined;
    cases.push([id, 'all time', {}, args]);
    if (!['pci.10.5.1', 'session-replay', 'pan-lookup'].includes(id)) cases.push([id, 'one day', day, args]);
    if (['pci.10.2.1.1', 'pci.10.2.1.4'].includes(id)) cases.push([id, `actor ${person}`, { actor: person }, args]);
  }
  console.log('\n| query | filter | rows | p50 ms | min ms | max ms |');
  console.log('|---|---|---|---|---|---|');
  for (const [id, label, filters, args] of cases) {
    // The scan reads every text column: one run is enough to size it at millions of events.
    const runs = id === 'pci.3.4.1.pan-scan' && label === 'all time' ? 1 : RUNS;
    const times: number[] = [];
    let rows = 0;
    for (let r = 0; r < runs; r++) {
      const t0 = performance.now();
      const res = await runEvidenceQuery(store, id, filters, args, { maxRows: 1_000 });
      times.push(performance.now() - t0);
      rows = res.rows.length;
    }
    console.log(`| ${id} | ${label} | ${rows}${rows === 1_000 ? '+' : ''} | ${median(times).toFixed(0)} | ${Math.min(...times).toFixed(0)} | ${Math.max(...times).toFixed(0)} |`);
  }
  await store.close();
  await dir.remove();
}

async function main(): Promise<void> {
  console.log(`# evidence store bench  ${new Date().toISOString()}  node ${process.version}  ${cpus().length} cores  ${(totalmem() / 2 ** 30).toFixed(1)} GiB`);
  console.log(`# command: node --import tsx bench/store.bench.ts ${process.argv.slice(2).join(' ')}`);
  if (!flag('skip-inserts')) {
    const events = generate(INSERT_EVENTS, Date.now() * 1000 - 20 * DAY_US, 10 * DAY_US);
    await insertBench(events);
  }
  if (!flag('skip-queries')) await queryBench();
}

await main();
