/**
 * The DLP processor: consumes the evidence log as consumer group `dlp`, runs the DLP engine (dlp/) over
 * every event that carries content, and appends what it derives as signed evidence through its own
 * producer (invariant 5: derived content keeps provenance). A thin shell like the risk processor: the
 * rules live in dlp/, the I/O is at the edges.
 *
 *   poll ──▶ type header filter ──▶ decodeEvent ──▶ scanJson(content) ──▶ deriveProvenance ──▶ data.masked
 *     │                                                            └──▶ observe(case, finding) ──▶ finding.opened / finding.updated
 *     │                                              emitter.emit(outputs, record key)   (durable)
 *     └──────── commit(positionsAfter(batch)) only after the outputs are durable
 *
 * What it scans (CONTENT_FIELDS, one field per event type): `gateway.request.received` payload.content
 * (version 2+: the forwarded, gateway-masked request body, so the prompt, system text and tool
 * results a caller sent), `gateway.response.completed` payload.content (the delivered, gateway-masked
 * response body: JSON, or SSE text) and `db.query.executed` payload.statement (the masked SQL text).
 * Those are the only string content fields of the event schemas. Content that is null (not kept, or
 * an event written before the field existed) is skipped. A body that parses as a JSON object or array
 * is scanned as JSON (paths like `$.messages[0].content`, `$.content[0].text`, so a drop removes one
 * text block, not the whole body); anything else (SSE, plain text, SQL) as one string at path `$`.
 * A request body holds the whole conversation so far, so a secret pasted in turn 1 is in every later
 * request event too: each one derives its own data.masked (that event holds it), and the finding of
 * the first sighting is updated (one case per value and source), not opened again.
 *
 * What it writes, when the engine changes the content (it redacts more than the gateway did):
 *   - `data.masked`, payload from deriveProvenance: subjectEventId = the original event's id,
 *     originalDigest = the original's chain hash (SHA-256 of its encoded bytes, what its successor's
 *     prevHash names), maskedDigest = SHA-256 of canonicalJson(redacted content), one hit per region
 *     (ruleId `dlp.<detector>`, action masked / tokenized / dropped, location, no value; PANs as BIN,
 *     last four and a keyed hash). Envelope: the original's actor, source, target and correlation
 *     (whose content it was, so card lookups and per-person queries find it like the gateway's own
 *     data.masked); metadata.producer is this processor, and its checkpoints sign the event.
 *   - `finding.opened` / `finding.updated` (actor DLP_ACTOR) for every data_security finding of the
 *     scan (categories in policy.dataSecurityCategories; default card and SAD, add `secret` for keys):
 *     one case per (detector, value fingerprint, source identity), the location naming the store,
 *     event type and field, event id, JSON path and offset; the source identity is the original
 *     actor's issuer and subject, and the producer that wrote the content.
 * The original events are never touched: the original chain still verifies.
 *
 * The redacted content itself is NOT written anywhere: data.masked has no content field and no event
 * type carries a redacted copy (see the report / docs: a `data.redacted` event or a `content` field
 * is needed). maskedDigest commits to it, so once a place exists the content can be checked.
 *
 * Redelivery (at-least-once) produces no duplicate. Outputs are keyed by the input record's key, so
 * they land in the input's partition after it: every output of an input that is not committed yet
 * sits in the uncommitted stretch [committed, end) of that partition. At start (and after a failure)
 * the processor probes that stretch and collects the original ids its own outputs name (data.masked
 * subjectEventId, finding.* relatedEventIds): those inputs are skipped when delivered again. Inputs
 * handled in this run are remembered too (a bounded window of RECENT_CAP ids), which also absorbs a
 * producer's retried append that put the same event on the log twice. Event ids cannot be made
 * deterministic instead: ids are UUIDv7 and the store dedupes by id, which would hide a chained event
 * and break the processor's own chain in the store.
 *
 * The findings book (open/closed per case) is rebuilt from the log at start and after any failure
 * that may leave it ahead of the log: a throwaway reader replays every finding.* event with a `dlp-`
 * finding id below the committed positions (from a state snapshot's positions and book when one may
 * be used: docs/processors.md; the snapshot is the "covered" book, the fold of exactly the finding
 * events below the committed positions), then the finding events of the uncommitted stretch are
 * folded (the fold is order-independent, so partitions may interleave). A finding.closed written by
 * anyone (the console) closes the case; the next sighting opens a new generation (a new finding id).
 * Never is an input decided twice on the same book: a failed emit discards the book and rebuilds.
 *
 * Limits: only one DLP processor per group (the book needs every partition); without a snapshot the
 * replay reads the whole retained log (headers let it skip decoding all but finding events); SSE is
 * scanned as one text, so a secret split across two text deltas is not seen; outputs carry the
 * processor emitter's tenant id (one processor per tenant).
 */
