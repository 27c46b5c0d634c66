/**
 * EventCodec.decode refuses, before avsc reads the body, an array or map block that claims more
 * items than the bytes left in the body can hold (every item of every array and map in the schemas
 * takes at least one byte), or a negative count whose byte size does not fit. Left to avsc, such a
 * count makes it loop and allocate item by item: seconds and hundreds of megabytes for one tampered
 * 500-byte record, or the process out of memory. decodeMetadata and decodeChainMetadata raise the
 * same error.
 */
import type { Type as AvroType } from 'avsc';
import { describe, expect, it } from 'vitest';
import { EVENT_TYPES, type EventType } from './catalog';
import { createEventCodec, HEADER_BYTES } from './codec';
import { isEventError } from './errors';
import { listFixtures, sampleEvent } from './fixtures';
import { loadSchemaSet } from './schemas';
import type { AnyAttestEvent } from './types';

const set = loadSchemaSet();
const codec = createEventCodec({ schemaSet: set });

/** Avro's zig-zag varint of `n` (any size). */
function varint(n: bigint): Buffer {
  let z = n >= 0n ? n * 2n : -n * 2n - 1n;
  const out: number[] = [];
  do {
    const b = Number(z & 0x7fn);
    z >>= 7n;
    out.push(z > 0n ? b | 0x80 : b);
  } while (z > 0n);
  return Buffer.from(out);
}

/**
 * `bytes` with the block count in front of the one-item array or map whose single string (or key)
 * is `marker` replaced by `replacement` (the rest unchanged).
 */
function withCount(bytes: Buffer, marker: string, replacement: Buffer): Buffer {
  const at = bytes.indexOf(Buffer.from(marker));
  expect(at).toBeGreaterThan(HEADER_BYTES);
  expect(bytes[at - 1]).toBe(marker.length * 2); // the string's length
  expect(bytes[at - 2]).toBe(2); // a block of one item
  return Buffer.concat([bytes.subarray(0, at - 2), replacement, bytes.subarray(at - 1)]);
}

type Outcome = { code: string; message: string; where: string | undefined; ms: number } | 'no error';

function outcome(fn: () => unknown): Outcome {
  const start = performance.now();
  try {
    fn();
  } catch (err) {
    if (!isEventError(err)) throw err;
    return { code: err.code, message: err.message, where: err.where, ms: performance.now() - start };
  }
  return 'no error';
}

/** decode's error, checked to be quick, and the same from decodeMetadata and decodeChainMetadata. */
function refusal(bytes: Buffer): { code: string; message: string; where: string | undefined } {
  const decoded = outcome(() => codec.decode(bytes));
  if (decoded === 'no error') throw new Error('decode accepted the crafted event');
  expect(decoded.ms).toBeLessThan(50);
  const { ms: _, ...error } = decoded;
  for (const fn of [() => codec.decodeMetadata(bytes), () => codec.decodeChainMetadata(bytes)]) {
    const other = outcome(fn);
    if (other === 'no error') throw new Error('the metadata reader accepted the crafted event');
    expect(other.ms).toBeLessThan(50);
    expect({ ...other, ms: 0 }).toEqual({ ...error, ms: 0 });
  }
  return error;
}

const HUGE = 2n ** 40n;

function eventWithGroup(marker: string): Buffer {
  const event = sampleEvent('auth.succeeded');
  return Buffer.from(codec.encode({ ...event, actor: { ...event.actor, groups: [marker] } } as AnyAttestEvent));
}

