/**
 * Encoded event → store row in one pass, without the decoded event in between: the evidence
 * writer's hot path.
 *
 * `toStoredEvent(decodeEvent(bytes).event, bytes, hash)` builds the whole event as objects (a
 * record per envelope part, a Buffer per digest, the payload tree), then copies the payload tree
 * once more to turn digests into hex (jsonSafe) and serialises the copy: measured ≈ 13 µs per
 * event of the bench's mix, and most of the writer's garbage. This reader is generated once per
 * current schema from its avsc type: it reads the envelope straight into the row's fields and
 * transcodes the payload from Avro to its JSON text (binary values as lowercase hex, exactly as
 * `payloadJson` prints them) into one reused byte buffer, decoded as one string.
 *
 * Same result, or none: for anything it does not handle the same way as the codec (an older
 * writer schema that needs resolution, a malformed or truncated body, a long beyond 2^53, the
 * types whose rows need more of the payload: data.masked for its PAN sightings, and
 * integrity.checkpoint, which the writer verifies from the decoded event) it returns undefined
 * and the caller takes the codec path, which raises the codec's own errors. A test checks every
 * golden fixture and a generated mix give rows equal to the codec path's.
 */
import type { Type as AvroType } from 'avsc';
import { getDefaultCodec, isEventType, type AnyAttestEvent, type EventCodec, type EventType } from '../events';
import type { StoredEvent } from './rows';

/** A row, and where the payload starts in the bytes (to decode the payload alone when asked). */
export interface FastRow {
  readonly row: StoredEvent;
  /** Offset of the payload in the bytes: `payloadType.decode(bytes, payloadOffset)` gives the decoded payload. */
  readonly payloadOffset: number;
  readonly payloadType: AvroType;
}

type Reader = (buf: Buffer, hash: Uint8Array) => FastRow | undefined;

/** Types whose row needs more than the envelope and the payload's JSON (see above). */
/** Largest long the generated readers accept (2^53 − 2, inside the exactly representable range). */
const LONG_LIMIT = 2 ** 53 - 2;
const CODEC_ONLY: ReadonlySet<string> = new Set(['data.masked', 'integrity.checkpoint']);
/** Types whose card-data flag is payload.masking.cardDataPresent (rows.ts, cardDataPresent). */
const MASKING_FLAG: ReadonlySet<string> = new Set(['gateway.request.received', 'gateway.response.completed', 'db.query.executed']);
const ENVELOPE = ['metadata', 'actor', 'source', 'target', 'outcome', 'correlation', 'payload'] as const;
/** The envelope fields the row takes, in schema order; the generator refuses a schema that differs. */
const ENVELOPE_FIELDS: Readonly<Record<string, readonly string[]>> = {
  metadata: ['eventId', 'type', 'code', 'schemaVersion', 'timeUs', 'producer', 'producerEpoch', 'sequence', 'prevHash', 'tenantId', 'pciRequirements'],
  actor: ['subject', 'issuer', 'clientId', 'groups', 'kind', 'onBehalfOf', 'dev'],
  source: ['address', 'userAgent'],
  target: ['protocol', 'service', 'resource', 'model'],
  outcome: ['result', 'status', 'reason'],
  correlation: ['sessionId', 'requestId', 'upstreamRequestId'],
};

interface AvscType {
  readonly typeName: string;
  readonly fields?: readonly { readonly name: string; readonly type: AvscType }[];
  readonly symbols?: readonly string[];
  readonly types?: readonly AvscType[];
  readonly itemsType?: AvscType;
  readonly valuesType?: AvscType;
  readonly size?: number;
}

class Unsupported extends Error {}

