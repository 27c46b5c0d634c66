/**
 * The two reads a processor's rebuild makes of the evidence log (risk and DLP processors):
 *
 *   probeUncommitted  the group's committed position per partition, and every record from there to
 *                     the end (the uncommitted stretch, where the processor's own outputs of inputs
 *                     not yet committed sit: outputs are keyed like their input, so they land after it)
 *   replayBelow       every record below those positions, through a throwaway group, to fold its book:
 *                     from the oldest retained record, or from a snapshot's positions (snapshots.ts)
 *
 * Both read in large polls (the replay only folds) and stop when `stopping()` says so.
 */
import { randomUUID } from 'node:crypto';
import { isLogError, type ConsumedRecord, type EventLog } from '../../common/src/log';
import { anchorOf, SnapshotRejected, type SnapshotAnchor } from './snapshot-store';

/** Records per poll while rebuilding: the replay only folds (no outputs), so it reads in large batches. */
export const REPLAY_BATCH = 10_000;

export interface ReplayOptions {
  readonly log: EventLog;
  readonly group: string;
  /** Longest a poll waits. */
  readonly maxWaitMs: number;
  /** True once the processor is stopping: the read throws `<label> stopping`. */
  readonly stopping: () => boolean;
  readonly label: string;
}

/** Calls `onRecord` for every record of the uncommitted stretch; returns the committed position per partition. */
export async function probeUncommitted(o: ReplayOptions, onRecord: (r: ConsumedRecord) => void): Promise<number[]> {
  const committed: (number | null)[] = new Array<number | null>(o.log.partitionCount).fill(null);
  const probe = await o.log.consumer(o.group, { startFrom: 'earliest' });
  try {
    for (;;) {
      const ends = await o.log.endOffsets();
      const batch = await probe.poll(REPLAY_BATCH, Math.min(o.maxWaitMs, 50));
      if (batch.length === 0) {
        // A partition with nothing past its committed position: committed = its end.
        ends.forEach((e, p) => {
          if (committed[p] === null) committed[p] = e;
        });
        break;
      }
      for (const r of batch) {
        if (committed[r.partition] === null) committed[r.partition] = r.offset;
        onRecord(r);
      }
      if (o.stopping()) throw new Error(`${o.label} stopping`);
    }
  } finally {
    await probe.close();
  }
  return committed.map((c) => c ?? 0);
}

/** Where a replay resumes: a snapshot's positions, and the record each position follows. */
export interface ReplayStart {
  readonly from: readonly number[];
  readonly anchors: readonly (SnapshotAnchor | null)[];
}

export interface ReplayResult {
  /** Records `onRecord` was called for. */
  readonly records: number;
  /** Per partition, the record at until[p] − 1 (from the start's anchors when nothing was replayed there); null when unknown (not retained). */
  readonly anchors: (SnapshotAnchor | null)[];
}

/**
 * Calls `onRecord` for every record below `until` (per partition), from the oldest retained record,
 * or from `start.from` when resuming after a snapshot. Resuming, the reader starts one record early
 * in each partition with an anchor and checks that record against it; a mismatch, or a start below
 * the oldest retained record, throws SnapshotRejected (the caller discards what was folded).
 */
export async function replayBelow(
  o: ReplayOptions,
  until: readonly number[],
  onRecord: (r: ConsumedRecord) => void,
  start?: ReplayStart,
): Promise<ReplayResult> {
  const n = o.log.partitionCount;
  const from = start?.from ?? new Array<number>(n).fill(0);
  const anchors: (SnapshotAnchor | null)[] = Array.from({ length: n }, (_, p) => (start !== undefined && from[p] === until[p] ? (start.anchors[p] ?? null) : null));
  if (!until.some((u, p) => u > (from[p] ?? 0))) return { records: 0, anchors };
  let count = 0;
  // Resuming: one record before each position, to check it is the record the snapshot saw.
  const verify = start === undefined ? [] : from.map((f, p) => f > 0 && (start.anchors[p] ?? null) !== null);
  const startAt = start === undefined ? undefined : from.map((f, p) => (verify[p] === true ? f - 1 : f));
  let reader;
  try {
    // A throwaway reader: ephemeral, so it never holds the embedded log's retention back after this.
    reader = await o.log.consumer(`${o.group}.replay.${randomUUID().slice(0, 8)}`, startAt === undefined ? { startFrom: 'earliest', ephemeral: true } : { startAt, ephemeral: true });
  } catch (err) {
    if (isLogError(err) && err.code === 'log_offset_out_of_range') throw new SnapshotRejected('snapshot_below_retention', err.message);
    throw err;
  }
  try {
    const reached = startAt === undefined ? new Array<number>(n).fill(0) : [...startAt];
    const done = () => reached.every((r, p) => r >= (until[p] ?? 0)) && !verify.some((v) => v);
    while (!done()) {
      const batch = await reader.poll(REPLAY_BATCH, o.maxWaitMs);
      if (o.stopping()) throw new Error(`${o.label} stopping`);
      for (const r of batch) {
        const p = r.partition;
        reached[p] = Math.max(reached[p] ?? 0, r.offset + 1);
        if (verify[p] === true) {
          verify[p] = false;
          const want = start!.anchors[p];
          const got = anchorOf(r);
          if (want === null || want === undefined || got.offset !== want.offset || got.appendTimeMs !== want.appendTimeMs || got.digest !== want.digest) {
            throw new SnapshotRejected('snapshot_anchor_mismatch', `partition ${p}: the record at offset ${got.offset} is not the one the snapshot covers`);
          }
          if (r.offset < from[p]!) continue;
        }
        if (r.offset >= (until[p] ?? 0) || r.offset < (from[p] ?? 0)) continue;
        if (r.offset === (until[p] ?? 0) - 1) anchors[p] = anchorOf(r);
        onRecord(r);
        count++;
      }
      // Everything durable when the poll started was delivered, so everything below `until` too.
      if (batch.length === 0) {
        const missing = verify.findIndex((v) => v);
        if (missing >= 0) throw new SnapshotRejected('snapshot_anchor_mismatch', `partition ${missing}: the record before offset ${from[missing]} is missing`);
        break;
      }
    }
  } finally {
    await reader.close();
  }
  return { records: count, anchors };
}
