import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeEvent, type AnyAttestEvent } from '../events';
import { InMemoryKeyStore, Keyring } from '../integrity';
import { LogError, MemoryEventLog, type AppendResult, type EventLog, type LogRecord } from '../log';
import { checkpointFile, EvidenceEmitter, systemActor, type CheckpointFile } from './emitter';
import { verifyEncodedEvents } from './verify-events';

const CADENCE = { everyEvents: 1000, everyMs: 60_000 };

describe('EvidenceEmitter: an outage of the log is itself evidence', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  /** A producer on an in-memory log, and a config.changed event builder. */
  async function producer(id: string, opts: { log?: EventLog; dir?: string; keyring?: Keyring; checkpoints?: CheckpointFile; maxEventBytes?: number } = {}) {
    const memory = new MemoryEventLog({ partitions: 1 });
    const log = opts.log ?? memory;
    const keyring = opts.keyring ?? (await Keyring.open(new InMemoryKeyStore()));
    if (!opts.keyring) await keyring.rotate();
    const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'attest-emitter-'));
    const checkpoints = opts.checkpoints ?? checkpointFile(dir, id);
    const emitter = await EvidenceEmitter.open({ log, keyring, producerId: id, tenantId: 't', checkpoints, logger: pino({ level: 'silent' }), cadence: CADENCE, ...(opts.maxEventBytes ? { maxEventBytes: opts.maxEventBytes } : {}) });
    cleanup.push(async () => {
      await emitter.close();
      await log.close();
    });
    const event = (n: number) =>
      emitter.build('config.changed', {
        actor: systemActor(id),
        source: { address: 'local', userAgent: null },
        target: { protocol: 'internal', service: 'attest', resource: 'x', model: null },
        outcome: { result: 'success', status: null, reason: null },
        correlation: { sessionId: 's', requestId: `r${n}`, upstreamRequestId: null },
        payload: { objectKind: 'policy', what: 'policy', change: 'updated', oldVersion: null, newVersion: String(n), oldDigest: null, newDigest: null, override: false, summary: null },
      });
    // `log` is the in-memory log (for injectFailure) when no other was given.
    return { log: memory, keyring, emitter, event, dir };
  }

  it('refuses while the log is down, then records audit.stopped (paused) with the window before the next event; the chain verifies', async () => {
    const { log, keyring, emitter, event } = await producer('gw-1');

    await emitter.emit([event(1)], 's');
    log.injectFailure(new LogError('log_unavailable', 'broker down', { retriable: true }));
    await expect(emitter.emit([event(2)], 's')).rejects.toMatchObject({ code: 'evidence_unavailable' });
    await expect(emitter.emit([event(3)], 's')).rejects.toMatchObject({ code: 'evidence_unavailable' });
    log.injectFailure(undefined);
    const returned = await emitter.emit([event(4)], 's');
    expect(returned.map((e) => e.metadata.type)).toEqual(['config.changed']);
    await emitter.emit([event(5)], 's');
    await emitter.checkpoint();

    const c = await log.consumer('read', { startFrom: 'earliest' });
    const records = (await c.poll(100, 100)).map((r) => r.value);
    const events = records.map((b) => decodeEvent(b).event as AnyAttestEvent);
    // r2's append failed with an unknown outcome: it is appended again before anything new is
    // chained; r3 was refused without taking a chain position.
    expect(events.map((e) => [e.metadata.type, e.correlation.requestId.startsWith('paused:') ? 'paused' : e.correlation.requestId])).toEqual([
      ['config.changed', 'r1'],
      ['config.changed', 'r2'],
      ['audit.stopped', 'paused'],
      ['config.changed', 'r4'],
      ['config.changed', 'r5'],
      ['integrity.checkpoint', expect.any(String)],
    ]);
    expect(events[2]!.payload).toMatchObject({ reason: 'paused', resumeExpected: true, detail: expect.stringMatching(/refused appends from .* to .*fail closed/) });
    const report = await verifyEncodedEvents(records, keyring.jwks(), { cadence: CADENCE });
    expect(report.ok).toBe(true);
  });

  it('a checkpoint the log refused stays pending and is appended before the next one, which links to it; the chain verifies', async () => {
    const { log, keyring, emitter, event } = await producer('gw-2');
    await emitter.emit([event(1)], 's');
    expect(await emitter.checkpoint()).toBeDefined();
    await emitter.emit([event(2)], 's');
    log.injectFailure(new LogError('log_unavailable', 'broker down', { retriable: true }));
    expect(await emitter.checkpoint()).toBeUndefined();
    log.injectFailure(undefined);
    await emitter.emit([event(3)], 's');
    expect(await emitter.checkpoint()).toBeDefined();

    const c = await log.consumer('read', { startFrom: 'earliest' });
    const records = (await c.poll(100, 100)).map((r) => r.value);
    const report = await verifyEncodedEvents(records, keyring.jwks(), { cadence: CADENCE });
    expect(report.findings ?? []).toEqual([]);
    expect(report.ok).toBe(true);
  });
  /** Reads every record of the log, in order. */
  async function readAll(log: EventLog, group = 'read'): Promise<Uint8Array[]> {
    const c = await log.consumer(group, { startFrom: 'earliest' });
    return (await c.poll(1000, 100)).map((r) => r.value);
  }

  it('an append whose acknowledgement was lost is appended again, identical: no chain position is given twice and the log verifies', async () => {
    const inner = new MemoryEventLog({ partitions: 1 });
    // The broker wrote the records and the acknowledgement never arrived (a broker stopping mid-request).
    let loseAcks = 0;
    const log: EventLog = Object.assign(Object.create(inner) as EventLog, {
      async append(records: readonly LogRecord[]): Promise<AppendResult[]> {
        const r = await inner.append(records);
        if (loseAcks > 0) {
          loseAcks--;
          throw new LogError('log_unavailable', 'request timed out', { retriable: true });
        }
        return r;
      },
    });
    const { keyring, emitter, event } = await producer('gw-lost-ack', { log });
    await emitter.emit([event(1)], 's');
    loseAcks = 1;
    await expect(emitter.emit([event(2)], 's')).rejects.toMatchObject({ code: 'evidence_unavailable' });
    await emitter.emit([event(3)], 's');
    loseAcks = 1;
    expect(await emitter.checkpoint()).toBeUndefined();
    expect(await emitter.checkpoint()).toBeDefined();
    await emitter.emit([event(4)], 's');
    expect(await emitter.checkpoint()).toBeDefined();

    const records = await readAll(inner);
    const events = records.map((b) => decodeEvent(b).event as AnyAttestEvent);
    const chained = events.filter((e) => e.metadata.sequence > 0);
    const positions = new Map<number, Set<string>>();
    for (const e of chained) positions.set(e.metadata.sequence, (positions.get(e.metadata.sequence) ?? new Set()).add(e.metadata.eventId));
    expect([...positions.values()].every((ids) => ids.size === 1), 'one event per chain position').toBe(true);
    // r2 and the lost checkpoint are on the log twice, byte for byte.
    expect(chained.filter((e) => e.correlation.requestId === 'r2')).toHaveLength(2);
    expect(events.filter((e) => e.metadata.type === 'integrity.checkpoint').length).toBe(3 + 1);
    const report = await verifyEncodedEvents(records, keyring.jwks(), { cadence: CADENCE });
    expect(report.findings ?? []).toEqual([]);
    expect(report.ok).toBe(true);
  });

  it('batches in doubt are appended again one call each: many failed appends never exceed what one append call may carry', async () => {
    const inner = new MemoryEventLog({ partitions: 1 });
    // A log that, like the Kafka adapter, refuses one call over a size limit (never retriable), and
    // that is down for a while.
    let down = false;
    let limit = Infinity;
    const log: EventLog = Object.assign(Object.create(inner) as EventLog, {
      async append(records: readonly LogRecord[]): Promise<AppendResult[]> {
        const bytes = records.reduce((n, r) => n + r.value.length, 0);
        if (bytes > limit) throw new LogError('log_record_too_large', `append() call of ${bytes} bytes exceeds the limit`, { retriable: false });
        if (down) throw new LogError('log_unavailable', 'broker down', { retriable: true });
        return inner.append(records);
      },
    });
    const { keyring, emitter, event } = await producer('gw-batches', { log });
    await emitter.emit([event(1)], 's');
    const one = (await readAll(inner, 'size'))[0]!.length;
    limit = 3 * one;
    down = true;
    // Three concurrent emits of two events each fail together: six events in doubt, over the limit.
    const failed = await Promise.allSettled([emitter.emit([event(2), event(3)], 's'), emitter.emit([event(4), event(5)], 's'), emitter.emit([event(6), event(7)], 's')]);
    expect(failed.every((f) => f.status === 'rejected')).toBe(true);
    down = false;
    await emitter.emit([event(8)], 's');
    limit = Infinity;
    expect(await emitter.checkpoint()).toBeDefined();
    const records = await readAll(inner);
    const ids = records.map((b) => (decodeEvent(b).event as AnyAttestEvent).correlation.requestId).filter((r) => r.startsWith('r'));
    expect(ids.sort()).toEqual(['r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'r7', 'r8']);
    const report = await verifyEncodedEvents(records, keyring.jwks(), { cadence: CADENCE });
    expect(report.findings ?? []).toEqual([]);
  });

  it('killed between a checkpoint\'s append and the save of its file, the next run appends it again and links to it: no fork', async () => {
    const log = new MemoryEventLog({ partitions: 1 });
    const dir = mkdtempSync(join(tmpdir(), 'attest-emitter-'));
    const keyring = await Keyring.open(new InMemoryKeyStore());
    await keyring.rotate();
    const real = checkpointFile(dir, 'gw-kill');
    // The process "dies" right after the append: save() never happens, the pending file stays.
    let dead = false;
    const dying: CheckpointFile = {
      ...real,
      save: async (cp) => {
        if (dead) throw new Error('killed');
        await real.save(cp);
      },
      savePending: async (p) => {
        if (dead && p.length === 0) throw new Error('killed');
        await real.savePending(p);
      },
    };
    const first = await producer('gw-kill', { log, dir, keyring, checkpoints: dying });
    await first.emitter.emit([first.event(1)], 's');
    expect(await first.emitter.checkpoint()).toBeDefined();
    await first.emitter.emit([first.event(2)], 's');
    dead = true;
    const lost = await first.emitter.checkpoint();
    expect(lost).toBeDefined();
    expect((await real.load())?.fields.lastSequence, 'the file still names the checkpoint before').toBe(1);
    expect(await real.loadPending()).toHaveLength(1);

    // The next run (same data directory) starts from the pending checkpoint.
    const second = await producer('gw-kill', { log, dir, keyring });
    await second.emitter.emit([second.event(3)], 's');
    await second.emitter.close();
    expect(await real.loadPending()).toEqual([]);
    expect((await real.load())?.fields.closed).toBe(true);

    const report = await verifyEncodedEvents(await readAll(log), keyring.jwks(), { cadence: CADENCE });
    expect(report.findings ?? []).toEqual([]);
    expect(report.ok).toBe(true);
  });

  it('an event over the size limit is refused before it takes a chain position, and so is the rest of its batch', async () => {
    const { log, keyring, emitter, event } = await producer('gw-big', { maxEventBytes: 2048 });
    await emitter.emit([event(1)], 's');
    const big = event(2);
    (big.payload as { summary: string | null }).summary = 'x'.repeat(4096);
    await expect(emitter.emit([event(3), big], 's')).rejects.toMatchObject({ code: 'evidence_event_too_large' });
    await emitter.emit([event(4)], 's');
    await emitter.checkpoint();
    const records = await readAll(log);
    expect(records.map((b) => (decodeEvent(b).event as AnyAttestEvent).correlation.requestId).filter((r) => r.startsWith('r'))).toEqual(['r1', 'r4']);
    const report = await verifyEncodedEvents(records, keyring.jwks(), { cadence: CADENCE });
    expect(report.findings ?? []).toEqual([]);
    expect(report.ok).toBe(true);
  });
});
