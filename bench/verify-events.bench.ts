/**
 * verifyEncodedEvents over real encoded events: the metadata-only decode (after) against the full
 * decode of every event (before, the previous splitForVerification kept below), and the console's
 * /v1/verify over an embedded store.
 *
 *   node --import tsx bench/verify-events.bench.ts [--events 1000000] [--runs 5] [--console 250000]
 *        [--cache /tmp/verify-events-log] [--skip-verify] [--only-console] [--profile /tmp/verify.cpuprofile]
 *
 * The log: the store generator's event mix (services/common/src/store/testing.ts: sessions through
 * the gateway, database statements, masking attestations, approvals, ...; ≈ 500 B per event), each
 * producer's chain rebuilt with ProducerChain and a signed integrity.checkpoint every 10,000 events
 * or 60 s per producer (DEFAULT_CADENCE), as the emitter writes them. `--cache` keeps the built log
 * (and its JWKS) on disk for the next run.
 *
 * Measured, before and after in alternating runs in one process (medians; CPU µs per event from
 * process.cpuUsage(), all threads):
 *   split          splitForVerification alone
 *   verify, store  verifyEncodedEvents in store order (producer by producer), storageOrder: true, as the console calls it
 *   verify, log    verifyEncodedEvents in log order, storageOrder: false (copies deduped)
 * With --console N: the first N records inserted into a chdb store, then readForVerification (the
 * console's read: chdb rows, hex, a decode per row), its row query read three ways (rows only, with
 * the full decode collect() does, with the metadata-only decode instead), the verification of what
 * it read before and after, and GET /v1/verify end to end (app.inject; after only: the console uses the current code),
 * with the main thread's CPU apart from the process's (chdb's engine threads); `--profile` writes a
 * CPU profile of the main thread over the endpoint's runs only.
 */
import { createHash } from 'node:crypto';
import { Session as InspectorSession } from 'node:inspector/promises';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import type { JSONWebKeySet } from 'jose';
import pino from 'pino';
import { openEvidence } from '../services/common/src/evidence/producer';
import { checkRedactions, splitForVerification, verifyEncodedEvents, type EvidenceRecord } from '../services/common/src/evidence/verify-events';
import { chainEvent, decodeEvent, encodeEvent, newEvent, type AnyAttestEvent } from '../services/common/src/events';
import { decodeEventChainMetadata } from '../services/common/src/events/codec';
import { createTokenVerifier, DevIssuer } from '../services/common/src/identity';
import { DEFAULT_CADENCE, InMemoryKeyStore, Keyring, maxGapUsFor, ProducerChain, sha256, verifyProducerLog, type SignedCheckpoint } from '../services/common/src/integrity';
import { MemoryEventLog } from '../services/common/src/log';
import { referenceSplit } from '../test/support/split-reference';
import { ChdbEvidenceStore, toStoredEvent } from '../services/common/src/store';
import { generateEvents, mainThreadCpuMs } from '../services/common/src/store/testing';
import { buildConsole, readForVerification } from '../services/console/src/app';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? def) : def;
}
const flag = (name: string): boolean => process.argv.includes(`--${name}`);
const N = Number(arg('events', '1000000'));
const RUNS = Number(arg('runs', '5'));
const CONSOLE = Number(arg('console', '0'));
const CACHE = arg('cache', '');
const PROFILE = arg('profile', '');
const CADENCE = DEFAULT_CADENCE;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
};
const gc = (globalThis as { gc?: () => void }).gc;

// ---- the previous code, kept as the "before" side ----


/** verifyEncodedEvents before (without the lazily decoded events, which neither side reads here). */
async function verifyBefore(records: readonly EvidenceRecord[], jwks: JSONWebKeySet, opts: { window: { fromUs: number; toUs: number }; storageOrder: boolean }) {
  const split = referenceSplit(records, { dropIdenticalCopies: !opts.storageOrder });
  const report = await verifyProducerLog({ events: split.events, checkpoints: split.checkpoints, jwks, maxGapUs: maxGapUsFor(CADENCE), window: opts.window }, { checkOrder: opts.storageOrder });
  const unattested = checkRedactions(split.redactions, split.attestations);
  return { ...report, ok: report.ok && unattested.length === 0, findings: [...report.findings, ...unattested], redactedEvents: split.redactions.length - unattested.length };
}

