/**
 * Loads the event schemas from schemas/avro/.
 *
 * Layout (docs/events.md, "Schema files"):
 *   shared/<Name>.avsc          one shared named type per file (Metadata, Actor, Sha256, ...)
 *   events/<type>.avsc          the current envelope of one event type; refers to shared types by
 *                               full name and defines its payload inline
 *   history/<type>/v<N>.avsc    the frozen, self-contained schema of every released version
 *
 * An event schema is composed by inlining each shared type at its first reference (later
 * references stay names), walking the event file in order: deterministic, and independent of
 * file-system order. The composed schema of the current version must equal its lock in history/
 * (docs aside), so changing a shared record without bumping the versions of the types using it
 * fails at load, not silently in production.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import avro from 'avsc';
import type { Type as AvroType } from 'avsc';
import { AVRO_NAMESPACE, EVENT_CATALOG, EVENT_TYPES, fullRecordNameOf, isEventType, type EventType } from './catalog';
import { crc64AvroBytes } from './crc64';
import { EventError } from './errors';

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export const DEFAULT_SCHEMA_ROOT = fileURLToPath(new URL('../../../../schemas/avro/', import.meta.url));

export const REGENERATE_HINT = 'run `node --import tsx schemas/fixtures/generate.ts`';

/** The envelope every event type shares, in order, and the shared record each field holds. */
export const ENVELOPE_FIELDS = [
  ['metadata', `${AVRO_NAMESPACE}.Metadata`],
  ['actor', `${AVRO_NAMESPACE}.Actor`],
  ['source', `${AVRO_NAMESPACE}.Source`],
  ['target', `${AVRO_NAMESPACE}.Target`],
  ['outcome', `${AVRO_NAMESPACE}.Outcome`],
  ['correlation', `${AVRO_NAMESPACE}.Correlation`],
] as const;

const PRIMITIVES: ReadonlySet<string> = new Set(['null', 'boolean', 'int', 'long', 'float', 'double', 'bytes', 'string']);
const NAMED_KINDS: ReadonlySet<string> = new Set(['record', 'error', 'enum', 'fixed']);

export interface LoadedSchema {
  readonly type: EventType;
  readonly version: number;
  /** Self-contained schema (shared types inlined), docs and logical types included. */
  readonly schema: JsonObject;
  readonly avroType: AvroType;
  /** Avro Parsing Canonical Form: what the fingerprint is computed over. */
  readonly canonical: string;
  /** CRC-64-AVRO of the canonical form, 8 bytes little-endian, as in the single-object header. */
  readonly fingerprint: Buffer;
  readonly fingerprintHex: string;
}

export interface SchemaSet {
  readonly root: string;
  /** Shared named types by full name, as authored. */
  readonly shared: ReadonlyMap<string, JsonObject>;
  /** The current schema of every type, composed from events/ and shared/. */
  readonly current: ReadonlyMap<EventType, LoadedSchema>;
  /** Every committed version of every type, from history/ (the current one included once locked). */
  readonly history: ReadonlyMap<EventType, ReadonlyMap<number, LoadedSchema>>;
}

export interface LoadSchemaOptions {
  root?: string;
  /** Require each current schema to match its committed lock. Off only for the generator. */
  verifyLocks?: boolean;
}

function loadError(message: string, where?: string, fix?: string): EventError {
  return new EventError('event_schema_load', message, {
    ...(where === undefined ? {} : { where }),
    ...(fix === undefined ? {} : { fix }),
  });
}

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function readJson(path: string): JsonValue {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as JsonValue;
  } catch (cause) {
    throw new EventError('event_schema_load', `cannot read schema file: ${String(cause)}`, { where: path, cause });
  }
}

/** Full name of a named schema node, per the Avro namespace rules. */
export function fullNameOf(node: JsonObject, enclosingNamespace: string | undefined): string {
  const name = String(node['name']);
  if (name.includes('.')) return name;
  const ns = typeof node['namespace'] === 'string' ? node['namespace'] : enclosingNamespace;
  return ns ? `${ns}.${name}` : name;
}

function namespaceOf(fullName: string): string | undefined {
  const i = fullName.lastIndexOf('.');
  return i < 0 ? undefined : fullName.slice(0, i);
}

