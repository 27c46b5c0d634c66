import type { Logger } from 'pino';
import { isLogError, LogError, type LogErrorCode } from './errors';
import { positionsAfter, type AppendResult, type ConsumedRecord, type ConsumerOptions, type EventLog, type LogConsumer, type LogRecord } from './port';
import { RECORD_FIXED_BYTES } from './record';

/**
 * The policy alternative to failing closed when the shared log (Kafka) is unreachable: appends go
 * durably to a local spool (a file log on this machine, fdatasync'd) and are drained to the shared
 * log, in order, once it answers again. Requests keep flowing; their evidence arrives late but
 * complete, and the outage window is itself recorded (`onDrained` → audit.stopped 'paused').
 *
 * Ordering: while anything is spooled, every append goes to the spool too, so records of one key
 * keep their order across the outage. Consumers read the shared log only.
 *
 * Results: an append answered by the spool returns positions in the spool, not in the shared log
 * (they are not known yet); Attest's producers do not use the positions. Delivery from the spool
 * is at-least-once (a crash between a drain append and its commit repeats records), which the
 * evidence writer's deduplication by event id absorbs.
 *
 * Drain size: the shared log takes only so much per append() (Kafka: maxBatchBytes, 4 MiB by
 * default, and a larger call is refused with 'log_record_too_large', which no retry fixes), while
 * one poll of the spool can return far more (up to ~1 MiB from each of its partitions, 12 by
 * default, or a whole group-committed batch). The drain therefore sends the spool in pieces of at
 * most `maxDrainBatchBytes` (measured as the adapters measure a record, record.ts) and at most 500
 * records; a record larger than that goes alone. The port does not tell a log's batch limit, hence
 * the option; should the shared log still refuse a piece of several records as too large, the
 * drain halves its bound (for the life of this wrapper) and tries that piece again smaller.
 * Each piece is committed in the spool only after the shared log acknowledged it, in spool order.
 *
 * A record the shared log refuses on its own, for good ('log_record_too_large' or
 * 'log_invalid_argument': say the Kafka adapter's maxRecordBytes, or the topic's max.message.bytes,
 * is below the spool's), is not skipped and not retried in a loop: it stays in the spool, the drain
 * stops, and the wrapper keeps spooling (evidence is still accepted and durable, but reaches the
 * shared log no more). This is reported once, as an error log line naming the record's spool
 * position and size (never its content), in `stats.stalled` and through `onDrainStalled`. There is
 * no dead-letter path for the spool (the dead-letter topic is for events a processor could not
 * handle, and needs the shared log this record does not fit into). Fix the limit and restart the
 * process: open() drains again from the refused record on.
 */

export interface SpoolingLogOptions {
  primary: EventLog;
  /** A durable local log; only this wrapper reads it (consumer group `spool-drain`). */
  spool: EventLog;
  logger: Logger;
  /** First retry delay while draining fails; doubles up to 30 s. Default 500 ms. */
  retryMs?: number;
  /** Spooling began (first append the shared log refused). */
  onSpooling?: (sinceUs: number) => void;
  /** Everything spooled is in the shared log again. */
  onDrained?: (window: { fromUs: number; toUs: number; records: number }) => void;
  /** The drain stopped at a record the shared log refuses for good (see the module comment). */
  onDrainStalled?: (stall: SpoolDrainStall) => void;
  /**
   * Most bytes of records the drain sends in one append() to the shared log (a single larger record
   * goes alone). Must not exceed what the shared log accepts per call: the Kafka adapter's
   * maxBatchBytes (DEFAULT_KAFKA_MAX_BATCH_BYTES, 4 MiB). Default 2 MiB (DEFAULT_DRAIN_BATCH_BYTES).
   */
  maxDrainBatchBytes?: number;
  nowUs?: () => number;
}

/** Where and why the drain stopped: the first record the shared log refused for good. */
export interface SpoolDrainStall {
  /** The record's position in the spool (not in the shared log, where it never arrived). */
  readonly partition: number;
  readonly offset: number;
  /** Its encoded size as the log adapters measure it (record.ts). */
  readonly bytes: number;
  readonly code: LogErrorCode;
  readonly sinceUs: number;
}

export interface SpoolingLogStats {
  /** append() calls the drain made to the shared log that succeeded. */
  drainAppends: number;
  drainedRecords: number;
  drainedBytes: number;
  /** Pieces the shared log refused as too large and the drain sent again smaller. */
  drainBatchSplits: number;
  /** Set when the drain stopped at a record the shared log refuses for good; see SpoolDrainStall. */
  stalled: SpoolDrainStall | undefined;
}

