/**
 * Offline verification of producers' logs against their signed checkpoints and the JWKS.
 *
 * How it decides (docs/integrity.md has the long form):
 * 1. Checkpoints are verified first; only validly signed ones (trusted) anchor anything.
 * 2. Each producer/epoch's events are laid out by sequence and cut into segments: a trusted
 *    checkpoint's range (anchored at both ends: the previous checkpoint's lastHash and its own
 *    lastHash, plus its Merkle root), a hole between trusted checkpoints (anchored by the chain
 *    around it), and the uncovered tail.
 * 3. The fast path hashes every event once and checks links and roots segment by segment. A
 *    segment that passes is attested; nothing else runs for it.
 * 4. A failing segment is classified from its chain links. Altering an event changes its hash, so
 *    only the link to its successor breaks (both of its links if its prevHash field was changed);
 *    a deletion leaves a sequence gap with no broken link; an inserted event is an extra candidate
 *    for a sequence that the successor's prevHash does not name. Explanations are tried in order of
 *    plausibility and the first the checkpoint's signed Merkle root confirms wins (the root is
 *    recomputed with the original hashes the neighbours recorded), so one altered event is one
 *    `altered` finding, not a cascade.
 * 5. Storage order is checked separately: events out of sequence order (not in the longest
 *    increasing run) are `reordered`; their content is intact.
 * 6. Time: consecutive checkpoints more than maxGapUs apart, and a producer whose last checkpoint
 *    is older than maxGapUs at the end of the window, are provable silent gaps.
 */
import type { JSONWebKeySet } from 'jose';
import { JwksKeys, verifyCheckpoint } from './checkpoint';
import type { CheckpointFields, CheckpointVerdict, SignedCheckpoint } from './checkpoint';
import { HASH_BYTES, hashEquals, hashEqualsAt, isZeroHash, sha256, sha256Into, toBase64Url, toHex } from './hash';
import { EMPTY_ROOT, MerkleAccumulator, inclusionPath, rootFromInclusionPath } from './merkle';
import { SEGMENT_HASH_ONLY, SEGMENT_LINKS, SEGMENT_LINKS_ROOT, runKernel } from './verify-kernel';
import type { KernelOutput } from './verify-kernel';
import { VerifyPool } from './verify-pool';

export interface VerifyEvent {
  readonly eventId: string;
  readonly producer: string;
  readonly epoch: string | number;
  readonly sequence: number;
  readonly prevHash: Uint8Array;
  readonly timeUs: number;
  /** The complete encoded event (single-object header included). */
  readonly bytes: Uint8Array;
  /**
   * The event's chain hash, when `bytes` are not the chained event but a redaction of it that a
   * processor attested (data.masked redactedEventDigest): the chain, the Merkle roots and the
   * checkpoints are then checked with this hash. The caller must have checked the attestation
   * (verify-events.ts does); unattested, this would let any bytes stand in for an event.
   */
  readonly hash?: Uint8Array;
  /**
   * Stored by a second inserter (the DLP content stage stores content events after the evidence
   * writer stored the rest): its storage position says nothing about order, so the `reordered`
   * check leaves it out. Its chain position and content are checked as for any event.
   */
  readonly unordered?: boolean;
}

export interface VerifyInput {
  /**
   * Events, with metadata decoded from `bytes` by the codec (never from separate store columns,
   * or a column-only edit would go unseen). Iteration order is taken as storage order for the
   * `reordered` check: supply each producer's events in the order they were stored.
   */
  readonly events: Iterable<VerifyEvent>;
  /** Checkpoints: compact JWS strings or SignedCheckpoints (only their `jws` is trusted). */
  readonly checkpoints: Iterable<SignedCheckpoint | string>;
  readonly jwks: JSONWebKeySet;
  /**
   * The period being verified. `toUs` is "now" for the tail: pass it, or a truncated tail (events
   * and checkpoints deleted together) is only visible relative to the latest record seen.
   * Checkpoints starting at or before `fromUs` need not have their predecessor supplied.
   */
  readonly window?: { readonly fromUs: number; readonly toUs: number };
  /** Longest silence that is not a finding: the checkpoint cadence plus a tolerance (maxGapUsFor). */
  readonly maxGapUs: number;
}

export interface VerifyOptions {
  /** Check storage order (`reordered`). Default true; turn off when the input is merged from sources without a per-producer order. */
  readonly checkOrder?: boolean;
  /** Hash in these worker threads (see VerifyPool); default: the calling thread. */
  readonly pool?: VerifyPool;
  /** Convenience: create a pool of this many workers for this call only. */
  readonly workers?: number;
  /** At most this many event ids per finding (the sequence range is always complete). Default 50. */
  readonly maxEventIdsPerFinding?: number;
  /**
   * 'all' (default): recompute every checkpoint's Merkle root. 'on-failure': when a range's chain
   * verifies end to end between its two signed anchors, skip its root. Every alteration, deletion,
   * insertion and reordering is still detected (the signed lastHash and the chain pin every byte);
   * what is skipped is the check that the producer computed the root right, which only single-event
   * inclusion proofs rely on. Roughly halves the hashing per event (docs/integrity.md, Throughput).
   */
  readonly roots?: 'all' | 'on-failure';
}

export type FindingCode =
  /** An event's bytes changed: its hash is not the one its successor (or the checkpoint) recorded. */
  | 'altered'
  /** Sequences that the chain or a checkpoint proves existed are missing. */
  | 'deleted'
  /** An event that does not belong: a second event for a sequence, after a closed epoch, or in an epoch no checkpoint or link vouches for. */
  | 'inserted'
  /** Events stored out of sequence order (content intact). */
  | 'reordered'
  /** The chain or the checkpoint chain is inconsistent in a way no single event explains (anchors disagree, forks, an epoch not linked to the last checkpoint). */
  | 'broken_chain'
  /** A checkpoint that must exist does not: named by a successor, or due for events still uncovered. */
  | 'checkpoint_missing'
  /** Longer than maxGapUs without any checkpoint from a producer. */
  | 'time_gap'
  /** A checkpoint signed with a kid that is not in the JWKS. */
  | 'unknown_key'
  /** A checkpoint whose signature does not verify, or that is not a well-formed checkpoint. */
  | 'bad_checkpoint_signature'
  /** A checkpoint signed by a key outside the key's validity (before creation, after retirement). */
  | 'key_not_valid'
  /** A checkpoint whose Merkle root or count does not match the events the chain proves it covers. */
  | 'merkle_mismatch';

export interface Finding {
  readonly code: FindingCode;
  readonly producer: string;
  readonly epoch: string | null;
  /** Inclusive sequence range concerned, when there is one. */
  readonly sequences: { readonly from: number; readonly to: number } | null;
  /** Ids of the events concerned (none for deleted ones, which are gone). */
  readonly eventIds: readonly string[];
  readonly detail: string;
  /** The checkpoint concerned, for checkpoint findings. */
  readonly checkpoint?: {
    readonly keyId: string;
    readonly firstSequence: number;
    readonly lastSequence: number;
    readonly hash: string;
  };
  /** The silent period, for time findings. */
  readonly timeUs?: { readonly from: number; readonly to: number };
  /** True when a signed Merkle root confirms the finding (the original hash is proven). */
  readonly confirmed?: boolean;
}

/** Events after the last checkpoint that are not due for one yet: not attested, not suspicious. */
export interface PendingRange {
  readonly producer: string;
  readonly epoch: string;
  readonly from: number;
  readonly to: number;
  readonly count: number;
}

export interface VerifyReport {
  readonly ok: boolean;
  readonly findings: readonly Finding[];
  readonly pending: readonly PendingRange[];
  readonly stats: {
    readonly events: number;
    readonly checkpoints: number;
    readonly trustedCheckpoints: number;
    readonly producers: number;
    readonly epochs: number;
    /** Events proven by a signed checkpoint (directly or through the chain into one). */
    readonly attestedEvents: number;
    readonly pendingEvents: number;
  };
}

// ---------------------------------------------------------------------------------------------
// Internal structures

interface Cp {
  readonly cp: SignedCheckpoint;
  readonly f: CheckpointFields;
  readonly key: string; // hex of its hash
  readonly trusted: boolean;
}

const enum Link {
  Undef = 0,
  Ok = 1,
  Broken = 2,
}

type Mode = 'payload' | 'prevHash';

type SegmentKind = 'covered' | 'hole' | 'pre' | 'tail';