/**
 * Inline shared named types into `root` at their first reference. References to a type already
 * defined earlier in the walk stay (fully qualified) names, as Avro requires.
 */
export function composeSchema(root: JsonObject, shared: ReadonlyMap<string, JsonObject>, where = 'schema'): JsonObject {
  const defined = new Set<string>();
  const walk = (node: JsonValue, ns: string | undefined, path: string): JsonValue => {
    if (typeof node === 'string') {
      if (PRIMITIVES.has(node)) return node;
      const full = node.includes('.') || ns === undefined ? node : `${ns}.${node}`;
      if (defined.has(full)) return full;
      const def = shared.get(full);
      if (def === undefined) {
        throw loadError(`undefined type name '${node}' at ${path}`, where, `define it in shared/ or inline, with namespace ${AVRO_NAMESPACE}`);
      }
      return walk(def, ns, path);
    }
    if (Array.isArray(node)) return node.map((branch, i) => walk(branch, ns, `${path}[${i}]`));
    if (!isJsonObject(node)) throw loadError(`invalid schema node at ${path}: ${JSON.stringify(node)}`, where);
    const kind = node['type'];
    if (typeof kind === 'string' && NAMED_KINDS.has(kind)) {
      const full = fullNameOf(node, ns);
      if (defined.has(full)) throw loadError(`type '${full}' defined twice (at ${path})`, where);
      const sharedDef = shared.get(full);
      if (sharedDef !== undefined && sharedDef !== node) {
        throw loadError(`'${full}' redefines a shared type (at ${path})`, where, 'refer to the shared type by name instead');
      }
      defined.add(full);
      if (kind === 'record' || kind === 'error') {
        const fields = node['fields'];
        if (!Array.isArray(fields)) throw loadError(`record '${full}' has no fields array`, where);
        const inner = namespaceOf(full);
        return {
          ...node,
          fields: fields.map((field) => {
            if (!isJsonObject(field) || field['type'] === undefined) throw loadError(`malformed field in '${full}'`, where);
            return { ...field, type: walk(field['type'], inner, `${path}.${String(field['name'])}`) };
          }),
        };
      }
      return { ...node };
    }
    if (kind === 'array') return { ...node, items: walk(node['items'] ?? null, ns, `${path}[]`) };
    if (kind === 'map') return { ...node, values: walk(node['values'] ?? null, ns, `${path}{}`) };
    if (typeof kind === 'string' && PRIMITIVES.has(kind)) return { ...node };
    if (kind === undefined) throw loadError(`schema node without type at ${path}`, where);
    return walk(kind, ns, path);
  };
  const out = walk(root, undefined, '$');
  if (!isJsonObject(out)) throw loadError('an event schema must be a record', where);
  return out;
}

/** Compile a self-contained schema. Unions stay unwrapped (`T | null`); an ambiguous one fails here. */
export function compileSchema(schema: JsonObject, where = 'schema'): AvroType {
  try {
    return avro.Type.forSchema(schema as never, { wrapUnions: 'never' });
  } catch (cause) {
    throw new EventError('event_schema_load', `invalid Avro schema: ${cause instanceof Error ? cause.message : String(cause)}`, { where, cause });
  }
}

/**
 * Avro Parsing Canonical Form. avsc's attribute-free schema export already is PCF: full names,
 * only the type-defining attributes, in the specified order, no whitespace.
 */
export function parsingCanonicalForm(type: AvroType): string {
  return JSON.stringify(type.schema());
}

export function loadedSchema(type: EventType, version: number, schema: JsonObject, where: string): LoadedSchema {
  const avroType = compileSchema(schema, where);
  const canonical = parsingCanonicalForm(avroType);
  const fingerprint = crc64AvroBytes(canonical);
  return { type, version, schema, avroType, canonical, fingerprint, fingerprintHex: fingerprint.toString('hex') };
}

