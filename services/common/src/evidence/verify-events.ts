import { CONTENT_FIELDS } from '../dlp/content-fields';
import { decodeEvent, type AnyAttestEvent, type PayloadOf } from '../events';
// Not re-exported by ../events (index.ts) yet.
import { decodeEventChainMetadata } from '../events/codec';
import { checkpointFromParts, hashEquals, sha256, verifyProducerLog, maxGapUsFor, type Cadence, type Finding, type SignedCheckpoint, type VerifyEvent, type VerifyReport } from '../integrity';
import type { JSONWebKeySet } from 'jose';

/**
 * Verification over encoded events as they sit on the log or in the store: every field the check
 * relies on is decoded from the signed bytes themselves, never taken from separate columns.
 */
export interface SplitEvents {
  events: VerifyEvent[];
  checkpoints: SignedCheckpoint[];
  /**
   * Every record kept, decoded. Decoded again on first access and cached: holding a million decoded
   * events through the verification made the GC promote and mark them all (a third of the time of
   * verifyEncodedEvents), while most callers (the console) only need the report.
   */
  readonly decoded: AnyAttestEvent[];
  /** The data.masked events among them, which attest stored redactions (checkRedactions). */
  attestations: AnyAttestEvent[];
  /** Stored redactions to check against their attestations (checkRedactions). */
  redactions: RedactionClaim[];
}

/**
 * A stored event that is not the chained one but a redaction of it (the DLP stage stored it, invariant
 * 5): the store keeps the original's chain hash and the id of the data.masked event attesting it.
 */
export interface RedactedRecord {
  /** The stored (redacted) event bytes. */
  readonly bytes: Uint8Array;
  /** The chain hash of the event these bytes replace (the store's event_hash). */
  readonly originalHash: Uint8Array;
  /** Id of the data.masked event that attests the redaction. */
  readonly redactedBy: string;
}

/** What a store hands the verifier: an event's bytes, or a redaction of it. */
export type EvidenceRecord = Uint8Array | RedactedRecord;

export interface RedactionClaim {
  readonly eventId: string;
  readonly producer: string;
  readonly epoch: string;
  readonly sequence: number;
  readonly originalHash: Uint8Array;
  readonly redactedHash: Uint8Array;
  readonly redactedBy: string;
}

/**
 * The content field of each content event type (isContentEvent): decodeEventChainMetadata says
 * whether it holds text, without decoding the payload.
 */
const CONTENT_TEXT: ReadonlyMap<string, string> = new Map(CONTENT_FIELDS.map((c) => [c.type, c.field]));

/**
 * Every field the chain check needs comes from the event's metadata, decoded from its signed bytes
 * (`decodeEventChainMetadata`: those fields of the metadata record only, the rest of the body walked
 * over and checked, so a record fails exactly as a full decode would fail). Decoded whole only where
 * the content is used: integrity.checkpoint (its payload is the checkpoint), data.masked
 * (attestations), and `decoded` when read.
 */