/** Generates the reader for one event type's current schema; throws Unsupported when it cannot. */
function generate(type: EventType, versions: readonly number[], avroType: AvroType): Reader {
  const t = avroType as unknown as AvscType;
  if (t.typeName !== 'record' || t.fields === undefined) throw new Unsupported('not a record');
  if (t.fields.map((f) => f.name).join() !== ENVELOPE.join()) throw new Unsupported('envelope differs');
  const consts: unknown[] = [];
  const k = (v: unknown): string => {
    consts.push(v);
    return `K[${consts.length - 1}]`;
  };
  let n = 0;
  const tmp = (): string => `t${n++}`;
  const lines: string[] = [];
  const emit = (s: string): void => {
    lines.push(s);
  };
  const fail = 'return undefined;';

  /** Code reading a value of `ty` into the fresh variable `v` (envelope fields: the row's values). */
  const readValue = (ty: AvscType, v: string): void => {
    switch (ty.typeName) {
      case 'string':
        emit(`let ${v}; { const l = rl(); if (l < 0 || p + l > end) ${fail} ${v} = buf.utf8Slice(p, p + l); p += l; }`);
        return;
      case 'int':
        emit(`const ${v} = rl();`);
        return;
      case 'long':
        emit(`const ${v} = rl(); if (!(${v} >= -${LONG_LIMIT} && ${v} <= ${LONG_LIMIT})) ${fail}`);
        return;
      case 'boolean':
        emit(`const ${v} = !!buf[p++];`);
        return;
      case 'enum':
        emit(`const ${v} = ${k(ty.symbols)}[rl()]; if (${v} === undefined) ${fail}`);
        return;
      case 'fixed':
        emit(`if (p + ${ty.size ?? 0} > end) ${fail} const ${v} = buf.subarray(p, p + ${ty.size ?? 0}); p += ${ty.size ?? 0};`);
        return;
      case 'union:unwrapped': {
        const branches = ty.types ?? [];
        emit(`let ${v}; switch (rl()) {`);
        branches.forEach((b, i) => {
          emit(`case ${i}: {`);
          if (b.typeName === 'null') emit(`${v} = null;`);
          else {
            const inner = tmp();
            readValue(b, inner);
            emit(`${v} = ${inner};`);
          }
          emit('break; }');
        });
        emit(`default: ${fail} }`);
        return;
      }
      case 'array': {
        const items = ty.itemsType as AvscType;
        emit(`const ${v} = []; for (let c = rl(); c !== 0; c = rl()) { if (c < 0) { c = -c; rl(); } while (c-- > 0) {`);
        const item = tmp();
        readValue(items, item);
        emit(`${v}.push(${item}); } }`);
        return;
      }
      default:
        throw new Unsupported(`envelope field of type ${ty.typeName}`);
    }
  };

  /** Code transcoding a value of `ty` to JSON into J (what JSON.stringify(jsonSafe(value)) prints). */
  const json = (ty: AvscType, path: string, capture: string | undefined): void => {
    switch (ty.typeName) {
      case 'null':
        emit(`lit(${k(bytes('null'))});`);
        return;
      case 'boolean':
        if (capture !== undefined && path === capture) emit('card = !!buf[p];');
        emit(`lit(buf[p++] ? ${k(bytes('true'))} : ${k(bytes('false'))});`);
        return;
      case 'int':
        emit('num(rl());');
        return;
      case 'long':
        emit(`{ const x = rl(); if (!(x >= -${LONG_LIMIT} && x <= ${LONG_LIMIT})) ${fail} num(x); }`);
        return;
      case 'float':
        emit(`{ if (p + 4 > end) ${fail} const x = buf.readFloatLE(p); p += 4; raw(JSON.stringify(x)); }`);
        return;
      case 'double':
        emit(`{ if (p + 8 > end) ${fail} const x = buf.readDoubleLE(p); p += 8; raw(JSON.stringify(x)); }`);
        return;
      case 'string':
        emit(`if (!str()) ${fail}`);
        return;
      case 'bytes':
        emit(`{ const l = rl(); if (l < 0 || p + l > end) ${fail} hex(l); }`);
        return;
      case 'fixed':
        emit(`if (p + ${ty.size ?? 0} > end) ${fail} hex(${ty.size ?? 0});`);
        return;
      case 'enum': {
        const syms = (ty.symbols ?? []).map((s) => bytes(JSON.stringify(s)));
        emit(`{ const s = ${k(syms)}[rl()]; if (s === undefined) ${fail} lit(s); }`);
        return;
      }
      case 'union:unwrapped': {
        emit('switch (rl()) {');
        (ty.types ?? []).forEach((b, i) => {
          emit(`case ${i}: {`);
          json(b, path, capture);
          emit('break; }');
        });
        emit(`default: ${fail} }`);
        return;
      }
      case 'record': {
        const fields = ty.fields ?? [];
        if (fields.length === 0) {
          emit(`lit(${k(bytes('{}'))});`);
          return;
        }
        fields.forEach((f, i) => {
          emit(`lit(${k(bytes(`${i === 0 ? '{' : ','}${JSON.stringify(f.name)}:`))});`);
          json(f.type, path === '' ? f.name : `${path}.${f.name}`, capture);
        });
        emit('J[jp++] = 125;'); // }
        return;
      }
      case 'array': {
        emit('J[jp++] = 91; { let first = true; for (let c = rl(); c !== 0; c = rl()) { if (c < 0) { c = -c; rl(); } while (c-- > 0) {');
        emit('if (first) first = false; else J[jp++] = 44;');
        json(ty.itemsType as AvscType, `${path}[]`, capture);
        emit('} } } J[jp++] = 93;');
        return;
      }
      case 'map': {
        // An object built as avsc builds it, so keys come out in JSON.stringify's order (integer-like
        // keys first, a repeated key at its first place with its last value).
        emit('{ const o = {}; for (let c = rl(); c !== 0; c = rl()) { if (c < 0) { c = -c; rl(); } while (c-- > 0) {');
        emit(`const l = rl(); if (l < 0 || p + l > end) ${fail} const key = buf.utf8Slice(p, p + l); p += l; const at = jp;`);
        json(ty.valuesType as AvscType, `${path}{}`, capture);
        emit('o[key] = J.utf8Slice(at, jp); jp = at; } }');
        emit("J[jp++] = 123; let first = true; for (const key of Object.keys(o)) { if (first) first = false; else J[jp++] = 44; raw(JSON.stringify(key)); J[jp++] = 58; raw(o[key]); } J[jp++] = 125; }");
        return;
      }
      default:
        throw new Unsupported(`payload type ${ty.typeName}`);
    }
  };

  const envelope = t.fields;
  for (const part of ENVELOPE) {
    if (part === 'payload') break;
    const rec: AvscType | undefined = envelope.find((f) => f.name === part)?.type;
    const recFields = rec?.typeName === 'record' ? (rec.fields ?? []) : [];
    if (recFields.map((f) => f.name).join() !== (ENVELOPE_FIELDS[part] ?? []).join()) {
      throw new Unsupported(`${part} differs from the row's fields`);
    }
    for (const f of recFields) readValue(f.type, `${part}_${f.name}`);
    if (part === 'metadata') {
      emit(`if (metadata_type !== ${JSON.stringify(type)} || !${k(versions)}.includes(metadata_schemaVersion)) ${fail}`);
      emit(`if (metadata_prevHash.length !== 32) ${fail}`);
    }
  }
  const payloadType = t.fields[6]?.type as AvscType;
  const capture = MASKING_FLAG.has(type) ? 'masking.cardDataPresent' : undefined;
  if (capture !== undefined) {
    const masking = payloadType.fields?.find((f) => f.name === 'masking')?.type;
    if (masking?.typeName !== 'record' || masking.fields?.find((f) => f.name === 'cardDataPresent')?.type.typeName !== 'boolean') {
      throw new Unsupported('no masking.cardDataPresent');
    }
  }
  emit('const payloadOffset = p; jp = 0; let card = false; if (J.length < SLACK * 2) grow(0);');
  json(payloadType, '', capture);
  emit(`if (p !== end) ${fail}`);
  emit(`return { row: {
    eventId: metadata_eventId, type: metadata_type, code: metadata_code, schemaVersion: metadata_schemaVersion,
    timeUs: metadata_timeUs, producer: metadata_producer, producerEpoch: metadata_producerEpoch, sequence: metadata_sequence,
    prevHash: metadata_prevHash, eventHash: hash, tenantId: metadata_tenantId, pciRequirements: metadata_pciRequirements,
    actorSubject: actor_subject, actorIssuer: actor_issuer, actorClientId: actor_clientId, actorGroups: actor_groups,
    actorKind: actor_kind, actorOnBehalfOf: actor_onBehalfOf, actorDev: actor_dev,
    sourceAddress: source_address, sourceUserAgent: source_userAgent,
    targetProtocol: target_protocol, targetService: target_service, targetResource: target_resource, targetModel: target_model,
    outcomeResult: outcome_result, outcomeStatus: outcome_status, outcomeReason: outcome_reason,
    sessionId: correlation_sessionId, requestId: correlation_requestId, upstreamRequestId: correlation_upstreamRequestId,
    cardDataPresent: card, payload: J.utf8Slice(0, jp), eventBytes: buf, redactedBy: null, panSightings: [],
  }, payloadOffset, payloadType: PT };`);

  const src = `${RUNTIME}
  return function read(b, hash) {
    buf = b; end = b.length; p = ${HEADER};
    try {
      ${lines.join('\n      ')}
    } catch (e) {
      return undefined;
    } finally {
      buf = EMPTY;
    }
  };`;
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  return new Function('K', 'PT', src)(consts, payloadType) as Reader;
}

