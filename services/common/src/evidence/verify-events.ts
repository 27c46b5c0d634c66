import { decodeEvent, type AnyAttestEvent } from '../events';
import { checkpointFromParts, verifyProducerLog, maxGapUsFor, type Cadence, type SignedCheckpoint, type VerifyEvent, type VerifyReport } from '../integrity';
import type { JSONWebKeySet } from 'jose';

/**
 * Verification over encoded events as they sit on the log or in the store: every field the check
 * relies on is decoded from the signed bytes themselves, never taken from separate columns.
 */
export interface SplitEvents {
  events: VerifyEvent[];
  checkpoints: SignedCheckpoint[];
  decoded: AnyAttestEvent[];
}

export function splitForVerification(records: Iterable<Uint8Array>, opts: { dropIdenticalCopies?: boolean } = {}): SplitEvents {
  const events: VerifyEvent[] = [];
  const checkpoints: SignedCheckpoint[] = [];
  const decoded: AnyAttestEvent[] = [];
  // A log may hold a record twice, byte for byte: an append retried after a lost acknowledgement
  // (EventLog.append's contract; the emitter re-appends what is in doubt). Readers of a log dedupe
  // by event id, and so does this when asked: only an identical copy is dropped, a different event
  // under a known id stays and is reported. A store keeps one row per id, so there a copy is a finding.
  const byId = new Map<string, Uint8Array>();
  for (const bytes of records) {
    const d = decodeEvent(bytes);
    const first = byId.get(d.event.metadata.eventId);
    if (opts.dropIdenticalCopies === true && first !== undefined && Buffer.compare(first, bytes) === 0) continue;
    if (first === undefined) byId.set(d.event.metadata.eventId, bytes);
    decoded.push(d.event as AnyAttestEvent);
    if (d.type === 'integrity.checkpoint') {
      const p = d.event.payload;
      checkpoints.push(
        checkpointFromParts(
          {
            producer: p.producer,
            epoch: p.epoch,
            firstSequence: p.firstSequence,
            lastSequence: p.lastSequence,
            count: p.count,
            fromTimeUs: p.fromTimeUs,
            toTimeUs: p.toTimeUs,
            lastHash: p.lastHash,
            merkleRoot: p.merkleRoot,
            prevCheckpointHash: p.prevCheckpointHash,
            closed: p.closed,
            keyId: p.keyId,
          },
          p.signature,
        ),
      );
      continue;
    }
    const m = d.event.metadata;
    events.push({ eventId: m.eventId, producer: m.producer, epoch: m.producerEpoch ?? '', sequence: m.sequence, prevHash: m.prevHash, timeUs: m.timeUs, bytes });
  }
  return { events, checkpoints, decoded };
}

export async function verifyEncodedEvents(
  records: Iterable<Uint8Array>,
  jwks: JSONWebKeySet,
  opts: { cadence: Cadence; window?: { fromUs: number; toUs: number }; storageOrder?: boolean },
): Promise<VerifyReport & { decoded: AnyAttestEvent[] }> {
  const split = splitForVerification(records, { dropIdenticalCopies: opts.storageOrder !== true });
  const report = await verifyProducerLog(
    {
      events: split.events,
      checkpoints: split.checkpoints,
      jwks,
      maxGapUs: maxGapUsFor(opts.cadence),
      ...(opts.window ? { window: opts.window } : {}),
    },
    // A partitioned log interleaves a producer's events across partitions (they are keyed by
    // session), so arrival order is not storage order; only a store read in its own order is.
    { checkOrder: opts.storageOrder === true },
  );
  return { ...report, decoded: split.decoded };
}