const DRAIN_GROUP = 'spool-drain';
const DRAIN_BATCH = 500;
/** Half the Kafka adapter's default maxBatchBytes, and at least the default maxRecordBytes (1 MiB). */
export const DEFAULT_DRAIN_BATCH_BYTES = 2 * 1024 * 1024;
/** What the shared log refuses before appending anything, and would refuse again unchanged. */
const PERMANENT: ReadonlySet<string> = new Set<LogErrorCode>(['log_record_too_large', 'log_invalid_argument']);

/** A spooled record's size, computed exactly as measureRecord() (record.ts) does for the adapters' limits. */
function recordBytes(r: ConsumedRecord): number {
  let size = RECORD_FIXED_BYTES + Buffer.byteLength(r.key, 'utf8') + r.value.length;
  for (const [name, value] of Object.entries(r.headers)) size += 4 + Buffer.byteLength(name, 'utf8') + Buffer.byteLength(value, 'utf8');
  return size;
}

export class SpoolingEventLog implements EventLog {
  readonly partitionCount: number;
  readonly stats: SpoolingLogStats = { drainAppends: 0, drainedRecords: 0, drainedBytes: 0, drainBatchSplits: 0, stalled: undefined };
  private spooling: { sinceUs: number; records: number } | undefined;
  private draining: Promise<void> | undefined;
  private closed = false;
  /** Appends to the spool not yet durable: the drain may not finish while any is in flight. */
  private spoolAppends = 0;
  private readonly nowUs: () => number;
  /** The drain's current bound per append; only ever lowered (see drainPiece). */
  private drainBatchBytes: number;

  private constructor(private readonly opts: SpoolingLogOptions) {
    this.partitionCount = opts.primary.partitionCount;
    this.nowUs = opts.nowUs ?? (() => Date.now() * 1000);
    const max = opts.maxDrainBatchBytes ?? DEFAULT_DRAIN_BATCH_BYTES;
    if (!Number.isSafeInteger(max) || max < 1) {
      throw new LogError('log_invalid_argument', `maxDrainBatchBytes must be a positive integer, got ${max}`, { where: 'maxDrainBatchBytes' });
    }
    this.drainBatchBytes = max;
  }

  /** Opens the wrapper; records left in the spool by an earlier run are drained first. */
  static async open(opts: SpoolingLogOptions): Promise<SpoolingEventLog> {
    const log = new SpoolingEventLog(opts);
    const drain = await opts.spool.consumer(DRAIN_GROUP, { startFrom: 'earliest' });
    const pending = await drain.poll(1, 0);
    await drain.close();
    if (pending.length > 0) {
      log.spooling = { sinceUs: log.nowUs(), records: 0 };
      log.startDrain();
    }
    return log;
  }

  /** True while appends go to the local spool. */
  get isSpooling(): boolean {
    return this.spooling !== undefined;
  }

  async append(records: readonly LogRecord[]): Promise<AppendResult[]> {
    if (this.closed) throw new LogError('log_closed', 'the spooling log is closed');
    if (this.spooling === undefined) {
      try {
        return await this.opts.primary.append(records);
      } catch (err) {
        // Only an outage spools; a refused record (too large, invalid) is the caller's error.
        if (!isLogError(err) || err.code !== 'log_unavailable') throw err;
        if (this.spooling === undefined) {
          this.spooling = { sinceUs: this.nowUs(), records: 0 };
          this.opts.logger.warn({ code: err.code }, 'shared event log unreachable: spooling evidence to local disk');
          this.opts.onSpooling?.(this.spooling.sinceUs);
        }
        this.startDrain();
      }
    }
    this.spoolAppends++;
    try {
      const results = await this.opts.spool.append(records);
      this.spooling!.records += records.length;
      return results;
    } finally {
      this.spoolAppends--;
    }
  }

  private startDrain(): void {
    this.draining ??= this.drain().finally(() => {
      this.draining = undefined;
    });
  }