// ---- the log ----

interface Log {
  readonly records: Uint8Array[];
  readonly jwks: JSONWebKeySet;
  readonly window: { fromUs: number; toUs: number };
}

/** Records are copied into large slabs (as a store page or log segment holds them) and kept as views. */
class Slabs {
  #slab = Buffer.allocUnsafe(64 << 20);
  #used = 0;
  add(bytes: Uint8Array): Buffer {
    if (this.#used + bytes.length > this.#slab.length) {
      this.#slab = Buffer.allocUnsafe(Math.max(64 << 20, bytes.length));
      this.#used = 0;
    }
    const view = this.#slab.subarray(this.#used, this.#used + bytes.length);
    view.set(bytes);
    this.#used += (bytes.length + 7) & ~7;
    return view;
  }
}

async function buildLog(count: number): Promise<Log> {
  const ring = await Keyring.open(new InMemoryKeyStore());
  await ring.rotate();
  const startUs = Date.now() * 1000 + 1_000_000;
  const slabs = new Slabs();
  const records: Uint8Array[] = [];
  type Chain = { chain: ProducerChain; pending: number; lastUs: number; tenantId: string };
  const chains = new Map<string, Chain>();
  const checkpointEvent = (cp: SignedCheckpoint, tenantId: string, timeUs: number): Uint8Array => {
    const f = cp.fields;
    const unchained = newEvent(
      'integrity.checkpoint',
      {
        tenantId,
        actor: { subject: `system:${f.producer}`, issuer: 'attest', clientId: null, groups: [], kind: 'system', onBehalfOf: null, dev: false },
        source: { address: 'local', userAgent: null },
        target: { protocol: 'internal', service: 'attest', resource: `producer/${f.producer}`, model: null },
        outcome: { result: 'success', status: null, reason: null },
        correlation: { sessionId: `producer:${f.producer}`, requestId: `checkpoint:${f.epoch}:${f.lastSequence}`, upstreamRequestId: null },
        payload: { producer: f.producer, epoch: f.epoch, firstSequence: f.firstSequence, lastSequence: f.lastSequence, count: f.count, fromTimeUs: f.fromTimeUs, toTimeUs: f.toTimeUs, lastHash: Buffer.from(f.lastHash), merkleRoot: Buffer.from(f.merkleRoot), prevCheckpointHash: Buffer.from(f.prevCheckpointHash), closed: f.closed, keyId: f.keyId, formatVersion: 1, signature: Buffer.from(cp.signature) },
      },
      { producer: { id: f.producer, epoch: f.epoch }, clock: { nowUs: () => timeUs } },
    );
    return encodeEvent(chainEvent(unchained, { sequence: 0, prevHash: new Uint8Array(32) }) as AnyAttestEvent);
  };
  const cut = async (c: Chain, timeUs: number): Promise<void> => {
    records.push(slabs.add(checkpointEvent(await c.chain.checkpoint(ring.signingKey(), timeUs), c.tenantId, timeUs)));
    c.pending = 0;
    c.lastUs = timeUs;
  };
  let timeUs = startUs;
  let made = 0;
  for (const g of generateEvents({ count: Math.ceil(count * 1.01), startUs, spanUs: count * 3_600, cardRate: 0.1, cardPool: 1000 })) {
    if (made >= count) break;
    const m = g.event.metadata;
    if (m.type === 'integrity.checkpoint') continue; // the generator's unsigned stand-ins; real ones below
    timeUs = m.timeUs;
    for (const c of chains.values()) if (timeUs - c.lastUs >= CADENCE.everyMs * 900) await cut(c, timeUs);
    let c = chains.get(m.producer);
    if (c === undefined) {
      c = { chain: ProducerChain.start({ producer: m.producer, epoch: m.producerEpoch ?? '', startUs: timeUs }), pending: 0, lastUs: timeUs, tenantId: m.tenantId };
      chains.set(m.producer, c);
    }
    const next = c.chain.nextMetadata();
    const bytes = encodeEvent({ ...g.event, metadata: { ...m, sequence: next.sequence, prevHash: Buffer.from(next.prevHash) } } as AnyAttestEvent);
    c.chain.append(bytes);
    records.push(slabs.add(bytes));
    made += 1;
    if (++c.pending >= CADENCE.everyEvents) await cut(c, timeUs);
  }
  for (const c of chains.values()) await cut(c, timeUs + 1);
  return { records, jwks: ring.jwks(), window: { fromUs: startUs - 1, toUs: timeUs + 2 } };
}