import type { Logger } from 'pino';
import { ProcessorLoop } from './processor-loop';
import { probeUncommitted, replayBelow } from './log-replay';
import type { SnapshotOptions } from './snapshot-store';
import { SnapshotKeeper } from './snapshots';
import type { EvidenceEmitter } from '../../common/src/evidence/emitter';
import type { PanHmacKey } from '../../common/src/evidence/pan-hmac';
import {
  decodeEvent,
  encodeEvent,
  type Actor,
  type AnyAttestEvent,
  type Direction,
  type EventType,
  type PayloadOf,
  type UnchainedEvent,
} from '../../common/src/events';
import { hashEquals, sha256 } from '../../common/src/integrity';
import { positionsAfter, type ConsumedRecord, type EventLog, type LogConsumer } from '../../common/src/log';
import { compileDlpPolicy, deriveProvenance, observe, scanJson, type DataSecurityCase, type DlpKey, type DlpPolicy, type FindingSource, type Json } from '../../common/src/dlp/index';
import { findingId as caseFindingId, findingKey, MAX_RELATED } from '../../common/src/dlp/findings';
import { CONTENT_BY_TYPE, CONTENT_FIELDS, isContentEvent, type ContentField } from '../../common/src/dlp/content-fields';

export const DLP_PROCESSOR_GROUP = 'dlp';

/** Actor of the findings the processor raises on its own. */
export const DLP_ACTOR: Actor = {
  subject: 'attest:dlp',
  issuer: 'attest',
  clientId: null,
  groups: [],
  kind: 'system',
  onBehalfOf: null,
  dev: false,
};

/** Label of the DLP key derived from the PAN HMAC key (like the gateway's approval digest key). */
export const DLP_KEY_LABEL = 'attest.dlp.fingerprint-key.v1';

/**
 * The engine's HMAC key (tokens, fingerprints) from the PAN HMAC key: HMAC(panSecret, label), 32 raw
 * bytes, with its own key id. PAN fingerprints under it are NOT the gateway's panHmac (that would
 * need the raw PAN key in the engine); a lookup tool derives this key from the PAN key the same way.
 */
export function dlpKeyFrom(panKey: PanHmacKey): DlpKey {
  return { kid: `${panKey.kid}/dlp.v1`, secret: new Uint8Array(Buffer.from(panKey.hash(DLP_KEY_LABEL), 'base64url')) };
}

// Where content sits (common/src/dlp/content-fields.ts), re-exported for the processors' callers.
// Keyed by type: #handle scans one field per event, so a type may appear once (the int test checks it).
export { CONTENT_FIELDS, isContentEvent, type ContentField };

/** Types the main loop decodes (anything else is skipped on its `type` header). */
const HANDLED_TYPES: ReadonlySet<string> = new Set([...CONTENT_BY_TYPE.keys(), 'finding.closed']);
/** Types the processor writes, and finding events it folds. */
const OUTPUT_TYPES: ReadonlySet<string> = new Set(['data.masked', 'finding.opened', 'finding.updated', 'finding.closed']);
const FINDING_TYPES: ReadonlySet<string> = new Set(['finding.opened', 'finding.updated', 'finding.closed']);
const DLP_FINDING_PREFIX = 'dlp-';

/** How many handled original ids are remembered for dedupe beyond the uncommitted stretch. */
export const RECENT_CAP = 65_536;

