/**
 * The Kafka adapter of the EventLog port (distributed mode). It passes log-conformance.ts against a
 * real broker; docs/kafka.md describes topics, settings and failure behaviour.
 *
 * Client: @platformatic/kafka, chosen by measurement (bench/RESULTS.md, "Kafka clients"): against the
 * same Kafka 4.4 broker it produced 170k msgs/s batched to kafkajs' 89k with ~60 % of the CPU per
 * message, and it ships lz4/snappy codecs and a pull-style fetch API; kafkajs works but is in
 * maintenance mode and needs extra packages for lz4/zstd.
 *
 * Producer. One idempotent producer (acks=all) per log. Concurrent append() calls are coalesced into
 * one produce request, and only one request is in flight at a time: @platformatic/kafka advances its
 * per-partition sequence numbers only when a request succeeds, so two requests in flight reuse
 * sequence numbers (measured: OUT_OF_ORDER_SEQUENCE_NUMBER at 256 in flight). For the same reason a
 * failed or timed-out request replaces the producer (new producer id): with the old id, the next
 * request would reuse the failed one's sequence numbers, and if that one had in fact been written,
 * the broker would acknowledge the new records as "duplicates" without storing them.
 * Partitions are chosen here with Kafka's own default partitioner (murmur2 of the key bytes, positive,
 * modulo the partition count), so Java and other clients keyed by session id agree with us.
 *
 * Consumer. Each LogConsumer is one member of a Kafka consumer group (classic protocol), so several
 * processor instances share a group's partitions. Records are fetched on demand by poll() with a
 * broker-side long poll (no busy loop; the broker answers as soon as a record is appended) on a
 * connection of its own, so commits and heartbeats never queue behind a fetch. Nothing is committed
 * automatically: commit() writes exactly what the caller asks.
 */
import {
  Admin,
  ListOffsetTimestamps,
  murmur2,
  ProduceAcks,
  Producer,
  type BaseOptions,
  type CompressionAlgorithmValue,
  type MessageToProduce,
} from '@platformatic/kafka';
import { closedError, LogError } from './errors';
import { KafkaConsumer, type KafkaConsumerOptions } from './kafka-consumer';
import { kafkaBaseOptions, toLogError, type KafkaConnectionOptions } from './kafka-errors';
import { checkTopicName, ensureKafkaTopics, existingPartitions, type KafkaTopicSettings } from './kafka-topics';
import type { AppendResult, ConsumerOptions, EventLog, LogConsumer, LogRecord } from './port';
import { checkGroupName, DEFAULT_MAX_RECORD_BYTES, measureRecords } from './record';
import { Waiters } from './waiters';

export const KAFKA_COMPRESSIONS = ['none', 'gzip', 'snappy', 'lz4'] as const;
export type KafkaCompression = (typeof KAFKA_COMPRESSIONS)[number];

/**
 * lz4: measured in bench/kafka-log.bench.ts (see docs/kafka.md) as the cheapest codec that shrinks
 * Avro events; zstd needs Node ≥ 22.15 (node:zlib), so it is not offered on Node 20.
 */
export const DEFAULT_KAFKA_COMPRESSION: KafkaCompression = 'lz4';
/** Most bytes of records per produce request, and so the largest single append() call. */
export const DEFAULT_KAFKA_MAX_BATCH_BYTES = 4 * 1024 * 1024;
export const DEFAULT_APPEND_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_QUEUED_BYTES = 64 * 1024 * 1024;
export { DEFAULT_MAX_FETCH_WAIT_MS } from './kafka-consumer';

export interface KafkaLogOptions extends KafkaConnectionOptions, KafkaConsumerOptions {
  readonly brokers: readonly string[];
  readonly topic: string;
  /** Appears in broker logs and quotas; the group members add a suffix. */
  readonly clientId: string;
  /**
   * Kafka group ids are global to the cluster while the port's groups belong to one log, so a group
   * `g` of this log is the Kafka group `<groupIdPrefix>g`. Default `<topic>.`.
   */
  readonly groupIdPrefix?: string;
  /** Expected partition count: opening a topic with another count fails ('log_config_mismatch'). */
  readonly partitions?: number;
  /**
   * Create the topic when it is missing, with the events-topic settings of kafka-topics.ts (these
   * settings override them; `partitions` above wins). Default false: production creates topics
   * deliberately with ensureKafkaTopics().
   */
  readonly createTopic?: boolean | KafkaTopicSettings;
  readonly compression?: KafkaCompression;
  readonly maxRecordBytes?: number;
  readonly maxBatchBytes?: number;
  /** An append() not acknowledged within this time rejects with 'log_unavailable'. Default 10 s. */
  readonly appendTimeoutMs?: number;
  /**
   * Bytes accepted but not yet acknowledged beyond which append() refuses at once with a retriable
   * 'log_unavailable' (backpressure). Default 64 MiB: several seconds of traffic at full rate.
   */
  readonly maxQueuedBytes?: number;
  /** Broker-side time to wait for all in-sync replicas. Default 5000. */
  readonly ackTimeoutMs?: number;
  readonly consumer?: {
    /** A member silent this long is removed from the group. Default 30000. */
    readonly sessionTimeoutMs?: number;
    /** Default 3000. */
    readonly heartbeatIntervalMs?: number;
    /** Time members get to rejoin during a rebalance. Default 60000. */
    readonly rebalanceTimeoutMs?: number;
    readonly maxFetchWaitMs?: number;
    /** Fetch size per partition per request. Default 1 MiB (a larger batch is still returned whole). */
    readonly maxFetchBytesPerPartition?: number;
  };
}

