/**
 * The evidence writer end to end on real components: events emitted by a real EvidenceEmitter onto
 * a FileEventLog (4 partitions, so a producer's events interleave) land in the chdb store exactly
 * once, across a crash that inserted a batch without committing it; corrupted records, a broken
 * chain, a gap and a forged checkpoint signature each raise a finding.opened that itself lands in
 * the store, while the broken events are still stored. chdb binds one data directory per process:
 * each test opens its own store and closes it before the next (as the store's own tests do).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { openEvidence, type EvidenceRuntime } from '../services/common/src/evidence/producer';
import { chainEvent, decodeEvent, encodeEvent, newEvent, uuidv7, type AnyAttestEvent, type EventType } from '../services/common/src/events';
import { SAMPLE_PARTS } from '../services/common/src/events/fixtures';
import { sha256 } from '../services/common/src/integrity';
import { FileEventLog } from '../services/common/src/log';
import { ChdbEvidenceStore, runEvidenceQuery } from '../services/common/src/store';
import { EvidenceWriter, type EvidenceWriterOptions } from '../services/processors/src/evidence-writer';

const silent = pino({ level: 'silent' });
const CADENCE = { everyEvents: 100_000, everyMs: 600_000 };
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Rig {
  log: FileEventLog;
  gateway: EvidenceRuntime;
  writerRuntime: EvidenceRuntime;
  store: ChdbEvidenceStore;
  writer(opts?: Partial<EvidenceWriterOptions>): EvidenceWriter;
}

async function rig(label: string): Promise<Rig> {
  const dir = await mkdtemp(join(tmpdir(), `attest-ew-${label}-`));
  const log = await FileEventLog.open({ dir: join(dir, 'log'), partitions: 4 });
  const common = { dataDir: dir, tenantId: 'acme', logger: silent, configText: 'x', configFile: 'test.yaml', softwareVersion: 'test', cadence: CADENCE, log };
  const gateway = await openEvidence({ ...common, component: 'gateway', producerId: 'gateway-test' });
  const writerRuntime = await openEvidence({ ...common, component: 'evidence-writer', producerId: 'evidence-writer-test' });
  const store = await ChdbEvidenceStore.open({ dataDir: join(dir, 'store'), retention: { days: 365 } });
  await store.migrate();
  const writers: EvidenceWriter[] = [];
  cleanups.push(async () => {
    for (const w of writers) await w.stop();
    await gateway.close('shutdown').catch(() => undefined);
    await writerRuntime.close('shutdown').catch(() => undefined);
    await log.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  return {
    log,
    gateway,
    writerRuntime,
    store,
    writer(opts = {}) {
      const w = new EvidenceWriter({
        log,
        store,
        emitter: writerRuntime.emitter,
        logger: silent,
        jwks: () => gateway.keyring.jwks(),
        reorderWindowMs: 50,
        ...opts,
      });
      writers.push(w);
      return w;
    },
  };
}

const TYPES: EventType[] = ['gateway.request.received', 'policy.decided', 'gateway.request.forwarded', 'gateway.response.completed'];

/** `sessions` × `perSession` exchanges, emitted concurrently (one emit per exchange, keyed by session). */
async function emitTraffic(g: EvidenceRuntime, sessions: number, perSession: number): Promise<void> {
  const all: Promise<unknown>[] = [];
  for (let s = 0; s < sessions; s++) {
    const sessionId = `sess-${s}`;
    all.push(
      (async () => {
        for (let i = 0; i < perSession; i++) {
          const events = TYPES.map((t) => {
            const { tenantId: _t, ...parts } = SAMPLE_PARTS[t] as typeof SAMPLE_PARTS[typeof t] & { tenantId: string };
            return g.emitter.build(t, { ...parts, correlation: { sessionId, requestId: `req-${s}-${i}`, upstreamRequestId: null } } as never);
          });
          await g.emitter.emit(events, sessionId);
        }
      })(),
    );
  }
  await Promise.all(all);
}

/** Every record in the log, decoded where possible (a reader group of the test's own). */
async function readLog(log: FileEventLog, group: string): Promise<{ ids: string[]; undecodable: number }> {
  const c = await log.consumer(group);
  const ids: string[] = [];
  let undecodable = 0;
  for (;;) {
    const batch = await c.poll(10_000, 20);
    if (batch.length === 0) break;
    for (const r of batch) {
      try {
        ids.push(decodeEvent(r.value).event.metadata.eventId);
      } catch {
        undecodable++;
      }
    }
  }
  await c.close();
  return { ids, undecodable };
}

async function counts(store: ChdbEvidenceStore): Promise<{ rows: number; unique: number }> {
  const r = await store.query('SELECT count(), uniqExact(event_id) FROM events');
  return { rows: Number(r.rows[0]?.[0]), unique: Number(r.rows[0]?.[1]) };
}

