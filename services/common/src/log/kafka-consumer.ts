/**
 * One member of a Kafka consumer group, behind the port's LogConsumer (see kafka-log.ts for the
 * adapter as a whole and docs/kafka.md for the semantics).
 *
 * Records are fetched on demand by poll(): a broker-side long poll per partition leader, on a
 * connection pool of its own so commits and heartbeats never queue behind a fetch. Positions:
 * `fetchPos` (next offset to fetch), `delivered` (next offset after what poll() returned) and
 * `committed` (what the group has durably); a rebalance resets the first two to the third for the
 * newly assigned partitions and drops whatever was buffered.
 *
 * Read-ahead. Once a poll leaves fewer records buffered than it was asked for, the next fetch
 * starts at once, so a steady consumer finds the next records already decoded instead of waiting
 * a broker round trip per batch. An empty poll is truthful: while the last fetch said a partition
 * holds more than was fetched (its high watermark, or last stable offset under read_committed),
 * poll() keeps waiting for it past `maxWaitMs` rather than returning [], because callers (the
 * evidence writer's chain check) take [] to mean "caught up".
 */
import { ConnectionPool, Consumer, FetchIsolationLevels, ListOffsetTimestamps, type BaseOptions, type ClusterMetadata } from '@platformatic/kafka';
import { closedError, type LogError } from './errors';
import { toLogError } from './kafka-errors';
import { checkStartAt, type ConsumedRecord, type ConsumerPosition, type LogConsumer } from './port';
import { checkPollArgs, nextCommitted } from './record';
import { Waiters } from './waiters';

/** Headers of a record that has none: shared, never written. */
const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

/** Longest single broker-side fetch wait; a longer poll() issues several. */
export const DEFAULT_MAX_FETCH_WAIT_MS = 5_000;

/** What a consumer needs from the log that made it. */
export interface ConsumerOwner {
  readonly topic: string;
  readonly partitionCount: number;
  consumerClosed(group: string, c: KafkaConsumer): void;
}

export interface KafkaConsumerOptions {
  readonly brokers: readonly string[];
  readonly groupIdPrefix?: string;
  readonly consumer?: {
    readonly sessionTimeoutMs?: number;
    readonly heartbeatIntervalMs?: number;
    readonly rebalanceTimeoutMs?: number;
    readonly maxFetchWaitMs?: number;
    readonly maxFetchBytesPerPartition?: number;
  };
}

/** Bounds on one broker-side fetch. */
interface FetchTarget {
  readonly leader: number;
  readonly partitions: number[];
}

export class KafkaConsumer implements LogConsumer {
  private readonly member: Consumer;
  /** Fetches use their own connections: a long poll must not delay heartbeats and commits. */
  private readonly fetchPool: ConnectionPool;
  private readonly topic: string;
  private readonly n: number;
  private assigned: number[] = [];
  private readonly fetchPos: number[];
  private readonly delivered: number[];
  private committed: number[];
  private readonly buffered: ConsumedRecord[][];
  /** Per partition: the end the broker reported with the last fetch (records at or past fetchPos exist below it). */
  private readonly fetchableEnd: number[];
  private readonly inflight = new Set<number>();
  private fetchError: LogError | undefined;
  /** A failed (re)join or reassignment: reported by the next poll, which also starts the recovery. */
  private problem: { error: LogError; recover: 'rejoin' | 'refresh' } | undefined;
  /** Bumped on every (re)assignment; fetches of an older generation are dropped. */
  private generation = 0;
  /** Settles (never rejects) when the current assignment is known. */
  private ready: Promise<void> = Promise.resolve();
  private startFrom: 'earliest' | 'latest' = 'earliest';
  private startAt: readonly number[] | undefined;
  private readonly waiters = new Waiters();
  private rr = 0;
  private closed = false;
  private closing: Promise<void> | undefined;
  private pollChain: Promise<unknown> = Promise.resolve();
  private commitChain: Promise<unknown> = Promise.resolve();
  private readonly maxFetchWaitMs: number;
  private readonly maxBytesPerPartition: number;
  private readonly onJoin = (): void => {
    if (!this.closed) this.settle(this.refreshAssignment(), 'refresh');
  };
  /**
   * The client gave up rejoining the group (e.g. the coordinator stayed unreachable through its
   * retries) and stopped heartbeating. Without this listener the 'error' event would crash the process.
   */
  private readonly onError = (err: unknown): void => {
    if (this.closed) return;
    this.generation++;
    this.assigned = [];
    for (const b of this.buffered) b.length = 0;
    this.problem = { error: toLogError(err, `staying in consumer group ${this.group} on ${this.topic}`, this.opts.brokers), recover: 'rejoin' };
    this.waiters.wakeAll();
  };