export interface KafkaLogStats {
  /** Produce requests sent (each one carries one or more append() calls). */
  produceRequests: number;
  appendCalls: number;
  records: number;
  /** Producers replaced after a failed or timed-out request. */
  producerResets: number;
}

/** Kafka's default partitioner (Java's Utils.toPositive(murmur2(key)) % n). */
export function kafkaPartitionForKey(key: Uint8Array, partitionCount: number): number {
  const buf = Buffer.isBuffer(key) ? key : Buffer.from(key.buffer, key.byteOffset, key.byteLength);
  return (murmur2(buf, false) & 0x7fffffff) % partitionCount;
}

/** Opens the log: checks the topic (creating it if asked) and registers the idempotent producer. */
export async function openKafkaEventLog(opts: KafkaLogOptions): Promise<KafkaEventLog> {
  checkTopicName(opts.topic);
  const base = kafkaBaseOptions(opts);
  if (opts.compression !== undefined && !KAFKA_COMPRESSIONS.includes(opts.compression)) {
    throw new LogError('log_invalid_argument', `compression ${JSON.stringify(opts.compression)} is not one of ${KAFKA_COMPRESSIONS.join(', ')}`, {
      where: 'compression',
      fix: 'Use lz4 (the default) unless a measurement says otherwise; zstd needs Node ≥ 22.15.',
    });
  }
  const maxRecordBytes = opts.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES;
  const maxBatchBytes = opts.maxBatchBytes ?? DEFAULT_KAFKA_MAX_BATCH_BYTES;
  if (!Number.isSafeInteger(maxBatchBytes) || maxBatchBytes < maxRecordBytes) {
    throw new LogError('log_invalid_argument', `maxBatchBytes (${maxBatchBytes}) must be an integer ≥ maxRecordBytes (${maxRecordBytes})`, {
      where: 'maxBatchBytes',
    });
  }
  const admin = new Admin(base);
  try {
    let partitionCount = await existingPartitions(admin, opts.topic, opts.brokers);
    if (partitionCount === undefined && opts.createTopic) {
      const settings = typeof opts.createTopic === 'object' ? opts.createTopic : {};
      const [ensured] = await ensureKafkaTopics({
        ...opts,
        ...settings,
        // Only the events role is created; the other two names just have to be valid and distinct.
        names: { events: opts.topic, control: opts.topic === '_c' ? '_c2' : '_c', deadLetter: opts.topic === '_d' ? '_d2' : '_d' },
        eventPartitions: opts.partitions ?? settings.eventPartitions,
        roles: ['events'],
      });
      partitionCount = ensured!.partitions;
    }
    if (partitionCount === undefined) {
      throw new LogError('log_config_mismatch', `Kafka topic ${opts.topic} does not exist`, {
        where: 'topic',
        fix: 'Create the topics first with ensureKafkaTopics() (kafka-topics.ts, see docs/kafka.md), or pass createTopic: true in development.',
      });
    }
    if (opts.partitions !== undefined && opts.partitions !== partitionCount) {
      throw new LogError('log_config_mismatch', `Kafka topic ${opts.topic} has ${partitionCount} partitions, ${opts.partitions} were configured`, {
        where: 'partitions',
        fix: 'Configure the partition count the topic has. Adding partitions moves keys to other partitions and breaks per-session order, so it is never done implicitly.',
      });
    }
    const log = new KafkaEventLog(opts, base, admin, partitionCount, maxRecordBytes, maxBatchBytes);
    try {
      // Registers the producer id now, so an unreachable cluster fails the open, not the first request.
      await log.warmUp();
    } catch (err) {
      await log.close().catch(() => {});
      throw err;
    }
    return log;
  } catch (err) {
    await admin.close().catch(() => {});
    throw toLogError(err, `opening Kafka topic ${opts.topic}`, opts.brokers);
  }
}

interface EncodedRecord {
  readonly partition: number;
  readonly message: MessageToProduce;
}