function saveLog(path: string, log: Log): void {
  const parts: Buffer[] = [];
  for (const r of log.records) {
    const len = Buffer.allocUnsafe(4);
    len.writeUInt32LE(r.length);
    parts.push(len, Buffer.from(r.buffer, r.byteOffset, r.length));
  }
  writeFileSync(`${path}.bin`, Buffer.concat(parts));
  writeFileSync(`${path}.json`, JSON.stringify({ jwks: log.jwks, window: log.window }));
}

function loadLog(path: string): Log {
  const all = readFileSync(`${path}.bin`);
  const { jwks, window } = JSON.parse(readFileSync(`${path}.json`, 'utf8')) as { jwks: JSONWebKeySet; window: { fromUs: number; toUs: number } };
  const slabs = new Slabs();
  const records: Uint8Array[] = [];
  for (let p = 0; p < all.length; ) {
    const len = all.readUInt32LE(p);
    records.push(slabs.add(all.subarray(p + 4, p + 4 + len)));
    p += 4 + len;
  }
  return { records, jwks, window };
}

/** Store order: producer by producer, each in its log order (the store's ingest order). */
function storeOrder(records: readonly Uint8Array[]): Uint8Array[] {
  const byProducer = new Map<string, Uint8Array[]>();
  for (const r of records) {
    const p = decodeEvent(r).event.metadata.producer;
    let list = byProducer.get(p);
    if (list === undefined) byProducer.set(p, (list = []));
    list.push(r);
  }
  return [...[...byProducer.keys()].sort()].flatMap((p) => byProducer.get(p)!);
}

// ---- measuring ----

interface Sample {
  readonly cpuUsPerEvent: number;
  readonly perSec: number;
  /** The main (JavaScript) thread's share, from /proc (10 ms resolution). */
  readonly mainUsPerEvent: number;
}

async function once(items: number, fn: () => unknown): Promise<Sample> {
  gc?.();
  const m0 = mainThreadCpuMs();
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await fn();
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const c = process.cpuUsage(c0);
  return { cpuUsPerEvent: (c.user + c.system) / items, perSec: items / wall, mainUsPerEvent: ((mainThreadCpuMs() - m0) * 1000) / items };
}

function consoleLine(s: Sample[]): string {
  return `          ${median(s.map((x) => x.cpuUsPerEvent)).toFixed(2).padStart(6)} CPU µs/event (main thread ${median(s.map((x) => x.mainUsPerEvent)).toFixed(2)})   ${(median(s.map((x) => x.perSec)) / 1e3).toFixed(1).padStart(6)} k events/s   (runs: ${s.map((x) => x.cpuUsPerEvent.toFixed(2)).join(' ')} µs; ${s.map((x) => (x.perSec / 1e3).toFixed(1)).join(' ')} k/s)`;
}

/** Before and after in alternating runs; medians. */
async function pair(name: string, items: number, before: () => unknown, after: () => unknown): Promise<void> {
  const b: Sample[] = [];
  const a: Sample[] = [];
  const loads: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    b.push(await once(items, before));
    a.push(await once(items, after));
    loads.push(loadavg()[0]!);
  }
  const line = (side: string, s: Sample[]) =>
    `  ${side.padEnd(7)} ${median(s.map((x) => x.cpuUsPerEvent)).toFixed(2).padStart(6)} CPU µs/event   ${(median(s.map((x) => x.perSec)) / 1e6).toFixed(3).padStart(6)} M events/s   (runs: ${s.map((x) => x.cpuUsPerEvent.toFixed(2)).join(' ')} µs; ${s.map((x) => (x.perSec / 1e6).toFixed(3)).join(' ')} M/s)`;
  console.log(`${name} — ${items.toLocaleString()} events, load average ${loads.map((l) => l.toFixed(1)).join(' ')}`);
  console.log(line('before', b));
  console.log(line('after', a));
}

const canonReport = (r: { ok: boolean; findings: unknown; pending: unknown; stats: unknown; redactedEvents: number }): string =>
  JSON.stringify({ ok: r.ok, findings: r.findings, pending: r.pending, stats: r.stats, redactedEvents: r.redactedEvents });