  constructor(
    private readonly log: ConsumerOwner,
    readonly group: string,
    base: BaseOptions,
    private readonly opts: KafkaConsumerOptions,
  ) {
    this.topic = log.topic;
    this.n = log.partitionCount;
    const clientId = `${base.clientId}-${group}`.slice(0, 255);
    this.member = new Consumer({
      ...base,
      clientId,
      groupId: `${opts.groupIdPrefix ?? `${log.topic}.`}${group}`,
      autocommit: false,
      sessionTimeout: opts.consumer?.sessionTimeoutMs ?? 30_000,
      heartbeatInterval: opts.consumer?.heartbeatIntervalMs ?? 3000,
      rebalanceTimeout: opts.consumer?.rebalanceTimeoutMs ?? 60_000,
      isolationLevel: FetchIsolationLevels.READ_COMMITTED,
    });
    this.fetchPool = new ConnectionPool(clientId, {
      connectTimeout: base.connectTimeout,
      requestTimeout: base.requestTimeout,
      ...(base.tls ? { tls: base.tls } : {}),
      ...(base.sasl ? { sasl: base.sasl } : {}),
    });
    this.member.on('error', this.onError);
    this.maxFetchWaitMs = opts.consumer?.maxFetchWaitMs ?? DEFAULT_MAX_FETCH_WAIT_MS;
    this.maxBytesPerPartition = opts.consumer?.maxFetchBytesPerPartition ?? 1024 * 1024;
    this.fetchPos = Array.from({ length: this.n }, () => 0);
    this.delivered = Array.from({ length: this.n }, () => 0);
    this.committed = Array.from({ length: this.n }, () => 0);
    this.buffered = Array.from({ length: this.n }, () => []);
    this.fetchableEnd = Array.from({ length: this.n }, () => 0);
  }

