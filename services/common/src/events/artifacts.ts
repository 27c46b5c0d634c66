/**
 * Regenerates everything derived from the schemas: version locks, the TypeScript types, the
 * tables in docs/events.md, and the golden fixtures of versions that have none yet.
 * Run by `node --import tsx schemas/fixtures/generate.ts`; tests check each artifact is current.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EVENT_CATALOG, EVENT_TYPES } from './catalog';
import { createEventCodec } from './codec';
import { applyDocSections, generateDocSections, generateTypesSource } from './codegen';
import { assertCompatible } from './compat';
import { EventError } from './errors';
import { DEFAULT_FIXTURE_ROOT, writeMissingFixtures } from './fixtures';
import { ENVELOPE_PCI_REQUIREMENTS, PCI_10_2_2_FIELDS, PCI_REQUIREMENTS, PCI_REQUIREMENTS_BY_TYPE } from './pci';
import { DEFAULT_SCHEMA_ROOT, formatJson, loadSchemaSet, withoutDocs, type JsonValue, type SchemaSet } from './schemas';

export const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
export const TYPES_PATH = fileURLToPath(new URL('./types.generated.ts', import.meta.url));
export const DOCS_PATH = join(REPO_ROOT, 'docs', 'events.md');

export function lockPath(root: string, type: string, version: number): string {
  return join(root, 'history', type, `v${version}.avsc`);
}

/** Lock each type's current version; a locked version may only have its docs refreshed. */
export function writeLocks(set: SchemaSet): string[] {
  const written: string[] = [];
  for (const type of EVENT_TYPES) {
    const current = set.current.get(type);
    if (current === undefined) continue;
    const path = lockPath(set.root, type, current.version);
    const text = formatJson(current.schema);
    if (existsSync(path)) {
      const existing = readFileSync(path, 'utf8');
      if (existing === text) continue;
      const locked = JSON.parse(existing) as JsonValue;
      if (JSON.stringify(withoutDocs(locked)) !== JSON.stringify(withoutDocs(current.schema))) {
        throw new EventError('event_schema_load', `${type} v${current.version} is released and its schema changed`, {
          where: path,
          fix: `bump the version of ${type} in services/common/src/events/catalog.ts`,
        });
      }
    }
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
    written.push(path);
  }
  return written;
}

export function renderDocs(set: SchemaSet, markdown: string): string {
  return applyDocSections(
    markdown,
    generateDocSections({
      set,
      catalog: EVENT_CATALOG,
      pciByType: PCI_REQUIREMENTS_BY_TYPE,
      pciTitles: PCI_REQUIREMENTS,
      envelopeRequirements: ENVELOPE_PCI_REQUIREMENTS,
      fields1022: PCI_10_2_2_FIELDS,
    }),
  );
}

/** Every older committed version must stay readable by, and able to read, the current one. */
export function assertHistoryCompatible(set: SchemaSet): void {
  for (const type of EVENT_TYPES) {
    const current = set.current.get(type);
    for (const [version, old] of set.history.get(type) ?? []) {
      if (current !== undefined && version !== current.version) {
        assertCompatible(old.avroType, current.avroType, `${type} v${current.version} (against v${version})`);
      }
    }
  }
}

export interface RegenerateReport {
  readonly written: readonly string[];
}

export function regenerate(options: { schemaRoot?: string; fixtureRoot?: string; docsPath?: string; typesPath?: string } = {}): RegenerateReport {
  const schemaRoot = options.schemaRoot ?? DEFAULT_SCHEMA_ROOT;
  const written: string[] = [];
  written.push(...writeLocks(loadSchemaSet({ root: schemaRoot, verifyLocks: false })));
  const set = loadSchemaSet({ root: schemaRoot });
  assertHistoryCompatible(set);

  const typesPath = options.typesPath ?? TYPES_PATH;
  const types = generateTypesSource(set);
  if (!existsSync(typesPath) || readFileSync(typesPath, 'utf8') !== types) {
    writeFileSync(typesPath, types);
    written.push(typesPath);
  }

  const docsPath = options.docsPath ?? DOCS_PATH;
  const docs = readFileSync(docsPath, 'utf8');
  const rendered = renderDocs(set, docs);
  if (rendered !== docs) {
    writeFileSync(docsPath, rendered);
    written.push(docsPath);
  }

  written.push(...writeMissingFixtures(createEventCodec({ schemaSet: set }), options.fixtureRoot ?? DEFAULT_FIXTURE_ROOT));
  return { written };
}
