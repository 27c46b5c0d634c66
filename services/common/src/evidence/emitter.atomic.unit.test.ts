import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeEvent, type AnyAttestEvent, type UnchainedEvent } from '../events';
import { InMemoryKeyStore, Keyring, ProducerChain, eventHash, sha256 } from '../integrity';
import { LogError, MemoryEventLog, type AppendResult, type EventLog, type LogRecord } from '../log';
import { EvidenceEmitter, memoryCheckpoints, systemActor } from './emitter';
import { verifyEncodedEvents } from './verify-events';

/**
 * A batch is atomic with respect to the chain: an event of it that cannot be encoded (a card
 * number, a schema mismatch) or is too large for the log leaves the chain, its Merkle range, the
 * sequence and the checkpoint cadence exactly as they were; emit rejects with the original error.
 */

const CADENCE = { everyEvents: 1000, everyMs: 60_000 };
const PAN = '4111111111111111';

describe('EvidenceEmitter: a batch takes its chain positions all together or not at all', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  async function producer(id: string, opts: { maxEventBytes?: number } = {}) {
    const memory = new MemoryEventLog({ partitions: 1 });
    let down = false;
    const appends: number[] = [];
    // The in-memory log, counting append calls, and down on demand.
    const log: EventLog = Object.assign(Object.create(memory) as EventLog, {
      async append(records: readonly LogRecord[]): Promise<AppendResult[]> {
        appends.push(records.length);
        if (down) throw new LogError('log_unavailable', 'broker down', { retriable: true });
        return memory.append(records);
      },
    });
    const keyring = await Keyring.open(new InMemoryKeyStore());
    await keyring.rotate();
    const emitter = await EvidenceEmitter.open({
      log,
      keyring,
      producerId: id,
      tenantId: 't',
      checkpoints: memoryCheckpoints(),
      logger: pino({ level: 'silent' }),
      cadence: CADENCE,
      ...(opts.maxEventBytes ? { maxEventBytes: opts.maxEventBytes } : {}),
    });
    let closed = false;
    cleanup.push(async () => {
      if (!closed) await emitter.close();
      await memory.close();
    });
    const event = (n: number, summary: string | null = null) =>
      emitter.build('config.changed', {
        actor: systemActor(id),
        source: { address: 'local', userAgent: null },
        target: { protocol: 'internal', service: 'attest', resource: 'x', model: null },
        outcome: { result: 'success', status: null, reason: null },
        correlation: { sessionId: 's', requestId: `r${n}`, upstreamRequestId: null },
        payload: { objectKind: 'policy', what: 'policy', change: 'updated', oldVersion: null, newVersion: String(n), oldDigest: null, newDigest: null, override: false, summary },
      });
    const readAll = async (): Promise<Uint8Array[]> => {
      const c = await log.consumer(`read-${Math.random()}`, { startFrom: 'earliest' });
      return (await c.poll(1000, 100)).map((r) => r.value);
    };
    const decoded = async () => (await readAll()).map((b) => decodeEvent(b).event as AnyAttestEvent);
    const close = async () => {
      await emitter.close();
      closed = true;
    };
    const setDown = (d: boolean) => {
      down = d;
    };
    return { emitter, keyring, event, readAll, decoded, close, appends, setDown };
  }

  /** Every record on the log verifies with no finding at all (after close: every event is covered). */
  async function expectClean(p: Awaited<ReturnType<typeof producer>>) {
    await p.close();
    const records = await p.readAll();
    const report = await verifyEncodedEvents(records, p.keyring.jwks(), { cadence: CADENCE });
    expect(report.findings ?? []).toEqual([]);
    expect(report.ok).toBe(true);
    return records;
  }

  const bad: Array<[string, string, (p: Awaited<ReturnType<typeof producer>>) => UnchainedEvent<'config.changed'>, { maxEventBytes?: number }]> = [
    ['a card number', 'event_pan_detected', (p) => p.event(2, `card ${PAN} on the policy`), {}],
    [
      'a schema mismatch',
      'event_invalid',
      (p) => {
        const e = p.event(2);
        (e.payload as { change: string }).change = 'not-a-change-kind';
        return e;
      },
      {},
    ],
    ['an event over the size limit', 'evidence_event_too_large', (p) => p.event(2, 'x'.repeat(4096)), { maxEventBytes: 2048 }],
  ];

  for (const [what, code, make, opts] of bad) {
    it(`${what} in the 2nd event of 3: emit rejects with ${code}, nothing is appended or chained, and the log verifies`, async () => {
      const p = await producer(`gw-${code}`, opts);
      const [e0] = await p.emitter.emit([p.event(0)], 's');
      const appendsBefore = p.appends.length;

      await expect(p.emitter.emit([p.event(1), make(p), p.event(3)], 's')).rejects.toMatchObject({ code });
      expect(p.appends.length, 'no append call').toBe(appendsBefore);
      expect((await p.readAll()).length).toBe(1);

      // The next batch takes the positions right after the last event on the log.
      const next = await p.emitter.emit([p.event(4), p.event(5)], 's');
      expect(next.map((e) => e.metadata.sequence)).toEqual([e0!.metadata.sequence + 1, e0!.metadata.sequence + 2]);
      const onLog = await p.readAll();
      expect(Buffer.from(next[0]!.metadata.prevHash)).toEqual(Buffer.from(sha256(onLog[0]!)));
      expect(Buffer.from(next[1]!.metadata.prevHash)).toEqual(Buffer.from(sha256(onLog[1]!)));

      // The checkpoint covers exactly the events on the log (Merkle range and cadence untouched).
      const cp = await p.emitter.checkpoint();
      expect(cp?.fields).toMatchObject({ firstSequence: 1, lastSequence: 3, count: 3 });

      const records = await expectClean(p);
      const ids = records.map((b) => (decodeEvent(b).event as AnyAttestEvent).correlation.requestId).filter((r) => r.startsWith('r'));
      expect(ids).toEqual(['r0', 'r4', 'r5']);
    });
  }

  it('a refused event in the 1st or last position of a batch, or alone, changes nothing either', async () => {
    const p = await producer('gw-positions');
    const pan = () => p.event(9, `card ${PAN}`);
    for (const batch of [[pan()], [pan(), p.event(1)], [p.event(1), p.event(2), pan()]]) {
      await expect(p.emitter.emit(batch, 's')).rejects.toMatchObject({ code: 'event_pan_detected' });
    }
    expect(p.appends).toEqual([]);
    const [e] = await p.emitter.emit([p.event(3)], 's');
    expect(e!.metadata.sequence).toBe(1);
    const records = await expectClean(p);
    expect(records.map((b) => (decodeEvent(b).event as AnyAttestEvent).metadata.type)).toEqual(['config.changed', 'integrity.checkpoint']);
  });

  it('after an outage, a batch refused for a card number does not spend the pause event: the next batch records it and the log verifies', async () => {
    const p = await producer('gw-pause');
    await p.emitter.emit([p.event(1)], 's');
    p.setDown(true);
    await expect(p.emitter.emit([p.event(2)], 's')).rejects.toMatchObject({ code: 'evidence_unavailable' });
    p.setDown(false);
    // The first batch after the outage is refused by the encoder: the r2 in doubt goes to the log
    // (the re-append comes before anything is encoded), the audit.stopped (paused) does not.
    await expect(p.emitter.emit([p.event(3), p.event(4, `card ${PAN}`)], 's')).rejects.toMatchObject({ code: 'event_pan_detected' });
    expect((await p.decoded()).map((e) => e.correlation.requestId)).toEqual(['r1', 'r2']);
    const returned = await p.emitter.emit([p.event(5)], 's');
    expect(returned.map((e) => e.correlation.requestId)).toEqual(['r5']);
    const records = await expectClean(p);
    const events = records.map((b) => decodeEvent(b).event as AnyAttestEvent);
    expect(events.map((e) => [e.metadata.type, e.metadata.sequence])).toEqual([
      ['config.changed', 1],
      ['config.changed', 2],
      ['audit.stopped', 3],
      ['config.changed', 4],
      ['integrity.checkpoint', 0],
    ]);
  });

  it('concurrent emits with a refused batch among them keep one gapless chain', async () => {
    const p = await producer('gw-concurrent');
    const results = await Promise.allSettled([
      p.emitter.emit([p.event(1), p.event(2)], 's1'),
      p.emitter.emit([p.event(3), p.event(4, `card ${PAN}`), p.event(5)], 's2'),
      p.emitter.emit([p.event(6), p.event(7), p.event(8)], 's3'),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const records = await expectClean(p);
    const seqs = records.map((b) => (decodeEvent(b).event as AnyAttestEvent).metadata.sequence).filter((s) => s > 0);
    expect(seqs).toEqual([1, 2, 3, 4, 5]);
  });

  it('ProducerChain.appendHash moves the chain and the Merkle range exactly as append does', async () => {
    const keyring = await Keyring.open(new InMemoryKeyStore());
    await keyring.rotate();
    const a = ProducerChain.start({ producer: 'p', epoch: 'e', startUs: 0 });
    const b = ProducerChain.start({ producer: 'p', epoch: 'e', startUs: 0 });
    for (let i = 0; i < 7; i++) {
      const bytes = new TextEncoder().encode(`${i}:${Buffer.from(a.nextMetadata().prevHash).toString('hex')}`);
      a.append(bytes);
      b.appendHash(eventHash(bytes));
      expect(b.state).toEqual(a.state);
      expect(b.pending).toBe(a.pending);
    }
    const [ca, cb] = [await a.checkpoint(keyring.signingKey(), 10, { closed: true }), await b.checkpoint(keyring.signingKey(), 10, { closed: true })];
    expect(cb.fields).toEqual(ca.fields);
    expect(() => b.appendHash(eventHash(new Uint8Array(1)))).toThrow(expect.objectContaining({ code: 'integrity_epoch_closed' }));
  });
});
