/**
 * The CPU-bound part of verification, in two phases, pure and allocation-free so the same functions
 * run in the calling thread or in worker threads over shared memory (verify-pool.ts).
 *
 * Phase 1, hashing (`hashLocated`, or the caller's own loop in the calling thread): every event is
 * hashed once, in storage order, into hashes[i*32..], and its prevHash is copied next to it into
 * prevs[i*32..]. It needs nothing from the layout of chains and checkpoints, so it starts at once and
 * runs while the calling thread plans the segments; storage order also reads the event bytes
 * sequentially. Copying prevHash while the event is in cache keeps phase 2 on two compact arrays.
 *
 * Phase 2, links and roots (`runKernel`): a segment is a run of events in sequence order
 * (order[segStart[s] .. segStart[s+1])). Its kind:
 *   0 nothing more (segments with gaps or duplicates: classification does the rest)
 *   1 links
 *   2 links + Merkle root (a checkpoint's complete range)
 * Outputs: roots[s*32..] for kind-2 segments, and breaks[s] = number of internal links
 * (event k-1 → k) that do not match, for kinds 1 and 2.
 */
import { HASH_BYTES, hashEqualsAt, sha256Into } from './hash';
import { MerkleAccumulator } from './merkle';

export const SEGMENT_HASH_ONLY = 0;
export const SEGMENT_LINKS = 1;
export const SEGMENT_LINKS_ROOT = 2;

export interface KernelJob {
  readonly order: Int32Array;
  readonly segStart: Int32Array;
  readonly segKind: Uint8Array;
}

export interface KernelOutput {
  /** Event i's chain hash at i*32 (phase 1). */
  readonly hashes: Uint8Array;
  /** Event i's prevHash at i*32 (phase 1; zeros when it has none of 32 bytes). */
  readonly prevs: Uint8Array;
  readonly roots: Uint8Array;
  readonly breaks: Int32Array;
}

/**
 * Where phase 1 finds event i in shared memory, LOC numbers per event: bytes slab, start, end,
 * prevHash slab, start. A bytes slab of -1: nothing to hash (the caller wrote the hash itself, e.g.
 * a stored redaction's given hash); a prevHash slab of -1: no valid prevHash to copy.
 */
export const LOC = 5;

/** Phase 1 in a worker: events [from, to) as located by `loc` in `slabs` (views of whole buffers). */
export function hashLocated(
  slabs: readonly Uint8Array[],
  loc: Float64Array,
  from: number,
  to: number,
  hashes: Uint8Array,
  prevs: Uint8Array,
): void {
  for (let i = from; i < to; i++) {
    const o = i * LOC;
    const bs = loc[o]!;
    if (bs >= 0) {
      const start = loc[o + 1]!;
      // A view made directly on the buffer costs less than subarray() (no species lookup).
      sha256Into(new Uint8Array(slabs[bs]!.buffer, start, loc[o + 2]! - start), hashes, i * HASH_BYTES);
    }
    const ps = loc[o + 3]!;
    if (ps >= 0) {
      const src = slabs[ps]!;
      const po = loc[o + 4]!;
      const d = i * HASH_BYTES;
      for (let k = 0; k < HASH_BYTES; k++) prevs[d + k] = src[po + k]!;
    } else {
      prevs.fill(0, i * HASH_BYTES, (i + 1) * HASH_BYTES); // never read (no chain position), but no stale bytes either
    }
  }
}

function wordsEqual(a: Int32Array, ao: number, b: Int32Array, bo: number): boolean {
  for (let k = 0; k < 8; k++) if (a[ao + k] !== b[bo + k]) return false;
  return true;
}

/** Phase 2 over segments [segFrom, segTo) of `job`, from the hashes and prevs of phase 1. */
export function runKernel(job: KernelJob, out: KernelOutput, segFrom: number, segTo: number): void {
  const { order, segStart, segKind } = job;
  const { hashes, prevs, roots, breaks } = out;
  // Links compare 8 words instead of 32 bytes where both arrays are 4-byte aligned (they are as
  // allocated by verify.ts; a caller's odd view falls back to bytes).
  const words = hashes.byteOffset % 4 === 0 && prevs.byteOffset % 4 === 0;
  const h32 = words ? new Int32Array(hashes.buffer, hashes.byteOffset, hashes.byteLength >> 2) : undefined;
  const p32 = words ? new Int32Array(prevs.buffer, prevs.byteOffset, prevs.byteLength >> 2) : undefined;
  const acc = new MerkleAccumulator();
  for (let s = segFrom; s < segTo; s++) {
    const kind = segKind[s]!;
    if (kind === SEGMENT_HASH_ONLY) continue;
    const start = segStart[s]!;
    const end = segStart[s + 1]!;
    let broken = 0;
    let prevIdx = -1;
    acc.reset();
    for (let k = start; k < end; k++) {
      const i = order[k]!;
      if (prevIdx >= 0) {
        const same = h32 !== undefined ? wordsEqual(p32!, i * 8, h32, prevIdx * 8) : hashEqualsAt(prevs, i * HASH_BYTES, hashes, prevIdx * HASH_BYTES);
        if (!same) broken++;
      }
      prevIdx = i;
      if (kind === SEGMENT_LINKS_ROOT) acc.push(hashes, i * HASH_BYTES);
    }
    breaks[s] = broken;
    if (kind === SEGMENT_LINKS_ROOT) roots.set(acc.root(), s * HASH_BYTES);
  }
}
