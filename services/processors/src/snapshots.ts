/**
 * A processor's side of state snapshots (snapshot-store.ts): which positions and anchors its book
 * covers, when the next snapshot is due, loading one at rebuild (every check, one warning line with
 * a stable reason code when it is refused), and saving one (a failed save is a warning: snapshots
 * are a cache).
 *
 * The keeper follows the processor's commits: `reset(positions, anchors)` after a rebuild, then
 * `committed(records)` after each commit. Its positions are then exactly the group's committed ones,
 * which is what a snapshot taken now covers.
 */
import type { Logger } from 'pino';
import type { ConsumedRecord } from '../../common/src/log';
import type { ReplayResult, ReplayStart } from './log-replay';
import {
  anchorOf,
  DEFAULT_SNAPSHOT_EVERY_MS,
  DEFAULT_SNAPSHOT_EVERY_RECORDS,
  SnapshotRejected,
  type SnapshotAnchor,
  type SnapshotOptions,
  type StateSnapshot,
} from './snapshot-store';

export interface SnapshotKeeperOptions {
  readonly snapshots: SnapshotOptions | undefined;
  readonly group: string;
  readonly partitions: number;
  readonly logger: Logger;
  /** 'risk processor', … (log lines). */
  readonly label: string;
  readonly stateVersion: number;
  /** What else the state depends on (policy digest); '' when nothing. */
  readonly fingerprint: string;
  readonly now: () => number;
}

export interface SnapshotStats {
  /** Snapshots written this run. */
  snapshotsSaved: number;
  /** Snapshots refused at a rebuild (reason in the warning log line). */
  snapshotsRejected: number;
  /** Whether the last rebuild started from a snapshot. */
  fromSnapshot: boolean;
}

export class SnapshotKeeper {
  readonly stats: SnapshotStats = { snapshotsSaved: 0, snapshotsRejected: 0, fromSnapshot: false };
  #positions: number[];
  #anchors: (SnapshotAnchor | null)[];
  /** False while the book holds folds beyond #positions (a batch not committed yet, or discarded). */
  #consistent = false;
  #sinceRecords = 0;
  #lastAtMs: number;
  #saving: Promise<void> | undefined;
  readonly #everyRecords: number;
  readonly #everyMs: number;

  constructor(private readonly o: SnapshotKeeperOptions) {
    this.#positions = new Array<number>(o.partitions).fill(0);
    this.#anchors = new Array<SnapshotAnchor | null>(o.partitions).fill(null);
    this.#lastAtMs = o.now();
    this.#everyRecords = o.snapshots?.everyRecords ?? DEFAULT_SNAPSHOT_EVERY_RECORDS;
    this.#everyMs = o.snapshots?.everyMs ?? DEFAULT_SNAPSHOT_EVERY_MS;
  }

  get enabled(): boolean {
    return this.o.snapshots !== undefined;
  }

  get positions(): readonly number[] {
    return this.#positions;
  }

  /**
   * The stored snapshot, if it may be used with the group at `committed`; undefined (after one
   * warning naming the reason) otherwise, or when there is none.
   */
  async load(committed: readonly number[]): Promise<StateSnapshot | undefined> {
    const s = this.o.snapshots;
    this.stats.fromSnapshot = false;
    if (s === undefined) return undefined;
    let loaded;
    try {
      loaded = await s.store.load(this.o.group, s.logId, this.o.partitions);
    } catch (err) {
      this.rejected(new SnapshotRejected('snapshot_corrupt', (err as Error).message));
      return undefined;
    }
    if (!loaded.found) {
      if (loaded.rejected !== undefined) this.rejected(loaded.rejected);
      else this.o.logger.info({ group: this.o.group }, `${this.o.label}: no state snapshot, replaying the retained log`);
      return undefined;
    }
    const snap = loaded.snapshot;
    if (snap.stateVersion !== this.o.stateVersion) {
      this.rejected(new SnapshotRejected('snapshot_version_unknown', `state version ${snap.stateVersion}, this build reads ${this.o.stateVersion}`));
      return undefined;
    }
    if (snap.fingerprint !== this.o.fingerprint) {
      this.rejected(new SnapshotRejected('snapshot_config_changed', 'taken under another configuration of the processor (e.g. its policy)'));
      return undefined;
    }
    const ahead = snap.positions.findIndex((o, p) => o > (committed[p] ?? 0));
    if (ahead >= 0) {
      this.rejected(new SnapshotRejected('snapshot_ahead_of_commit', `partition ${ahead}: snapshot at ${snap.positions[ahead]}, group committed at ${committed[ahead]}`));
      return undefined;
    }
    return snap;
  }