export interface DlpProcessorOptions {
  /** The evidence log: read as `group`, and where the outputs go (through `emitter`). */
  readonly log: EventLog;
  /** The processor's own producer (e.g. `dlp-<host>`, component 'dlp'). */
  readonly emitter: EvidenceEmitter;
  /** The `dlp` policy section (dlpPolicySchema). */
  readonly policy: DlpPolicy;
  /** The PAN HMAC key; the engine's key is derived from it (dlpKeyFrom). */
  readonly panKey: PanHmacKey;
  readonly logger: Logger;
  /** Default `dlp`. */
  readonly group?: string;
  /** Where the scanned content sits, first word of finding locations. Default `log`. */
  readonly contentStore?: string;
  /** Wall clock, ms. Default Date.now. */
  readonly now?: () => number;
  /** Default 1 000. */
  readonly maxBatchRecords?: number;
  /** Longest a poll waits (bounds how fast stop returns). Default 100 ms. */
  readonly maxWaitMs?: number;
  /** Backoff after a failure. Default 50 ms doubling to 5 000 ms. */
  readonly retry?: { readonly initialMs?: number; readonly maxMs?: number };
  /** Test seam: runs after a batch's outputs are durable, before its commit. */
  readonly beforeCommit?: (records: readonly ConsumedRecord[]) => void | Promise<void>;
  /**
   * The content stage of the evidence store: when given, every event with content (isContentEvent)
   * is stored through this, after its outputs are durable and before its commit, as the original
   * or, where the engine redacted more than the gateway did, as the attested redacted copy. The
   * evidence writer then leaves those events to this stage, so content reaches the store only
   * after DLP (PCI DSS 3.3.1: sensitive authentication data is never stored). Idempotent per
   * token and event id, like the writer's inserts.
   */
  readonly storeContent?: (rows: readonly ContentRow[], dedupToken: string) => Promise<void>;
  /** State snapshots (a cache that shortens the rebuild); none when absent: every rebuild replays the retained log. */
  readonly snapshots?: SnapshotOptions;
}

/** A content event as the DLP stage stores it. */
export interface ContentRow {
  /** The event as stored: the original, or its redacted copy (same metadata and chain position). */
  readonly event: AnyAttestEvent;
  /** The stored bytes. */
  readonly bytes: Uint8Array;
  /** The original's chain hash (what its successor's prevHash names). */
  readonly hash: Uint8Array;
  /** The data.masked that attests the redacted copy; null for an original. */
  readonly redactedBy: string | null;
}

export interface DlpProcessorStats {
  state: 'new' | 'running' | 'stopping' | 'stopped';
  /** Records delivered (all types). */
  recordsSeen: number;
  /** Events with a content field scanned. */
  scanned: number;
  /** Scanned events the engine changed (a data.masked was derived). */
  derived: number;
  /** Content events stored by this stage (storeContent), and how many of them as redacted copies. */
  contentStored: number;
  contentRedacted: number;
  /** Content events skipped because their outputs are already durable (redelivery, duplicate append). */
  duplicatesSkipped: number;
  undecodable: number;
  /** Records the engine threw on (logged, skipped: their content is NOT scanned). */
  failedRecords: number;
  outputsEmitted: number;
  findingsOpened: number;
  findingsUpdated: number;
  /** Hits per detector id over the derived events. */
  hitsByDetector: Record<string, number>;
  commits: number;
  records: number;
  rebuilds: number;
  /** Finding events folded by the last rebuild. */
  replayed: number;
  /** Records the last rebuild's replay read below the committed positions (from the snapshot's positions when it used one). */
  replayRead: number;
  /** Whether the last rebuild started from a state snapshot. */
  fromSnapshot: boolean;
  snapshotsSaved: number;
  snapshotsRejected: number;
  /** Original ids found already derived in the uncommitted stretch by the last rebuild. */
  pendingDerived: number;
  retries: number;
  /** Cases in the book. */
  cases: number;
  /** Time spent in the engine (scan + derive), ms. */
  scanMs: number;
  lastError: unknown;
}

interface Emission {
  readonly key: string;
  readonly events: UnchainedEvent<EventType>[];
}

interface CaseRecord {
  openedAtUs: number;
  occurrences: number;
  related: string[];
  closed: boolean;
}

/** Version of DlpFindingBook's snapshot shape: bump it with any change to CaseRecord or the fold. */
export const DLP_BOOK_STATE_VERSION = 1;

/** A DlpFindingBook as plain data: [finding id, case] sorted by finding id. */
export type DlpBookState = readonly (readonly [string, Readonly<CaseRecord>])[];

/**
 * Data security cases by finding id. Folding is order-independent (a case's events may sit in
 * different partitions); a case's generation is found by walking `findingId(key, g)`.
 */
export class DlpFindingBook {
  readonly #cases = new Map<string, CaseRecord>();

  get size(): number {
    return this.#cases.size;
  }

  /** The current case for a finding key: the open one, else the last closed one, else undefined. */
  current(key: string): DataSecurityCase | undefined {
    let last: DataSecurityCase | undefined;
    for (let g = 0; ; g++) {
      const id = caseFindingId(key, g);
      const c = this.#cases.get(id);
      if (c === undefined) return last;
      const s: DataSecurityCase = { findingId: id, status: c.closed ? 'closed' : 'open', openedAtUs: c.openedAtUs, occurrences: c.occurrences, relatedEventIds: c.related, generation: g };
      if (!c.closed) return s;
      last = s;
    }
  }

