import avro from 'avsc';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EVENT_TYPES } from './catalog';
import { assertCompatible, checkCompatibility } from './compat';
import { isEventError } from './errors';
import { isJsonObject, loadSchemaSet, type JsonObject, type JsonValue } from './schemas';

const set = loadSchemaSet();

/** A deep copy of a current event schema, for editing as a developer would. */
function current(type: (typeof EVENT_TYPES)[number]): JsonObject {
  return structuredClone(set.current.get(type)?.schema) as JsonObject;
}

function recordNamed(schema: JsonValue, name: string): JsonObject {
  let found: JsonObject | undefined;
  const visit = (n: JsonValue): void => {
    if (Array.isArray(n)) n.forEach(visit);
    else if (isJsonObject(n)) {
      if (n['name'] === name && (n['type'] === 'record' || n['type'] === 'enum')) found = n;
      for (const v of Object.values(n)) visit(v);
    }
  };
  visit(schema);
  if (found === undefined) throw new Error(`no ${name}`);
  return found;
}

function fieldsOf(record: JsonObject): JsonObject[] {
  return record['fields'] as JsonObject[];
}

describe('checkCompatibility on the real schemas', () => {
  it.each(EVENT_TYPES)('%s is compatible with itself', (type) => {
    expect(checkCompatibility(current(type), current(type))).toEqual({ compatible: true, backward: [], forward: [] });
  });

  it('accepts a payload field added with a default', () => {
    const next = current('gateway.response.completed');
    fieldsOf(recordNamed(next, 'GatewayResponseCompletedPayload')).push({ name: 'cacheHit', type: 'boolean', default: false, doc: 'x' });
    expect(checkCompatibility(current('gateway.response.completed'), next).compatible).toBe(true);
  });

  it('detects a field added without a default: new readers cannot read a year of old events', () => {
    const next = current('gateway.response.completed');
    fieldsOf(recordNamed(next, 'GatewayResponseCompletedPayload')).push({ name: 'region', type: 'string', doc: 'x' });
    const report = checkCompatibility(current('gateway.response.completed'), next);
    expect(report.compatible).toBe(false);
    expect(report.backward).toEqual([
      { direction: 'backward', path: 'payload.region', message: "field 'region' is not written and has no default to fill it" },
    ]);
    expect(report.forward).toEqual([]);
  });

  it('detects a removed field that old readers need', () => {
    const next = current('policy.decided');
    const payload = recordNamed(next, 'PolicyDecidedPayload');
    payload['fields'] = fieldsOf(payload).filter((f) => f['name'] !== 'policyVersion');
    const report = checkCompatibility(current('policy.decided'), next);
    expect(report.compatible).toBe(false);
    expect(report.backward).toEqual([]);
    expect(report.forward.map((i) => i.path)).toEqual(['payload.policyVersion']);
  });

  it('detects a removed 10.2.2 field in a shared record', () => {
    const next = current('auth.failed');
    const actor = recordNamed(next, 'Actor');
    actor['fields'] = fieldsOf(actor).filter((f) => f['name'] !== 'subject');
    expect(checkCompatibility(current('auth.failed'), next).forward.map((i) => i.path)).toEqual(['actor.subject']);
  });

  it('accepts removing an optional field (old readers fill null)', () => {
    const next = current('session.started');
    const payload = recordNamed(next, 'SessionStartedPayload');
    payload['fields'] = fieldsOf(payload).filter((f) => f['name'] !== 'tlsVersion');
    expect(checkCompatibility(current('session.started'), next).compatible).toBe(true);
  });

  it('accepts a new symbol in an enum with a default, and refuses one in an enum without', () => {
    const withDefault = current('policy.decided');
    (recordNamed(withDefault, 'PolicyDecision')['symbols'] as string[]).push('escalate');
    expect(checkCompatibility(current('policy.decided'), withDefault).compatible).toBe(true);

    const withoutDefault = current('gateway.request.blocked');
    (recordNamed(withoutDefault, 'Direction')['symbols'] as string[]).push('internal');
    const report = checkCompatibility(current('gateway.request.blocked'), withoutDefault);
    expect(report.backward).toEqual([]);
    expect(report.forward.map((i) => i.path)).toEqual(['payload.direction']);
  });

  it('detects a changed field type, and accepts an Avro promotion one way only', () => {
    const narrowed = current('approval.requested');
    const quorum = fieldsOf(recordNamed(narrowed, 'ApprovalRequestedPayload')).find((f) => f['name'] === 'quorum');
    if (quorum === undefined) throw new Error('no quorum');
    quorum['type'] = 'string';
    expect(checkCompatibility(current('approval.requested'), narrowed).compatible).toBe(false);

    quorum['type'] = 'long';
    const promoted = checkCompatibility(current('approval.requested'), narrowed);
    // New readers read old ints as longs; old readers cannot read longs as ints.
    expect(promoted.backward).toEqual([]);
    expect(promoted.forward.map((i) => i.path)).toEqual(['payload.quorum']);
  });

  it('detects a renamed field, and accepts it with an alias on the reader side only when old readers keep a default', () => {
    const renamed = current('finding.closed');
    const reason = fieldsOf(recordNamed(renamed, 'FindingClosedPayload')).find((f) => f['name'] === 'reason');
    if (reason === undefined) throw new Error('no reason');
    reason['name'] = 'closingReason';
    expect(checkCompatibility(current('finding.closed'), renamed).compatible).toBe(false);
    reason['aliases'] = ['reason'];
    const report = checkCompatibility(current('finding.closed'), renamed);
    expect(report.backward).toEqual([]);
    expect(report.forward.map((i) => i.path)).toEqual(['payload.reason']);
  });

  it('detects a renamed record', () => {
    const next = current('session.ended');
    next['name'] = 'SessionClosed';
    expect(checkCompatibility(current('session.ended'), next).compatible).toBe(false);
  });

  it('assertCompatible throws event_schema_incompatible naming each path', () => {
    const next = current('key.rotated');
    fieldsOf(recordNamed(next, 'KeyRotatedPayload')).push({ name: 'hsm', type: 'string', doc: 'x' });
    try {
      assertCompatible(current('key.rotated'), next, 'key.rotated v2');
      expect.fail('accepted a breaking change');
    } catch (err) {
      expect(isEventError(err, 'event_schema_incompatible')).toBe(true);
      expect(String(err)).toContain('payload.hsm');
    }
  });
});

