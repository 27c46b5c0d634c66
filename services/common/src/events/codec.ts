/**
 * Event codec: Avro single-object encoding (Avro specification, "Single object encoding").
 *
 *   0xC3 0x01 | CRC-64-AVRO fingerprint of the writer schema, 8 bytes little-endian | Avro binary body
 *
 * The fingerprint lets a reader find the exact writer schema in the registry (every committed
 * version of every type), and Avro schema resolution turns an older version into the current
 * reader shape. Types and resolvers are built once; the hot path is a map lookup plus avsc's
 * generated reader/writer.
 */
import type { Type as AvroType } from 'avsc';
import { EVENT_CATALOG, isEventType, type EventType } from './catalog';
import { EventError } from './errors';
import { compilePanScanner } from './pan-guard';
import { missingRequiredFields } from './pci';
import { loadSchemaSet, type LoadedSchema, type SchemaSet } from './schemas';
import type { AnyAttestEvent, AttestEvent } from './types';

export const SINGLE_OBJECT_MARKER = Object.freeze([0xc3, 0x01] as const);
export const HEADER_BYTES = 10;
/** Encoded events are carved out of slabs of this size. */
const SLAB_BYTES = 64 * 1024;
/** A new slab is started when less than this is left (an event rarely exceeds it; if it does, encode retries). */
const MIN_SLAB_ROOM = 8 * 1024;
const MAX_RETAINED_SCRATCH_BYTES = 1024 * 1024;

/** A writer schema, as found by the fingerprint in a header. */
export interface RegistryEntry {
  readonly type: EventType;
  /** The first version registered with this canonical form. */
  readonly version: number;
  /** Every version with this canonical form (a change to defaults alone keeps the form). */
  readonly versions: readonly number[];
  readonly schema: LoadedSchema;
}

/**
 * Fingerprint → writer schema, for every committed version of every event type; and per type the
 * current schema, which writers write and readers resolve into.
 */
export class SchemaRegistry {
  readonly #byFingerprint = new Map<string, RegistryEntry>();
  readonly #current = new Map<EventType, LoadedSchema>();
  #generation = 0;
  /** The same entries by the fingerprint's low 32 bits, for lookupWriter (no key string to build). */
  readonly #byLowWord = new Map<number, { readonly high: number; readonly entry: RegistryEntry }[]>();

  static fromSchemaSet(set: SchemaSet): SchemaRegistry {
    const registry = new SchemaRegistry();
    for (const [type, versions] of set.history) {
      for (const version of [...versions.keys()].sort((a, b) => a - b)) {
        const loaded = versions.get(version);
        if (loaded !== undefined) registry.register(loaded);
      }
      const current = set.current.get(type);
      if (current !== undefined) registry.setCurrent(current);
    }
    return registry;
  }

  /** Make `schema` findable by its fingerprint. */
  register(schema: LoadedSchema): RegistryEntry {
    const key = fingerprintKey(schema.fingerprint, 0);
    const existing = this.#byFingerprint.get(key);
    if (existing === undefined) {
      const entry: RegistryEntry = { type: schema.type, version: schema.version, versions: [schema.version], schema };
      this.#byFingerprint.set(key, entry);
      this.#index(entry);
      return entry;
    }
    if (existing.schema.canonical !== schema.canonical || existing.type !== schema.type) {
      throw new EventError(
        'event_schema_load',
        `fingerprint ${schema.fingerprintHex} of ${schema.type} v${schema.version} collides with ${existing.type} v${existing.version}`,
      );
    }
    if (existing.versions.includes(schema.version)) return existing;
    const merged: RegistryEntry = { ...existing, versions: [...existing.versions, schema.version].sort((a, b) => a - b) };
    this.#byFingerprint.set(key, merged);
    this.#index(merged);
    return merged;
  }

  /** Changes whenever a schema is registered or made current (readers built from the registry check it). */
  get generation(): number {
    return this.#generation;
  }

  #index(entry: RegistryEntry): void {
    this.#generation += 1;
    const fingerprint = entry.schema.fingerprint;
    const low = fingerprint.readUInt32LE(0);
    const high = fingerprint.readUInt32LE(4);
    const list = (this.#byLowWord.get(low) ?? []).filter((e) => e.high !== high);
    list.push({ high, entry });
    this.#byLowWord.set(low, list);
  }

  /** Make `schema` the one writers use and readers resolve into for its type (and register it). */
  setCurrent(schema: LoadedSchema): void {
    this.register(schema);
    this.#current.set(schema.type, schema);
    this.#generation += 1;
  }

  lookup(fingerprint: Uint8Array, offset = 0): RegistryEntry | undefined {
    return this.#byFingerprint.get(fingerprintKey(fingerprint, offset));
  }

  /**
   * `lookup(bytes, 2)`, for a single-object encoding whose header is known to be complete: the
   * writer schema its fingerprint names, found without building a key.
   */
  lookupWriter(bytes: Uint8Array): RegistryEntry | undefined {
    const list = this.#byLowWord.get((bytes[2]! | (bytes[3]! << 8) | (bytes[4]! << 16) | (bytes[5]! << 24)) >>> 0);
    if (list === undefined) return undefined;
    const high = (bytes[6]! | (bytes[7]! << 8) | (bytes[8]! << 16) | (bytes[9]! << 24)) >>> 0;
    for (let i = 0; i < list.length; i++) if (list[i]!.high === high) return list[i]!.entry;
    return undefined;
  }

  current(type: EventType): LoadedSchema {
    const schema = this.#current.get(type);
    if (schema === undefined) throw new EventError('event_unknown_type', `no current schema for event type '${type}'`);
    return schema;
  }

  entries(): IterableIterator<RegistryEntry> {
    return this.#byFingerprint.values();
  }
}

function fingerprintKey(bytes: Uint8Array, offset: number): string {
  // Eight bytes as a latin1 string: a cheap, exact Map key.
  return Buffer.from(bytes.buffer, bytes.byteOffset + offset, 8).toString('latin1');
}

export type DecodedEvent<K extends EventType = EventType> = {
  [T in K]: {
    readonly type: T;
    /** Version the event was written with; the value has the current version's shape. */
    readonly writerVersion: number;
    readonly fingerprint: string;
    readonly event: AttestEvent<T>;
  };
}[K];