  /** Stores a case as observe() returned it. */
  put(s: DataSecurityCase): void {
    const c = this.#cases.get(s.findingId);
    this.#cases.set(s.findingId, { openedAtUs: s.openedAtUs, occurrences: s.occurrences, related: [...s.relatedEventIds], closed: s.status === 'closed' || (c?.closed ?? false) });
  }

  /** The book as plain data (copies, sorted by finding id): for a state snapshot. */
  toState(): DlpBookState {
    return [...this.#cases]
      .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
      .map(([id, c]) => [id, { openedAtUs: c.openedAtUs, occurrences: c.occurrences, related: [...c.related], closed: c.closed }] as const);
  }

  /** A book from `toState()` output; throws a TypeError when it is malformed. */
  static fromState(state: unknown): DlpFindingBook {
    if (!Array.isArray(state)) throw new TypeError('dlp book state is not an array');
    const book = new DlpFindingBook();
    for (const e of state as unknown[]) {
      const [id, c] = (Array.isArray(e) ? e : []) as [unknown, Partial<CaseRecord> | undefined];
      if (
        typeof id !== 'string' ||
        c === null ||
        typeof c !== 'object' ||
        typeof c.openedAtUs !== 'number' ||
        typeof c.occurrences !== 'number' ||
        typeof c.closed !== 'boolean' ||
        !Array.isArray(c.related) ||
        !c.related.every((x) => typeof x === 'string')
      ) {
        throw new TypeError('dlp book state has a malformed case');
      }
      book.#cases.set(id, { openedAtUs: c.openedAtUs, occurrences: c.occurrences, related: [...c.related], closed: c.closed });
    }
    return book;
  }

  /** Folds a finding event about a DLP case (others are ignored). */
  apply(e: AnyAttestEvent): void {
    const t = e.metadata.type;
    if (!FINDING_TYPES.has(t)) return;
    const p = e.payload as PayloadOf<'finding.opened'> | PayloadOf<'finding.updated'> | PayloadOf<'finding.closed'>;
    if (!p.findingId.startsWith(DLP_FINDING_PREFIX)) return;
    const c = this.#cases.get(p.findingId) ?? { openedAtUs: e.metadata.timeUs, occurrences: 0, related: [], closed: false };
    if (t === 'finding.closed') {
      c.closed = true;
      c.openedAtUs = (p as PayloadOf<'finding.closed'>).openedAtUs;
    } else if (isOwnActor(e.actor)) {
      // Sightings are the processor's own opened/updated; a person's update (acknowledged, …) is not one.
      if (t === 'finding.opened') c.openedAtUs = e.metadata.timeUs;
      c.occurrences++;
      const rel = (p as PayloadOf<'finding.opened'>).relatedEventIds;
      c.related = [...rel.filter((id) => !c.related.includes(id)), ...c.related].slice(0, MAX_RELATED);
    }
    this.#cases.set(p.findingId, c);
  }
}

export class DlpProcessor {
  readonly stats: DlpProcessorStats;
  readonly group: string;
  readonly #o: DlpProcessorOptions;
  readonly #now: () => number;
  readonly #maxBatch: number;
  readonly #maxWait: number;
  readonly #key: DlpKey;
  #book = new DlpFindingBook();
  /**
   * The fold of exactly the finding events below the committed positions (what a replay would
   * build; #book is ahead of it by this run's own decisions): what a snapshot holds.
   */
  #covered = new DlpFindingBook();
  readonly #snap: SnapshotKeeper;
  /** Original ids whose outputs are durable: the uncommitted stretch at the last rebuild, and this run's. */
  #handled = new Set<string>();
  /** Original id → the data.masked that redacted it and the redacted event's digest (bounded like #handled). */
  #derived = new Map<string, { by: string; digest: Uint8Array }>();
  #consumer: LogConsumer | undefined;
  readonly #life: ProcessorLoop;

