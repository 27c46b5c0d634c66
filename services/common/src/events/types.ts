/**
 * The event types as TypeScript sees them. Records and payloads are generated from the schemas
 * (types.generated.ts); this file composes them into envelopes keyed by event type.
 */
import type { EventType } from './catalog';
import type { Actor, Correlation, Metadata, Outcome, PayloadMap, Source, Target } from './types.generated';

export type { EventType };

/** Metadata with `type` narrowed to the event's own type. */
export interface EventMetadata<K extends EventType = EventType> extends Omit<Metadata, 'type'> {
  readonly type: K;
}

export interface Envelope<K extends EventType, P> {
  readonly metadata: EventMetadata<K>;
  readonly actor: Actor;
  readonly source: Source;
  readonly target: Target;
  readonly outcome: Outcome;
  readonly correlation: Correlation;
  readonly payload: P;
}

/** An event of type K; with no argument, the union of all event types. */
export type AttestEvent<K extends EventType = EventType> = { [T in K]: Envelope<T, PayloadMap[T]> }[K];

/**
 * Any event, without the link between `metadata.type` and the payload's shape. Functions that
 * take events of every type accept this: both `AttestEvent` and a generic `AttestEvent<K>` are
 * assignable to it (a generic `AttestEvent<K>` is not assignable to the union `AttestEvent`).
 */
export type AnyAttestEvent = Envelope<EventType, PayloadMap[EventType]>;

/** The payload of an event of type K. */
export type PayloadOf<K extends EventType> = PayloadMap[K];

/** Metadata before the chaining emitter assigns the chain position. */
export type UnchainedMetadata<K extends EventType = EventType> = Omit<EventMetadata<K>, 'sequence' | 'prevHash'>;

/** What `newEvent` returns: everything except `metadata.sequence` and `metadata.prevHash`. */
export type UnchainedEvent<K extends EventType = EventType> = {
  [T in K]: Omit<Envelope<T, PayloadMap[T]>, 'metadata'> & { readonly metadata: UnchainedMetadata<T> };
}[K];

/** The parts of an event its producer supplies; `newEvent` fills the metadata. */
export interface EventParts<K extends EventType> {
  readonly tenantId: string;
  readonly actor: Actor;
  readonly source: Source;
  readonly target: Target;
  readonly outcome: Outcome;
  readonly correlation: Correlation;
  readonly payload: PayloadMap[K];
}

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Assert<T extends true> = T;
/** Compile-time check: the generated payload map covers exactly the catalog's event types. */
export type PayloadMapMatchesCatalog = Assert<Same<keyof PayloadMap, EventType>>;
