/**
 * The two reads a processor's rebuild makes of the evidence log (risk and DLP processors):
 *
 *   probeUncommitted  the group's committed position per partition, and every record from there to
 *                     the end (the uncommitted stretch, where the processor's own outputs of inputs
 *                     not yet committed sit: outputs are keyed like their input, so they land after it)
 *   replayBelow       every record below those positions, through a throwaway group, to fold its book
 *
 * Both read in large polls (the replay only folds) and stop when `stopping()` says so.
 */
import { randomUUID } from 'node:crypto';
import type { ConsumedRecord, EventLog } from '../../common/src/log';

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

/** Calls `onRecord` for every record below `until` (per partition); returns how many it was called for. */
export async function replayBelow(o: ReplayOptions, until: readonly number[], onRecord: (r: ConsumedRecord) => void): Promise<number> {
  if (!until.some((u) => u > 0)) return 0;
  let n = 0;
  const reader = await o.log.consumer(`${o.group}.replay.${randomUUID().slice(0, 8)}`, { startFrom: 'earliest' });
  try {
    const reached = new Array<number>(o.log.partitionCount).fill(0);
    const done = () => reached.every((r, p) => r >= (until[p] ?? 0));
    while (!done()) {
      const batch = await reader.poll(REPLAY_BATCH, o.maxWaitMs);
      if (o.stopping()) throw new Error(`${o.label} stopping`);
      for (const r of batch) {
        reached[r.partition] = Math.max(reached[r.partition] ?? 0, r.offset + 1);
        if (r.offset >= (until[r.partition] ?? 0)) continue;
        onRecord(r);
        n++;
      }
      // Everything durable when the poll started was delivered, so everything below `until` too.
      if (batch.length === 0) break;
    }
    await reader.commit().catch(() => undefined);
  } finally {
    await reader.close();
  }
  return n;
}
