/**
 * The evidence writer's in-flight chain check, as pure rules (no I/O, injected time).
 *
 * What it checks, per producer epoch, on the events as they arrive: sequence continuity and that
 * each event's prevHash is the hash of the event before it. It is the cheap first line; the full
 * proof (Merkle roots, checkpoint chain, time gaps, epochs) is `verifyProducerLog` over the store.
 *
 * Arrival order. The log is partitioned by session, so one producer's events are spread over
 * partitions and arrive interleaved: within a partition a producer's sequences only increase (the
 * emitter chains and appends in one order, and a partition keeps append order), across partitions
 * anything goes. So each chain keeps one verified contiguous run [low, high] (the hash of `high`,
 * the prevHash of `low`) and a map of the events that arrived ahead of or behind it:
 *
 *   seq = high + 1   link check prevHash == hash(high), extend, drain pending high+1, high+2, …
 *   seq = low − 1    link check hash == prevHash(low), extend downward, drain pending low−2, …
 *   low ≤ seq ≤ high a second event for a position: same hash = a repeat (ignored), other hash = fork
 *   otherwise        held in `pending` (only its sequence, hashes, id and times: the event itself is
 *                    stored at once, only its check waits)
 *
 * A hole is declared missing only when it can no longer fill, judged against how far the writer
 * has read the log, not against the wall clock. The missing event was chained before the event
 * after the hole, so it was appended (if at all) no later than `reorderWindowMs` after it (the
 * window absorbs append retries and clock skew between the log and the writer). The caller passes
 * its log coverage: an append time up to which it has read EVERY partition (the minimum over
 * partitions of the last append time read there, or, for a partition read to its end, the time
 * the end offset was read less the log's visibility lag: a record is stamped before it is
 * durable). A hole is declared once that coverage passes the following event's append time plus
 * the window. Under a backlog the coverage trails with the slowest partition, so a lagging partition
 * delays the verdict instead of producing false gap and late-event findings (it used to: the
 * window was measured in wall-clock time from when the writer first held an event, so a
 * partition read minutes behind the others turned every cross-partition hole into a gap, and then
 * every held-up event into a late arrival).
 *
 * Partitions the writer has not read from in this run (idle ones, or ones another group member
 * holds) cannot vouch for anything: until every partition is covered, a hole is declared only if
 * the covered partitions passed it AND it has been held `maxHoldMs`. `maxPendingPerChain` bounds
 * memory whatever the coverage.
 * */
import { hashEquals, toBase64Url } from '../../common/src/integrity';

export interface ChainObservation {
  readonly producer: string;
  /** Producer epoch ('' when the event has none). */
  readonly epoch: string;
  /** ≥ 1 (checkpoint events, sequence 0, are not chain positions and are not observed). */
  readonly sequence: number;
  readonly prevHash: Uint8Array;
  /** SHA-256 of the event's encoded bytes. */
  readonly hash: Uint8Array;
  readonly eventId: string;
  readonly timeUs: number;
  /** When the log accepted the record. */
  readonly appendTimeMs: number;
}

/** Stable codes: dashboards and runbooks key on them (detectorId `evidence-writer.<code>`). */
export type ChainIssueCode =
  /** An event's prevHash is not the hash of the event before it. */
  | 'chain_link_mismatch'
  /** Sequences that never arrived. */
  | 'chain_gap'
  /** Two different events claim one sequence. */
  | 'chain_fork'
  /** An event of a range already reported missing arrived after all. */
  | 'chain_late_event';

export interface ChainIssue {
  readonly code: ChainIssueCode;
  readonly producer: string;
  readonly epoch: string;
  readonly sequences: { readonly from: number; readonly to: number };
  /** Events that show the problem (for a gap: the event after it). */
  readonly eventIds: readonly string[];
  /** What is wrong, without content (no payloads; hashes abbreviated). */
  readonly detail: string;
  /** When the condition began (event time, µs), when known. */
  readonly timeUs: number | null;
}

/** How far the caller has read the log (see the module comment). */
export interface LogCoverage {
  /** Every record appended at or before this time (ms, the log's clock) has been observed. */
  readonly throughMs: number;
  /** False while some partition has not been read in this run: `throughMs` is then over the others only. */
  readonly allPartitions: boolean;
}