/** Structural rules every event schema follows; returns problems, empty when fine. */
export function lintEventSchema(type: EventType, schema: JsonObject): string[] {
  const problems: string[] = [];
  if (fullNameOf(schema, undefined) !== fullRecordNameOf(type)) {
    problems.push(`record must be named '${fullRecordNameOf(type)}'`);
  }
  const fields = Array.isArray(schema['fields']) ? schema['fields'] : [];
  const names = fields.map((f) => (isJsonObject(f) ? f['name'] : undefined));
  const expected = [...ENVELOPE_FIELDS.map(([n]) => n), 'payload'];
  if (JSON.stringify(names) !== JSON.stringify(expected)) {
    problems.push(`fields must be exactly ${expected.join(', ')} (found ${names.join(', ')})`);
  }
  const visit = (node: JsonValue, path: string, ns: string | undefined): void => {
    if (Array.isArray(node)) {
      const [first, second] = node;
      if (node.length !== 2 || first !== 'null' || second === 'null') {
        problems.push(`${path}: the only union allowed is ["null", T]`);
      }
      node.forEach((branch, i) => visit(branch, `${path}[${i}]`, ns));
      return;
    }
    if (!isJsonObject(node)) return;
    const kind = node['type'];
    if (typeof kind === 'string' && NAMED_KINDS.has(kind)) {
      const full = fullNameOf(node, ns);
      if (namespaceOf(full) !== AVRO_NAMESPACE) problems.push(`${path}: '${full}' must be in namespace ${AVRO_NAMESPACE}`);
      if (typeof node['doc'] !== 'string' || node['doc'].trim() === '') problems.push(`${path}: '${full}' needs a doc`);
      if (kind === 'record' || kind === 'error') {
        for (const field of Array.isArray(node['fields']) ? node['fields'] : []) {
          if (!isJsonObject(field)) continue;
          const fieldPath = `${path}.${String(field['name'])}`;
          if (!/^[a-z][A-Za-z0-9]*$/.test(String(field['name']))) problems.push(`${fieldPath}: field names are lowerCamelCase`);
          if (typeof field['doc'] !== 'string' || field['doc'].trim() === '') problems.push(`${fieldPath}: field needs a doc`);
          const fieldType = field['type'] ?? null;
          if (Array.isArray(fieldType) && (!('default' in field) || field['default'] !== null)) {
            problems.push(`${fieldPath}: an optional field needs "default": null`);
          }
          visit(fieldType, fieldPath, namespaceOf(full));
        }
      }
      return;
    }
    if (kind === 'array') visit(node['items'] ?? null, `${path}[]`, ns);
    else if (kind === 'map') visit(node['values'] ?? null, `${path}{}`, ns);
  };
  visit(schema, '$', undefined);
  const envelope = new Map(fields.filter(isJsonObject).map((f) => [String(f['name']), f['type']]));
  for (const [name, shared] of ENVELOPE_FIELDS) {
    const t = envelope.get(name);
    const actual = isJsonObject(t) ? fullNameOf(t, AVRO_NAMESPACE) : t;
    if (actual !== shared) problems.push(`${name} must be the shared record ${shared}`);
  }
  const payload = envelope.get('payload');
  if (!isJsonObject(payload) || payload['type'] !== 'record' || fullNameOf(payload, AVRO_NAMESPACE) !== `${fullRecordNameOf(type)}Payload`) {
    problems.push(`payload must be an inline record named '${fullRecordNameOf(type)}Payload'`);
  }
  return problems;
}

/** Stable JSON with every "doc" attribute removed: what a lock must match. */
export function withoutDocs(value: JsonValue): JsonValue {
  if (Array.isArray(value)) return value.map(withoutDocs);
  if (!isJsonObject(value)) return value;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(value)) if (k !== 'doc') out[k] = withoutDocs(v);
  return out;
}

function readShared(root: string): Map<string, JsonObject> {
  const dir = join(root, 'shared');
  const shared = new Map<string, JsonObject>();
  // Sorted only so that errors are reproducible; composition does not depend on the order.
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.avsc')).sort()) {
    const path = join(dir, file);
    const node = readJson(path);
    if (!isJsonObject(node) || typeof node['name'] !== 'string') throw loadError('a shared file holds one named type', path);
    const full = fullNameOf(node, undefined);
    if (`${full.slice(full.lastIndexOf('.') + 1)}.avsc` !== file) throw loadError(`file name must be the type name (${full})`, path);
    if (shared.has(full)) throw loadError(`shared type '${full}' defined twice`, path);
    shared.set(full, node);
  }
  return shared;
}