interface Segment {
  readonly kind: SegmentKind;
  readonly producer: string;
  readonly epoch: string;
  readonly first: number;
  readonly last: number;
  readonly cp: Cp | undefined;
  /** Event indices in this segment's sequence range, sorted by (sequence, storage order). */
  readonly evs: number[];
  readonly clean: boolean;
  a: Uint8Array | null;
  b: Uint8Array | null;
  /** Index into the kernel job. */
  jobIndex: number;
  /** The whole epoch's events by (sequence, storage order), for context across segment edges. */
  readonly epochSorted: number[];
}

interface SegmentResult {
  /** The hash the segment's first event recorded for its predecessor, when trustworthy. */
  readonly firstCommit: Uint8Array | null;
  /** Events taken as the rightful occupants of their sequence. */
  readonly chosen: number[];
  readonly attested: number;
}

const ZERO_KEY = toHex(new Uint8Array(HASH_BYTES));

class Report {
  readonly findings: Finding[] = [];
  readonly pending: PendingRange[] = [];
  constructor(readonly maxIds: number) {}

  add(f: Finding): void {
    this.findings.push(f);
  }

  ids(events: readonly VerifyEvent[], idx: readonly number[]): string[] {
    return idx.slice(0, this.maxIds).map((i) => events[i]!.eventId);
  }
}

function cpRef(c: Cp): NonNullable<Finding['checkpoint']> {
  return {
    keyId: c.f.keyId,
    firstSequence: c.f.firstSequence,
    lastSequence: c.f.lastSequence,
    hash: toBase64Url(c.cp.hash),
  };
}

function short(h: Uint8Array | null): string {
  return h === null ? '(unknown)' : toHex(h).slice(0, 16);
}

function range(first: number, last: number): string {
  return first === last ? `sequence ${first}` : `sequences ${first}..${last}`;
}

// ---------------------------------------------------------------------------------------------

/**
 * Verifies events against checkpoints and keys. Returns findings; never throws for tampering.
 * Async because checkpoint signatures are verified with WebCrypto (jose), in parallel.
 */
export async function verifyProducerLog(input: VerifyInput, options: VerifyOptions = {}): Promise<VerifyReport> {
  let pool = options.pool;
  const own = pool === undefined && (options.workers ?? 0) > 0 ? await VerifyPool.create(options.workers!) : undefined;
  pool ??= own;
  try {
    return await verifyWith(input, options, pool);
  } finally {
    await own?.close();
  }
}

async function verifyWith(input: VerifyInput, options: VerifyOptions, pool: VerifyPool | undefined): Promise<VerifyReport> {
  const report = new Report(options.maxEventIdsPerFinding ?? 50);
  const events: readonly VerifyEvent[] = [...input.events];
  const keys = new JwksKeys(input.jwks);

  // Signatures verify on libuv's thread pool; bound how many are in flight (a year of idle
  // checkpoints is half a million per producer). Started first so the first batch verifies while
  // this thread hashes.
  const all = [...input.checkpoints];
  const verifying = (async (): Promise<CheckpointVerdict[]> => {
    const verdicts: CheckpointVerdict[] = [];
    for (let k = 0; k < all.length; k += 1024) {
      verdicts.push(...(await Promise.all(all.slice(k, k + 1024).map((c) => verifyCheckpoint(c, keys)))));
    }
    return verdicts;
  })();
  verifying.catch(() => undefined); // awaited below; not an unhandled rejection if hashing throws first

  // 3a. Hash every event once, in storage order (verify-kernel.ts, phase 1): in this thread now, or
  // in the workers while this thread plans (hashing needs nothing from the plan). With workers,
  // job and results live in shared memory so nothing is copied back.
  const alloc = pool === undefined ? (bytes: number) => new ArrayBuffer(bytes) : (bytes: number) => new SharedArrayBuffer(bytes);
  const scratch = takeScratch(pool !== undefined, 2 * events.length * HASH_BYTES);
  const hashes = new Uint8Array(scratch, 0, events.length * HASH_BYTES);
  const prevs = new Uint8Array(scratch, events.length * HASH_BYTES, events.length * HASH_BYTES);
  let hashing: Promise<void> | undefined;
  try {
    hashing = hashEvents(events, pool, hashes, prevs);
    hashing?.catch(() => undefined); // awaited in verifyHashed; not an unhandled rejection meanwhile
    return await verifyHashed(input, options, pool, report, events, verifying, hashing, alloc, hashes, prevs);
  } finally {
    // Never hand the scratch to another verification while workers may still write into it.
    await hashing?.catch(() => undefined);
    giveBackScratch(scratch);
  }
}

async function verifyHashed(
  input: VerifyInput,
  options: VerifyOptions,
  pool: VerifyPool | undefined,
  report: Report,
  events: readonly VerifyEvent[],
  verifying: Promise<CheckpointVerdict[]>,
  hashing: Promise<void> | undefined,
  alloc: (bytes: number) => ArrayBufferLike,
  hashes: Uint8Array,
  prevs: Uint8Array,
): Promise<VerifyReport> {
  // 1. Checkpoints.
  const cpsByProducer = new Map<string, Cp[]>();
  let cpCount = 0;
  let trustedCount = 0;
  const seen = new Set<string>();
  const verdicts = await verifying;
  for (const v of verdicts) {
    cpCount++;
    if (v.status === 'malformed') {
      report.add({
        code: 'bad_checkpoint_signature',
        producer: '',
        epoch: null,
        sequences: null,
        eventIds: [],
        detail: `checkpoint ${toBase64Url(v.hash)} cannot be read: ${v.detail}`,
      });
      continue;
    }
    const c: Cp = { cp: v.checkpoint, f: v.checkpoint.fields, key: toHex(v.checkpoint.hash), trusted: v.status === 'ok' };
    if (seen.has(c.key)) continue; // the same checkpoint stored twice says nothing new
    seen.add(c.key);
    if (v.status === 'ok') trustedCount++;
    else {
      report.add({
        code: v.status === 'unknown_key' ? 'unknown_key' : v.status === 'bad_signature' ? 'bad_checkpoint_signature' : 'key_not_valid',
        producer: c.f.producer,
        epoch: c.f.epoch,
        sequences: c.f.count > 0 ? { from: c.f.firstSequence, to: c.f.lastSequence } : null,
        eventIds: [],
        detail: `${v.detail}; the checkpoint anchors nothing (its events are checked through the chain only)`,
        checkpoint: cpRef(c),
      });
    }
    const list = cpsByProducer.get(c.f.producer) ?? [];
    list.push(c);
    cpsByProducer.set(c.f.producer, list);
  }

  // 2. Group events by producer and epoch (storage order kept).
  const groups = new Map<string, Map<string, number[]>>();
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    let byEpoch = groups.get(e.producer);
    if (byEpoch === undefined) groups.set(e.producer, (byEpoch = new Map()));
    const epoch = typeof e.epoch === 'string' ? e.epoch : String(e.epoch);
    const g = byEpoch.get(epoch);
    if (g === undefined) byEpoch.set(epoch, [i]);
    else g.push(i);
  }

  let toUs = input.window?.toUs ?? -Infinity;
  if (input.window === undefined) {
    for (const e of events) if (e.timeUs > toUs) toUs = e.timeUs;
    for (const list of cpsByProducer.values()) for (const c of list) if (c.trusted && c.f.toTimeUs > toUs) toUs = c.f.toTimeUs;
  }

  const ctx: Ctx = { input, events, report, toUs, attested: 0, pendingEvents: 0, inserted: new Set() };
  const producers = new Set<string>([...groups.keys(), ...cpsByProducer.keys()]);
  const plans: ProducerPlan[] = [];
  for (const producer of [...producers].sort()) {
    plans.push(planProducer(ctx, producer, cpsByProducer.get(producer) ?? [], groups.get(producer) ?? new Map()));
  }

  // 3b. Links and Merkle roots per segment, from the hashes.
  const segments = plans.flatMap((p) => p.segments);
  await hashing;
  const out = await linkSegments(segments, options, pool, alloc, hashes, prevs);

  // 4. Evaluate, then 5/6: order and time.
  for (const plan of plans) finishProducer(ctx, plan, out.hashes, out, options.checkOrder ?? true, options.roots === 'on-failure');

  const epochCount = [...groups.values()].reduce((n, m) => n + m.size, 0);
  const findings = report.findings.sort(
    (x, y) =>
      x.producer.localeCompare(y.producer) ||
      (x.epoch ?? '').localeCompare(y.epoch ?? '') ||
      (x.sequences?.from ?? -1) - (y.sequences?.from ?? -1) ||
      x.code.localeCompare(y.code),
  );
  return {
    ok: findings.length === 0,
    findings,
    pending: report.pending,
    stats: {
      events: events.length,
      checkpoints: cpCount,
      trustedCheckpoints: trustedCount,
      producers: producers.size,
      epochs: epochCount,
      attestedEvents: ctx.attested,
      pendingEvents: ctx.pendingEvents,
    },
  };
}

