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

const views = new WeakMap();
const view = (sab) => {
  let v = views.get(sab);
  if (v === undefined) views.set(sab, (v = new Uint8Array(sab)));
  return v;
};

// [buffer, byteOffset, byteLength] as sent by verify-pool.ts part().
const bytesOf = ([b, o, n]) => new Uint8Array(b, o, n);
const int32sOf = ([b, o, n]) => new Int32Array(b, o, n / 4);

parentPort.on('message', (m) => {
  try {
    if (m.op === 'hash') {
      kernel.hashLocated(m.slabs.map(view), new Float64Array(m.loc), m.from, m.to, bytesOf(m.hashes), bytesOf(m.prevs));
    } else {
      const job = { order: new Int32Array(m.order), segStart: new Int32Array(m.segStart), segKind: new Uint8Array(m.segKind) };
      const out = { hashes: bytesOf(m.hashes), prevs: bytesOf(m.prevs), roots: bytesOf(m.roots), breaks: int32sOf(m.breaks) };
      kernel.runKernel(job, out, m.segFrom, m.segTo);
    }
    parentPort.postMessage({ id: m.id });
  } catch (err) {
    parentPort.postMessage({ id: m.id, error: String(err && err.stack ? err.stack : err) });
  }
});
parentPort.postMessage({ ready: true });
