/**
 * Verify throughput (BENCHMARKS.md: "verify throughput ≥ 1M events/s").
 *
 *   node --import tsx bench/verify.bench.ts [--events 1000000] [--runs 5] [--workers 2] [--size 500]
 *
 * Builds a realistic log in memory (4 producers, ~500-byte events, a checkpoint per 10,000 events
 * as the default cadence cuts them), then measures, side by side in one run:
 *   - the floor: one SHA-256 per event through node:crypto (hash() to a Buffer, hash() to a
 *     'binary' string copied into one array as the verifier does (sha256Into), createHash()), and
 *     bulk SHA-256 throughput (what the hardware does without per-call overhead);
 *   - the Merkle cost per event: JS leaf+node hashing vs node:crypto;
 *   - verifyProducerLog end to end, in the calling thread and in a worker pool;
 *   - checkpoint signing and verification (jose, Ed25519).
 * Medians over runs; CPU µs per event from process.cpuUsage() (all threads of the process).
 */
import { cpus, totalmem } from 'node:os';
import { createHash, hash as oneShot, randomBytes } from 'node:crypto';
import { sha256Into } from '../services/common/src/integrity/hash';
import { leafHash, nodeHash } from '../services/common/src/integrity/merkle';
import { InMemoryKeyStore, Keyring } from '../services/common/src/integrity/keyring';
import { ProducerChain } from '../services/common/src/integrity/producer';
import { signCheckpoint, verifyCheckpoint } from '../services/common/src/integrity/checkpoint';
import type { SignedCheckpoint } from '../services/common/src/integrity/checkpoint';
import { DEFAULT_CADENCE, maxGapUsFor } from '../services/common/src/integrity/scheduler';
import { verifyProducerLog } from '../services/common/src/integrity/verify';
import type { VerifyEvent } from '../services/common/src/integrity/verify';
import { VerifyPool } from '../services/common/src/integrity/verify-pool';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

const N = arg('events', 1_000_000);
const RUNS = arg('runs', 5);
const WORKERS = arg('workers', 2);
const SIZE = arg('size', 500);
const PRODUCERS = 4;

