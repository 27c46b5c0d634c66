/**
 * The evidence writer: consumes the event log as consumer group `evidence-writer` and writes every
 * event to the evidence store, checking the producers' hash chains and checkpoint signatures as it
 * goes. A thin shell: the rules live in chain-check.ts (pure) and in the small functions below; the
 * I/O (poll, insert, emit, commit) is at the edges of `#processBatch`.
 *
 *   poll ≤ maxBatchRecords / maxWaitMs ──▶ SHA-256 + row (one pass) + RowBinary ──▶ insertEvents(rows, token, encoded)
 *        │                                  └─▶ chain check, checkpoint signatures ──▶ finding.opened (own producer)
 *        └───────────── commit(positionsAfter(batch)) only after the store and the findings are durable
 *
 * Pipelined, two stages: while batch N is being stored, findings emitted and committed (stage 2,
 * mostly waiting on the store and the log), batch N+1 is polled, hashed, turned into rows (straight
 * from the bytes where store/row-decoder.ts can, the codec otherwise), chain-checked and encoded
 * as RowBinary for the store (stage 1, CPU). Stage 2 runs one batch at a time, in poll order, and starts
 * batch N+1 only after batch N's commit, so commits stay in order and a crash leaves at most one
 * batch stored but uncommitted (as before).
 *
 * Delivery. At least once: positions are committed only after `insertEvents` resolved (rows durable
 * and queryable) and the batch's findings were durably appended. A crash anywhere before the commit
 * redelivers the batch; the store drops events it already holds (by event id, and by the token
 * `<group>:p<partition>:<first>-<last>[,…]` in the engine), so nothing is stored twice. Findings of a
 * redelivered batch are emitted again: their `findingId` is derived from what they are about, so a
 * repeat is recognisable (same findingId, new event).
 *
 * Nothing is dropped silently. An event that fails a check is still stored (it IS the evidence) and
 * a `finding.opened` names it. A record that does not decode (or whose event cannot be a row) has no
 * row to store: the writer emits `finding.opened` naming the partition, offset and error code, and
 * commits past it. The record stays in the log until retention removes it (retention waits for this
 * group's commit, so an operator has until then to copy it out); stopping the writer instead would
 * halt all evidence ingestion on one bad record, which is the worse failure for an audit trail.
 *
 * Retries. A retriable store or log error (insert, finding append, commit) is retried with backoff
 * for as long as the writer runs; positions never move past an unconfirmed batch. A non-retriable
 * store error fails the writer (state 'failed', `stats.lastError`), leaving the batch uncommitted.
 */
import { hostname } from 'node:os';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { JSONWebKeySet } from 'jose';
import type { Logger } from 'pino';
import { systemActor, type EvidenceEmitter } from '../../common/src/evidence/emitter';
import { decodeEvent, type AnyAttestEvent, type AttestEvent, type FindingCategory, type Severity, type UnchainedEvent } from '../../common/src/events';
import { checkpointFromParts, JwksKeys, sha256, toBase64Url, verifyCheckpoint } from '../../common/src/integrity';
import { positionsAfter, type ConsumedRecord, type EventLog, type LogConsumer } from '../../common/src/log';
import {
  lazyEventOf,
  readStoredEvent,
  RowBinaryWriter,
  toStoredEvent,
  writeEventRow,
  type EncodedEventRows,
  type EvidenceStore,
  type FastRow,
  type StoredEvent,
} from '../../common/src/store';
import { ChainTracker, type ChainIssue, type ChainIssueCode, type LogCoverage } from './chain-check';

export const EVIDENCE_WRITER_GROUP = 'evidence-writer';

/** Every finding code the writer raises (detectorId = `evidence-writer.<code>`). */
export type WriterFindingCode =
  | ChainIssueCode
  /** A checkpoint whose signature does not verify, or that is not a well-formed checkpoint. */
  | 'bad_checkpoint_signature'
  /** A checkpoint signed with a key id that is not in the JWKS. */
  | 'unknown_key'
  /** A checkpoint signed outside its key's validity. */
  | 'key_not_valid'
  /** A log record that does not decode as an event: nothing stored for it. */
  | 'undecodable_record'
  /** An event that decodes but cannot be a store row (e.g. its id is not a UUID): nothing stored for it. */
  | 'unstorable_event';

export interface WriterFinding {
  readonly code: WriterFindingCode;
  readonly findingId: string;
  readonly category: FindingCategory;
  readonly severity: Severity;
  readonly title: string;
  readonly description: string;
  readonly relatedEventIds: readonly string[];
  /** `log:p<partition>@<offset>` or `producer/<id>/<epoch>#<from>-<to>`. */
  readonly location: string;
  readonly resource: string;
  readonly startedAtUs: number | null;
}