/** What a single-object header says, after checking the marker and length. */
export function readHeader(bytes: Uint8Array): { readonly fingerprint: Buffer; readonly fingerprintHex: string } {
  checkHeader(bytes);
  const fingerprint = Buffer.from(bytes.subarray(2, HEADER_BYTES));
  return { fingerprint, fingerprintHex: fingerprint.toString('hex') };
}

function checkHeader(bytes: Uint8Array): void {
  // A marker mismatch is reported before length, so a short non-Avro input reads as "bad magic".
  if ((bytes.length > 0 && bytes[0] !== 0xc3) || (bytes.length > 1 && bytes[1] !== 0x01)) {
    throw new EventError('event_bad_magic', 'not an Avro single-object encoding (expected 0xC3 0x01)', {
      where: 'header',
    });
  }
  if (bytes.length < HEADER_BYTES) {
    throw new EventError('event_truncated', `header needs ${HEADER_BYTES} bytes, got ${bytes.length}`, { where: 'header' });
  }
}

/** Paths (and what was found there) where `value` does not fit `avroType`. */
function describeInvalid(avroType: AvroType, value: unknown): { path: string; found: string }[] {
  const problems: { path: string; found: string }[] = [];
  avroType.isValid(value, {
    errorHook: (path: string[], val: unknown) => {
      const found = val === null ? 'null' : Buffer.isBuffer(val) ? `${val.length} bytes` : typeof val;
      // Same path style as the PAN guard: array indexes in brackets.
      const formatted = path.map((k, i) => (/^\d+$/.test(k) ? `[${k}]` : i === 0 ? k : `.${k}`)).join('');
      problems.push({ path: formatted || '(root)', found });
    },
  });
  return problems;
}

export class EventCodec {
  readonly registry: SchemaRegistry;
  #slab = Buffer.allocUnsafe(SLAB_BYTES);
  #slabOffset = 0;
  /** PAN scanners per current schema: they visit only the fields that encode as strings. */
  readonly #panScanners = new Map<LoadedSchema, (value: unknown) => string[]>();
  /** Resolvers per writer, remembered with the reader they were built for. */
  readonly #resolvers = new Map<RegistryEntry, { reader: LoadedSchema; resolver: unknown }>();
  /** Generated metadata readers per writer, by mode and payload text field. */
  readonly #metadataPlans = new Map<RegistryEntry, Map<string, { reader: LoadedSchema; read: MetadataRead | undefined }>>();
  /** The reader used last per writer, with what it was chosen for (a caller passes the same options every time). */
  readonly #lastPlans = new Map<RegistryEntry, MetadataPlan>();
  /** Body checks per writer (null: the writer schema has no array or map). */
  readonly #bodyChecks = new Map<RegistryEntry, BodyCheck | null>();

  constructor(registry: SchemaRegistry) {
    this.registry = registry;
  }