  constructor(opts: DlpProcessorOptions) {
    this.#o = opts;
    this.group = opts.group ?? DLP_PROCESSOR_GROUP;
    this.#now = opts.now ?? Date.now;
    this.#maxBatch = opts.maxBatchRecords ?? 1_000;
    this.#maxWait = opts.maxWaitMs ?? 100;
    this.#key = dlpKeyFrom(opts.panKey);
    // Fails fast on an unsafe custom pattern, before anything is consumed.
    compileDlpPolicy(opts.policy);
    this.stats = {
      state: 'new',
      recordsSeen: 0,
      scanned: 0,
      derived: 0,
      contentStored: 0,
      contentRedacted: 0,
      duplicatesSkipped: 0,
      undecodable: 0,
      failedRecords: 0,
      outputsEmitted: 0,
      findingsOpened: 0,
      findingsUpdated: 0,
      hitsByDetector: {},
      commits: 0,
      records: 0,
      rebuilds: 0,
      replayed: 0,
      replayRead: 0,
      fromSnapshot: false,
      snapshotsSaved: 0,
      snapshotsRejected: 0,
      pendingDerived: 0,
      retries: 0,
      cases: 0,
      scanMs: 0,
      lastError: undefined,
    };
    this.#snap = new SnapshotKeeper({
      snapshots: opts.snapshots,
      group: this.group,
      partitions: opts.log.partitionCount,
      logger: opts.logger,
      label: 'dlp processor',
      stateVersion: DLP_BOOK_STATE_VERSION,
      // The fold reads finding events only, whatever the policy: nothing else to pin.
      fingerprint: '',
      now: this.#now,
    });
    this.#life = new ProcessorLoop({
      label: 'dlp processor',
      stats: this.stats,
      logger: opts.logger,
      retry: opts.retry,
      now: this.#now,
      settle: () => this.#o.emitter.settle(),
      rebuild: () => this.#rebuild(),
      step: () => this.#step(),
      closeConsumer: () => this.#closeConsumer(),
      onStopped: () => this.#saveSnapshot('stop'),
    });
  }

  /** The current findings book (replaced by every rebuild): for tests and diagnostics. */
  get book(): DlpFindingBook {
    return this.#book;
  }

  /** The key id of the engine's HMAC key (tokens, fingerprints, panHmacKeyId of DLP PAN hits). */
  get keyId(): string {
    return this.#key.kid;
  }

  /** Rebuilds the book from the log, then consumes in the background. Resolves once rebuilt. */
  start(): Promise<void> {
    return this.#life.start();
  }

  /** Finishes the batch in hand (emit, commit), then leaves the group. Idempotent. */
  stop(): Promise<void> {
    return this.#life.stop();
  }

  /** Resolves once everything durable in the log when called has been handled and committed. */
  idle(): Promise<void> {
    return this.#life.idle();
  }

  // ---- the loop ----

  async #step(): Promise<void> {
    const consumer = this.#consumer;
    if (consumer === undefined) throw new Error('dlp processor has no consumer');
    const pollStart = this.#now();
    this.#life.polling = true;
    let records: ConsumedRecord[];
    try {
      records = await consumer.poll(this.#maxBatch, this.#maxWait);
    } finally {
      this.#life.polling = false;
    }
    if (this.#life.stopping && records.length === 0) return;
    if (records.length === 0) {
      this.#life.settleIdle(pollStart);
      return;
    }
    await this.#processBatch(consumer, records);
  }

  async #processBatch(consumer: LogConsumer, records: ConsumedRecord[]): Promise<void> {
    const byKey = new Map<string, UnchainedEvent<EventType>[]>();
    const rows: ContentRow[] = [];
    // Delivered while stop() closed the consumer: left uncommitted (redelivered at the next start),
    // and not folded, so the book stays at the committed positions (a snapshot can still be taken).
    if (this.#life.stopping && this.#consumer !== consumer) return;
    const storing = this.#o.storeContent !== undefined;
    this.#snap.folding();
    for (const r of records) {
      this.stats.recordsSeen++;
      const t = r.headers['type'];
      if (t !== undefined && !HANDLED_TYPES.has(t) && !FINDING_TYPES.has(t)) continue;
      const event = this.#decode(r);
      if (event === undefined) continue;
      const type = event.metadata.type;
      if (FINDING_TYPES.has(type)) {
        // Every finding event below the committed positions, as a replay folds them (own ones included).
        this.#covered.apply(event);
        if (type === 'finding.closed') this.#book.apply(event);
        continue;
      }
      const field = CONTENT_BY_TYPE.get(type);
      if (field === undefined) continue;
      const id = event.metadata.eventId;
      if (this.#handled.has(id)) {
        this.stats.duplicatesSkipped++;
        // Its outputs are durable; its row may not be (a failure between the two): stored again,
        // idempotently, as the copy its data.masked attests.
        if (storing && isContentEvent(event)) {
          const row = this.#storedForm(event, r.value, field);
          if (row !== undefined) {
            rows.push(row);
            continue;
          }
          // The policy changed since: the redaction is derived anew below.
        } else continue;
      }
      let out: UnchainedEvent<EventType>[];
      let row: ContentRow | undefined;
      try {
        ({ out, row } = this.#handle(event, r.value, field));
      } catch (err) {
        this.stats.failedRecords++;
        this.#o.logger.error(
          { code: (err as { code?: string }).code, partition: r.partition, offset: r.offset, eventId: id, type },
          'dlp: the engine failed on a record; its content was not scanned and it is stored as received',
        );
        // Evidence is not dropped for an engine fault: the original is stored (what the gateway
        // masked inline), and the error above says its deeper scan is missing.
        if (storing && isContentEvent(event)) rows.push({ event, bytes: r.value, hash: sha256(r.value), redactedBy: null });
        continue;
      }
      if (storing && row !== undefined) rows.push(row);
      if (out.length === 0) continue;
      // Remembered now (a duplicate later in this batch is skipped); a failed emit rebuilds the set.
      this.#remember(id);
      const list = byKey.get(r.key);
      if (list === undefined) byKey.set(r.key, out);
      else list.push(...out);
    }
    await this.#output([...byKey].map(([key, events]) => ({ key, events })));
    if (rows.length > 0) {
      // After the attestations are durable (a stored redaction must be provable), before the commit.
      await this.#o.storeContent!(rows, `${this.group}:${positionsAfter(records).map((p) => `p${p.partition}:${p.nextOffset}`).join(',')}`);
      this.stats.contentStored += rows.length;
      this.stats.contentRedacted += rows.filter((r) => r.redactedBy !== null).length;
    }
    await this.#o.beforeCommit?.(records);
    if (this.#life.stopping && this.#consumer !== consumer) return;
    await consumer.commit(positionsAfter(records));
    this.#snap.committed(records);
    this.stats.commits++;
    this.stats.records += records.length;
    this.stats.cases = this.#book.size;
    if (this.#snap.due()) void this.#saveSnapshot('cadence');
  }

  /** A snapshot of the finding events folded below the committed positions (nothing when a batch is in hand). */
  async #saveSnapshot(why: 'cadence' | 'stop'): Promise<void> {
    // Read when the keeper takes the snapshot (with its positions), not now.
    await this.#snap.save(() => this.#covered.toState(), why);
    this.stats.snapshotsSaved = this.#snap.stats.snapshotsSaved;
  }

  /**
   * The outputs for one content event (the book advances; the caller must make them durable), and
   * the form it is stored in: the original, or the redacted copy its data.masked attests.
   */
  #handle(event: AnyAttestEvent, bytes: Uint8Array, field: ContentField): { out: UnchainedEvent<EventType>[]; row: ContentRow | undefined } {
    const text = (event.payload as unknown as Record<string, unknown>)[field.field];
    if (typeof text !== 'string' || text.length === 0) return { out: [], row: undefined };
    this.stats.scanned++;
    const t0 = performance.now();
    const hash = sha256(bytes);
    const { result, redacted } = this.#redact(event, text, field);
    const derived = deriveProvenance({ eventId: event.metadata.eventId, eventHash: hash }, result, field.direction, redacted === undefined ? null : Buffer.from(redacted.digest));
    this.stats.scanMs += performance.now() - t0;
    const out: UnchainedEvent<EventType>[] = [];
    const emitter = this.#o.emitter;
    let row: ContentRow = { event, bytes, hash, redactedBy: null };
    if (derived !== null) {
      this.stats.derived++;
      for (const h of derived.payload.hits) this.stats.hitsByDetector[h.ruleId] = (this.stats.hitsByDetector[h.ruleId] ?? 0) + 1;
      const masked = emitter.build('data.masked', {
        actor: event.actor,
        source: event.source,
        target: event.target,
        outcome: { result: 'success', status: null, reason: null },
        correlation: event.correlation,
        payload: derived.payload,
      });
      out.push(masked);
      if (redacted !== undefined) {
        row = { event: redacted.event, bytes: redacted.bytes, hash, redactedBy: masked.metadata.eventId };
        this.#rememberDerived(event.metadata.eventId, masked.metadata.eventId, redacted.digest);
      }
    }
    const src: FindingSource = {
      eventId: event.metadata.eventId,
      producer: event.metadata.producer,
      subject: `${event.actor.issuer} ${event.actor.subject}`,
      store: `${this.#o.contentStore ?? 'log'}:${field.type}.payload.${field.field}`,
    };
    const nowUs = this.#now() * 1000;
    const common = {
      actor: DLP_ACTOR,
      source: { address: 'internal', userAgent: null },
      target: { protocol: 'internal' as const, service: 'attest', resource: `event/${event.metadata.eventId}`, model: null },
      outcome: { result: 'success' as const, status: null, reason: null },
      correlation: { sessionId: event.correlation.sessionId, requestId: event.correlation.requestId, upstreamRequestId: null },
    };
    for (const f of result.findings) {
      if (f.kind !== 'data_security') continue;
      const { state, step } = observe(this.#book.current(findingKey(f, src)), f, src, nowUs);
      if (step.type === 'unchanged') continue;
      this.#book.put(state);
      if (step.type === 'opened') {
        this.stats.findingsOpened++;
        // findings.ts titles every non-SAD category "Card data"; name secrets and the rest for what they are.
        const title = f.category === 'card' || f.category === 'sad' ? step.payload.title : step.payload.title.replace(/^Card data/, `${CATEGORY_TITLES[f.category] ?? 'Sensitive data'}`);
        out.push(emitter.build('finding.opened', { ...common, payload: { ...step.payload, title } }));
      } else {
        this.stats.findingsUpdated++;
        out.push(emitter.build('finding.updated', { ...common, payload: step.payload }));
      }
    }
    return { out, row };
  }

  /** Scans `text` and, when the engine changed it, builds the redacted copy of the event. */
  #redact(event: AnyAttestEvent, text: string, field: ContentField) {
    const result = scanJson(contentValue(text), this.#o.policy, this.#key, '$');
    if (result.changes.length === 0) return { result, redacted: undefined };
    const v = result.value;
    const content = typeof v === 'string' ? v : JSON.stringify(v);
    // Same metadata (id, sequence, prevHash): the copy takes the original's place in the store.
    const copy = { ...event, payload: { ...(event.payload as object), [field.field]: content } } as unknown as AnyAttestEvent;
    const bytes = encodeEvent(copy);
    return { result, redacted: { event: copy, bytes, digest: sha256(bytes) } };
  }

  /** The stored form of an event handled before (its data.masked durable), or undefined when it must be derived anew. */
  #storedForm(event: AnyAttestEvent, bytes: Uint8Array, field: ContentField): ContentRow | undefined {
    const hash = sha256(bytes);
    const known = this.#derived.get(event.metadata.eventId);
    if (known === undefined) return { event, bytes, hash, redactedBy: null };
    const text = (event.payload as unknown as Record<string, unknown>)[field.field] as string;
    const { redacted } = this.#redact(event, text, field);
    if (redacted === undefined || !hashEquals(redacted.digest, known.digest)) return undefined;
    return { event: redacted.event, bytes: redacted.bytes, hash, redactedBy: known.by };
  }

  #rememberDerived(id: string, by: string, digest: Uint8Array): void {
    this.#derived.set(id, { by, digest });
    if (this.#derived.size > RECENT_CAP) {
      const oldest = this.#derived.keys().next();
      if (!oldest.done) this.#derived.delete(oldest.value);
    }
  }

  /** Durable, or throws (the caller rebuilds). */
  async #output(emissions: readonly Emission[]): Promise<void> {
    for (const em of emissions) {
      await this.#o.emitter.emit(em.events, em.key);
      this.stats.outputsEmitted += em.events.length;
      for (const e of em.events) {
        const p = e.payload as { subjectEventId?: string | null; findingId?: string };
        this.#o.logger.info({ type: e.metadata.type, eventId: e.metadata.eventId, subjectEventId: p.subjectEventId, findingId: p.findingId }, 'dlp: output emitted');
      }
    }
  }

  #remember(id: string): void {
    this.#handled.add(id);
    if (this.#handled.size > RECENT_CAP) {
      const oldest = this.#handled.values().next();
      if (!oldest.done) this.#handled.delete(oldest.value);
    }
  }

  // ---- rebuilding ----

  async #rebuild(): Promise<void> {
    const t0 = this.#now();
    await this.#closeConsumer();
    const handled = new Set<string>();
    const derivedBy = new Map<string, { by: string; digest: Uint8Array }>();
    const log = this.#o.log;

    // 1. Probe the uncommitted stretch: committed positions, and the outputs already durable there.
    const replay = { log, group: this.group, maxWaitMs: this.#maxWait, stopping: () => this.#life.stopping, label: 'dlp processor' };
    const pending: AnyAttestEvent[] = [];
    const until = await probeUncommitted(replay, (r) => {
      if (!mayBeOutput(r)) return;
      const e = this.#decode(r, false);
      if (e === undefined) return;
      for (const id of derivedFrom(e)) handled.add(id);
      if (e.metadata.type === 'data.masked') {
        const p = e.payload as PayloadOf<'data.masked'>;
        if (p.subjectEventId !== null && p.redactedEventDigest !== null && derivedFrom(e).length > 0) derivedBy.set(p.subjectEventId, { by: e.metadata.eventId, digest: p.redactedEventDigest });
      }
      if (FINDING_TYPES.has(e.metadata.type)) pending.push(e);
    });

    // 2. Fold the finding events below the committed positions (headers skip decoding the rest):
    //    from the snapshot's positions when one may be used, else from the oldest retained record.
    let replayed = 0;
    const { book, result, fromSnapshot } = await this.#snap.replayInto(
      until,
      () => new DlpFindingBook(),
      (state) => DlpFindingBook.fromState(state),
      (b, start) => {
        replayed = 0;
        return replayBelow(
          replay,
          until,
          (r) => {
            const t = r.headers['type'];
            if (t !== undefined && !FINDING_TYPES.has(t)) return;
            const e = this.#decode(r, false);
            if (e === undefined || !FINDING_TYPES.has(e.metadata.type)) return;
            b.apply(e);
            replayed++;
          },
          start,
        );
      },
    );
    this.#covered = DlpFindingBook.fromState(book.toState());
    this.stats.replayRead = result.records;
    this.stats.fromSnapshot = fromSnapshot;
    this.stats.snapshotsRejected = this.#snap.stats.snapshotsRejected;

    // 3. The uncommitted stretch's findings (durable, whoever wrote them).
    for (const e of pending) book.apply(e);
    this.#book = book;
    this.#handled = handled;
    this.#derived = derivedBy;
    this.stats.replayed = replayed + pending.length;
    this.stats.pendingDerived = handled.size;
    this.stats.rebuilds++;
    this.stats.cases = book.size;

    // 4. Consume from the committed positions.
    this.#consumer = await log.consumer(this.group, { startFrom: 'earliest' });
    this.#o.logger.info(
      { group: this.group, replayed, fromSnapshot, uncommittedDerived: handled.size, cases: book.size, ms: this.#now() - t0 },
      'dlp processor: findings book rebuilt from the log',
    );
  }

  // ---- helpers ----

  #decode(r: ConsumedRecord, count = true): AnyAttestEvent | undefined {
    try {
      return decodeEvent(r.value).event as AnyAttestEvent;
    } catch (err) {
      if (count) {
        this.stats.undecodable++;
        this.#o.logger.warn({ partition: r.partition, offset: r.offset, code: (err as { code?: string }).code }, 'dlp: undecodable record skipped');
      }
      return undefined;
    }
  }

  async #closeConsumer(): Promise<void> {
    const c = this.#consumer;
    this.#consumer = undefined;
    if (c !== undefined) await c.close();
  }
}

