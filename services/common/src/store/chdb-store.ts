/**
 * The evidence store on ClickHouse embedded in-process (chdb): the default in embedded mode.
 *
 * Threads. chdb's async calls (queryAsync, streams, inserts) run on the libuv pool and inside the
 * engine's own threads; measured, the main thread spends ~0 CPU while they run (docs/evidence-store.md,
 * "Blocking"), so the adapter calls chdb directly rather than through a worker thread: a worker
 * would add a structured clone of every batch (measured costlier than encoding it) and a message
 * protocol for no gain. What does run on the calling thread is bounded: row encoding is sliced
 * with a yield every ENCODE_SLICE_ROWS rows, result rows are parsed per chunk with a yield every
 * PARSE_SLICE_ROWS rows, and opening the data directory (a synchronous chdb call) happens once.
 *
 * Connections. chdb binds one data directory per process; several connections to it coexist.
 * Writes (migrations, inserts) go through one connection, serialized (the insert-time dedup
 * lookup needs that). Every read opens its own short-lived connection (~1 ms), so a long auditor
 * query never holds up ingestion and streams never queue behind one another.
 *
 * Insert path. Rows are encoded as RowBinary into a file under the data directory and inserted
 * with `INSERT … SELECT FROM file(…, 'RowBinary')` (chdb's raw insert takes text formats only).
 * Deduplication: docs/evidence-store.md, "Deduplication".
 */