interface PendingCall {
  readonly records: EncodedRecord[];
  readonly bytes: number;
  readonly resolve: (r: AppendResult[]) => void;
  readonly reject: (e: unknown) => void;
}

export class KafkaEventLog implements EventLog {
  readonly partitionCount: number;
  readonly topic: string;
  readonly stats: KafkaLogStats = { produceRequests: 0, appendCalls: 0, records: 0, producerResets: 0 };
  private producer: Producer;
  private queue: PendingCall[] = [];
  /** Bytes of calls accepted and not yet answered (queued or in flight). */
  private queuedBytes = 0;
  private readonly maxQueuedBytes: number;
  private sending = false;
  private flushScheduled = false;
  private closed = false;
  private closing: Promise<void> | undefined;
  /** Set from a failed request until the next turn of the event loop: append() rejects with it. */
  private failedTick: LogError | undefined;
  private readonly idle = new Waiters();
  private readonly consumers = new Map<string, KafkaConsumer>();
  private readonly compression: CompressionAlgorithmValue;
  private readonly appendTimeoutMs: number;

  /** @internal use openKafkaEventLog() */
  constructor(
    // Private: it may hold SASL credentials, and a public field ends up in a logged object.
    private readonly opts: KafkaLogOptions,
    private readonly base: BaseOptions,
    private readonly admin: Admin,
    partitionCount: number,
    private readonly maxRecordBytes: number,
    private readonly maxBatchBytes: number,
  ) {
    this.partitionCount = partitionCount;
    this.topic = opts.topic;
    this.compression = opts.compression ?? DEFAULT_KAFKA_COMPRESSION;
    this.appendTimeoutMs = opts.appendTimeoutMs ?? DEFAULT_APPEND_TIMEOUT_MS;
    this.maxQueuedBytes = opts.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    this.producer = this.newProducer();
  }

  /** @internal */
  async warmUp(): Promise<void> {
    await this.producer.initIdempotentProducer({});
  }

  append(records: readonly LogRecord[]): Promise<AppendResult[]> {
    if (this.closed) return Promise.reject(closedError('event log'));
    // See flush(): a call made in the tick a request failed may be chained on that request's records.
    if (this.failedTick !== undefined) return Promise.reject(this.failedTick);
    let measured;
    try {
      measured = measureRecords(records, this.maxRecordBytes);
    } catch (err) {
      return Promise.reject(err);
    }
    if (measured.length === 0) return Promise.resolve([]);
    let bytes = 0;
    const encoded: EncodedRecord[] = measured.map((m) => {
      bytes += m.frameBytes;
      const headers = new Map<Buffer, Buffer>(m.headers.map(([k, v]) => [k, v]));
      // Buffer.from(Uint8Array) copies: the caller may reuse its buffer as soon as append() returns.
      const message: MessageToProduce = { topic: this.topic, key: m.key, value: Buffer.from(m.record.value), headers };
      const partition = kafkaPartitionForKey(m.key, this.partitionCount);
      message.partition = partition;
      return { partition, message };
    });
    if (bytes > this.maxBatchBytes) {
      return Promise.reject(
        new LogError('log_record_too_large', `append() call of ${bytes} bytes exceeds the Kafka log's maxBatchBytes ${this.maxBatchBytes}`, {
          fix: 'Append fewer records per call: one call is one produce request, so its records stay contiguous and in order.',
        }),
      );
    }
    // Backpressure: a broker that falls behind must not let the queue grow without bound, only to
    // fail every queued call at once at the append timeout. Beyond the bound, refuse now (retriable):
    // the gateway fails closed at once instead of holding callers for seconds.
    if (this.queuedBytes + bytes > this.maxQueuedBytes) {
      return Promise.reject(
        new LogError('log_unavailable', `the Kafka producer queue holds ${this.queuedBytes} bytes not yet acknowledged (limit ${this.maxQueuedBytes})`, {
          retriable: true,
          fix: 'the brokers are not keeping up or not reachable; retry shortly, and check the brokers and the producer metrics',
        }),
      );
    }
    this.queuedBytes += bytes;
    return new Promise((resolve, reject) => {
      const done = () => (this.queuedBytes -= bytes);
      this.queue.push({
        records: encoded,
        bytes,
        resolve: (r) => (done(), resolve(r)),
        reject: (e) => (done(), reject(e)),
      });
      this.scheduleFlush();
    });
  }

  async consumer(group: string, opts: ConsumerOptions = {}): Promise<LogConsumer> {
    if (this.closed) throw closedError('event log');
    checkGroupName(group);
    if (this.consumers.has(group)) throw new LogError('log_group_busy', `consumer group ${group} already has an open consumer in this log instance`);
    const c = new KafkaConsumer(this, group, this.base, this.opts);
    this.consumers.set(group, c);
    try {
      await c.join(opts.startFrom ?? 'earliest', opts.startAt);
    } catch (err) {
      this.consumers.delete(group);
      await c.close().catch(() => {});
      throw toLogError(err, `joining consumer group ${group} on ${this.topic}`, this.opts.brokers);
    }
    return c;
  }