const CATEGORY_TITLES: Partial<Record<string, string>> = {
  secret: 'Secret',
  bank: 'Bank account data',
  government_id: 'Government id',
  contact: 'Contact data',
  custom: 'Sensitive data',
};

/** A JSON body is scanned as JSON (paths, per-field drop); anything else as one string. */
export function contentValue(text: string): Json {
  const c = text.trimStart()[0];
  if (c === '{' || c === '[') {
    try {
      return JSON.parse(text) as Json;
    } catch {
      // SSE or text that happens to start with a bracket.
    }
  }
  return text;
}

function isOwnActor(a: Actor): boolean {
  return a.subject === DLP_ACTOR.subject && a.issuer === DLP_ACTOR.issuer;
}

/**
 * The original event ids a DLP output names: a derived data.masked (subjectEventId set, every hit a
 * `dlp.` rule, whoever's producer wrote it) or the processor's own finding.opened / finding.updated.
 */
export function derivedFrom(e: AnyAttestEvent): string[] {
  if (e.metadata.type === 'data.masked') {
    const p = e.payload as PayloadOf<'data.masked'>;
    return p.subjectEventId !== null && p.hits.length > 0 && p.hits.every((h) => h.ruleId.startsWith('dlp.')) ? [p.subjectEventId] : [];
  }
  if ((e.metadata.type === 'finding.opened' || e.metadata.type === 'finding.updated') && isOwnActor(e.actor)) {
    const p = e.payload as PayloadOf<'finding.opened'>;
    return p.findingId.startsWith(DLP_FINDING_PREFIX) ? [...p.relatedEventIds] : [];
  }
  return [];
}

/** Cheap pre-filter by the `type` header the emitter sets; records without it are decoded. */
function mayBeOutput(r: ConsumedRecord): boolean {
  const t = r.headers['type'];
  return t === undefined || OUTPUT_TYPES.has(t);
}
