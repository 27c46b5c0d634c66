/**
 * The CPU-bound part of verification: hash every event once, check the links inside each segment,
 * and recompute each checkpoint's Merkle root. Pure and allocation-light, so the same function
 * runs in the calling thread or in worker threads over shared memory (verify-pool.ts).
 *
 * A segment is a run of events in sequence order (order[segStart[s] .. segStart[s+1])). Its kind:
 *   0 hash only (segments with gaps or duplicates: classification does the rest)
 *   1 hash + links
 *   2 hash + links + Merkle root (a checkpoint's complete range)
 * Outputs: hashes[i*32..] for every event i listed, roots[s*32..] for kind-2 segments, and
 * breaks[s] = number of internal links (event k-1 → k) that do not match, for kinds 1 and 2.
 */
import { hashEqualsAt, sha256 } from './hash';
import { MerkleAccumulator } from './merkle';

export const SEGMENT_HASH_ONLY = 0;
export const SEGMENT_LINKS = 1;
export const SEGMENT_LINKS_ROOT = 2;

export interface KernelEvents {
  /** Encoded bytes of event i. */
  bytes(i: number): Uint8Array;
  /** Event i's chain hash when given instead of hashing its bytes (a stored redaction, see VerifyEvent.hash). */
  hashOf?(i: number): Uint8Array | undefined;
  /** The array holding event i's prevHash, and the offset of it there. */
  prevArray(i: number): Uint8Array;
  prevOffset(i: number): number;
}

export interface KernelJob {
  readonly order: Int32Array;
  readonly segStart: Int32Array;
  readonly segKind: Uint8Array;
}

export interface KernelOutput {
  readonly hashes: Uint8Array;
  readonly roots: Uint8Array;
  readonly breaks: Int32Array;
}

export function runKernel(events: KernelEvents, job: KernelJob, out: KernelOutput, segFrom: number, segTo: number): void {
  const { order, segStart, segKind } = job;
  const { hashes, roots, breaks } = out;
  const acc = new MerkleAccumulator();
  for (let s = segFrom; s < segTo; s++) {
    const kind = segKind[s]!;
    const start = segStart[s]!;
    const end = segStart[s + 1]!;
    let broken = 0;
    let prevIdx = -1;
    acc.reset();
    for (let k = start; k < end; k++) {
      const i = order[k]!;
      hashes.set(events.hashOf?.(i) ?? sha256(events.bytes(i)), i * 32);
      if (kind === SEGMENT_HASH_ONLY) continue;
      if (prevIdx >= 0 && !hashEqualsAt(events.prevArray(i), events.prevOffset(i), hashes, prevIdx * 32)) broken++;
      prevIdx = i;
      if (kind === SEGMENT_LINKS_ROOT) acc.push(hashes, i * 32);
    }
    breaks[s] = broken;
    if (kind === SEGMENT_LINKS_ROOT) roots.set(acc.root(), s * 32);
  }
}
