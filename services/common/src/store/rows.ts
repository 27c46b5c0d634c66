/**
 * Events as the evidence store holds them: the envelope flattened to typed columns (one per
 * field an auditor filters or groups by), the type's payload as JSON text, and the encoded event
 * bytes exactly as they were on the log, so every stored row can be verified offline. Card data
 * appears only as PAN sightings: BIN, last four and a keyed HMAC, never a full PAN.
 */
import type { AttestEvent, DataMaskedPayload, Direction, EventType, MaskAction, MaskingSummary } from '../events';
import { StoreError } from './errors';

/** One row of the `events` table. Field names are the columns' names in camelCase. */
export interface StoredEvent {
  readonly eventId: string;
  readonly type: EventType;
  readonly code: string;
  readonly schemaVersion: number;
  /** Microseconds since the Unix epoch, UTC (column `time`, DateTime64(6, 'UTC')). */
  readonly timeUs: number;
  readonly producer: string;
  readonly producerEpoch: string | null;
  readonly sequence: number;
  /** 32 bytes. */
  readonly prevHash: Uint8Array;
  /** The event's chain hash, 32 bytes: SHA-256 of `eventBytes`, or of the original for a stored redaction. */
  readonly eventHash: Uint8Array;
  readonly tenantId: string;
  readonly pciRequirements: readonly string[];
  readonly actorSubject: string;
  readonly actorIssuer: string;
  readonly actorClientId: string | null;
  readonly actorGroups: readonly string[];
  readonly actorKind: string;
  readonly actorOnBehalfOf: string | null;
  readonly actorDev: boolean;
  readonly sourceAddress: string;
  readonly sourceUserAgent: string | null;
  readonly targetProtocol: string;
  readonly targetService: string;
  readonly targetResource: string;
  readonly targetModel: string | null;
  readonly outcomeResult: string;
  readonly outcomeStatus: number | null;
  readonly outcomeReason: string | null;
  readonly sessionId: string;
  readonly requestId: string;
  readonly upstreamRequestId: string | null;
  /** True when the exchange carried card data (PCI DSS 10.2.1.1 flag), from the payload's masking summary. */
  readonly cardDataPresent: boolean;
  /** The payload as JSON; binary fields (digests, HMACs, signatures) as lowercase hex. */
  readonly payload: string;
  /** The encoded event exactly as on the log (Avro single-object encoding), or its attested redacted copy. */
  readonly eventBytes: Uint8Array;
  /**
   * For a stored redaction (the DLP stage's copy in place of the event): the id of the data.masked
   * event that attests it (redactedEventDigest = SHA-256 of eventBytes). Null otherwise.
   */
  readonly redactedBy: string | null;
  /** Rows for the `pan_sightings` table, written in the same insert as the event. */
  readonly panSightings: readonly PanSighting[];
}

/**
 * One place a card appeared: a row of `pan_sightings`. Only what PCI DSS 3.4.1 lets us show
 * (BIN, last four) and a keyed hash of the full PAN (3.5.1.1), never the PAN.
 */
export interface PanSighting {
  /** HMAC-SHA-256 of the full PAN under `panHmacKeyId`, 32 bytes. */
  readonly panHmac: Uint8Array;
  readonly panHmacKeyId: string;
  readonly bin: string;
  readonly last4: string;
  readonly eventId: string;
  readonly eventType: EventType;
  readonly timeUs: number;
  readonly tenantId: string;
  readonly direction: Direction;
  /** JSON path (or SQL parameter) of the string that held the PAN. */
  readonly location: string;
  readonly contentBlockIndex: number | null;
  readonly charOffset: number | null;
  readonly ruleId: string;
  readonly action: MaskAction;
  readonly actorSubject: string;
  readonly actorOnBehalfOf: string | null;
  readonly sessionId: string;
  readonly requestId: string;
}

/**
 * The `events` columns in table order with their ClickHouse types: the insert path writes them in
 * this order, and a test checks the migrated table has exactly these (`ingest_time` is filled by
 * the store).
 */