export interface BatchInfo {
  readonly records: number;
  readonly dedupToken: string;
  readonly positions: readonly { partition: number; nextOffset: number }[];
}

export interface BatchStats extends BatchInfo {
  /** New rows written. */
  readonly events: number;
  readonly duplicates: number;
  readonly undecodable: number;
  readonly findings: number;
  /** Poll returned → positions committed. */
  readonly latencyMs: number;
  /** max(now − appendTimeMs) over the batch, taken when the store confirmed: append → queryable. */
  readonly appendToQueryableMaxMs: number;
}

export interface EvidenceWriterStats {
  batches: number;
  /** Records consumed (committed). */
  records: number;
  /** Rows newly written to the store. */
  eventsWritten: number;
  /** Events the store already held (redeliveries). */
  duplicates: number;
  undecodable: number;
  checkpointsVerified: number;
  findingsEmitted: number;
  /** Findings that could not be encoded or appended for a non-retriable reason (logged). */
  findingsFailed: number;
  retries: number;
  /** Events held by the chain check, waiting for an earlier sequence from a lagging partition. */
  chainPending: number;
  /** log end − committed, summed over partitions whose committed position is known (see lagByPartition). */
  lag: number;
  /** Per partition; null until the writer has learnt the group's position in it. */
  lagByPartition: (number | null)[];
  lastBatch: BatchStats | null;
  state: 'new' | 'running' | 'stopping' | 'stopped' | 'failed';
  lastError: unknown;
}

export interface EvidenceWriterOptions {
  readonly log: EventLog;
  /** Migrated by the caller (migrate() and its retention config.changed belong to the app). */
  readonly store: EvidenceStore;
  /** The writer's own producer (e.g. `evidence-writer-<host>`): findings are emitted through it. */
  readonly emitter: EvidenceEmitter;
  readonly logger: Logger;
  /** Default `evidence-writer`. */
  readonly group?: string;
  /**
   * Events the DLP content stage stores instead of the writer (isContentEvent, when the processors
   * run DLP with storeContent): not inserted here, still chain-checked.
   */
  readonly leftToContentStage?: (event: AnyAttestEvent) => boolean;
  /**
   * Default 20 000. Each insert has a fixed cost in the engine (a new part, its indexes and
   * projection, fsyncs, later merges) and the id lookup: per event, inserts of 10 000 rows cost the
   * engine ≈ 24 µs of CPU, of 20 000 ≈ 15, of 40 000 ≈ 11 (bench/RESULTS.md, "Evidence writer").
   * While there is a backlog the writer fills each batch up to this many records (a poll returns
   * at most one read of the log); under light load polls return what is there, so batches stay
   * small and lag low. Memory grows with it: two batches are in hand at once (one being prepared,
   * one being stored), ≈ 1.3 KB per record each, plus their RowBinary.
   */
  readonly maxBatchRecords?: number;
  /** Default 100 ms. */
  readonly maxWaitMs?: number;
  /** The keyring's published keys; when given, every checkpoint's signature is verified. */
  readonly jwks?: () => JSONWebKeySet | Promise<JSONWebKeySet>;
  /**
   * How much later (log append time) a missing event may land than the event after it before its
   * hole is declared; judged against how far every partition has been read, not the wall clock
   * (chain-check.ts). Default 2 000 ms.
   */
  readonly reorderWindowMs?: number;
  /** While some partition has not been read in this run, a hole the others passed is declared after this long. Default 30 000 ms. */
  readonly maxHoldMs?: number;
  /**
   * How long after its append time a record may take to become readable (the file log stamps a
   * record before its fsync, Kafka before replication). A partition read to its end offset covers
   * only up to this long before the offsets were read. Default 1 000 ms.
   */
  readonly visibilityLagMs?: number;
  /** Backoff for retriable errors. Default 50 ms doubling to 5 000 ms. */
  readonly retry?: { readonly initialMs?: number; readonly maxMs?: number };
  /** Wall clock, ms. Default Date.now. */
  readonly now?: () => number;
  /** Called once per batch after its commit (benchmarks, metrics export). */
  readonly onBatch?: (b: BatchStats) => void;
  /** Test seam: runs after the store confirmed a batch and before its commit. */
  readonly beforeCommit?: (b: BatchInfo) => void | Promise<void>;
}

/** Stage 1 yields to the event loop after this many records (≈ 10–20 ms of work). */
const PREPARE_SLICE_RECORDS = 1_000;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function notUuid(eventId: string): Error {
  return Object.assign(new Error(`event id ${JSON.stringify(eventId.slice(0, 64))} is not a UUID`), { code: 'store_row_invalid' });
}

