/**
 * The evidence store on a ClickHouse server or cluster, over HTTP with @clickhouse/client: the
 * store in distributed mode. Same migrations (migrations.ts, schemas/clickhouse/), same RowBinary
 * rows (rowbinary.ts), same evidence queries (evidence-queries.ts) and the same port semantics as
 * the embedded store (chdb-store.ts); both pass store-conformance.ts.
 *
 * Two clients. Migrations and inserts use the writer's credentials. Reads (`query`, `stream`, so
 * every evidence query) use the readonly credentials when given, so an auditor's query path cannot
 * write whatever SQL reaches it; without them, reads still run with the `readonly=1` setting.
 *
 * Insert path, per batch (serialized within this process, like the embedded store):
 *   1. ids already stored in the batch's time window (the re-batching guard; first write wins),
 *      for events and, in the same query, for PAN sightings (checked on their own table),
 *   2. the fresh rows as one RowBinary INSERT with `insert_deduplication_token` derived from the
 *      caller's token and the ids, so a redelivered batch is dropped by the engine itself (the
 *      tables keep `non_replicated_deduplication_window`, 001_events.sql); the sightings' INSERT
 *      runs alongside it (each table is checked on its own, so either may land first).
 * Optional async inserts (`asyncInsert`) always wait for the flush (`wait_for_async_insert=1`):
 * insertEvents resolves only once rows are durable, which the log's commit relies on.
 * Design and what the tests cover: docs/evidence-store.md, "Server adapter".
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { ClickHouseError, ClickHouseLogLevel, createClient, type ClickHouseClient, type ClickHouseSettings } from '@clickhouse/client';
import { StoreError } from './errors';
import { checkMaxRows, collectRows, uniqueBatch } from './adapter-common';
import { checkRetention, DEFAULT_MIGRATIONS_DIR, loadMigrations, runMigrations, type SqlExecutor } from './migrations';
import {
  type EvidenceStore,
  type InsertReport,
  type MigrationReport,
  type QueryOptions,
  type QueryParams,
  type QueryResult,
  type ResultColumn,
  type RetentionPolicy,
  type Row,
  type RowStream,
} from './port';
import { RowBinaryWriter, writeEventRow, writeSightingRow } from './rowbinary';
import { EVENT_COLUMNS, PAN_SIGHTING_COLUMNS, type PanSighting, type StoredEvent } from './rows';

export interface ClickHouseServerStoreOptions {
  /** The server's HTTP(S) interface, e.g. `https://clickhouse.internal:8443`. No credentials in it. */
  readonly url: string;
  /** The database holding the evidence tables; created by `migrate()` when missing (`createDatabase`). */
  readonly database: string;
  /** The writer: runs migrations and inserts. */
  readonly username: string;
  readonly password: string;
  /** A readonly user (readonly=1 profile) for reads. Strongly recommended: auditor queries then cannot write. */
  readonly readonlyUsername?: string;
  readonly readonlyPassword?: string;
  readonly retention: RetentionPolicy;
  /** Defaults to schemas/clickhouse/ in the repository. */
  readonly migrationsDir?: string;
  /** Insert with async_insert=1 (and always wait_for_async_insert=1). Default false. */
  readonly asyncInsert?: boolean;
  /** The re-batching guard (look up stored ids first). Default true; false leaves only the engine's token. */
  readonly dedupByEventId?: boolean;
  /** `CREATE DATABASE IF NOT EXISTS` in migrate(). Default true; false when the database is provisioned. */
  readonly createDatabase?: boolean;
  /** Per-request timeout. Default 120 000 ms. */
  readonly requestTimeoutMs?: number;
  /** Sockets per client. Default 8. */
  readonly maxOpenConnections?: number;
}

const ENCODE_SLICE_ROWS = 512;
/** ClickHouse's default max_query_size (bytes of statement the parser reads). */
const MAX_QUERY_SIZE_DEFAULT = 262_144;
const PARSE_SLICE_ROWS = 2_048;
const RESULT_FORMAT = 'JSONCompactEachRowWithNamesAndTypes';
const NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const EVENT_COLUMN_LIST = EVENT_COLUMNS.map(([name]) => name).join(', ');
const SIGHTING_COLUMN_LIST = PAN_SIGHTING_COLUMNS.map(([name]) => name).join(', ');