function readHistory(root: string, type: EventType): Map<number, LoadedSchema> {
  const dir = join(root, 'history', type);
  const versions = new Map<number, LoadedSchema>();
  if (!existsSync(dir)) return versions;
  for (const file of readdirSync(dir).sort()) {
    const match = /^v([1-9]\d*)\.avsc$/.exec(file);
    if (match === null || match[1] === undefined) throw loadError('history files are named v<N>.avsc', join(dir, file));
    const version = Number(match[1]);
    const path = join(dir, file);
    const node = readJson(path);
    if (!isJsonObject(node)) throw loadError('a locked schema is a record', path);
    versions.set(version, loadedSchema(type, version, node, path));
  }
  return versions;
}

export function loadSchemaSet(options: LoadSchemaOptions = {}): SchemaSet {
  const root = options.root ?? DEFAULT_SCHEMA_ROOT;
  const verifyLocks = options.verifyLocks ?? true;
  const shared = readShared(root);

  const eventsDir = join(root, 'events');
  for (const file of readdirSync(eventsDir)) {
    const type = file.replace(/\.avsc$/, '');
    if (!file.endsWith('.avsc') || !isEventType(type)) {
      throw loadError(`'${file}' is not an event type in the catalog`, join(eventsDir, file), 'add the type to catalog.ts or remove the file');
    }
  }

  const current = new Map<EventType, LoadedSchema>();
  const history = new Map<EventType, ReadonlyMap<number, LoadedSchema>>();
  for (const type of EVENT_TYPES) {
    const path = join(eventsDir, `${type}.avsc`);
    if (!existsSync(path)) throw loadError(`no schema for event type '${type}'`, path);
    const authored = readJson(path);
    if (!isJsonObject(authored)) throw loadError('an event schema is a record', path);
    const composed = composeSchema(authored, shared, path);
    const problems = lintEventSchema(type, composed);
    if (problems.length > 0) throw loadError(`schema rules broken: ${problems.join('; ')}`, path);
    const { version } = EVENT_CATALOG[type];
    const loaded = loadedSchema(type, version, composed, path);
    current.set(type, loaded);

    const versions = readHistory(root, type);
    for (const v of versions.keys()) {
      if (v > version) throw loadError(`history has v${v} but the catalog says the current version is ${version}`, join(root, 'history', type));
    }
    const lock = versions.get(version);
    if (verifyLocks) {
      if (lock === undefined) {
        throw loadError(`no lock for ${type} v${version}`, join(root, 'history', type), REGENERATE_HINT);
      }
      if (JSON.stringify(withoutDocs(lock.schema)) !== JSON.stringify(withoutDocs(composed))) {
        throw loadError(
          `${type} changed since v${version} was locked`,
          path,
          `bump its version in catalog.ts (a released version never changes), then ${REGENERATE_HINT}`,
        );
      }
    }
    // The registry decodes current-version bytes with the composed schema; identical to the lock.
    versions.set(version, loaded);
    history.set(type, versions);
  }
  return { root, shared, current, history };
}

/** JSON for schema and fixture files: two-space indent, short nodes kept on one line so fields read as rows. */
export function formatJson(value: JsonValue, maxWidth = 120): string {
  const inline = (v: JsonValue): string => {
    if (Array.isArray(v)) return `[${v.map(inline).join(', ')}]`;
    if (isJsonObject(v)) return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${inline(x)}`).join(', ')}}`;
    return JSON.stringify(v);
  };
  const block = (v: JsonValue, indent: string): string => {
    const one = inline(v);
    if ((!Array.isArray(v) && !isJsonObject(v)) || indent.length + one.length <= maxWidth) return one;
    const inner = `${indent}  `;
    if (Array.isArray(v)) return `[\n${v.map((x) => inner + block(x, inner)).join(',\n')}\n${indent}]`;
    const entries = Object.entries(v).map(([k, x]) => `${inner}${JSON.stringify(k)}: ${block(x, inner)}`);
    return `{\n${entries.join(',\n')}\n${indent}}`;
  };
  return `${block(value, '')}\n`;
}
