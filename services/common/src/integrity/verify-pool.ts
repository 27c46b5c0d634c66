/**
 * Worker threads for the verification kernel (verify-kernel.ts). Hashing is independent per event
 * and links and roots per segment (each checkpoint range is checked against its own signed
 * anchors), so both phases are split across workers; only planning, the evaluation of results and
 * the classification of the rare failing segment stay on the calling thread, and planning runs
 * while the workers hash.
 *
 * Memory: the job and its results live in SharedArrayBuffers (the caller allocates them so), and
 * events are read in place when their bytes are views of SharedArrayBuffers, as a reader decoding
 * into shared slabs provides them. Other events are copied into shared slabs a chunk at a time,
 * overlapping with the workers hashing the previous chunk.
 * Starting a worker costs ~150 ms (it loads TypeScript through tsx): keep a pool for large runs.
 */
import { Worker } from 'node:worker_threads';
import { IntegrityError } from './errors';
import { LOC, SEGMENT_HASH_ONLY, SEGMENT_LINKS_ROOT } from './verify-kernel';
import type { KernelJob, KernelOutput } from './verify-kernel';

/** Where the pool reads events from (undefined: nothing to read, see `hash`). */
export interface PoolEvents {
  bytes(i: number): Uint8Array | undefined;
  prevHash(i: number): Uint8Array | undefined;
}

const CHUNK_EVENTS = 65_536;
const SLAB_BYTES = 32 * 1024 * 1024;

/** A view's memory, as the worker rebuilds it (views may share one SharedArrayBuffer). */
function part(a: ArrayBufferView): [ArrayBufferLike, number, number] {
  return [a.buffer, a.byteOffset, a.byteLength];
}

function isShared(a: ArrayBufferView): boolean {
  return a.buffer instanceof SharedArrayBuffer;
}

class Slabs {
  readonly list: SharedArrayBuffer[] = [];
  private readonly index = new Map<SharedArrayBuffer, number>();
  private copy: Uint8Array | undefined;
  private used = 0;

  /**
   * Writes the slab id and offset of `a` in shared memory to loc[o], loc[o+1] (copying it there if
   * it is not already) and returns the offset. No tuple: this runs twice per event.
   */
  place(a: Uint8Array, loc: Float64Array, o: number): number {
    const buf = a.buffer;
    let at: number;
    if (buf === this.lastBuffer) {
      loc[o] = this.lastId;
      at = a.byteOffset;
    } else if (buf instanceof SharedArrayBuffer) {
      loc[o] = this.id(buf);
      at = a.byteOffset;
    } else {
      if (this.copy === undefined || this.used + a.length > this.copy.length) {
        this.copy = new Uint8Array(new SharedArrayBuffer(Math.max(SLAB_BYTES, a.length)));
        this.used = 0;
      }
      at = this.used;
      this.copy.set(a, at);
      this.used += a.length;
      loc[o] = this.id(this.copy.buffer as SharedArrayBuffer);
    }
    loc[o + 1] = at;
    return at;
  }

  private lastBuffer: ArrayBufferLike | undefined;
  private lastId = -1;

  private id(b: SharedArrayBuffer): number {
    if (b === this.lastBuffer) return this.lastId; // consecutive events share a slab
    let k = this.index.get(b);
    if (k === undefined) {
      k = this.list.length;
      this.list.push(b);
      this.index.set(b, k);
    }
    this.lastBuffer = b;
    this.lastId = k;
    return k;
  }
}

export class VerifyPool {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();

  private constructor(private readonly workers: Worker[]) {
    const failAll = (err: Error): void => {
      for (const p of this.waiting.values()) p.reject(err);
      this.waiting.clear();
    };
    for (const w of workers) {
      w.on('message', (m: { id?: number; error?: string }) => {
        if (m.id === undefined) return;
        const p = this.waiting.get(m.id);
        this.waiting.delete(m.id);
        if (m.error === undefined) p?.resolve();
        else p?.reject(new IntegrityError('integrity_invalid_argument', `verify worker failed: ${m.error}`));
      });
      w.on('error', failAll);
      w.on('exit', (code) => {
        if (this.waiting.size > 0) failAll(new IntegrityError('integrity_invalid_argument', `verify worker exited (${code})`));
      });
    }
  }

  /** Starts `size` workers and waits until each has loaded the kernel. */
  static async create(size: number): Promise<VerifyPool> {
    if (!Number.isSafeInteger(size) || size < 1) {
      throw new IntegrityError('integrity_invalid_argument', 'a verify pool needs at least one worker');
    }
    const url = new URL('./verify-worker.mjs', import.meta.url);
    const workers = await Promise.all(
      Array.from(
        { length: size },
        () =>
          new Promise<Worker>((resolve, reject) => {
            const w = new Worker(url);
            w.once('error', reject);
            w.once('message', () => resolve(w));
          }),
      ),
    );
    return new VerifyPool(workers);
  }