const HEADER = 10;

/**
 * Shared by every generated reader: the input, its end, the read position; the JSON output
 * buffer J and its position jp.
 */
const RUNTIME = `
  const EMPTY = Buffer.alloc(0);
  let buf = EMPTY, end = 0, p = 0, J = Buffer.allocUnsafe(1 << 16), jp = 0;
  const HEXD = new Uint8Array([48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 97, 98, 99, 100, 101, 102]);
  // Avro zig-zag varint, as avsc's Tap.readLong (float arithmetic past 28 bits).
  function rl() {
    const u = buf;
    let q = p;
    let b = u[q++];
    // One byte: most lengths, counts, union and enum indexes.
    if (b < 0x80) { p = q; return (b >> 1) ^ -(b & 1); }
    let n = b & 0x7f, k = 7, h;
    do { b = u[q++]; h = b & 0x80; n |= (b & 0x7f) << k; k += 7; } while (h && k < 28);
    if (h) {
      let f = n, fk = 268435456;
      do { b = u[q++]; f += (b & 0x7f) * fk; fk *= 128; } while (b & 0x80);
      p = q;
      return (f % 2 ? -(f + 1) : f) / 2;
    }
    p = q;
    return (n >> 1) ^ -(n & 1);
  }
  // Every helper leaves at least SLACK bytes free after what it wrote: the few single bytes the
  // generated code writes between helpers (brackets, commas; nesting is shallow) always fit.
  const SLACK = 256;
  function grow(n) { const next = Buffer.allocUnsafe(Math.max(J.length * 2, jp + n + SLACK)); J.copy(next, 0, 0, jp); J = next; }
  // Locals in the loops: the shared state lives in this closure's context, slower to touch per byte.
  function lit(a) {
    const n = a.length;
    if (jp + n + SLACK > J.length) grow(n);
    const j = J;
    let q = jp;
    for (let i = 0; i < n; i++) j[q++] = a[i];
    jp = q;
  }
  function raw(s) { if (jp + s.length * 3 + SLACK > J.length) grow(s.length * 3); jp += J.write(s, jp, 'utf8'); }
  function num(x) { if (x >= 0 && x < 10) { if (jp + SLACK > J.length) grow(1); J[jp++] = 48 + x; } else raw(String(x)); }
  function hex(l) {
    if (jp + 2 * l + SLACK > J.length) grow(2 * l);
    const j = J, b = buf;
    let q = jp;
    j[q++] = 34;
    for (let i = p, e = p + l; i < e; i++) { const c = b[i]; j[q++] = HEXD[c >> 4]; j[q++] = HEXD[c & 15]; }
    j[q++] = 34;
    jp = q;
    p += l;
  }
  // A string as JSON: its UTF-8 bytes copied, with JSON.stringify's escapes ('"', '\\\\', controls).
  function str() {
    const l = rl();
    if (l < 0 || p + l > end) return false;
    if (jp + 6 * l + SLACK > J.length) grow(6 * l);
    const j = J, b = buf;
    let q = jp;
    j[q++] = 34;
    for (let i = p, e = p + l; i < e; i++) {
      const c = b[i];
      if (c >= 0x20 && c !== 34 && c !== 92) { j[q++] = c; continue; }
      j[q++] = 92;
      switch (c) {
        case 34: j[q++] = 34; break;
        case 92: j[q++] = 92; break;
        case 8: j[q++] = 98; break;
        case 9: j[q++] = 116; break;
        case 10: j[q++] = 110; break;
        case 12: j[q++] = 102; break;
        case 13: j[q++] = 114; break;
        default: j[q++] = 117; j[q++] = 48; j[q++] = 48; j[q++] = HEXD[c >> 4]; j[q++] = HEXD[c & 15];
      }
    }
    j[q++] = 34;
    jp = q;
    p += l;
    return true;
  }
`;