export class ClickHouseServerStore implements EvidenceStore {
  readonly #opts: ClickHouseServerStoreOptions;
  readonly #where: string;
  readonly #writer: ClickHouseClient;
  readonly #reader: ClickHouseClient;
  /** Settings of every read: readonly=1 when the reader is the writer's account. */
  readonly #readSettings: ClickHouseSettings;
  readonly #dedupById: boolean;
  #closed = false;
  #closing: Promise<void> | undefined;
  #writeChain: Promise<unknown> = Promise.resolve();
  readonly #inflight = new Set<Promise<unknown>>();
  readonly #streams = new Set<ServerRowStream>();
  readonly #rows = new RowBinaryWriter(1 << 20);

  private constructor(opts: ClickHouseServerStoreOptions, where: string) {
    this.#opts = opts;
    this.#where = where;
    this.#dedupById = opts.dedupByEventId ?? true;
    this.#writer = client(opts, opts.database, opts.username, opts.password);
    const ro = opts.readonlyUsername !== undefined;
    this.#reader = ro ? client(opts, opts.database, opts.readonlyUsername ?? '', opts.readonlyPassword ?? '') : this.#writer;
    this.#readSettings = ro ? {} : { readonly: '1' };
  }

  /**
   * Check the options and connect (one `SELECT 1` as the writer, so a wrong URL or password
   * fails here, not at the first insert). Refuses a retention below 365 days without the
   * override (store_retention_too_short) before any request. Call `migrate()` next.
   */
  static async open(opts: ClickHouseServerStoreOptions): Promise<ClickHouseServerStore> {
    checkRetention(opts.retention);
    let url: URL;
    try {
      url = new URL(opts.url);
    } catch {
      throw new StoreError('store_invalid_argument', 'the ClickHouse URL is not a URL', { where: 'url', fix: 'e.g. https://clickhouse.internal:8443' });
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new StoreError('store_invalid_argument', `the ClickHouse URL must be http or https, not ${url.protocol}`, { where: 'url' });
    }
    if (url.username !== '' || url.password !== '') {
      // Credentials in a URL end up in logs and error messages.
      throw new StoreError('store_invalid_argument', 'the ClickHouse URL carries credentials', { where: 'url', fix: 'pass username and password as their own options' });
    }
    if (!NAME_RE.test(opts.database)) {
      throw new StoreError('store_invalid_argument', `database name '${opts.database}' is not a plain identifier`, { where: 'database', fix: 'use letters, digits and underscores' });
    }
    if ((opts.readonlyUsername === undefined) !== (opts.readonlyPassword === undefined)) {
      throw new StoreError('store_invalid_argument', 'readonlyUsername and readonlyPassword go together', { where: 'readonlyUsername' });
    }
    const store = new ClickHouseServerStore(opts, `${url.protocol}//${url.host}`);
    try {
      await store.#ping();
    } catch (err) {
      await store.close();
      throw err;
    }
    return store;
  }

  /** Where the store is, for messages: scheme, host and port only. */
  get where(): string {
    return this.#where;
  }

  get closed(): boolean {
    return this.#closed;
  }

  migrate(): Promise<MigrationReport> {
    if (this.#closed) return Promise.reject(closedError());
    return this.#track(
      this.#serialized(async () => {
        if (this.#opts.createDatabase ?? true) await this.#createDatabase();
        return runMigrations(this.#executor(), loadMigrations(this.#opts.migrationsDir ?? DEFAULT_MIGRATIONS_DIR), this.#opts.retention);
      }),
    );
  }