export function splitForVerification(records: Iterable<EvidenceRecord>, opts: { dropIdenticalCopies?: boolean } = {}): SplitEvents {
  const events: VerifyEvent[] = [];
  const redactions: RedactionClaim[] = [];
  const checkpoints: SignedCheckpoint[] = [];
  const attestations: AnyAttestEvent[] = [];
  /** Bytes of every record kept, in order: `decoded` is rebuilt from them on demand. */
  const kept: Uint8Array[] = [];
  // A log may hold a record twice, byte for byte: an append retried after a lost acknowledgement
  // (EventLog.append's contract; the emitter re-appends what is in doubt). Readers of a log dedupe
  // by event id, and so does this when asked: only an identical copy is dropped, a different event
  // under a known id stays and is reported. A store keeps one row per id, so there a copy is a finding.
  const byId = opts.dropIdenticalCopies === true ? new Map<string, Uint8Array>() : undefined;
  for (const record of records) {
    const redacted = record instanceof Uint8Array ? undefined : record;
    const bytes = redacted === undefined ? (record as Uint8Array) : redacted.bytes;
    const m = decodeEventChainMetadata(bytes, CONTENT_TEXT);
    if (byId !== undefined) {
      const first = byId.get(m.eventId);
      if (first !== undefined && Buffer.compare(first, bytes) === 0) continue;
      if (first === undefined) byId.set(m.eventId, bytes);
    }
    kept.push(bytes);
    if (m.type === 'data.masked') attestations.push(decodeEvent(bytes).event as AnyAttestEvent);
    if (m.type === 'integrity.checkpoint') {
      const d = decodeEvent(bytes);
      if (d.type !== 'integrity.checkpoint') throw new Error('unreachable: decode and decodeChainMetadata disagree on the type');
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
    const epoch = m.producerEpoch ?? '';
    if (redacted !== undefined) {
      redactions.push({ eventId: m.eventId, producer: m.producer, epoch, sequence: m.sequence, originalHash: redacted.originalHash, redactedHash: sha256(bytes), redactedBy: redacted.redactedBy });
    }
    // One object shape for every event (the verifier reads these fields a million times): the
    // optional members are always present, undefined when they do not apply.
    events.push({
      eventId: m.eventId,
      producer: m.producer,
      epoch,
      sequence: m.sequence,
      prevHash: m.prevHash,
      timeUs: m.timeUs,
      bytes,
      hash: redacted === undefined ? undefined : redacted.originalHash,
      // Stored by the DLP content stage, apart from the writer's rows: no storage order to check.
      // isContentEvent(event), read from the bytes without decoding the payload.
      unordered: m.hasText ? true : undefined,
    });
  }
  let decoded: AnyAttestEvent[] | undefined;
  return {
    events,
    checkpoints,
    attestations,
    redactions,
    get decoded(): AnyAttestEvent[] {
      return (decoded ??= kept.map((b) => decodeEvent(b).event as AnyAttestEvent));
    },
  };
}

/**
 * Each stored redaction must be attested: a data.masked event (among `decoded`, itself verified
 * with its producer's chain) naming the event (subjectEventId), the chain hash the store kept
 * (originalDigest) and exactly the stored bytes (redactedEventDigest). An unattested one is
 * reported as altered: its bytes are not the chained event's and nothing vouches for them. An
 * attestation not yet covered by its producer's checkpoint is accepted now and proven (or reported
 * as inserted) once the checkpoint is due, like any other recent event.
 */
export function checkRedactions(claims: readonly RedactionClaim[], decoded: readonly AnyAttestEvent[]): Finding[] {
  if (claims.length === 0) return [];
  const byId = new Map<string, AnyAttestEvent>();
  for (const e of decoded) if (e.metadata.type === 'data.masked') byId.set(e.metadata.eventId, e);
  const findings: Finding[] = [];
  for (const c of claims) {
    const d = byId.get(c.redactedBy);
    const p = d?.payload as PayloadOf<'data.masked'> | undefined;
    const problem =
      p === undefined
        ? `its attestation ${c.redactedBy} (data.masked) is not in the store`
        : p.subjectEventId !== c.eventId
          ? `its attestation ${c.redactedBy} is about event ${p.subjectEventId ?? '(none)'}`
          : p.originalDigest === null || !hashEquals(p.originalDigest, c.originalHash)
            ? `its attestation ${c.redactedBy} names another original hash than the one stored`
            : p.redactedEventDigest === null || !hashEquals(p.redactedEventDigest, c.redactedHash)
              ? `the stored bytes are not the redaction ${c.redactedBy} attests`
              : undefined;
    if (problem === undefined) continue;
    findings.push({
      code: 'altered',
      producer: c.producer,
      epoch: c.epoch,
      sequences: c.sequence > 0 ? { from: c.sequence, to: c.sequence } : null,
      eventIds: [c.eventId],
      detail: `event ${c.eventId} is stored as a redaction, but ${problem}`,
    });
  }
  return findings;
}

export async function verifyEncodedEvents(
  records: Iterable<EvidenceRecord>,
  jwks: JSONWebKeySet,
  opts: { cadence: Cadence; window?: { fromUs: number; toUs: number }; storageOrder?: boolean },
): Promise<VerifyReport & { decoded: AnyAttestEvent[]; redactedEvents: number }> {
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
  const unattested = checkRedactions(split.redactions, split.attestations);
  return {
    ...report,
    ok: report.ok && unattested.length === 0,
    findings: [...report.findings, ...unattested],
    // Decoded only if the caller reads it (see SplitEvents.decoded).
    get decoded(): AnyAttestEvent[] {
      return split.decoded;
    },
    redactedEvents: split.redactions.length - unattested.length,
  };
}