describe('array and map block counts the body cannot hold', () => {
  const marker = 'zz-group-marker';
  const bytes = eventWithGroup(marker);

  it('the unchanged event decodes', () => {
    expect(codec.decode(bytes).event.actor.groups).toEqual([marker]);
  });

  it('an array count of 2^40 (actor.groups)', () => {
    const crafted = withCount(bytes, marker, varint(HUGE));
    const error = refusal(crafted);
    expect(error.code).toBe('event_truncated');
    expect(error.where).toBe('body');
    expect(error.message).toMatch(/array count 1099511627776 at actor\.groups exceeds the \d+ byte\(s\) remaining in the body of auth\.succeeded v\d+/);
  });

  it('an array count just past the bytes left', () => {
    const left = bytes.length - bytes.indexOf(Buffer.from(marker)) + 1;
    const crafted = withCount(bytes, marker, varint(BigInt(left + 1)));
    expect(refusal(crafted).code).toBe('event_truncated');
  });

  it('a count in the metadata (metadata.pciRequirements), also through the chain-metadata reader', () => {
    const event = sampleEvent('auth.succeeded');
    const m = 'zz-req-marker';
    const clean = Buffer.from(codec.encode({ ...event, metadata: { ...event.metadata, pciRequirements: [m] } } as AnyAttestEvent));
    const error = refusal(withCount(clean, m, varint(HUGE)));
    expect(error.code).toBe('event_truncated');
    expect(error.message).toContain('metadata.pciRequirements');
  });

  it('a map count of 2^40 (evidence.accessed payload.parameters)', () => {
    const event = sampleEvent('evidence.accessed');
    const key = 'zz-key-marker';
    const clean = Buffer.from(codec.encode({ ...event, payload: { ...event.payload, parameters: { [key]: 'v' } } } as AnyAttestEvent));
    expect(codec.decode(clean).event.payload).toMatchObject({ parameters: { [key]: 'v' } });
    const error = refusal(withCount(clean, key, varint(HUGE)));
    expect(error.code).toBe('event_truncated');
    expect(error.message).toMatch(/map count 1099511627776 at payload\.parameters exceeds the \d+ byte\(s\) remaining/);
  });

  it('a negative block count with a huge byte size', () => {
    const crafted = withCount(bytes, marker, Buffer.concat([varint(-1n), varint(HUGE)]));
    const error = refusal(crafted);
    expect(error.code).toBe('event_truncated');
    expect(error.message).toMatch(/array block size 1099511627776 at actor\.groups exceeds the \d+ byte\(s\) remaining/);
  });

  it('a negative block count of huge magnitude', () => {
    const crafted = withCount(bytes, marker, Buffer.concat([varint(-HUGE), varint(BigInt(marker.length + 1))]));
    const error = refusal(crafted);
    expect(error.code).toBe('event_truncated');
    expect(error.message).toContain('array count 1099511627776 at actor.groups');
  });

  it('a negative block count with a negative or wrong byte size', () => {
    const negative = refusal(withCount(bytes, marker, Buffer.concat([varint(-1n), varint(-3n)])));
    expect(negative.code).toBe('event_schema_mismatch');
    expect(negative.message).toContain('is negative');
    const wrong = refusal(withCount(bytes, marker, Buffer.concat([varint(-1n), varint(2n)])));
    expect(wrong.code).toBe('event_schema_mismatch');
    expect(wrong.message).toContain(`claims 2 byte(s) but its items take ${marker.length + 1}`);
  });

  it('a negative block count with the right byte size decodes as the positive one (valid Avro)', () => {
    const crafted = withCount(bytes, marker, Buffer.concat([varint(-1n), varint(BigInt(marker.length + 1))]));
    expect(codec.decode(crafted).event).toEqual(codec.decode(bytes).event);
    expect(codec.decodeChainMetadata(crafted)).toEqual(codec.decodeChainMetadata(bytes));
  });

  it('a huge count in an event written with an older version (resolved, and read by the metadata readers through avsc)', () => {
    let tried = 0;
    for (const fixture of listFixtures()) {
      const writer = set.history.get(fixture.type)?.get(fixture.version);
      if (writer === undefined || writer.fingerprintHex === set.current.get(fixture.type)?.fingerprintHex) continue;
      const type = writer.avroType as AvroType;
      const value = type.decode(fixture.bytes, HEADER_BYTES).value as { metadata: { pciRequirements: string[] } };
      const m = 'zz-old-marker';
      value.metadata.pciRequirements = [m];
      const clean = Buffer.concat([fixture.bytes.subarray(0, HEADER_BYTES), type.toBuffer(value)]);
      expect(codec.decode(clean).event.metadata.pciRequirements).toEqual([m]);
      const error = refusal(withCount(clean, m, varint(HUGE)));
      expect([fixture.type, fixture.version, error.code]).toEqual([fixture.type, fixture.version, 'event_truncated']);
      tried++;
    }
    expect(tried).toBeGreaterThan(0);
  });
});

describe('the assumption the bound rests on', () => {
  /** The least bytes a value of `t` takes (avsc's type objects). */
  function minBytes(t: { typeName: string; types?: unknown[]; fields?: { type: unknown }[]; size?: number }): number {
    switch (t.typeName) {
      case 'null':
        return 0;
      case 'float':
        return 4;
      case 'double':
        return 8;
      case 'fixed':
        return t.size ?? 0;
      case 'union:unwrapped':
        return 1 + Math.min(...(t.types ?? []).map((b) => minBytes(b as never)));
      case 'record':
        return (t.fields ?? []).reduce((n, f) => n + minBytes(f.type as never), 0);
      default:
        return 1;
    }
  }

  it('every array item and map entry of every schema, history included, takes at least one byte', () => {
    const seen: string[] = [];
    const visit = (t: never, path: string): void => {
      const node = t as { typeName: string; itemsType?: never; valuesType?: never; types?: never[]; fields?: { name: string; type: never }[] };
      if (node.typeName === 'array') {
        seen.push(path);
        expect([path, minBytes(node.itemsType!)]).not.toEqual([path, 0]);
        visit(node.itemsType!, `${path}[]`);
      } else if (node.typeName === 'map') {
        seen.push(path); // a key is a string: at least its length byte
        visit(node.valuesType!, `${path}{}`);
      } else if (node.typeName === 'union:unwrapped') node.types!.forEach((b) => visit(b, path));
      else if (node.typeName === 'record') node.fields!.forEach((f) => visit(f.type, path === '' ? f.name : `${path}.${f.name}`));
    };
    let schemas = 0;
    for (const type of EVENT_TYPES as readonly EventType[]) {
      for (const loaded of set.history.get(type)?.values() ?? []) {
        schemas++;
        visit(loaded.avroType as never, '');
      }
    }
    expect(schemas).toBeGreaterThanOrEqual(EVENT_TYPES.length);
    expect(seen).toContain('actor.groups');
    expect(seen).toContain('payload.parameters');
  });
});