async function findings(store: ChdbEvidenceStore): Promise<{ detector: string; findingId: string; related: string[]; location: string | null }[]> {
  const r = await store.query("SELECT payload FROM events WHERE type = 'finding.opened' ORDER BY time", {}, { maxRows: 1000 });
  return r.rows.map((row) => {
    const p = JSON.parse(String(row[0])) as { detectorId: string; findingId: string; relatedEventIds: string[]; location: string | null };
    return { detector: p.detectorId, findingId: p.findingId, related: p.relatedEventIds, location: p.location };
  });
}

describe('evidence writer', () => {
  it('stores every event exactly once across a crash that inserted a batch without committing it; evidence queries see them', async () => {
    const r = await rig('once');
    await emitTraffic(r.gateway, 25, 20); // 2,000 events over 25 sessions, interleaved over 4 partitions
    await r.gateway.emitter.checkpoint();

    let batches = 0;
    let crashed: Promise<void> | undefined;
    const first = r.writer({
      maxBatchRecords: 300,
      beforeCommit: () => {
        batches++;
        if (batches === 3) crashed = first.abort(); // inserted, never committed: as a kill -9 here
      },
    });
    await first.start();
    await expect.poll(() => batches >= 3 || first.stats.state === 'failed', { timeout: 20_000 }).toBe(true);
    expect(first.stats.lastError).toBeUndefined();
    await crashed;
    expect(first.stats.state).toBe('stopped');
    expect(first.stats.batches).toBe(2); // committed batches
    const afterCrash = await counts(r.store);
    expect(afterCrash.rows).toBe(900); // three batches inserted, two committed
    expect(afterCrash.unique).toBe(900);

    // More traffic while the writer is down, then a new writer of the same group.
    await emitTraffic(r.gateway, 5, 10);
    const second = r.writer({ maxBatchRecords: 1_000 });
    await second.start();
    await second.idle();
    expect(second.stats.duplicates).toBeGreaterThanOrEqual(300); // the uncommitted batch came again
    expect(second.stats.lag).toBe(0);
    expect(second.stats.lagByPartition).toEqual([0, 0, 0, 0]);
    await second.stop();
    expect(second.stats.state).toBe('stopped');

    const inLog = await readLog(r.log, 'test-reader');
    expect(inLog.undecodable).toBe(0);
    const c = await counts(r.store);
    expect(c.unique).toBe(new Set(inLog.ids).size);
    expect(c.rows).toBe(c.unique); // exactly once
    const stored = await r.store.query('SELECT toString(event_id) FROM events', {}, { maxRows: 100_000 });
    expect(new Set(stored.rows.map((row) => String(row[0])))).toEqual(new Set(inLog.ids));
    // A clean, interleaved log raises no finding (no false positives from cross-partition order).
    expect(await findings(r.store)).toEqual([]);
    expect(first.stats.checkpointsVerified + second.stats.checkpointsVerified).toBeGreaterThanOrEqual(1);

    const completeness = await runEvidenceQuery(r.store, 'pci.10.2.2');
    expect(Number(completeness.summary['checked'])).toBe(c.unique);
    expect(Number(completeness.summary['missing'])).toBe(0);
    const startStop = await runEvidenceQuery(r.store, 'pci.10.2.1.6');
    expect(startStop.rows.length).toBeGreaterThanOrEqual(2); // audit.started of both producers
    const replay = await runEvidenceQuery(r.store, 'session-replay', {}, { sessionId: 'sess-3' });
    expect(replay.rows.length).toBe(20 * TYPES.length + 10 * TYPES.length);
  });

  it('corrupt records, a broken link, a gap and a forged checkpoint each raise a stored finding; the broken events are stored', async () => {
    const r = await rig('findings');
    const writer = r.writer({ maxBatchRecords: 500 });
    await writer.start();
    await new Promise((res) => setTimeout(res, 120)); // past the writer's start + reorder window: gaps are reportable

    await emitTraffic(r.gateway, 4, 5);
    const cp = await r.gateway.emitter.checkpoint();
    expect(cp).toBeDefined();
    await writer.idle();
    expect(await findings(r.store)).toEqual([]);
    expect(writer.stats.checkpointsVerified).toBeGreaterThanOrEqual(1);

    // 1. Records that are not events: garbage, and a real event cut short.
    const real = encodeEvent(chained('gateway.request.received', 'trunc-producer', 1, new Uint8Array(32)));
    const [garbage, truncated] = await r.log.append([
      { key: 'sess-x', value: new TextEncoder().encode('definitely not an avro event') },
      { key: 'sess-y', value: real.subarray(0, real.length - 7) },
    ]);

    // 2. A chain whose third event names the wrong predecessor, appended straight to the log.
    const e1 = chained('gateway.request.received', 'forged-gw', 1, new Uint8Array(32));
    const b1 = encodeEvent(e1);
    const e2 = chained('policy.decided', 'forged-gw', 2, sha256(b1));
    const b2 = encodeEvent(e2);
    const e3 = chained('gateway.request.forwarded', 'forged-gw', 3, sha256(new TextEncoder().encode('not event 2')));
    // 3. A chain with sequence 3 missing (4 arrives, 3 never does).
    const g1 = chained('gateway.request.received', 'gappy-gw', 1, new Uint8Array(32));
    const gb1 = encodeEvent(g1);
    const g2 = chained('policy.decided', 'gappy-gw', 2, sha256(gb1));
    const gb2 = encodeEvent(g2);
    const g4 = chained('gateway.request.forwarded', 'gappy-gw', 4, sha256(new TextEncoder().encode('event 3')));
    // 4. The gateway's checkpoint with one signature byte flipped, under a fresh event id.
    const cpEvent = (await readAll(r.log)).find((e) => e.metadata.type === 'integrity.checkpoint' && e.metadata.producer === 'gateway-test');
    expect(cpEvent).toBeDefined();
    const forgedCp = cpEvent as AnyAttestEvent & { payload: { signature: Uint8Array } }; // a fresh decode: ours to change
    (forgedCp.metadata as { eventId: string }).eventId = uuidv7();
    const sig = Buffer.from(forgedCp.payload.signature);
    sig[10] = (sig[10] ?? 0) ^ 0xff;
    forgedCp.payload.signature = sig;

    await r.log.append([
      { key: 'forged-a', value: b1 },
      { key: 'forged-b', value: b2 },
      { key: 'forged-a', value: encodeEvent(e3) },
      { key: 'gappy-a', value: gb1 },
      { key: 'gappy-b', value: gb2 },
      { key: 'gappy-c', value: encodeEvent(g4) },
      { key: 'producer:gateway-test', value: encodeEvent(forgedCp) },
    ]);
    await writer.idle();

    const fs = await findings(r.store);
    const by = (d: string) => fs.filter((f) => f.detector === d);
    expect(by('evidence-writer.undecodable_record').map((f) => f.location).sort()).toEqual(
      [`log:p${garbage!.partition}@${garbage!.offset}`, `log:p${truncated!.partition}@${truncated!.offset}`].sort(),
    );
    expect(by('evidence-writer.chain_link_mismatch')).toMatchObject([{ related: [e3.metadata.eventId], location: `producer/forged-gw/${EPOCH}#2-3` }]);
    expect(by('evidence-writer.chain_gap')).toMatchObject([{ related: [g4.metadata.eventId], location: `producer/gappy-gw/${EPOCH}#3-3` }]);
    expect(by('evidence-writer.bad_checkpoint_signature')).toMatchObject([{ related: [forgedCp.metadata.eventId] }]);
    expect(fs).toHaveLength(5);
    expect(writer.stats.undecodable).toBe(2);
    expect(writer.stats.findingsEmitted).toBe(5);

    // The broken events are evidence too: all stored; the undecodable records are not (they have no row).
    const ids = [e1, e2, e3, g1, g2, g4, forgedCp].map((e) => e.metadata.eventId);
    const present = await r.store.query('SELECT count() FROM events WHERE toString(event_id) IN {ids:Array(String)}', { ids });
    expect(Number(present.rows[0]?.[0])).toBe(ids.length);
    const inLog = await readLog(r.log, 'test-reader');
    expect(inLog.undecodable).toBe(2);
    const c = await counts(r.store);
    expect(c.rows).toBe(inLog.ids.length);
    expect(c.unique).toBe(c.rows);
    // The findings are the writer's own chained events.
    const own = await r.store.query("SELECT count() FROM events WHERE type = 'finding.opened' AND producer = 'evidence-writer-test'");
    expect(Number(own.rows[0]?.[0])).toBe(5);
  });
});

const EPOCH = '019b76da-a800-7000-8000-0000000000ee';

function chained<K extends EventType>(type: K, producer: string, sequence: number, prevHash: Uint8Array): AnyAttestEvent {
  const unchained = newEvent(type, SAMPLE_PARTS[type], { producer: { id: producer, epoch: EPOCH } });
  return chainEvent(unchained, { sequence, prevHash }) as AnyAttestEvent;
}

async function readAll(log: FileEventLog): Promise<AnyAttestEvent[]> {
  const c = await log.consumer(`peek-${Date.now()}`);
  const out: AnyAttestEvent[] = [];
  for (;;) {
    const batch = await c.poll(10_000, 20);
    if (batch.length === 0) break;
    for (const r of batch) {
      try {
        out.push(decodeEvent(r.value).event as AnyAttestEvent);
      } catch {
        // not an event
      }
    }
  }
  await c.close();
  return out;
}