  /** Logs a refused snapshot (one warning, stable reason code); the caller replays the whole log. */
  rejected(err: SnapshotRejected): void {
    this.stats.snapshotsRejected++;
    this.stats.fromSnapshot = false;
    this.o.logger.warn({ group: this.o.group, reason: err.reason, detail: err.message }, `${this.o.label}: state snapshot not used (${err.reason}), replaying the retained log`);
  }

  /**
   * A rebuild's replay of everything below `until` into a book: from the snapshot when one may be
   * used (its state through `fromState`, then only the records after its positions), else from the
   * oldest retained record into `fresh()`. A refused snapshot is logged and counted, then the full
   * replay runs. `replay` folds into the book it is given (and restarts any count of its own).
   * Ends with `reset`: the keeper then covers exactly `until`.
   */
  async replayInto<B>(
    until: readonly number[],
    fresh: () => B,
    fromState: (state: unknown) => B,
    replay: (book: B, start?: ReplayStart) => Promise<ReplayResult>,
  ): Promise<{ book: B; result: ReplayResult; fromSnapshot: boolean }> {
    const snap = await this.load(until);
    if (snap !== undefined) {
      try {
        let book: B;
        try {
          book = fromState(snap.state);
        } catch (err) {
          throw new SnapshotRejected('snapshot_state_invalid', (err as Error).message);
        }
        const result = await replay(book, { from: snap.positions, anchors: snap.anchors });
        this.reset(until, result.anchors, true);
        return { book, result, fromSnapshot: true };
      } catch (err) {
        if (!(err instanceof SnapshotRejected)) throw err;
        this.rejected(err);
      }
    }
    const book = fresh();
    const result = await replay(book);
    this.reset(until, result.anchors, false);
    return { book, result, fromSnapshot: false };
  }

  /** After a rebuild: the book covers exactly the records below `positions`. */
  reset(positions: readonly number[], anchors: readonly (SnapshotAnchor | null)[], fromSnapshot: boolean): void {
    this.#positions = [...positions];
    this.#anchors = [...anchors];
    this.#consistent = true;
    this.stats.fromSnapshot = fromSnapshot;
  }

  /** The book is about to fold records it has not committed: no snapshot until the next commit. */
  folding(): void {
    this.#consistent = false;
  }

  /** The book's extra folds since `folding()` are durable without a commit (e.g. a tick's outputs, once appended). */
  settled(): void {
    this.#consistent = true;
  }

  /** After a commit of `records` (the batch just folded, in delivery order). */
  committed(records: readonly ConsumedRecord[]): void {
    const last = new Map<number, ConsumedRecord>();
    for (const r of records) {
      const cur = last.get(r.partition);
      if (cur === undefined || r.offset > cur.offset) last.set(r.partition, r);
    }
    for (const [p, r] of last) {
      this.#positions[p] = r.offset + 1;
      this.#anchors[p] = anchorOf(r);
    }
    this.#sinceRecords += records.length;
    this.#consistent = true;
  }

  /** Whether a cadence snapshot is due now (and possible: the book is at the committed positions). */
  due(): boolean {
    if (!this.enabled || !this.#consistent || this.#saving !== undefined) return false;
    if (this.#sinceRecords === 0) return false;
    return this.#sinceRecords >= this.#everyRecords || this.o.now() - this.#lastAtMs >= this.#everyMs;
  }

  /**
   * Writes a snapshot of `state()` at the current positions, when the book is at them (else does
   * nothing). The state is serialised synchronously, here: later folds do not leak into it. A failed
   * write is logged, not thrown.
   */
  async save(state: () => unknown, why: 'cadence' | 'stop'): Promise<void> {
    const s = this.o.snapshots;
    if (s === undefined || !this.#consistent) return;
    await this.#saving;
    if (!this.#consistent) return;
    const t0 = this.o.now();
    const snapshot: StateSnapshot = {
      group: this.o.group,
      logId: s.logId,
      partitions: this.o.partitions,
      positions: [...this.#positions],
      anchors: [...this.#anchors],
      stateVersion: this.o.stateVersion,
      fingerprint: this.o.fingerprint,
      takenAtMs: t0,
      state: state(),
    };
    this.#sinceRecords = 0;
    this.#lastAtMs = t0;
    const run = s.store
      .save(snapshot)
      .then(() => {
        this.stats.snapshotsSaved++;
        this.o.logger.info({ group: this.o.group, why, positions: snapshot.positions, ms: this.o.now() - t0 }, `${this.o.label}: state snapshot saved`);
      })
      .catch((err: unknown) => {
        this.o.logger.warn({ group: this.o.group, reason: 'snapshot_write_failed', err: (err as Error).message }, `${this.o.label}: state snapshot could not be written`);
      })
      .finally(() => {
        this.#saving = undefined;
      });
    this.#saving = run;
    await run;
  }
}
