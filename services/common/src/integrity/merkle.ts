/**
 * RFC 9162 (Certificate Transparency v2) Merkle tree hash over a checkpoint's events.
 *
 * The tree's entries are the events' hashes, in sequence order:
 *   leaf(i) = SHA-256(0x00 || eventHash(i))       eventHash = SHA-256(encoded event bytes)
 *   node    = SHA-256(0x01 || left || right)
 *   MTH({}) = SHA-256("")
 * Hashing the 32-byte event hash rather than the bytes again means each event's bytes are hashed
 * exactly once (that hash is also the chain link), and an auditor holding one event computes its
 * leaf from `sha256sum`. The 0x00/0x01 prefixes keep leaves and interior nodes in disjoint domains,
 * so no interior node can be passed off as an event (RFC 9162 §2.1.1).
 */
import { HASH_BYTES, hashEquals, sha256 } from './hash';
import { leafHashInto, leafHashWords, nodeHashInto, nodeHashWords, wordsToBytes } from './sha256-small';

/** Root of the empty tree, SHA-256 of the empty string (also the root of an empty checkpoint). */
export const EMPTY_ROOT: Uint8Array = sha256(new Uint8Array(0));

export function leafHash(eventHash: Uint8Array): Uint8Array {
  const out = new Uint8Array(HASH_BYTES);
  leafHashInto(eventHash, 0, out, 0);
  return out;
}

export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  const out = new Uint8Array(HASH_BYTES);
  nodeHashInto(left, 0, right, 0, out, 0);
  return out;
}

/**
 * Streaming tree hash: push event hashes in order, read the root at any point. Keeps one perfect
 * subtree root per set bit of the size (O(log n) memory), which is how RFC 9162's left-balanced
 * tree decomposes: MTH(n) = node(perfect subtree of the largest power of two < n, MTH(rest)).
 * A producer uses it to hash a checkpoint's range as events are emitted; the verifier uses it to
 * recompute roots without holding the range.
 */
export class MerkleAccumulator {
  // 64 levels cover any size below 2^64; sizes here stay below 2^53. Subtree roots are kept as
  // 8 big-endian words each (sha256-small.ts, word forms), bytes only for the root.
  private readonly stack = new Int32Array(64 * 8);
  private depth = 0;
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Adds the event hash at `hashes[offset..offset+32)` as the next leaf. */
  push(hashes: Uint8Array, offset = 0): void {
    const st = this.stack;
    leafHashWords(hashes, offset, st, this.depth * 8);
    this.depth++;
    this.count++;
    // Each trailing zero bit of the new size is a pair of equal-sized subtrees to merge.
    let k = this.count;
    while (k % 2 === 0) {
      const right = (this.depth - 1) * 8;
      const left = right - 8;
      nodeHashWords(st, left, right, left);
      this.depth--;
      k /= 2;
    }
  }

  root(): Uint8Array {
    if (this.depth === 0) return EMPTY_ROOT.slice();
    const st = this.stack;
    const r = new Int32Array(st.subarray((this.depth - 1) * 8, this.depth * 8));
    const tmp = new Int32Array(16);
    for (let i = this.depth - 2; i >= 0; i--) {
      // node(subtree i, r): both children side by side in tmp, the result into r.
      tmp.set(st.subarray(i * 8, i * 8 + 8), 0);
      tmp.set(r, 8);
      nodeHashWords(tmp, 0, 8, 0);
      r.set(tmp.subarray(0, 8));
    }
    const out = new Uint8Array(HASH_BYTES);
    wordsToBytes(r, 0, out, 0);
    return out;
  }

  reset(): void {
    this.depth = 0;
    this.count = 0;
  }
}

/** Root over event hashes in order. */
export function merkleRoot(eventHashes: Iterable<Uint8Array>): Uint8Array {
  const acc = new MerkleAccumulator();
  for (const h of eventHashes) acc.push(h);
  return acc.root();
}

/** Largest power of two strictly less than n (n ≥ 2). */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function subtreeRoot(leaves: readonly Uint8Array[], lo: number, hi: number): Uint8Array {
  if (hi - lo === 1) return leaves[lo]!;
  const k = splitPoint(hi - lo);
  return nodeHash(subtreeRoot(leaves, lo, lo + k), subtreeRoot(leaves, lo + k, hi));
}

function path(m: number, leaves: readonly Uint8Array[], lo: number, hi: number, out: Uint8Array[]): void {
  const n = hi - lo;
  if (n <= 1) return;
  const k = splitPoint(n);
  if (m < k) {
    path(m, leaves, lo, lo + k, out);
    out.push(subtreeRoot(leaves, lo + k, hi));
  } else {
    path(m - k, leaves, lo + k, hi, out);
    out.push(subtreeRoot(leaves, lo, lo + k));
  }
}

/**
 * The audit path (RFC 9162 §2.1.3.1) proving the event at `index` (0-based within the range) is in
 * the tree over `eventHashes`: sibling hashes from the leaf up to the root.
 */
export function inclusionPath(eventHashes: readonly Uint8Array[], index: number): Uint8Array[] {
  if (!Number.isSafeInteger(index) || index < 0 || index >= eventHashes.length) {
    throw new RangeError(`leaf index ${index} outside a tree of ${eventHashes.length}`);
  }
  const leaves = eventHashes.map(leafHash);
  const out: Uint8Array[] = [];
  path(index, leaves, 0, leaves.length, out);
  return out;
}

/**
 * Recomputes the root from an event hash, its index, the tree size and its audit path
 * (RFC 9162 §2.1.3.2). Undefined when the path cannot belong to a tree of that size.
 */
export function rootFromInclusionPath(
  eventHash: Uint8Array,
  index: number,
  size: number,
  auditPath: readonly Uint8Array[],
): Uint8Array | undefined {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) return undefined;
  let fn = index;
  let sn = size - 1;
  let r = leafHash(eventHash);
  for (const p of auditPath) {
    if (p.length !== HASH_BYTES || sn === 0) return undefined;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      // Climb past levels where this node is a left child with no right sibling.
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : undefined;
}

export function verifyInclusionPath(
  eventHash: Uint8Array,
  index: number,
  size: number,
  auditPath: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  const computed = rootFromInclusionPath(eventHash, index, size, auditPath);
  return computed !== undefined && hashEquals(computed, root);
}
