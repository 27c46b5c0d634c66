/**
 * Building events: `newEvent` fills the metadata a producer should never compute by hand (id,
 * code, schema version, time, producer, PCI requirements); the chaining emitter then assigns the
 * chain position with `chainEvent`.
 */
import { randomFillSync } from 'node:crypto';
import { EVENT_CATALOG, isEventType, type EventType } from './catalog';
import { EventError } from './errors';
import { missingRequiredFields, pciRequirementsFor } from './pci';
import type { AttestEvent, EventParts, UnchainedEvent } from './types';

/** UTC wall-clock time in microseconds since the Unix epoch. */
export interface EventClock {
  nowUs(): number;
}

export interface ProducerIdentity {
  /** Id of the emitting component instance, e.g. 'gateway-7f9c'. */
  readonly id: string;
  /** Id of this run of the producer, taken once at start (a UUIDv7). */
  readonly epoch?: string | null;
}

export interface NewEventDeps {
  readonly producer: ProducerIdentity;
  /** Defaults to `systemClock`. */
  readonly clock?: EventClock;
  /** Event id generator; must return UUIDv7 strings. Defaults to `uuidv7`. */
  readonly idGen?: () => string;
}

export interface ChainPosition {
  /** 1, 2, 3, ... within the producer's epoch; 0 for events outside the chain (checkpoints). */
  readonly sequence: number;
  /** SHA-256 of the previous event's encoded bytes from the same producer, or the epoch's link. */
  readonly prevHash: Uint8Array;
}

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/**
 * A wall clock with microsecond resolution: the monotonic clock for sub-millisecond precision,
 * re-anchored to Date.now() when the two drift apart by more than 2 ms, so an NTP correction shows
 * up in event times (PCI DSS 10.6). Anchors are taken only from a tight read (both clocks within
 * 200 µs), so a thread preempted mid-read does not shift time; readings never decrease, so one
 * producer's events stay in time order even across a backward step.
 */
export function createSystemClock(): EventClock {
  let offsetUs = Date.now() * 1000 - Math.round(performance.now() * 1000);
  let lastUs = 0;
  return {
    nowUs(): number {
      const before = performance.now();
      const wallUs = Date.now() * 1000;
      const after = performance.now();
      const monoUs = Math.round(((before + after) / 2) * 1000);
      if (Math.abs(offsetUs + monoUs - wallUs) > 2000 && after - before < 0.2) offsetUs = wallUs - monoUs;
      lastUs = Math.max(lastUs, offsetUs + monoUs);
      return lastUs;
    },
  };
}

export const systemClock: EventClock = createSystemClock();

const RANDOM_POOL = Buffer.allocUnsafe(10 * 256);
let poolOffset = RANDOM_POOL.length;

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then 74 random bits. */
export function uuidv7(nowMs: number = Date.now()): string {
  if (poolOffset + 10 > RANDOM_POOL.length) {
    // One getrandom call per 256 ids keeps id generation off the profile.
    randomFillSync(RANDOM_POOL);
    poolOffset = 0;
  }
  const r = RANDOM_POOL;
  const o = poolOffset;
  poolOffset += 10;
  // 48-bit milliseconds as 12 hex digits (no Buffer, no slicing: ids are built on every event).
  const ms = Math.floor(nowMs);
  const hi = Math.floor(ms / 0x1000000);
  const lo = ms % 0x1000000;
  const t = hi.toString(16).padStart(6, '0').slice(-6) + lo.toString(16).padStart(6, '0');
  return (
    `${t.slice(0, 8)}-${t.slice(8)}-7${(HEX[r[o]! & 0x0f] as string).slice(1)}${HEX[r[o + 1]!]}-` +
    `${HEX[0x80 | (r[o + 2]! & 0x3f)]}${HEX[r[o + 3]!]}-${HEX[r[o + 4]!]}${HEX[r[o + 5]!]}${HEX[r[o + 6]!]}${HEX[r[o + 7]!]}${HEX[r[o + 8]!]}${HEX[r[o + 9]!]}`
  );
}

/** The link of a producer's first epoch (it has no checkpoint yet): 32 zero bytes. */
export function genesisPrevHash(): Buffer {
  return Buffer.alloc(32);
}

