import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { decodeEvent, encodeEvent, type AnyAttestEvent } from '../events';
import { InMemoryKeyStore, Keyring, sha256 } from '../integrity';
import { MemoryEventLog } from '../log';
import { EvidenceEmitter, memoryCheckpoints, systemActor } from './emitter';
import { verifyEncodedEvents, type EvidenceRecord } from './verify-events';

const CADENCE = { everyEvents: 1000, everyMs: 60_000 };

/**
 * A stored redaction (invariant 5): the store keeps a processor's redacted copy of an event in its
 * place, with the original's chain hash and the id of the data.masked that attests the copy.
 */
describe('verifyEncodedEvents: stored redactions', () => {
  async function setup() {
    const log = new MemoryEventLog({ partitions: 1 });
    const keyring = await Keyring.open(new InMemoryKeyStore());
    await keyring.rotate();
    const open = (id: string) => EvidenceEmitter.open({ log, keyring, producerId: id, tenantId: 't', checkpoints: memoryCheckpoints(), logger: pino({ level: 'silent' }), cadence: CADENCE });
    const gateway = await open('gateway-1');
    const dlp = await open('dlp-1');
    const changed = (summary: string) =>
      gateway.build('config.changed', {
        actor: systemActor('gateway-1'),
        source: { address: 'local', userAgent: null },
        target: { protocol: 'internal', service: 'attest', resource: 'policy', model: null },
        outcome: { result: 'success', status: null, reason: null },
        correlation: { sessionId: 's', requestId: summary, upstreamRequestId: null },
        payload: { objectKind: 'policy', what: 'policy', change: 'updated', oldVersion: null, newVersion: '2', oldDigest: null, newDigest: null, override: false, summary },
      });
    const [, original] = await gateway.emit([changed('first'), changed('db password=hunter2'), changed('third')], 's');
    const originalBytes = encodeEvent(original!);
    // The processor's redacted copy: the same event, one field redacted, encoded again.
    const redacted = encodeEvent({ ...original!, payload: { ...original!.payload, summary: 'db password=[REDACTED]' } } as AnyAttestEvent);
    const [attestation] = await dlp.emit(
      [
        dlp.build('data.masked', {
          actor: original!.actor,
          source: original!.source,
          target: original!.target,
          outcome: { result: 'success', status: null, reason: null },
          correlation: original!.correlation,
          payload: { subjectEventId: original!.metadata.eventId, originalDigest: Buffer.from(sha256(originalBytes)), maskedDigest: Buffer.from(sha256(Buffer.from('db password=[REDACTED]'))), redactedEventDigest: Buffer.from(sha256(redacted)), hits: [] },
        }),
      ],
      's',
    );
    await gateway.checkpoint();
    await dlp.checkpoint();
    const c = await log.consumer('read', { startFrom: 'earliest' });
    const records = (await c.poll(100, 100)).map((r) => r.value);
    /** The store's view: the original replaced by `stored`, with the original's hash and an attestation id. */
    const storedWith = (stored: Uint8Array, redactedBy = attestation!.metadata.eventId): EvidenceRecord[] =>
      records.map((b) => (decodeEvent(b).event.metadata.eventId === original!.metadata.eventId ? { bytes: stored, originalHash: sha256(originalBytes), redactedBy } : b));
    return { keyring, original: original!, redacted, storedWith };
  }

  it('accepts a redacted copy attested by data.masked: the chain, roots and checkpoints verify with the original hash', async () => {
    const { keyring, redacted, storedWith } = await setup();
    const report = await verifyEncodedEvents(storedWith(redacted), keyring.jwks(), { cadence: CADENCE, storageOrder: true });
    expect(report.findings).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.redactedEvents).toBe(1);
  });

  it('reports the event as altered when the stored copy is not the attested one, or the attestation is missing or about another event', async () => {
    const { keyring, original, redacted, storedWith } = await setup();
    const other = encodeEvent({ ...original, payload: { ...original.payload, summary: 'db password=[gone]' } } as AnyAttestEvent);
    for (const [stored, by, why] of [
      [other, undefined, /not the redaction/],
      [redacted, '01963e3c-0000-7000-8000-000000000000', /not in the store/],
    ] as const) {
      const report = await verifyEncodedEvents(storedWith(stored, by), keyring.jwks(), { cadence: CADENCE, storageOrder: true });
      expect(report.ok).toBe(false);
      expect(report.findings).toEqual([expect.objectContaining({ code: 'altered', eventIds: [original.metadata.eventId], detail: expect.stringMatching(why) })]);
    }
  });

  it('without the redaction claim, the same bytes are an altered event (the store must keep the claim)', async () => {
    const { keyring, original, redacted, storedWith } = await setup();
    const plain = storedWith(redacted).map((r) => (r instanceof Uint8Array ? r : r.bytes));
    const report = await verifyEncodedEvents(plain, keyring.jwks(), { cadence: CADENCE, storageOrder: true });
    expect(report.ok).toBe(false);
    expect(report.findings.some((f) => f.code === 'altered' && f.eventIds.includes(original.metadata.eventId))).toBe(true);
  });
});
