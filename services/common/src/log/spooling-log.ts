import type { Logger } from 'pino';
import { isLogError, LogError } from './errors';
import type { AppendResult, ConsumerOptions, EventLog, LogConsumer, LogRecord } from './port';

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
  nowUs?: () => number;
}

const DRAIN_GROUP = 'spool-drain';
const DRAIN_BATCH = 500;

export class SpoolingEventLog implements EventLog {
  readonly partitionCount: number;
  private spooling: { sinceUs: number; records: number } | undefined;
  private draining: Promise<void> | undefined;
  private closed = false;
  /** Appends to the spool not yet durable: the drain may not finish while any is in flight. */
  private spoolAppends = 0;
  private readonly nowUs: () => number;

  private constructor(private readonly opts: SpoolingLogOptions) {
    this.partitionCount = opts.primary.partitionCount;
    this.nowUs = opts.nowUs ?? (() => Date.now() * 1000);
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

  /** Moves spooled records to the shared log in order; returns when the spool is empty. */
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
          // In the spool's order; the shared log maps each key to its partition again.
          await this.opts.primary.append(batch.map((r) => ({ key: r.key, value: r.value, headers: r.headers })));
          await consumer.commit();
          delay = this.opts.retryMs ?? 500;
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

  /** Waits until the spool is drained (tests, graceful shutdown). */
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
