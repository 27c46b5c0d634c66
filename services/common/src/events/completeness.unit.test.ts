import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Type as AvroType } from 'avsc';
import { describe, expect, it } from 'vitest';
import { DOCS_PATH } from './artifacts';
import { CODE_DOMAINS, CODE_PATTERN, EVENT_CATALOG, EVENT_TYPES, type EventType } from './catalog';
import { EVENT_ERROR_CODES } from './errors';
import { DEFAULT_FIXTURE_ROOT, fromFixtureJson, listFixtures } from './fixtures';
import { findPanCandidates } from './pan-guard';
import { missingRequiredFields, PCI_10_2_2_FIELDS, PCI_REQUIREMENTS, PCI_REQUIREMENTS_BY_TYPE } from './pci';
import { lintEventSchema, loadSchemaSet } from './schemas';
import { ENUM_SYMBOLS, RECORD_FIELDS } from './types.generated';

const set = loadSchemaSet();
const fixtures = listFixtures();
const docs = readFileSync(DOCS_PATH, 'utf8');

describe('every event type is complete', () => {
  it.each(EVENT_TYPES)('%s has a code, a schema, a fixture, docs and a PCI mapping', (type) => {
    const { code, version } = EVENT_CATALOG[type];
    expect(code).toMatch(CODE_PATTERN);
    expect(code[1]).toBe(CODE_DOMAINS[type.split('.')[0] ?? '']?.letter);
    expect(set.current.get(type)?.version).toBe(version);
    expect(fixtures.filter((f) => f.type === type).map((f) => f.version)).toContain(version);
    expect(docs).toContain(`### ${type}\n\nCode **${code}**, version ${version}.`);
    expect(PCI_REQUIREMENTS_BY_TYPE[type].length).toBeGreaterThan(0);
    for (const req of PCI_REQUIREMENTS_BY_TYPE[type]) expect(Object.keys(PCI_REQUIREMENTS)).toContain(req);
    expect(lintEventSchema(type, set.current.get(type)?.schema ?? {})).toEqual([]);
  });

  it('codes are unique', () => {
    const codes = EVENT_TYPES.map((t) => EVENT_CATALOG[t].code);
    expect(new Set(codes).size).toBe(codes.length);
  });

  it('every schema file belongs to a catalog type and every fixture directory too', () => {
    const files = readdirSync(join(set.root, 'events')).map((f) => f.replace(/\.avsc$/, ''));
    expect([...files].sort()).toEqual([...EVENT_TYPES].sort());
    const dirs = readdirSync(DEFAULT_FIXTURE_ROOT, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
    expect([...dirs].sort()).toEqual([...EVENT_TYPES].sort());
  });

  it('every error code is documented', () => {
    for (const code of EVENT_ERROR_CODES) expect(docs).toContain(`| \`${code}\` |`);
  });
});

describe('PCI DSS 10.2.2 fields', () => {
  it.each(fixtures.map((f) => [`${f.type} v${f.version}`, f] as const))('are all non-empty in %s', (_name, fixture) => {
    const event = fromFixtureJson(fixture.document.event);
    expect(missingRequiredFields(event)).toEqual([]);
    // The supporting fields exist in the schema even when null.
    for (const { supporting } of PCI_10_2_2_FIELDS) {
      for (const path of supporting) {
        const [record, field] = path.split('.');
        expect(event).toHaveProperty([record ?? '', field ?? '']);
      }
    }
  });

  it('each required path names a field every schema has', () => {
    for (const type of EVENT_TYPES) {
      for (const { required } of PCI_10_2_2_FIELDS) {
        for (const path of required) {
          const [record, field] = path.split('.') as [string, string];
          const recordType = (set.current.get(type)?.avroType as unknown as { fields: { name: string; type: AvroType }[] }).fields.find(
            (f) => f.name === record,
          )?.type as unknown as { fields: { name: string }[] } | undefined;
          expect(recordType?.fields.map((f) => f.name), `${type} ${path}`).toContain(field);
        }
      }
    }
  });
});

describe('TypeScript types match the schemas', () => {
  // Every named record and enum in the current schemas, as avsc parsed them.
  const records = new Map<string, string[]>();
  const enums = new Map<string, string[]>();
  const walk = (t: unknown): void => {
    const type = t as { typeName: string; name?: string; fields?: { name: string; type: unknown }[]; symbols?: string[]; itemsType?: unknown; valuesType?: unknown; types?: unknown[] };
    if (type.typeName === 'record') {
      if (type.name === undefined || records.has(type.name)) return;
      records.set(type.name, (type.fields ?? []).map((f) => f.name));
      for (const f of type.fields ?? []) walk(f.type);
    } else if (type.typeName === 'enum' && type.name !== undefined) enums.set(type.name, type.symbols ?? []);
    else if (type.typeName === 'array') walk(type.itemsType);
    else if (type.typeName === 'map') walk(type.valuesType);
    else if (type.typeName.startsWith('union')) for (const b of type.types ?? []) walk(b);
  };
  for (const type of EVENT_TYPES) walk(set.current.get(type)?.avroType);

  it('the same records, with the same fields in the same order', () => {
    expect(Object.keys(RECORD_FIELDS).sort()).toEqual([...records.keys()].sort());
    for (const [name, fields] of records) expect([name, RECORD_FIELDS[name]]).toEqual([name, fields]);
  });

  it('the same enums, with the same symbols in the same order', () => {
    expect(Object.keys(ENUM_SYMBOLS).sort()).toEqual([...enums.keys()].sort());
    for (const [name, symbols] of enums) expect([name, ENUM_SYMBOLS[name]]).toEqual([name, symbols]);
  });

  it('a named type means the same thing in every event type that uses it', () => {
    const canonical = new Map<string, string>();
    const visit = (t: unknown): void => {
      const type = t as AvroType & { fields?: { type: unknown }[]; itemsType?: unknown; valuesType?: unknown; types?: unknown[] };
      if (type.name !== undefined) {
        const form = JSON.stringify(type.schema());
        const seen = canonical.get(type.name);
        expect([type.name, seen ?? form]).toEqual([type.name, form]);
        if (seen !== undefined) return;
        canonical.set(type.name, form);
      }
      for (const f of type.fields ?? []) visit(f.type);
      if (type.itemsType !== undefined) visit(type.itemsType);
      if (type.valuesType !== undefined) visit(type.valuesType);
      for (const b of type.types ?? []) visit(b);
    };
    for (const type of EVENT_TYPES) visit(set.current.get(type)?.avroType);
    expect(canonical.size).toBeGreaterThan(EVENT_TYPES.length);
  });
});

describe('no card numbers in the contract', () => {
  it('no fixture, schema or doc holds a PAN candidate', () => {
    const texts: [string, string][] = [[DOCS_PATH, docs]];
    for (const f of fixtures) texts.push([f.jsonPath, readFileSync(f.jsonPath, 'utf8')], [f.binPath, f.bytes.toString('latin1')]);
    for (const dir of ['shared', 'events']) {
      for (const file of readdirSync(join(set.root, dir))) texts.push([file, readFileSync(join(set.root, dir, file), 'utf8')]);
    }
    for (const [path, text] of texts) expect([path, findPanCandidates(text)]).toEqual([path, []]);
  });

  it('card data in fixtures is BIN, last four and an HMAC only', () => {
    const masked = fixtures.find((f) => f.type === ('data.masked' satisfies EventType));
    const hits = (fromFixtureJson(masked?.document.event ?? null) as { payload: { hits: { bin: string | null; last4: string | null; panHmac: Buffer | null }[] } }).payload.hits;
    for (const hit of hits) {
      if (hit.bin !== null) expect(hit.bin).toMatch(/^\d{6}(\d{2})?$/);
      if (hit.last4 !== null) expect(hit.last4).toMatch(/^\d{4}$/);
      if (hit.panHmac !== null) expect(hit.panHmac.length).toBe(32);
    }
  });
});
