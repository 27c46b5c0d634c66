/**
 * When a checkpoint is due: after `everyEvents` events or `everyMs` since the last checkpoint,
 * whichever comes first, and on the timer even when no event came (the idle checkpoint is what
 * turns "nothing happened" into something an auditor can verify, and silence into a finding).
 *
 * `checkpointDue` is the pure rule; `CheckpointScheduler` applies it with an injected clock and
 * timer and calls `onDue` once per due checkpoint, until the caller reports `checkpointed()`
 * (or `failed()`), so a slow signature never piles up duplicate checkpoints.
 */
import { IntegrityError } from './errors';
import type { Clock } from './keyring';

export interface Cadence {
  /** Cut a checkpoint after this many events (≥ 1). */
  readonly everyEvents: number;
  /** ...or this long after the previous checkpoint, events or not (≥ 1 ms). */
  readonly everyMs: number;
}

/** Defaults: a checkpoint per 10,000 events or per minute (525,600 idle checkpoints a year). */
export const DEFAULT_CADENCE: Cadence = { everyEvents: 10_000, everyMs: 60_000 };

export type DueReason = 'events' | 'time';

export interface CadenceState {
  readonly eventsSinceCheckpoint: number;
  readonly lastCheckpointUs: number;
}

export function checkpointDue(c: Cadence, s: CadenceState, nowUs: number): DueReason | null {
  if (s.eventsSinceCheckpoint >= c.everyEvents) return 'events';
  if (nowUs - s.lastCheckpointUs >= c.everyMs * 1000) return 'time';
  return null;
}

/**
 * The verifier's `maxGapUs` for a cadence: the longest silence that is not yet a finding. The
 * tolerance absorbs signing latency, event-loop stalls and clock adjustments.
 */
export function maxGapUsFor(c: Cadence, toleranceUs = Math.max(1_000_000, c.everyMs * 100)): number {
  return c.everyMs * 1000 + toleranceUs;
}

export interface Timer {
  set(fn: () => void, delayMs: number): unknown;
  clear(handle: unknown): void;
}

export const realTimer: Timer = {
  set: (fn, delayMs) => {
    const t = setTimeout(fn, delayMs);
    t.unref(); // a pending idle checkpoint must not keep a stopping process alive
    return t;
  },
  clear: (h) => clearTimeout(h as NodeJS.Timeout),
};

export class CheckpointScheduler {
  private readonly cadence: Cadence;
  private readonly clock: Clock;
  private readonly timer: Timer;
  private readonly onDue: (reason: DueReason) => void;
  private events = 0;
  private lastUs: number;
  private inFlight = false;
  private handle: unknown;
  private running = false;

  constructor(opts: Cadence & { clock: Clock; timer?: Timer; onDue: (reason: DueReason) => void; startUs?: number }) {
    if (!Number.isSafeInteger(opts.everyEvents) || opts.everyEvents < 1) {
      throw new IntegrityError('integrity_invalid_argument', 'everyEvents must be an integer ≥ 1');
    }
    if (!(opts.everyMs >= 1)) throw new IntegrityError('integrity_invalid_argument', 'everyMs must be ≥ 1');
    this.cadence = { everyEvents: opts.everyEvents, everyMs: opts.everyMs };
    this.clock = opts.clock;
    this.timer = opts.timer ?? realTimer;
    this.onDue = opts.onDue;
    this.lastUs = opts.startUs ?? opts.clock.nowUs();
  }

  get state(): CadenceState {
    return { eventsSinceCheckpoint: this.events, lastCheckpointUs: this.lastUs };
  }

  /** When the next checkpoint is due by time alone. */
  nextDueUs(): number {
    return this.lastUs + this.cadence.everyMs * 1000;
  }

  /** Pure query: is a checkpoint due now? */
  due(nowUs = this.clock.nowUs()): DueReason | null {
    return checkpointDue(this.cadence, this.state, nowUs);
  }

  start(): void {
    this.running = true;
    this.arm();
  }

  stop(): void {
    this.running = false;
    this.disarm();
  }

  /** Call after each event is appended; may call onDue('events') synchronously. */
  recordEvent(): void {
    this.events++;
    if (!this.inFlight && this.events >= this.cadence.everyEvents) this.fire('events');
  }

  /** The checkpoint cut at `atUs` was emitted: restart the count and the clock. */
  checkpointed(atUs = this.clock.nowUs()): void {
    this.events = 0;
    this.lastUs = atUs;
    this.inFlight = false;
    this.arm();
  }

  /** The due checkpoint could not be emitted: it is still due, offer it again. */
  failed(): void {
    this.inFlight = false;
    this.arm();
  }

  private fire(reason: DueReason): void {
    this.inFlight = true;
    this.disarm();
    this.onDue(reason);
  }

  private disarm(): void {
    if (this.handle !== undefined) this.timer.clear(this.handle);
    this.handle = undefined;
  }

  private arm(): void {
    this.disarm();
    if (!this.running || this.inFlight) return;
    const delayMs = Math.max(0, (this.nextDueUs() - this.clock.nowUs()) / 1000);
    this.handle = this.timer.set(() => {
      this.handle = undefined;
      if (!this.running || this.inFlight) return;
      const reason = this.due();
      if (reason === null) this.arm(); // timers may fire early relative to the wall clock
      else this.fire(reason);
    }, delayMs);
  }
}
