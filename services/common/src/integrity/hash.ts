/**
 * Hashing primitives shared by the chain, the Merkle tree, checkpoints and verification.
 * An event's hash is SHA-256 of its complete encoded bytes, computed with node:crypto's one-shot
 * `hash()` (OpenSSL, SHA-NI where the CPU has it). `hash()` is used rather than `createHash()`
 * because it skips the Hash object: measured ~1.0 vs ~1.4 µs per 500-byte event on this box.
 *
 * Where many hashes are taken in a row (verification), `sha256Into` asks `hash()` for a 'binary' (latin1)
 * string instead of a Buffer and copies its 32 char codes into a caller's array: a 32-character
 * V8 string is far cheaper to make than a Buffer created from native code (its own ArrayBuffer and
 * backing store, tracked as external memory by the GC). Measured here on 500-byte events:
 * 0.74 µs per hash into an array vs 1.5–1.9 µs for `hash(…, 'buffer')` plus a copy.
 */
import { hash as oneShotHash } from 'node:crypto';

export const HASH_BYTES = 32;

/** The genesis link of a producer that has never checkpointed. Never mutate it. */
export const ZERO_HASH: Uint8Array = new Uint8Array(HASH_BYTES);

/** SHA-256 of `data` (a fresh 32-byte array). */
export function sha256(data: Uint8Array): Uint8Array {
  return oneShotHash('sha256', data, 'buffer');
}

/**
 * out[offset..offset+32) = SHA-256(data), without allocating a Buffer (see above). Latin1 maps each
 * digest byte to one char code 0..255, so the copy is exact.
 */
export function sha256Into(data: Uint8Array, out: Uint8Array, offset: number): void {
  const s = oneShotHash('sha256', data, 'binary'); // 'binary' is Node's name for latin1
  for (let k = 0; k < HASH_BYTES; k++) out[offset + k] = s.charCodeAt(k);
}

/** Equality of two 32-byte hashes at offsets (not constant-time: every input here is public). */
export function hashEqualsAt(a: Uint8Array, aOff: number, b: Uint8Array, bOff: number): boolean {
  for (let i = 0; i < HASH_BYTES; i++) if (a[aOff + i] !== b[bOff + i]) return false;
  return true;
}

export function hashEquals(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === HASH_BYTES && b.length === HASH_BYTES && hashEqualsAt(a, 0, b, 0);
}

export function isZeroHash(h: Uint8Array): boolean {
  return hashEquals(h, ZERO_HASH);
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function toBase64Url(bytes: Uint8Array): string {
  return asBuffer(bytes).toString('base64url');
}

export function toHex(bytes: Uint8Array): string {
  return asBuffer(bytes).toString('hex');
}

const B64U_HASH = /^[A-Za-z0-9_-]{43}$/;

/**
 * Strict decoding of a base64url SHA-256 (Buffer's decoder silently skips junk, which would let two
 * spellings mean one hash). Returns undefined when `s` is not exactly 32 bytes in canonical form.
 */
export function hashFromBase64Url(s: unknown): Uint8Array | undefined {
  if (typeof s !== 'string' || !B64U_HASH.test(s)) return undefined;
  const bytes = new Uint8Array(Buffer.from(s, 'base64url'));
  // The last character carries 2 padding bits; a non-canonical spelling re-encodes differently.
  return bytes.length === HASH_BYTES && toBase64Url(bytes) === s ? bytes : undefined;
}
