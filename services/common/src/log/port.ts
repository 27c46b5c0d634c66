/**
 * The event log port: an append-only, partitioned, durable log of encoded events with consumer
 * groups. The gateway appends; processors consume. Two adapters implement it (the embedded file log
 * and, in distributed mode, Kafka) plus an in-memory twin; all pass log-conformance.ts.
 *
 * Offsets are plain numbers (safe integers): Kafka's int64 offsets never reach 2^53 in practice
 * (285 years at 1M records/s), and numbers compare, serialise and index without ceremony.
 */
import { LogError } from './errors';

/** A record to append. */
export interface LogRecord {
  /** Partition key, e.g. the session id: records with equal keys share a partition and keep their order. */
  readonly key: string;
  /** The encoded event. */
  readonly value: Uint8Array;
  readonly headers?: Readonly<Record<string, string>>;
}

/** Where an appended record landed. */
export interface AppendResult {
  readonly partition: number;
  readonly offset: number;
}

/** A record as delivered to a consumer. */
export interface ConsumedRecord {
  readonly key: string;
  readonly value: Uint8Array;
  /** Always present; `{}` when the record had none. */
  readonly headers: Readonly<Record<string, string>>;
  readonly partition: number;
  readonly offset: number;
  /** When the log accepted the record (ms since the epoch, the log's clock). */
  readonly appendTimeMs: number;
}

/** A consumer group's position in one partition: the offset of the next record it wants (Kafka semantics). */
export interface ConsumerPosition {
  readonly partition: number;
  readonly nextOffset: number;
}

export interface ConsumerOptions {
  /**
   * Where a group with no committed position starts: 'earliest' (the oldest retained record, the
   * default, what an evidence writer wants) or 'latest' (only records appended after it joins).
   * Ignored once the group has committed.
   */
  readonly startFrom?: 'earliest' | 'latest';
  /**
   * Where a group with no committed position starts, one offset per partition (overrides
   * `startFrom`): a reader resuming after a state snapshot. Each offset must lie between the
   * partition's oldest retained offset and its end, else the call rejects with
   * 'log_offset_out_of_range' (nothing is joined); a wrong length is 'log_invalid_argument'.
   * Ignored once the group has committed.
   */
  readonly startAt?: readonly number[];
  /**
   * A throwaway reader (a rebuild's replay, one service instance's private catch-up): its positions
   * are never stored, so nothing of the group outlives close(). The embedded log counts it for
   * retention only while it is open; a stored group, by contrast, holds retention back for good.
   * Kafka ignores it (a group there never holds back topic retention; its offsets expire).
   */
  readonly ephemeral?: boolean;
}

export interface EventLog {
  /** Number of partitions; fixed for the life of the log. */
  readonly partitionCount: number;

  /**
   * Appends records; partition chosen by key. Resolves only when every record is durable (embedded:
   * written and fdatasync'd; Kafka: acknowledged by all in-sync replicas), with one result per record
   * in input order. Records of one call that share a partition are stored contiguously, in order.
   * Rejects with a LogError ('log_unavailable' is retriable) and the caller must fail closed: after a
   * rejection the records may or may not be in the log, so a retry can duplicate; consumers dedupe by
   * event id. Validation errors ('log_record_too_large', 'log_invalid_argument') reject the whole call
   * before anything is appended.
   */
  append(records: readonly LogRecord[]): Promise<AppendResult[]>;

  /**
   * Joins a consumer group. Resolves once the group's starting positions are fixed (its committed
   * positions, or `startFrom` for a new group), so a 'latest' consumer sees everything appended
   * after this resolves.
   */
  consumer(group: string, opts?: ConsumerOptions): Promise<LogConsumer>;

  /** The next offset to be assigned in each partition, counting only durable records. */
  endOffsets(): Promise<number[]>;

  /** Waits for in-flight appends to settle, closes consumers, releases resources. Idempotent. */
  close(): Promise<void>;
}

export interface LogConsumer {
  readonly group: string;

  /**
   * Returns up to `maxRecords` durable records not yet delivered to this consumer, in offset order
   * within each partition. Waits up to `maxWaitMs` when none are available, returning as soon as one
   * is appended (no busy polling); returns [] on timeout or when the consumer is closed meanwhile.
   */
  poll(maxRecords: number, maxWaitMs: number): Promise<ConsumedRecord[]>;

  /**
   * Durably records the group's positions. Without arguments, commits everything delivered so far.
   * A position may not pass what this consumer has delivered nor go back before the last commit
   * ('log_invalid_argument'). After any restart the group resumes at its last commit, so records
   * delivered but not committed are delivered again (at-least-once).
   */
  commit(positions?: readonly ConsumerPosition[]): Promise<void>;

  /** Leaves the group without committing; a pending poll resolves with []. Idempotent. */
  close(): Promise<void>;
}

/**
 * Checks `startAt` (ConsumerOptions) against each partition's oldest retained offset and end; returns
 * a copy. Shared by the adapters so they refuse the same positions with the same errors.
 */
export function checkStartAt(group: string, startAt: readonly number[], oldest: readonly number[], ends: readonly number[]): number[] {
  if (startAt.length !== oldest.length || !startAt.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw new LogError('log_invalid_argument', `startAt of group ${group} must be ${oldest.length} non-negative integer offsets, got [${startAt.join(',')}]`, { where: group });
  }
  startAt.forEach((o, p) => {
    const lo = oldest[p] ?? 0;
    const hi = ends[p] ?? 0;
    if (o < lo || o > hi) {
      throw new LogError('log_offset_out_of_range', `group ${group} cannot start at offset ${o} in partition ${p}: retained offsets are ${lo}..${hi}`, { where: group });
    }
  });
  return [...startAt];
}

/** The positions just after the given records: what to commit once they are processed. */
export function positionsAfter(records: readonly ConsumedRecord[]): ConsumerPosition[] {
  const next = new Map<number, number>();
  for (const r of records) {
    const cur = next.get(r.partition);
    if (cur === undefined || r.offset + 1 > cur) next.set(r.partition, r.offset + 1);
  }
  return [...next].sort((a, b) => a[0] - b[0]).map(([partition, nextOffset]) => ({ partition, nextOffset }));
}
