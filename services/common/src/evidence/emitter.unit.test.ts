import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeEvent, type AnyAttestEvent } from '../events';
import { InMemoryKeyStore, Keyring } from '../integrity';
import { LogError, MemoryEventLog } from '../log';
import { checkpointFile, EvidenceEmitter, systemActor } from './emitter';
import { verifyEncodedEvents } from './verify-events';

const CADENCE = { everyEvents: 1000, everyMs: 60_000 };

describe('EvidenceEmitter: an outage of the log is itself evidence', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  /** A producer on an in-memory log, and a config.changed event builder. */
  async function producer(id: string) {
    const log = new MemoryEventLog({ partitions: 1 });
    const keyring = await Keyring.open(new InMemoryKeyStore());
    await keyring.rotate();
    const emitter = await EvidenceEmitter.open({ log, keyring, producerId: id, tenantId: 't', checkpoints: checkpointFile(mkdtempSync(join(tmpdir(), 'attest-emitter-')), id), logger: pino({ level: 'silent' }), cadence: CADENCE });
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
    return { log, keyring, emitter, event };
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
    expect(events.map((e) => [e.metadata.type, e.correlation.requestId.startsWith('paused:') ? 'paused' : e.correlation.requestId])).toEqual([
      ['config.changed', 'r1'],
      ['audit.stopped', 'paused'],
      ['config.changed', 'r4'],
      ['config.changed', 'r5'],
      ['integrity.checkpoint', expect.any(String)],
    ]);
    expect(events[1]!.payload).toMatchObject({ reason: 'paused', resumeExpected: true, detail: expect.stringMatching(/refused appends from .* to .*fail closed/) });
    const report = await verifyEncodedEvents(records, keyring.jwks(), { cadence: CADENCE });
    expect(report.ok).toBe(true);
  });

  it('a checkpoint the log refused is not linked to: the next checkpoint follows the last durable one and the chain verifies', async () => {
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
});