function bytes(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, 'utf8'));
}

/** Readers per current-schema fingerprint (8 header bytes as latin1), per codec; null: not handled. */
const readersByCodec = new WeakMap<EventCodec, Map<string, Reader | null>>();

function readerFor(codec: EventCodec, buf: Buffer): Reader | null {
  let readers = readersByCodec.get(codec);
  if (readers === undefined) {
    readers = new Map();
    readersByCodec.set(codec, readers);
  }
  const key = buf.toString('latin1', 2, HEADER);
  let reader = readers.get(key);
  if (reader !== undefined) return reader;
  reader = null;
  const entry = codec.registry.lookup(buf, 2);
  if (entry !== undefined && isEventType(entry.type) && !CODEC_ONLY.has(entry.type)) {
    const current = codec.registry.current(entry.type);
    // Only the current schema: an older writer's bytes need avsc's resolution into it.
    if (current.fingerprintHex === entry.schema.fingerprintHex) {
      try {
        reader = generate(entry.type, entry.versions, current.avroType);
      } catch (err) {
        if (!(err instanceof Unsupported)) throw err;
      }
    }
  }
  if (readers.size < 4096) readers.set(key, reader);
  return reader;
}

/**
 * The row `toStoredEvent(decodeEvent(bytes).event, bytes, hash)` would give, read in one pass; or
 * undefined when the caller must take that path (see the top of this file). `hash` is the
 * SHA-256 of `bytes`, kept as the row's eventHash; the row's eventBytes and prevHash are views of
 * `bytes`.
 */