  /** High watermarks: with acks=all, exactly the records every in-sync replica holds. */
  async endOffsets(): Promise<number[]> {
    if (this.closed) throw closedError('event log');
    const listed = await this.admin
      .listOffsets({
        topics: [{ name: this.topic, partitions: Array.from({ length: this.partitionCount }, (_, p) => ({ partitionIndex: p, timestamp: ListOffsetTimestamps.LATEST })) }],
      })
      .catch((err: unknown) => {
        throw toLogError(err, `reading end offsets of ${this.topic}`, this.opts.brokers);
      });
    const out = Array.from({ length: this.partitionCount }, () => 0);
    for (const p of listed[0]?.partitions ?? []) out[p.partitionIndex] = Number(p.offset);
    return out;
  }

  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    this.closed = true;
    // Appends accepted before close() still go out; wait for the queue to drain.
    while (this.queue.length > 0 || this.sending) await this.idle.wait(1000);
    await Promise.all([...this.consumers.values()].map((c) => c.close()));
    await Promise.all([this.producer.close().catch(() => {}), this.admin.close().catch(() => {})]);
  }

  /** @internal */
  consumerClosed(group: string, c: KafkaConsumer): void {
    if (this.consumers.get(group) === c) this.consumers.delete(group);
  }

  private newProducer(): Producer {
    return new Producer({
      ...this.base,
      idempotent: true,
      acks: ProduceAcks.ALL,
      compression: this.compression,
      timeout: this.opts.ackTimeoutMs ?? 5000,
    });
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.sending) return;
    this.flushScheduled = true;
    // Calls made in the same tick join one request, like the file log's group commit.
    setImmediate(() => {
      this.flushScheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (this.sending || this.queue.length === 0) return;
    this.sending = true;
    let bytes = 0;
    let n = 0;
    while (n < this.queue.length && (n === 0 || bytes + this.queue[n]!.bytes <= this.maxBatchBytes)) bytes += this.queue[n++]!.bytes;
    const calls = this.queue.splice(0, n);
    const producer = this.producer;
    let timer: NodeJS.Timeout | undefined;
    try {
      const sent = producer.send({ messages: calls.flatMap((c) => c.records.map((r) => r.message)) });
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no acknowledgement from all in-sync replicas within ${this.appendTimeoutMs} ms`)),
          this.appendTimeoutMs,
        );
      });
      this.stats.produceRequests++;
      const result = await Promise.race([sent, timeout]);
      const base = new Map<number, number>();
      for (const o of result.offsets ?? []) if (o.topic === this.topic) base.set(o.partition, Number(o.offset));
      const next = new Map<number, number>();
      const results = calls.map((c) =>
        c.records.map((r) => {
          const b = base.get(r.partition);
          if (b === undefined) throw new Error(`the broker returned no offset for partition ${r.partition}`);
          const i = next.get(r.partition) ?? 0;
          next.set(r.partition, i + 1);
          return { partition: r.partition, offset: b + i };
        }),
      );
      this.stats.appendCalls += calls.length;
      this.stats.records += results.reduce((a, r) => a + r.length, 0);
      calls.forEach((c, i) => c.resolve(results[i]!));
    } catch (err) {
      const error = toLogError(err, `appending to Kafka topic ${this.topic}`, this.opts.brokers);
      // Calls queued behind the failed request fail with it, never sent; so do calls made before
      // the callers have been told (the rest of this tick). A caller that chains its records (the
      // evidence emitter: event n+1 carries the hash of event n) appends n+1 while n is in flight;
      // sent on the new producer and acknowledged once the broker is back, n+1 would be in the log
      // without n, and the caller, rewinding its chain to what is durable after n's failure, would
      // write a second event n+1. Seen under load across a broker restart (test/distributed-faults):
      // up to three stored events for one gateway chain position. Order is now kept on failure too:
      // no call succeeds after an earlier one failed unless it was made after that failure was
      // reported. They were not sent, so rejecting them with the same retriable error is the truth.
      const behind = this.queue.splice(0);
      this.failedTick = error;
      setImmediate(() => {
        this.failedTick = undefined;
      });
      for (const c of calls) c.reject(error);
      for (const c of behind) c.reject(error);
      // See the module comment: a new producer id, so no later request can be taken for a duplicate.
      this.stats.producerResets++;
      this.producer = this.newProducer();
      void producer.close().catch(() => {});
    } finally {
      clearTimeout(timer);
      this.sending = false;
      this.idle.wakeAll();
      if (this.queue.length > 0) this.scheduleFlush();
    }
  }
}
