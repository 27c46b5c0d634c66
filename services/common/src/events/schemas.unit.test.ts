import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DOCS_PATH, lockPath, regenerate, TYPES_PATH, writeLocks } from './artifacts';
import { EVENT_TYPES } from './catalog';
import { isEventError, type EventErrorCode } from './errors';
import { DEFAULT_FIXTURE_ROOT } from './fixtures';
import { composeSchema, DEFAULT_SCHEMA_ROOT, formatJson, isJsonObject, lintEventSchema, loadSchemaSet, type JsonObject, type JsonValue } from './schemas';

const temps: string[] = [];
afterEach(() => {
  for (const dir of temps.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A scratch copy of the schemas (and optionally fixtures, docs, types) to break on purpose. */
function scratch(): { root: string; schemas: string; fixtures: string; docs: string; types: string } {
  const root = mkdtempSync(join(tmpdir(), 'attest-schemas-'));
  temps.push(root);
  cpSync(DEFAULT_SCHEMA_ROOT, join(root, 'avro'), { recursive: true });
  cpSync(DEFAULT_FIXTURE_ROOT, join(root, 'fixtures'), { recursive: true });
  cpSync(DOCS_PATH, join(root, 'events.md'));
  cpSync(TYPES_PATH, join(root, 'types.generated.ts'));
  return { root, schemas: join(root, 'avro'), fixtures: join(root, 'fixtures'), docs: join(root, 'events.md'), types: join(root, 'types.generated.ts') };
}

function edit(path: string, change: (json: JsonObject) => void): void {
  const json = JSON.parse(readFileSync(path, 'utf8')) as JsonObject;
  change(json);
  writeFileSync(path, formatJson(json));
}

function loadError(fn: () => unknown): { code: EventErrorCode; message: string; fix: string | undefined } {
  try {
    fn();
  } catch (err) {
    if (isEventError(err)) return { code: err.code, message: err.message, fix: err.fix };
    throw err;
  }
  throw new Error('expected a load error');
}

describe('loadSchemaSet', () => {
  it('loads every catalog type, locked, from the repository', () => {
    const set = loadSchemaSet();
    expect([...set.current.keys()]).toEqual([...EVENT_TYPES]);
    expect(set.shared.size).toBeGreaterThan(10);
  });

  it('composes each shared type inline once, at its first reference, and names it afterwards', () => {
    const set = loadSchemaSet();
    const text = JSON.stringify(set.current.get('gateway.response.completed')?.schema);
    // Sha256 is defined in metadata.prevHash and referred to by name in the payload's digest.
    expect(text.match(/"name":"Sha256"/g)?.length).toBe(1);
    expect(text).toContain('"name":"contentDigest","type":"dev.attest.events.Sha256"');
  });

  it('refuses a shared record changed without a version bump, and says what to do', () => {
    const s = scratch();
    edit(join(s.schemas, 'shared', 'Source.avsc'), (json) => {
      (json['fields'] as JsonValue[]).push({ name: 'port', type: ['null', 'int'], default: null, doc: 'Source port.' });
    });
    const err = loadError(() => loadSchemaSet({ root: s.schemas }));
    expect(err.code).toBe('event_schema_load');
    expect(err.message).toMatch(/changed since v1 was locked/);
    expect(err.fix).toMatch(/bump its version/);
  });

  it('accepts a docs-only change (the fingerprint does not move)', () => {
    const s = scratch();
    edit(join(s.schemas, 'shared', 'Source.avsc'), (json) => {
      json['doc'] = 'Where the action came from (reworded).';
    });
    const before = loadSchemaSet().current.get('session.started')?.fingerprintHex;
    expect(loadSchemaSet({ root: s.schemas }).current.get('session.started')?.fingerprintHex).toBe(before);
  });

  it('refuses a missing lock, an unknown event file and an undefined type name', () => {
    const s1 = scratch();
    rmSync(lockPath(s1.schemas, 'key.rotated', 1));
    expect(loadError(() => loadSchemaSet({ root: s1.schemas })).fix).toMatch(/generate\.ts/);

    const s2 = scratch();
    writeFileSync(join(s2.schemas, 'events', 'thing.happened.avsc'), '{}');
    expect(loadError(() => loadSchemaSet({ root: s2.schemas })).message).toMatch(/not an event type in the catalog/);

    const s3 = scratch();
    edit(join(s3.schemas, 'events', 'key.rotated.avsc'), (json) => {
      json['fields'] = (json['fields'] as JsonObject[]).map((f) => (f['name'] === 'actor' ? { ...f, type: 'dev.attest.events.Principal' } : f));
    });
    expect(loadError(() => loadSchemaSet({ root: s3.schemas })).message).toMatch(/undefined type name 'dev.attest.events.Principal'/);
  });
});

describe('lintEventSchema', () => {
  const set = loadSchemaSet();
  const schema = (): JsonObject => structuredClone(set.current.get('audit.stopped')?.schema) as JsonObject;
  const payloadFields = (s: JsonObject): JsonObject[] => {
    const payload = (s['fields'] as JsonObject[]).find((f) => f['name'] === 'payload');
    return (payload?.['type'] as JsonObject)['fields'] as JsonObject[];
  };

  it('passes the real schemas', () => {
    for (const type of EVENT_TYPES) expect(lintEventSchema(type, set.current.get(type)?.schema ?? {})).toEqual([]);
  });

  it('refuses unions other than ["null", T] with a null default', () => {
    const s = schema();
    payloadFields(s).push({ name: 'x', type: ['string', 'null'], default: 'a', doc: 'x' });
    expect(lintEventSchema('audit.stopped', s)).toEqual(['$.payload.x: an optional field needs "default": null', '$.payload.x: the only union allowed is ["null", T]']);
  });

  it('refuses a field or record without a doc', () => {
    const s = schema();
    payloadFields(s).push({ name: 'x', type: 'string' });
    expect(lintEventSchema('audit.stopped', s)).toEqual(['$.payload.x: field needs a doc']);
  });

  it('refuses an envelope that is not exactly the shared records in order, then the payload', () => {
    const s = schema();
    const fields = s['fields'] as JsonObject[];
    s['fields'] = [fields[1], fields[0], ...fields.slice(2)] as JsonObject[];
    expect(lintEventSchema('audit.stopped', s).join('\n')).toMatch(/fields must be exactly metadata, actor, source, target, outcome, correlation, payload/);
  });

  it('refuses a record named after another type', () => {
    expect(lintEventSchema('audit.started', schema())).toContain("record must be named 'dev.attest.events.AuditStarted'");
  });
});

describe('composeSchema', () => {
  it('refuses defining a type twice, or redefining a shared type inline', () => {
    const set = loadSchemaSet();
    const authored = JSON.parse(readFileSync(join(set.root, 'events', 'audit.stopped.avsc'), 'utf8')) as JsonObject;
    const fields = authored['fields'] as JsonObject[];
    const payload = fields.find((f) => f['name'] === 'payload')?.['type'] as JsonObject;
    const fieldsOfPayload = payload['fields'] as JsonValue[];
    fieldsOfPayload.push({ name: 'x', type: { type: 'fixed', name: 'Sha256', size: 16, doc: 'x' }, doc: 'x' });
    expect(loadError(() => composeSchema(authored, set.shared)).message).toMatch(/'dev.attest.events.Sha256' defined twice/);
    fieldsOfPayload.pop();
    fieldsOfPayload.push({ name: 'y', type: { type: 'record', name: 'PrincipalRef', fields: [], doc: 'y' }, doc: 'y' });
    expect(loadError(() => composeSchema(authored, set.shared)).message).toMatch(/redefines a shared type/);
  });

  it('is independent of the order shared files are read in', () => {
    const set = loadSchemaSet();
    const reversed = new Map([...set.shared].reverse());
    for (const type of EVENT_TYPES) {
      const authored = JSON.parse(readFileSync(join(set.root, 'events', `${type}.avsc`), 'utf8')) as JsonObject;
      expect(composeSchema(authored, reversed)).toEqual(set.current.get(type)?.schema);
    }
    expect(isJsonObject(set.current.get('audit.started')?.schema)).toBe(true);
  });
});

describe('the generator', () => {
  it('changes nothing on the committed tree', () => {
    const s = scratch();
    expect(regenerate({ schemaRoot: s.schemas, fixtureRoot: s.fixtures, docsPath: s.docs, typesPath: s.types }).written).toEqual([]);
  });

  it('rewrites a deleted fixture byte for byte (samples are deterministic)', () => {
    const s = scratch();
    rmSync(join(s.fixtures, 'audit.stopped'), { recursive: true });
    const { written } = regenerate({ schemaRoot: s.schemas, fixtureRoot: s.fixtures, docsPath: s.docs, typesPath: s.types });
    expect(written).toEqual([join(s.fixtures, 'audit.stopped', 'v1.bin'), join(s.fixtures, 'audit.stopped', 'v1.json')]);
    for (const file of ['v1.bin', 'v1.json']) {
      expect(readFileSync(join(s.fixtures, 'audit.stopped', file))).toEqual(readFileSync(join(DEFAULT_FIXTURE_ROOT, 'audit.stopped', file)));
    }
  });

  it('refuses to relock a released version whose schema changed', () => {
    const s = scratch();
    edit(join(s.schemas, 'events', 'audit.stopped.avsc'), (json) => {
      const payload = (json['fields'] as JsonObject[]).find((f) => f['name'] === 'payload')?.['type'] as JsonObject;
      (payload['fields'] as JsonValue[]).push({ name: 'x', type: ['null', 'string'], default: null, doc: 'x' });
    });
    expect(loadError(() => writeLocks(loadSchemaSet({ root: s.schemas, verifyLocks: false }))).fix).toMatch(/bump the version of audit.stopped/);
  });

  it('refreshes the docs of a released lock in place', () => {
    const s = scratch();
    edit(join(s.schemas, 'events', 'audit.stopped.avsc'), (json) => {
      json['doc'] = 'Reworded.';
    });
    const written = writeLocks(loadSchemaSet({ root: s.schemas, verifyLocks: false }));
    expect(written).toEqual([lockPath(s.schemas, 'audit.stopped', 1)]);
    expect((JSON.parse(readFileSync(written[0] ?? '', 'utf8')) as JsonObject)['doc']).toBe('Reworded.');
  });
});