import { createHash } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { drainPending, Session } from 'chdb';
import { StoreError } from './errors';
import { checkMaxRows, collectRows, uniqueBatch } from './adapter-common';
import { checkRetention, DEFAULT_MIGRATIONS_DIR, loadMigrations, runMigrations, sqlString, type SqlExecutor } from './migrations';
import {
  type EncodedEventRows,
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

export interface ChdbStoreOptions {
  /** The store's data directory (created if missing). One per process. */
  readonly dataDir: string;
  readonly retention: RetentionPolicy;
  /** Defaults to schemas/clickhouse/ in the repository. */
  readonly migrationsDir?: string;
  /** Reads running at once, each on its own connection. Default 4. */
  readonly maxConcurrentReads?: number;
  /**
   * Look up event ids already stored before inserting (the re-batching guard). Default true;
   * false leaves only the engine's insert_deduplication_token, which tests use to prove each layer.
   */
  readonly dedupByEventId?: boolean;
}

const ENCODE_SLICE_ROWS = 512;
const PARSE_SLICE_ROWS = 2_048;
const RESULT_FORMAT = 'JSONCompactEachRowWithNamesAndTypes';
// Exact 64-bit integers (as JSON strings), as a ClickHouse server answers by default; chdb's
// default prints them as numbers, which lose precision past 2^53.
const READER_ARGS = ['--output_format_json_quote_64bit_integers=1'] as const;
const EVENT_COLUMN_LIST = EVENT_COLUMNS.map(([name]) => name).join(', ');
const EVENT_STRUCTURE = EVENT_COLUMNS.map(([name, type]) => `${name} ${type}`).join(', ');
const SIGHTING_COLUMN_LIST = PAN_SIGHTING_COLUMNS.map(([name]) => name).join(', ');
const SIGHTING_STRUCTURE = PAN_SIGHTING_COLUMNS.map(([name, type]) => `${name} ${type}`).join(', ');

/** chdb binds one data directory per process: the store holding it. */
let processStore: ChdbEvidenceStore | undefined;

export class ChdbEvidenceStore implements EvidenceStore {
  readonly dataDir: string;
  readonly #retention: RetentionPolicy;
  readonly #migrationsDir: string;
  readonly #maxReads: number;
  readonly #dedupById: boolean;
  readonly #ingestDir: string;
  #writer: Session;
  #closed = false;
  #closing: Promise<void> | undefined;
  #writeChain: Promise<unknown> = Promise.resolve();
  readonly #inflight = new Set<Promise<unknown>>();
  #reads = 0;
  readonly #readWaiters: (() => void)[] = [];
  readonly #streams = new Set<RowStream>();
  readonly #rows = new RowBinaryWriter(1 << 20);
  readonly #aux = new RowBinaryWriter(1 << 16);
  #fileCounter = 0;

  private constructor(opts: ChdbStoreOptions, writer: Session, dataDir: string) {
    this.dataDir = dataDir;
    this.#retention = opts.retention;
    this.#migrationsDir = opts.migrationsDir ?? DEFAULT_MIGRATIONS_DIR;
    this.#maxReads = opts.maxConcurrentReads ?? 4;
    this.#dedupById = opts.dedupByEventId ?? true;
    this.#ingestDir = join(dataDir, 'attest-ingest');
    this.#writer = writer;
  }

  /**
   * Open (or create) the store in `dataDir`. Refuses a retention below 365 days without the
   * override (store_retention_too_short) before touching anything, and a second store in the same
   * process (store_busy). Call `migrate()` next.
   */
  static async open(opts: ChdbStoreOptions): Promise<ChdbEvidenceStore> {
    checkRetention(opts.retention);
    const dataDir = resolve(opts.dataDir);
    if (processStore !== undefined) {
      throw new StoreError('store_busy', `this process already has an evidence store open at ${processStore.dataDir}`, {
        fix: 'close it first: chdb binds one data directory per process',
      });
    }
    // A store closed a moment ago may still have native work draining; a new directory must wait for it.
    await drainPending();
    await mkdir(dataDir, { recursive: true });
    let writer: Session;
    try {
      writer = new Session(dataDir);
    } catch (err) {
      throw toStoreError(err, 'opening the store');
    }
    const store = new ChdbEvidenceStore(opts, writer, dataDir);
    processStore = store;
    try {
      // Leftovers of a crash mid-insert: their rows are redelivered from the log.
      await rm(store.#ingestDir, { recursive: true, force: true });
      await mkdir(store.#ingestDir, { recursive: true });
    } catch (err) {
      await store.close();
      throw new StoreError('store_unavailable', `cannot prepare ${store.#ingestDir}: ${String(err)}`, { retriable: true, cause: err });
    }
    return store;
  }

  migrate(): Promise<MigrationReport> {
    if (this.#closed) return Promise.reject(closedError());
    return this.#track(this.#serialized(() => runMigrations(this.#executor(), loadMigrations(this.#migrationsDir), this.#retention)));
  }

  insertEvents(batch: readonly StoredEvent[], dedupToken: string, encoded?: EncodedEventRows): Promise<InsertReport> {
    if (this.#closed) return Promise.reject(closedError());
    const unique = uniqueBatch(batch, dedupToken);
    if (unique instanceof StoreError) return Promise.reject(unique);
    if (unique.length === 0) return Promise.resolve({ events: 0, duplicates: 0, sightings: 0 });
    // The caller's encoding serves as long as the rows are the batch as given (no repeats dropped).
    const pre = encoded !== undefined && unique.length === batch.length && encoded.ends.length === batch.length ? encoded : undefined;
    return this.#track(this.#serialized(() => this.#insert(unique, dedupToken, pre)));
  }

  async query(sql: string, params: QueryParams = {}, opts: QueryOptions = {}): Promise<QueryResult> {
    this.#checkOpen();
    const maxRows = checkMaxRows(opts);
    const stream = this.stream(sql, params, opts.signal === undefined ? {} : { signal: opts.signal });
    return collectRows(stream, maxRows);
  }

  stream(sql: string, params: QueryParams = {}, opts: { readonly signal?: AbortSignal } = {}): RowStream {
    this.#checkOpen();
    const stream = new ChdbRowStream(this, sql, params, opts.signal);
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
    this.#writer.close();
    // Native work (a cancelled stream's last fetch) may outlive its promise; the next store waits for it.
    await drainPending();
    await rm(this.#ingestDir, { recursive: true, force: true }).catch(() => undefined);
    if (processStore === this) processStore = undefined;
  }

  get closed(): boolean {
    return this.#closed;
  }

  // ---- internals used by ChdbRowStream ----

  /** @internal Open a connection for one read, within the concurrency limit. */
  async acquireReader(): Promise<Session> {
    while (this.#reads >= this.#maxReads) await new Promise<void>((r) => this.#readWaiters.push(r));
    this.#checkOpen();
    this.#reads += 1;
    try {
      return new Session(this.dataDir, { connectionArgs: READER_ARGS });
    } catch (err) {
      this.#reads -= 1;
      this.#readWaiters.shift()?.();
      throw toStoreError(err, 'opening a read connection');
    }
  }

  /** @internal */
  releaseReader(session: Session): void {
    session.close();
    this.#reads -= 1;
    this.#readWaiters.shift()?.();
  }

  /** @internal A stream that finished or was cancelled. */
  forget(stream: RowStream): void {
    this.#streams.delete(stream);
  }

  /** @internal */
  track<T>(p: Promise<T>): Promise<T> {
    return this.#track(p);
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
    // Calls accepted before close() still run: close() waits for them.
    const run = this.#writeChain.then(fn);
    this.#writeChain = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  #executor(): SqlExecutor {
    return {
      exec: async (sql) => {
        await this.#run(sql);
      },
      rows: (sql, params) => this.#rowsOnWriter(sql, params ?? {}),
    };
  }

  async #run(sql: string): Promise<void> {
    try {
      await this.#writer.queryAsync(sql, { format: 'TSV' });
    } catch (err) {
      throw toStoreError(err, 'running a statement');
    }
  }

  async #rowsOnWriter(sql: string, params: QueryParams): Promise<Row[]> {
    try {
      const r = Object.keys(params).length === 0
        ? await this.#writer.queryAsync(sql, { format: 'JSONCompactEachRow' })
        : await this.#writer.queryBindAsync(sql, params, { format: 'JSONCompactEachRow' });
      return parseLines(r.text());
    } catch (err) {
      throw toStoreError(err, 'reading');
    }
  }

  async #insert(batch: readonly StoredEvent[], dedupToken: string, encoded: EncodedEventRows | undefined): Promise<InsertReport> {
    const files: string[] = [];
    try {
      let lo = Infinity;
      let hi = -Infinity;
      for (const e of batch) {
        if (!Number.isSafeInteger(e.timeUs)) throw new StoreError('store_row_invalid', `event ${e.eventId} has time ${String(e.timeUs)}`, { where: 'timeUs' });
        if (e.timeUs < lo) lo = e.timeUs;
        if (e.timeUs > hi) hi = e.timeUs;
      }
      const range = `time >= fromUnixTimestamp64Micro(toInt64(${lo}), 'UTC') AND time <= fromUnixTimestamp64Micro(toInt64(${hi}), 'UTC')`;

      // 1. Events already stored (a redelivery, possibly under other batch boundaries): first write wins.
      let existing = new Set<string>();
      if (this.#dedupById) {
        const idsFile = encoded === undefined ? await this.#writeIds(batch, files) : await this.#writeEncodedIds(encoded, files);
        existing = await this.#existingIds('events', range, idsFile);
      }
      const fresh = existing.size === 0 ? batch : batch.filter((e) => !existing.has(e.eventId.toLowerCase()));
      if (fresh.length > 0) {
        // Rows the caller encoded go to the file as they are; after a filter they are encoded here.
        const path =
          encoded !== undefined && fresh === batch
            ? await this.#writeBytes(encoded.bytes, 'events', files)
            : await this.#encodeToFile(fresh, writeEventRow, 'events', files);
        await this.#run(
          `INSERT INTO events (${EVENT_COLUMN_LIST}) SETTINGS insert_deduplication_token = ${sqlString(engineToken(dedupToken, 'events', fresh))} ` +
            `SELECT * FROM file(${sqlString(path)}, 'RowBinary', ${sqlString(EVENT_STRUCTURE)})`,
        );
      }

      // 2. Sightings, checked on their own table: a crash between the two inserts leaves events
      // stored without their sightings, and the redelivery must complete them.
      const withSightings = batch.filter((e) => e.panSightings.length > 0);
      let sightings: PanSighting[] = [];
      if (withSightings.length > 0) {
        let sighted = new Set<string>();
        if (this.#dedupById) {
          const idsFile = await this.#writeIds(withSightings, files);
          sighted = await this.#existingIds('pan_sightings', range, idsFile);
        }
        sightings = withSightings.filter((e) => !sighted.has(e.eventId.toLowerCase())).flatMap((e) => e.panSightings);
        if (sightings.length > 0) {
          const path = await this.#encodeToFile(sightings, writeSightingRow, 'sightings', files);
          await this.#run(
            `INSERT INTO pan_sightings (${SIGHTING_COLUMN_LIST}) SETTINGS insert_deduplication_token = ${sqlString(engineToken(dedupToken, 'pan_sightings', sightings))} ` +
              `SELECT * FROM file(${sqlString(path)}, 'RowBinary', ${sqlString(SIGHTING_STRUCTURE)})`,
          );
        }
      }
      return { events: batch.length, duplicates: batch.length - fresh.length, sightings: sightings.length };
    } finally {
      await Promise.all(files.map((f) => rm(f, { force: true })));
    }
  }

  async #existingIds(table: 'events' | 'pan_sightings', range: string, idsFile: string): Promise<Set<string>> {
    // Plain lines rather than JSON: a full redelivery returns every id of the batch, and parsing
    // them must not stall the caller's event loop.
    let text: string;
    try {
      const r = await this.#writer.queryAsync(
        `SELECT DISTINCT toString(event_id) FROM ${table} WHERE ${range} AND event_id IN (SELECT event_id FROM file(${sqlString(idsFile)}, 'RowBinary', 'event_id UUID'))`,
        { format: 'TSV' },
      );
      text = r.text();
    } catch (err) {
      throw toStoreError(err, 'looking up stored events');
    }
    const ids = new Set<string>();
    for (let at = 0; at < text.length; ) {
      const nl = text.indexOf('\n', at);
      const end = nl < 0 ? text.length : nl;
      if (end > at) ids.add(text.slice(at, end));
      at = end + 1;
    }
    return ids;
  }

  async #writeIds(rows: readonly { readonly eventId: string }[], files: string[]): Promise<string> {
    const w = this.#aux;
    w.reset();
    for (let i = 0; i < rows.length; i++) w.uuid((rows[i] as { eventId: string }).eventId, 'eventId');
    const path = this.#nextFile('ids', files);
    await writeFile(path, w.bytes());
    return path;
  }

  /** The ids file from encoded rows: each row starts with its event_id (16 bytes, as `uuid` writes it). */
  async #writeEncodedIds(encoded: EncodedEventRows, files: string[]): Promise<string> {
    const { bytes, ends } = encoded;
    const out = Buffer.allocUnsafe(ends.length * 16);
    for (let i = 0, start = 0; i < ends.length; i++) {
      for (let k = 0, o = i * 16; k < 16; k++) out[o + k] = bytes[start + k] as number;
      start = ends[i] as number;
    }
    return this.#writeBytes(out, 'ids', files);
  }

  async #writeBytes(bytes: Uint8Array, label: string, files: string[]): Promise<string> {
    const path = this.#nextFile(label, files);
    await writeFile(path, bytes);
    return path;
  }

  async #encodeToFile<T>(rows: readonly T[], write: (w: RowBinaryWriter, row: T) => void, label: string, files: string[]): Promise<string> {
    const w = this.#rows;
    w.reset();
    for (let i = 0; i < rows.length; i++) {
      write(w, rows[i] as T);
      // Keep the caller's event loop responsive while a large batch is encoded.
      if ((i + 1) % ENCODE_SLICE_ROWS === 0) await yieldToLoop();
    }
    const path = this.#nextFile(label, files);
    await writeFile(path, w.bytes());
    return path;
  }

  #nextFile(label: string, files: string[]): string {
    const path = join(this.#ingestDir, `${process.pid}-${++this.#fileCounter}-${label}.rowbinary`);
    files.push(path);
    return path;
  }
}

