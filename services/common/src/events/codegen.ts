/**
 * Generates the TypeScript types of the events from the Avro schemas, so the schemas (and their
 * docs) are the single source: `types.generated.ts` is written by schemas/fixtures/generate.ts and
 * a test fails when it is stale.
 */
import { EVENT_TYPES, type EventType } from './catalog';
import { fullNameOf, isJsonObject, type JsonValue, type SchemaSet } from './schemas';

const PRIMITIVE_TS: Readonly<Record<string, string>> = {
  null: 'null',
  boolean: 'boolean',
  int: 'number',
  // Longs are JS numbers: avsc refuses (rather than rounds) values beyond 2^53, and timestamps in
  // microseconds stay below that until the year 2255.
  long: 'number',
  float: 'number',
  double: 'number',
  bytes: 'Buffer',
  string: 'string',
};

function shortName(fullName: string): string {
  return fullName.slice(fullName.lastIndexOf('.') + 1);
}

function upperSnake(pascal: string): string {
  return pascal.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

function docComment(doc: JsonValue | undefined, indent: string): string {
  if (typeof doc !== 'string' || doc === '') return '';
  const words = doc.replace(/\*\//g, '*\\/').split(/\s+/);
  const lines: string[] = [];
  let line = '';
  for (const word of words) {
    if (line !== '' && indent.length + 3 + line.length + 1 + word.length > 100) {
      lines.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  lines.push(line);
  if (lines.length === 1) return `${indent}/** ${lines[0] ?? ''} */\n`;
  return `${indent}/**\n${lines.map((l) => `${indent} * ${l}`).join('\n')}\n${indent} */\n`;
}

interface Declaration {
  readonly fullName: string;
  readonly text: string;
  readonly fieldSet?: string;
  readonly enumConst?: string;
}

export function generateTypesSource(set: SchemaSet): string {
  const declarations = new Map<string, Declaration>();

  const tsType = (node: JsonValue, ns: string | undefined): string => {
    if (typeof node === 'string') {
      const mapped = PRIMITIVE_TS[node];
      if (mapped !== undefined) return mapped;
      return shortName(node);
    }
    if (Array.isArray(node)) return node.map((branch) => tsType(branch, ns)).reverse().join(' | ');
    if (!isJsonObject(node)) throw new Error(`unexpected schema node ${JSON.stringify(node)}`);
    const kind = String(node['type']);
    switch (kind) {
      case 'record':
      case 'error':
      case 'enum':
      case 'fixed': {
        const full = fullNameOf(node, ns);
        if (!declarations.has(full)) declare(node, full);
        return shortName(full);
      }
      case 'array': {
        const items = tsType(node['items'] ?? null, ns);
        return `readonly ${items.includes('|') ? `(${items})` : items}[]`;
      }
      case 'map':
        return `Readonly<Record<string, ${tsType(node['values'] ?? null, ns)}>>`;
      default:
        return tsType(kind, ns);
    }
  };

  const declare = (node: { [key: string]: JsonValue }, full: string): void => {
    const name = shortName(full);
    const kind = String(node['type']);
    const doc = docComment(node['doc'], '');
    // Reserve the name first so recursive references terminate.
    declarations.set(full, { fullName: full, text: '' });
    if (kind === 'fixed') {
      declarations.set(full, { fullName: full, text: `${doc}export type ${name} = Buffer; // fixed(${String(node['size'])})\n` });
      return;
    }
    if (kind === 'enum') {
      const symbols = Array.isArray(node['symbols']) ? node['symbols'].map(String) : [];
      const constName = `${upperSnake(name)}_SYMBOLS`;
      const text =
        `/** Symbols of {@link ${name}}, in schema order. */\n` +
        `export const ${constName} = [${symbols.map((s) => `'${s}'`).join(', ')}] as const;\n` +
        `${doc}export type ${name} = (typeof ${constName})[number];\n`;
      declarations.set(full, { fullName: full, text, enumConst: constName });
      return;
    }
    const inner = full.slice(0, full.lastIndexOf('.'));
    const fields = Array.isArray(node['fields']) ? node['fields'].filter(isJsonObject) : [];
    const isEnvelope = fields.some((f) => f['name'] === 'payload') && fields.some((f) => f['name'] === 'metadata');
    const members = fields.map((f) => {
      const type = tsType(f['type'] ?? null, inner);
      return `${docComment(f['doc'], '  ')}  readonly ${String(f['name'])}: ${type};\n`;
    });
    const fieldSet = `{ ${fields.map((f) => `${String(f['name'])}: true`).join(', ')} }`;
    if (isEnvelope) {
      // Envelopes are spelled `AttestEvent<K>` (types.ts); only their field list is generated.
      declarations.set(full, { fullName: full, text: '', fieldSet });
      return;
    }
    declarations.set(full, { fullName: full, text: `${doc}export interface ${name} {\n${members.join('')}}\n`, fieldSet });
  };

  const envelopeOf = new Map<string, string>();
  for (const type of EVENT_TYPES) {
    const loaded = set.current.get(type);
    if (loaded === undefined) throw new Error(`no schema for ${type}`);
    tsType(loaded.schema, undefined);
    envelopeOf.set(fullNameOf(loaded.schema, undefined), type);
  }

  const out: string[] = [
    '// Generated from schemas/avro by `node --import tsx schemas/fixtures/generate.ts`. Do not edit:',
    '// change the .avsc files (and docs there), then regenerate. A test fails when this file is stale.',
    "import type { AttestEvent } from './types';",
    '',
  ];
  for (const d of declarations.values()) if (d.text !== '') out.push(d.text);

  out.push('/** Payload type of every event type. */');
  out.push('export interface PayloadMap {');
  for (const type of EVENT_TYPES) out.push(`  readonly '${type}': ${shortName(fullNameOf(set.current.get(type)?.schema ?? {}, undefined))}Payload;`);
  out.push('}', '');
  for (const type of EVENT_TYPES) {
    out.push(`export type ${shortName(fullNameOf(set.current.get(type)?.schema ?? {}, undefined))}Event = AttestEvent<'${type}'>;`);
  }
  out.push('');
  out.push('/** Exactly the keys of T: a missing or extra field fails to compile. */');
  out.push('type FieldSet<T> = { readonly [K in keyof T]-?: true };');
  out.push('');
  out.push('/** Field names of every record, in schema order, checked against the interfaces by the compiler. */');
  out.push('export const RECORD_FIELDS: Readonly<Record<string, readonly string[]>> = {');
  for (const d of declarations.values()) {
    if (d.fieldSet === undefined) continue;
    const envelopeType = envelopeOf.get(d.fullName);
    const target = envelopeType === undefined ? shortName(d.fullName) : `AttestEvent<'${envelopeType}'>`;
    out.push(`  '${d.fullName}': Object.keys(${d.fieldSet} satisfies FieldSet<${target}>),`);
  }
  out.push('};', '');
  out.push('/** Symbols of every enum, in schema order. */');
  out.push('export const ENUM_SYMBOLS: Readonly<Record<string, readonly string[]>> = {');
  for (const d of declarations.values()) if (d.enumConst !== undefined) out.push(`  '${d.fullName}': ${d.enumConst},`);
  out.push('};', '');
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// docs/events.md: the tables are generated from the catalog, the PCI table and the schemas, between
// `<!-- generated:<name>:start -->` and `<!-- generated:<name>:end -->` markers; prose is by hand.

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/** The type column of a field table, and the enum symbols to mention in the meaning column. */
function avroTypeLabel(node: JsonValue, ns: string | undefined, enums: string[], shared: ReadonlyMap<string, JsonValue> = new Map()): string {
  if (typeof node === 'string') return PRIMITIVE_TS[node] === undefined ? shortName(node) : node;
  if (Array.isArray(node)) {
    const nonNull = node.filter((b) => b !== 'null');
    return `${nonNull.map((b) => avroTypeLabel(b, ns, enums, shared)).join(' or ')}${node.includes('null') ? '?' : ''}`;
  }
  if (!isJsonObject(node)) return '?';
  const kind = String(node['type']);
  switch (kind) {
    case 'enum': {
      // Shared enums are listed once, under "Shared records".
      if (shared.has(fullNameOf(node, ns))) return shortName(fullNameOf(node, ns));
      const symbols = Array.isArray(node['symbols']) ? node['symbols'].map((x) => `\`${String(x)}\``) : [];
      const def = typeof node['default'] === 'string' ? ` (readers map unknown symbols to \`${node['default']}\`)` : '';
      enums.push(`One of ${symbols.join(', ')}${def}.`);
      return shortName(fullNameOf(node, ns));
    }
    case 'fixed':
    case 'record':
    case 'error':
      return shortName(fullNameOf(node, ns));
    case 'array':
      return `array<${avroTypeLabel(node['items'] ?? null, ns, enums, shared)}>`;
    case 'map':
      return `map<string, ${avroTypeLabel(node['values'] ?? null, ns, enums, shared)}>`;
    default:
      return typeof node['logicalType'] === 'string' ? `${kind} (${node['logicalType']})` : kind;
  }
}

/** A field table for `record`, then one for each record defined inside it that is not shared. */
function fieldTable(record: { [key: string]: JsonValue }, ns: string | undefined, shared: ReadonlyMap<string, JsonValue>): string[] {
  const rows = ['| field | type | meaning |', '|---|---|---|'];
  const nested: { [key: string]: JsonValue }[] = [];
  const collect = (n: JsonValue): void => {
    if (Array.isArray(n)) n.forEach(collect);
    else if (isJsonObject(n)) {
      if (n['type'] === 'record' && !shared.has(fullNameOf(n, ns))) nested.push(n);
      else if (n['type'] === 'array') collect(n['items'] ?? null);
      else if (n['type'] === 'map') collect(n['values'] ?? null);
    }
  };
  for (const field of Array.isArray(record['fields']) ? record['fields'].filter(isJsonObject) : []) {
    const enums: string[] = [];
    const label = avroTypeLabel(field['type'] ?? null, ns, enums, shared);
    const meaning = [String(field['doc'] ?? ''), ...enums].join(' ');
    rows.push(`| \`${String(field['name'])}\` | \`${cell(label)}\` | ${cell(meaning)} |`);
    collect(field['type'] ?? null);
  }
  for (const inner of nested) {
    rows.push('', `\`${shortName(fullNameOf(inner, ns))}\`: ${cell(String(inner['doc'] ?? ''))}`, '', ...fieldTable(inner, ns, shared));
  }
  return rows;
}

export interface DocInputs {
  readonly set: SchemaSet;
  readonly catalog: Readonly<Record<EventType, { readonly code: string; readonly version: number }>>;
  readonly pciByType: Readonly<Record<EventType, readonly string[]>>;
  readonly pciTitles: Readonly<Record<string, string>>;
  readonly envelopeRequirements: readonly string[];
  readonly fields1022: readonly { readonly item: string; readonly required: readonly string[]; readonly supporting: readonly string[] }[];
}

export function generateDocSections(inputs: DocInputs): Record<string, string> {
  const { set, catalog, pciByType, pciTitles } = inputs;
  const schemaOf = (type: EventType): { [key: string]: JsonValue } => {
    const loaded = set.current.get(type);
    if (loaded === undefined) throw new Error(`no schema for ${type}`);
    return loaded.schema;
  };

  const catalogRows = ['| type | code | version | PCI DSS | what it records |', '|---|---|---|---|---|'];
  for (const type of [...EVENT_TYPES].sort((a, b) => catalog[a].code.localeCompare(catalog[b].code))) {
    const { code, version } = catalog[type];
    catalogRows.push(
      `| [\`${type}\`](#${type.replace(/\./g, '')}) | ${code} | ${version} | ${pciByType[type].join(', ')} | ${cell(String(schemaOf(type)['doc'] ?? ''))} |`,
    );
  }

  const mappingRows = ['| PCI DSS 10.2.2 asks for | required (non-empty in every event) | supporting |', '|---|---|---|'];
  for (const f of inputs.fields1022) {
    mappingRows.push(`| ${f.item} | ${f.required.map((p) => `\`${p}\``).join(', ')} | ${f.supporting.map((p) => `\`${p}\``).join(', ')} |`);
  }

  const byRequirement = new Map<string, string[]>();
  for (const type of EVENT_TYPES) for (const req of pciByType[type]) byRequirement.set(req, [...(byRequirement.get(req) ?? []), type]);
  const reqRows = ['| requirement | in short | event types |', '|---|---|---|'];
  for (const [req, title] of Object.entries(pciTitles)) {
    const tagged = (byRequirement.get(req) ?? []).map((t) => `\`${t}\``).join(', ');
    const envelope = inputs.envelopeRequirements.includes(req) ? 'every event (envelope)' : '';
    reqRows.push(`| ${req} | ${cell(title)} | ${[envelope, tagged].filter((x) => x !== '').join('; tagged: ') || '—'} |`);
  }

  const shared: string[] = [];
  const first = schemaOf(EVENT_TYPES[0]);
  for (const field of Array.isArray(first['fields']) ? first['fields'].filter(isJsonObject) : []) {
    const t = field['type'] ?? null;
    if (!isJsonObject(t) || field['name'] === 'payload') continue;
    shared.push(`### ${shortName(fullNameOf(t, undefined))} (\`${String(field['name'])}\`)`, '', cell(String(t['doc'] ?? '')), '', ...fieldTable(t, undefined, new Map()), '');
  }
  shared.push('### Shared types used in payloads', '');
  for (const [full, node] of set.shared) {
    if (['Metadata', 'Actor', 'Source', 'Target', 'Outcome', 'Correlation'].includes(shortName(full))) continue;
    const kind = String(node['type']);
    if (kind === 'record') {
      shared.push(`#### ${shortName(full)}`, '', cell(String(node['doc'] ?? '')), '', ...fieldTable(node, undefined, set.shared), '');
    } else {
      const enums: string[] = [];
      avroTypeLabel(node, undefined, enums);
      const shape = kind === 'fixed' ? `fixed, ${String(node['size'])} bytes.` : enums.join(' ');
      shared.push(`- \`${shortName(full)}\` (${kind}): ${cell(String(node['doc'] ?? ''))} ${shape}`, '');
    }
  }
  shared.push('');

  const payloads: string[] = [];
  for (const type of EVENT_TYPES) {
    const schema = schemaOf(type);
    const { code, version } = catalog[type];
    payloads.push(`### ${type}`, '', `Code **${code}**, version ${version}. PCI DSS: ${pciByType[type].join(', ')}.`, '');
    payloads.push(cell(String(schema['doc'] ?? '')), '');
    const fields = Array.isArray(schema['fields']) ? schema['fields'].filter(isJsonObject) : [];
    for (const field of fields) {
      if (field['name'] === 'payload' || field['name'] === 'metadata') continue;
      payloads.push(`- \`${String(field['name'])}\`: ${cell(String(field['doc'] ?? ''))}`);
    }
    const payload = fields.find((f) => f['name'] === 'payload')?.['type'];
    if (isJsonObject(payload)) payloads.push('', ...fieldTable(payload, undefined, set.shared));
    payloads.push('');
  }

  return {
    catalog: catalogRows.join('\n'),
    'pci-10-2-2': mappingRows.join('\n'),
    'pci-requirements': reqRows.join('\n'),
    'shared-records': shared.join('\n').trimEnd(),
    'event-types': payloads.join('\n').trimEnd(),
  };
}

/** Replace every generated section of `markdown`; throws when a marker pair is missing. */
export function applyDocSections(markdown: string, sections: Record<string, string>): string {
  let out = markdown;
  for (const [name, body] of Object.entries(sections)) {
    const start = `<!-- generated:${name}:start -->`;
    const end = `<!-- generated:${name}:end -->`;
    const i = out.indexOf(start);
    const j = out.indexOf(end);
    if (i < 0 || j < i) throw new Error(`docs are missing the markers ${start} … ${end}`);
    out = `${out.slice(0, i + start.length)}\n${body}\n${out.slice(j)}`;
  }
  return out;
}