  get size(): number {
    return this.workers.length;
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  /**
   * Phase 1 (verify-kernel.ts): hashes events 0..count-1 in storage order into `out.hashes` and
   * copies their prevHash into `out.prevs` (both backed by SharedArrayBuffers). `bytes(i)` undefined:
   * nothing to hash for event i (its hash is written by the caller); `prevHash(i)` undefined: no
   * valid prevHash. Events are placed and dispatched a chunk at a time, synchronously, so the workers
   * start on the first chunk while the rest is placed, and hash while the caller goes on planning;
   * the returned promise settles when every chunk is hashed.
   */
  hash(events: PoolEvents, count: number, out: Pick<KernelOutput, 'hashes' | 'prevs'>): Promise<void> {
    for (const a of [out.hashes, out.prevs]) {
      if (!isShared(a)) throw new IntegrityError('integrity_invalid_argument', 'VerifyPool.hash needs SharedArrayBuffer-backed arrays');
    }
    const loc = new Float64Array(new SharedArrayBuffer(Math.max(1, count) * LOC * 8));
    const slabs = new Slabs();
    const running: Array<Promise<void>> = [];
    const n = this.workers.length;
    for (let from = 0; from < count; from += CHUNK_EVENTS) {
      const to = Math.min(count, from + CHUNK_EVENTS);
      for (let i = from; i < to; i++) {
        const o = i * LOC;
        const b = events.bytes(i);
        if (b === undefined) loc[o] = -1;
        else {
          const bo = slabs.place(b, loc, o);
          loc[o + 2] = bo + b.length;
        }
        const p = events.prevHash(i);
        if (p === undefined) loc[o + 3] = -1;
        else slabs.place(p, loc, o + 3);
      }
      const list = slabs.list.slice();
      // One contiguous share per worker.
      for (let w = 0; w < n; w++) {
        const a = from + Math.floor(((to - from) * w) / n);
        const b = from + Math.floor(((to - from) * (w + 1)) / n);
        if (b > a) running.push(this.send(w, { op: 'hash', slabs: list, loc: loc.buffer, hashes: part(out.hashes), prevs: part(out.prevs), from: a, to: b }));
      }
    }
    return Promise.all(running).then(() => undefined);
  }

  /**
   * Phase 2 (verify-kernel.ts): links and roots over every segment of `job`, from the hashes and
   * prevs of phase 1, writing `out.roots` and `out.breaks`. All arrays must be backed by
   * SharedArrayBuffers. Segments are shared between workers by their cost (a root costs ~50 times
   * a link check; hash-only segments cost nothing here).
   */
  async run(job: KernelJob, out: KernelOutput): Promise<void> {
    for (const a of [job.order, job.segStart, job.segKind, out.hashes, out.prevs, out.roots, out.breaks]) {
      if (!isShared(a)) throw new IntegrityError('integrity_invalid_argument', 'VerifyPool.run needs SharedArrayBuffer-backed arrays');
    }
    const { segStart, segKind } = job;
    const segs = segKind.length;
    const cost = (s: number): number => (segStart[s + 1]! - segStart[s]!) * (segKind[s] === SEGMENT_LINKS_ROOT ? 50 : segKind[s] === SEGMENT_HASH_ONLY ? 0 : 1);
    let total = 0;
    for (let s = 0; s < segs; s++) total += cost(s);
    if (total === 0) return;
    const msg = {
      op: 'link',
      order: job.order.buffer,
      segStart: segStart.buffer,
      segKind: segKind.buffer,
      hashes: part(out.hashes),
      prevs: part(out.prevs),
      roots: part(out.roots),
      breaks: part(out.breaks),
    };
    const n = this.workers.length;
    const running: Array<Promise<void>> = [];
    let a = 0;
    let acc = 0;
    for (let w = 0; w < n && a < segs; w++) {
      const target = (total * (w + 1)) / n;
      let b = a;
      while (b < segs && (w === n - 1 || acc < target)) acc += cost(b++);
      if (b > a) running.push(this.send(w, { ...msg, segFrom: a, segTo: b }));
      a = b;
    }
    await Promise.all(running);
  }

  private send(w: number, m: Record<string, unknown>): Promise<void> {
    const id = this.nextId++;
    const done = new Promise<void>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    this.workers[w]!.postMessage({ id, ...m });
    return done;
  }
}
