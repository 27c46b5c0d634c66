/**
 * In-memory twin of the event log for unit tests of processors: same partitioning, offsets, limits,
 * consumer-group and at-least-once semantics as the embedded log, checked by the same conformance
 * suite. "Durable" means: in a MemoryLogStorage, which outlives a closed MemoryEventLog, so a test can
 * close and reopen to play a restart.
 */
import { Waiters } from './waiters';
import { closedError, LogError } from './errors';
import { checkStartAt, type AppendResult, type ConsumedRecord, type ConsumerOptions, type ConsumerPosition, type EventLog, type LogConsumer, type LogRecord } from './port';
import { checkGroupName, checkPollArgs, DEFAULT_MAX_RECORD_BYTES, measureRecords, nextCommitted, partitionForKey } from './record';

interface StoredRecord {
  readonly key: string;
  readonly value: Uint8Array;
  readonly headers: Readonly<Record<string, string>>;
  readonly appendTimeMs: number;
}

/** What survives a MemoryEventLog's close: records and committed group positions. */
export class MemoryLogStorage {
  readonly partitions: StoredRecord[][];
  readonly groups = new Map<string, number[]>();
  /** Set while a MemoryEventLog has this storage open, like the file log's directory lock. */
  openBy: MemoryEventLog | undefined;

  constructor(readonly partitionCount: number = 4) {
    if (!Number.isSafeInteger(partitionCount) || partitionCount < 1) {
      throw new LogError('log_invalid_argument', `partitions must be a positive integer, got ${partitionCount}`);
    }
    this.partitions = Array.from({ length: partitionCount }, () => []);
  }
}

export interface MemoryLogOptions {
  /** Reuse to "reopen" a log; a fresh one is created when absent. */
  readonly storage?: MemoryLogStorage;
  /** Partition count for a fresh storage; must match an existing storage if given. Default 4. */
  readonly partitions?: number;
  readonly maxRecordBytes?: number;
  readonly now?: () => number;
}

interface Pending {
  readonly records: Array<{ partition: number; stored: StoredRecord }>;
  readonly results: AppendResult[];
  readonly resolve: (r: AppendResult[]) => void;
}

export class MemoryEventLog implements EventLog {
  readonly partitionCount: number;
  readonly storage: MemoryLogStorage;
  private readonly maxRecordBytes: number;
  private readonly now: () => number;
  private readonly nextOffset: number[];
  private pending: Pending[] = [];
  private flushScheduled = false;
  private failure: LogError | undefined;
  private closed = false;
  private version = 0;
  private readonly waiters = new Waiters();
  private readonly consumers = new Map<string, MemoryConsumer>();
  /** Groups opened with `ephemeral`: their positions live in memory only and go with their consumer. */
  private readonly ephemeral = new Set<string>();

  constructor(opts: MemoryLogOptions = {}) {
    const storage = opts.storage ?? new MemoryLogStorage(opts.partitions ?? 4);
    if (opts.partitions !== undefined && opts.partitions !== storage.partitionCount) {
      throw new LogError('log_config_mismatch', `storage has ${storage.partitionCount} partitions, ${opts.partitions} were requested`);
    }
    if (storage.openBy !== undefined) throw new LogError('log_locked', 'this memory log storage is already open');
    storage.openBy = this;
    this.storage = storage;
    this.partitionCount = storage.partitionCount;
    this.maxRecordBytes = opts.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES;
    this.now = opts.now ?? Date.now;
    this.nextOffset = storage.partitions.map((p) => p.length);
  }

  /**
   * Makes every later append fail with `error` (e.g. log_unavailable), as a poisoned file log or a
   * broker outage would, so tests can drive fail-closed paths. `undefined` heals it.
   */
  injectFailure(error: LogError | undefined): void {
    this.failure = error;
  }

  append(records: readonly LogRecord[]): Promise<AppendResult[]> {
    if (this.closed) return Promise.reject(closedError('event log'));
    if (this.failure !== undefined) return Promise.reject(this.failure);
    let measured;
    try {
      measured = measureRecords(records, this.maxRecordBytes);
    } catch (err) {
      return Promise.reject(err);
    }
    if (measured.length === 0) return Promise.resolve([]);
    const appendTimeMs = this.now();
    const entry: Pending['records'] = [];
    const results: AppendResult[] = [];
    for (const m of measured) {
      const partition = partitionForKey(m.key, this.partitionCount);
      const offset = this.nextOffset[partition]!;
      this.nextOffset[partition] = offset + 1;
      // Copies: a caller reusing its buffer after append() must not change the log.
      const stored: StoredRecord = {
        key: m.record.key,
        value: new Uint8Array(m.record.value),
        headers: Object.freeze({ ...(m.record.headers ?? {}) }),
        appendTimeMs,
      };
      entry.push({ partition, stored });
      results.push({ partition, offset });
    }
    return new Promise((resolve) => {
      this.pending.push({ records: entry, results, resolve });
      this.scheduleFlush();
    });
  }