async function verifyBench(log: Log): Promise<void> {
  const logOrder = log.records;
  const stored = storeOrder(logOrder);
  const n = logOrder.length;
  // The two sides agree (and the log verifies), checked once.
  for (const [records, storageOrder] of [[stored, true], [logOrder, false]] as const) {
    const b = await verifyBefore(records, log.jwks, { window: log.window, storageOrder });
    const a = await verifyEncodedEvents(records, log.jwks, { cadence: CADENCE, window: log.window, storageOrder });
    if (canonReport(a) !== canonReport(b)) throw new Error('before and after reports differ');
    if (!a.ok) throw new Error(`the benchmark log does not verify: ${JSON.stringify(a.findings.slice(0, 3))}`);
  }
  console.log(`reports identical before/after and ok (${n.toLocaleString()} records, both orders)\n`);
  await pair('splitForVerification (store order)', n, () => referenceSplit(stored), () => splitForVerification(stored));
  await pair('verifyEncodedEvents, store order, storageOrder: true (console)', n, () => verifyBefore(stored, log.jwks, { window: log.window, storageOrder: true }), () =>
    verifyEncodedEvents(stored, log.jwks, { cadence: CADENCE, window: log.window, storageOrder: true }),
  );
  await pair('verifyEncodedEvents, log order, storageOrder: false', n, () => verifyBefore(logOrder, log.jwks, { window: log.window, storageOrder: false }), () =>
    verifyEncodedEvents(logOrder, log.jwks, { cadence: CADENCE, window: log.window, storageOrder: false }),
  );
}

