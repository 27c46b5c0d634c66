/**
 * Schema compatibility, by the Avro specification's resolution rules ("Schema Resolution").
 *
 * Evidence is kept for a year and consumers upgrade one at a time, so every change must be
 * compatible both ways:
 *   backward: a reader with the new schema reads data written with the old one (a year of stored
 *             events, older fixtures);
 *   forward:  a reader still on the old schema reads data written with the new one (a processor
 *             or a SIEM exporter not yet upgraded while gateways already write the new version).
 */
import type { Type as AvroType } from 'avsc';
import { EventError } from './errors';
import { compileSchema, type JsonObject } from './schemas';

export type CompatibilityDirection = 'backward' | 'forward';

export interface CompatibilityIssue {
  readonly direction: CompatibilityDirection;
  /** Where in the reader schema, e.g. 'payload.usage.inputTokens'. */
  readonly path: string;
  readonly message: string;
}

export interface CompatibilityReport {
  readonly compatible: boolean;
  /** Problems a new reader has with old data. */
  readonly backward: readonly CompatibilityIssue[];
  /** Problems an old reader has with new data. */
  readonly forward: readonly CompatibilityIssue[];
}

/** The parts of avsc's types the rules look at (avsc's typings do not expose all of them). */
interface TypeView {
  readonly typeName: string;
  readonly name?: string | undefined;
  readonly aliases?: readonly string[] | undefined;
  readonly fields?: readonly FieldView[];
  readonly symbols?: readonly string[];
  readonly default?: unknown;
  readonly size?: number;
  readonly itemsType?: TypeView;
  readonly valuesType?: TypeView;
  readonly types?: readonly TypeView[];
}

interface FieldView {
  readonly name: string;
  readonly type: TypeView;
  readonly aliases: readonly string[];
  defaultValue(): unknown;
}

const PROMOTIONS: Readonly<Record<string, readonly string[]>> = {
  // writer type → reader types that can read it
  int: ['int', 'long', 'float', 'double'],
  long: ['long', 'float', 'double'],
  float: ['float', 'double'],
  double: ['double'],
  string: ['string', 'bytes'],
  bytes: ['bytes', 'string'],
  boolean: ['boolean'],
  null: ['null'],
};

const isUnion = (t: TypeView): boolean => t.typeName.startsWith('union');

function describe(t: TypeView): string {
  return t.name ?? t.typeName;
}

function namesMatch(reader: TypeView, writer: TypeView): boolean {
  return reader.name === writer.name || (reader.aliases ?? []).includes(writer.name ?? '');
}

function join(path: string, part: string): string {
  return path === '' ? part : `${path}.${part}`;
}

/** Why `reader` cannot read data written with `writer`; empty when it can. */
function resolutionProblems(reader: TypeView, writer: TypeView): { path: string; message: string }[] {
  const problems: { path: string; message: string }[] = [];
  const seen = new Set<string>();

  const resolve = (r: TypeView, w: TypeView, path: string): void => {
    if (isUnion(w)) {
      // Any branch may have been written, so every one must be readable.
      for (const branch of w.types ?? []) resolve(r, branch, path);
      return;
    }
    if (isUnion(r)) {
      const readable = (r.types ?? []).some((branch) => resolutionProblems(branch, w).length === 0);
      if (!readable) problems.push({ path, message: `no branch of the reader's union can read the writer's ${describe(w)}` });
      return;
    }
    switch (w.typeName) {
      case 'record':
      case 'error': {
        if (r.typeName !== 'record' && r.typeName !== 'error') break;
        if (!namesMatch(r, w)) {
          problems.push({ path, message: `record ${describe(r)} cannot read record ${describe(w)} (names differ, no alias)` });
          return;
        }
        const key = `${r.name ?? ''}<-${w.name ?? ''}`;
        if (seen.has(key)) return;
        seen.add(key);
        const writerFields = new Map((w.fields ?? []).map((f) => [f.name, f]));
        for (const field of r.fields ?? []) {
          const match = [field.name, ...field.aliases].map((n) => writerFields.get(n)).find((f) => f !== undefined);
          const fieldPath = join(path, field.name);
          if (match !== undefined) resolve(field.type, match.type, fieldPath);
          else if (field.defaultValue() === undefined) {
            problems.push({ path: fieldPath, message: `field '${field.name}' is not written and has no default to fill it` });
          }
        }
        return;
      }
      case 'enum': {
        if (r.typeName !== 'enum') break;
        if (!namesMatch(r, w)) {
          problems.push({ path, message: `enum ${describe(r)} cannot read enum ${describe(w)} (names differ, no alias)` });
          return;
        }
        const known = new Set(r.symbols ?? []);
        const unknown = (w.symbols ?? []).filter((s) => !known.has(s));
        if (unknown.length > 0 && r.default === undefined) {
          problems.push({ path, message: `enum ${describe(r)} does not know symbol(s) ${unknown.join(', ')} and has no default` });
        }
        return;
      }
      case 'fixed': {
        if (r.typeName !== 'fixed') break;
        if (!namesMatch(r, w) || r.size !== w.size) {
          problems.push({ path, message: `fixed ${describe(r)}(${r.size ?? '?'}) cannot read fixed ${describe(w)}(${w.size ?? '?'})` });
        }
        return;
      }
      case 'array':
        if (r.typeName !== 'array' || r.itemsType === undefined || w.itemsType === undefined) break;
        resolve(r.itemsType, w.itemsType, `${path}[]`);
        return;
      case 'map':
        if (r.typeName !== 'map' || r.valuesType === undefined || w.valuesType === undefined) break;
        resolve(r.valuesType, w.valuesType, `${path}{}`);
        return;
      default:
        if ((PROMOTIONS[w.typeName] ?? []).includes(r.typeName)) return;
    }
    problems.push({ path, message: `cannot read the writer's ${describe(w)} as ${describe(r)}` });
  };

  resolve(reader, writer, '');
  return problems;
}

function toType(schema: JsonObject | AvroType): AvroType {
  return typeof (schema as AvroType).createResolver === 'function' ? (schema as AvroType) : compileSchema(schema as JsonObject);
}

/**
 * Whether `newSchema` may replace `oldSchema`: new readers must read old data (backward) and old
 * readers must read new data (forward).
 */
export function checkCompatibility(oldSchema: JsonObject | AvroType, newSchema: JsonObject | AvroType): CompatibilityReport {
  const oldType = toType(oldSchema) as unknown as TypeView;
  const newType = toType(newSchema) as unknown as TypeView;
  const backward = resolutionProblems(newType, oldType).map((p) => ({ direction: 'backward' as const, ...p }));
  const forward = resolutionProblems(oldType, newType).map((p) => ({ direction: 'forward' as const, ...p }));
  return { compatible: backward.length === 0 && forward.length === 0, backward, forward };
}

/** Throws event_schema_incompatible naming every problem. */
export function assertCompatible(oldSchema: JsonObject | AvroType, newSchema: JsonObject | AvroType, what = 'schema'): void {
  const report = checkCompatibility(oldSchema, newSchema);
  if (report.compatible) return;
  const lines = [...report.backward, ...report.forward].map(
    (i) => `${i.direction === 'backward' ? 'new readers, old data' : 'old readers, new data'}: ${i.path || '(root)'}: ${i.message}`,
  );
  throw new EventError('event_schema_incompatible', `${what} breaks compatibility:\n  ${lines.join('\n  ')}`, {
    fix: 'add new fields with a default, keep fields old readers need (or give them a default first), give enums a default before adding symbols',
  });
}