  async consumer(group: string, opts: ConsumerOptions = {}): Promise<LogConsumer> {
    if (this.closed) throw closedError('event log');
    checkGroupName(group);
    if (this.consumers.has(group)) throw new LogError('log_group_busy', `consumer group ${group} already has an open consumer`);
    let start = this.storage.groups.get(group);
    if (start === undefined) {
      const ends = this.storage.partitions.map((p) => p.length);
      start =
        opts.startAt !== undefined
          ? checkStartAt(group, opts.startAt, ends.map(() => 0), ends)
          : this.storage.partitions.map((p) => (opts.startFrom === 'latest' ? p.length : 0));
      this.storage.groups.set(group, start);
      if (opts.ephemeral === true) this.ephemeral.add(group);
    }
    const c = new MemoryConsumer(this, group, [...start]);
    this.consumers.set(group, c);
    return c;
  }

  async endOffsets(): Promise<number[]> {
    return this.storage.partitions.map((p) => p.length);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Appends already accepted are flushed, as the file log drains its queue on close.
    this.flush();
    await Promise.all([...this.consumers.values()].map((c) => c.close()));
    this.wakeAll();
    if (this.storage.openBy === this) this.storage.openBy = undefined;
  }

  // ---- internals used by MemoryConsumer ----

  get durableVersion(): number {
    return this.version;
  }

  read(partition: number, from: number, max: number): ConsumedRecord[] {
    const recs = this.storage.partitions[partition]!;
    const out: ConsumedRecord[] = [];
    for (let o = from; o < recs.length && out.length < max; o++) {
      const r = recs[o]!;
      out.push({ key: r.key, value: new Uint8Array(r.value), headers: { ...r.headers }, partition, offset: o, appendTimeMs: r.appendTimeMs });
    }
    return out;
  }

  committedOf(group: string): number[] {
    return [...(this.storage.groups.get(group) ?? this.storage.partitions.map(() => 0))];
  }

  setCommitted(group: string, offsets: number[]): void {
    this.storage.groups.set(group, offsets);
  }

  waitForDurable(sinceVersion: number, ms: number): Promise<void> {
    if (this.version !== sinceVersion || this.closed) return Promise.resolve();
    return this.waiters.wait(ms);
  }

  wakeAll(): void {
    this.waiters.wakeAll();
  }

  consumerClosed(group: string, c: MemoryConsumer): void {
    if (this.consumers.get(group) !== c) return;
    this.consumers.delete(group);
    if (this.ephemeral.delete(group)) this.storage.groups.delete(group);
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // Like the file log's group commit: appends of one tick become visible and resolve together.
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    for (const p of batch) for (const r of p.records) this.storage.partitions[r.partition]!.push(r.stored);
    for (const p of batch) p.resolve(p.results);
    this.version++;
    this.wakeAll();
  }
}

class MemoryConsumer implements LogConsumer {
  private readonly position: number[];
  private readonly delivered: number[];
  private rr = 0;
  private closed = false;
  private pollChain: Promise<unknown> = Promise.resolve();
  private commitChain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly log: MemoryEventLog,
    readonly group: string,
    start: number[],
  ) {
    this.position = [...start];
    this.delivered = [...start];
  }

  poll(maxRecords: number, maxWaitMs: number): Promise<ConsumedRecord[]> {
    if (this.closed) return Promise.reject(closedError(`consumer ${this.group}`));
    try {
      checkPollArgs(maxRecords, maxWaitMs);
    } catch (err) {
      return Promise.reject(err);
    }
    const run = this.pollChain.then(() => this.pollOnce(maxRecords, maxWaitMs));
    this.pollChain = run.catch(() => undefined);
    return run;
  }

  commit(positions?: readonly ConsumerPosition[]): Promise<void> {
    if (this.closed) return Promise.reject(closedError(`consumer ${this.group}`));
    const run = this.commitChain.then(async () => {
      const next = nextCommitted(this.group, this.log.committedOf(this.group), this.delivered, positions);
      this.log.setCommitted(this.group, next);
    });
    this.commitChain = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.log.wakeAll();
    await this.pollChain;
    this.log.consumerClosed(this.group, this);
  }

  private async pollOnce(maxRecords: number, maxWaitMs: number): Promise<ConsumedRecord[]> {
    const deadline = Date.now() + maxWaitMs;
    for (;;) {
      if (this.closed) return [];
      const version = this.log.durableVersion;
      const out: ConsumedRecord[] = [];
      const n = this.position.length;
      for (let k = 0; k < n && out.length < maxRecords; k++) {
        const p = (this.rr + k) % n;
        const got = this.log.read(p, this.position[p]!, maxRecords - out.length);
        const last = got[got.length - 1];
        if (last !== undefined) {
          this.position[p] = last.offset + 1;
          this.delivered[p] = last.offset + 1;
          out.push(...got);
        }
      }
      this.rr = (this.rr + 1) % n;
      if (out.length > 0) return out;
      const remaining = deadline - Date.now();
      if (remaining <= 0) return [];
      await this.log.waitForDurable(version, remaining);
    }
  }
}