interface Ctx {
  readonly input: VerifyInput;
  readonly events: readonly VerifyEvent[];
  readonly report: Report;
  readonly toUs: number;
  attested: number;
  pendingEvents: number;
  /** Events already reported as inserted: not judged again (e.g. for storage order). */
  readonly inserted: Set<number>;
}

function reportInserted(ctx: Ctx, evs: readonly number[], f: Omit<Finding, 'code' | 'eventIds'>): void {
  for (const i of evs) ctx.inserted.add(i);
  ctx.report.add({ code: 'inserted', eventIds: ctx.report.ids(ctx.events, evs), ...f });
}

interface EpochPlan {
  readonly epoch: string;
  readonly cps: Cp[]; // trusted, sorted by firstSequence
  readonly segments: Segment[];
  /** Every event of the epoch with a usable sequence, by (sequence, storage order). */
  readonly sorted: number[];
}

interface ProducerPlan {
  readonly producer: string;
  readonly all: Cp[];
  readonly trusted: Cp[];
  readonly epochs: EpochPlan[];
  readonly segments: Segment[];
  readonly head: Cp | undefined;
}

function isSequence(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 1;
}

/** Lays out a producer's epochs into segments, and reports what the checkpoint chain alone shows. */
function planProducer(ctx: Ctx, producer: string, all: Cp[], byEpoch: Map<string, number[]>): ProducerPlan {
  const { events } = ctx;
  const trusted = all.filter((c) => c.trusted);
  const byKey = new Map(all.map((c) => [c.key, c]));
  checkCheckpointChain(ctx, producer, trusted, byKey);

  // Head: the newest trusted checkpoint nothing trusted follows.
  const followed = new Set(trusted.map((c) => toHex(c.f.prevCheckpointHash)));
  let head: Cp | undefined;
  for (const c of trusted) {
    if (followed.has(c.key)) continue;
    if (head === undefined || c.f.toTimeUs > head.f.toTimeUs) head = c;
  }

  const epochPlans: EpochPlan[] = [];
  const epochNames = new Set<string>([...byEpoch.keys(), ...trusted.map((c) => c.f.epoch)]);
  for (const epoch of [...epochNames].sort()) {
    const idx = byEpoch.get(epoch) ?? [];
    const sorted: number[] = [];
    for (const i of idx) {
      const e = events[i]!;
      if (isSequence(e.sequence) && e.prevHash instanceof Uint8Array && e.prevHash.length === HASH_BYTES) sorted.push(i);
      else {
        reportInserted(ctx, [i], {
          producer,
          epoch,
          sequences: null,
          detail: `event ${e.eventId} has no valid chain position (sequence ${String(e.sequence)}, prevHash of ${e.prevHash?.length ?? 0} bytes)`,
        });
      }
    }
    let inOrder = true;
    for (let k = 1; k < sorted.length; k++) {
      if (events[sorted[k]!]!.sequence <= events[sorted[k - 1]!]!.sequence) {
        inOrder = false;
        break;
      }
    }
    if (!inOrder) sorted.sort((x, y) => events[x]!.sequence - events[y]!.sequence || x - y);
    const cps = trusted.filter((c) => c.f.epoch === epoch).sort((x, y) => x.f.firstSequence - y.f.firstSequence || x.f.toTimeUs - y.f.toTimeUs);
    epochPlans.push({ epoch, cps: dropOverlaps(ctx, producer, epoch, cps), segments: [], sorted });
  }
  for (const ep of epochPlans) buildSegments(ctx, producer, ep, byKey);
  return { producer, all, trusted, epochs: epochPlans, segments: epochPlans.flatMap((e) => e.segments), head };
}

/** Trusted checkpoints of one epoch must tile its sequences; overlapping ones contradict each other. */
function dropOverlaps(ctx: Ctx, producer: string, epoch: string, cps: Cp[]): Cp[] {
  const kept: Cp[] = [];
  for (const c of cps) {
    const prev = kept.at(-1);
    if (prev !== undefined && c.f.firstSequence <= prev.f.lastSequence && !(c.f.count === 0 && prev.f.count === 0)) {
      ctx.report.add({
        code: 'broken_chain',
        producer,
        epoch,
        sequences: { from: c.f.firstSequence, to: Math.max(c.f.firstSequence, Math.min(c.f.lastSequence, prev.f.lastSequence)) },
        eventIds: [],
        detail: `checkpoints over ${range(prev.f.firstSequence, prev.f.lastSequence)} and ${range(c.f.firstSequence, c.f.lastSequence)} overlap: two signed statements about the same events`,
        checkpoint: cpRef(c),
      });
      continue;
    }
    // Consecutive empty checkpoints share a position; keep them all for the time checks, in time order.
    kept.push(c);
  }
  return kept;
}