  /**
   * Encode an event with its type's current schema. Refuses (event_invalid) an event that
   * does not fit the schema or the catalog or lacks a PCI DSS 10.2.2 field, and
   * (event_pan_detected) one with a string that looks like a full card number.
   */
  encode(event: AnyAttestEvent): Buffer {
    const type = event.metadata?.type;
    if (typeof type !== 'string' || !isEventType(type)) {
      throw new EventError('event_unknown_type', `unknown event type '${String(type)}'`, { where: 'metadata.type' });
    }
    const current = this.registry.current(type);
    const { code } = EVENT_CATALOG[type];
    if (event.metadata.code !== code) {
      throw new EventError('event_invalid', `${type} must carry code ${code}, not '${event.metadata.code}'`, { where: 'metadata.code' });
    }
    if (event.metadata.schemaVersion !== current.version) {
      throw new EventError(
        'event_invalid',
        `${type} is written as version ${current.version}, not ${event.metadata.schemaVersion}`,
        { where: 'metadata.schemaVersion', fix: 'build events with newEvent, which sets the current version' },
      );
    }
    const missing = missingRequiredFields(event);
    if (missing.length > 0) {
      throw new EventError('event_invalid', `PCI DSS 10.2.2 field(s) empty: ${missing.join(', ')}`, { where: missing[0] ?? '' });
    }
    const pans = this.#panScannerFor(current)(event);
    if (pans.length > 0) {
      throw new EventError('event_pan_detected', `refusing to encode ${type}: card-number-like digits at ${pans.join(', ')}`, {
        where: pans[0] ?? '',
        fix: 'mask the field (BIN and last four at most, or an HMAC) before building the event',
      });
    }
    const avroType = current.avroType;
    // Events are encoded straight into a shared slab and returned as views of it (as Node's own
    // Buffer pool does for small buffers): no per-event allocation and no copy out of a scratch.
    let start = this.#slabOffset;
    if (this.#slab.length - start < MIN_SLAB_ROOM) {
      this.#slab = Buffer.allocUnsafe(SLAB_BYTES);
      start = 0;
    }
    let end: number;
    try {
      end = avroType.encode(event, this.#slab, start + HEADER_BYTES);
      if (end < 0) {
        // avsc returns (buffer length - position reached) when the buffer is too small.
        const needed = this.#slab.length - end - start;
        this.#slab = Buffer.allocUnsafe(Math.max(SLAB_BYTES, needed));
        start = 0;
        end = avroType.encode(event, this.#slab, HEADER_BYTES);
      }
    } catch (cause) {
      const problems = describeInvalid(avroType, event);
      const list = problems.map((p) => `${p.path} (found ${p.found})`).join(', ');
      throw new EventError('event_invalid', `${type} does not match its schema at ${list || '(unknown)'}`, {
        where: problems[0]?.path ?? '',
        cause,
      });
    }
    const slab = this.#slab;
    slab[start] = 0xc3;
    slab[start + 1] = 0x01;
    current.fingerprint.copy(slab, start + 2);
    // The next event starts 8-byte aligned; a huge event's slab is not kept (the next one is fresh).
    this.#slabOffset = end > MAX_RETAINED_SCRATCH_BYTES ? slab.length : (end + 7) & ~7;
    return slab.subarray(start, end);
  }

  /** Decode any event; older versions are resolved into the current schema of their type. */
  decode(bytes: Uint8Array): DecodedEvent {
    checkHeader(bytes);
    const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
    const writer = this.registry.lookup(buf, 2);
    if (writer === undefined) {
      throw new EventError('event_unknown_fingerprint', `no schema with fingerprint ${buf.toString('hex', 2, HEADER_BYTES)}`, {
        where: 'header',
        fix: 'the writer used a schema this reader does not have: upgrade the reader or check the producer',
      });
    }
    const reader = this.registry.current(writer.type);
    // Same fingerprint, same canonical form (register refuses collisions): no resolution needed.
    const resolver = writer.schema.fingerprintHex === reader.fingerprintHex ? undefined : this.#resolverFor(writer, reader);
    // Before avsc allocates item by item: no array or map block may claim more items than the body holds.
    const check = this.#bodyCheckFor(writer);
    if (check !== undefined) {
      const problem = check(buf);
      if (problem !== undefined) throw blockError(writer, problem);
    }
    let decoded: { value: unknown; offset: number };
    try {
      decoded = resolver === undefined ? reader.avroType.decode(buf, HEADER_BYTES) : reader.avroType.decode(buf, HEADER_BYTES, resolver as never);
    } catch (cause) {
      if (cause instanceof EventError) throw cause;
      throw new EventError('event_schema_mismatch', `body does not decode as ${writer.type} v${writer.version}: ${String(cause)}`, {
        where: 'body',
        cause,
      });
    }
    if (decoded.offset < 0) {
      throw new EventError('event_truncated', `body of ${writer.type} v${writer.version} ends early`, { where: 'body' });
    }
    if (decoded.offset !== buf.length) {
      throw new EventError(
        'event_schema_mismatch',
        `${buf.length - decoded.offset} byte(s) left after the ${writer.type} v${writer.version} body`,
        { where: 'body' },
      );
    }
    const event = decoded.value as AttestEvent;
    if (event.metadata.type !== writer.type || !writer.versions.includes(event.metadata.schemaVersion)) {
      throw new EventError(
        'event_schema_mismatch',
        `header names ${writer.type} v${writer.version} but the body says ${event.metadata.type} v${event.metadata.schemaVersion}`,
        { where: 'metadata' },
      );
    }
    return { type: writer.type, writerVersion: event.metadata.schemaVersion, fingerprint: writer.schema.fingerprintHex, event } as DecodedEvent;
  }

  /** Decode, requiring a given type (event_schema_mismatch otherwise). */
  decodeAs<K extends EventType>(type: K, bytes: Uint8Array): AttestEvent<K> {
    const decoded = this.decode(bytes);
    if (decoded.type !== type) {
      throw new EventError('event_schema_mismatch', `expected ${type}, got ${decoded.type}`, { where: 'metadata.type' });
    }
    return decoded.event as AttestEvent<K>;
  }

  /**
   * The metadata of an event without decoding the rest: what `decode(bytes)` would give as `type`,
   * `writerVersion`, `fingerprint` and `event.metadata`, and, for the payload field `textFields`
   * names for the event's type, whether it holds a non-empty string. Throws exactly what `decode`
   * throws, and only when it throws.
   *
   * The metadata is read by a reader generated once per writer schema, and the rest of the body is
   * walked over (nothing is built) checking everything `decode` would refuse: union and enum
   * indexes, longs beyond 2^53, lengths, the end of the body, the type and version the metadata
   * names. A body the walk does not accept, a writer it does not handle (metadata not first, a
   * type it has no reader for) or one that does not resolve into the current schema goes through
   * `decode`, which then throws its own error or returns the event this reads from.
   */
  decodeMetadata(bytes: Uint8Array, textFields?: ReadonlyMap<string, string>): DecodedMetadata {
    const fast = this.#readMetadata(bytes, 'metadata', textFields) as DecodedMetadata | undefined;
    if (fast !== undefined) return fast;
    const d = this.decode(bytes);
    return { type: d.type, writerVersion: d.writerVersion, fingerprint: d.fingerprint, metadata: d.event.metadata, hasText: hasTextIn(d, textFields) };
  }

  /**
   * `decodeMetadata` reduced to what a hash-chain verifier reads (the fields of
   * DecodedChainMetadata, equal to decode's metadata fields of the same names), with less built:
   * the other metadata fields are walked over like the rest of the body, and `prevHash` is a view
   * of `bytes`, not a copy. Throws exactly what `decode` throws, and only when it throws.
   */
  decodeChainMetadata(bytes: Uint8Array, textFields?: ReadonlyMap<string, string>): DecodedChainMetadata {
    const fast = this.#readMetadata(bytes, 'chain', textFields) as DecodedChainMetadata | undefined;
    if (fast !== undefined) return fast;
    const d = this.decode(bytes);
    const m = d.event.metadata;
    return {
      type: d.type,
      writerVersion: d.writerVersion,
      eventId: m.eventId,
      producer: m.producer,
      producerEpoch: m.producerEpoch,
      sequence: m.sequence,
      prevHash: m.prevHash,
      timeUs: m.timeUs,
      hasText: hasTextIn(d, textFields),
    };
  }

  /** The generated reader's answer, or undefined when decode is to decide. */
  #readMetadata(bytes: Uint8Array, mode: MetadataMode, textFields: ReadonlyMap<string, string> | undefined): DecodedMetadata | DecodedChainMetadata | undefined {
    // checkHeader's conditions; decode raises its errors.
    if (bytes.length < HEADER_BYTES || bytes[0] !== 0xc3 || bytes[1] !== 0x01) return undefined;
    const writer = this.registry.lookupWriter(bytes);
    if (writer === undefined) return undefined;
    let plan = this.#lastPlans.get(writer);
    if (plan === undefined || plan.mode !== mode || plan.textFields !== textFields || plan.generation !== this.registry.generation) {
      try {
        plan = this.#metadataPlan(writer, mode, textFields);
      } catch {
        return undefined; // decode raises what made a plan impossible (no current schema for the type)
      }
    }
    if (plan.read === undefined) return undefined;
    return plan.read(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length));
  }

