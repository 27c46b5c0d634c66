/**
 * ClickHouse RowBinary encoding of store rows, column order as in EVENT_COLUMNS /
 * PAN_SIGHTING_COLUMNS. Binary rows are the cheapest thing to build in JavaScript (no JSON
 * serialisation, no escaping, the event bytes copied as they are) and the cheapest for the engine
 * to parse; see docs/evidence-store.md, "Insert path", for the measurements behind the choice.
 *
 * RowBinary: fixed-width integers little-endian; String = LEB128 length + bytes; FixedString(N) =
 * N bytes; Nullable = 1 flag byte (1 = NULL) then the value; Array = LEB128 count + items;
 * DateTime64(6) = Int64 microseconds; UUID = the two 64-bit halves, each little-endian.
 */
import { StoreError } from './errors';
import type { PanSighting, StoredEvent } from './rows';

const TWO_32 = 4_294_967_296;
/** Strings seen this often are worth keeping encoded: types, codes, tenants, issuers, models. */
const STRING_CACHE_MAX_ENTRIES = 4096;
const STRING_CACHE_MAX_LENGTH = 64;

/** Hex digit value of each char code, -1 for a non-hex character. */
const HEX = new Int8Array(128).fill(-1);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX[65 + i] = 10 + i;
  HEX[97 + i] = 10 + i;
}
/** Char offsets of the 16 bytes of a UUID in ClickHouse's order: each 64-bit half little-endian. */
const UUID_BYTE_AT = [16, 14, 11, 9, 6, 4, 2, 0, 34, 32, 30, 28, 26, 24, 21, 19];

export class RowBinaryWriter {
  #buf: Buffer;
  #view: DataView;
  #pos = 0;
  // Most short strings in a batch repeat (event types, codes, tenants, issuers, models, routes):
  // copying their encoded bytes beats re-encoding them, measured in bench/store.bench.ts.
  readonly #cache = new Map<string, Uint8Array>();

  constructor(initialBytes = 1 << 20) {
    this.#buf = Buffer.allocUnsafe(initialBytes);
    this.#view = new DataView(this.#buf.buffer, this.#buf.byteOffset, this.#buf.byteLength);
  }

  get length(): number {
    return this.#pos;
  }

  /** The bytes written so far (a view; copy it before writing more if you keep it). */
  bytes(): Buffer {
    return this.#buf.subarray(0, this.#pos);
  }

  reset(): void {
    this.#pos = 0;
  }

  #ensure(n: number): void {
    if (this.#pos + n <= this.#buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#pos + n));
    this.#buf.copy(next, 0, 0, this.#pos);
    this.#buf = next;
    this.#view = new DataView(next.buffer, next.byteOffset, next.byteLength);
  }

  u8(v: number): void {
    this.#ensure(1);
    this.#buf[this.#pos++] = v;
  }

  bool(v: boolean): void {
    this.u8(v ? 1 : 0);
  }

  u16(v: number): void {
    this.#ensure(2);
    this.#view.setUint16(this.#pos, v, true);
    this.#pos += 2;
  }

  u32(v: number): void {
    this.#ensure(4);
    this.#view.setUint32(this.#pos, v, true);
    this.#pos += 4;
  }

  i32(v: number): void {
    this.#ensure(4);
    this.#view.setInt32(this.#pos, v, true);
    this.#pos += 4;
  }

  /** A safe integer as Int64/UInt64, without BigInt on the common non-negative path. */
  i64(v: number): void {
    this.#ensure(8);
    if (v >= 0) {
      this.#view.setUint32(this.#pos, v % TWO_32, true);
      this.#view.setUint32(this.#pos + 4, Math.floor(v / TWO_32), true);
    } else {
      this.#view.setBigInt64(this.#pos, BigInt(v), true);
    }
    this.#pos += 8;
  }

  varint(v: number): void {
    this.#ensure(10);
    while (v >= 0x80) {
      this.#buf[this.#pos++] = (v & 0x7f) | 0x80;
      v = Math.floor(v / 128);
    }
    this.#buf[this.#pos++] = v;
  }

  /** A String value; short ones are encoded in one pass (text first, then its one-byte length). */
  string(s: string): void {
    // Up to 42 UTF-16 units encode to at most 126 bytes, so the length is one LEB128 byte.
    if (s.length < 43) {
      this.#ensure(1 + s.length * 3);
      const n = this.#buf.write(s, this.#pos + 1, 'utf8');
      this.#buf[this.#pos] = n;
      this.#pos += 1 + n;
      return;
    }
    this.#writeLong(s);
  }

  /**
   * A String value from a column with few distinct values (types, codes, tenants, issuers,
   * models): copying the cached encoding beats re-encoding it. Never for ids, which never repeat.
   */
  lcString(s: string): void {
    let enc = this.#cache.get(s);
    if (enc === undefined) {
      if (s.length > STRING_CACHE_MAX_LENGTH) {
        this.#writeLong(s);
        return;
      }
      const body = Buffer.from(s, 'utf8');
      if (body.length >= 0x80) {
        this.#writeLong(s);
        return;
      }
      enc = new Uint8Array(body.length + 1);
      enc[0] = body.length;
      enc.set(body, 1);
      if (this.#cache.size >= STRING_CACHE_MAX_ENTRIES) this.#cache.clear();
      this.#cache.set(s, enc);
    }
    const n = enc.length;
    this.#ensure(n);
    const buf = this.#buf;
    let pos = this.#pos;
    // A byte loop beats TypedArray#set for the few bytes these values take.
    for (let i = 0; i < n; i++) buf[pos++] = enc[i] as number;
    this.#pos = pos;
  }

  #writeLong(s: string): void {
    const n = Buffer.byteLength(s, 'utf8');
    this.varint(n);
    this.#ensure(n);
    this.#buf.write(s, this.#pos, n, 'utf8');
    this.#pos += n;
  }