/** A batch decoded and checked (stage 1), waiting to be stored and committed (stage 2). */
interface PreparedBatch {
  readonly records: readonly ConsumedRecord[];
  readonly rows: StoredEvent[];
  /** The rows in RowBinary, encoded in stage 1 (while the store works on the batch before). */
  readonly encoded: EncodedEventRows | undefined;
  readonly findings: WriterFinding[];
  readonly undecodable: number;
  readonly checkpoints: number;
  readonly token: string;
  readonly positions: readonly { partition: number; nextOffset: number }[];
  /** Earliest appendTimeMs in the batch: its lag is measured from there. */
  readonly firstAppendMs: number;
  readonly t0: number;
}

export class EvidenceWriter {
  readonly stats: EvidenceWriterStats;
  readonly group: string;
  readonly #o: EvidenceWriterOptions;
  readonly #now: () => number;
  readonly #maxBatch: number;
  readonly #maxWait: number;
  readonly #visibilityLag: number;
  readonly #tracker: ChainTracker;
  #consumer: LogConsumer | undefined;
  #loop: Promise<void> | undefined;
  #stopping = false;
  #aborted = false;
  #polling = false;
  #consumerClosed = false;
  #jwksKeys: JwksKeys | undefined;
  /** Group position per partition (next offset), once known. */
  readonly #position: (number | null)[];
  #end: number[];
  /** Per partition: next offset this run has read (null until known). */
  readonly #read: (number | null)[];
  /** Per partition: every record appended at or before this (ms) has been read in this run; null until known. */
  readonly #covered: (number | null)[];
  #idleWaiters: { since: number; resolve: () => void; reject: (e: unknown) => void }[] = [];
  /** Backoffs in progress (a store retry and a poll retry can wait at once): stop() and abort() cut them short. */
  readonly #wakers = new Set<() => void>();
  /** Stage 2 of the batch before the one in hand, while it runs. */
  #storing: Promise<void> | undefined;
  /**
   * Two RowBinary buffers, alternating: stage 1 encodes batch N+1 into one while stage 2 stores
   * batch N from the other. Batch N+2 is prepared only after batch N's stage 2 ended.
   */
  readonly #encoders = [new RowBinaryWriter(1 << 20), new RowBinaryWriter(1 << 20)] as const;
  #encoder = 0;

