import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { chainEvent, newEvent } from './builder';
import { EVENT_CATALOG, EVENT_TYPES } from './catalog';
import { createEventCodec, EventCodec, HEADER_BYTES, readHeader, SchemaRegistry } from './codec';
import { isEventError, type EventErrorCode } from './errors';
import { sampleEvent, SAMPLE_PARTS } from './fixtures';
import { isJsonObject, loadedSchema, loadSchemaSet, type JsonObject, type JsonValue } from './schemas';
import { groupDigits, luhnNumber } from './testing';
import type { AttestEvent } from './types';

const set = loadSchemaSet();
const codec = createEventCodec({ schemaSet: set });

function errorCodeOf(fn: () => unknown): EventErrorCode | 'no error' {
  try {
    fn();
  } catch (err) {
    if (isEventError(err)) return err.code;
    throw err;
  }
  return 'no error';
}

function whereOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (isEventError(err)) return err.where;
    throw err;
  }
  return undefined;
}

describe('encode / decode', () => {
  it.each(EVENT_TYPES)('round-trips the %s sample', (type) => {
    const event = sampleEvent(type);
    const bytes = codec.encode(event);
    const decoded = codec.decode(bytes);
    expect(decoded.type).toBe(type);
    expect(decoded.writerVersion).toBe(EVENT_CATALOG[type].version);
    expect(decoded.fingerprint).toBe(set.current.get(type)?.fingerprintHex);
    expect(decoded.event).toEqual(event);
    expect(codec.encode(decoded.event)).toEqual(bytes);
  });

  it('writes the single-object header: C3 01 and the writer fingerprint, little-endian', () => {
    const bytes = codec.encode(sampleEvent('policy.decided'));
    expect([bytes[0], bytes[1]]).toEqual([0xc3, 0x01]);
    const { fingerprint } = readHeader(bytes);
    const canonical = set.current.get('policy.decided')?.canonical ?? '';
    // Independent check of the header against the canonical form, via the fingerprint's definition.
    expect(fingerprint.readBigUInt64LE()).toBe(crcOf(canonical));
    expect(bytes.subarray(HEADER_BYTES)).toEqual(set.current.get('policy.decided')?.avroType.toBuffer(sampleEvent('policy.decided')));
  });

  it('decodes from a Uint8Array view into a larger buffer', () => {
    const bytes = codec.encode(sampleEvent('db.query.executed'));
    const big = new Uint8Array(bytes.length + 20);
    big.set(bytes, 7);
    expect(codec.decode(big.subarray(7, 7 + bytes.length)).event).toEqual(sampleEvent('db.query.executed'));
  });

  it('decodeAs checks the type', () => {
    const bytes = codec.encode(sampleEvent('auth.failed'));
    expect(codec.decodeAs('auth.failed', bytes).payload.reasonCode).toBe('bad_signature');
    expect(errorCodeOf(() => codec.decodeAs('auth.succeeded', bytes))).toBe('event_schema_mismatch');
  });

  it('round-trips arbitrary content, sizes and optional fields', () => {
    const base = sampleEvent('gateway.response.completed');
    fc.assert(
      fc.property(
        fc.option(fc.string({ maxLength: 3_000 }), { nil: null }),
        fc.option(fc.integer({ min: 100, max: 599 }), { nil: null }),
        fc.nat({ max: 2 ** 52 }),
        fc.array(fc.record({ ruleId: fc.string({ minLength: 1, maxLength: 20 }), hits: fc.nat({ max: 2 ** 31 - 1 }) }), { maxLength: 5 }),
        (content, upstreamStatus, latencyUs, stats) => {
          const event = {
            ...base,
            payload: {
              ...base.payload,
              content,
              upstreamStatus,
              latencyUs,
              masking: { cardDataPresent: false, totalHits: 0, stats: stats.map((s) => ({ ...s, direction: 'response' as const, action: 'masked' as const })) },
            },
          } satisfies AttestEvent<'gateway.response.completed'>;
          let bytes: Buffer;
          try {
            bytes = codec.encode(event);
          } catch (err) {
            // Random text may contain a card-number-like run; refusing it is the point.
            if (isEventError(err, 'event_pan_detected')) return;
            throw err;
          }
          expect(codec.decode(bytes).event).toEqual(event);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('encodes events larger than its scratch buffer, and keeps working after shrinking it back', () => {
    const base = sampleEvent('gateway.response.completed');
    const content = 'masked text '.repeat(100_000);
    const event = { ...base, payload: { ...base.payload, content } };
    expect(codec.decodeAs('gateway.response.completed', codec.encode(event)).payload.content).toBe(content);
    // And the scratch buffer stays usable for small events afterwards.
    expect(codec.decode(codec.encode(sampleEvent('session.ended'))).event).toEqual(sampleEvent('session.ended'));
  });
});

describe('decode errors', () => {
  const bytes = codec.encode(sampleEvent('gateway.request.received'));

  it('bad magic', () => {
    expect(errorCodeOf(() => codec.decode(Buffer.from('{"json": true}')))).toBe('event_bad_magic');
    expect(errorCodeOf(() => codec.decode(Buffer.from([0xc3, 0x02, ...bytes.subarray(2)])))).toBe('event_bad_magic');
    expect(errorCodeOf(() => codec.decode(Buffer.from([0x00])))).toBe('event_bad_magic');
  });

  it('truncated, at every possible cut', () => {
    for (let cut = 0; cut < bytes.length; cut++) {
      expect([cut, errorCodeOf(() => codec.decode(bytes.subarray(0, cut)))]).toEqual([cut, 'event_truncated']);
    }
  });

  it('unknown fingerprint', () => {
    const other = Buffer.from(bytes);
    other.writeBigUInt64LE(0x0123456789abcdefn, 2);
    expect(errorCodeOf(() => codec.decode(other))).toBe('event_unknown_fingerprint');
  });

  it('schema mismatch: trailing bytes', () => {
    expect(errorCodeOf(() => codec.decode(Buffer.concat([bytes, Buffer.from([0])])))).toBe('event_schema_mismatch');
  });

  it("schema mismatch: a header naming another type's schema", () => {
    const swapped = Buffer.from(bytes);
    set.current.get('gateway.request.forwarded')?.fingerprint.copy(swapped, 2);
    expect(errorCodeOf(() => codec.decode(swapped))).toBe('event_schema_mismatch');
  });

  it('schema mismatch: a body that is not this schema', () => {
    const garbage = Buffer.concat([bytes.subarray(0, HEADER_BYTES), Buffer.alloc(400, 0xff)]);
    expect(errorCodeOf(() => codec.decode(garbage))).toBe('event_schema_mismatch');
  });

  it('never throws anything but a coded error on random bytes behind a valid header', () => {
    const header = bytes.subarray(0, HEADER_BYTES);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (body) => {
        const code = errorCodeOf(() => codec.decode(Buffer.concat([header, body])));
        expect(['event_truncated', 'event_schema_mismatch', 'no error']).toContain(code);
      }),
      { numRuns: 500 },
    );
  });
});

describe('encode refusals', () => {
  const event = sampleEvent('gateway.request.received');

  it('an unknown type', () => {
    const bad = { ...event, metadata: { ...event.metadata, type: 'gateway.request.teleported' } } as unknown as AttestEvent;
    expect(errorCodeOf(() => codec.encode(bad))).toBe('event_unknown_type');
  });

  it('a wrong code or schema version', () => {
    expect(errorCodeOf(() => codec.encode({ ...event, metadata: { ...event.metadata, code: 'AG9999' } }))).toBe('event_invalid');
    expect(errorCodeOf(() => codec.encode({ ...event, metadata: { ...event.metadata, schemaVersion: 99 } }))).toBe('event_invalid');
  });

  it('a value that does not fit the schema, naming the path', () => {
    const bad = { ...event, payload: { ...event.payload, bodyBytes: 'many' } } as unknown as AttestEvent;
    expect(errorCodeOf(() => codec.encode(bad))).toBe('event_invalid');
    expect(whereOf(() => codec.encode(bad))).toBe('payload.bodyBytes');
    const shortHash = { ...event, metadata: { ...event.metadata, prevHash: Buffer.alloc(31) } };
    expect(whereOf(() => codec.encode(shortHash))).toBe('metadata.prevHash');
  });

  it('an empty 10.2.2 field', () => {
    const bad = { ...event, outcome: { ...event.outcome, result: '' } } as unknown as AttestEvent;
    expect(whereOf(() => codec.encode(bad))).toBe('outcome.result');
  });

  it('a full card number in any string field, without echoing it', () => {
    const pan = luhnNumber('4', 16, '0');
    for (const bad of [
      { ...event, target: { ...event.target, resource: `/v1/cards/${pan}` } },
      { ...event, payload: { ...event.payload, contentType: groupDigits(pan, [4, 4, 4, 4], '-') } },
      { ...event, actor: { ...event.actor, groups: ['ok', `card ${pan}`] } },
    ]) {
      try {
        codec.encode(bad);
        expect.fail('encoded an event holding a PAN');
      } catch (err) {
        expect(isEventError(err, 'event_pan_detected')).toBe(true);
        expect(String(err)).not.toContain(pan);
      }
    }
  });
});

describe('no PAN reaches the bytes', () => {
  /** Paths of every string leaf (and map key) of a value, with a setter for each. */
  function stringLeaves(value: unknown): { path: string; set: (root: unknown, text: string) => unknown }[] {
    const leaves: { path: string; set: (root: unknown, text: string) => unknown }[] = [];
    const visit = (v: unknown, keys: (string | number)[]): void => {
      if (typeof v === 'string') {
        leaves.push({ path: keys.map((k) => (typeof k === 'number' ? `[${k}]` : `.${k}`)).join('').slice(1), set: (root, text) => setAt(root, keys, text) });
      } else if (Array.isArray(v)) v.forEach((x, i) => visit(x, [...keys, i]));
      else if (typeof v === 'object' && v !== null && !Buffer.isBuffer(v)) for (const [k, x] of Object.entries(v)) visit(x, [...keys, k]);
    };
    visit(value, []);
    return leaves;
  }
  function setAt(root: unknown, keys: readonly (string | number)[], text: string): unknown {
    if (keys.length === 0) return text;
    const [head, ...rest] = keys as [string | number, ...(string | number)[]];
    if (Array.isArray(root)) return root.map((x, i) => (i === head ? setAt(x, rest, text) : x));
    const obj = root as Record<string, unknown>;
    return { ...obj, [head]: setAt(obj[head], rest, text) };
  }

  it.each(EVENT_TYPES)('%s: a PAN in any string field is refused, naming that field', (type) => {
    const pan = `card ${luhnNumber('4', 16, '7')} ok`;
    const event = sampleEvent(type);
    const leaves = stringLeaves(event);
    expect(leaves.length).toBeGreaterThan(10);
    for (const leaf of leaves) {
      const mutated = leaf.set(event, pan) as AttestEvent;
      const code = errorCodeOf(() => codec.encode(mutated));
      const where = whereOf(() => codec.encode(mutated));
      // Catalog-bound fields (type, code) and enums refuse any other value first, at that field;
      // every free-text field must trip the PAN guard.
      const expected = leaf.path === 'metadata.type' ? 'event_unknown_type' : code === 'event_invalid' ? 'event_invalid' : 'event_pan_detected';
      expect([leaf.path, code, where]).toEqual([leaf.path, expected, leaf.path]);
    }
  });

  it('a PAN as a map key is refused too', () => {
    const event = sampleEvent('evidence.accessed');
    const pan = luhnNumber('5', 16, '3');
    const bad = { ...event, payload: { ...event.payload, parameters: { [pan]: 'x' } } };
    expect(whereOf(() => codec.encode(bad))).toBe('payload.parameters{key}');
  });
});

describe('schema resolution', () => {
  /** The current schema of `type` with an extra payload field, as a v2 would add it. */
  function withExtraPayloadField(type: (typeof EVENT_TYPES)[number], field: JsonObject): JsonObject {
    const schema = structuredClone(set.current.get(type)?.schema) as JsonObject;
    const fields = schema['fields'] as JsonValue[];
    const payload = fields.find((f) => isJsonObject(f) && f['name'] === 'payload') as JsonObject;
    ((payload['type'] as JsonObject)['fields'] as JsonValue[]).push(field);
    return schema;
  }

  it('decodes every type written with its current version into a next version that added a field with a default', () => {
    const registry = new SchemaRegistry();
    for (const type of EVENT_TYPES) {
      const current = set.current.get(type);
      if (current === undefined) throw new Error(type);
      registry.register(current);
      const next = withExtraPayloadField(type, { name: 'addedInV2', type: ['null', 'string'], default: null, doc: 'x' });
      registry.setCurrent(loadedSchema(type, current.version + 1, next, 'test'));
    }
    const v2codec = new EventCodec(registry);
    for (const type of EVENT_TYPES) {
      const decoded = v2codec.decode(codec.encode(sampleEvent(type)));
      expect(decoded.writerVersion).toBe(EVENT_CATALOG[type].version);
      expect(decoded.event).toEqual({ ...sampleEvent(type), payload: { ...sampleEvent(type).payload, addedInV2: null } });
    }
  });

  it('uses the current version\'s defaults even when an older version shares its canonical form', () => {
    // v2 adds `note` (default 'a'); v3 only changes the default to 'b', so v2 and v3 share a fingerprint.
    const v1 = set.current.get('session.ended');
    if (v1 === undefined) throw new Error('no schema');
    const v2 = loadedSchema('session.ended', 2, withExtraPayloadField('session.ended', { name: 'note', type: 'string', default: 'a', doc: 'x' }), 'v2');
    const v3 = loadedSchema('session.ended', 3, withExtraPayloadField('session.ended', { name: 'note', type: 'string', default: 'b', doc: 'x' }), 'v3');
    expect(v3.fingerprintHex).toBe(v2.fingerprintHex);

    const writerV2 = new SchemaRegistry();
    writerV2.setCurrent(v2);
    const sample = sampleEvent('session.ended');
    const v2Bytes = new EventCodec(writerV2).encode({
      ...sample,
      metadata: { ...sample.metadata, schemaVersion: 2 },
      payload: { ...sample.payload, note: 'written by v2' },
    } as AttestEvent<'session.ended'>);

    const registry = new SchemaRegistry();
    registry.register(v1);
    registry.register(v2);
    registry.setCurrent(v3);
    const reader = new EventCodec(registry);
    const fromV1 = reader.decodeAs('session.ended', codec.encode(sample));
    expect((fromV1.payload as unknown as { note: string }).note).toBe('b');
    const fromV2 = reader.decode(v2Bytes);
    expect(fromV2.writerVersion).toBe(2);
    expect((fromV2.event.payload as unknown as { note: string }).note).toBe('written by v2');
  });

  it('reports a writer that cannot be resolved as event_schema_incompatible', () => {
    const registry = new SchemaRegistry();
    const v1 = set.current.get('session.ended');
    if (v1 === undefined) throw new Error('no schema');
    registry.register(v1);
    registry.setCurrent(loadedSchema('session.ended', 2, withExtraPayloadField('session.ended', { name: 'required', type: 'long', doc: 'x' }), 'test'));
    const bytes = codec.encode(sampleEvent('session.ended'));
    expect(errorCodeOf(() => new EventCodec(registry).decode(bytes))).toBe('event_schema_incompatible');
  });

  it('refuses to register two schemas that collide on a fingerprint', () => {
    const registry = new SchemaRegistry();
    const a = set.current.get('session.ended');
    const b = set.current.get('session.started');
    if (a === undefined || b === undefined) throw new Error('no schema');
    registry.register(a);
    expect(errorCodeOf(() => registry.register({ ...b, fingerprint: a.fingerprint }))).toBe('event_schema_load');
  });
});

describe('newEvent → chainEvent → encode', () => {
  it('produces bytes whose SHA-256 chains into the next event', async () => {
    const { createHash } = await import('node:crypto');
    const deps = { producer: { id: 'gw-1' }, clock: { nowUs: () => 1_764_061_200_000_000 } };
    const first = chainEvent(newEvent('session.started', SAMPLE_PARTS['session.started'], deps), { sequence: 0, prevHash: Buffer.alloc(32) });
    const firstBytes = codec.encode(first);
    const second = chainEvent(newEvent('session.ended', SAMPLE_PARTS['session.ended'], deps), {
      sequence: 1,
      prevHash: createHash('sha256').update(firstBytes).digest(),
    });
    const decoded = codec.decodeAs('session.ended', codec.encode(second));
    expect(decoded.metadata.prevHash).toEqual(createHash('sha256').update(firstBytes).digest());
    expect(decoded.metadata.sequence).toBe(1);
  });
});

// Kept local so the header test does not reuse the code under test to compute its expectation.
function crcOf(text: string): bigint {
  const EMPTY = 0xc15d213aa4d7a795n;
  let fp = EMPTY;
  for (const byte of Buffer.from(text)) {
    fp ^= BigInt(byte);
    for (let i = 0; i < 8; i++) fp = (fp >> 1n) ^ (EMPTY & -(fp & 1n));
  }
  return fp;
}