export interface ChainTrackerOptions {
  /** How much later, in append time, a missing event may land than the event after it. Default 2 000 ms. */
  readonly reorderWindowMs?: number;
  /** With partitions not yet read, a hole the read ones passed is declared after being held this long. Default 30 000 ms. */
  readonly maxHoldMs?: number;
  /** Held events per chain before holes are declared regardless. Default 100 000. */
  readonly maxPendingPerChain?: number;
  /** Recent (sequence → hash) kept per chain to tell a repeat from a fork: a ring of this many slots. Default 4 096. */
  readonly recentPerChain?: number;
  /** Holes whose following event was appended before this are closed without a finding (see above). */
  readonly reportGapsAfterAppendMs?: number;
}

interface Held {
  readonly o: ChainObservation;
}

interface Chain {
  readonly producer: string;
  readonly epoch: string;
  low: number;
  lowPrevHash: Uint8Array;
  lowEvent: ChainObservation;
  high: number;
  highHash: Uint8Array;
  readonly pending: Map<number, Held>;
  pendingSinceMs: number | undefined;
  /** Ring indexed by sequence mod size: slot i holds the latest sequence ≡ i seen and its hash (no allocation per event). */
  readonly recentSeq: Float64Array;
  readonly recentHash: (Uint8Array | undefined)[];
  /** Ranges reported missing (bounded), to name late arrivals. */
  readonly declared: { from: number; to: number }[];
}

const MAX_DECLARED = 64;
/** Shared empty result of observe(): callers only read it. */
const NO_ISSUES: readonly ChainIssue[] = Object.freeze([]);
const short = (h: Uint8Array): string => toBase64Url(h).slice(0, 11);

export class ChainTracker {
  readonly #window: number;
  readonly #maxHold: number;
  readonly #maxPending: number;
  readonly #recentSize: number;
  readonly #reportAfterMs: number;
  readonly #chains = new Map<string, Chain>();
  #last: Chain | undefined;
  #pendingTotal = 0;
  /** Events whose position was already checked (a repeat with the same hash, or too old to tell). */
  repeats = 0;

  constructor(opts: ChainTrackerOptions = {}) {
    this.#window = opts.reorderWindowMs ?? 2_000;
    this.#maxHold = opts.maxHoldMs ?? 30_000;
    this.#maxPending = opts.maxPendingPerChain ?? 100_000;
    this.#recentSize = opts.recentPerChain ?? 4_096;
    this.#reportAfterMs = opts.reportGapsAfterAppendMs ?? Number.NEGATIVE_INFINITY;
  }

  /** Events held for a hole to fill, over all chains. */
  get pendingCount(): number {
    return this.#pendingTotal;
  }

  get chainCount(): number {
    return this.#chains.size;
  }