  #metadataPlan(writer: RegistryEntry, mode: MetadataMode, textFields: ReadonlyMap<string, string> | undefined): MetadataPlan {
    const generation = this.registry.generation;
    const reader = this.registry.current(writer.type);
    const field = textFields?.get(writer.type);
    let byKey = this.#metadataPlans.get(writer);
    if (byKey === undefined) {
      byKey = new Map();
      this.#metadataPlans.set(writer, byKey);
    }
    const key = `${mode}\u0000${field ?? ''}`;
    const built = byKey.get(key);
    let read: MetadataRead | undefined;
    if (built !== undefined && built.reader === reader) read = built.read;
    else {
      try {
        // decode resolves an older writer into the current schema, and refuses one that does not resolve.
        if (writer.schema.fingerprintHex !== reader.fingerprintHex) this.#resolverFor(writer, reader);
        read = compileMetadataRead(writer, reader, field, mode, this.#bodyCheckFor(writer));
      } catch {
        read = undefined;
      }
      byKey.set(key, { reader, read });
    }
    const plan: MetadataPlan = { mode, textFields, generation, read };
    this.#lastPlans.set(writer, plan);
    return plan;
  }

  #bodyCheckFor(writer: RegistryEntry): BodyCheck | undefined {
    let check = this.#bodyChecks.get(writer);
    if (check === undefined) {
      check = compileBodyCheck(writer.schema.avroType as unknown as AvscNode) ?? null;
      this.#bodyChecks.set(writer, check);
    }
    return check ?? undefined;
  }

  #panScannerFor(schema: LoadedSchema): (value: unknown) => string[] {
    let scanner = this.#panScanners.get(schema);
    if (scanner === undefined) {
      scanner = compilePanScanner(schema.avroType);
      this.#panScanners.set(schema, scanner);
    }
    return scanner;
  }

  #resolverFor(writer: RegistryEntry, reader: LoadedSchema): unknown {
    let resolver = this.#resolvers.get(writer);
    if (resolver === undefined || resolver.reader !== reader) {
      try {
        resolver = { reader, resolver: reader.avroType.createResolver(writer.schema.avroType) };
      } catch (cause) {
        throw new EventError(
          'event_schema_incompatible',
          `${writer.type} v${writer.version} cannot be read as v${reader.version}: ${String(cause)}`,
          { where: 'schema', cause },
        );
      }
      this.#resolvers.set(writer, resolver);
    }
    return resolver.resolver;
  }
}

// ---- Metadata-only decode (EventCodec.decodeMetadata, decodeChainMetadata) ----
//
// Every event schema starts with the shared Metadata record (lintEventSchema, ENVELOPE_FIELDS; the
// committed history too), so the metadata is the first thing in the body. A verifier needs only it:
// reading it alone and walking over the rest without building anything costs a fraction of the
// full decode. The walk checks what avsc's reader would refuse, so a body is accepted here only if
// `decode` accepts it; anything else is left to `decode`.

/** What `EventCodec.decodeMetadata` reads from an event's bytes. */
export interface DecodedMetadata {
  readonly type: EventType;
  /** Version the event was written with, as `decode` reports it. */
  readonly writerVersion: number;
  readonly fingerprint: string;
  /** Equal to `decode(bytes).event.metadata`. */
  readonly metadata: AnyAttestEvent['metadata'];
  /**
   * Whether the payload field that `textFields` names for this event's type holds a non-empty
   * string in the decoded event (false when it names none).
   */
  readonly hasText: boolean;
}

/** What `EventCodec.decodeChainMetadata` reads: decode's metadata fields of the same names. */
export interface DecodedChainMetadata {
  readonly type: EventType;
  readonly writerVersion: number;
  readonly eventId: string;
  readonly producer: string;
  readonly producerEpoch: string | null;
  readonly sequence: number;
  /** Usually a view of the event's bytes (decode's is a copy): keep the bytes, or copy it. */
  readonly prevHash: Uint8Array;
  readonly timeUs: number;
  /** As DecodedMetadata.hasText. */
  readonly hasText: boolean;
}

/** The metadata fields decodeChainMetadata builds (and `type`, compared in place); the others are walked over. */
const CHAIN_FIELDS = ['eventId', 'schemaVersion', 'timeUs', 'producer', 'producerEpoch', 'sequence', 'prevHash'] as const;

type MetadataMode = 'metadata' | 'chain';

/** A generated reader: the answer, or undefined for "let decode decide". */
type MetadataRead = (buf: Buffer) => DecodedMetadata | DecodedChainMetadata | undefined;

interface MetadataPlan {
  readonly mode: MetadataMode;
  readonly textFields: ReadonlyMap<string, string> | undefined;
  /** The registry's generation it was chosen in: a later schema change makes it be checked again. */
  readonly generation: number;
  /** Undefined when this writer is read with `decode` only. */
  readonly read: MetadataRead | undefined;
}

/** isContentEvent's rule on a decoded event: the named payload field holds a non-empty string. */
function hasTextIn(d: DecodedEvent, textFields: ReadonlyMap<string, string> | undefined): boolean {
  const field = textFields?.get(d.type);
  const text = field === undefined ? undefined : (d.event.payload as unknown as Record<string, unknown>)[field];
  return typeof text === 'string' && text.length > 0;
}

/** The avsc internals the readers are generated from (avsc 5: Type#typeName, RecordType#fields, ...). */
interface AvscNode {
  readonly typeName: string;
  readonly fields?: readonly AvscField[];
  readonly types?: readonly AvscNode[];
  readonly itemsType?: AvscNode;
  readonly valuesType?: AvscNode;
  readonly symbols?: readonly string[];
  readonly size?: number;
  schema(): unknown;
  decode(buf: Buffer, pos: number, resolver?: unknown): { value: unknown; offset: number };
  createResolver(writer: AvscNode): unknown;
}

interface AvscField {
  readonly name: string;
  readonly type: AvscNode;
  readonly aliases: readonly string[];
  defaultValue(): unknown;
}

/** A writer schema the generated reader does not handle: that writer is read with `decode`. */
class MetadataReadUnsupported extends Error {}

/** Largest long avsc reads without "potential precision loss" (its isSafeLong: 2^53 − 2). */
const SAFE_LONG = 2 ** 53 - 2;

/**
 * Strings that repeat (type, code, producer, epoch, tenant, PCI requirement ids) are taken from a
 * few remembered ones instead of being decoded again: the same bytes give the same string (avsc
 * decodes with Buffer#utf8Slice, as this does). A field whose values rarely repeat (event ids)
 * stops looking after a while.
 */
class StringMemo {
  readonly #bytes: Uint8Array[] = [];
  readonly #strings: string[] = [];
  #hits = 0;
  #misses = 0;
  #off = false;