  constructor(opts: EvidenceWriterOptions) {
    this.#o = opts;
    this.group = opts.group ?? EVIDENCE_WRITER_GROUP;
    this.#now = opts.now ?? Date.now;
    this.#maxBatch = opts.maxBatchRecords ?? 20_000;
    this.#maxWait = opts.maxWaitMs ?? 100;
    this.#visibilityLag = opts.visibilityLagMs ?? 1_000;
    const startedMs = this.#now();
    const reorderWindowMs = opts.reorderWindowMs ?? 2_000;
    this.#tracker = new ChainTracker({
      reorderWindowMs,
      ...(opts.maxHoldMs === undefined ? {} : { maxHoldMs: opts.maxHoldMs }),
      reportGapsAfterAppendMs: startedMs + reorderWindowMs,
    });
    this.#position = new Array<number | null>(opts.log.partitionCount).fill(null);
    this.#end = new Array<number>(opts.log.partitionCount).fill(0);
    this.#read = new Array<number | null>(opts.log.partitionCount).fill(null);
    this.#covered = new Array<number | null>(opts.log.partitionCount).fill(null);
    this.stats = {
      batches: 0,
      records: 0,
      eventsWritten: 0,
      duplicates: 0,
      undecodable: 0,
      checkpointsVerified: 0,
      findingsEmitted: 0,
      findingsFailed: 0,
      retries: 0,
      chainPending: 0,
      lag: 0,
      lagByPartition: [...this.#position],
      lastBatch: null,
      state: 'new',
      lastError: undefined,
    };
  }

  /** Joins the consumer group and starts consuming in the background. */
  async start(): Promise<void> {
    if (this.stats.state !== 'new') throw new Error(`evidence writer already ${this.stats.state}`);
    this.#consumer = await this.#o.log.consumer(this.group, { startFrom: 'earliest' });
    this.stats.state = 'running';
    this.#loop = this.#run().then(
      () => {
        if (this.stats.state !== 'failed') this.stats.state = 'stopped';
      },
      (err: unknown) => {
        this.stats.state = 'failed';
        this.stats.lastError = err;
        this.#o.logger.error({ err, code: (err as { code?: string }).code }, 'evidence writer failed; its current batch is not committed');
      },
    ).finally(() => {
      for (const w of this.#idleWaiters.splice(0)) w.reject(this.stats.lastError ?? new Error('evidence writer stopped'));
      return this.#closeConsumer();
    });
  }

  /** Finishes the batch in hand (store, findings, commit), then leaves the group. Idempotent. */
  async stop(): Promise<void> {
    if (this.#loop === undefined) return;
    if (this.stats.state === 'running') this.stats.state = 'stopping';
    this.#stopping = true;
    this.#wakeAll();
    // Nothing is in hand while a poll waits with no batch being stored: closing the consumer ends
    // the wait (poll resolves []). With a batch being stored, its commit needs the consumer: the
    // poll ends by itself within maxWaitMs and whatever it returned is finished too.
    if (this.#polling && this.#storing === undefined) await this.#closeConsumer();
    await this.#loop;
  }

  /**
   * Stops at once without committing the batch in hand, as a crash would (it is redelivered to the
   * group's next consumer). For tests and for fatal errors in the host.
   */
  async abort(): Promise<void> {
    this.#aborted = true;
    this.#stopping = true;
    this.#wakeAll();
    await this.#closeConsumer();
    await this.#loop;
  }

  /** Resolves once the writer has consumed, stored and committed everything durable in the log when called. */
  idle(): Promise<void> {
    if (this.stats.state === 'failed') return Promise.reject(this.stats.lastError);
    return new Promise((resolve, reject) => this.#idleWaiters.push({ since: this.#now(), resolve, reject }));
  }

  async #closeConsumer(): Promise<void> {
    if (this.#consumerClosed || this.#consumer === undefined) return;
    this.#consumerClosed = true;
    await this.#consumer.close();
  }

  async #run(): Promise<void> {
    const consumer = this.#consumer;
    if (consumer === undefined) return;
    try {
      while (!this.#stopping) {
        // Reading end offsets and polling fail with a retriable `log_unavailable` while the broker is
        // down (docs/kafka.md, "Failure behaviour"); they are retried like inserts and commits. They
        // used not to be: one poll during a broker outage ended the loop and left the writer 'failed'
        // in a process that kept running, so nothing reached the store after the broker came back.
        // Records appended before this are readable by the time the end offsets are read.
        const endReadMs = this.#now() - this.#visibilityLag;
        const endBefore = await this.#retrying('end offsets', () => this.#o.log.endOffsets());
        this.#end = [...endBefore];
        if (this.#stopping) break;
        const pollStart = this.#now();
        const records = await this.#poll(consumer, this.#maxBatch, this.#maxWait);
        // Catching up: a poll returns at most what the log reads in one go (the file log: one chunk
        // per partition, ≈ 7 000 of the bench's events), so fill the batch from the backlog without
        // waiting: the engine's cost per event falls with the insert's size (maxBatchRecords).
        while (records.length > 0 && records.length < this.#maxBatch && !this.#stopping && !this.#consumerClosed) {
          const more = await this.#poll(consumer, this.#maxBatch - records.length, 0);
          if (more.length === 0) break;
          for (let i = 0; i < more.length; i++) records.push(more[i] as ConsumedRecord);
        }
        if (this.#consumerClosed || (this.#stopping && records.length === 0)) break;
        if (records.length === 0) {
          await this.#finishStoring();
          // Everything durable when the end offsets were read has been delivered and committed, so
          // every record appended up to endReadMs (visibility lag allowed for) has been read.
          endBefore.forEach((e, p) => {
            this.#position[p] = Math.max(this.#position[p] ?? 0, e);
            this.#read[p] = Math.max(this.#read[p] ?? 0, e);
            this.#covered[p] = Math.max(this.#covered[p] ?? Number.NEGATIVE_INFINITY, endReadMs);
          });
          this.#updateLag(endBefore);
          const findings = this.#tracker.settle(this.#now(), this.#coverage()).map((i) => chainFinding(i));
          if (findings.length > 0) {
            await this.#emitFindings(findings);
            continue; // the findings are new records: not idle yet
          }
          // A hole being decided is declared (or filled) within the reorder window of catching up:
          // idle() waits for the verdict, so a caller that appended a broken chain sees its finding.
          if (this.#tracker.pendingCount > 0) continue;
          for (const w of this.#idleWaiters.filter((x) => x.since <= pollStart)) {
            this.#idleWaiters.splice(this.#idleWaiters.indexOf(w), 1);
            w.resolve();
          }
          continue;
        }
        // Stage 1 of this batch runs while stage 2 of the previous one waits on the store.
        const batch = await this.#prepare(records, endBefore, endReadMs);
        await this.#finishStoring();
        if (this.#aborted || this.#consumerClosed) break;
        const storing = this.#store(consumer, batch);
        // Awaited by the next #finishStoring; until then a rejection must not count as unhandled.
        storing.catch(() => undefined);
        this.#storing = storing;
      }
      await this.#finishStoring();
    } finally {
      // An error of stage 1 (or of the poll) leaves stage 2 to finish before the consumer closes.
      await this.#storing?.catch(() => undefined);
    }
  }

  async #finishStoring(): Promise<void> {
    const storing = this.#storing;
    if (storing === undefined) return;
    try {
      await storing;
    } finally {
      this.#storing = undefined;
    }
  }

  #poll(consumer: LogConsumer, max: number, waitMs: number): Promise<ConsumedRecord[]> {
    return this.#retrying('poll', async () => {
      // stop() during a retry's backoff: do not start another poll on a consumer being closed.
      if (this.#stopping) return [];
      // Only a poll that may wait is one stop() cuts short by closing the consumer: a filling poll
      // (waitMs 0) has records in hand, which stop() lets the writer finish.
      if (waitMs === 0) return consumer.poll(max, 0);
      this.#polling = true;
      try {
        return await consumer.poll(max, waitMs);
      } finally {
        this.#polling = false;
      }
    });
  }

  /** How far every partition has been read in this run (chain-check.ts, LogCoverage). */
  #coverage(): LogCoverage | undefined {
    let through = Number.POSITIVE_INFINITY;
    let all = true;
    for (const c of this.#covered) {
      if (c === null) all = false;
      else if (c < through) through = c;
    }
    return through === Number.POSITIVE_INFINITY ? undefined : { throughMs: through, allPartitions: all };
  }

  /** Stage 1: decode, hash, rows, chain check, checkpoint signatures. No store or log I/O. */
  async #prepare(records: readonly ConsumedRecord[], endBefore: readonly number[], endReadMs: number): Promise<PreparedBatch> {
    const t0 = this.#now();
    const rows: StoredEvent[] = [];
    const findings: WriterFinding[] = [];
    const checkpoints: { event: AnyAttestEvent; record: ConsumedRecord }[] = [];
    const read = this.#read;
    const covered = this.#covered;
    let undecodable = 0;
    let firstAppendMs = Number.POSITIVE_INFINITY;
    let sinceYield = 0;
    for (const r of records) {
      // Let stage 2 of the batch before move on while this one is prepared: its steps (ids file,
      // lookup, insert, commit) each resume on this thread, and a whole batch prepared in one go
      // (≈ 20 µs per record) would hold every one of them back by as long.
      if (++sinceYield === PREPARE_SLICE_RECORDS) {
        sinceYield = 0;
        await yieldToLoop();
      }
      const p = r.partition;
      if (r.appendTimeMs < firstAppendMs) firstAppendMs = r.appendTimeMs;
      // Within a partition, records come in offset (and append) order.
      if (read[p] === null || (read[p] as number) <= r.offset) read[p] = r.offset + 1;
      if (covered[p] === null || (covered[p] as number) < r.appendTimeMs) covered[p] = r.appendTimeMs;
      // One pass from the bytes to the row where it can (store/row-decoder.ts: the same row, or
      // none); the codec and toStoredEvent otherwise, which also raise the errors named below.
      const hash = sha256(r.value);
      const fast = readStoredEvent(r.value, hash);
      let event: AnyAttestEvent | undefined;
      let row: StoredEvent;
      if (fast !== undefined) {
        row = fast.row;
        if (!UUID.test(row.eventId)) {
          undecodable++;
          findings.push(recordFinding('unstorable_event', r, notUuid(row.eventId), row.eventId));
          continue;
        }
      } else {
        try {
          event = decodeEvent(r.value).event as AnyAttestEvent;
        } catch (err) {
          undecodable++;
          findings.push(recordFinding('undecodable_record', r, err));
          continue;
        }
        const m = event.metadata;
        try {
          if (!UUID.test(m.eventId)) throw notUuid(m.eventId);
          row = toStoredEvent(event as unknown as AttestEvent, r.value, hash);
        } catch (err) {
          undecodable++;
          findings.push(recordFinding('unstorable_event', r, err, m.eventId));
          continue;
        }
      }
      // Content events reach the store through the DLP content stage (DlpProcessor storeContent),
      // redacted where it redacts; their chain is still checked here.
      const left = this.#o.leftToContentStage;
      if (left === undefined || left(event ?? lazyEventOf(fast as FastRow)) !== true) rows.push(row);
      if (row.type === 'integrity.checkpoint') {
        if (this.#o.jwks !== undefined) checkpoints.push({ event: event ?? (decodeEvent(r.value).event as AnyAttestEvent), record: r });
        continue;
      }
      const issues = this.#tracker.observe(
        {
          producer: row.producer,
          epoch: row.producerEpoch ?? '',
          sequence: row.sequence,
          prevHash: row.prevHash,
          hash,
          eventId: row.eventId,
          timeUs: row.timeUs,
          appendTimeMs: r.appendTimeMs,
        },
        t0,
      );
      for (const i of issues) findings.push(chainFinding(i));
    }
    // A partition this run has read to the end offset read before the poll holds nothing older
    // than that moment: it covers up to then even if it had no new records (an idle partition
    // must not hold back the chain check's verdicts under load on the others).
    endBefore.forEach((e, p) => {
      const at = read[p];
      if (at !== null && at !== undefined && at >= e && (covered[p] === null || (covered[p] as number) < endReadMs)) covered[p] = endReadMs;
    });

    for (const c of checkpoints) {
      const f = await this.#verifyCheckpoint(c.event, c.record);
      if (f !== undefined) findings.push(f);
    }
    // Findings ride with this batch: emitted after its rows (the events they name) are stored.
    for (const i of this.#tracker.settle(this.#now(), this.#coverage())) findings.push(chainFinding(i));
    return {
      records,
      rows,
      encoded: await this.#encode(rows),
      findings,
      undecodable,
      checkpoints: checkpoints.length,
      token: dedupToken(this.group, records),
      positions: positionsAfter(records),
      firstAppendMs,
      t0,
    };
  }

  /**
   * The rows in RowBinary for the store (EvidenceStore.insertEvents, `encoded`), or undefined if a
   * row does not encode: the store then encodes them itself and raises the error there, as before.
   */
  async #encode(rows: readonly StoredEvent[]): Promise<EncodedEventRows | undefined> {
    if (rows.length === 0) return undefined;
    this.#encoder ^= 1;
    const w = this.#encoders[this.#encoder] as RowBinaryWriter;
    w.reset();
    const ends = new Uint32Array(rows.length);
    for (let i = 0; i < rows.length; i++) {
      try {
        writeEventRow(w, rows[i] as StoredEvent);
      } catch {
        return undefined;
      }
      ends[i] = w.length;
      if ((i + 1) % (4 * PREPARE_SLICE_RECORDS) === 0) await yieldToLoop();
    }
    return { bytes: w.bytes(), ends };
  }

  /** Stage 2: store, emit findings, commit; one batch at a time, in poll order. */
  async #store(consumer: LogConsumer, b: PreparedBatch): Promise<void> {
    let report = { events: 0, duplicates: 0 };
    if (b.rows.length > 0) report = await this.#retrying('insert', () => this.#o.store.insertEvents(b.rows, b.token, b.encoded));
    const appendToQueryableMaxMs = b.records.length > 0 ? Math.max(0, this.#now() - b.firstAppendMs) : 0;
    if (b.findings.length > 0) await this.#emitFindings(b.findings);

    const info: BatchInfo = { records: b.records.length, dedupToken: b.token, positions: b.positions };
    await this.#o.beforeCommit?.(info);
    if (this.#aborted || this.#consumerClosed) return;
    await this.#retrying('commit', () => consumer.commit(b.positions));
    for (const p of b.positions) this.#position[p.partition] = p.nextOffset;
    // The end offsets read before the latest poll: fresh enough for a gauge, and no extra request per batch.
    this.#updateLag(this.#end);

    const stats: BatchStats = {
      ...info,
      events: report.events - report.duplicates,
      duplicates: report.duplicates,
      undecodable: b.undecodable,
      findings: b.findings.length,
      latencyMs: this.#now() - b.t0,
      appendToQueryableMaxMs,
    };
    const s = this.stats;
    s.batches++;
    s.records += b.records.length;
    s.eventsWritten += stats.events;
    s.duplicates += stats.duplicates;
    s.undecodable += b.undecodable;
    s.checkpointsVerified += b.checkpoints;
    s.chainPending = this.#tracker.pendingCount;
    s.lastBatch = stats;
    this.#o.onBatch?.(stats);
  }

  async #verifyCheckpoint(event: AnyAttestEvent, r: ConsumedRecord): Promise<WriterFinding | undefined> {
    if (event.metadata.type !== 'integrity.checkpoint') return undefined;
    const p = (event as AnyAttestEvent & { metadata: { type: 'integrity.checkpoint' } }).payload as {
      producer: string; epoch: string; firstSequence: number; lastSequence: number; count: number; fromTimeUs: number; toTimeUs: number;
      lastHash: Uint8Array; merkleRoot: Uint8Array; prevCheckpointHash: Uint8Array; closed: boolean; keyId: string; signature: Uint8Array;
    };
    let status: 'ok' | 'malformed' | 'unknown_key' | 'bad_signature' | 'key_not_valid';
    let detail = '';
    try {
      const cp = checkpointFromParts(
        {
          producer: p.producer, epoch: p.epoch, firstSequence: p.firstSequence, lastSequence: p.lastSequence, count: p.count,
          fromTimeUs: p.fromTimeUs, toTimeUs: p.toTimeUs, lastHash: p.lastHash, merkleRoot: p.merkleRoot,
          prevCheckpointHash: p.prevCheckpointHash, closed: p.closed, keyId: p.keyId,
        },
        p.signature,
      );
      let v = await verifyCheckpoint(cp, await this.#keys(false));
      // A key rotated since the JWKS was read: read it again once.
      if (v.status === 'unknown_key') v = await verifyCheckpoint(cp, await this.#keys(true));
      status = v.status;
      if (v.status !== 'ok') detail = v.detail;
    } catch (err) {
      status = 'malformed';
      detail = err instanceof Error ? err.message : String(err);
    }
    if (status === 'ok') return undefined;
    const code: WriterFindingCode = status === 'unknown_key' ? 'unknown_key' : status === 'key_not_valid' ? 'key_not_valid' : 'bad_checkpoint_signature';
    const range = `${p.firstSequence}-${p.lastSequence}`;
    return {
      code,
      findingId: findingIdOf(code, p.producer, p.epoch, range, event.metadata.eventId),
      category: 'integrity',
      severity: 'critical',
      title: `Checkpoint of ${p.producer} does not verify (${code})`,
      description: `checkpoint of producer ${p.producer} epoch ${p.epoch} over sequences ${range}, key ${p.keyId}, at log:p${r.partition}@${r.offset}: ${detail}`,
      relatedEventIds: [event.metadata.eventId],
      location: `producer/${p.producer}/${p.epoch}#${range}`,
      resource: `producer/${p.producer}`,
      startedAtUs: event.metadata.timeUs,
    };
  }

  async #keys(refresh: boolean): Promise<JwksKeys> {
    if (this.#jwksKeys === undefined || refresh) {
      const jwks = this.#o.jwks;
      this.#jwksKeys = new JwksKeys(jwks === undefined ? { keys: [] } : await jwks());
    }
    return this.#jwksKeys;
  }

  async #emitFindings(findings: readonly WriterFinding[]): Promise<void> {
    const emitter = this.#o.emitter;
    const producer = emitter.producer.id;
    const events: UnchainedEvent<'finding.opened'>[] = [];
    for (const f of findings) {
      try {
        events.push(buildFinding(emitter, f));
      } catch (err) {
        this.stats.findingsFailed++;
        this.#o.logger.error({ err, finding: f.findingId, code: f.code }, 'finding could not be built');
      }
    }
    for (const f of findings) this.#o.logger.warn({ finding: f.findingId, code: f.code, location: f.location }, f.title);
    if (events.length === 0) return;
    try {
      await this.#retrying('finding', () => emitter.emit(events, `producer:${producer}`));
      this.stats.findingsEmitted += events.length;
    } catch (err) {
      if ((err as { retriable?: boolean }).retriable === true) throw err;
      // An encoding refusal (e.g. event_invalid) is permanent: retrying would wedge ingestion.
      this.stats.findingsFailed += events.length;
      this.#o.logger.error({ err, code: (err as { code?: string }).code }, 'findings could not be emitted');
    }
  }

  /** Retries retriable errors with backoff while the writer runs; anything else propagates. */
  async #retrying<T>(what: string, fn: () => Promise<T>): Promise<T> {
    let delay = this.#o.retry?.initialMs ?? 50;
    const max = this.#o.retry?.maxMs ?? 5_000;
    for (;;) {
      try {
        return await fn();
      } catch (err) {
        if ((err as { retriable?: boolean }).retriable !== true || this.#aborted) throw err;
        this.stats.retries++;
        this.stats.lastError = err;
        this.#o.logger.warn({ code: (err as { code?: string }).code, what, delayMs: delay }, 'evidence writer: retriable failure, retrying');
        await new Promise<void>((resolve) => {
          const wake = (): void => {
            clearTimeout(t);
            this.#wakers.delete(wake);
            resolve();
          };
          const t = setTimeout(wake, delay);
          this.#wakers.add(wake);
        });
        if (this.#aborted) throw err;
        delay = Math.min(max, delay * 2);
      }
    }
  }

  #wakeAll(): void {
    for (const w of [...this.#wakers]) w();
  }

  #updateLag(end: readonly number[]): void {
    this.#end = [...end];
    let lag = 0;
    const by = this.#end.map((e, p) => {
      const pos = this.#position[p];
      if (pos === null || pos === undefined) return null;
      const l = Math.max(0, e - pos);
      lag += l;
      return l;
    });
    this.stats.lag = lag;
    this.stats.lagByPartition = by;
    this.stats.chainPending = this.#tracker.pendingCount;
  }
}