/**
 * The engine's insert_deduplication_token: the caller's token plus the ids actually inserted, so a
 * token reused for different rows can never make the engine drop them.
 */
function engineToken(dedupToken: string, table: string, rows: readonly { readonly eventId: string }[]): string {
  const h = createHash('sha256').update(table).update('\0').update(dedupToken).update('\0');
  // One update per call, not per row: the ids joined are hashed in a single native call.
  h.update(rows.map((r) => r.eventId).join(','));
  return h.digest('hex');
}

class ChdbRowStream implements RowStream {
  readonly columns: Promise<readonly ResultColumn[]>;
  #resolveColumns!: (c: readonly ResultColumn[]) => void;
  #rejectColumns!: (e: unknown) => void;
  #cancelled = false;
  #native: { cancel(): void } | undefined;
  #started = false;

  constructor(
    private readonly store: ChdbEvidenceStore,
    private readonly sql: string,
    private readonly params: QueryParams,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.columns = new Promise((resolve, reject) => {
      this.#resolveColumns = resolve;
      this.#rejectColumns = reject;
    });
    // An unread stream's columns promise must not surface as an unhandled rejection.
    this.columns.catch(() => undefined);
  }

  /** The result's text chunk by chunk; SHOW/DESCRIBE/EXPLAIN cannot stream and come in one piece. */
  async *#chunks(session: Session): AsyncGenerator<string> {
    const opts = { format: RESULT_FORMAT, ...(this.signal === undefined ? {} : { signal: this.signal }) };
    const bound = Object.keys(this.params).length > 0;
    let native: ReturnType<Session['queryStream']>;
    try {
      native = bound ? session.queryStreamBind(this.sql, this.params, opts) : session.queryStream(this.sql, opts);
    } catch (err) {
      const e = err as { clickhouseCode?: unknown; message?: unknown };
      if (e.clickhouseCode !== 36 || !String(e.message).includes('Streaming query is not supported')) throw err;
      const r = bound ? await session.queryBindAsync(this.sql, this.params, opts) : await session.queryAsync(this.sql, opts);
      yield r.text();
      return;
    }
    this.#native = native;
    if (this.#cancelled) native.cancel();
    for await (const chunk of native) yield chunk.text();
  }