  insertEvents(batch: readonly StoredEvent[], dedupToken: string): Promise<InsertReport> {
    if (this.#closed) return Promise.reject(closedError());
    const unique = uniqueBatch(batch, dedupToken);
    if (unique instanceof StoreError) return Promise.reject(unique);
    if (unique.length === 0) return Promise.resolve({ events: 0, duplicates: 0, sightings: 0 });
    return this.#track(this.#serialized(() => this.#insert(unique, dedupToken)));
  }

  async query(sql: string, params: QueryParams = {}, opts: QueryOptions = {}): Promise<QueryResult> {
    this.#checkOpen();
    const maxRows = checkMaxRows(opts);
    const stream = this.stream(sql, params, opts.signal === undefined ? {} : { signal: opts.signal });
    return collectRows(stream, maxRows);
  }

  stream(sql: string, params: QueryParams = {}, opts: { readonly signal?: AbortSignal } = {}): RowStream {
    this.#checkOpen();
    checkParams(params);
    const stream = new ServerRowStream(this, sql, params, opts.signal);
    this.#streams.add(stream);
    return stream;
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    for (const s of this.#streams) s.cancel();
    await Promise.allSettled([...this.#inflight]);
    await this.#writer.close().catch(() => undefined);
    if (this.#reader !== this.#writer) await this.#reader.close().catch(() => undefined);
  }

  // ---- internals used by ServerRowStream ----

  /** @internal */
  openRead(sql: string, params: QueryParams, signal: AbortSignal): ReturnType<ClickHouseClient['query']> {
    return this.#reader.query({ query: sql, query_params: { ...params }, format: RESULT_FORMAT, clickhouse_settings: this.#readSettings, abort_signal: signal });
  }

  /** @internal */
  forget(stream: ServerRowStream): void {
    this.#streams.delete(stream);
  }

  /** @internal */
  track<T>(p: Promise<T>): Promise<T> {
    return this.#track(p);
  }

  /** @internal */
  error(err: unknown, doing: string): StoreError {
    return toServerStoreError(err, doing, this.#where);
  }

  #checkOpen(): void {
    if (this.#closed) throw closedError();
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#inflight.add(p);
    const done = (): void => {
      this.#inflight.delete(p);
    };
    p.then(done, done);
    return p;
  }

  #serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#writeChain.then(fn);
    this.#writeChain = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  async #ping(): Promise<void> {
    // Without the database: it may not exist before the first migrate().
    const bootstrap = client(this.#opts, 'default', this.#opts.username, this.#opts.password);
    try {
      await bootstrap.command({ query: 'SELECT 1' });
    } catch (err) {
      throw this.error(err, 'connecting');
    } finally {
      await bootstrap.close().catch(() => undefined);
    }
  }

  async #createDatabase(): Promise<void> {
    // The writer's client names the database on every request, which fails while it does not
    // exist: this one statement goes through a client without it.
    const bootstrap = client(this.#opts, 'default', this.#opts.username, this.#opts.password);
    try {
      await bootstrap.command({ query: `CREATE DATABASE IF NOT EXISTS \`${this.#opts.database}\`` });
    } catch (err) {
      throw this.error(err, 'creating the database');
    } finally {
      await bootstrap.close().catch(() => undefined);
    }
  }

  #executor(): SqlExecutor {
    return {
      exec: async (sql) => {
        try {
          await this.#writer.command({ query: sql });
        } catch (err) {
          throw this.error(err, 'running a statement');
        }
      },
      rows: async (sql, params) => {
        try {
          const r = await this.#writer.query({ query: sql, query_params: { ...(params ?? {}) }, format: 'JSONCompactEachRow' });
          return await r.json<Row>();
        } catch (err) {
          throw this.error(err, 'reading');
        }
      },
    };
  }

  async #insert(batch: readonly StoredEvent[], dedupToken: string): Promise<InsertReport> {
    let lo = Infinity;
    let hi = -Infinity;
    for (const e of batch) {
      if (!Number.isSafeInteger(e.timeUs)) throw new StoreError('store_row_invalid', `event ${e.eventId} has time ${String(e.timeUs)}`, { where: 'timeUs' });
      if (e.timeUs < lo) lo = e.timeUs;
      if (e.timeUs > hi) hi = e.timeUs;
    }
    const withSightings = batch.filter((e) => e.panSightings.length > 0);
    // A malformed row fails its encoding, before the INSERT that would carry it.
    const stored = this.#dedupById ? await this.#existingIds(batch, withSightings, lo, hi) : { events: new Set<string>(), sightings: new Set<string>() };
    const fresh = stored.events.size === 0 ? batch : batch.filter((e) => !stored.events.has(e.eventId.toLowerCase()));
    // Sightings are checked on their own table: a crash between the two inserts leaves events
    // stored without their sightings, and the redelivery must complete them.
    const sightings = withSightings.filter((e) => !stored.sightings.has(e.eventId.toLowerCase())).flatMap((e) => e.panSightings);
    const inserts: Promise<void>[] = [];
    if (fresh.length > 0) {
      const body = await this.#encode(fresh, writeEventRow);
      inserts.push(this.#insertRows('events', EVENT_COLUMN_LIST, body, engineToken(dedupToken, 'events', fresh)));
    }
    if (sightings.length > 0) {
      const body = await this.#encode(sightings, writeSightingRow);
      inserts.push(this.#insertRows('pan_sightings', SIGHTING_COLUMN_LIST, body, engineToken(dedupToken, 'pan_sightings', sightings)));
    }
    // Both requests run at once (the engine does the work); both are settled before the next batch starts.
    const settled = await Promise.allSettled(inserts);
    for (const r of settled) if (r.status === 'rejected') throw r.reason;
    return { events: batch.length, duplicates: batch.length - fresh.length, sightings: sightings.length };
  }

  /**
   * The batch's ids already in `events`, and those of `sighted` already in `pan_sightings`, in one
   * query. The ids are written into the statement as UUID literals, checked character by
   * character first (hex digits and dashes only): binding 5 000 of them as an Array(UUID)
   * parameter cost the client ≈ 1.4 µs per id to escape, and the engine as much again to parse.
   */
  async #existingIds(rows: readonly StoredEvent[], sighted: readonly StoredEvent[], lo: number, hi: number): Promise<{ events: Set<string>; sightings: Set<string> }> {
    const window = `time >= fromUnixTimestamp64Micro(toInt64(${lo}), 'UTC') AND time <= fromUnixTimestamp64Micro(toInt64(${hi}), 'UTC')`;
    let query = `SELECT 'e', toString(event_id) FROM events WHERE ${window} AND event_id IN (${uuidList(rows)})`;
    if (sighted.length > 0) query += ` UNION ALL SELECT DISTINCT 's', toString(event_id) FROM pan_sightings WHERE ${window} AND event_id IN (${uuidList(sighted)})`;
    let text: string;
    try {
      // The parser's limit (max_query_size, 256 KiB by default) counts the literal list: ≈ 6 800 ids.
      const settings: ClickHouseSettings = query.length > MAX_QUERY_SIZE_DEFAULT ? { max_query_size: String(query.length + 1024) } : {};
      const r = await this.#writer.query({ query, format: 'TabSeparated', clickhouse_settings: settings });
      text = await r.text();
    } catch (err) {
      throw this.error(err, 'looking up stored events');
    }
    const events = new Set<string>();
    const sightings = new Set<string>();
    for (let at = 0; at < text.length; ) {
      const nl = text.indexOf('\n', at);
      const end = nl < 0 ? text.length : nl;
      // `e\t<uuid>` or `s\t<uuid>`
      if (end > at + 2) (text.charCodeAt(at) === 101 ? events : sightings).add(text.slice(at + 2, end));
      at = end + 1;
    }
    return { events, sightings };
  }

  async #encode<T>(rows: readonly T[], write: (w: RowBinaryWriter, row: T) => void): Promise<Buffer> {
    const w = this.#rows;
    w.reset();
    for (let i = 0; i < rows.length; i++) {
      write(w, rows[i] as T);
      if ((i + 1) % ENCODE_SLICE_ROWS === 0) await yieldToLoop();
    }
    // A copy: the writer's buffer is reused by the next batch while this one may still be sending.
    return Buffer.from(w.bytes());
  }

  async #insertRows(table: string, columns: string, body: Buffer, token: string): Promise<void> {
    const settings: ClickHouseSettings = {
      insert_deduplicate: 1,
      insert_deduplication_token: token,
      ...(this.#opts.asyncInsert === true ? { async_insert: 1, wait_for_async_insert: 1, async_insert_deduplicate: 1 } : {}),
    };
    try {
      const r = await this.#writer.exec({
        query: `INSERT INTO ${table} (${columns}) FORMAT RowBinary`,
        values: Readable.from([body]),
        clickhouse_settings: settings,
      });
      // The response carries nothing; reading it to the end frees the socket.
      for await (const _ of r.stream) void _;
    } catch (err) {
      throw this.error(err, `inserting into ${table}`);
    }
  }
}

function client(opts: ClickHouseServerStoreOptions, database: string, username: string, password: string): ClickHouseClient {
  return createClient({
    url: opts.url,
    database,
    username,
    password,
    request_timeout: opts.requestTimeoutMs ?? 120_000,
    max_open_connections: opts.maxOpenConnections ?? 8,
    // Our own error mapping says what failed; the client's logger would print request details.
    log: { level: ClickHouseLogLevel.OFF },
    compression: { request: false, response: false },
    use_multipart_params_auto: true,
    application: 'attest-evidence-store',
  });
}

/** The engine's insert_deduplication_token, as the embedded store builds it (chdb-store.ts). */
function engineToken(dedupToken: string, table: string, rows: readonly { readonly eventId: string }[]): string {
  const h = createHash('sha256').update(table).update('\0').update(dedupToken).update('\0');
  h.update(rows.map((r) => r.eventId).join(','));
  return h.digest('hex');
}

/** UUID text: hex digits and dashes in their places, nothing else (checked before it enters a statement). */
const UUID_TEXT = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** `'id','id',…` for an IN list; refuses anything that is not UUID text (nothing else reaches the statement). */
function uuidList(rows: readonly { readonly eventId: string }[]): string {
  const ids = new Array<string>(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const id = (rows[i] as { eventId: string }).eventId;
    if (!UUID_TEXT.test(id)) throw new StoreError('store_row_invalid', 'eventId is not a UUID', { where: 'eventId' });
    ids[i] = id;
  }
  return `'${ids.join("','")}'`;
}

function checkParams(params: QueryParams): void {
  for (const name of Object.keys(params)) {
    if (!NAME_RE.test(name)) throw new StoreError('store_invalid_argument', `query parameter name '${name}' is not an identifier`, { where: 'params' });
  }
}

const yieldToLoop = (): Promise<void> => new Promise((r) => setImmediate(r));

class ServerRowStream implements RowStream {
  readonly columns: Promise<readonly ResultColumn[]>;
  #resolveColumns!: (c: readonly ResultColumn[]) => void;
  #rejectColumns!: (e: unknown) => void;
  #cancelled = false;
  #started = false;
  readonly #abort = new AbortController();

  constructor(
    private readonly store: ClickHouseServerStore,
    private readonly sql: string,
    private readonly params: QueryParams,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.columns = new Promise((resolve, reject) => {
      this.#resolveColumns = resolve;
      this.#rejectColumns = reject;
    });
    this.columns.catch(() => undefined);
  }

  cancel(): void {
    if (this.#cancelled) return;
    this.#cancelled = true;
    // Closing the request makes the server cancel the query.
    this.#abort.abort();
    if (!this.#started) {
      this.#rejectColumns(new StoreError('store_closed', 'the stream was cancelled before it started'));
      this.store.forget(this);
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<Row> {
    if (this.#started) throw new StoreError('store_invalid_argument', 'a row stream can be read once');
    this.#started = true;
    return this.#rows();
  }

  async *#rows(): AsyncGenerator<Row> {
    if (this.#cancelled) return;
    let finish!: () => void;
    this.store.track(new Promise<void>((r) => (finish = r)));
    const onAbort = (): void => this.#abort.abort();
    this.signal?.addEventListener('abort', onAbort, { once: true });
    if (this.signal?.aborted === true) this.#abort.abort();
    try {
      const rs = await this.store.openRead(this.sql, this.params, this.#abort.signal);
      let header = 0;
      let names: string[] = [];
      let sinceYield = 0;
      try {
        for await (const chunk of rs.stream<Row>()) {
          for (const r of chunk) {
            const row = r.json<Row>();
            if (header === 0) {
              names = row as string[];
              header = 1;
              continue;
            }
            if (header === 1) {
              const types = row as string[];
              this.#resolveColumns(names.map((name, i) => ({ name, type: types[i] ?? '' })));
              header = 2;
              continue;
            }
            yield row;
            if (++sinceYield === PARSE_SLICE_ROWS) {
              sinceYield = 0;
              await yieldToLoop();
            }
          }
        }
      } finally {
        rs.close();
      }
      if (header < 2) this.#resolveColumns([]);
    } catch (err) {
      if (this.#cancelled && this.signal?.aborted !== true) return;
      const e = this.signal?.aborted === true ? (this.signal.reason as unknown) : this.store.error(err, 'running a query');
      this.#rejectColumns(e);
      throw e;
    } finally {
      this.#cancelled = true;
      this.#abort.abort();
      this.signal?.removeEventListener('abort', onAbort);
      this.store.forget(this);
      finish();
    }
  }
}

function closedError(): StoreError {
  return new StoreError('store_closed', 'the evidence store is closed');
}

/** ClickHouse error codes that mean "try again later" rather than "this statement is wrong". */
const RETRIABLE_CLICKHOUSE_CODES = new Set([
  159, // TIMEOUT_EXCEEDED
  202, // TOO_MANY_SIMULTANEOUS_QUERIES
  203, // NO_FREE_CONNECTION
  209, // SOCKET_TIMEOUT
  210, // NETWORK_ERROR
  241, // MEMORY_LIMIT_EXCEEDED
  242, // TABLE_IS_READ_ONLY (a replica lost its keeper session)
  252, // TOO_MANY_PARTS
  236, // ABORTED
  319, // UNKNOWN_STATUS_OF_INSERT
  394, // QUERY_WAS_CANCELLED
  425, // SYSTEM_ERROR
  999, // KEEPER_EXCEPTION
]);
const AUTH_CODES = new Set([192, 193, 194, 516]); // UNKNOWN_USER, WRONG_PASSWORD, REQUIRED_PASSWORD, AUTHENTICATION_FAILED
const PERMISSION_CODES = new Set([164, 497]); // READONLY, ACCESS_DENIED
/** Node socket errors: the server is down, unreachable or went away mid-request. */
const NETWORK_ERRNOS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', 'ECONNABORTED', 'UND_ERR_SOCKET']);

/**
 * Map an error from @clickhouse/client to the store's catalog. Messages keep only the first line
 * with long digit runs redacted (an engine message can quote the row that failed), and never the
 * credentials: `where` names scheme, host and port only.
 */
export function toServerStoreError(err: unknown, doing: string, where: string): StoreError {
  if (err instanceof StoreError) return err;
  const raw = err instanceof Error ? err.message : String(err);
  if (err instanceof ClickHouseError) {
    const chCode = Number(err.code);
    const message = `${doing}: ${redact(raw)}`;
    const opts = { cause: err, where, ...(Number.isFinite(chCode) ? { clickhouseCode: chCode } : {}) };
    if (AUTH_CODES.has(chCode)) {
      return new StoreError('store_unavailable', message, { ...opts, retriable: false, fix: 'check the ClickHouse username and password the store is configured with' });
    }
    if (PERMISSION_CODES.has(chCode)) {
      return new StoreError('store_query_failed', message, { ...opts, fix: 'this account may not run that statement: reads run as the readonly user; migrations and inserts need the writer' });
    }
    if (RETRIABLE_CLICKHOUSE_CODES.has(chCode)) return new StoreError('store_unavailable', message, { ...opts, retriable: true });
    return new StoreError('store_query_failed', message, opts);
  }
  const errno = errnoOf(err);
  if ((errno !== undefined && NETWORK_ERRNOS.has(errno)) || /socket hang up|Timeout error|other side closed/i.test(raw)) {
    return new StoreError('store_unavailable', `${doing}: ClickHouse at ${where} is unreachable (${errno ?? redact(raw)})`, {
      cause: err,
      where,
      retriable: true,
      fix: `check that the ClickHouse server at ${where} is running and reachable from this host; the call can be retried`,
    });
  }
  return new StoreError('store_unavailable', `${doing}: ${redact(raw)}`, { cause: err, where, retriable: true });
}

function errnoOf(err: unknown): string | undefined {
  for (let e = err, depth = 0; e !== null && typeof e === 'object' && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const c = (e as { code?: unknown }).code;
    if (typeof c === 'string' && /^[A-Z_]+$/.test(c)) return c;
    const inner = (e as { errors?: unknown }).errors;
    if (Array.isArray(inner) && inner.length > 0) return errnoOf(inner[0]);
  }
  return undefined;
}

function redact(message: string): string {
  const firstLine = message.split('\n', 1)[0] ?? '';
  const clipped = firstLine.length > 400 ? `${firstLine.slice(0, 400)}…` : firstLine;
  return clipped.replace(/\d(?:[\s-]?\d){12,}/g, '[digits]');
}