/**
 * Build an event of `type`. Fills `metadata` (id, type, code, schema version, time, producer,
 * epoch, tenant, PCI requirements) except `sequence` and `prevHash`, which the chaining emitter
 * sets with `chainEvent`. Throws event_unknown_type, or event_invalid when a PCI DSS
 * 10.2.2 field is empty or the id generator does not produce UUIDv7s.
 */
export function newEvent<K extends EventType>(type: K, parts: EventParts<K>, deps: NewEventDeps): UnchainedEvent<K> {
  return buildEvent(type, parts.tenantId, parts, deps);
}

/** Per type, what every event of it carries in its metadata (looked up once, not per event). */
const TYPE_META = new Map<EventType, { code: string; version: number; pci: readonly string[] }>();

function typeMeta(type: EventType): { code: string; version: number; pci: readonly string[] } {
  let m = TYPE_META.get(type);
  if (m === undefined) {
    if (!isEventType(type)) throw new EventError('event_unknown_type', `unknown event type '${String(type)}'`);
    const { code, version } = EVENT_CATALOG[type];
    m = { code, version, pci: [...pciRequirementsFor(type)] };
    TYPE_META.set(type, m);
  }
  return m;
}

/**
 * `newEvent` with the tenant given apart from the parts, so a producer that adds its tenant to every
 * event (the evidence emitter) does not copy the parts object to do so.
 */
export function buildEvent<K extends EventType>(type: K, tenantId: string, parts: Omit<EventParts<K>, 'tenantId'>, deps: NewEventDeps): UnchainedEvent<K> {
  const { code, version, pci } = typeMeta(type);
  let eventId: string;
  if (deps.idGen === undefined) {
    eventId = uuidv7(); // well-formed by construction
  } else {
    eventId = deps.idGen();
    if (!UUID_V7.test(eventId)) {
      throw new EventError('event_invalid', `event id '${eventId}' is not a lowercase UUIDv7`, { where: 'metadata.eventId' });
    }
  }
  if (tenantId.trim() === '') throw new EventError('event_invalid', 'tenantId is empty', { where: 'metadata.tenantId' });
  const event = {
    metadata: {
      eventId,
      type,
      code,
      schemaVersion: version,
      timeUs: (deps.clock ?? systemClock).nowUs(),
      producer: deps.producer.id,
      producerEpoch: deps.producer.epoch ?? null,
      tenantId,
      pciRequirements: pci.slice(),
    },
    actor: parts.actor,
    source: parts.source,
    target: parts.target,
    outcome: parts.outcome,
    correlation: parts.correlation,
    payload: parts.payload,
  };
  const missing = missingRequiredFields(event);
  if (missing.length > 0) {
    throw new EventError('event_invalid', `PCI DSS 10.2.2 field(s) empty: ${missing.join(', ')}`, { where: missing[0] ?? '' });
  }
  return event as unknown as UnchainedEvent<K>;
}

/** Attach the chain position: what the chaining emitter does before encoding. */
export function chainEvent<K extends EventType>(event: UnchainedEvent<K>, position: ChainPosition): AttestEvent<K> {
  if (!Number.isSafeInteger(position.sequence) || position.sequence < 0) {
    throw new EventError('event_invalid', `sequence must be a non-negative integer, got ${position.sequence}`, { where: 'metadata.sequence' });
  }
  if (position.prevHash.length !== 32) {
    throw new EventError('event_invalid', `prevHash must be 32 bytes, got ${position.prevHash.length}`, { where: 'metadata.prevHash' });
  }
  // avsc encodes fixed fields from Buffers only; wrap a plain Uint8Array without copying.
  const { prevHash } = position;
  const prevHashBuffer = Buffer.isBuffer(prevHash) ? prevHash : Buffer.from(prevHash.buffer, prevHash.byteOffset, prevHash.length);
  // Explicit properties rather than spreads: one object shape, built on every event.
  const m = event.metadata;
  return {
    metadata: {
      eventId: m.eventId,
      type: m.type,
      code: m.code,
      schemaVersion: m.schemaVersion,
      timeUs: m.timeUs,
      producer: m.producer,
      producerEpoch: m.producerEpoch,
      tenantId: m.tenantId,
      pciRequirements: m.pciRequirements,
      sequence: position.sequence,
      prevHash: prevHashBuffer,
    },
    actor: event.actor,
    source: event.source,
    target: event.target,
    outcome: event.outcome,
    correlation: event.correlation,
    payload: event.payload,
  } as unknown as AttestEvent<K>;
}
