import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DOCS_PATH, lockPath, renderDocs, TYPES_PATH } from './artifacts';
import { EVENT_CATALOG, EVENT_TYPES } from './catalog';
import { createEventCodec, EventCodec, SchemaRegistry } from './codec';
import { generateTypesSource } from './codegen';
import { checkCompatibility } from './compat';
import { fromFixtureJson, listFixtures, sampleEvent, toFixtureJson } from './fixtures';
import { formatJson, isJsonObject, loadedSchema, loadSchemaSet, type JsonObject, type JsonValue } from './schemas';

const set = loadSchemaSet();
const codec = createEventCodec({ schemaSet: set });
const fixtures = listFixtures();

describe('golden fixtures', () => {
  it('exist for the current version of every type', () => {
    for (const type of EVENT_TYPES) {
      expect(fixtures.some((f) => f.type === type && f.version === EVENT_CATALOG[type].version), type).toBe(true);
    }
  });

  it.each(fixtures.map((f) => [`${f.type} v${f.version}`, f] as const))('%s decodes with its writer schema to its .json', (_name, fixture) => {
    const writer = set.history.get(fixture.type)?.get(fixture.version);
    if (writer === undefined) throw new Error(`no committed schema for ${fixture.type} v${fixture.version}`);
    expect(fixture.bytes.subarray(2, 10).toString('hex')).toBe(writer.fingerprintHex);
    expect(fixture.document.fingerprint).toBe(writer.fingerprintHex);
    expect(fixture.document).toMatchObject({ type: fixture.type, code: EVENT_CATALOG[fixture.type].code, schemaVersion: fixture.version });
    const value = writer.avroType.fromBuffer(fixture.bytes.subarray(10)) as unknown;
    expect(toFixtureJson(value)).toEqual(fixture.document.event);
  });

  it.each(fixtures.map((f) => [`${f.type} v${f.version}`, f] as const))('%s decodes with the current reader', (_name, fixture) => {
    const decoded = codec.decode(fixture.bytes);
    expect(decoded.type).toBe(fixture.type);
    expect(decoded.writerVersion).toBe(fixture.version);
    const currentType = set.current.get(fixture.type)?.avroType;
    expect(currentType?.isValid(decoded.event)).toBe(true);
    if (fixture.version === EVENT_CATALOG[fixture.type].version) {
      // Current version: byte-for-byte stable through decode → encode.
      expect(codec.encode(decoded.event)).toEqual(fixture.bytes);
      expect(decoded.event).toEqual(fromFixtureJson(fixture.document.event));
    }
  });

  it('gateway.request.received v1 (before content existed) decodes with content null; v2 keeps it', () => {
    const v1 = fixtures.find((f) => f.type === 'gateway.request.received' && f.version === 1);
    const v2 = fixtures.find((f) => f.type === 'gateway.request.received' && f.version === 2);
    if (v1 === undefined || v2 === undefined) throw new Error('gateway.request.received v1 and v2 fixtures are committed');
    const old = codec.decodeAs('gateway.request.received', v1.bytes);
    expect(old.payload.content).toBeNull();
    expect(old.payload.bodyDigest).toHaveLength(32);
    expect(codec.decodeAs('gateway.request.received', v2.bytes).payload.content).toContain('411111******1111');
  });

  it('the .json files are formatted as the generator writes them', () => {
    for (const f of fixtures) expect(readFileSync(f.jsonPath, 'utf8')).toBe(formatJson(f.document as unknown as JsonValue));
  });

  it('the samples still encode (a schema change that breaks them fails here before generation)', () => {
    for (const type of EVENT_TYPES) expect(codec.decode(codec.encode(sampleEvent(type))).type).toBe(type);
  });
});

describe('compatibility across committed versions', () => {
  it('every committed version of every type is compatible with the current one, both ways', () => {
    for (const type of EVENT_TYPES) {
      const current = set.current.get(type);
      for (const [version, old] of set.history.get(type) ?? []) {
        if (current === undefined) throw new Error(type);
        expect([type, version, checkCompatibility(old.avroType, current.avroType)]).toEqual([type, version, { compatible: true, backward: [], forward: [] }]);
      }
    }
  });

  it('each current version is locked, and the lock is what the generator writes', () => {
    for (const type of EVENT_TYPES) {
      const path = lockPath(set.root, type, EVENT_CATALOG[type].version);
      expect(existsSync(path), path).toBe(true);
      expect(readFileSync(path, 'utf8')).toBe(formatJson(set.current.get(type)?.schema ?? {}));
    }
  });

  it('all committed fixtures still decode when a v2 adds a defaulted field to every type', () => {
    // What the next version bump will look like: v1 fixtures resolved into a v2 reader.
    const registry = new SchemaRegistry();
    for (const type of EVENT_TYPES) {
      for (const old of set.history.get(type)?.values() ?? []) registry.register(old);
      const next = structuredClone(set.current.get(type)?.schema) as JsonObject;
      const payload = (next['fields'] as JsonValue[]).find((f) => isJsonObject(f) && f['name'] === 'payload') as JsonObject;
      ((payload['type'] as JsonObject)['fields'] as JsonValue[]).push({ name: 'addedInV2', type: 'string', default: 'n/a', doc: 'added in v2' });
      registry.setCurrent(loadedSchema(type, EVENT_CATALOG[type].version + 1, next, 'test'));
    }
    const nextCodec = new EventCodec(registry);
    for (const fixture of fixtures) {
      const decoded = nextCodec.decode(fixture.bytes);
      expect((decoded.event.payload as unknown as { addedInV2: string }).addedInV2).toBe('n/a');
      expect(decoded.event.metadata.eventId).toBe((fixture.document.event as { metadata: { eventId: string } }).metadata.eventId);
    }
  });
});

describe('generated artifacts are current (run schemas/fixtures/generate.ts when these fail)', () => {
  it('types.generated.ts', () => {
    expect(readFileSync(TYPES_PATH, 'utf8')).toBe(generateTypesSource(set));
  });

  it('the tables in docs/events.md', () => {
    const docs = readFileSync(DOCS_PATH, 'utf8');
    expect(renderDocs(set, docs)).toBe(docs);
  });
});