async function consoleBench(log: Log, count: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'attest-verify-bench-'));
  const silent = pino({ level: 'silent' });
  const store = await ChdbEvidenceStore.open({ dataDir: join(dir, 'store'), retention: { days: 365 } });
  try {
    await store.migrate();
    const records = log.records.slice(0, count);
    const t0 = performance.now();
    for (let i = 0; i < records.length; i += 10_000) {
      const rows = records.slice(i, i + 10_000).map((b) => toStoredEvent(decodeEvent(b).event, Buffer.from(b), createHash('sha256').update(b).digest()));
      await store.insertEvents(rows, `bench:${i}`);
    }
    console.log(`\nconsole: ${records.length.toLocaleString()} records inserted into chdb in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const last = decodeEvent(records[records.length - 1]!).event.metadata.timeUs;
    const window = { fromUs: log.window.fromUs, toUs: last + 1 };

    const read = await readForVerification(store, window);
    const n = read.records.length;
    console.log(`readForVerification: ${n.toLocaleString()} records, ${read.undecodable.length} undecodable`);
    const b = await verifyBefore(read.records, log.jwks, { window, storageOrder: true });
    const a = await verifyEncodedEvents(read.records, log.jwks, { cadence: CADENCE, window, storageOrder: true });
    if (canonReport(a) !== canonReport(b)) throw new Error('before and after reports differ on the console read');
    console.log(`report: ok ${a.ok}, ${a.findings.length} findings, ${a.stats.attestedEvents.toLocaleString()} attested, ${a.stats.pendingEvents} pending\n`);

    const reads: Sample[] = [];
    for (let r = 0; r < RUNS; r++) reads.push(await once(n, () => readForVerification(store, window)));
    console.log(`readForVerification (chdb stream + hex + a full decode per row), load ${loadavg()[0]!.toFixed(1)}`);
    console.log(consoleLine(reads));
    await pair('verifyEncodedEvents on what the console read', n, () => verifyBefore(read.records, log.jwks, { window, storageOrder: true }), () =>
      verifyEncodedEvents(read.records, log.jwks, { cadence: CADENCE, window, storageOrder: true }),
    );

    // Where readForVerification's time goes: its row query (collect() in app.ts) read three ways.
    const rowCols = "hex(event_bytes), toString(event_id), producer, sequence, hex(event_hash), ifNull(toString(redacted_by), '')";
    const sql = `SELECT ${rowCols} FROM events ORDER BY producer, ingest_time, sequence, event_id`;
    const readRows = async (check: (b: Buffer) => unknown): Promise<number> => {
      let rows = 0;
      for await (const row of store.stream(sql, {})) {
        check(Buffer.from(String(row[0]), 'hex'));
        rows += 1;
      }
      return rows;
    };
    const total = await readRows(() => undefined);
    for (const [name, check] of [
      ['rows only (chdb, JSON text, hex → bytes)', () => undefined],
      ['rows + decodeEvent per row (collect() before stop 11)', (b: Buffer) => decodeEvent(b)],
      ['rows + decodeEventChainMetadata per row (same refusals)', (b: Buffer) => decodeEventChainMetadata(b)],
    ] as const) {
      const s: Sample[] = [];
      for (let r = 0; r < RUNS; r++) s.push(await once(total, () => readRows(check)));
      console.log(`${name}, ${total.toLocaleString()} rows, load ${loadavg()[0]!.toFixed(1)}`);
      console.log(consoleLine(s));
    }

    // The endpoint itself.
    const rt = await openEvidence({ dataDir: join(dir, 'platform'), component: 'console', producerId: 'console-bench', tenantId: 'acme', logger: silent, configText: 'x', configFile: 'attest.yaml', softwareVersion: 'bench', cadence: CADENCE, log: new MemoryEventLog() });
    const dev = await DevIssuer.loadOrCreate(join(dir, 'idp'));
    const verifier = createTokenVerifier({ issuers: [dev.issuerOptions(['attest-console'])] });
    const token = await dev.mint({ subject: 'auditor-1', groups: ['auditors'], audience: 'attest-console', ttlSec: 3600 });
    const app = await buildConsole({ store, verifier, auditorGroups: ['auditors'], emitter: rt.emitter, jwks: () => ({ keys: [...log.jwks.keys, ...rt.keyring.jwks().keys] }), panKey: rt.panKey, logger: silent, cadence: CADENCE });
    try {
      const url = `/v1/verify?from=${new Date(window.fromUs / 1000).toISOString()}&to=${new Date(Math.ceil(window.toUs / 1000)).toISOString()}`;
      const samples: Sample[] = [];
      let body = '';
      const inspector = PROFILE === '' ? undefined : new InspectorSession();
      if (inspector !== undefined) {
        inspector.connect();
        await inspector.post('Profiler.enable');
        await inspector.post('Profiler.setSamplingInterval', { interval: 500 });
        await inspector.post('Profiler.start');
      }
      for (let r = 0; r < RUNS; r++) {
        samples.push(
          await once(n, async () => {
            const res = await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });
            if (res.statusCode !== 200) throw new Error(`verify answered ${res.statusCode}: ${res.body.slice(0, 300)}`);
            body = res.body;
          }),
        );
      }
      if (inspector !== undefined) {
        const { profile } = await inspector.post('Profiler.stop');
        writeFileSync(PROFILE, JSON.stringify(profile));
        inspector.disconnect();
      }
      const out = JSON.parse(body) as { ok: boolean; findings: unknown[]; stats: { events: number } };
      console.log(`GET /v1/verify end to end (after), ok ${out.ok}, ${out.findings.length} findings, ${out.stats.events.toLocaleString()} events, load ${loadavg()[0]!.toFixed(1)}`);
      console.log(consoleLine(samples));
      if (PROFILE !== '') console.log(`CPU profile of the main thread over these runs: ${PROFILE}`);
    } finally {
      await app.close();
      await rt.close('shutdown');
    }
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  console.log(`verifyEncodedEvents benchmark: ${N.toLocaleString()} events, ${RUNS} runs (medians), cadence ${CADENCE.everyEvents} events / ${CADENCE.everyMs / 1000} s`);
  console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}${gc ? ', gc between runs' : ''}`);
  const t0 = performance.now();
  let log: Log;
  if (CACHE !== '' && existsSync(`${CACHE}.bin`)) {
    log = loadLog(CACHE);
    console.log(`loaded ${log.records.length.toLocaleString()} records from ${CACHE}.bin in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  } else {
    log = await buildLog(N);
    console.log(`built ${log.records.length.toLocaleString()} records in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    if (CACHE !== '') saveLog(CACHE, log);
  }
  const bytes = log.records.reduce((s, r) => s + r.length, 0);
  console.log(`${(bytes / log.records.length).toFixed(0)} B per record on average\n`);
  if (!flag('skip-verify') && !flag('only-console')) await verifyBench(log);
  if (CONSOLE > 0) await consoleBench(log, Math.min(CONSOLE, log.records.length));
}

await main();