  observe(o: ChainObservation, nowMs: number): readonly ChainIssue[] {
    // Consecutive events mostly share a chain: skip the key string and map lookup for them.
    const last = this.#last;
    const c = last !== undefined && last.producer === o.producer && last.epoch === o.epoch ? last : this.#chains.get(`${o.producer}\u0000${o.epoch}`);
    const key = c === undefined ? `${o.producer}\u0000${o.epoch}` : '';
    if (c === undefined) {
      o = owned(o);
      const fresh: Chain = {
        producer: o.producer,
        epoch: o.epoch,
        low: o.sequence,
        lowPrevHash: o.prevHash,
        lowEvent: o,
        high: o.sequence,
        highHash: o.hash,
        pending: new Map(),
        pendingSinceMs: undefined,
        recentSeq: new Float64Array(this.#recentSize).fill(-1),
        recentHash: new Array<Uint8Array | undefined>(this.#recentSize),
        declared: [],
      };
      this.#remember(fresh, o);
      this.#chains.set(key, fresh);
      this.#last = fresh;
      return NO_ISSUES;
    }
    this.#last = c;
    // Most events extend their chain by one and raise nothing: no array for them.
    if (o.sequence === c.high + 1 && c.pending.size === 0 && hashEquals(o.prevHash, c.highHash)) {
      c.high = o.sequence;
      c.highHash = o.hash;
      this.#remember(c, o);
      return NO_ISSUES;
    }
    const issues: ChainIssue[] = [];
    if (o.sequence === c.high + 1) {
      this.#extendUp(c, o, issues);
      this.#drainUp(c, issues);
    } else if (o.sequence === c.low - 1) {
      this.#extendDown(c, o, issues);
      this.#drainDown(c, issues);
    } else if (o.sequence >= c.low && o.sequence <= c.high) {
      this.#repeat(c, o, issues);
    } else {
      const held = c.pending.get(o.sequence);
      if (held !== undefined) {
        if (hashEquals(held.o.hash, o.hash)) this.repeats++;
        else issues.push(fork(c, o, held.o.hash));
      } else {
        c.pending.set(o.sequence, { o: owned(o) });
        this.#pendingTotal++;
        c.pendingSinceMs ??= nowMs;
      }
    }
    if (c.pending.size === 0) c.pendingSinceMs = undefined;
    return issues;
  }

  /**
   * Declares the holes that can no longer fill, given how far the log has been read (`coverage`,
   * undefined when nothing is known yet); see the module comment.
   */
  settle(nowMs: number, coverage: LogCoverage | undefined): ChainIssue[] {
    const issues: ChainIssue[] = [];
    for (const c of this.#chains.values()) {
      if (c.pendingSinceMs === undefined) continue;
      const overflow = c.pending.size > this.#maxPending;
      const heldLongEnough = nowMs >= c.pendingSinceMs + this.#maxHold;
      // Whether the missing events before `after` can still arrive.
      const final = (after: ChainObservation): boolean =>
        overflow ||
        (coverage !== undefined && coverage.throughMs >= after.appendTimeMs + this.#window && (coverage.allPartitions || heldLongEnough));
      while (c.pending.size > 0) {
        let above = Number.POSITIVE_INFINITY;
        let below = Number.NEGATIVE_INFINITY;
        for (const s of c.pending.keys()) {
          if (s > c.high && s < above) above = s;
          if (s < c.low && s > below) below = s;
        }
        let moved = false;
        if (above !== Number.POSITIVE_INFINITY && final((c.pending.get(above) as Held).o)) {
          const next = this.#take(c, above);
          this.#gap(c, c.high + 1, above - 1, next, issues);
          c.high = above;
          c.highHash = next.hash;
          this.#remember(c, next);
          this.#drainUp(c, issues);
          moved = true;
        }
        if (below !== Number.NEGATIVE_INFINITY && c.pending.has(below) && final(c.lowEvent)) {
          const prev = this.#take(c, below);
          this.#gap(c, below + 1, c.low - 1, c.lowEvent, issues);
          c.low = below;
          c.lowPrevHash = prev.prevHash;
          c.lowEvent = prev;
          this.#remember(c, prev);
          this.#drainDown(c, issues);
          moved = true;
        }
        if (!moved) break;
      }
      if (c.pending.size === 0) c.pendingSinceMs = undefined;
    }
    return issues;
  }

  #take(c: Chain, seq: number): ChainObservation {
    const h = c.pending.get(seq);
    if (h === undefined) throw new Error(`internal: no held event ${seq}`);
    c.pending.delete(seq);
    this.#pendingTotal--;
    return h.o;
  }

  #gap(c: Chain, from: number, to: number, after: ChainObservation, issues: ChainIssue[]): void {
    if (from > to) return;
    if (after.appendTimeMs < this.#reportAfterMs) return;
    c.declared.push({ from, to });
    if (c.declared.length > MAX_DECLARED) c.declared.shift();
    issues.push({
      code: 'chain_gap',
      producer: c.producer,
      epoch: c.epoch,
      sequences: { from, to },
      eventIds: [after.eventId],
      detail: `producer ${c.producer} epoch ${c.epoch}: sequence${from === to ? ` ${from} is` : `s ${from}-${to} are`} missing; sequence ${after.sequence} follows`,
      timeUs: after.timeUs,
    });
  }

  #extendUp(c: Chain, o: ChainObservation, issues: ChainIssue[]): void {
    if (!hashEquals(o.prevHash, c.highHash)) {
      issues.push({
        code: 'chain_link_mismatch',
        producer: c.producer,
        epoch: c.epoch,
        sequences: { from: c.high, to: o.sequence },
        eventIds: [o.eventId],
        detail: `producer ${c.producer} epoch ${c.epoch}: sequence ${o.sequence} names prevHash ${short(o.prevHash)}…, but sequence ${c.high} hashes to ${short(c.highHash)}…`,
        timeUs: o.timeUs,
      });
    }
    c.high = o.sequence;
    c.highHash = o.hash;
    this.#remember(c, o);
  }

  #drainUp(c: Chain, issues: ChainIssue[]): void {
    for (;;) {
      const next = c.pending.get(c.high + 1);
      if (next === undefined) return;
      this.#take(c, c.high + 1);
      this.#extendUp(c, next.o, issues);
    }
  }