export const EVENT_COLUMNS = [
  ['event_id', 'UUID'],
  ['type', 'LowCardinality(String)'],
  ['code', 'LowCardinality(String)'],
  ['schema_version', 'UInt16'],
  ['time', "DateTime64(6, 'UTC')"],
  ['producer', 'LowCardinality(String)'],
  ['producer_epoch', 'Nullable(String)'],
  ['sequence', 'UInt64'],
  ['prev_hash', 'FixedString(32)'],
  ['event_hash', 'FixedString(32)'],
  ['tenant_id', 'LowCardinality(String)'],
  ['pci_requirements', 'Array(LowCardinality(String))'],
  ['actor_subject', 'String'],
  ['actor_issuer', 'LowCardinality(String)'],
  ['actor_client_id', 'LowCardinality(Nullable(String))'],
  ['actor_groups', 'Array(LowCardinality(String))'],
  ['actor_kind', 'LowCardinality(String)'],
  ['actor_on_behalf_of', 'Nullable(String)'],
  ['actor_dev', 'Bool'],
  ['source_address', 'String'],
  ['source_user_agent', 'LowCardinality(Nullable(String))'],
  ['target_protocol', 'LowCardinality(String)'],
  ['target_service', 'LowCardinality(String)'],
  ['target_resource', 'String'],
  ['target_model', 'LowCardinality(Nullable(String))'],
  ['outcome_result', 'LowCardinality(String)'],
  ['outcome_status', 'Nullable(Int32)'],
  ['outcome_reason', 'LowCardinality(Nullable(String))'],
  ['session_id', 'String'],
  ['request_id', 'String'],
  ['upstream_request_id', 'Nullable(String)'],
  ['card_data_present', 'Bool'],
  ['payload', 'String'],
  ['event_bytes', 'String'],
  ['redacted_by', 'Nullable(UUID)'],
] as const;

export const PAN_SIGHTING_COLUMNS = [
  ['pan_hmac', 'FixedString(32)'],
  ['pan_hmac_key_id', 'LowCardinality(String)'],
  ['bin', 'LowCardinality(String)'],
  ['last4', 'FixedString(4)'],
  ['event_id', 'UUID'],
  ['event_type', 'LowCardinality(String)'],
  ['time', "DateTime64(6, 'UTC')"],
  ['tenant_id', 'LowCardinality(String)'],
  ['direction', 'LowCardinality(String)'],
  ['location', 'String'],
  ['content_block_index', 'Nullable(UInt32)'],
  ['char_offset', 'Nullable(UInt32)'],
  ['rule_id', 'LowCardinality(String)'],
  ['action', 'LowCardinality(String)'],
  ['actor_subject', 'String'],
  ['actor_on_behalf_of', 'Nullable(String)'],
  ['session_id', 'String'],
  ['request_id', 'String'],
] as const;

/**
 * Flatten an event for the store. `bytes` are the encoded event exactly as on the log and `hash`
 * their SHA-256 (the integrity module's event hash); both are kept so the store can be verified
 * without the log.
 */