  cancel(): void {
    if (this.#cancelled) return;
    this.#cancelled = true;
    this.#native?.cancel();
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
    // close() waits for every read that is still on a connection.
    this.store.track(new Promise<void>((r) => (finish = r)));
    let session: Session | undefined;
    try {
      session = await this.store.acquireReader();
      let header: { names: string; types: string } | undefined;
      let sinceYield = 0;
      for await (const text of this.#chunks(session)) {
        const lines = text.split('\n');
        let first = 0;
        // Every chunk of a *WithNamesAndTypes stream repeats the two header lines.
        if (header === undefined) {
          header = { names: lines[0] ?? '[]', types: lines[1] ?? '[]' };
          const names = JSON.parse(header.names) as string[];
          const types = JSON.parse(header.types) as string[];
          this.#resolveColumns(names.map((name, i) => ({ name, type: types[i] ?? '' })));
          first = 2;
        } else if (lines[0] === header.names && lines[1] === header.types) {
          first = 2;
        }
        for (let i = first; i < lines.length; i++) {
          const line = lines[i] as string;
          if (line === '') continue;
          yield JSON.parse(line) as Row;
          if (++sinceYield === PARSE_SLICE_ROWS) {
            sinceYield = 0;
            await yieldToLoop();
          }
        }
      }
      if (header === undefined) this.#resolveColumns([]);
    } catch (err) {
      const e = this.signal?.aborted === true ? (this.signal.reason as unknown) : toStoreError(err, 'running a query');
      this.#rejectColumns(e);
      throw e;
    } finally {
      this.#cancelled = true;
      this.#native?.cancel();
      if (session !== undefined) this.store.releaseReader(session);
      this.store.forget(this);
      finish();
    }
  }
}

function closedError(): StoreError {
  return new StoreError('store_closed', 'the evidence store is closed');
}

function parseLines(text: string): Row[] {
  const out: Row[] = [];
  for (const line of text.split('\n')) if (line !== '') out.push(JSON.parse(line) as Row);
  return out;
}

/** ClickHouse error codes that mean "try again later" rather than "this statement is wrong". */
const RETRIABLE_CLICKHOUSE_CODES = new Set([
  159, // TIMEOUT_EXCEEDED
  202, // TOO_MANY_SIMULTANEOUS_QUERIES
  241, // MEMORY_LIMIT_EXCEEDED
  252, // TOO_MANY_PARTS
  236, // ABORTED
  394, // QUERY_WAS_CANCELLED
]);

/**
 * Map a chdb error to the store's catalog. The message keeps only the engine's first line with any
 * long digit run redacted: engine messages can quote the row that failed.
 */
export function toStoreError(err: unknown, doing: string): StoreError {
  if (err instanceof StoreError) return err;
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  const raw = typeof e.message === 'string' ? e.message : String(err);
  const chCode = clickhouseCodeOf(err) ?? clickhouseCodeIn(raw);
  const message = `${doing}: ${redact(raw)}`;
  const opts = { cause: err, ...(chCode === undefined ? {} : { clickhouseCode: chCode }) };
  switch (code) {
    case 'CHDB_CLOSED':
      return new StoreError('store_closed', message, opts);
    case 'CHDB_CONNECTION':
      return new StoreError('store_busy', message, { ...opts, retriable: true, fix: 'one data directory per process: close the other store and wait for it' });
    case 'CHDB_BIND':
      return new StoreError('store_invalid_argument', message, opts);
    case 'CHDB_SYNTAX':
      return new StoreError('store_query_failed', message, opts);
    default:
      if (chCode !== undefined && !RETRIABLE_CLICKHOUSE_CODES.has(chCode)) return new StoreError('store_query_failed', message, opts);
      return new StoreError('store_unavailable', message, { ...opts, retriable: true });
  }
}

/** The engine's code, wherever chdb put it: on the error or on a cause (stream errors wrap). */
function clickhouseCodeOf(err: unknown): number | undefined {
  for (let e = err, depth = 0; e !== null && typeof e === 'object' && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const c = (e as { clickhouseCode?: unknown }).clickhouseCode;
    if (typeof c === 'number') return c;
  }
  return undefined;
}

function clickhouseCodeIn(message: string): number | undefined {
  const m = /\bCode: (\d+)\. DB::Exception/.exec(message);
  return m === null ? undefined : Number(m[1]);
}

function redact(message: string): string {
  const firstLine = message.split('\n', 1)[0] ?? '';
  const clipped = firstLine.length > 400 ? `${firstLine.slice(0, 400)}…` : firstLine;
  return clipped.replace(/\d(?:[\s-]?\d){12,}/g, '[digits]');
}
