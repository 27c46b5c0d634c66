/**
 * EventCodec.decodeMetadata and decodeChainMetadata: the metadata alone (or its chain fields), read
 * from the bytes without decoding the rest, must be what `decode` gives (type, writer version,
 * fingerprint, metadata, and the text presence of a named payload field) and must fail exactly when
 * `decode` fails, with the same error.
 *
 * "Fast" below means the generated reader answered without calling `decode` (a spy counts the
 * calls): equality alone would also hold if every call fell back to the full decode.
 */
import type { Type as AvroType } from 'avsc';
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { generateEventList } from '../store/testing';
import { EVENT_TYPES, type EventType } from './catalog';
import { createEventCodec, EventCodec, HEADER_BYTES, SchemaRegistry, type DecodedChainMetadata, type DecodedMetadata } from './codec';
import { isEventError } from './errors';
import { listFixtures, sampleEvent } from './fixtures';
import { isJsonObject, loadedSchema, loadSchemaSet, type JsonObject, type JsonValue, type LoadedSchema } from './schemas';
import type { AnyAttestEvent } from './types';

const set = loadSchemaSet();
const codec = createEventCodec({ schemaSet: set });

/** The content fields of the DLP stage (dlp/content-fields.ts), as splitForVerification passes them. */
const CONTENT_TEXT: ReadonlyMap<string, string> = new Map([
  ['gateway.request.received', 'content'],
  ['gateway.response.completed', 'content'],
  ['db.query.executed', 'statement'],
]);

type Failure = { error: { name: string; code: string; message: string; where: string | undefined } };
type Outcome = { ok: { metadata: DecodedMetadata; chain: DecodedChainMetadata } } | Failure;

function attempt<T>(fn: () => T): { ok: T } | Failure {
  try {
    return { ok: fn() };
  } catch (err) {
    if (!isEventError(err)) throw err;
    return { error: { name: err.name, code: err.code, message: err.message, where: err.where } };
  }
}

/** What decodeMetadata and decodeChainMetadata must give: decode's answer, reduced to the metadata. */
function expected(c: EventCodec, bytes: Uint8Array, textFields?: ReadonlyMap<string, string>): Outcome {
  return attempt(() => {
    const d = c.decode(bytes);
    const field = textFields?.get(d.type);
    const text = field === undefined ? undefined : (d.event.payload as unknown as Record<string, unknown>)[field];
    const hasText = typeof text === 'string' && text.length > 0;
    const m = d.event.metadata;
    return {
      metadata: { type: d.type, writerVersion: d.writerVersion, fingerprint: d.fingerprint, metadata: m, hasText },
      chain: { type: d.type, writerVersion: d.writerVersion, eventId: m.eventId, producer: m.producer, producerEpoch: m.producerEpoch, sequence: m.sequence, prevHash: m.prevHash, timeUs: m.timeUs, hasText },
    };
  });
}

/** One spy per codec, counting its calls to decode (passed through to the real one). */
const decodeSpies = new WeakMap<EventCodec, { calls: number }>();
function countDecodes(c: EventCodec): { calls: number } {
  let counter = decodeSpies.get(c);
  if (counter === undefined) {
    const spy = vi.spyOn(c, 'decode');
    const count = {
      get calls(): number {
        return spy.mock.calls.length;
      },
    };
    decodeSpies.set(c, count);
    counter = count;
  }
  return counter;
}

/** What both read (they must agree on failing too), and whether they answered without calling decode. */
function actual(c: EventCodec, bytes: Uint8Array, textFields?: ReadonlyMap<string, string>): { outcome: Outcome; fast: boolean } {
  const counter = countDecodes(c);
  const before = counter.calls;
  const metadata = attempt(() => c.decodeMetadata(bytes, textFields));
  const chain = attempt(() => c.decodeChainMetadata(bytes, textFields));
  const fast = counter.calls === before;
  if ('error' in metadata || 'error' in chain) {
    expect(chain).toEqual(metadata);
    return { outcome: metadata as Failure, fast };
  }
  return { outcome: { ok: { metadata: metadata.ok, chain: chain.ok } }, fast };
}

/** A value of `avroType` from avsc's random generator, made a valid event of `type` version `version`. */
function randomEvent(avroType: AvroType, type: EventType, version: number, seedText: string): Record<string, unknown> {
  const value = avroType.random() as unknown as { metadata: Record<string, unknown> };
  value.metadata.type = type;
  value.metadata.schemaVersion = version;
  // Exercise the string memo: a few repeating producers and tenants, as in a real log.
  value.metadata.producer = `gateway-${seedText.length % 3}`;
  value.metadata.tenantId = seedText.length % 2 === 0 ? 'acme' : 'globex';
  return value as unknown as Record<string, unknown>;
}