export function toStoredEvent(event: AttestEvent, bytes: Uint8Array, hash: Uint8Array, redactedBy: string | null = null): StoredEvent {
  if (hash.length !== 32) {
    throw new StoreError('store_row_invalid', `event hash must be 32 bytes, got ${hash.length}`, { where: 'eventHash' });
  }
  const { metadata: m, actor, source, target, outcome, correlation } = event;
  // One object literal with every field: a spread copy of this many properties lands in V8's slow
  // dictionary mode, and the insert path reads every field of every row (measured 2x slower).
  return {
    eventId: m.eventId,
    type: m.type,
    code: m.code,
    schemaVersion: m.schemaVersion,
    timeUs: m.timeUs,
    producer: m.producer,
    producerEpoch: m.producerEpoch,
    sequence: m.sequence,
    prevHash: m.prevHash,
    eventHash: hash,
    tenantId: m.tenantId,
    pciRequirements: m.pciRequirements,
    actorSubject: actor.subject,
    actorIssuer: actor.issuer,
    actorClientId: actor.clientId,
    actorGroups: actor.groups,
    actorKind: actor.kind,
    actorOnBehalfOf: actor.onBehalfOf,
    actorDev: actor.dev,
    sourceAddress: source.address,
    sourceUserAgent: source.userAgent,
    targetProtocol: target.protocol,
    targetService: target.service,
    targetResource: target.resource,
    targetModel: target.model,
    outcomeResult: outcome.result,
    outcomeStatus: outcome.status,
    outcomeReason: outcome.reason,
    sessionId: correlation.sessionId,
    requestId: correlation.requestId,
    upstreamRequestId: correlation.upstreamRequestId,
    cardDataPresent: cardDataPresent(event),
    payload: payloadJson(event.payload),
    eventBytes: bytes,
    redactedBy,
    panSightings: event.metadata.type === 'data.masked' ? panSightingsOf(event as AttestEvent<'data.masked'>) : [],
  };
}

/**
 * The sightings in a `data.masked` event: one per hit that carries a PAN fingerprint (HMAC and its
 * key id). `gateway.response.completed` carries only per-rule counts (its masking summary), never
 * per-card detail, so it contributes the card-data flag but no sightings; the per-card detail of a
 * response's hits is in the `data.masked` event sharing its request id.
 */
export function panSightingsOf(event: AttestEvent<'data.masked'>): PanSighting[] {
  const payload: DataMaskedPayload = event.payload;
  const out: PanSighting[] = [];
  for (const hit of payload.hits) {
    if (hit.panHmac === null || hit.panHmacKeyId === null) continue;
    out.push({
      panHmac: hit.panHmac,
      panHmacKeyId: hit.panHmacKeyId,
      // BIN and last four are always present next to an HMAC on a PAN hit; '' keeps a malformed hit
      // findable by its fingerprint rather than dropping it.
      bin: hit.bin ?? '',
      last4: hit.last4 ?? '',
      eventId: event.metadata.eventId,
      eventType: event.metadata.type,
      timeUs: event.metadata.timeUs,
      tenantId: event.metadata.tenantId,
      direction: hit.direction,
      location: hit.location.jsonPath,
      contentBlockIndex: hit.location.contentBlockIndex,
      charOffset: hit.location.charOffset,
      ruleId: hit.ruleId,
      action: hit.action,
      actorSubject: event.actor.subject,
      actorOnBehalfOf: event.actor.onBehalfOf,
      sessionId: event.correlation.sessionId,
      requestId: event.correlation.requestId,
    });
  }
  return out;
}

const CARD_DETECTORS: ReadonlySet<string> = new Set(['pan', 'track_data', 'cvv', 'pin_block']);

/** Whether the event records an exchange that carried card data (PAN or sensitive authentication data). */
export function cardDataPresent(event: AttestEvent): boolean {
  switch (event.metadata.type) {
    case 'gateway.request.received':
    case 'gateway.response.completed':
    case 'db.query.executed':
      return (event.payload as { masking: MaskingSummary }).masking.cardDataPresent;
    case 'data.masked':
      return (event as AttestEvent<'data.masked'>).payload.hits.some((h) => CARD_DETECTORS.has(h.detector));
    default:
      return false;
  }
}

/** The payload as JSON text, binary values as lowercase hex (digests read like every other tool prints them). */
export function payloadJson(payload: unknown): string {
  return JSON.stringify(jsonSafe(payload));
}

function jsonSafe(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (v instanceof Uint8Array) {
    // The Avro decoder hands out Buffers: no view to build for them (one object fewer per digest).
    return Buffer.isBuffer(v) ? v.toString('hex') : Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex');
  }
  if (Array.isArray(v)) return v.map(jsonSafe);
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v)) out[k] = jsonSafe((v as Record<string, unknown>)[k]);
  return out;
}