describe('checkCompatibility agrees with avsc schema resolution', () => {
  // Small record schemas built from random field edits; the oracle is whether avsc can build a
  // resolver in each direction.
  const fieldType = fc.constantFrom<JsonValue>(
    'int',
    'long',
    'float',
    'double',
    'string',
    'bytes',
    'boolean',
    ['null', 'string'],
    ['null', 'long'],
    { type: 'array', items: 'int' },
    { type: 'array', items: 'long' },
    { type: 'map', values: 'string' },
    { type: 'enum', name: 'E', symbols: ['A', 'B'] },
    { type: 'enum', name: 'E', symbols: ['A', 'B', 'C'] },
    { type: 'enum', name: 'E', symbols: ['A', 'B'], default: 'A' },
    { type: 'fixed', name: 'F', size: 4 },
    { type: 'fixed', name: 'F', size: 8 },
  );
  const field = fc.record({
    name: fc.constantFrom('a', 'b', 'c', 'd'),
    type: fieldType,
    withDefault: fc.boolean(),
  });
  const defaultFor = (t: JsonValue): JsonValue => {
    if (Array.isArray(t)) return null;
    if (isJsonObject(t)) {
      if (t['type'] === 'array') return [];
      if (t['type'] === 'map') return {};
      if (t['type'] === 'enum') return 'A';
      if (t['type'] === 'fixed') return '\u0000'.repeat(Number(t['size']));
    }
    if (t === 'string' || t === 'bytes') return '';
    if (t === 'boolean') return false;
    return 0;
  };
  const record = fc.uniqueArray(field, { selector: (f) => f.name, maxLength: 4 }).map(
    (fields): JsonObject => ({
      type: 'record',
      name: 'R',
      fields: fields.map((f) => {
        // Named types are per field, so one record never defines a name twice.
        const base: JsonValue = f.type;
        const type = isJsonObject(base) && typeof base['name'] === 'string' ? { ...base, name: `${base['name']}_${f.name}` } : base;
        return { name: f.name, type, ...(f.withDefault ? { default: defaultFor(type) } : {}) };
      }),
    }),
  );
  const avscResolves = (reader: JsonObject, writer: JsonObject): boolean => {
    try {
      avro.Type.forSchema(reader as never).createResolver(avro.Type.forSchema(writer as never));
      return true;
    } catch {
      return false;
    }
  };

  it('on random schema pairs, in both directions', () => {
    fc.assert(
      fc.property(record, record, (oldSchema, newSchema) => {
        const report = checkCompatibility(oldSchema, newSchema);
        expect(report.backward.length === 0).toBe(avscResolves(newSchema, oldSchema));
        expect(report.forward.length === 0).toBe(avscResolves(oldSchema, newSchema));
      }),
      { numRuns: 1_000 },
    );
  });
});