/** Index of the last element of `xs` (sorted by `key`) with key ≤ `k`, or -1. */
function lastAtMost<T>(xs: readonly T[], key: (x: T) => number, k: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (key(xs[mid]!) <= k) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

function byEpochSorted(cps: readonly Cp[], key: (c: Cp) => number): Map<string, Cp[]> {
  const m = new Map<string, Cp[]>();
  for (const c of cps) {
    const l = m.get(c.f.epoch);
    if (l === undefined) m.set(c.f.epoch, [c]);
    else l.push(c);
  }
  for (const l of m.values()) l.sort((a, b) => key(a) - key(b));
  return m;
}

function checkCheckpointChain(ctx: Ctx, producer: string, trusted: Cp[], byKey: Map<string, Cp>): void {
  const { report, input } = ctx;
  const rejected = [...byKey.values()].filter((c) => !c.trusted);
  // Sorted indexes, so that many missing checkpoints cost O(n log n), not O(n²).
  const trustedByEnd = byEpochSorted(trusted, (c) => c.f.toTimeUs);
  const rejectedByEnd = byEpochSorted(rejected, (c) => c.f.toTimeUs);
  const rejectedByFirst = byEpochSorted(rejected, (c) => c.f.firstSequence);
  const successors = new Map<string, Cp[]>();
  const geneses: Cp[] = [];
  for (const c of trusted) {
    const prevKey = toHex(c.f.prevCheckpointHash);
    if (prevKey === ZERO_KEY) {
      geneses.push(c);
      continue;
    }
    const list = successors.get(prevKey) ?? [];
    list.push(c);
    successors.set(prevKey, list);
    const p = byKey.get(prevKey);
    if (p === undefined) {
      if (input.window !== undefined && c.f.fromTimeUs <= input.window.fromUs) continue;
      const ends = trustedByEnd.get(c.f.epoch) ?? [];
      let k = lastAtMost(ends, (x) => x.f.toTimeUs, c.f.fromTimeUs);
      while (k >= 0 && ends[k] === c) k--;
      const before = k >= 0 ? ends[k] : undefined;
      const from = before === undefined ? 1 : before.f.lastSequence + 1;
      const to = c.f.firstSequence - 1;
      // A present but unverifiable checkpoint in that place (edited, unknown key) has a different
      // hash than the one named; it is already reported, so do not report it missing as well.
      const rEnds = rejectedByEnd.get(c.f.epoch) ?? [];
      const rEnd = rEnds[lastAtMost(rEnds, (x) => x.f.toTimeUs, c.f.fromTimeUs)];
      const rFirsts = rejectedByFirst.get(c.f.epoch) ?? [];
      const rFirst = rFirsts[lastAtMost(rFirsts, (x) => x.f.firstSequence, c.f.firstSequence)];
      if (rEnd?.f.toTimeUs === c.f.fromTimeUs || (rFirst !== undefined && rFirst.f.firstSequence >= from)) continue;
      report.add({
        code: 'checkpoint_missing',
        producer,
        epoch: c.f.epoch,
        sequences: to >= from ? { from, to } : null,
        eventIds: [],
        detail:
          `the checkpoint before the one over ${range(c.f.firstSequence, c.f.lastSequence)} (hash ${short(c.f.prevCheckpointHash)}) is missing` +
          (to >= from ? `; it covered ${range(from, to)}` : '') +
          `, ending at ${c.f.fromTimeUs}`,
        checkpoint: cpRef(c),
        timeUs: { from: before?.f.toTimeUs ?? c.f.fromTimeUs, to: c.f.fromTimeUs },
      });
      continue;
    }
    if (!p.trusted) continue; // its problem is already reported; do not judge links through it
    const pf = p.f;
    const f = c.f;
    const problems: string[] = [];
    if (f.epoch === pf.epoch) {
      if (pf.closed) problems.push(`follows checkpoint ${range(pf.firstSequence, pf.lastSequence)} that closed the epoch`);
      if (f.firstSequence !== pf.lastSequence + 1) problems.push(`starts at ${f.firstSequence}, not at ${pf.lastSequence + 1}`);
      if (f.fromTimeUs !== pf.toTimeUs) problems.push(`its window starts at ${f.fromTimeUs}, not at the previous end ${pf.toTimeUs}`);
    } else {
      if (f.firstSequence !== 1) problems.push(`is the first of epoch ${f.epoch} but starts at sequence ${f.firstSequence}`);
      if (f.fromTimeUs < pf.toTimeUs) problems.push(`epoch ${f.epoch} starts before the previous epoch's last checkpoint`);
    }
    if (problems.length > 0) {
      report.add({
        code: 'broken_chain',
        producer,
        epoch: f.epoch,
        sequences: { from: f.firstSequence, to: Math.max(f.firstSequence, f.lastSequence) },
        eventIds: [],
        detail: `checkpoint over ${range(f.firstSequence, f.lastSequence)} ${problems.join('; ')}`,
        checkpoint: cpRef(c),
      });
    }
    if (!pf.closed && f.toTimeUs - pf.toTimeUs > input.maxGapUs) {
      report.add({
        code: 'time_gap',
        producer,
        epoch: f.epoch,
        sequences: null,
        eventIds: [],
        detail: `no checkpoint from ${producer} for ${f.toTimeUs - pf.toTimeUs} µs (allowed ${input.maxGapUs}): logging stalled or stopped`,
        timeUs: { from: pf.toTimeUs, to: f.toTimeUs },
        checkpoint: cpRef(c),
      });
    }
  }
  for (const [prevKey, list] of successors) {
    if (list.length < 2) continue;
    const p = byKey.get(prevKey);
    report.add({
      code: 'broken_chain',
      producer,
      epoch: list[1]!.f.epoch,
      sequences: null,
      eventIds: [],
      detail: `${list.length} checkpoints all follow checkpoint ${p === undefined ? short(hexBytes(prevKey)) : range(p.f.firstSequence, p.f.lastSequence)}: the checkpoint chain forks`,
      checkpoint: cpRef(list[1]!),
    });
  }
  if (geneses.length > 1) {
    report.add({
      code: 'broken_chain',
      producer,
      epoch: geneses[1]!.f.epoch,
      sequences: null,
      eventIds: [],
      detail: `${geneses.length} checkpoints start a new chain for ${producer} (epochs ${geneses.map((g) => g.f.epoch).join(', ')}): a restart lost its link to the last checkpoint`,
      checkpoint: cpRef(geneses[1]!),
    });
  }
}

function hexBytes(hex: string): Uint8Array {
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

/** Cuts an epoch's sequence space into segments around its trusted checkpoints. */
function buildSegments(ctx: Ctx, producer: string, ep: EpochPlan, byKey: Map<string, Cp>): void {
  const { events, input } = ctx;
  const sorted = ep.sorted;
  let pos = 0;
  const take = (first: number, last: number): { evs: number[]; clean: boolean } => {
    const evs: number[] = [];
    let expect = first;
    let clean = true;
    while (pos < sorted.length && events[sorted[pos]!]!.sequence <= last) {
      const i = sorted[pos++]!;
      const s = events[i]!.sequence;
      if (s < first) continue; // already reported as out of range by the caller
      if (s !== expect) clean = false;
      expect = s + 1;
      evs.push(i);
    }
    if (expect !== last + 1) clean = false;
    return { evs, clean };
  };
  const seg = (kind: SegmentKind, first: number, last: number, cp: Cp | undefined, a: Uint8Array | null, b: Uint8Array | null) => {
    const { evs, clean } = take(first, last);
    ep.segments.push({ kind, producer, epoch: ep.epoch, first, last, cp, evs, clean, a, b, jobIndex: -1, epochSorted: sorted });
  };
  const minSeq = sorted.length > 0 ? events[sorted[0]!]!.sequence : undefined;
  const cps = ep.cps;
  const firstCp = cps[0];
  if (firstCp === undefined) {
    if (minSeq !== undefined) {
      const count = sorted.length;
      const lo = input.window === undefined ? 1 : minSeq;
      const last = boundedLast(ctx, producer, ep, lo, count);
      seg('tail', lo, last, undefined, null, null);
    }
    return;
  }
  if (minSeq !== undefined && minSeq < firstCp.f.firstSequence) {
    const lo = input.window === undefined ? 1 : minSeq;
    seg('pre', lo, firstCp.f.firstSequence - 1, undefined, null, null);
  }
  let prev: Cp | undefined;
  for (const c of cps) {
    if (prev !== undefined && c.f.firstSequence > prev.f.lastSequence + 1) {
      seg('hole', prev.f.lastSequence + 1, c.f.firstSequence - 1, undefined, prev.f.lastHash, null);
    }
    const adjacent = prev !== undefined && prev.f.lastSequence + 1 === c.f.firstSequence;
    // prevCheckpointHash is the epoch's link only on the epoch's first checkpoint: the one whose
    // predecessor is genesis or belongs to another epoch (not an earlier, unverifiable one of this).
    const before = byKey.get(toHex(c.f.prevCheckpointHash));
    const opensEpoch = isZeroHash(c.f.prevCheckpointHash) || (before !== undefined && before.f.epoch !== c.f.epoch);
    const a = adjacent ? prev!.f.lastHash : c.f.firstSequence === 1 && opensEpoch ? c.f.prevCheckpointHash : null;
    seg('covered', c.f.firstSequence, c.f.lastSequence, c, a, c.f.lastHash);
    prev = c;
  }
  const lastCp = prev!;
  if (pos < sorted.length) {
    const lo = lastCp.f.lastSequence + 1;
    const last = boundedLast(ctx, producer, ep, lo, sorted.length - pos);
    seg('tail', lo, last, undefined, lastCp.f.lastHash, null);
  }
}

/**
 * The end of an uncovered tail. An absurd sequence (far beyond anything the events could fill)
 * would make the verifier lay out billions of empty slots; such events are reported as inserted.
 */
function boundedLast(ctx: Ctx, producer: string, ep: EpochPlan, lo: number, count: number): number {
  const { events } = ctx;
  const limit = lo + 2 * count + 1024;
  const sorted = ep.sorted;
  const maxSeq = events[sorted.at(-1)!]!.sequence;
  if (maxSeq <= limit) return maxSeq;
  const outliers = sorted.filter((i) => events[i]!.sequence > limit);
  reportInserted(ctx, outliers, {
    producer,
    epoch: ep.epoch,
    sequences: { from: events[outliers[0]!]!.sequence, to: maxSeq },
    detail: `${outliers.length} event(s) claim sequences far beyond the chain (after ${lo - 1})`,
  });
  let last = lo;
  for (const i of sorted) {
    const s = events[i]!.sequence;
    if (s <= limit && s > last) last = s;
  }
  // Drop the outliers from the epoch so no segment takes them.
  const keep = sorted.filter((i) => events[i]!.sequence <= limit);
  sorted.length = 0;
  for (const i of keep) sorted.push(i);
  return last;
}

/**
 * Scratch memory for phase 1 (hashes and prevs, 64 bytes per event), kept for a few seconds after a
 * verification so that back-to-back ones (a console paging through windows, a benchmark) reuse it.
 * Allocating 64 MB of ArrayBuffer per million events each time counts as external memory for V8
 * and made it run a full mark-compact over the caller's heap (the decoded events) on most runs.
 * Taken by one verification at a time; a concurrent one allocates its own.
 */
const spare: { shared: SharedArrayBuffer | undefined; local: ArrayBuffer | undefined } = { shared: undefined, local: undefined };
let spareTimer: ReturnType<typeof setTimeout> | undefined;
const SPARE_KEEP_MS = 5_000;

function takeScratch(shared: boolean, bytes: number): ArrayBuffer | SharedArrayBuffer {
  const have = shared ? spare.shared : spare.local;
  if (have !== undefined && have.byteLength >= bytes && have.byteLength <= 2 * bytes + (1 << 20)) {
    if (shared) spare.shared = undefined;
    else spare.local = undefined;
    return have;
  }
  return shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes);
}

function giveBackScratch(b: ArrayBuffer | SharedArrayBuffer): void {
  if (b instanceof SharedArrayBuffer) spare.shared = b;
  else spare.local = b;
  if (spareTimer !== undefined) clearTimeout(spareTimer);
  spareTimer = setTimeout(() => {
    spare.shared = undefined;
    spare.local = undefined;
    spareTimer = undefined;
  }, SPARE_KEEP_MS);
  spareTimer.unref?.();
}

/** A given hash into its slot; one of another length is kept to its slot (and matches nothing). */
function setGiven(hashes: Uint8Array, o: number, h: Uint8Array): void {
  if (h.length !== HASH_BYTES) hashes.fill(0, o, o + HASH_BYTES);
  hashes.set(h.length > HASH_BYTES ? h.subarray(0, HASH_BYTES) : h, o);
}

function isHash(p: unknown): p is Uint8Array {
  return p instanceof Uint8Array && p.length === HASH_BYTES;
}

/**
 * Phase 1 (verify-kernel.ts): every event's hash into `hashes` (its given hash for a stored
 * redaction) and its prevHash into `prevs`, in storage order. In this thread it is done on return;
 * with a pool the returned promise settles when the workers are done.
 */
function hashEvents(events: readonly VerifyEvent[], pool: VerifyPool | undefined, hashes: Uint8Array, prevs: Uint8Array): Promise<void> | undefined {
  if (pool === undefined) {
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!;
      const o = i * HASH_BYTES;
      if (e.hash === undefined) sha256Into(e.bytes, hashes, o);
      else setGiven(hashes, o, e.hash);
      const p = e.prevHash;
      if (isHash(p)) for (let k = 0; k < HASH_BYTES; k++) prevs[o + k] = p[k]!;
      else prevs.fill(0, o, o + HASH_BYTES); // never read (no chain position), but no stale bytes either
    }
    return undefined;
  }
  // Given hashes (stored redactions) are rare: written here, the workers skip those events.
  for (let i = 0; i < events.length; i++) {
    const h = events[i]!.hash;
    if (h !== undefined) setGiven(hashes, i * HASH_BYTES, h);
  }
  return pool.hash(
    {
      bytes: (i) => {
        const e = events[i]!;
        return e.hash === undefined ? e.bytes : undefined;
      },
      prevHash: (i) => {
        const p = events[i]!.prevHash;
        return isHash(p) ? p : undefined;
      },
    },
    events.length,
    { hashes, prevs },
  );
}

