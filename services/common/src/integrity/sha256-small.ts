/**
 * SHA-256 for the two fixed, tiny inputs of the Merkle tree, in plain JavaScript:
 *   leaf = SHA-256(0x00 || eventHash)      33 bytes, one compression
 *   node = SHA-256(0x01 || left || right)  65 bytes, two compressions
 *
 * Why not node:crypto: each native call costs ~0.5 µs even for these inputs (~0.5 µs for 65 bytes
 * with a string result, more with a Buffer), while one compression here costs ~0.3 µs and
 * allocates nothing, and a node's second block has a precomputed schedule (NODE_TAIL). Trees
 * are ~2 small hashes per event, so this halves the Merkle cost of verification (see
 * docs/integrity.md, "Throughput"). Inputs are public (no side-channel concern), and the functions
 * are checked against node:crypto on random inputs by sha256-small.unit.test.ts.
 *
 * Outputs are written into a caller-supplied array at an offset; `out` may alias an input because
 * every input byte is read before the output is written.
 */

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
  0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
  0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
  0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
  0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
  0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
  0xc67178f2,
]);

// Scratch state: module-level so the hot path allocates nothing. JavaScript runs one call at a
// time per thread (each worker has its own module instance), so sharing is safe.
const W = new Int32Array(64);
const S = new Int32Array(8);
const IV = new Int32Array([0x6a09e667, 0xbb67ae85 | 0, 0x3c6ef372, 0xa54ff53a | 0, 0x510e527f, 0x9b05688c | 0, 0x1f83d9ab, 0x5be0cd19]);

/** Message schedule of the block in w[0..15], then K added: w[i] = K[i] + W[i] for the rounds. */
function expand(w: Int32Array): void {
  for (let i = 16; i < 64; i++) {
    const x = w[i - 15]!;
    const y = w[i - 2]!;
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    w[i] = (w[i - 16]! + s0 + w[i - 7]! + s1) | 0;
  }
  for (let i = 0; i < 64; i++) w[i] = (w[i]! + K[i]!) | 0;
}

/**
 * The 64 rounds of one compression into S, from kw[ko..ko+64) = K[i] + W[i]. Unrolled by 8 with
 * the working variables changing roles instead of being shifted each round.
 */
