/**
 * SHA-256 for the two fixed, tiny inputs of the Merkle tree, in plain JavaScript:
 *   leaf = SHA-256(0x00 || eventHash)      33 bytes, one compression
 *   node = SHA-256(0x01 || left || right)  65 bytes, two compressions
 *
 * Why not node:crypto: each native call costs ~0.7–1.2 µs of fixed overhead (context set-up, a
 * Buffer for the result), while one compression here costs ~0.33 µs and allocates nothing. Trees
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

function initState(): void {
  S[0] = 0x6a09e667;
  S[1] = 0xbb67ae85 | 0;
  S[2] = 0x3c6ef372;
  S[3] = 0xa54ff53a | 0;
  S[4] = 0x510e527f;
  S[5] = 0x9b05688c | 0;
  S[6] = 0x1f83d9ab;
  S[7] = 0x5be0cd19;
}

/** One SHA-256 compression of the block in W[0..15] into S. */
function compress(): void {
  const w = W;
  for (let i = 16; i < 64; i++) {
    const x = w[i - 15]!;
    const y = w[i - 2]!;
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    w[i] = (w[i - 16]! + s0 + w[i - 7]! + s1) | 0;
  }
  let a = S[0]!;
  let b = S[1]!;
  let c = S[2]!;
  let d = S[3]!;
  let e = S[4]!;
  let f = S[5]!;
  let g = S[6]!;
  let h = S[7]!;
  for (let i = 0; i < 64; i++) {
    const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const ch = (e & f) ^ (~e & g);
    const t1 = (h + s1 + ch + K[i]! + w[i]!) | 0;
    const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const maj = (a & b) ^ (a & c) ^ (b & c);
    const t2 = (s0 + maj) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
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

/** out[oo..oo+32) = SHA-256(0x00 || src[so..so+32)). */
export function leafHashInto(src: Uint8Array, so: number, out: Uint8Array, oo: number): void {
  // Message: 0x00, 32 hash bytes, 0x80 padding, zeros, 64-bit length 264 bits: one block.
  W[0] = (src[so]! << 16) | (src[so + 1]! << 8) | src[so + 2]!;
  for (let i = 1; i < 8; i++) W[i] = word(src, so + 4 * i - 1);
  W[8] = (src[so + 31]! << 24) | 0x800000;
  for (let i = 9; i < 15; i++) W[i] = 0;
  W[15] = 264;
  initState();
  compress();
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
  initState();
  compress();
  // Second block: the last byte of r, 0x80 padding, zeros, length 520 bits.
  W[0] = (last << 24) | 0x800000;
  for (let i = 1; i < 15; i++) W[i] = 0;
  W[15] = 520;
  compress();
  writeState(out, oo);
}