  /**
   * Moves spooled records to the shared log in order; returns when the spool is empty, or when it
   * stalled at a record the shared log refuses for good (stats.stalled).
   */
  private async drain(): Promise<void> {
    let delay = this.opts.retryMs ?? 500;
    while (!this.closed) {
      let consumer: LogConsumer | undefined;
      try {
        consumer = await this.opts.spool.consumer(DRAIN_GROUP, { startFrom: 'earliest' });
        for (;;) {
          const batch = await consumer.poll(DRAIN_BATCH, 0);
          if (batch.length === 0 && this.spoolAppends === 0) {
            // Checked together with no await in between: nothing durable is left in the spool and
            // no append to it is in flight, so from here on appends go to the shared log again.
            this.finishSpooling();
            await consumer.close();
            return;
          }
          if (batch.length === 0) {
            await new Promise((r) => setTimeout(r, 5));
            continue;
          }
          // In the spool's order, piece by piece; the shared log maps each key to its partition again.
          let i = 0;
          while (i < batch.length) {
            const sent = await this.drainPiece(consumer, batch, i);
            if (sent === 0) {
              // Stalled: the refused record and everything after it stay in the spool, uncommitted.
              await consumer.close();
              return;
            }
            i += sent;
            delay = this.opts.retryMs ?? 500;
          }
        }
      } catch (err) {
        await consumer?.close().catch(() => undefined);
        if (this.closed) return;
        this.opts.logger.warn({ code: (err as { code?: string }).code, retryInMs: delay }, 'spool drain failed; retrying');
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 30_000);
      }
    }
  }

  /**
   * Appends the records of `batch` from `from` on that fit in one append (at least one) to the
   * shared log, then commits them in the spool. Returns how many it delivered: 0 when the shared
   * log refused the first of them on its own for good (the drain has stalled). Any other failure
   * is thrown, for the drain to retry from the spool's committed position.
   */
  private async drainPiece(consumer: LogConsumer, batch: readonly ConsumedRecord[], from: number): Promise<number> {
    for (;;) {
      let end = from;
      let bytes = 0;
      while (end < batch.length) {
        const b = recordBytes(batch[end]!);
        if (end > from && bytes + b > this.drainBatchBytes) break;
        bytes += b;
        end++;
      }
      const piece = batch.slice(from, end);
      try {
        await this.opts.primary.append(piece.map((r) => ({ key: r.key, value: r.value, headers: r.headers })));
      } catch (err) {
        if (!isLogError(err) || !PERMANENT.has(err.code)) throw err;
        // Refused before anything was appended (port.ts), so sending again cannot duplicate. Let
        // the shared log settle the refused request first (the Kafka adapter fails calls made in
        // the same tick as a failed request with that request's error).
        await new Promise((r) => setImmediate(r));
        if (piece.length > 1) {
          this.drainBatchBytes = Math.max(1, Math.floor(bytes / 2));
          this.stats.drainBatchSplits++;
          this.opts.logger.warn(
            { code: err.code, records: piece.length, bytes, maxDrainBatchBytes: this.drainBatchBytes },
            'the shared event log refused a spool drain append as too large; sending smaller pieces (lower maxDrainBatchBytes to match its limit)',
          );
          continue;
        }
        this.stall(piece[0]!, bytes, err);
        return 0;
      }
      // Only now, after the shared log acknowledged them, do the records leave the spool.
      await consumer.commit(positionsAfter(piece));
      this.stats.drainAppends++;
      this.stats.drainedRecords += piece.length;
      this.stats.drainedBytes += bytes;
      return piece.length;
    }
  }

  private stall(record: ConsumedRecord, bytes: number, err: LogError): void {
    const stall: SpoolDrainStall = { partition: record.partition, offset: record.offset, bytes, code: err.code, sinceUs: this.nowUs() };
    this.stats.stalled = stall;
    // Position and size only: the record is evidence and its content stays out of the logs.
    this.opts.logger.error(
      { spoolPartition: stall.partition, spoolOffset: stall.offset, bytes, code: err.code, reason: err.message, fix: err.fix },
      'the shared event log refuses a spooled record for good: spool drain stopped, evidence stays spooled until the limit is raised and the process restarted',
    );
    this.opts.onDrainStalled?.(stall);
  }

  private finishSpooling(): void {
    const s = this.spooling;
    this.spooling = undefined;
    if (s === undefined) return;
    const window = { fromUs: s.sinceUs, toUs: this.nowUs(), records: s.records };
    this.opts.logger.warn(window, 'shared event log reachable again: spooled evidence delivered');
    this.opts.onDrained?.(window);
  }

  consumer(group: string, opts?: ConsumerOptions): Promise<LogConsumer> {
    return this.opts.primary.consumer(group, opts);
  }

  endOffsets(): Promise<number[]> {
    return this.opts.primary.endOffsets();
  }

  /** Waits until the drain ends: the spool is drained, or the drain stalled (stats.stalled). */
  async drained(): Promise<void> {
    while (this.draining) await this.draining;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.draining?.catch(() => undefined);
    await this.opts.spool.close();
    await this.opts.primary.close();
  }
}
