import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sha256, toHex } from './hash';
import {
  EMPTY_ROOT,
  MerkleAccumulator,
  inclusionPath,
  leafHash,
  merkleRoot,
  nodeHash,
  rootFromInclusionPath,
  verifyInclusionPath,
} from './merkle';

// RFC 6962's reference leaves and tree heads (as used across CT implementations). Our tree hashes
// 32-byte event hashes as leaf entries; the tree logic is checked against the reference by
// feeding it leaf hashes of the reference entries through a tree built from leaf hashes directly.
const ENTRIES = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map(
  (h) => new Uint8Array(Buffer.from(h, 'hex')),
);
const ROOTS = [
  'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
];
const rfcLeaf = (d: Uint8Array): Uint8Array => sha256(new Uint8Array([0, ...d]));

/** RFC 6962 MTH straight from the definition, over already-hashed leaves. */
function referenceRoot(leaves: Uint8Array[]): Uint8Array {
  if (leaves.length === 0) return sha256(new Uint8Array(0));
  if (leaves.length === 1) return leaves[0]!;
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return sha256(new Uint8Array([1, ...referenceRoot(leaves.slice(0, k)), ...referenceRoot(leaves.slice(k))]));
}

const hashes = (n: number, salt = 0): Uint8Array[] =>
  Array.from({ length: n }, (_, i) => sha256(new Uint8Array([i & 255, i >> 8, salt])));

describe('Merkle tree (RFC 9162)', () => {
  it('Given the RFC 6962 reference entries, When hashed with the reference definition, Then every tree head 0..8 matches', () => {
    const leaves = ENTRIES.map(rfcLeaf);
    for (let n = 0; n <= 8; n++) expect(toHex(referenceRoot(leaves.slice(0, n)))).toBe(ROOTS[n]);
    expect(toHex(EMPTY_ROOT)).toBe(ROOTS[0]);
  });

  it('Given event hashes, When the accumulator and the definition hash them, Then roots agree for every size 0..70', () => {
    const hs = hashes(70);
    const acc = new MerkleAccumulator();
    expect(acc.root()).toEqual(EMPTY_ROOT);
    for (let n = 1; n <= 70; n++) {
      acc.push(hs[n - 1]!);
      expect(toHex(acc.root())).toBe(toHex(referenceRoot(hs.slice(0, n).map(leafHash))));
    }
    expect(merkleRoot(hs)).toEqual(acc.root());
  });

  it('Given the RFC 6962 reference proofs, When the audit path is recomputed, Then it leads to the reference root', () => {
    // RFC 6962 reference: leaf 0 and leaf 5 of the 8-leaf tree, leaf 2 of the 3-leaf tree.
    const leaves = ENTRIES.map(rfcLeaf);
    const cases = [
      { index: 0, size: 8, path: ['96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7', '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e', '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4'] },
      { index: 5, size: 8, path: ['bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b', 'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0', 'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7'] },
      { index: 2, size: 3, path: ['fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125'] },
    ];
    for (const c of cases) {
      // rootFromInclusionPath hashes its first argument as a leaf; walk the reference path by hand.
      let fn = c.index;
      let sn = c.size - 1;
      let r = leaves[c.index]!;
      for (const p of c.path.map((h) => new Uint8Array(Buffer.from(h, 'hex')))) {
        if (fn % 2 === 1 || fn === sn) {
          r = nodeHash(p, r);
          while (fn % 2 === 0 && fn !== 0) {
            fn >>= 1;
            sn >>= 1;
          }
        } else r = nodeHash(r, p);
        fn >>= 1;
        sn >>= 1;
      }
      expect(toHex(r)).toBe(ROOTS[c.size]);
    }
  });

  it('Given trees of every size 1..40, When each leaf gets an audit path, Then the path is the RFC one and verifies', () => {
    for (let n = 1; n <= 40; n++) {
      const hs = hashes(n, n);
      const root = merkleRoot(hs);
      for (let i = 0; i < n; i++) {
        const path = inclusionPath(hs, i);
        expect(verifyInclusionPath(hs[i]!, i, n, path, root)).toBe(true);
        expect(toHex(rootFromInclusionPath(hs[i]!, i, n, path)!)).toBe(toHex(root));
      }
    }
  });

  // (The tree size is not part of this check on purpose: it is bound to the root by the signed
  // checkpoint, and RFC 9162 paths for some neighbouring sizes coincide.)
  it('Given a valid proof, When the event, the index or a path entry changes, Then it no longer verifies', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 60 }), fc.nat(), fc.nat(), (n, iRaw, which) => {
        const hs = hashes(n, 7);
        const i = iRaw % n;
        const root = merkleRoot(hs);
        const path = inclusionPath(hs, i);
        const other = hs[(i + 1) % n]!;
        expect(verifyInclusionPath(other, i, n, path, root)).toBe(false);
        expect(verifyInclusionPath(hs[i]!, (i + 1) % n, n, path, root)).toBe(false);
        if (path.length > 0) {
          const bad = path.map((p) => p.slice());
          bad[which % bad.length]![0]! ^= 1;
          expect(verifyInclusionPath(hs[i]!, i, n, bad, root)).toBe(false);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('Given an interior node, When it is presented as an event hash, Then it is not a member (leaves and nodes are domain-separated)', () => {
    const hs = hashes(4);
    const root = merkleRoot(hs);
    const left = nodeHash(leafHash(hs[0]!), leafHash(hs[1]!));
    // A 2-leaf "tree" of interior nodes has the same root only without the 0x00/0x01 prefixes.
    expect(verifyInclusionPath(left, 0, 2, [nodeHash(leafHash(hs[2]!), leafHash(hs[3]!))], root)).toBe(false);
  });
});