const median = (xs: number[]): number => {
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

interface Sample {
  readonly perSec: number;
  readonly cpuUsPerItem: number;
}

async function measure(items: number, fn: () => unknown): Promise<Sample> {
  const samples: Sample[] = [];
  for (let r = 0; r < RUNS; r++) {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await fn();
    const wall = Number(process.hrtime.bigint() - t0) / 1e9;
    const c = process.cpuUsage(c0);
    samples.push({ perSec: items / wall, cpuUsPerItem: (c.user + c.system) / items });
  }
  return { perSec: median(samples.map((s) => s.perSec)), cpuUsPerItem: median(samples.map((s) => s.cpuUsPerItem)) };
}

function line(name: string, s: Sample, unit = 'events/s'): void {
  console.log(`${name.padEnd(58)} ${(s.perSec / 1e6).toFixed(3).padStart(8)} M ${unit}   ${s.cpuUsPerItem.toFixed(3).padStart(7)} CPU µs each`);
}

interface Log {
  readonly events: VerifyEvent[];
  readonly checkpoints: SignedCheckpoint[];
  readonly jwks: ReturnType<Keyring['jwks']>;
  readonly endUs: number;
}

/**
 * Events as a reader decoding a store page would hold them: bytes are views into large
 * SharedArrayBuffer slabs and prevHash is a view of the bytes it was decoded from (the stand-in
 * layout puts it first: prevHash, then a JSON header with the other metadata, then payload).
 */
async function buildLog(): Promise<Log> {
  const ring = await Keyring.open(new InMemoryKeyStore());
  await ring.rotate();
  const startUs = Date.now() * 1000;
  const chains = Array.from({ length: PRODUCERS }, (_, p) => ProducerChain.start({ producer: `gateway-${p}`, epoch: `epoch-${p}`, startUs }));
  const pending = new Array<number>(PRODUCERS).fill(0);
  const events: VerifyEvent[] = [];
  const checkpoints: SignedCheckpoint[] = [];
  const noise = randomBytes(1 << 16);
  const newSlab = (): Uint8Array => new Uint8Array(new SharedArrayBuffer(64 << 20));
  let slab = newSlab();
  let used = 0;
  let t = startUs;
  for (let i = 0; i < N; i++) {
    const p = i % PRODUCERS;
    const chain = chains[p]!;
    const meta = chain.nextMetadata();
    t += 1;
    const eventId = `0196b1f2-6c1e-7a3b-9d4e-${i.toString(16).padStart(12, '0')}`;
    const head = Buffer.from(JSON.stringify({ eventId, producer: `gateway-${p}`, epoch: `epoch-${p}`, sequence: meta.sequence, timeUs: t }));
    const len = Math.max(SIZE, 32 + head.length + 16);
    if (used + len > slab.length) {
      slab = newSlab();
      used = 0;
    }
    const bytes = slab.subarray(used, used + len);
    used += len;
    bytes.set(meta.prevHash, 0);
    bytes.set(head, 32);
    const off = (i * 131) % (noise.length - len);
    bytes.set(noise.subarray(off, off + len - 32 - head.length), 32 + head.length);
    chain.append(bytes);
    events.push({ eventId, producer: `gateway-${p}`, epoch: `epoch-${p}`, sequence: meta.sequence, prevHash: bytes.subarray(0, 32), timeUs: t, bytes });
    if (++pending[p]! >= DEFAULT_CADENCE.everyEvents) {
      checkpoints.push(await chain.checkpoint(ring.signingKey(), t));
      pending[p] = 0;
    }
  }
  for (const chain of chains) checkpoints.push(await chain.checkpoint(ring.signingKey(), ++t));
  return { events, checkpoints, jwks: ring.jwks(), endUs: t };
}

async function main(): Promise<void> {
  console.log(`verify benchmark: ${N.toLocaleString()} events of ${SIZE} B, ${PRODUCERS} producers, ${RUNS} runs (medians)`);
  console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}`);
  const t0 = performance.now();
  const log = await buildLog();
  console.log(`built log in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${log.checkpoints.length} checkpoints\n`);
  const { events } = log;

  console.log('— floor: SHA-256 of each event once —');
  line('node:crypto hash() per event, Buffer result', await measure(N, () => { for (const e of events) oneShot('sha256', e.bytes, 'buffer'); }));
  const into = new Uint8Array(N * 32);
  line("node:crypto hash() per event, into an array (sha256Into)", await measure(N, () => { for (let i = 0; i < N; i++) sha256Into(events[i]!.bytes, into, i * 32); }));
  line('node:crypto createHash() per event', await measure(N, () => { for (const e of events) createHash('sha256').update(e.bytes).digest(); }));
  const bulk = Buffer.alloc(256 << 20, 7);
  const bulkS = await measure(1, () => oneShot('sha256', bulk, 'buffer'));
  const mbps = (bulk.length * bulkS.perSec) / 1e6;
  console.log(`${'bulk SHA-256 (256 MiB, one call)'.padEnd(58)} ${mbps.toFixed(0).padStart(8)} MB/s  → ${(mbps / SIZE).toFixed(2)} M events/s without per-call overhead`);

  console.log('\n— Merkle cost per event (1 leaf + ~1 node) —');
  const h = oneShot('sha256', events[0]!.bytes, 'buffer');
  const M = Math.min(N, 1_000_000);
  line('JS leaf+node (sha256-small.ts)', await measure(M, () => { for (let i = 0; i < M; i++) nodeHash(leafHash(h), h); }));
  line('node:crypto leaf+node', await measure(M, () => {
    for (let i = 0; i < M; i++) {
      const l = oneShot('sha256', Buffer.concat([Buffer.of(0), h]), 'buffer');
      oneShot('sha256', Buffer.concat([Buffer.of(1), l, h]), 'buffer');
    }
  }));

  const input = { events, checkpoints: log.checkpoints, jwks: log.jwks, maxGapUs: maxGapUsFor(DEFAULT_CADENCE), window: { fromUs: 0, toUs: log.endUs } };
  console.log('\n— verifyProducerLog (chains + Merkle roots + checkpoint signatures) —');
  const check = await verifyProducerLog(input);
  if (!check.ok || check.stats.attestedEvents !== N) throw new Error(`benchmark log does not verify: ${JSON.stringify(check.findings.slice(0, 3))}`);
  line('in the calling thread', await measure(N, () => verifyProducerLog(input)));
  line("in the calling thread, roots: 'on-failure'", await measure(N, () => verifyProducerLog(input, { roots: 'on-failure' })));
  const pool = await VerifyPool.create(WORKERS);
  try {
    line(`${WORKERS} workers, events in shared slabs (zero-copy)`, await measure(N, () => verifyProducerLog(input, { pool })));
    line(`${WORKERS} workers, zero-copy, roots: 'on-failure'`, await measure(N, () => verifyProducerLog(input, { pool, roots: 'on-failure' })));
    const copied = events.map((e) => {
      const bytes = new Uint8Array(e.bytes);
      return { ...e, bytes, prevHash: bytes.subarray(0, 32) };
    });
    line(`${WORKERS} workers, events copied into shared memory`, await measure(N, () => verifyProducerLog({ ...input, events: copied }, { pool })));
  } finally {
    await pool.close();
  }
  line(`${WORKERS} workers, pool started per call (+~150 ms each)`, await measure(N, () => verifyProducerLog(input, { workers: WORKERS })));

  console.log('\n— checkpoint signatures (one per checkpoint, never per event) —');
  const ring = await Keyring.open(new InMemoryKeyStore());
  await ring.rotate();
  const f = log.checkpoints[0]!.fields;
  const K = 2000;
  line('sign (jose CompactSign, Ed25519)', await measure(K, async () => { for (let i = 0; i < K; i++) await signCheckpoint(f, ring.signingKey()); }), 'ops/s  ');
  const cp = await signCheckpoint(f, ring.signingKey());
  line('verify (jose compactVerify, Ed25519)', await measure(K, async () => { for (let i = 0; i < K; i++) await verifyCheckpoint(cp.jws, ring.jwks()); }), 'ops/s  ');
}

await main();
