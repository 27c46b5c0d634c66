/**
 * Worker threads for the hashing kernel. Verification is embarrassingly parallel per segment (each
 * checkpoint range is checked against its own signed anchors), so hashing is split across workers
 * and only the classification of the rare failing segment stays on the calling thread.
 *
 * Memory: the job and its results live in SharedArrayBuffers (the caller allocates them so), and
 * events are read in place when their bytes are views of SharedArrayBuffers, as a reader decoding
 * into shared slabs provides them. Other events are copied into shared slabs a chunk at a time,
 * overlapping with the workers hashing the previous chunk.
 * Starting a worker costs ~150 ms (it loads TypeScript through tsx): keep a pool for large runs.
 */
import { Worker } from 'node:worker_threads';
import { IntegrityError } from './errors';
import type { KernelJob, KernelOutput } from './verify-kernel';

/** Where the pool reads events from. */
export interface PoolEvents {
  bytes(i: number): Uint8Array;
  prevHash(i: number): Uint8Array;
}

const CHUNK_EVENTS = 65_536;
const SLAB_BYTES = 32 * 1024 * 1024;
/** Per event in `loc`: bytes slab, start, end, prevHash slab, start. */
const LOC = 5;

function isShared(a: ArrayBufferView): boolean {
  return a.buffer instanceof SharedArrayBuffer;
}

class Slabs {
  readonly list: SharedArrayBuffer[] = [];
  private readonly index = new Map<SharedArrayBuffer, number>();
  private copy: Uint8Array | undefined;
  private used = 0;

  /** Slab id and offset of `a` in shared memory, copying it there if it is not already. */
  place(a: Uint8Array): [number, number] {
    if (a.buffer instanceof SharedArrayBuffer) return [this.id(a.buffer), a.byteOffset];
    if (this.copy === undefined || this.used + a.length > this.copy.length) {
      this.copy = new Uint8Array(new SharedArrayBuffer(Math.max(SLAB_BYTES, a.length)));
      this.used = 0;
    }
    const at = this.used;
    this.copy.set(a, at);
    this.used += a.length;
    return [this.id(this.copy.buffer as SharedArrayBuffer), at];
  }

  private lastBuffer: SharedArrayBuffer | undefined;
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
   * Runs the kernel over every segment of `job` (events indexed 0..eventCount-1), writing into
   * `out`. The job's and the output's arrays must be backed by SharedArrayBuffers.
   */
  async run(events: PoolEvents, eventCount: number, job: KernelJob, out: KernelOutput): Promise<void> {
    for (const a of [job.order, job.segStart, job.segKind, out.hashes, out.roots, out.breaks]) {
      if (!isShared(a)) throw new IntegrityError('integrity_invalid_argument', 'VerifyPool.run needs SharedArrayBuffer-backed arrays');
    }
    const { order, segStart, segKind } = job;
    const loc = new Float64Array(new SharedArrayBuffer(Math.max(1, eventCount) * LOC * 8));
    const slabs = new Slabs();
    const running: Array<Promise<void>> = [];
    let seg = 0;
    while (seg < segKind.length) {
      // A chunk of whole segments, about CHUNK_EVENTS events.
      let end = seg + 1;
      while (end < segKind.length && segStart[end]! - segStart[seg]! < CHUNK_EVENTS) end++;
      for (let k = segStart[seg]!; k < segStart[end]!; k++) {
        const i = order[k]!;
        const b = events.bytes(i);
        const [bs, bo] = slabs.place(b);
        const [ps, po] = slabs.place(events.prevHash(i));
        const o = i * LOC;
        loc[o] = bs;
        loc[o + 1] = bo;
        loc[o + 2] = bo + b.length;
        loc[o + 3] = ps;
        loc[o + 4] = po;
      }
      running.push(this.dispatch(slabs.list.slice(), loc, job, out, seg, end));
      seg = end;
      // Let workers report while the next chunk is placed.
      await new Promise<void>((r) => setImmediate(r));
    }
    await Promise.all(running);
  }

  /** Splits segments [from, to) into one contiguous share per worker, balanced by event count. */
  private dispatch(
    slabs: SharedArrayBuffer[],
    loc: Float64Array,
    job: KernelJob,
    out: KernelOutput,
    from: number,
    to: number,
  ): Promise<void> {
    const ss = job.segStart;
    const total = ss[to]! - ss[from]!;
    const shares: Array<[number, number]> = [];
    let a = from;
    for (let w = 0; w < this.workers.length && a < to; w++) {
      const target = ss[from]! + (total * (w + 1)) / this.workers.length;
      let b = a + 1;
      while (b < to && (w === this.workers.length - 1 || ss[b]! < target)) b++;
      shares.push([a, b]);
      a = b;
    }
    const msg = {
      slabs,
      loc: loc.buffer,
      order: job.order.buffer,
      segStart: job.segStart.buffer,
      segKind: job.segKind.buffer,
      hashes: out.hashes.buffer,
      roots: out.roots.buffer,
      breaks: out.breaks.buffer,
    };
    return Promise.all(
      shares.map(([segFrom, segTo], w) => {
        const id = this.nextId++;
        const done = new Promise<void>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
        this.workers[w]!.postMessage({ id, segFrom, segTo, ...msg });
        return done;
      }),
    ).then(() => undefined);
  }
}
