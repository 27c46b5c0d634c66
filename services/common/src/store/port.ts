/**
 * The evidence store port: where verified events land for auditors, dashboards and exports.
 * Adapters: ClickHouse embedded in-process through chdb (chdb-store.ts, the default), a ClickHouse
 * server through @clickhouse/client (clickhouse-store.ts), and an in-memory twin for unit tests of the evidence
 * writer (memory-store.ts). Everything here is in the store's words; nothing names chdb. Design,
 * table layout and measurements: docs/evidence-store.md.
 */
import type { ConfigChangedPayload } from '../events';
import type { StoredEvent } from './rows';

/** A value bound to a `{name:Type}` placeholder. Bound server-side, never spliced into the SQL text. */
export type QueryParamValue = string | number | bigint | boolean | null | readonly QueryParamValue[];
export type QueryParams = Readonly<Record<string, QueryParamValue>>;

export interface QueryOptions {
  /**
   * At most this many rows are returned; the engine stops producing once they are read.
   * `truncated` says whether more existed. Default 10 000; the cap keeps an interactive query
   * from materialising a year of evidence in memory (use `stream` for exports).
   */
  readonly maxRows?: number;
  readonly signal?: AbortSignal;
}

export interface ResultColumn {
  readonly name: string;
  /** ClickHouse type as the engine reports it, e.g. `DateTime64(6, 'UTC')`, `UInt64`. */
  readonly type: string;
}

/**
 * A cell as the engine's JSON output gives it: 64-bit integers and decimals as strings (exact),
 * DateTime64 as `YYYY-MM-DD hh:mm:ss.ffffff` (UTC), arrays as arrays, NULL as null.
 */
export type Cell = string | number | boolean | null | readonly Cell[] | { readonly [key: string]: Cell };
export type Row = readonly Cell[];

export interface QueryResult {
  readonly columns: readonly ResultColumn[];
  readonly rows: readonly Row[];
  /** True when the query had more rows than `maxRows`. */
  readonly truncated: boolean;
}

/** A result read chunk by chunk: columns first, then rows as the engine produces them. */
export interface RowStream extends AsyncIterable<Row> {
  /** Resolves once the engine has described the result (before or with the first rows). */
  readonly columns: Promise<readonly ResultColumn[]>;
  /** Stop early and release the engine. Idempotent. */
  cancel(): void;
}

export interface InsertReport {
  /** Events in the batch after dropping repeats of one event id within the batch. */
  readonly events: number;
  /** Of those, events already in the store (redelivered): not written again. */
  readonly duplicates: number;
  /** PAN sightings written (sightings of duplicates are not written again). */
  readonly sightings: number;
}

/** Retention of evidence in days, and the explicit override needed to go below the PCI minimum. */
export interface RetentionPolicy {
  readonly days: number;
  /**
   * Allow fewer than MIN_RETENTION_DAYS. The caller must then record the change as a
   * `config.changed` event with `override: true` (see `RetentionReport.configChange`).
   */
  readonly allowBelowMinimum?: boolean;
}

/** What `config.changed` needs to record a retention change (PCI DSS 10.2.1.6, 10.5.1). */
export type RetentionConfigChange = Pick<
  ConfigChangedPayload,
  'objectKind' | 'what' | 'change' | 'oldVersion' | 'newVersion' | 'override' | 'summary'
>;

export interface RetentionReport {
  /** Days now in force on every evidence table. */
  readonly days: number;
  /** Days in force before this call; null for a new store. */
  readonly previousDays: number | null;
  readonly changed: boolean;
  /** True when `days` is below the minimum and the override allowed it. */
  readonly belowMinimum: boolean;
  /** Set when `changed`: the payload fields of the `config.changed` event the caller must emit. */
  readonly configChange: RetentionConfigChange | null;
}

export interface MigrationReport {
  /** Migrations applied by this call, in order, e.g. `001_events`. */
  readonly applied: readonly string[];
  /** Migrations that were already applied (unchanged). */
  readonly alreadyApplied: readonly string[];
  readonly retention: RetentionReport;
}

/** `events` rows in RowBinary, back to back: row i is `bytes[ends[i - 1] ?? 0 .. ends[i]]`. */
export interface EncodedEventRows {
  readonly bytes: Uint8Array;
  /** One per row of the batch, in order: where the row's encoding ends. */
  readonly ends: ArrayLike<number>;
}

export interface EvidenceStore {
  /**
   * Bring the schema up to date: apply the numbered migrations not yet applied, in order, and
   * record each; then make the evidence tables' TTL match the retention policy. Idempotent.
   * Refuses (store_migration_changed) when an applied migration's file has changed, and
   * (store_migration_unknown) when the store has a migration this code does not know.
   */
  migrate(): Promise<MigrationReport>;

  /**
   * Write a batch of events and their PAN sightings. Idempotent: delivering the same events again
   * (same token, or re-batched under another token, before or after a restart) never duplicates a
   * row; the first write of an event id wins. `dedupToken` should name the batch's place in the log
   * (e.g. `p3:1200-1299`). Resolves once the rows are durable and queryable.
   *
   * `encoded`, optional: the batch's `events` rows already in RowBinary, as `writeEventRow` writes
   * them (rowbinary.ts), so a caller can encode while the store is busy with its previous batch.
   * An adapter that inserts RowBinary may use them instead of encoding the rows; any other ignores them.
   */
  insertEvents(batch: readonly StoredEvent[], dedupToken: string, encoded?: EncodedEventRows): Promise<InsertReport>;

  /** Run a read query with bound parameters; at most `maxRows` rows come back. */
  query(sql: string, params?: QueryParams, opts?: QueryOptions): Promise<QueryResult>;

  /** Run a read query and read its rows as they come (exports, scans). */
  stream(sql: string, params?: QueryParams, opts?: { readonly signal?: AbortSignal }): RowStream;

  /** Wait for in-flight calls, release the engine. Idempotent; later calls reject with store_closed. */
  close(): Promise<void>;
}

/** PCI DSS 10.5.1: keep audit logs at least twelve months. */
export const MIN_RETENTION_DAYS = 365;
export const DEFAULT_QUERY_MAX_ROWS = 10_000;
