/**
 * State snapshots of the approval book the processors role folds (ApprovalService): start from the
 * last snapshot and read only the records after it, instead of the whole retained log, so approvals
 * can be decided again within moments of a restart. See docs/processors.md.
 *
 * The service's consumer group is new on every start and never committed (its book is a projection
 * of the log), so "covered positions" here are the positions the book has folded: the snapshot is
 * the book after folding exactly the records below them, plus this instance's own decisions that
 * were durable by then (folding those again when they are read changes nothing: `evolve` ignores a
 * second `requested`, a second vote and anything after a final state). A snapshot whose positions
 * lie beyond the log's end, below its oldest retained record, or whose anchor records differ, is
 * refused with a warning and the book is read from the oldest record, as without snapshots.
 */
import type { Logger } from 'pino';
import { ApprovalService, type ApprovalServiceOptions } from '../../../common/src/approvals/service';
import type { ApprovalState } from '../../../common/src/approvals';
import { isLogError } from '../../../common/src/log';
import { anchorOf, SnapshotRejected, type SnapshotOptions } from '../snapshot-store';
import { SnapshotKeeper } from '../snapshots';

/** The name of the approval book's snapshot (the service's own group changes every start). */
export const APPROVALS_SNAPSHOT_GROUP = 'approvals';
/** Version of the snapshot's state shape (ApprovalState[]): bump it with any change to ApprovalState. */
export const APPROVAL_BOOK_STATE_VERSION = 1;

export interface SnapshottedApprovals {
  readonly service: ApprovalService;
  readonly keeper: SnapshotKeeper;
  /** Records the initial read folded (from the snapshot's positions when one was used). */
  readonly replayed: number;
  /** Saves a snapshot of the book now (call after the service stopped, at a clean stop). */
  saveNow(): Promise<void>;
}

/**
 * Starts an ApprovalService from the last snapshot when one may be used (else from the oldest
 * record), and keeps snapshots on the cadence of `snapshots` while it follows the log. Without
 * `snapshots`, this is ApprovalService.start.
 */
export async function startApprovalService(opts: ApprovalServiceOptions, snapshots: SnapshotOptions | undefined, logger: Logger, now: () => number = Date.now): Promise<SnapshottedApprovals> {
  const log = opts.log;
  const keeper = new SnapshotKeeper({
    snapshots,
    group: APPROVALS_SNAPSHOT_GROUP,
    partitions: log.partitionCount,
    logger,
    label: 'approvals',
    stateVersion: APPROVAL_BOOK_STATE_VERSION,
    fingerprint: '',
    now,
  });
  let service: ApprovalService | undefined;
  const onIngested: ApprovalServiceOptions['onIngested'] = (batch) => {
    opts.onIngested?.(batch);
    keeper.committed(batch);
    if (service !== undefined && keeper.due()) void keeper.save(() => service!.all(), 'cadence');
  };
  const snap = snapshots === undefined ? undefined : await keeper.load(await log.endOffsets());
  if (snap !== undefined) {
    try {
      const states = checkStates(snap.state);
      keeper.reset(snap.positions, snap.anchors, true);
      service = await ApprovalService.start({
        ...opts,
        onIngested,
        resume: {
          states,
          positions: snap.positions,
          check: {
            partitions: snap.anchors.map((a) => a !== null),
            record: (r) => {
              const want = snap.anchors[r.partition];
              const got = anchorOf(r);
              if (want === null || want === undefined || want.offset !== got.offset || want.appendTimeMs !== got.appendTimeMs || want.digest !== got.digest) {
                throw new SnapshotRejected('snapshot_anchor_mismatch', `partition ${r.partition}: the record at offset ${r.offset} is not the one the snapshot covers`);
              }
            },
          },
        },
      });
    } catch (err) {
      const rejected =
        err instanceof SnapshotRejected
          ? err
          : isLogError(err) && err.code === 'log_offset_out_of_range'
            ? new SnapshotRejected('snapshot_below_retention', err.message)
            : undefined;
      if (rejected === undefined) throw err;
      keeper.rejected(rejected);
      service = undefined;
    }
  }
  if (service === undefined) {
    keeper.reset(new Array<number>(log.partitionCount).fill(0), new Array(log.partitionCount).fill(null), false);
    // A group of its own: a refused resume fixed the first group's start at the snapshot's positions.
    service = await ApprovalService.start({ ...opts, group: snap === undefined ? opts.group : `${opts.group}.full`.slice(0, 128), onIngested });
  }
  const started = service;
  return {
    service: started,
    keeper,
    replayed: started.counts.records,
    saveNow: () => keeper.save(() => started.all(), 'stop'),
  };
}

/** The snapshot's states, shape-checked (an ApprovalState is plain data). */
function checkStates(state: unknown): ApprovalState[] {
  const ok =
    Array.isArray(state) &&
    state.every((s: unknown) => {
      const x = s as Record<string, unknown> | null;
      return (
        x !== null &&
        typeof x === 'object' &&
        typeof x['approvalId'] === 'string' &&
        typeof x['status'] === 'string' &&
        typeof x['requestedAtMs'] === 'number' &&
        typeof x['expiresAtMs'] === 'number' &&
        Array.isArray(x['votes']) &&
        typeof x['rule'] === 'object' &&
        typeof x['requester'] === 'object' &&
        typeof x['hold'] === 'object'
      );
    });
  if (!ok) throw new SnapshotRejected('snapshot_state_invalid', 'the approval book state is malformed');
  return state as ApprovalState[];
}