/** `<group>:p<partition>:<first>-<last>` per partition in the batch: the batch's place in the log. */
export function dedupToken(group: string, records: readonly ConsumedRecord[]): string {
  const span = new Map<number, [number, number]>();
  for (const r of records) {
    const s = span.get(r.partition);
    if (s === undefined) span.set(r.partition, [r.offset, r.offset]);
    else {
      if (r.offset < s[0]) s[0] = r.offset;
      if (r.offset > s[1]) s[1] = r.offset;
    }
  }
  return `${group}:${[...span].sort((a, b) => a[0] - b[0]).map(([p, [a, b]]) => `p${p}:${a}-${b}`).join(',')}`;
}

/** Stable id for what a finding is about: a repeat (redelivery) gets the same id. Letters-rich base64url. */
export function findingIdOf(...parts: readonly (string | number)[]): string {
  return `fnd_${toBase64Url(sha256(new TextEncoder().encode(parts.join('\u0000')))).slice(0, 22)}`;
}

const TITLES: Record<ChainIssueCode, string> = {
  chain_link_mismatch: 'Hash chain broken: an event does not link to its predecessor',
  chain_gap: 'Hash chain gap: events missing from a producer',
  chain_fork: 'Hash chain fork: two events claim one sequence',
  chain_late_event: 'Event arrived after its sequence was reported missing',
};