/** Phase 2 (verify-kernel.ts): links inside each segment, and each checkpoint range's root. */
async function linkSegments(
  segments: Segment[],
  options: VerifyOptions,
  pool: VerifyPool | undefined,
  alloc: (bytes: number) => ArrayBufferLike,
  hashes: Uint8Array,
  prevs: Uint8Array,
): Promise<KernelOutput> {
  const total = segments.reduce((n, s) => n + s.evs.length, 0);
  const order = new Int32Array(alloc(total * 4));
  const segStart = new Int32Array(alloc((segments.length + 1) * 4));
  const segKind = new Uint8Array(alloc(segments.length));
  const skipRoots = options.roots === 'on-failure';
  let k = 0;
  segments.forEach((s, j) => {
    s.jobIndex = j;
    segStart[j] = k;
    segKind[j] = !s.clean ? SEGMENT_HASH_ONLY : s.kind === 'covered' && !skipRoots ? SEGMENT_LINKS_ROOT : SEGMENT_LINKS;
    for (const i of s.evs) order[k++] = i;
  });
  segStart[segments.length] = k;
  const out: KernelOutput = {
    hashes,
    prevs,
    roots: new Uint8Array(alloc(segments.length * HASH_BYTES)),
    breaks: new Int32Array(alloc(segments.length * 4)),
  };
  const job = { order, segStart, segKind };
  if (pool !== undefined && total > 0) await pool.run(job, out);
  else runKernel(job, out, 0, segments.length);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Evaluation

function finishProducer(
  ctx: Ctx,
  plan: ProducerPlan,
  hashes: Uint8Array,
  out: KernelOutput,
  checkOrder: boolean,
  rootsSkipped: boolean,
): void {
  const chosenByEpoch = new Map<string, number[][]>();
  const tails = new Map<string, Segment>();
  for (const ep of plan.epochs) {
    let next: SegmentResult | undefined;
    const chosen: number[][] = new Array<number[]>(ep.segments.length);
    // Right to left: a hole's end anchor is what the segment after it recorded.
    for (let j = ep.segments.length - 1; j >= 0; j--) {
      const s = ep.segments[j]!;
      if ((s.kind === 'hole' || s.kind === 'pre') && next !== undefined) s.b = next.firstCommit;
      if (s.kind === 'tail') tails.set(ep.epoch, s);
      const r = evaluateSegment(ctx, s, hashes, out, rootsSkipped);
      chosen[j] = r.chosen;
      ctx.attested += r.attested;
      next = r;
    }
    chosenByEpoch.set(ep.epoch, chosen);
  }
  judgeTails(ctx, plan, tails);
  if (checkOrder) for (const [epoch, chosen] of chosenByEpoch) checkStorageOrder(ctx, plan.producer, epoch, chosen);
}

function evaluateSegment(ctx: Ctx, s: Segment, hashes: Uint8Array, out: KernelOutput, rootsSkipped: boolean): SegmentResult {
  const { events } = ctx;
  const n = s.last - s.first + 1;
  if (s.kind === 'covered' && n === 0) return evaluateEmpty(ctx, s);
  if (s.clean && n > 0) {
    const firstEv = events[s.evs[0]!]!;
    const lastIdx = s.evs.at(-1)!;
    const ok =
      out.breaks[s.jobIndex] === 0 &&
      (s.a === null || hashEquals(firstEv.prevHash, s.a)) &&
      (s.b === null || hashEqualsAt(hashes, lastIdx * HASH_BYTES, s.b, 0)) &&
      (s.cp === undefined || rootsSkipped || hashEqualsAt(out.roots, s.jobIndex * HASH_BYTES, s.cp.f.merkleRoot, 0));
    if (ok) {
      const attested = s.kind === 'tail' || (s.kind !== 'covered' && s.b === null) ? 0 : n;
      return { firstCommit: firstEv.prevHash, chosen: s.evs, attested };
    }
  }
  return classify(ctx, s, hashes);
}

function evaluateEmpty(ctx: Ctx, s: Segment): SegmentResult {
  const c = s.cp!;
  if (!hashEquals(c.f.merkleRoot, EMPTY_ROOT)) {
    ctx.report.add({
      code: 'merkle_mismatch',
      producer: s.producer,
      epoch: s.epoch,
      sequences: null,
      eventIds: [],
      detail: `empty checkpoint after sequence ${c.f.lastSequence} has root ${short(c.f.merkleRoot)}, not the empty-tree root`,
      checkpoint: cpRef(c),
    });
  }
  if (s.a !== null && !hashEquals(s.a, c.f.lastHash)) {
    ctx.report.add({
      code: 'broken_chain',
      producer: s.producer,
      epoch: s.epoch,
      sequences: c.f.lastSequence >= 1 ? { from: c.f.lastSequence, to: c.f.lastSequence } : null,
      eventIds: [],
      detail: `empty checkpoint carries lastHash ${short(c.f.lastHash)}, but the chain ends at ${short(s.a)}`,
      checkpoint: cpRef(c),
    });
  }
  return { firstCommit: c.f.lastHash, chosen: [], attested: 0 };
}

/**
 * The slow path for one segment: pick each sequence's rightful event, find the broken links,
 * explain them with the fewest altered events (confirmed by the Merkle root where possible) and
 * report altered / deleted / inserted precisely.
 */
function classify(ctx: Ctx, s: Segment, hashes: Uint8Array): SegmentResult {
  const { events, report } = ctx;
  const n = s.last - s.first + 1;
  const H = (i: number): Uint8Array => hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES);
  const P = (i: number): Uint8Array => events[i]!.prevHash;
  const cand: number[][] = Array.from({ length: n }, () => []);
  for (const i of s.evs) cand[events[i]!.sequence - s.first]!.push(i);

  // 1. One event per sequence. The rightful one is the one its successor's prevHash (or the
  //    checkpoint's lastHash) names; others are inserted.
  const at = new Int32Array(n).fill(-1);
  const namedAt = new Uint8Array(n);
  for (let t = n - 1; t >= 0; t--) {
    const cs = cand[t]!;
    if (cs.length === 0) continue;
    if (cs.length === 1) {
      at[t] = cs[0]!;
      continue;
    }
    const committed: Uint8Array[] = t === n - 1 ? (s.b === null ? [] : [s.b]) : cand[t + 1]!.map(P);
    const named = cs.find((i) => committed.some((h) => hashEquals(H(i), h)));
    const leftOk = (i: number): boolean =>
      t === 0 ? s.a !== null && hashEquals(P(i), s.a) : cand[t - 1]!.some((j) => hashEquals(P(i), H(j)));
    at[t] = named ?? cs.find(leftOk) ?? cs[0]!;
    namedAt[t] = named === undefined ? 0 : 1;
  }
  // Byte-identical copies are interchangeable: keep the one stored where the sequence belongs, so
  // a replayed copy is the one reported, not the original.
  for (let t = 0; t < n; t++) {
    const cs = cand[t]!;
    if (cs.length < 2) continue;
    const twins = cs.filter((i) => hashEquals(H(i), H(at[t]!)));
    const lo = t > 0 && at[t - 1]! >= 0 ? at[t - 1]! : storedAt(ctx, s.epochSorted, s.first + t - 1, -1);
    const hi = t + 1 < n && at[t + 1]! >= 0 ? at[t + 1]! : storedAt(ctx, s.epochSorted, s.first + t + 1, Infinity);
    const fits = twins.find((i) => i > lo && i < hi);
    if (fits !== undefined) at[t] = fits;
  }
  for (let t = 0; t < n; t++) {
    const cs = cand[t]!;
    const pick = at[t]!;
    const named = namedAt[t] === 1 ? pick : undefined;
    for (const i of cs) {
      if (i === pick) continue;
      const dup = hashEquals(H(i), H(pick));
      reportInserted(ctx, [i], {
        producer: s.producer,
        epoch: s.epoch,
        sequences: { from: s.first + t, to: s.first + t },
        detail: dup
          ? `event ${events[i]!.eventId} is a second copy of sequence ${s.first + t} (${events[pick]!.eventId})`
          : `event ${events[i]!.eventId} claims sequence ${s.first + t}, which belongs to ${events[pick]!.eventId}` +
            (named !== undefined ? ' (the one its successor names)' : ''),
      });
    }
  }

  // 2. Link states: link t joins slot t-1 to slot t; link 0 is the start anchor, link n the end one.
  const link = new Uint8Array(n + 1);
  for (let t = 0; t <= n; t++) {
    if (t === 0) link[t] = s.a === null || at[0]! < 0 ? Link.Undef : hashEquals(P(at[0]!), s.a) ? Link.Ok : Link.Broken;
    else if (t === n) link[t] = s.b === null || at[n - 1]! < 0 ? Link.Undef : hashEquals(H(at[n - 1]!), s.b) ? Link.Ok : Link.Broken;
    else link[t] = at[t - 1]! < 0 || at[t]! < 0 ? Link.Undef : hashEquals(P(at[t]!), H(at[t - 1]!)) ? Link.Ok : Link.Broken;
  }
  const broken: number[] = [];
  for (let t = 0; t <= n; t++) if (link[t] === Link.Broken) broken.push(t);

  // 3. Explanations: each altered event breaks the link to its successor, and also the link from
  //    its predecessor if its prevHash field changed. The chain alone cannot always tell which
  //    (two consecutive breaks: one event's prevHash, or two events' payloads), so candidates are
  //    generated in order of plausibility and the first one the Merkle root confirms wins.
  interface Hyp {
    alt: Map<number, Mode>;
    outside: boolean;
  }
  const hyps: Hyp[] = [];
  const MAX_HYPOTHESES = 64;
  const MAX_SEARCH_BREAKS = 512; // the exhaustive search recurses once per broken link
  const alt = new Map<number, Mode>();
  let outside = false;
  const covered = (t: number): boolean => alt.has(t - 1) || alt.get(t) === 'prevHash';
  const canPrevAt = (t: number): boolean => t < n && at[t]! >= 0 && link[t + 1] !== Link.Ok && !alt.has(t);
  const canPayloadAt = (t: number): boolean => t >= 1 && at[t - 1]! >= 0 && !alt.has(t - 1);
  /** One pass over the breaks; `preferPrev` decides between the two readings of a double break. */
  const greedy = (preferPrev: (t: number) => boolean): Hyp => {
    alt.clear();
    outside = false;
    for (const t of broken) {
      if (covered(t)) continue;
      const canPrev = canPrevAt(t);
      const canPayload = canPayloadAt(t);
      if (canPrev && (!canPayload || preferPrev(t))) alt.set(t, 'prevHash');
      else if (canPayload) alt.set(t - 1, 'payload');
      else outside = true;
    }
    const h = { alt: new Map(alt), outside };
    alt.clear();
    outside = false;
    return h;
  };
  // (a) An isolated pair of breaks is one event whose prevHash was rewritten; a longer run is a
  //     run of altered events. (b) Every break is a payload alteration where possible.
  hyps.push(greedy((t) => link[t + 1] === Link.Broken && link[t + 2] !== Link.Broken && link[t - 1] !== Link.Broken));
  hyps.push(greedy(() => false));
  const rec = (k: number): void => {
    if (hyps.length >= MAX_HYPOTHESES) return;
    while (k < broken.length && covered(broken[k]!)) k++;
    if (k === broken.length) {
      hyps.push({ alt: new Map(alt), outside });
      return;
    }
    const t = broken[k]!;
    const canPrev = canPrevAt(t);
    const canPayload = canPayloadAt(t);
    if (canPrev) {
      alt.set(t, 'prevHash');
      rec(k + 1);
      alt.delete(t);
    }
    if (canPayload) {
      alt.set(t - 1, 'payload');
      rec(k + 1);
      alt.delete(t - 1);
    }
    if (!canPrev && !canPayload) {
      // Link 0 broken with slot 0 otherwise fine: the anchors disagree (reported as broken_chain).
      const was = outside;
      outside = true;
      rec(k + 1);
      outside = was;
    }
  };
  if (s.cp !== undefined && broken.length <= MAX_SEARCH_BREAKS) rec(0); // only a root can pick among more
  const root = s.cp?.f.merkleRoot;
  let chosen = hyps[0]!;
  let confirmed = false;
  let checkable = false;
  if (root !== undefined) {
    for (const h of hyps) {
      const r = rootUnder(s, h.alt, at, H, P);
      if (r === undefined) continue;
      checkable = true;
      if (hashEquals(r, root)) {
        chosen = h;
        confirmed = true;
        break;
      }
    }
  }

  // 4. Findings.
  const alteredSlots = [...chosen.alt.keys()].sort((x, y) => x - y);
  for (const run of runs(alteredSlots)) {
    const ids = run.map((t) => at[t]!);
    const original = (t: number): Uint8Array | null => originalHash(s, t, chosen.alt, at, P);
    const first = run[0]!;
    const detail =
      run.length === 1
        ? `event ${events[at[first]!]!.eventId} (sequence ${s.first + first}) was altered: its hash ${short(H(at[first]!))} is not ` +
          `${short(original(first))}, the hash ${first === n - 1 && s.b !== null ? `checkpoint ${range(s.first, s.last)} recorded` : `recorded by sequence ${s.first + first + 1}`}` +
          (chosen.alt.get(first) === 'prevHash' ? '; its prevHash field was changed too' : '')
        : `events at ${range(s.first + first, s.first + run.at(-1)!)} were altered (their hashes are not the ones their successors recorded)`;
    report.add({
      code: 'altered',
      producer: s.producer,
      epoch: s.epoch,
      sequences: { from: s.first + first, to: s.first + run.at(-1)! },
      eventIds: report.ids(events, ids),
      detail: detail + (confirmed ? '; the original hash is confirmed by the signed Merkle root' : '') + tailNote(s),
      confirmed,
    });
  }
  const missing: number[] = [];
  for (let t = 0; t < n; t++) if (at[t]! < 0) missing.push(t);
  for (const run of runs(missing)) {
    const lo = run[0]!;
    const hi = run.at(-1)!;
    const before = lo > 0 ? at[lo - 1]! : -1;
    const after = hi < n - 1 ? at[hi + 1]! : -1;
    const around = [
      before >= 0 ? `after ${events[before]!.eventId} (sequence ${s.first + lo - 1})` : '',
      after >= 0 ? `before ${events[after]!.eventId} (sequence ${s.first + hi + 1})` : '',
    ]
      .filter((x) => x !== '')
      .join(' and ');
    report.add({
      code: 'deleted',
      producer: s.producer,
      epoch: s.epoch,
      sequences: { from: s.first + lo, to: s.first + hi },
      eventIds: [],
      detail:
        `${range(s.first + lo, s.first + hi)} ${run.length === 1 ? 'is' : 'are'} missing${around === '' ? '' : ` ${around}`}` +
        (s.cp !== undefined ? `; checkpoint ${range(s.cp.f.firstSequence, s.cp.f.lastSequence)} covers ${run.length === 1 ? 'it' : 'them'}` : '') +
        (confirmed ? '; confirmed by the signed Merkle root' : ''),
      confirmed,
    });
  }
  if (chosen.outside) {
    const i = at[0]!;
    report.add({
      code: 'broken_chain',
      producer: s.producer,
      epoch: s.epoch,
      sequences: { from: s.first, to: s.first },
      eventIds: [events[i]!.eventId],
      detail:
        s.first === 1
          ? `epoch ${s.epoch} does not start from the producer's last checkpoint: sequence 1 links to ${short(P(i))}, expected ${short(s.a)}`
          : `sequence ${s.first} links to ${short(P(i))}, but the previous checkpoint ends the chain at ${short(s.a)}`,
      ...(s.cp === undefined ? {} : { checkpoint: cpRef(s.cp) }),
    });
  }
  if (root !== undefined && !confirmed && checkable) {
    report.add({
      code: 'merkle_mismatch',
      producer: s.producer,
      epoch: s.epoch,
      sequences: { from: s.first, to: s.last },
      eventIds: [],
      detail:
        alteredSlots.length + missing.length === 0 && !chosen.outside
          ? `the chain over ${range(s.first, s.last)} is intact but its checkpoint's Merkle root does not match it`
          : `checkpoint ${range(s.first, s.last)}'s Merkle root does not confirm the findings above: more events in this range may be altered`,
      checkpoint: cpRef(s.cp!),
    });
  }

  const chosenIdx: number[] = [];
  for (let t = 0; t < n; t++) if (at[t]! >= 0) chosenIdx.push(at[t]!);
  const clean = alteredSlots.length === 0 && missing.length === 0;
  const attested =
    s.kind === 'covered' && (confirmed || (root !== undefined && !checkable && clean)) ? chosenIdx.length - alteredSlots.length : 0;
  const firstCommit = at[0]! >= 0 && chosen.alt.get(0) !== 'prevHash' ? P(at[0]!) : null;
  return { firstCommit, chosen: chosenIdx, attested };
}

