import type { Logger } from 'pino';

/**
 * The life of a stream processor that keeps a state folded from the log (the risk and DLP
 * processors): rebuild the state, then step (poll → decide → emit durably → commit) until stopped;
 * on any failure discard the state, back off and rebuild, never decide again on a state that may
 * hold outputs that are not on the log. The processor supplies the three steps; this owns start,
 * stop, idle waits and the backoff.
 */

export interface LoopStats {
  state: 'new' | 'running' | 'stopping' | 'stopped';
  retries: number;
  lastError: unknown;
}

export interface ProcessorLoopOptions {
  /** 'risk processor', 'dlp processor': in logs and errors. */
  label: string;
  stats: LoopStats;
  logger: Logger;
  retry?: { initialMs?: number; maxMs?: number } | undefined;
  now: () => number;
  /**
   * Settles the processor's own evidence before each rebuild (EvidenceEmitter.settle): outputs of a
   * failed batch whose append had an unknown outcome are appended again first, so the rebuild reads
   * them and does not decide those inputs twice.
   */
  settle: () => Promise<void>;
  /** Builds the state from the log and opens the consumer. */
  rebuild: () => Promise<void>;
  /** One poll and its batch; throws on a failure (nothing committed). */
  step: () => Promise<void>;
  closeConsumer: () => Promise<void>;
  /** Runs once the loop has ended (stop or give-up), before the consumer closes: e.g. a state snapshot. Must not throw. */
  onStopped?: () => Promise<void>;
}

export class ProcessorLoop {
  stopping = false;
  /** True while a poll waits: stop() may then close the consumer at once. */
  polling = false;
  private loop: Promise<void> | undefined;
  private starting: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private idleWaiters: { since: number; resolve: () => void }[] = [];

  constructor(private readonly o: ProcessorLoopOptions) {}

  /** Rebuilds, then runs in the background. Resolves once rebuilt. */
  start(): Promise<void> {
    const { stats } = this.o;
    if (stats.state !== 'new') return Promise.reject(new Error(`${this.o.label} already ${stats.state}`));
    stats.state = 'running';
    this.starting = this.run0();
    return this.starting;
  }

  private async run0(): Promise<void> {
    let rebuilt = false;
    let delay = this.initialDelay;
    while (!rebuilt && !this.stopping) {
      try {
        await this.o.settle();
        await this.o.rebuild();
        rebuilt = true;
      } catch (err) {
        delay = await this.failed(err, 'rebuild', delay);
      }
    }
    this.loop = this.run().finally(async () => {
      await this.o.onStopped?.().catch(() => undefined);
      await this.o.closeConsumer();
      this.o.stats.state = 'stopped';
      for (const w of this.idleWaiters.splice(0)) w.resolve();
    });
  }

  /** Finishes the batch in hand, then leaves the group. Idempotent. */
  async stop(): Promise<void> {
    const { stats } = this.o;
    if (stats.state === 'running') stats.state = 'stopping';
    this.stopping = true;
    this.wake?.();
    // Nothing is in hand while a poll waits: closing the consumer ends the wait.
    if (this.polling) await this.o.closeConsumer();
    await this.starting?.catch(() => undefined);
    await this.loop;
    if (this.loop === undefined) {
      await this.o.closeConsumer();
      stats.state = 'stopped';
    }
  }

  /** Resolves once everything durable in the log when called has been handled and committed. */
  idle(): Promise<void> {
    if (this.o.stats.state === 'stopped') return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push({ since: this.o.now(), resolve }));
  }

  /** A poll that began at `pollStart` came back empty: whoever waited for idleness before it is served. */
  settleIdle(pollStart: number): void {
    for (const w of this.idleWaiters.filter((x) => x.since <= pollStart)) {
      this.idleWaiters.splice(this.idleWaiters.indexOf(w), 1);
      w.resolve();
    }
  }

  private async run(): Promise<void> {
    let delay = this.initialDelay;
    let needRebuild = false;
    while (!this.stopping) {
      try {
        if (needRebuild) {
          await this.o.settle();
          await this.o.rebuild();
          needRebuild = false;
        }
        await this.o.step();
        delay = this.initialDelay;
      } catch (err) {
        if (this.stopping) break;
        // The state may hold outputs that are not on the log: discard it, never decide again on it.
        needRebuild = true;
        await this.o.closeConsumer();
        delay = await this.failed(err, 'batch', delay);
      }
    }
  }

  private get initialDelay(): number {
    return this.o.retry?.initialMs ?? 50;
  }

  private async failed(err: unknown, what: string, delay: number): Promise<number> {
    this.o.stats.retries++;
    this.o.stats.lastError = err;
    this.o.logger.warn(
      { err, code: (err as { code?: string }).code, what, delayMs: delay },
      `${this.o.label}: failure, nothing committed; rebuilding from the log after backoff`,
    );
    await this.sleep(delay);
    return Math.min(this.o.retry?.maxMs ?? 5_000, delay * 2);
  }

  /** A backoff wait that stop() cuts short. */
  sleep(ms: number): Promise<void> {
    if (this.stopping) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        this.wake = undefined;
        resolve();
      };
    });
  }
}