function rounds(kw: Int32Array, ko: number): void {
  let a = S[0]!;
  let b = S[1]!;
  let c = S[2]!;
  let d = S[3]!;
  let e = S[4]!;
  let f = S[5]!;
  let g = S[6]!;
  let h = S[7]!;
  for (let i = ko; i < ko + 64; i += 8) {
    let t1: number;
    t1 = (h + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))) + ((e & f) ^ (~e & g)) + kw[i]!) | 0;
    d = (d + t1) | 0;
    h = (t1 + (((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    t1 = (g + (((d >>> 6) | (d << 26)) ^ ((d >>> 11) | (d << 21)) ^ ((d >>> 25) | (d << 7))) + ((d & e) ^ (~d & f)) + kw[i + 1]!) | 0;
    c = (c + t1) | 0;
    g = (t1 + (((h >>> 2) | (h << 30)) ^ ((h >>> 13) | (h << 19)) ^ ((h >>> 22) | (h << 10))) + ((h & a) ^ (h & b) ^ (a & b))) | 0;
    t1 = (f + (((c >>> 6) | (c << 26)) ^ ((c >>> 11) | (c << 21)) ^ ((c >>> 25) | (c << 7))) + ((c & d) ^ (~c & e)) + kw[i + 2]!) | 0;
    b = (b + t1) | 0;
    f = (t1 + (((g >>> 2) | (g << 30)) ^ ((g >>> 13) | (g << 19)) ^ ((g >>> 22) | (g << 10))) + ((g & h) ^ (g & a) ^ (h & a))) | 0;
    t1 = (e + (((b >>> 6) | (b << 26)) ^ ((b >>> 11) | (b << 21)) ^ ((b >>> 25) | (b << 7))) + ((b & c) ^ (~b & d)) + kw[i + 3]!) | 0;
    a = (a + t1) | 0;
    e = (t1 + (((f >>> 2) | (f << 30)) ^ ((f >>> 13) | (f << 19)) ^ ((f >>> 22) | (f << 10))) + ((f & g) ^ (f & h) ^ (g & h))) | 0;
    t1 = (d + (((a >>> 6) | (a << 26)) ^ ((a >>> 11) | (a << 21)) ^ ((a >>> 25) | (a << 7))) + ((a & b) ^ (~a & c)) + kw[i + 4]!) | 0;
    h = (h + t1) | 0;
    d = (t1 + (((e >>> 2) | (e << 30)) ^ ((e >>> 13) | (e << 19)) ^ ((e >>> 22) | (e << 10))) + ((e & f) ^ (e & g) ^ (f & g))) | 0;
    t1 = (c + (((h >>> 6) | (h << 26)) ^ ((h >>> 11) | (h << 21)) ^ ((h >>> 25) | (h << 7))) + ((h & a) ^ (~h & b)) + kw[i + 5]!) | 0;
    g = (g + t1) | 0;
    c = (t1 + (((d >>> 2) | (d << 30)) ^ ((d >>> 13) | (d << 19)) ^ ((d >>> 22) | (d << 10))) + ((d & e) ^ (d & f) ^ (e & f))) | 0;
    t1 = (b + (((g >>> 6) | (g << 26)) ^ ((g >>> 11) | (g << 21)) ^ ((g >>> 25) | (g << 7))) + ((g & h) ^ (~g & a)) + kw[i + 6]!) | 0;
    f = (f + t1) | 0;
    b = (t1 + (((c >>> 2) | (c << 30)) ^ ((c >>> 13) | (c << 19)) ^ ((c >>> 22) | (c << 10))) + ((c & d) ^ (c & e) ^ (d & e))) | 0;
    t1 = (a + (((f >>> 6) | (f << 26)) ^ ((f >>> 11) | (f << 21)) ^ ((f >>> 25) | (f << 7))) + ((f & g) ^ (~f & h)) + kw[i + 7]!) | 0;
    e = (e + t1) | 0;
    a = (t1 + (((b >>> 2) | (b << 30)) ^ ((b >>> 13) | (b << 19)) ^ ((b >>> 22) | (b << 10))) + ((b & c) ^ (b & d) ^ (c & d))) | 0;
  }
  S[0] = (S[0]! + a) | 0;
  S[1] = (S[1]! + b) | 0;
  S[2] = (S[2]! + c) | 0;
  S[3] = (S[3]! + d) | 0;
  S[4] = (S[4]! + e) | 0;
  S[5] = (S[5]! + f) | 0;
  S[6] = (S[6]! + g) | 0;
  S[7] = (S[7]! + h) | 0;
}

/** Big-endian 32-bit word from 4 bytes at `o`. */
function word(src: Uint8Array, o: number): number {
  return (src[o]! << 24) | (src[o + 1]! << 16) | (src[o + 2]! << 8) | src[o + 3]!;
}

function writeState(out: Uint8Array, o: number): void {
  for (let i = 0; i < 8; i++) {
    const v = S[i]!;
    const p = o + 4 * i;
    out[p] = v >>> 24;
    out[p + 1] = (v >>> 16) & 0xff;
    out[p + 2] = (v >>> 8) & 0xff;
    out[p + 3] = v & 0xff;
  }
}

/**
 * K + W of a node hash's second block for each value of its only varying byte: the block is the
 * last byte of `right`, 0x80 padding, zeros and the length 520, so its schedule is one of 256
 * (64 KiB, computed once). The second compression then runs the rounds only (~25% off a node).
 */
const NODE_TAIL = new Int32Array(256 * 64);
for (let v = 0; v < 256; v++) {
  W.fill(0);
  W[0] = (v << 24) | 0x800000;
  W[15] = 520;
  expand(W);
  NODE_TAIL.set(W, v * 64);
}

/** out[oo..oo+32) = SHA-256(0x00 || src[so..so+32)). */
export function leafHashInto(src: Uint8Array, so: number, out: Uint8Array, oo: number): void {
  // Message: 0x00, 32 hash bytes, 0x80 padding, zeros, 64-bit length 264 bits: one block.
  W[0] = (src[so]! << 16) | (src[so + 1]! << 8) | src[so + 2]!;
  for (let i = 1; i < 8; i++) W[i] = word(src, so + 4 * i - 1);
  W[8] = (src[so + 31]! << 24) | 0x800000;
  for (let i = 9; i < 15; i++) W[i] = 0;
  W[15] = 264;
  expand(W);
  S.set(IV);
  rounds(W, 0);
  writeState(out, oo);
}

/** out[oo..oo+32) = SHA-256(0x01 || l[lo..lo+32) || r[ro..ro+32)). */
export function nodeHashInto(
  l: Uint8Array,
  lo: number,
  r: Uint8Array,
  ro: number,
  out: Uint8Array,
  oo: number,
): void {
  W[0] = (1 << 24) | (l[lo]! << 16) | (l[lo + 1]! << 8) | l[lo + 2]!;
  for (let i = 1; i < 8; i++) W[i] = word(l, lo + 4 * i - 1);
  W[8] = (l[lo + 31]! << 24) | (r[ro]! << 16) | (r[ro + 1]! << 8) | r[ro + 2]!;
  for (let i = 9; i < 16; i++) W[i] = word(r, ro + 4 * (i - 8) - 1);
  const last = r[ro + 31]!; // read before `out` (which may alias r) is written
  expand(W);
  S.set(IV);
  rounds(W, 0);
  // Second block: the last byte of r, 0x80 padding, zeros, length 520 bits (precomputed schedule).
  rounds(NODE_TAIL, last * 64);
  writeState(out, oo);
}

// Word forms for the Merkle accumulator: subtree roots stay as 8 big-endian 32-bit words between
// levels, so a node reads its children with shifts instead of 64 byte loads and writes 8 words
// instead of 32 bytes. Only the root is turned into bytes.

/** out32[oo..oo+8) = SHA-256(0x00 || src[so..so+32)) as big-endian words. */
export function leafHashWords(src: Uint8Array, so: number, out32: Int32Array, oo: number): void {
  W[0] = (src[so]! << 16) | (src[so + 1]! << 8) | src[so + 2]!;
  for (let i = 1; i < 8; i++) W[i] = word(src, so + 4 * i - 1);
  W[8] = (src[so + 31]! << 24) | 0x800000;
  for (let i = 9; i < 15; i++) W[i] = 0;
  W[15] = 264;
  expand(W);
  S.set(IV);
  rounds(W, 0);
  for (let i = 0; i < 8; i++) out32[oo + i] = S[i]!;
}

/**
 * st[oo..oo+8) = SHA-256(0x01 || left || right) where left = st[lo..lo+8) and right = st[ro..ro+8)
 * are digests as big-endian words. `oo` may be `lo` or `ro`.
 */
export function nodeHashWords(st: Int32Array, lo: number, ro: number, oo: number): void {
  // The 0x01 prefix shifts every word by one byte.
  W[0] = (1 << 24) | (st[lo]! >>> 8);
  for (let i = 1; i < 8; i++) W[i] = (st[lo + i - 1]! << 24) | (st[lo + i]! >>> 8);
  W[8] = (st[lo + 7]! << 24) | (st[ro]! >>> 8);
  for (let i = 9; i < 16; i++) W[i] = (st[ro + i - 9]! << 24) | (st[ro + i - 8]! >>> 8);
  const last = st[ro + 7]! & 0xff;
  expand(W);
  S.set(IV);
  rounds(W, 0);
  rounds(NODE_TAIL, last * 64);
  for (let i = 0; i < 8; i++) st[oo + i] = S[i]!;
}

/** Big-endian words st[o..o+8) as 32 bytes at out[oo..). */
export function wordsToBytes(st: Int32Array, o: number, out: Uint8Array, oo: number): void {
  for (let i = 0; i < 8; i++) {
    const v = st[o + i]!;
    const p = oo + 4 * i;
    out[p] = v >>> 24;
    out[p + 1] = (v >>> 16) & 0xff;
    out[p + 2] = (v >>> 8) & 0xff;
    out[p + 3] = v & 0xff;
  }
}