/** Storage index of the first event with `sequence` in an epoch's sorted events, or `fallback`. */
function storedAt(ctx: Ctx, sorted: readonly number[], sequence: number, fallback: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ctx.events[sorted[mid]!]!.sequence < sequence) lo = mid + 1;
    else hi = mid;
  }
  const i = sorted[lo];
  return i !== undefined && ctx.events[i]!.sequence === sequence ? i : fallback;
}

function tailNote(s: Segment): string {
  return s.kind === 'tail' ? ' (not yet covered by a checkpoint)' : '';
}

/** The hash slot t had originally, under an explanation, when the chain tells us. */
function originalHash(
  s: Segment,
  t: number,
  alt: Map<number, Mode>,
  at: Int32Array,
  P: (i: number) => Uint8Array,
): Uint8Array | null {
  const n = s.last - s.first + 1;
  if (t === n - 1) return s.b;
  const next = at[t + 1]!;
  if (next >= 0 && alt.get(t + 1) !== 'prevHash') return P(next);
  return null;
}

/** The Merkle root of the segment with altered/missing slots replaced by their original hashes. */
function rootUnder(
  s: Segment,
  alt: Map<number, Mode>,
  at: Int32Array,
  H: (i: number) => Uint8Array,
  P: (i: number) => Uint8Array,
): Uint8Array | undefined {
  const n = s.last - s.first + 1;
  const acc = new MerkleAccumulator();
  for (let t = 0; t < n; t++) {
    if (at[t]! >= 0 && !alt.has(t)) {
      acc.push(H(at[t]!));
      continue;
    }
    const o = originalHash(s, t, alt, at, P);
    if (o === null) return undefined;
    acc.push(o);
  }
  return acc.root();
}