export function chainFinding(i: ChainIssue): WriterFinding {
  const range = `${i.sequences.from}-${i.sequences.to}`;
  return {
    code: i.code,
    findingId: findingIdOf(i.code, i.producer, i.epoch, range, ...i.eventIds),
    category: 'integrity',
    severity: i.code === 'chain_late_event' ? 'medium' : 'high',
    title: TITLES[i.code],
    description: i.detail,
    relatedEventIds: i.eventIds,
    location: `producer/${i.producer}/${i.epoch}#${range}`,
    resource: `producer/${i.producer}`,
    startedAtUs: i.timeUs,
  };
}

export function recordFinding(code: 'undecodable_record' | 'unstorable_event', r: ConsumedRecord, err: unknown, eventId?: string): WriterFinding {
  const errCode = typeof (err as { code?: unknown })?.code === 'string' ? (err as { code: string }).code : 'unknown_error';
  const where = `log:p${r.partition}@${r.offset}`;
  return {
    code,
    findingId: findingIdOf(code, r.partition, r.offset, sha256(r.value).join(',')),
    category: 'logging_failure',
    severity: 'high',
    title: code === 'undecodable_record' ? 'Log record is not a readable event: not stored' : 'Event cannot be stored',
    description: `${where} (${r.value.length} bytes, appended at ${new Date(r.appendTimeMs).toISOString()}): ${errCode}; the record is kept in the log, nothing was stored for it`,
    relatedEventIds: eventId !== undefined && UUID.test(eventId) ? [eventId] : [],
    location: where,
    resource: `log/partition/${r.partition}`,
    startedAtUs: r.appendTimeMs * 1000,
  };
}

function buildFinding(emitter: EvidenceEmitter, f: WriterFinding): UnchainedEvent<'finding.opened'> {
  const producer = emitter.producer.id;
  return emitter.build('finding.opened', {
    actor: systemActor(producer),
    source: { address: 'local', userAgent: null },
    target: { protocol: 'internal', service: 'attest', resource: f.resource, model: null },
    outcome: { result: 'success', status: null, reason: null },
    correlation: { sessionId: `producer:${producer}`, requestId: `finding:${f.findingId}`, upstreamRequestId: null },
    payload: {
      findingId: f.findingId,
      category: f.category,
      severity: f.severity,
      title: f.title,
      description: f.description,
      detectorId: `evidence-writer.${f.code}`,
      relatedEventIds: [...f.relatedEventIds],
      location: f.location,
      startedAtUs: f.startedAtUs,
    },
  });
}

/** The writer's producer id on this host. */
export function evidenceWriterProducerId(host: string = hostname()): string {
  return `evidence-writer-${host}`;
}
