/**
 * splitForVerification as it was before the metadata-only decode (stop 11): every record decoded
 * whole. Kept as the reference the new split is compared with, by its unit test
 * (services/common/src/evidence/verify-events-split.unit.test.ts) and by bench/verify-events.bench.ts.
 */
import { isContentEvent } from '../../services/common/src/dlp/content-fields';
import type { EvidenceRecord, RedactionClaim } from '../../services/common/src/evidence/verify-events';
import { decodeEvent, type AnyAttestEvent } from '../../services/common/src/events';
import { checkpointFromParts, sha256, type SignedCheckpoint, type VerifyEvent } from '../../services/common/src/integrity';

export function referenceSplit(records: Iterable<EvidenceRecord>, opts: { dropIdenticalCopies?: boolean } = {}) {
  const events: VerifyEvent[] = [];
  const redactions: RedactionClaim[] = [];
  const checkpoints: SignedCheckpoint[] = [];
  const attestations: AnyAttestEvent[] = [];
  const kept: Uint8Array[] = [];
  const byId = opts.dropIdenticalCopies === true ? new Map<string, Uint8Array>() : undefined;
  for (const record of records) {
    const redacted = record instanceof Uint8Array ? undefined : record;
    const bytes = redacted === undefined ? (record as Uint8Array) : redacted.bytes;
    const d = decodeEvent(bytes);
    if (byId !== undefined) {
      const first = byId.get(d.event.metadata.eventId);
      if (first !== undefined && Buffer.compare(first, bytes) === 0) continue;
      if (first === undefined) byId.set(d.event.metadata.eventId, bytes);
    }
    kept.push(bytes);
    if (d.type === 'data.masked') attestations.push(d.event as AnyAttestEvent);
    if (d.type === 'integrity.checkpoint') {
      const p = d.event.payload;
      checkpoints.push(
        checkpointFromParts(
          { producer: p.producer, epoch: p.epoch, firstSequence: p.firstSequence, lastSequence: p.lastSequence, count: p.count, fromTimeUs: p.fromTimeUs, toTimeUs: p.toTimeUs, lastHash: p.lastHash, merkleRoot: p.merkleRoot, prevCheckpointHash: p.prevCheckpointHash, closed: p.closed, keyId: p.keyId },
          p.signature,
        ),
      );
      continue;
    }
    const m = d.event.metadata;
    const epoch = m.producerEpoch ?? '';
    if (redacted !== undefined) {
      redactions.push({ eventId: m.eventId, producer: m.producer, epoch, sequence: m.sequence, originalHash: redacted.originalHash, redactedHash: sha256(bytes), redactedBy: redacted.redactedBy });
    }
    events.push({ eventId: m.eventId, producer: m.producer, epoch, sequence: m.sequence, prevHash: m.prevHash, timeUs: m.timeUs, bytes, hash: redacted === undefined ? undefined : redacted.originalHash, unordered: isContentEvent(d.event) ? true : undefined });
  }
  let decoded: AnyAttestEvent[] | undefined;
  return {
    events,
    checkpoints,
    attestations,
    redactions,
    // Lazy, as in splitForVerification: a benchmark of the split alone does not pay for it.
    get decoded(): AnyAttestEvent[] {
      return (decoded ??= kept.map((b) => decodeEvent(b).event as AnyAttestEvent));
    },
  };
}