function runs(sortedSlots: number[]): number[][] {
  const out: number[][] = [];
  for (const t of sortedSlots) {
    const last = out.at(-1);
    if (last !== undefined && last.at(-1)! + 1 === t) last.push(t);
    else out.push([t]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Tails, epochs and time

function judgeTails(ctx: Ctx, plan: ProducerPlan, tails: Map<string, Segment>): void {
  const { events, report, input, toUs } = ctx;
  const { producer, head } = plan;
  const rejected = plan.all.filter((c) => !c.trusted);
  const coveredByRejected = (epoch: string, seq: number): boolean =>
    rejected.some((c) => c.f.epoch === epoch && seq >= c.f.firstSequence && seq <= c.f.lastSequence);

  // An epoch without trusted checkpoints is the producer's fresh restart if its chain starts at the
  // last checkpoint (or at zero for a producer that never checkpointed); otherwise nobody vouches for it.
  let fresh: string | undefined;
  for (const ep of plan.epochs) {
    if (ep.cps.length > 0) continue;
    const tail = tails.get(ep.epoch);
    if (tail === undefined || tail.evs.length === 0) continue;
    const firstEv = events[tail.evs[0]!]!;
    const link = head?.cp.hash;
    const linked = firstEv.sequence === 1 && (link === undefined ? isZeroHash(firstEv.prevHash) : hashEquals(firstEv.prevHash, link));
    const unattested = tail.evs.filter((i) => !coveredByRejected(ep.epoch, events[i]!.sequence));
    if (linked && (fresh === undefined || firstEv.timeUs > earliest(ctx, tails.get(fresh)!))) {
      if (fresh !== undefined) reportUnvouched(ctx, producer, fresh, tails.get(fresh)!.evs);
      fresh = ep.epoch;
      continue;
    }
    if (unattested.length > 0) reportUnvouched(ctx, producer, ep.epoch, unattested);
  }

  const current = fresh ?? head?.f.epoch;
  for (const ep of plan.epochs) {
    if (ep.cps.length === 0) continue;
    const tail = tails.get(ep.epoch);
    const evs = (tail?.evs ?? []).filter((i) => !coveredByRejected(ep.epoch, events[i]!.sequence));
    if (evs.length === 0) continue;
    const lastCp = ep.cps.at(-1)!;
    if (lastCp.f.closed) {
      reportInserted(ctx, evs, {
        producer,
        epoch: ep.epoch,
        sequences: seqRange(ctx, evs),
        detail: `${evs.length} event(s) follow the checkpoint that closed epoch ${ep.epoch} at sequence ${lastCp.f.lastSequence}`,
        checkpoint: cpRef(lastCp),
      });
    } else if (ep.epoch !== current) {
      report.add({
        code: 'checkpoint_missing',
        producer,
        epoch: ep.epoch,
        sequences: seqRange(ctx, evs),
        eventIds: report.ids(events, evs),
        detail: `epoch ${ep.epoch} ended without a checkpoint over its last ${evs.length} event(s) (the producer moved to epoch ${current ?? '?'}): they are not attested (lost in a crash before the checkpoint, or inserted)`,
        checkpoint: cpRef(lastCp),
      });
    }
  }

  // The current epoch's tail: pending while a checkpoint is not due yet.
  const tail = current === undefined ? undefined : tails.get(current);
  const isFresh = current !== undefined && current === fresh;
  const currentClosed = !isFresh && head !== undefined && head.f.closed;
  const pendingEvs = currentClosed
    ? [] // reported above as inserted after the closing checkpoint
    : (tail?.evs ?? []).filter((i) => !coveredByRejected(current!, events[i]!.sequence));
  const headOpen = head !== undefined && !head.f.closed;
  // A checkpoint that is present but unverifiable still shows the producer was alive then; its
  // problem is reported already, so silence is measured from the latest checkpoint of any kind.
  let lastSeenUs = head?.f.toTimeUs ?? -Infinity;
  for (const c of rejected) if (c.f.toTimeUs > lastSeenUs) lastSeenUs = c.f.toTimeUs;
  if (pendingEvs.length > 0) {
    const firstT = minTime(ctx, pendingEvs);
    if (headOpen && firstT - lastSeenUs > input.maxGapUs) {
      report.add({
        code: 'time_gap',
        producer,
        epoch: current ?? null,
        sequences: null,
        eventIds: [],
        detail: `no checkpoint from ${producer} between ${lastSeenUs} and its next event at ${firstT} (${firstT - lastSeenUs} µs, allowed ${input.maxGapUs})`,
        timeUs: { from: lastSeenUs, to: firstT },
        checkpoint: cpRef(head),
      });
    }
    const dueFrom = isFresh || head === undefined ? firstT : Math.max(head.f.toTimeUs, lastSeenUs);
    const seqs = seqRange(ctx, pendingEvs)!;
    if (toUs - dueFrom > input.maxGapUs) {
      report.add({
        code: 'checkpoint_missing',
        producer,
        epoch: current!,
        sequences: seqs,
        eventIds: report.ids(events, pendingEvs),
        detail: `no checkpoint covers ${range(seqs.from, seqs.to)} although one was due by ${dueFrom + input.maxGapUs} (checkpoints deleted or never emitted, or the events were inserted)`,
        timeUs: { from: dueFrom, to: toUs },
      });
    } else {
      report.pending.push({ producer, epoch: current!, from: seqs.from, to: seqs.to, count: pendingEvs.length });
      ctx.pendingEvents += pendingEvs.length;
    }
  } else if (headOpen && toUs - lastSeenUs > input.maxGapUs) {
    report.add({
      code: 'time_gap',
      producer,
      epoch: head.f.epoch,
      sequences: null,
      eventIds: [],
      detail: `no checkpoint from ${producer} since ${lastSeenUs} (${toUs - lastSeenUs} µs before ${toUs}, allowed ${input.maxGapUs}): the producer stopped without closing its epoch, or the log was truncated`,
      timeUs: { from: lastSeenUs, to: toUs },
      checkpoint: cpRef(head),
    });
  }
}

function earliest(ctx: Ctx, s: Segment): number {
  return minTime(ctx, s.evs);
}

function minTime(ctx: Ctx, evs: readonly number[]): number {
  let t = Infinity;
  for (const i of evs) if (ctx.events[i]!.timeUs < t) t = ctx.events[i]!.timeUs;
  return t;
}

function reportUnvouched(ctx: Ctx, producer: string, epoch: string, evs: number[]): void {
  if (evs.length === 0) return;
  reportInserted(ctx, evs, {
    producer,
    epoch,
    sequences: seqRange(ctx, evs),
    detail: `epoch ${epoch} has no checkpoint and its chain does not start at the producer's last checkpoint: nothing vouches for its ${evs.length} event(s)`,
  });
}

function seqRange(ctx: Ctx, evs: readonly number[]): { from: number; to: number } | null {
  if (evs.length === 0) return null;
  let lo = Infinity;
  let hi = -Infinity;
  for (const i of evs) {
    const s = ctx.events[i]!.sequence;
    if (s < lo) lo = s;
    if (s > hi) hi = s;
  }
  return { from: lo, to: hi };
}

/**
 * `reordered`: events not in the longest run stored in increasing sequence order. `bySequence` is
 * the epoch's rightful events per segment, each in sequence order; storage order is event index.
 */
function checkStorageOrder(ctx: Ctx, producer: string, epoch: string, bySequence: number[][]): void {
  const { events, report } = ctx;
  // Common case first, without sorting: storage indices already increase along the sequence.
  let last = -1;
  let monotone = true;
  for (const seg of bySequence) {
    for (const i of seg) {
      if (ctx.inserted.has(i) || events[i]!.unordered === true) continue;
      if (i < last) monotone = false;
      last = i;
    }
    if (!monotone) break;
  }
  if (monotone) return;
  const byStorage = Int32Array.from(bySequence.flat().filter((i) => !ctx.inserted.has(i) && events[i]!.unordered !== true)).sort();
  const keep = longestIncreasing(Array.from(byStorage, (i) => events[i]!.sequence));
  for (let k = 0; k < byStorage.length; k++) {
    if (keep[k]) continue;
    const i = byStorage[k]!;
    const before = k > 0 ? events[byStorage[k - 1]!]! : undefined;
    const after = k + 1 < byStorage.length ? events[byStorage[k + 1]!]! : undefined;
    const e = events[i]!;
    report.add({
      code: 'reordered',
      producer,
      epoch,
      sequences: { from: e.sequence, to: e.sequence },
      eventIds: [e.eventId],
      detail:
        `event ${e.eventId} (sequence ${e.sequence}) is stored out of order` +
        (before !== undefined ? `, after sequence ${before.sequence}` : '') +
        (after !== undefined ? `${before !== undefined ? ' and' : ','} before sequence ${after.sequence}` : '') +
        '; its content and chain position are intact',
    });
  }
}

/**
 * Marks the members of a longest strictly increasing subsequence of distinct values, O(n log n).
 * Among equally long ones it keeps the most values that sit exactly at their sorted rank, so a
 * swap of two events names those two and not a bystander between them.
 */
function longestIncreasing(xs: number[]): boolean[] {
  const n = xs.length;
  const rank = new Int32Array(n);
  const bySeq = Array.from({ length: n }, (_, k) => k).sort((a, b) => xs[a]! - xs[b]!);
  bySeq.forEach((k, r) => (rank[k] = r));
  // score = length * (n + 1) + (number kept in place): length first, then in-place count.
  const score = new Float64Array(n);
  const prev = new Int32Array(n).fill(-1);
  const tree = new Int32Array(n + 1).fill(-1); // Fenwick tree over ranks: best element ending below
  const better = (a: number, b: number): boolean => b < 0 || (a >= 0 && score[a]! > score[b]!);
  for (let k = 0; k < n; k++) {
    let best = -1;
    for (let r = rank[k]!; r > 0; r -= r & -r) if (better(tree[r]!, best)) best = tree[r]!;
    score[k] = (best < 0 ? 0 : score[best]!) + (n + 1) + (rank[k] === k ? 1 : 0);
    prev[k] = best;
    for (let r = rank[k]! + 1; r <= n; r += r & -r) if (better(k, tree[r]!)) tree[r] = k;
  }
  let end = -1;
  for (let k = 0; k < n; k++) if (better(k, end)) end = k;
  const keep = new Array<boolean>(n).fill(false);
  for (let k = end; k >= 0; k = prev[k]!) keep[k] = true;
  return keep;
}

// ---------------------------------------------------------------------------------------------
// One event, offline

/** What an auditor needs besides the event and the checkpoint. JSON-friendly. */
export interface InclusionProof {
  readonly sequence: number;
  /** Audit path, leaf to root, base64url. */
  readonly path: readonly string[];
}

export type InclusionVerdict =
  | {
      readonly ok: true;
      readonly producer: string;
      readonly epoch: string;
      readonly sequence: number;
      readonly eventHash: string;
      readonly checkpoint: CheckpointFields;
    }
  | {
      readonly ok: false;
      readonly code: 'unknown_key' | 'bad_checkpoint_signature' | 'key_not_valid' | 'not_covered' | 'merkle_mismatch';
      readonly detail: string;
    };

/**
 * Verifies one event offline: the checkpoint's signature against the JWKS, then the event's
 * inclusion at `proof.sequence` under the checkpoint's Merkle root. The proven sequence should be
 * compared with the sequence decoded from the event's own metadata.
 */
export async function verifyEventInclusion(
  eventBytes: Uint8Array,
  proof: InclusionProof,
  checkpoint: SignedCheckpoint | string,
  jwks: JSONWebKeySet,
): Promise<InclusionVerdict> {
  const v = await verifyCheckpoint(checkpoint, jwks);
  if (v.status === 'malformed') return { ok: false, code: 'bad_checkpoint_signature', detail: v.detail };
  if (v.status !== 'ok') {
    return { ok: false, code: v.status === 'bad_signature' ? 'bad_checkpoint_signature' : v.status, detail: v.detail };
  }
  const f = v.checkpoint.fields;
  if (!Number.isSafeInteger(proof.sequence) || proof.sequence < f.firstSequence || proof.sequence > f.lastSequence) {
    return { ok: false, code: 'not_covered', detail: `sequence ${proof.sequence} is not in ${range(f.firstSequence, f.lastSequence)}` };
  }
  const path: Uint8Array[] = [];
  for (const p of proof.path) {
    const b = new Uint8Array(Buffer.from(p, 'base64url'));
    if (b.length !== HASH_BYTES) return { ok: false, code: 'merkle_mismatch', detail: 'audit path entry is not a 32-byte hash' };
    path.push(b);
  }
  const h = sha256(eventBytes);
  const root = rootFromInclusionPath(h, proof.sequence - f.firstSequence, f.count, path);
  if (root === undefined || !hashEquals(root, f.merkleRoot)) {
    return { ok: false, code: 'merkle_mismatch', detail: 'the event and its audit path do not lead to the checkpoint root' };
  }
  return { ok: true, producer: f.producer, epoch: f.epoch, sequence: proof.sequence, eventHash: toBase64Url(h), checkpoint: f };
}

/**
 * Builds the proof for the event at `sequence`, given the hashes of every event the checkpoint
 * covers, in order (e.g. the evidence store's hash column over the checkpoint's range).
 */
export function buildInclusionProof(
  rangeEventHashes: readonly Uint8Array[],
  checkpoint: CheckpointFields,
  sequence: number,
): InclusionProof {
  if (rangeEventHashes.length !== checkpoint.count) {
    throw new RangeError(`checkpoint covers ${checkpoint.count} events, ${rangeEventHashes.length} hashes given`);
  }
  const path = inclusionPath(rangeEventHashes, sequence - checkpoint.firstSequence);
  return { sequence, path: path.map(toBase64Url) };
}