function encodeWith(schema: LoadedSchema, value: unknown): Buffer {
  return Buffer.concat([Buffer.from([0xc3, 0x01]), schema.fingerprint, schema.avroType.toBuffer(value)]);
}

/** Every string or ["null", string] field of the current payload of `type`. */
function textFieldsOf(type: EventType): string[] {
  const payload = (set.current.get(type)?.avroType as unknown as { fields: { name: string; type: { typeName: string; types?: { typeName: string }[] } }[] }).fields.find((f) => f.name === 'payload');
  const fields = (payload?.type as unknown as { fields: { name: string; type: { typeName: string; types?: { typeName: string }[] } }[] }).fields;
  return fields
    .filter((f) => f.type.typeName === 'string' || (f.type.typeName === 'union:unwrapped' && (f.type.types ?? []).map((b) => b.typeName).join() === 'null,string'))
    .map((f) => f.name);
}

describe('decodeMetadata equals the full decode', () => {
  it('every event schema, in every committed version, starts with the shared Metadata record, laid out alike', () => {
    const layouts = new Set<string>();
    for (const [type, versions] of set.history) {
      for (const [version, schema] of versions) {
        const first = (schema.avroType as unknown as { fields: { name: string; type: AvroType }[] }).fields[0];
        expect(first?.name, `${type} v${version}`).toBe('metadata');
        layouts.add(JSON.stringify(first?.type.schema()));
      }
    }
    expect(layouts.size).toBe(1);
  });

  const fixtures = listFixtures();
  it.each(fixtures.map((f) => [`${f.type} v${f.version}`, f] as const))('golden fixture %s: same metadata, read fast', (_name, fixture) => {
    for (const textFields of [undefined, CONTENT_TEXT]) {
      const got = actual(codec, fixture.bytes, textFields);
      expect(got.outcome).toEqual(expected(codec, fixture.bytes, textFields));
      expect(got.fast).toBe(true);
    }
  });

  it('the text presence of every string field of every type, in the fixtures of every version', () => {
    for (const fixture of fixtures) {
      for (const field of textFieldsOf(fixture.type)) {
        const textFields = new Map([[fixture.type as string, field]]);
        const got = actual(codec, fixture.bytes, textFields);
        expect(got.outcome, `${fixture.type} v${fixture.version} ${field}`).toEqual(expected(codec, fixture.bytes, textFields));
        expect(got.fast).toBe(true);
      }
    }
  });

  it('a generated mix of realistic events (every type the generator makes, 10,000 events)', () => {
    const events = generateEventList({ count: 10_000, seed: 99, cardRate: 0.3 });
    const types = new Set<string>();
    let text = 0;
    for (const g of events) {
      const got = actual(codec, g.bytes, CONTENT_TEXT);
      const want = expected(codec, g.bytes, CONTENT_TEXT);
      expect(got.outcome).toEqual(want);
      expect(got.fast).toBe(true);
      types.add(g.event.metadata.type);
      if ('ok' in got.outcome && got.outcome.ok.chain.hasText) text += 1;
    }
    expect(types.size).toBeGreaterThanOrEqual(15);
    expect(text).toBeGreaterThan(1000);
  });

  it('random events of every type, written with every committed version (avsc random values)', () => {
    let n = 0;
    for (const type of EVENT_TYPES) {
      for (const [version, schema] of set.history.get(type) ?? new Map<number, LoadedSchema>()) {
        const textFields = new Map(textFieldsOf(type).slice(0, 1).map((f) => [type as string, f]));
        for (let i = 0; i < 60; i++) {
          const bytes = encodeWith(schema, randomEvent(schema.avroType, type, version, 'x'.repeat(i)));
          const got = actual(codec, bytes, textFields);
          const want = expected(codec, bytes, textFields);
          expect(got.outcome, `${type} v${version} #${i}`).toEqual(want);
          if ('ok' in want) expect(got.fast, `${type} v${version} #${i}`).toBe(true);
          n += 1;
        }
      }
    }
    expect(n).toBeGreaterThan(1500);
  });

  it('text presence: a non-empty string, an empty one, null', () => {
    const base = sampleEvent('gateway.response.completed');
    for (const content of ['hello', 'é', '', null]) {
      const bytes = codec.encode({ ...base, payload: { ...base.payload, content } } as AnyAttestEvent);
      const got = actual(codec, bytes, CONTENT_TEXT);
      expect(got.outcome).toEqual(expected(codec, bytes, CONTENT_TEXT));
      expect('ok' in got.outcome && got.outcome.ok.chain.hasText).toBe(typeof content === 'string' && content.length > 0);
      expect(got.fast).toBe(true);
    }
  });

  it('arbitrary metadata strings (unicode, long, repeated) come out as decode gives them', () => {
    const base = sampleEvent('policy.decided');
    const fresh = createEventCodec({ schemaSet: set });
    fc.assert(
      fc.property(fc.string({ maxLength: 80, unit: 'grapheme' }), fc.constantFrom('a', 'b', 'gateway-1', 'ü-🙂'), fc.array(fc.constantFrom('10.2.1', '10.2.2', 'x'), { maxLength: 6 }), (producer, tenantId, pci) => {
        const event = { ...base, metadata: { ...base.metadata, producer: producer || 'p', tenantId, pciRequirements: pci } } as AnyAttestEvent;
        let bytes: Buffer;
        try {
          bytes = fresh.encode(event);
        } catch (err) {
          if (isEventError(err, 'event_pan_detected') || isEventError(err, 'event_invalid')) return;
          throw err;
        }
        const got = actual(fresh, bytes);
        expect(got.outcome).toEqual(expected(fresh, bytes));
        expect(got.fast).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('reads from a Uint8Array, and from a view into a larger buffer', () => {
    const bytes = codec.encode(sampleEvent('db.query.executed'));
    const big = new Uint8Array(bytes.length + 20);
    big.set(bytes, 7);
    for (const input of [new Uint8Array(bytes), big.subarray(7, 7 + bytes.length)]) {
      const got = actual(codec, input, CONTENT_TEXT);
      expect(got.outcome).toEqual(expected(codec, bytes, CONTENT_TEXT));
      expect(got.fast).toBe(true);
    }
  });
});

describe('decodeMetadata under schema evolution', () => {
  /** `schema` with `edit` applied to the record field `name` (a deep copy). */
  function editField(schema: JsonObject, name: string, edit: (record: JsonObject) => void): JsonObject {
    const copy = structuredClone(schema);
    const field = (copy['fields'] as JsonValue[]).find((f) => isJsonObject(f) && f['name'] === name) as JsonObject;
    edit(field['type'] as JsonObject);
    return copy;
  }

  it('an older writer whose metadata layout differs from the current one: resolved as decode resolves it', () => {
    // v2 of session.ended adds a metadata field with a default: v1 events have the old layout.
    const v1 = set.current.get('session.ended')!;
    const v2 = loadedSchema(
      'session.ended',
      2,
      editField(v1.schema, 'metadata', (m) => (m['fields'] as JsonValue[]).push({ name: 'region', type: ['null', 'string'], default: null, doc: 'x' })),
      'v2',
    );
    const registry = new SchemaRegistry();
    registry.register(v1);
    registry.setCurrent(v2);
    const reader = new EventCodec(registry);
    const bytes = codec.encode(sampleEvent('session.ended'));
    const got = actual(reader, bytes);
    expect(got.outcome).toEqual(expected(reader, bytes));
    expect('ok' in got.outcome && (got.outcome.ok.metadata.metadata as unknown as { region: unknown }).region).toBeNull();
    expect(got.fast).toBe(true);
  });

  it('a payload text field added later: old events hold the reader default, new ones their value', () => {
    const current = set.current.get('gateway.response.completed')!;
    // v1: the payload without its content field; v2: content as a string defaulting to 'x'.
    const v1 = loadedSchema('gateway.response.completed', 1, editField(current.schema, 'payload', (p) => {
      p['fields'] = (p['fields'] as JsonObject[]).filter((f) => f['name'] !== 'content');
    }), 'v1');
    const v2 = loadedSchema('gateway.response.completed', 2, editField(current.schema, 'payload', (p) => {
      const content = (p['fields'] as JsonObject[]).find((f) => f['name'] === 'content')!;
      content['type'] = 'string';
      content['default'] = 'x';
    }), 'v2');
    const base = sampleEvent('gateway.response.completed');
    const { content: _dropped, ...withoutContent } = base.payload;
    const v1Bytes = encodeWith(v1, { ...base, payload: withoutContent });
    const v2Bytes = encodeWith(v2, { ...base, metadata: { ...base.metadata, schemaVersion: 2 }, payload: { ...base.payload, content: '' } });
    const registry = new SchemaRegistry();
    registry.register(v1);
    registry.setCurrent(v2);
    const reader = new EventCodec(registry);
    for (const [bytes, hasText] of [[v1Bytes, true], [v2Bytes, false]] as const) {
      const got = actual(reader, bytes, CONTENT_TEXT);
      expect(got.outcome).toEqual(expected(reader, bytes, CONTENT_TEXT));
      expect('ok' in got.outcome && got.outcome.ok.chain.hasText).toBe(hasText);
      expect(got.fast).toBe(true);
    }
  });

  it('a writer whose metadata is not the first field is read through decode, with the same result', () => {
    const v1 = set.current.get('session.ended')!;
    const moved = structuredClone(v1.schema);
    const fields = moved['fields'] as JsonValue[];
    fields.push(fields.shift()!); // metadata last
    const writerSchema = loadedSchema('session.ended', 1, moved, 'moved');
    const registry = new SchemaRegistry();
    registry.register(writerSchema);
    registry.setCurrent(v1);
    const reader = new EventCodec(registry);
    const bytes = encodeWith(writerSchema, sampleEvent('session.ended'));
    const got = actual(reader, bytes);
    expect(got.outcome).toEqual(expected(reader, bytes));
    expect('ok' in got.outcome).toBe(true);
    expect(got.fast).toBe(false);
  });

  it('a writer that does not resolve into the current schema fails as decode fails (event_schema_incompatible)', () => {
    const v1 = set.current.get('session.ended')!;
    const registry = new SchemaRegistry();
    registry.register(v1);
    registry.setCurrent(loadedSchema('session.ended', 2, editField(v1.schema, 'payload', (p) => (p['fields'] as JsonValue[]).push({ name: 'required', type: 'long', doc: 'x' })), 'v2'));
    const reader = new EventCodec(registry);
    const bytes = codec.encode(sampleEvent('session.ended'));
    const got = actual(reader, bytes);
    expect(got.outcome).toEqual(expected(reader, bytes));
    expect('error' in got.outcome && got.outcome.error.code).toBe('event_schema_incompatible');
  });

  it('follows a change of the current schema after its readers were built', () => {
    const v1 = set.current.get('session.ended')!;
    const registry = new SchemaRegistry();
    registry.setCurrent(v1);
    const reader = new EventCodec(registry);
    const bytes = codec.encode(sampleEvent('session.ended'));
    expect(actual(reader, bytes).outcome).toEqual(expected(reader, bytes));
    registry.setCurrent(loadedSchema('session.ended', 2, editField(v1.schema, 'metadata', (m) => (m['fields'] as JsonValue[]).push({ name: 'region', type: 'string', default: 'eu', doc: 'x' })), 'v2'));
    const got = actual(reader, bytes);
    expect(got.outcome).toEqual(expected(reader, bytes));
    expect('ok' in got.outcome && (got.outcome.ok.metadata.metadata as unknown as { region: unknown }).region).toBe('eu');
  });
});

describe('decodeMetadata fails exactly as decode fails', () => {
  const samples = (['gateway.request.received', 'gateway.response.completed', 'policy.decided', 'data.masked', 'integrity.checkpoint'] as const).map((t) => codec.encode(sampleEvent(t)));

  const same = (bytes: Uint8Array, label: string): Outcome => {
    const want = expected(codec, bytes, CONTENT_TEXT);
    const got = actual(codec, bytes, CONTENT_TEXT);
    expect(got.outcome, label).toEqual(want);
    return want;
  };

  it('truncated, at every possible cut', () => {
    for (const bytes of samples) {
      for (let cut = 0; cut < bytes.length; cut++) {
        const o = same(bytes.subarray(0, cut), `cut ${cut}`);
        expect('error' in o && o.error.code).toBe('event_truncated');
      }
    }
  });

  it('any one byte changed, at every position, to several values', () => {
    const codes = new Map<string, number>();
    for (const bytes of samples) {
      for (let i = 0; i < bytes.length; i++) {
        for (const v of [0x00, 0x01, 0x02, 0x7f, 0x80, 0xff, bytes[i]! ^ 0x01, bytes[i]! ^ 0x40]) {
          const copy = Buffer.from(bytes);
          copy[i] = v;
          const o = same(copy, `byte ${i} = ${v}`);
          const key = 'error' in o ? o.error.code : 'decodes';
          codes.set(key, (codes.get(key) ?? 0) + 1);
        }
      }
    }
    // The corruptions cover every outcome: still an event, and each kind of refusal.
    expect([...codes.keys()].sort()).toEqual(['decodes', 'event_bad_magic', 'event_schema_mismatch', 'event_truncated', 'event_unknown_fingerprint']);
  });

  it('random bytes behind every valid header', () => {
    const headers = [...set.current.values()].map((s) => Buffer.concat([Buffer.from([0xc3, 0x01]), s.fingerprint]));
    fc.assert(
      fc.property(fc.constantFrom(...headers), fc.uint8Array({ maxLength: 400 }), (header, body) => {
        same(Buffer.concat([header, body]), 'random body');
      }),
      { numRuns: 2000 },
    );
  });

  // No random splices: a splice can turn any bytes into an array count of up to 2^53, which decode
  // (avsc) then loops over (and allocates for) item by item; decodeMetadata leaves such a body to
  // decode, so both would run for as long. Shown here with a count decode still gets through.
  it('an array count larger than the rest of the body: left to decode, same outcome', () => {
    const event = sampleEvent('policy.decided');
    const bytes = codec.encode(event);
    const pci = event.metadata.pciRequirements;
    const first = Buffer.concat([zigzag(pci.length), zigzag(Buffer.byteLength(pci[0]!))]);
    const at = bytes.indexOf(first);
    expect(at).toBeGreaterThan(HEADER_BYTES);
    for (const count of [pci.length + 1, 1000, 100_000]) {
      const o = same(Buffer.concat([bytes.subarray(0, at), zigzag(count), bytes.subarray(at + 1)]), `count ${count}`);
      expect('error' in o).toBe(true);
    }
  });

  it('bad magic, unknown fingerprint, trailing bytes, another type in the header', () => {
    const bytes = samples[0]!;
    same(Buffer.from('{"json": true}'), 'json');
    same(Buffer.from([0x00]), 'one byte');
    same(Buffer.alloc(0), 'empty');
    const other = Buffer.from(bytes);
    other.writeBigUInt64LE(0x0123456789abcdefn, 2);
    same(other, 'unknown fingerprint');
    same(Buffer.concat([bytes, Buffer.from([0])]), 'trailing byte');
    const swapped = Buffer.from(bytes);
    set.current.get('gateway.request.forwarded')?.fingerprint.copy(swapped, 2);
    same(swapped, 'another type');
    const wrongVersion = Buffer.from(bytes);
    // metadata.schemaVersion sits after eventId, type and code (three length-prefixed strings).
    let p = HEADER_BYTES;
    for (let s = 0; s < 3; s++) p += 1 + (wrongVersion[p]! >> 1);
    wrongVersion[p] = 2 * 9;
    const o = same(wrongVersion, 'version 9');
    expect('error' in o && o.error.code).toBe('event_schema_mismatch');
  });

  it('a long beyond 2^53 (avsc: potential precision loss) and a negative array block count (valid, read by decode)', () => {
    const event = sampleEvent('policy.decided');
    const bytes = codec.encode(event);
    // timeUs follows eventId, type, code (strings) and schemaVersion (a one-byte int here).
    let p = HEADER_BYTES;
    for (let s = 0; s < 3; s++) p += 1 + (bytes[p]! >> 1);
    p += 1;
    let q = p;
    while (bytes[q]! & 0x80) q++;
    const huge = Buffer.concat([bytes.subarray(0, p), Buffer.from([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), bytes.subarray(q + 1)]);
    const o = same(huge, 'huge timeUs');
    expect('error' in o && o.error.code).toBe('event_schema_mismatch');

    // pciRequirements written as one block with a negative count and its byte size: decode reads it.
    const pci = event.metadata.pciRequirements;
    const str = (s: string): Buffer => Buffer.concat([zigzag(Buffer.byteLength(s)), Buffer.from(s)]);
    const items = Buffer.concat(pci.map(str));
    const positive = Buffer.concat([zigzag(pci.length), items, Buffer.from([0])]);
    const negative = Buffer.concat([zigzag(-pci.length), zigzag(items.length), items, Buffer.from([0])]);
    const at = bytes.indexOf(positive);
    expect(at).toBeGreaterThan(0);
    const rewritten = Buffer.concat([bytes.subarray(0, at), negative, bytes.subarray(at + positive.length)]);
    const r = same(rewritten, 'negative block count');
    expect('ok' in r && r.ok.metadata.metadata.pciRequirements).toEqual(pci);
  });
});

/** Avro's zig-zag varint of a small integer. */
function zigzag(n: number): Buffer {
  let z = n >= 0 ? n * 2 : -n * 2 - 1;
  const out: number[] = [];
  do {
    out.push((z & 0x7f) | (z >= 0x80 ? 0x80 : 0));
    z = Math.floor(z / 128);
  } while (z > 0);
  return Buffer.from(out);
}
