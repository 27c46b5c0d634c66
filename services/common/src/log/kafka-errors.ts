/**
 * What the Kafka adapter and the topic tool share: connection options, and the mapping of
 * @platformatic/kafka errors to LogError codes. Errors name the brokers and the operation, never
 * credentials (SASL options are passed through, not printed).
 */
import type { BaseOptions, SASLOptions } from '@platformatic/kafka';
import type { ConnectionOptions as TlsOptions } from 'node:tls';
import { LogError } from './errors';

export interface KafkaConnectionOptions {
  /** TLS to the brokers (node:tls options); plaintext when absent. */
  readonly tls?: TlsOptions;
  readonly sasl?: SASLOptions;
  /** TCP connect timeout per broker. Default 3000. */
  readonly connectTimeoutMs?: number;
  /** Time a request may wait for its response. Default 30000 (above the longest fetch wait). */
  readonly requestTimeoutMs?: number;
  /** Retries of a retriable failure inside the client before an operation fails. Default 3. */
  readonly retries?: number;
  /** Delay between those retries. Default 250. */
  readonly retryDelayMs?: number;
}

export const DEFAULT_CONNECT_TIMEOUT_MS = 3000;
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
export const DEFAULT_RETRIES = 3;
export const DEFAULT_RETRY_DELAY_MS = 250;

export function kafkaBaseOptions(opts: KafkaConnectionOptions & { brokers: readonly string[]; clientId: string }): BaseOptions {
  if (!Array.isArray(opts.brokers) || opts.brokers.length === 0 || !opts.brokers.every((b) => typeof b === 'string' && /^.+:\d+$/.test(b))) {
    throw new LogError('log_invalid_argument', `brokers must be a non-empty list of host:port, got ${JSON.stringify(opts.brokers)}`, {
      where: 'brokers',
      fix: 'List at least one broker as host:port, e.g. ["kafka-0.kafka:9092"].',
    });
  }
  if (typeof opts.clientId !== 'string' || !/^[A-Za-z0-9._-]{1,255}$/.test(opts.clientId)) {
    throw new LogError('log_invalid_argument', `clientId ${JSON.stringify(opts.clientId)} is invalid`, {
      where: 'clientId',
      fix: 'Use 1-255 characters from A-Z a-z 0-9 . _ - (it appears in broker logs and quotas).',
    });
  }
  const base: BaseOptions = {
    clientId: opts.clientId,
    bootstrapBrokers: [...opts.brokers],
    connectTimeout: opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    requestTimeout: opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
    retries: opts.retries ?? DEFAULT_RETRIES,
    retryDelay: opts.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS,
    // Topics are created deliberately (kafka-topics.ts), never by a typo in a producer's config.
    autocreateTopics: false,
  };
  if (opts.tls !== undefined) base.tls = opts.tls;
  if (opts.sasl !== undefined) base.sasl = opts.sasl;
  return base;
}

/** Kafka error names (apiId, e.g. OFFSET_OUT_OF_RANGE) found anywhere in a platformatic error tree. */
export function errorIds(err: unknown): string[] {
  const out: string[] = [];
  walk(err, (e) => {
    if (typeof e.apiId === 'string') out.push(e.apiId);
  });
  return out;
}

function walk(err: unknown, visit: (e: { apiId?: unknown; message?: unknown; errors?: unknown }) => void): void {
  const seen = new Set<unknown>();
  const go = (e: unknown): void => {
    if (e === null || typeof e !== 'object' || seen.has(e)) return;
    seen.add(e);
    const o = e as { apiId?: unknown; errors?: unknown; cause?: unknown; message?: unknown };
    visit(o);
    if (Array.isArray(o.errors)) o.errors.forEach(go);
    go(o.cause);
  };
  go(err);
}

/** The distinct leaf messages of an error tree, for a one-line explanation. */
function reasons(err: unknown): string {
  const leaves: string[] = [];
  walk(err, (e) => {
    if (typeof e.message === 'string' && !(Array.isArray(e.errors) && e.errors.length > 0)) leaves.push(e.message);
  });
  const distinct = [...new Set(leaves.length > 0 ? leaves : [String((err as Error)?.message ?? err)])];
  return distinct.slice(0, 3).join('; ') + (distinct.length > 3 ? `; and ${distinct.length - 3} more` : '');
}

/**
 * Maps a client error to a LogError. Everything the broker or network can cause is 'log_unavailable'
 * (retriable: the same call may succeed once the cluster is back) except a batch over the topic's
 * size limit and a position before the oldest retained record, which no retry fixes.
 */
export function toLogError(err: unknown, what: string, brokers: readonly string[]): LogError {
  if (err instanceof LogError) return err;
  const ids = errorIds(err);
  const why = reasons(err);
  if (ids.includes('MESSAGE_TOO_LARGE') || ids.includes('RECORD_LIST_TOO_LARGE')) {
    return new LogError('log_record_too_large', `${what}: the broker refused the batch as too large (${why})`, {
      cause: err,
      fix: "Raise the topic's max.message.bytes to at least the adapter's maxBatchBytes plus 64 KiB, or lower maxBatchBytes.",
    });
  }
  if (ids.includes('OFFSET_OUT_OF_RANGE')) {
    return new LogError('log_offset_out_of_range', `${what}: the group's position lies outside the retained records (${why})`, {
      cause: err,
      fix: 'Records were deleted by retention before this group read them. Decide where the group resumes (kafka-consumer-groups.sh --reset-offsets) after checking what was lost.',
    });
  }
  const topicMissing = ids.includes('UNKNOWN_TOPIC_OR_PARTITION') || ids.includes('UNKNOWN_TOPIC_ID');
  return new LogError('log_unavailable', `${what} failed: ${why}`, {
    retriable: true,
    cause: err,
    where: brokers.join(','),
    fix: topicMissing
      ? 'The topic does not exist (or not yet on every broker): create it with ensureKafkaTopics() (kafka-topics.ts) before starting.'
      : `Check that the Kafka brokers ${brokers.join(',')} are reachable from this host and that each partition has at least min.insync.replicas in-sync replicas; until then appends fail and the gateway fails closed.`,
  });
}