  #extendDown(c: Chain, o: ChainObservation, issues: ChainIssue[]): void {
    if (!hashEquals(o.hash, c.lowPrevHash)) {
      issues.push({
        code: 'chain_link_mismatch',
        producer: c.producer,
        epoch: c.epoch,
        sequences: { from: o.sequence, to: c.low },
        eventIds: [c.lowEvent.eventId],
        detail: `producer ${c.producer} epoch ${c.epoch}: sequence ${c.low} names prevHash ${short(c.lowPrevHash)}…, but sequence ${o.sequence} hashes to ${short(o.hash)}…`,
        timeUs: c.lowEvent.timeUs,
      });
    }
    const kept = owned(o);
    c.low = kept.sequence;
    c.lowPrevHash = kept.prevHash;
    c.lowEvent = kept;
    this.#remember(c, kept);
  }

  #drainDown(c: Chain, issues: ChainIssue[]): void {
    for (;;) {
      const prev = c.pending.get(c.low - 1);
      if (prev === undefined) return;
      this.#take(c, c.low - 1);
      this.#extendDown(c, prev.o, issues);
    }
  }

  #repeat(c: Chain, o: ChainObservation, issues: ChainIssue[]): void {
    const slot = o.sequence % this.#recentSize;
    const known = c.recentSeq[slot] === o.sequence ? c.recentHash[slot] : undefined;
    if (known !== undefined) {
      if (hashEquals(known, o.hash)) this.repeats++;
      else issues.push(fork(c, o, known));
      return;
    }
    const gap = c.declared.find((g) => o.sequence >= g.from && o.sequence <= g.to);
    if (gap !== undefined) {
      issues.push({
        code: 'chain_late_event',
        producer: c.producer,
        epoch: c.epoch,
        sequences: { from: o.sequence, to: o.sequence },
        eventIds: [o.eventId],
        detail: `producer ${c.producer} epoch ${c.epoch}: sequence ${o.sequence}, reported missing (${gap.from}-${gap.to}), arrived late; its links were not checked`,
        timeUs: o.timeUs,
      });
      return;
    }
    // Older than the recent window, or inside a hole closed silently after a restart: not checkable here.
    this.repeats++;
  }

  #remember(c: Chain, o: ChainObservation): void {
    const slot = o.sequence % this.#recentSize;
    c.recentSeq[slot] = o.sequence;
    c.recentHash[slot] = o.hash;
  }
}

function fork(c: Chain, o: ChainObservation, known: Uint8Array): ChainIssue {
  return {
    code: 'chain_fork',
    producer: c.producer,
    epoch: c.epoch,
    sequences: { from: o.sequence, to: o.sequence },
    eventIds: [o.eventId],
    detail: `producer ${c.producer} epoch ${c.epoch}: two different events claim sequence ${o.sequence} (hashes ${short(known)}… and ${short(o.hash)}…)`,
    timeUs: o.timeUs,
  };
}

/**
 * An observation safe to keep: its prevHash copied when it is a view of a larger buffer (the
 * writer passes views of the log's read chunks, which a kept view would hold in memory).
 */
function owned(o: ChainObservation): ChainObservation {
  const h = o.prevHash;
  return h.byteLength === h.buffer.byteLength ? o : { ...o, prevHash: new Uint8Array(h) };
}