  /** Joins the group and fixes its starting positions (committing them for a new group). */
  async join(startFrom: 'earliest' | 'latest', startAt?: readonly number[]): Promise<void> {
    this.startFrom = startFrom;
    if (startAt !== undefined) {
      // Checked before joining, so a refused position leaves no group behind.
      const [earliest, latest] = await Promise.all(
        [ListOffsetTimestamps.EARLIEST, ListOffsetTimestamps.LATEST].map((timestamp) => this.member.listOffsets({ topics: [this.topic], timestamp })),
      );
      const at = (m: Map<string, bigint[]> | undefined) => Array.from({ length: this.n }, (_, p) => Number(m?.get(this.topic)?.[p] ?? 0n));
      this.startAt = checkStartAt(this.group, startAt, at(earliest), at(latest));
    }
    this.member.topics.track(this.topic);
    await this.member.joinGroup({});
    await this.refreshAssignment();
    // Later rebalances (members joining or leaving) reassign partitions.
    this.member.on('consumer:group:join', this.onJoin);
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
      await this.ready;
      const next = nextCommitted(this.group, this.committed, this.delivered, positions);
      // Only what moved: other members own the other partitions and commit them themselves.
      const changed = next.map((o, p) => ({ p, o })).filter(({ p, o }) => o !== this.committed[p]);
      if (changed.length === 0) return;
      await this.member
        .commit({ offsets: changed.map(({ p, o }) => ({ topic: this.topic, partition: p, offset: BigInt(o), leaderEpoch: -1 })) })
        .catch((err: unknown) => {
          throw toLogError(err, `committing group ${this.group} on ${this.topic}`, this.opts.brokers);
        });
      const committed = [...this.committed];
      for (const { p, o } of changed) committed[p] = o;
      this.committed = committed;
    });
    this.commitChain = run.catch(() => undefined);
    return run;
  }

  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    this.closed = true;
    this.waiters.wakeAll();
    this.member.off('consumer:group:join', this.onJoin);
    await this.pollChain;
    await this.ready;
    await this.commitChain;
    // Leaving the group (rather than timing out of it) lets the next member take over at once.
    await this.member.close().catch(() => {});
    await this.fetchPool.close().catch(() => {});
    this.log.consumerClosed(this.group, this);
  }

  private settle(work: Promise<void>, recover: 'rejoin' | 'refresh'): void {
    this.ready = work.catch((err: unknown) => {
      if (!this.closed) this.problem = { error: toLogError(err, `joining consumer group ${this.group} on ${this.topic}`, this.opts.brokers), recover };
    });
  }

  private async rejoin(): Promise<void> {
    await this.member.joinGroup({});
    await this.refreshAssignment();
  }

  private async refreshAssignment(): Promise<void> {
    const generation = ++this.generation;
    for (const b of this.buffered) b.length = 0;
    const assigned = [...(this.member.assignments?.find((a) => a.topic === this.topic)?.partitions ?? [])].sort((a, b) => a - b);
    const all = Array.from({ length: this.n }, (_, p) => p);
    const listed = await this.member.listCommittedOffsets({ topics: [{ topic: this.topic, partitions: all }] });
    const committed = (listed.get(this.topic) ?? []).map(Number);
    const missing = all.filter((p) => !((committed[p] ?? -1) >= 0));
    if (missing.length > 0) {
      // A new group: fix its start now, so a 'latest' group rejoining later does not skip ahead.
      const startAt = this.startAt;
      if (startAt !== undefined) {
        for (const p of missing) committed[p] = startAt[p] ?? 0;
      } else {
        const ends = await this.member.listOffsets({
          topics: [this.topic],
          timestamp: this.startFrom === 'latest' ? ListOffsetTimestamps.LATEST : ListOffsetTimestamps.EARLIEST,
        });
        const start = ends.get(this.topic) ?? [];
        for (const p of missing) committed[p] = Number(start[p] ?? 0n);
      }
      await this.member.commit({
        offsets: missing.map((p) => ({ topic: this.topic, partition: p, offset: BigInt(committed[p]!), leaderEpoch: -1 })),
      });
    }
    if (generation !== this.generation) return;
    this.committed = all.map((p) => committed[p] ?? 0);
    this.assigned = assigned;
    for (const p of assigned) {
      this.fetchPos[p] = this.committed[p]!;
      this.delivered[p] = this.committed[p]!;
      this.fetchableEnd[p] = 0;
    }
    this.waiters.wakeAll();
  }

  private async pollOnce(maxRecords: number, maxWaitMs: number): Promise<ConsumedRecord[]> {
    const deadline = Date.now() + maxWaitMs;
    for (;;) {
      if (this.closed) return [];
      await this.ready;
      if (this.closed) return [];
      if (this.problem !== undefined) {
        const { error, recover } = this.problem;
        this.problem = undefined;
        // Report now, recover in the background: the caller's next poll waits for the recovery.
        this.settle(recover === 'rejoin' ? this.rejoin() : this.refreshAssignment(), recover);
        throw error;
      }
      const out = this.take(maxRecords);
      if (out.length > 0) {
        // Read ahead: the next poll's records are fetched and decoded while the caller works.
        if (this.bufferedCount() < maxRecords) this.startFetches(this.maxFetchWaitMs);
        return out;
      }
      if (this.fetchError !== undefined) {
        const err = this.fetchError;
        this.fetchError = undefined;
        throw err;
      }
      const remaining = deadline - Date.now();
      const behind = this.knownBehind();
      // Caught up, the long poll may wait the whole poll; behind, a fetch returns at once anyway.
      this.startFetches(Math.max(0, Math.min(behind ? this.maxFetchWaitMs : remaining, this.maxFetchWaitMs)));
      if (remaining <= 0 && !behind) return [];
      // Records known to exist are on their way: wait for them, not for the caller's deadline.
      await this.waiters.wait(behind ? this.maxFetchWaitMs : remaining);
    }
  }

  private bufferedCount(): number {
    let n = 0;
    for (const p of this.assigned) n += this.buffered[p]!.length;
    return n;
  }

  /** Whether the last fetch of an assigned partition reported records past what has been fetched. */
  private knownBehind(): boolean {
    for (const p of this.assigned) if (this.fetchPos[p]! < this.fetchableEnd[p]!) return true;
    return false;
  }

  /** Up to max buffered records, round-robin over partitions so none starves. */
  private take(max: number): ConsumedRecord[] {
    const out: ConsumedRecord[] = [];
    for (let k = 0; k < this.n && out.length < max; k++) {
      const p = (this.rr + k) % this.n;
      const buf = this.buffered[p]!;
      if (buf.length === 0) continue;
      const got = buf.splice(0, max - out.length);
      this.delivered[p] = got[got.length - 1]!.offset + 1;
      out.push(...got);
    }
    this.rr = (this.rr + 1) % this.n;
    return out;
  }

  private startFetches(maxWaitMs: number): void {
    if (this.assigned.length === 0) return;
    const generation = this.generation;
    void this.member
      .metadata({ topics: [this.topic] })
      .then((meta) => {
        if (generation !== this.generation || this.closed) return;
        for (const target of this.targets(meta)) {
          if (this.inflight.has(target.leader)) continue;
          this.inflight.add(target.leader);
          void this.fetchFrom(meta, target, maxWaitMs, generation).finally(() => {
            this.inflight.delete(target.leader);
            this.waiters.wakeAll();
          });
        }
      })
      .catch((err: unknown) => {
        if (this.closed) return;
        this.fetchError = toLogError(err, `reading metadata of ${this.topic}`, this.opts.brokers);
        this.waiters.wakeAll();
      });
  }

  private targets(meta: ClusterMetadata): FetchTarget[] {
    const topic = meta.topics.get(this.topic);
    const byLeader = new Map<number, number[]>();
    for (const p of this.assigned) {
      const leader = topic?.partitions[p]?.leader ?? -1;
      byLeader.set(leader, [...(byLeader.get(leader) ?? []), p]);
    }
    return [...byLeader].map(([leader, partitions]) => ({ leader, partitions }));
  }

  private async fetchFrom(meta: ClusterMetadata, target: FetchTarget, maxWaitMs: number, generation: number): Promise<void> {
    const topicId = meta.topics.get(this.topic)?.id;
    let response: Awaited<ReturnType<Consumer['fetch']>>;
    try {
      if (topicId === undefined || target.leader < 0) throw new Error(`no leader known for ${this.topic} partitions ${target.partitions.join(',')}`);
      response = await this.member.fetch({
        node: target.leader,
        connectionPool: this.fetchPool,
        maxWaitTime: maxWaitMs,
        minBytes: 1,
        maxBytes: this.maxBytesPerPartition * target.partitions.length,
        topics: [
          {
            topicId,
            partitions: target.partitions.map((p) => ({
              partition: p,
              fetchOffset: BigInt(this.fetchPos[p]!),
              partitionMaxBytes: this.maxBytesPerPartition,
              currentLeaderEpoch: -1,
              lastFetchedEpoch: -1,
            })),
          },
        ],
      });
    } catch (err) {
      if (this.closed || generation !== this.generation) return;
      this.member.clearMetadata();
      this.fetchError = toLogError(err, `fetching from ${this.topic} for group ${this.group}`, this.opts.brokers);
      return;
    }
    if (this.closed || generation !== this.generation) return;
    for (const t of response.responses) {
      for (const part of t.partitions) {
        const p = part.partitionIndex;
        const from = this.fetchPos[p]!;
        let next = from;
        for (const batch of part.records ?? []) {
          // LogAppendTime topics carry the broker's clock in maxTimestamp only (the record deltas keep
          // the producer's); attribute bit 3 says which applies.
          const logAppendTime = (batch.attributes & 0x08) !== 0;
          const isControl = (batch.attributes & 0x20) !== 0;
          if (!isControl) {
            for (const r of batch.records) {
              const offset = Number(batch.firstOffset) + r.offsetDelta;
              if (offset < next) continue;
              let headers: Record<string, string> = NO_HEADERS;
              if (r.headers.length > 0) {
                headers = {};
                for (const [k, v] of r.headers) headers[k?.toString('utf8') ?? ''] = v?.toString('utf8') ?? '';
              }
              const v = r.value;
              this.buffered[p]!.push({
                key: r.key?.toString('utf8') ?? '',
                // A view, not a copy: the client's record bytes are its own fresh memory (a socket
                // read or a decompression output, never reused), so the copy bought nothing and
                // cost an allocation per record. The view keeps its fetch response alive only as
                // long as the record itself.
                value: v === undefined || v === null ? new Uint8Array(0) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength),
                headers,
                partition: p,
                offset,
                appendTimeMs: Number(logAppendTime ? batch.maxTimestamp : batch.firstTimestamp + r.timestampDelta),
              });
            }
          }
          // The batch's last offset, not its last record: compaction and control batches leave gaps.
          next = Math.max(next, Number(batch.firstOffset) + batch.lastOffsetDelta + 1);
        }
        this.fetchPos[p] = next;
        // read_committed reads up to the last stable offset; -1 when the broker does not say.
        // A partition-level error says nothing about what is there: do not wait on it.
        const lso = Number(part.lastStableOffset);
        this.fetchableEnd[p] = part.errorCode !== 0 ? 0 : lso >= 0 ? lso : Number(part.highWatermark);
      }
    }
  }
}
