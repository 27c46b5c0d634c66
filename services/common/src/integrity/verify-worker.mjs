// Worker thread for VerifyPool: runs the verification kernel over shared memory.
// Plain JavaScript so it loads without a TypeScript loader; it then loads the kernel through tsx
// (how this repository runs TypeScript) or, in a compiled build, the emitted .js next to it.
import { existsSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';

const tsKernel = new URL('./verify-kernel.ts', import.meta.url);
let kernel;
if (existsSync(tsKernel)) {
  const { register } = await import('tsx/esm/api');
  register();
  kernel = await import(tsKernel.href);
} else {
  kernel = await import(new URL('./verify-kernel.js', import.meta.url).href);
}

const LOC = 5; // per event: bytes slab, start, end, prevHash slab, start
const views = new WeakMap();
const view = (sab) => {
  let v = views.get(sab);
  if (v === undefined) views.set(sab, (v = new Uint8Array(sab)));
  return v;
};

parentPort.on('message', (m) => {
  try {
    const slabs = m.slabs.map(view);
    const loc = new Float64Array(m.loc);
    const events = {
      bytes: (i) => slabs[loc[i * LOC]].subarray(loc[i * LOC + 1], loc[i * LOC + 2]),
      prevArray: (i) => slabs[loc[i * LOC + 3]],
      prevOffset: (i) => loc[i * LOC + 4],
    };
    const job = { order: new Int32Array(m.order), segStart: new Int32Array(m.segStart), segKind: new Uint8Array(m.segKind) };
    const out = { hashes: new Uint8Array(m.hashes), roots: new Uint8Array(m.roots), breaks: new Int32Array(m.breaks) };
    kernel.runKernel(events, job, out, m.segFrom, m.segTo);
    parentPort.postMessage({ id: m.id });
  } catch (err) {
    parentPort.postMessage({ id: m.id, error: String(err && err.stack ? err.stack : err) });
  }
});
parentPort.postMessage({ ready: true });