  nullableString(s: string | null): void {
    if (s === null) {
      this.u8(1);
      return;
    }
    this.u8(0);
    this.string(s);
  }

  nullableLcString(s: string | null): void {
    if (s === null) {
      this.u8(1);
      return;
    }
    this.u8(0);
    this.lcString(s);
  }

  nullableI32(v: number | null): void {
    if (v === null) this.u8(1);
    else {
      this.u8(0);
      this.i32(v);
    }
  }

  nullableU32(v: number | null): void {
    if (v === null) this.u8(1);
    else {
      this.u8(0);
      this.u32(v);
    }
  }

  /** A String column holding arbitrary bytes. */
  blob(b: Uint8Array): void {
    this.varint(b.length);
    this.#ensure(b.length);
    this.#buf.set(b, this.#pos);
    this.#pos += b.length;
  }

  fixed(b: Uint8Array, n: number, where: string): void {
    if (b.length !== n) throw new StoreError('store_row_invalid', `${where} must be ${n} bytes, got ${b.length}`, { where });
    this.#ensure(n);
    this.#buf.set(b, this.#pos);
    this.#pos += n;
  }

  /** FixedString(n) from text, zero-padded (ClickHouse semantics); refuses longer text. */
  fixedText(s: string, n: number, where: string): void {
    if (Buffer.byteLength(s, 'utf8') > n) throw new StoreError('store_row_invalid', `${where} longer than ${n} bytes`, { where });
    this.#ensure(n);
    const written = this.#buf.write(s, this.#pos, n, 'utf8');
    this.#buf.fill(0, this.#pos + written, this.#pos + n);
    this.#pos += n;
  }

  lcStringArray(xs: readonly string[]): void {
    this.varint(xs.length);
    for (let i = 0; i < xs.length; i++) this.lcString(xs[i] as string);
  }

  /** A UUID in text form (any case), as ClickHouse's two little-endian 64-bit halves. */
  uuid(s: string, where: string): void {
    if (s.length !== 36 || s.charCodeAt(8) !== 45 || s.charCodeAt(13) !== 45 || s.charCodeAt(18) !== 45 || s.charCodeAt(23) !== 45) {
      throw new StoreError('store_row_invalid', `${where} is not a UUID`, { where });
    }
    this.#ensure(16);
    for (let i = 0; i < 16; i++) {
      const at = UUID_BYTE_AT[i] as number;
      const hi = HEX[s.charCodeAt(at)] ?? -1;
      const lo = HEX[s.charCodeAt(at + 1)] ?? -1;
      if (hi < 0 || lo < 0) throw new StoreError('store_row_invalid', `${where} is not a UUID`, { where });
      this.#buf[this.#pos + i] = (hi << 4) | lo;
    }
    this.#pos += 16;
  }
}

/** Append one `events` row (EVENT_COLUMNS order). */
export function writeEventRow(w: RowBinaryWriter, e: StoredEvent): void {
  w.uuid(e.eventId, 'eventId');
  w.lcString(e.type);
  w.lcString(e.code);
  w.u16(e.schemaVersion);
  w.i64(e.timeUs);
  w.lcString(e.producer);
  w.nullableLcString(e.producerEpoch);
  w.i64(e.sequence);
  w.fixed(e.prevHash, 32, 'prevHash');
  w.fixed(e.eventHash, 32, 'eventHash');
  w.lcString(e.tenantId);
  w.lcStringArray(e.pciRequirements);
  w.string(e.actorSubject);
  w.lcString(e.actorIssuer);
  w.nullableLcString(e.actorClientId);
  w.lcStringArray(e.actorGroups);
  w.lcString(e.actorKind);
  w.nullableString(e.actorOnBehalfOf);
  w.bool(e.actorDev);
  w.string(e.sourceAddress);
  w.nullableLcString(e.sourceUserAgent);
  w.lcString(e.targetProtocol);
  w.lcString(e.targetService);
  w.lcString(e.targetResource);
  w.nullableLcString(e.targetModel);
  w.lcString(e.outcomeResult);
  w.nullableI32(e.outcomeStatus);
  w.nullableLcString(e.outcomeReason);
  w.string(e.sessionId);
  w.string(e.requestId);
  w.nullableString(e.upstreamRequestId);
  w.bool(e.cardDataPresent);
  w.string(e.payload);
  w.blob(e.eventBytes);
  if (e.redactedBy === null) w.u8(1);
  else {
    w.u8(0);
    w.uuid(e.redactedBy, 'redactedBy');
  }
}

/** Append one `pan_sightings` row (PAN_SIGHTING_COLUMNS order). */
export function writeSightingRow(w: RowBinaryWriter, s: PanSighting): void {
  w.fixed(s.panHmac, 32, 'panHmac');
  w.lcString(s.panHmacKeyId);
  w.lcString(s.bin);
  w.fixedText(s.last4, 4, 'last4');
  w.uuid(s.eventId, 'eventId');
  w.lcString(s.eventType);
  w.i64(s.timeUs);
  w.lcString(s.tenantId);
  w.lcString(s.direction);
  w.lcString(s.location);
  w.nullableU32(s.contentBlockIndex);
  w.nullableU32(s.charOffset);
  w.lcString(s.ruleId);
  w.lcString(s.action);
  w.string(s.actorSubject);
  w.nullableString(s.actorOnBehalfOf);
  w.string(s.sessionId);
  w.string(s.requestId);
}