  get(b: Buffer & { utf8Slice(start: number, end: number): string }, start: number, n: number): string {
    if (this.#off) return b.utf8Slice(start, start + n);
    const list = this.#bytes;
    for (let i = 0; i < list.length; i++) {
      const e = list[i]!;
      if (e.length !== n) continue;
      // From the end: ids and names of one kind differ there (gateway-1 / gateway-2, UUIDv7s).
      let j = n - 1;
      while (j >= 0 && e[j] === b[start + j]) j--;
      if (j < 0) {
        this.#hits++;
        return this.#strings[i]!;
      }
    }
    const s = b.utf8Slice(start, start + n);
    if (list.length < 16) {
      list.push(new Uint8Array(b.subarray(start, start + n)));
      this.#strings.push(s);
    }
    if (++this.#misses > 64 && this.#misses > this.#hits) this.#off = true;
    return s;
  }
}

/**
 * Shared by every generated reader: a varint of more than one byte, exactly as avsc's
 * Tap#readLong reads it (a varint running past the end reads as zero bits there too; the end is
 * checked after). It returns the value and leaves the position after it in `rlEnd`. The one-byte
 * case (lengths, counts, indexes) is inline in the generated code, which keeps its position in a local.
 */
const METADATA_RUNTIME = `
  let rlEnd = 0;
  function rl(u, q) {
    let n = 0, k = 0, b, h;
    do { b = u[q++]; h = b & 0x80; n |= (b & 0x7f) << k; k += 7; } while (h && k < 28);
    if (h) {
      let f = n, fk = 268435456;
      do { b = u[q++]; f += (b & 0x7f) * fk; fk *= 128; } while (b & 0x80);
      rlEnd = q;
      return (f % 2 ? -(f + 1) : f) / 2;
    }
    rlEnd = q;
    return (n >> 1) ^ -(n & 1);
  }`;

/**
 * Generates the reader for one writer schema, resolved into the current `reader` as decode resolves
 * it; `field` names the payload field whose text presence to report. Throws
 * MetadataReadUnsupported when the writer is to be read with decode.
 */
function compileMetadataRead(
  writer: RegistryEntry,
  reader: LoadedSchema,
  field: string | undefined,
  mode: MetadataMode,
  bodyCheck: BodyCheck | undefined,
): MetadataRead {
  const w = writer.schema.avroType as unknown as AvscNode;
  const r = reader.avroType as unknown as AvscNode;
  const wFields = w.fields ?? [];
  const rFields = r.fields ?? [];
  const resolving = writer.schema.fingerprintHex !== reader.fingerprintHex;
  const wMeta = wFields[0];
  const rMeta = rFields.find((f) => f.name === 'metadata');
  if (w.typeName !== 'record' || r.typeName !== 'record' || wMeta?.name !== 'metadata' || rMeta === undefined) {
    throw new MetadataReadUnsupported('metadata is not the first field');
  }

  const consts: unknown[] = [];
  const k = (v: unknown): string => {
    consts.push(v);
    return `K[${consts.length - 1}]`;
  };
  let vars = 0;
  const fresh = (): string => `v${vars++}`;
  const lines: string[] = [];
  const emit = (s: string): void => void lines.push(s);
  const fail = 'return undefined;';
  /** Code reading a long into the fresh variable `v`. */
  const long = (v: string): void => emit(`let ${v} = buf[p]; if (${v} < 0x80) { p += 1; ${v} = (${v} >> 1) ^ -(${v} & 1); } else { ${v} = rl(buf, p); p = rlEnd; }`);
  const length = (l: string): void => {
    long(l);
    emit(`if (${l} < 0 || p + ${l} > end) ${fail}`);
  };
  /** Code for the blocks of an array or map: `body` once per item, the count in `c`. */
  const blocks = (c: string, body: () => void): void => {
    // A negative count (followed by a byte size) is valid Avro, but avsc's read and skip treat it
    // differently: left to decode, as is a count the rest of the body cannot hold.
    emit('for (;;) {');
    long(c);
    emit(`if (${c} === 0) break; if (${c} < 0 || ${c} > end - p) ${fail} while (${c}-- > 0) {`);
    body();
    emit(`} if (p > end) ${fail} }`);
  };

  /** Code walking over one value of `t` as avsc's reader reads it, refusing what it might refuse. */
  const walk = (t: AvscNode): void => {
    switch (t.typeName) {
      case 'null':
        return;
      case 'boolean':
        emit('p += 1;');
        return;
      case 'int':
        emit('while (buf[p++] & 0x80);');
        return;
      case 'long': {
        const x = fresh();
        emit('{');
        long(x);
        emit(`if (!(${x} >= -${SAFE_LONG} && ${x} <= ${SAFE_LONG})) ${fail} }`);
        return;
      }
      case 'float':
        emit('p += 4;');
        return;
      case 'double':
        emit('p += 8;');
        return;
      case 'string':
      case 'bytes': {
        const l = fresh();
        emit('{');
        length(l);
        emit(`p += ${l}; }`);
        return;
      }
      case 'fixed':
        emit(`p += ${t.size ?? 0};`);
        return;
      case 'enum': {
        const i = fresh();
        emit('{');
        long(i);
        emit(`if (!(${i} >= 0 && ${i} < ${t.symbols?.length ?? 0})) ${fail} }`);
        return;
      }
      case 'union:unwrapped': {
        const i = fresh();
        emit('{');
        long(i);
        emit(`switch (${i}) {`);
        (t.types ?? []).forEach((b, i) => {
          emit(`case ${i}: {`);
          walk(b);
          emit('break; }');
        });
        emit(`default: ${fail} } }`);
        return;
      }
      case 'array':
        blocks(fresh(), () => walk(t.itemsType!));
        return;
      case 'map':
        blocks(fresh(), () => {
          const l = fresh();
          length(l);
          emit(`p += ${l};`);
          walk(t.valuesType!);
        });
        return;
      case 'record':
        for (const f of t.fields ?? []) walk(f.type);
        return;
      default:
        throw new MetadataReadUnsupported(`cannot walk ${t.typeName}`);
    }
  };

  /** Code reading a value of `t` into the fresh variable `v`, as avsc builds it (records as plain objects). */
  const read = (t: AvscNode, v: string): void => {
    switch (t.typeName) {
      case 'null':
        emit(`const ${v} = null;`);
        return;
      case 'boolean':
        emit(`const ${v} = !!buf[p++];`);
        return;
      case 'int':
        long(v);
        return;
      case 'long':
        long(v);
        emit(`if (!(${v} >= -${SAFE_LONG} && ${v} <= ${SAFE_LONG})) ${fail}`);
        return;
      case 'string': {
        const l = fresh();
        emit(`let ${v}; {`);
        length(l);
        emit(`${v} = ${k(new StringMemo())}.get(buf, p, ${l}); p += ${l}; }`);
        return;
      }
      case 'fixed': {
        // A copy, as avsc's readFixed makes (from its pool; Buffer.allocUnsafe's here).
        const size = t.size ?? 0;
        emit(`if (p + ${size} > end) ${fail} const ${v} = Buffer.allocUnsafe(${size}); for (let i = 0; i < ${size}; i++) ${v}[i] = buf[p + i]; p += ${size};`);
        return;
      }
      case 'enum': {
        const i = fresh();
        long(i);
        emit(`const ${v} = ${k(t.symbols ?? [])}[${i}]; if (${v} === undefined) ${fail}`);
        return;
      }
      case 'union:unwrapped': {
        const i = fresh();
        long(i);
        emit(`let ${v}; switch (${i}) {`);
        (t.types ?? []).forEach((b, i) => {
          const inner = fresh();
          emit(`case ${i}: {`);
          read(b, inner);
          emit(`${v} = ${inner}; break; }`);
        });
        emit(`default: ${fail} }`);
        return;
      }
      case 'array':
        emit(`const ${v} = [];`);
        blocks(fresh(), () => {
          const item = fresh();
          read(t.itemsType!, item);
          emit(`${v}.push(${item});`);
        });
        return;
      case 'record': {
        const fields = t.fields ?? [];
        const values = fields.map(() => fresh());
        fields.forEach((f, i) => read(f.type, values[i]!));
        // An object literal in field order: every record read has one shape, like avsc's constructor.
        emit(`const ${v} = { ${fields.map((f, i) => `${JSON.stringify(f.name)}: ${values[i]!}`).join(', ')} };`);
        return;
      }
      default:
        // bytes, maps, floats: not in the metadata record; a writer with them is read by decode.
        throw new MetadataReadUnsupported(`cannot read ${t.typeName}`);
    }
  };

  /** Code walking over a string or ["null", string] value, noting a non-empty string (n > 0 bytes decode to ≥ 1 character). */
  const probe = (t: AvscNode): void => {
    const l = fresh();
    if (t.typeName === 'string') {
      emit('{');
      length(l);
      emit(`if (${l} > 0) text = true; p += ${l}; }`);
      return;
    }
    const branches = t.typeName === 'union:unwrapped' ? (t.types ?? []) : [];
    const s = branches.findIndex((b) => b.typeName === 'string');
    if (branches.length !== 2 || s < 0 || branches[1 - s]?.typeName !== 'null') throw new MetadataReadUnsupported('text field is not a string');
    const i = fresh();
    long(i);
    emit(`switch (${i}) { case ${1 - s}: break; case ${s}: {`);
    length(l);
    emit(`if (${l} > 0) text = true; p += ${l}; break; } default: ${fail} }`);
  };

  // The metadata as the reader resolves it: read directly when the writer's layout is the reader's
  // (same canonical form: same fields, types and order), else through avsc's resolver for that record.
  const sameLayout = JSON.stringify(wMeta.type.schema()) === JSON.stringify(rMeta.type.schema());
  const typeName = JSON.stringify(writer.type);
  /** Expressions of the chain fields (mode 'chain'). */
  const chain = new Map<string, string>();
  if (!sameLayout) {
    const resolver = rMeta.type.createResolver(wMeta.type);
    // avsc reads the metadata here: a block it cannot hold is left to decode, which refuses it.
    if (bodyCheck !== undefined) emit(`if (${k(bodyCheck)}(buf) !== undefined) ${fail}`);
    emit(`const decoded = ${k(rMeta.type)}.decode(buf, p, ${k(resolver)}); if (decoded.offset < 0) ${fail} p = decoded.offset; const metadata = decoded.value;`);
    emit(`if (metadata.type !== ${typeName}) ${fail}`);
    for (const name of CHAIN_FIELDS) chain.set(name, `metadata.${name}`);
  } else if (mode === 'metadata') {
    read(wMeta.type, 'metadata');
    emit(`if (metadata.type !== ${typeName}) ${fail}`);
  } else {
    // Only the chain fields are built; `type` is compared with the header's type in place.
    const metaFields = wMeta.type.fields ?? [];
    for (const name of [...CHAIN_FIELDS, 'type']) {
      if (!metaFields.some((f) => f.name === name)) throw new MetadataReadUnsupported(`metadata has no ${name}`);
    }
    const typeBytes = Buffer.from(writer.type);
    for (const f of metaFields) {
      if (f.name === 'type') {
        if (f.type.typeName !== 'string') throw new MetadataReadUnsupported('metadata.type is not a string');
        const l = fresh();
        emit('{');
        length(l);
        emit(`if (${l} !== ${typeBytes.length}) ${fail} const t = ${k(typeBytes)}; for (let i = 0; i < ${typeBytes.length}; i++) if (buf[p + i] !== t[i]) ${fail} p += ${l}; }`);
      } else if (f.name === 'prevHash' && f.type.typeName === 'fixed') {
        // A view: the bytes are kept by whoever verifies them anyway.
        const v = fresh();
        const size = f.type.size ?? 0;
        emit(`if (p + ${size} > end) ${fail} const ${v} = buf.subarray(p, p + ${size}); p += ${size};`);
        chain.set(f.name, v);
      } else if ((CHAIN_FIELDS as readonly string[]).includes(f.name)) {
        const v = fresh();
        read(f.type, v);
        chain.set(f.name, v);
      } else walk(f.type);
    }
  }
  const schemaVersion = mode === 'metadata' ? 'metadata.schemaVersion' : chain.get('schemaVersion')!;
  emit(`if (!${k(writer.versions)}.includes(${schemaVersion})) ${fail}`);

  // The rest of the body, walked; the payload's text field probed.
  let textConst = false;
  for (const f of wFields.slice(1)) {
    if (field === undefined || f.name !== 'payload') {
      walk(f.type);
      continue;
    }
    const rPayload = rFields.find((x) => x.name === 'payload');
    if (rPayload === undefined || rPayload.aliases.length > 0 || f.type.typeName !== 'record' || rPayload.type.typeName !== 'record') {
      throw new MetadataReadUnsupported('payload is not a record');
    }
    const rText = (rPayload.type.fields ?? []).find((x) => x.name === field);
    if (rText === undefined) {
      // The decoded payload has no such field: never text.
      walk(f.type);
      continue;
    }
    const rTextType = rText.type.typeName === 'union:unwrapped' ? (rText.type.types ?? []).map((b) => b.typeName).join() : rText.type.typeName;
    if (!['string', 'null,string', 'string,null'].includes(rTextType)) throw new MetadataReadUnsupported('text field is not a string');
    if (resolving && rText.aliases.length > 0) throw new MetadataReadUnsupported('aliased text field');
    const pFields = f.type.fields ?? [];
    if (!pFields.some((x) => x.name === field)) {
      // Written before the field existed: the decoded event holds the reader's default.
      const d = rText.defaultValue();
      textConst = typeof d === 'string' && d.length > 0;
    }
    for (const x of pFields) {
      if (x.name === field) probe(x.type);
      else walk(x.type);
    }
  }
  emit(`if (p !== end) ${fail}`);
  if (mode === 'metadata') {
    emit(`return { type: ${typeName}, writerVersion: metadata.schemaVersion, fingerprint: ${JSON.stringify(writer.schema.fingerprintHex)}, metadata, hasText: text };`);
  } else {
    const v = (name: string): string => chain.get(name)!;
    emit(
      `return { type: ${typeName}, writerVersion: ${v('schemaVersion')}, eventId: ${v('eventId')}, producer: ${v('producer')}, producerEpoch: ${v('producerEpoch')}, sequence: ${v('sequence')}, prevHash: ${v('prevHash')}, timeUs: ${v('timeUs')}, hasText: text };`,
    );
  }

  const src = `${METADATA_RUNTIME}
  return function readMetadata(buf) {
    const end = buf.length;
    let p = ${HEADER_BYTES};
    let text = ${String(textConst)};
    try {
      ${lines.join('\n      ')}
    } catch {
      // Anything the walk did not foresee: decode decides.
      return undefined;
    }
  };`;
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- generated once per writer schema, from names avsc validated
  return new Function('K', src)(consts) as MetadataRead;
}

// ---- Block counts (EventCodec.decode) ----
//
// avsc reads an array or map block by block, allocating item by item for as many items as the
// block's count says: a tampered count of 2^40 in a 500-byte event makes it loop and allocate until
// the process runs out of memory. Every item of every array and map takes at least one byte (a
// map's key is a string; the arrays hold strings and records of several fields: checked for every
// schema, history included, when the check is built), so a count larger than the bytes left in
// the body cannot be genuine. Before avsc reads a body, a check generated once per writer schema
// walks it (nothing built) and refuses such a count, and a negative count whose byte size does not
// fit or does not match its items (avsc's reader ignores the size, its skipper jumps by it).

/** Items of an array whose items can take no bytes (none in the schemas) are bounded by this instead. */
const MAX_EMPTY_ITEMS = 1 << 16;

/** A block no body of this length can hold, as the body check reports it. */
interface BlockProblem {
  readonly kind: 'count' | 'empty_items' | 'size' | 'negative_size' | 'size_mismatch';
  readonly container: 'array' | 'map';
  /** Field path in the writer schema (array items as `[]`, map values as `{}`). */
  readonly path: string;
  readonly value: number;
  /** Bytes left in the body after the count (and size); for size_mismatch, the bytes the items took. */
  readonly left: number;
}

/** Undefined when decode may go on (avsc then accepts the body or raises its own error). */
type BodyCheck = (buf: Buffer) => BlockProblem | undefined;

/** The least number of bytes a value of `t` takes. */
function minBytes(t: AvscNode, stack: ReadonlySet<AvscNode> = new Set()): number {
  switch (t.typeName) {
    case 'null':
      return 0;
    case 'float':
      return 4;
    case 'double':
      return 8;
    case 'fixed':
      return t.size ?? 0;
    case 'union:unwrapped':
      return 1 + Math.min(...(t.types ?? []).map((b) => minBytes(b, stack)));
    case 'record':
      if (stack.has(t)) return 0;
      return (t.fields ?? []).reduce((n, f) => n + minBytes(f.type, new Set([...stack, t])), 0);
    default:
      // boolean, int, long, enum, string, bytes, array, map: at least one byte.
      return 1;
  }
}

/** Whether a value of `t` can hold an array or a map. */
function hasBlocks(t: AvscNode, stack: ReadonlySet<AvscNode> = new Set()): boolean {
  switch (t.typeName) {
    case 'array':
    case 'map':
      return true;
    case 'union:unwrapped':
      return (t.types ?? []).some((b) => hasBlocks(b, stack));
    case 'record':
      return !stack.has(t) && (t.fields ?? []).some((f) => hasBlocks(f.type, new Set([...stack, t])));
    default:
      return false;
  }
}

/**
 * Generates the body check of one writer schema (undefined when it has no array or map). It
 * follows the body as avsc reads and skips it, byte for byte, up to the last array or map: a
 * string, bytes or varint that runs past the end, a negative length or an unknown union index
 * ends the walk there, with avsc left to decide (it reports the first three as a truncated body,
 * reading nothing after them, and throws at the last).
 */
function compileBodyCheck(writer: AvscNode): BodyCheck | undefined {
  if (!hasBlocks(writer)) return undefined;
  let vars = 0;
  const fresh = (): string => `v${vars++}`;
  const lines: string[] = [];
  const emit = (s: string): void => void lines.push(s);
  const defer = 'return undefined;';
  const skipVarint = (): void => emit('while (buf[p++] & 0x80);');
  const long = (v: string): void => emit(`let ${v} = buf[p]; if (${v} < 0x80) { p += 1; ${v} = (${v} >> 1) ^ -(${v} & 1); } else { ${v} = rl(buf, p); p = rlEnd; }`);
  const length = (): void => {
    const l = fresh();
    emit('{');
    long(l);
    emit(`if (${l} < 0 || ${l} > end - p) ${defer} p += ${l}; }`);
  };
  const stack: AvscNode[] = [];

  /** Code walking over a value of `t`; `tail`: nothing after it needs walking. */
  const walk = (t: AvscNode, path: string, tail: boolean): void => {
    if (tail && !hasBlocks(t)) {
      emit(defer);
      return;
    }
    switch (t.typeName) {
      case 'null':
        return;
      case 'boolean':
        emit('p += 1;');
        return;
      case 'int':
      case 'long':
      case 'enum':
        skipVarint();
        return;
      case 'float':
        emit('p += 4;');
        return;
      case 'double':
        emit('p += 8;');
        return;
      case 'fixed':
        emit(`p += ${t.size ?? 0};`);
        return;
      case 'string':
      case 'bytes':
        length();
        return;
      case 'union:unwrapped': {
        const i = fresh();
        emit('{');
        long(i);
        emit(`switch (${i}) {`);
        (t.types ?? []).forEach((b, n) => {
          emit(`case ${n}: {`);
          walk(b, path, tail);
          emit('break; }');
        });
        emit(`default: ${defer} } }`);
        return;
      }
      case 'record': {
        if (stack.includes(t)) {
          throw new EventError('event_schema_load', `the body check cannot walk the recursive record ${String((t as { name?: string }).name)}`, { where: path });
        }
        stack.push(t);
        const fields = t.fields ?? [];
        const last = tail ? fields.reduce((n, f, i) => (hasBlocks(f.type) ? i : n), -1) : fields.length - 1;
        fields.slice(0, last + 1).forEach((f, i) => walk(f.type, path === '' ? f.name : `${path}.${f.name}`, tail && i === last));
        stack.pop();
        if (tail) emit(defer);
        return;
      }
      case 'array':
        blocks('array', path, minBytes(t.itemsType!) > 0, () => walk(t.itemsType!, `${path}[]`, false));
        return;
      case 'map':
        blocks('map', path, true, () => {
          length();
          walk(t.valuesType!, `${path}{}`, false);
        });
        return;
      default:
        throw new EventError('event_schema_load', `the body check cannot walk ${t.typeName}`, { where: path });
    }
  };

  /** Code walking over the blocks of an array or map, `item` once per item. */
  const blocks = (container: 'array' | 'map', path: string, sized: boolean, item: () => void): void => {
    const c = fresh();
    const s = fresh();
    const start = fresh();
    const at = `${JSON.stringify(container)}, ${JSON.stringify(path)}`;
    // Items that take no bytes: the count is bounded by a constant instead of the bytes left.
    const over = (n: string): string =>
      sized ? `if (${n} > end - p) return bad("count", ${at}, ${n}, end - p);` : `if (${n} > ${MAX_EMPTY_ITEMS}) return bad("empty_items", ${at}, ${n}, ${MAX_EMPTY_ITEMS});`;
    emit('for (;;) {');
    long(c);
    const size = fresh();
    emit(`if (${c} === 0) break; let ${start} = -1, ${s} = 0; if (${c} < 0) { ${c} = -${c};`);
    long(size);
    emit(`${s} = ${size};`);
    emit(over(c));
    emit(`if (${s} < 0) return bad("negative_size", ${at}, ${s}, end - p); if (${s} > end - p) return bad("size", ${at}, ${s}, end - p); ${start} = p; } else { ${over(c)} }`);
    emit(`while (${c}-- > 0) {`);
    item();
    emit(`} if (${start} >= 0 && p !== ${start} + ${s}) return bad("size_mismatch", ${at}, ${s}, p - ${start}); if (p > end) ${defer} }`);
  };

  walk(writer, '', true);
  const src = `${METADATA_RUNTIME}
  function bad(kind, container, path, value, left) {
    return { kind, container, path, value, left };
  }
  return function checkBody(buf) {
    const end = buf.length;
    let p = ${HEADER_BYTES};
    ${lines.join('\n    ')}
    return undefined;
  };`;
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- generated once per writer schema, from names avsc validated
  return new Function(src)() as BodyCheck;
}

/** The error decode raises for a block the body cannot hold. */
function blockError(writer: RegistryEntry, problem: BlockProblem): EventError {
  const { container, path, value, left } = problem;
  const body = `the body of ${writer.type} v${writer.version}`;
  switch (problem.kind) {
    case 'count':
      return new EventError('event_truncated', `${container} count ${value} at ${path} exceeds the ${left} byte(s) remaining in ${body}`, { where: 'body' });
    case 'empty_items':
      return new EventError('event_schema_mismatch', `${container} count ${value} at ${path} exceeds the ${left} items allowed in ${body}`, { where: 'body' });
    case 'size':
      return new EventError('event_truncated', `${container} block size ${value} at ${path} exceeds the ${left} byte(s) remaining in ${body}`, { where: 'body' });
    case 'negative_size':
      return new EventError('event_schema_mismatch', `${container} block size ${value} at ${path} in ${body} is negative`, { where: 'body' });
    case 'size_mismatch':
      return new EventError('event_schema_mismatch', `${container} block at ${path} in ${body} claims ${value} byte(s) but its items take ${left}`, { where: 'body' });
  }
}

export function createEventCodec(options: { schemaSet?: SchemaSet; registry?: SchemaRegistry } = {}): EventCodec {
  const registry = options.registry ?? SchemaRegistry.fromSchemaSet(options.schemaSet ?? loadSchemaSet());
  return new EventCodec(registry);
}

let defaultCodec: EventCodec | undefined;

/** The codec over the repository's schemas, built on first use. */
export function getDefaultCodec(): EventCodec {
  defaultCodec ??= createEventCodec();
  return defaultCodec;
}

export function encodeEvent(event: AnyAttestEvent): Buffer {
  return getDefaultCodec().encode(event);
}

export function decodeEvent(bytes: Uint8Array): DecodedEvent {
  return getDefaultCodec().decode(bytes);
}

/** `decodeMetadata` with the default codec (EventCodec.decodeMetadata). */
export function decodeEventMetadata(bytes: Uint8Array, textFields?: ReadonlyMap<string, string>): DecodedMetadata {
  return getDefaultCodec().decodeMetadata(bytes, textFields);
}

/** `decodeChainMetadata` with the default codec (EventCodec.decodeChainMetadata). */
export function decodeEventChainMetadata(bytes: Uint8Array, textFields?: ReadonlyMap<string, string>): DecodedChainMetadata {
  return getDefaultCodec().decodeChainMetadata(bytes, textFields);
}