export function readStoredEvent(bytes: Uint8Array, hash: Uint8Array, codec: EventCodec = getDefaultCodec()): FastRow | undefined {
  if (bytes.length < HEADER || bytes[0] !== 0xc3 || bytes[1] !== 0x01 || hash.length !== 32) return undefined;
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const reader = readerFor(codec, buf);
  return reader === null ? undefined : reader(buf, hash);
}

/**
 * The decoded event behind a fast row, decoded as far as it is read: metadata from the row, the
 * payload alone (avsc, from payloadOffset) when asked for, the rest by the codec on first use.
 * For callbacks that take an event but mostly look at its type (the writer's leftToContentStage).
 */
export function lazyEventOf(fast: FastRow, codec: EventCodec = getDefaultCodec()): AnyAttestEvent {
  const r = fast.row;
  const bytes = r.eventBytes as Buffer;
  let whole: AnyAttestEvent | undefined;
  let metadata: AnyAttestEvent['metadata'] | undefined;
  let payload: { value: unknown } | undefined;
  const decoded = (): AnyAttestEvent => (whole ??= codec.decode(bytes).event as AnyAttestEvent);
  const event = {
    get metadata() {
      return (metadata ??= whole?.metadata ?? ({
        eventId: r.eventId, type: r.type, code: r.code, schemaVersion: r.schemaVersion, timeUs: r.timeUs, producer: r.producer,
        producerEpoch: r.producerEpoch, sequence: r.sequence, prevHash: r.prevHash, tenantId: r.tenantId, pciRequirements: r.pciRequirements,
      } as unknown as AnyAttestEvent['metadata']));
    },
    get actor() {
      return decoded().actor;
    },
    get source() {
      return decoded().source;
    },
    get target() {
      return decoded().target;
    },
    get outcome() {
      return decoded().outcome;
    },
    get correlation() {
      return decoded().correlation;
    },
    get payload() {
      payload ??= { value: whole?.payload ?? fast.payloadType.decode(bytes, fast.payloadOffset).value };
      return payload.value;
    },
  };
  return event as unknown as AnyAttestEvent;
}
