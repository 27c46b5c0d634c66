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
    return merged;
  }

  /** Make `schema` the one writers use and readers resolve into for its type (and register it). */
  setCurrent(schema: LoadedSchema): void {
    this.register(schema);
    this.#current.set(schema.type, schema);
  }

  lookup(fingerprint: Uint8Array, offset = 0): RegistryEntry | undefined {
    return this.#byFingerprint.get(fingerprintKey(fingerprint, offset));
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
    let decoded: { value: unknown; offset: number };
    try {
      // Same fingerprint, same canonical form (register refuses collisions): no resolution needed.
      decoded =
        writer.schema.fingerprintHex === reader.fingerprintHex
          ? reader.avroType.decode(buf, HEADER_BYTES)
          : reader.avroType.decode(buf, HEADER_BYTES, this.#resolverFor(writer, reader) as never);
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
