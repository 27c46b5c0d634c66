/**
 * The risk processor: consumes the evidence log as consumer group `risk`, drives the pure risk rules
 * (risk/book.ts), appends what they decide as signed evidence through its own producer, and publishes
 * suspensions and restores on the control channel so every gateway enforces them within a second.
 * A thin shell like the evidence writer: the rules live in risk/, the I/O is at the edges.
 *
 *   poll ──▶ decodeEvent ──▶ book.handle(event, now, build) ──▶ emitter.emit(outputs, record key)   (durable)
 *     │                                                         └─▶ publisher.publish(controlMessageOf(e))
 *     └──────── commit(positionsAfter(batch)) only after the outputs are durable and published
 *   every tickMs: book.tick(now, build) (lapsed suspensions, quiet findings, eviction) ──▶ emit ──▶ publish
 *
 * The tick runs on the consumer loop between batches (poll waits at most until the next tick), so the
 * book is only ever touched by one logical thread.
 *
 * Outputs are keyed by the input record's key (the gateway's session id), so they land in the same
 * partition as what caused them; tick outputs by their own session id (`system:risk`).
 * The processor's own outputs (type in RISK_OUTPUT_TYPES, actor RISK_ACTOR) read back are applied,
 * never handled: the book already folded them, and apply is idempotent.
 *
 * Rebuilding (at start, and after any failure that leaves the book ahead of the log):
 *   1. probe: join the group, read the uncommitted stretch [committed, end) once, keeping only the
 *      first offset per partition (= the committed position C_p; a partition with nothing delivered
 *      before an empty poll is at its end) and the processor's own outputs found there (decisions
 *      durable but not committed: a crash or failure between emit and commit); close (the group is
 *      back at its committed position).
 *   2. replay: a throwaway reader (group `<group>.replay.<id>`) reads from the earliest retained record,
 *      or from the positions of a usable state snapshot starting from its book (docs/processors.md),
 *      and `apply`s every record below C_p (traffic, own outputs, administrators' actions): no decision.
 *   3. apply the own outputs of the uncommitted stretch, then republish the control message of each
 *      of them the book still agrees with (a suspension still in force, a restore): they may never
 *      have been published. A control message is idempotent at ControlState.
 *   4. join the group again and `handle` from C_p. An input whose outputs were applied in 3 is decided
 *      again, but against a state that already carries its suspension: the identity is suspended once
 *      per crossing (its finding.updated / risk.detected may repeat: repeated evidence is harmless).
 * Never is an input decided twice on the same book: a failed emit discards the book (steps 1–4 again,
 * with backoff). A failed publish (after a durable emit) is retried in place; a stop during it leaves
 * the batch uncommitted, and step 3 republishes at the next start.
 *
 * Snapshots (`snapshots`): the live book right after a commit (or at a clean stop), with the
 * committed positions; its own outputs of the covered records are in it already, and folding them
 * again when the replay reads them is a no-op. Never while a batch or a tick's outputs are in hand.
 *
 * Limits: without a snapshot the replay reads the whole retained log (decode + evolve per record).
 * Only one risk processor per group may run (the book needs
 * every partition). On the embedded file log, each replay registers a throwaway group (committed to
 * where it stopped), which the log's retention counts.
 */
import type { Logger } from 'pino';
import { ProcessorLoop } from './processor-loop';
import { createHash } from 'node:crypto';
import { probeUncommitted, replayBelow } from './log-replay';
import type { SnapshotOptions } from './snapshot-store';
import { SnapshotKeeper } from './snapshots';
import type { ControlPublisher } from '../../common/src/control/channel';
import type { ControlMessage } from '../../common/src/control/messages';
import type { EvidenceEmitter } from '../../common/src/evidence/emitter';
import { decodeEvent, type AnyAttestEvent, type EventParts, type EventType, type UnchainedEvent } from '../../common/src/events';
import { positionsAfter, type ConsumedRecord, type EventLog, type LogConsumer } from '../../common/src/log';
import { RISK_BOOK_STATE_VERSION, RiskBook, type BuildEvent } from './risk/book';
import { controlMessageOf } from './risk/control';
import { RISK_ACTOR, RISK_OUTPUT_TYPES, type RiskOutput, type RiskOutputType } from './risk/decide';
import type { RiskPolicy } from './risk/policy';
import type { RiskEvent } from './risk/state';

export const RISK_PROCESSOR_GROUP = 'risk';

export interface RiskProcessorOptions {
  /** The evidence log: read as `group`, and where the outputs go (through `emitter`). */
  readonly log: EventLog;
  /** The processor's own producer (e.g. `risk-<host>`, component 'risk'). */
  readonly emitter: EvidenceEmitter;
  readonly publisher: ControlPublisher;
  readonly policy: RiskPolicy;
  readonly logger: Logger;
  /** Default `risk`. */
  readonly group?: string;
  /** Wall clock, ms. Default Date.now. */
  readonly now?: () => number;
  /** book.tick cadence. Default 1 000 ms. */
  readonly tickMs?: number;
  /** Default 1 000. */
  readonly maxBatchRecords?: number;
  /** Longest a poll waits (bounds how late a tick runs and how fast stop returns). Default 100 ms. */
  readonly maxWaitMs?: number;
  /** Backoff after a failure. Default 50 ms doubling to 5 000 ms. */
  readonly retry?: { readonly initialMs?: number; readonly maxMs?: number };
  /** Test seam: runs after a batch's outputs are durable and published, before its commit. */
  readonly beforeCommit?: (records: readonly ConsumedRecord[]) => void | Promise<void>;
  /** State snapshots (a cache that shortens the rebuild); none when absent: every rebuild replays the retained log. */
  readonly snapshots?: SnapshotOptions;
}

export interface RiskProcessorStats {
  state: 'new' | 'running' | 'stopping' | 'stopped';
  /** Records handled (decided), excluding own outputs read back. */
  eventsSeen: number;
  /** Own outputs read back (applied, not decided). */
  ownOutputsRead: number;
  undecodable: number;
  /** Records the rules threw on (logged, skipped). */
  failedRecords: number;
  /** Events appended durably. */
  outputsEmitted: number;
  suspensions: number;
  restores: number;
  /** Control messages published (republished ones included). */
  controlPublished: number;
  controlRepublished: number;
  commits: number;
  /** Records committed. */
  records: number;
  ticks: number;
  rebuilds: number;
  /** Records applied by the last rebuild. */
  replayed: number;
  /** Records the last rebuild's replay read below the committed positions (from the snapshot's positions when it used one). */
  replayRead: number;
  /** Whether the last rebuild started from a state snapshot. */
  fromSnapshot: boolean;
  snapshotsSaved: number;
  snapshotsRejected: number;
  retries: number;
  /** Identities in the book. */
  identities: number;
  lastError: unknown;
}

interface Emission {
  readonly key: string;
  readonly events: RiskEvent[];
}

export class RiskProcessor {
  readonly stats: RiskProcessorStats;
  readonly group: string;
  readonly #o: RiskProcessorOptions;
  readonly #now: () => number;
  readonly #tickMs: number;
  readonly #maxBatch: number;
  readonly #maxWait: number;
  #book: RiskBook;
  #consumer: LogConsumer | undefined;
  readonly #life: ProcessorLoop;
  readonly #snap: SnapshotKeeper;
  #nextTickMs = 0;

  constructor(opts: RiskProcessorOptions) {
    this.#o = opts;
    this.group = opts.group ?? RISK_PROCESSOR_GROUP;
    this.#now = opts.now ?? Date.now;
    this.#tickMs = opts.tickMs ?? 1_000;
    this.#maxBatch = opts.maxBatchRecords ?? 1_000;
    this.#maxWait = opts.maxWaitMs ?? 100;
    this.#book = new RiskBook(opts.policy);
    this.stats = {
      state: 'new',
      eventsSeen: 0,
      ownOutputsRead: 0,
      undecodable: 0,
      failedRecords: 0,
      outputsEmitted: 0,
      suspensions: 0,
      restores: 0,
      controlPublished: 0,
      controlRepublished: 0,
      commits: 0,
      records: 0,
      ticks: 0,
      rebuilds: 0,
      replayed: 0,
      replayRead: 0,
      fromSnapshot: false,
      snapshotsSaved: 0,
      snapshotsRejected: 0,
      retries: 0,
      identities: 0,
      lastError: undefined,
    };
    this.#snap = new SnapshotKeeper({
      snapshots: opts.snapshots,
      group: this.group,
      partitions: opts.log.partitionCount,
      logger: opts.logger,
      label: 'risk processor',
      stateVersion: RISK_BOOK_STATE_VERSION,
      // The book is folded under the policy (windows, bounds): another policy needs a full replay.
      fingerprint: createHash('sha256').update(JSON.stringify(opts.policy)).digest('hex'),
      now: this.#now,
    });
    this.#life = new ProcessorLoop({
      label: 'risk processor',
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

  /** The current book (replaced by every rebuild): for tests and diagnostics. */
  get book(): RiskBook {
    return this.#book;
  }

  /** Rebuilds the book from the log, then consumes in the background. Resolves once rebuilt. */
  start(): Promise<void> {
    return this.#life.start();
  }

  /** Finishes the batch in hand (emit, publish, commit), then leaves the group. Idempotent. */
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
    if (consumer === undefined) throw new Error('risk processor has no consumer');
    const dueIn = this.#nextTickMs - this.#now();
    if (dueIn <= 0) {
      await this.#tick();
      return;
    }
    const pollStart = this.#now();
    this.#life.polling = true;
    let records: ConsumedRecord[];
    try {
      records = await consumer.poll(this.#maxBatch, Math.max(1, Math.min(this.#maxWait, dueIn)));
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
    // Delivered while stop() closed the consumer: left uncommitted (redelivered at the next start),
    // and not folded, so the book stays at the committed positions (a snapshot can still be taken).
    if (this.#life.stopping && this.#consumer !== consumer) return;
    this.#snap.folding();
    const emissions: Emission[] = [];
    const build = this.#build();
    for (const r of records) {
      const event = this.#decode(r);
      if (event === undefined) continue;
      if (isOwnOutput(event)) {
        this.#book.apply(event);
        this.stats.ownOutputsRead++;
        continue;
      }
      this.stats.eventsSeen++;
      let events: RiskEvent[];
      try {
        events = this.#book.handle({ kind: 'event', event }, this.#now() * 1000, build);
      } catch (err) {
        // decide throws only for refused administrators' commands; nothing was folded.
        this.stats.failedRecords++;
        this.#o.logger.error({ err, partition: r.partition, offset: r.offset, type: event.metadata.type }, 'risk rules failed on a record; skipped');
        continue;
      }
      if (events.length > 0) emissions.push({ key: r.key, events });
    }
    await this.#output(emissions);
    await this.#o.beforeCommit?.(records);
    if (this.#life.stopping && this.#consumer !== consumer) return;
    await consumer.commit(positionsAfter(records));
    this.#snap.committed(records);
    this.stats.commits++;
    this.stats.records += records.length;
    this.stats.identities = this.#book.size;
    if (this.#snap.due()) void this.#saveSnapshot('cadence');
  }

  /** A snapshot of the book at the committed positions (nothing when the book is ahead of them). */
  async #saveSnapshot(why: 'cadence' | 'stop'): Promise<void> {
    // The book is read when the keeper takes the snapshot (with its positions), not now.
    await this.#snap.save(() => this.#book.toState(), why);
    this.stats.snapshotsSaved = this.#snap.stats.snapshotsSaved;
  }

  async #tick(): Promise<void> {
    this.#nextTickMs = this.#now() + this.#tickMs;
    this.stats.ticks++;
    // The tick folds its outputs at once: no snapshot until they are durable.
    this.#snap.folding();
    const events = this.#book.tick(this.#now() * 1000, this.#build());
    this.stats.identities = this.#book.size;
    if (events.length === 0) {
      this.#snap.settled();
      return;
    }
    // Grouped by session id (ticks: `system:risk`), order kept within each.
    const byKey = new Map<string, RiskEvent[]>();
    for (const e of events) {
      const k = e.correlation.sessionId;
      byKey.set(k, [...(byKey.get(k) ?? []), e]);
    }
    await this.#output([...byKey].map(([key, evs]) => ({ key, events: evs })));
    this.#snap.settled();
  }

  /** Durable first, then the control messages; throws on an emit failure (the caller rebuilds). */
  async #output(emissions: readonly Emission[]): Promise<void> {
    const controls: ControlMessage[] = [];
    for (const em of emissions) {
      // Outputs whose append fails are appended again by the emitter before the rebuild reads the
      // log (ProcessorLoop settles first): the rebuild folds them as durable-but-uncommitted
      // outputs and republishes their control messages, so they are neither decided twice nor lost.
      await this.#o.emitter.emit(em.events as unknown as UnchainedEvent<EventType>[], em.key);
      this.stats.outputsEmitted += em.events.length;
      for (const e of em.events) {
        if (e.metadata.type === 'identity.suspended') this.stats.suspensions++;
        if (e.metadata.type === 'identity.restored') this.stats.restores++;
        const msg = controlMessageOf(e);
        if (msg !== null) controls.push(msg);
        this.#o.logger.info(
          { type: e.metadata.type, eventId: e.metadata.eventId, sessionId: e.correlation.sessionId },
          e.metadata.type === 'identity.suspended' ? 'risk: identity suspended' : 'risk: output emitted',
        );
      }
    }
    for (const msg of controls) await this.#publish(msg);
  }

  /** Publishes, retrying with backoff while running: the evidence is already durable. */
  async #publish(msg: ControlMessage): Promise<void> {
    let delay = this.#o.retry?.initialMs ?? 50;
    for (;;) {
      try {
        await this.#o.publisher.publish(msg);
        this.stats.controlPublished++;
        return;
      } catch (err) {
        if (this.#life.stopping) throw err;
        this.stats.retries++;
        this.stats.lastError = err;
        this.#o.logger.warn({ code: (err as { code?: string }).code, type: msg.type, eventId: msg.eventId, delayMs: delay }, 'risk: control publish failed, retrying');
        await this.#life.sleep(delay);
        delay = Math.min(this.#o.retry?.maxMs ?? 5_000, delay * 2);
      }
    }
  }

  // ---- rebuilding ----

  async #rebuild(): Promise<void> {
    const t0 = this.#now();
    await this.#closeConsumer();
    const log = this.#o.log;

    // 1. Probe the uncommitted stretch: committed positions and own outputs durable but uncommitted.
    const replay = { log, group: this.group, maxWaitMs: this.#maxWait, stopping: () => this.#life.stopping, label: 'risk processor' };
    const pending: RiskEvent[] = [];
    const until = await probeUncommitted(replay, (r) => {
      if (!mayBeRiskOutput(r)) return;
      const e = this.#decode(r, false);
      if (e !== undefined && isOwnOutput(e)) pending.push(e);
    });

    // 2. Replay everything below the committed positions: from the snapshot's positions when one
    //    may be used, else from the oldest retained record.
    let replayed = 0;
    const { book, result, fromSnapshot } = await this.#snap.replayInto(
      until,
      () => new RiskBook(this.#o.policy),
      (state) => RiskBook.fromState(this.#o.policy, state),
      (b, start) => {
        replayed = 0;
        return replayBelow(
          replay,
          until,
          (r) => {
            const e = this.#decode(r);
            if (e === undefined) return;
            b.apply(e);
            replayed++;
          },
          start,
        );
      },
    );
    this.stats.replayRead = result.records;
    this.stats.fromSnapshot = fromSnapshot;
    this.stats.snapshotsRejected = this.#snap.stats.snapshotsRejected;

    // 3. Decisions durable but not committed: fold them, and make sure the gateways know.
    for (const e of pending) book.apply(e);
    this.#book = book;
    this.stats.replayed = replayed + pending.length;
    this.stats.rebuilds++;
    this.stats.identities = book.size;
    for (const e of pending) {
      const msg = controlMessageOf(e);
      if (msg === null) continue;
      if (msg.type === 'identity.suspended') {
        const s = this.#book.snapshot().identities.find((i) => i.suspension?.eventId === e.metadata.eventId);
        if (s === undefined) continue; // lifted since: republishing would re-suspend
      }
      await this.#publish(msg);
      this.stats.controlRepublished++;
    }

    // 4. Consume from the committed positions.
    this.#consumer = await log.consumer(this.group, { startFrom: 'earliest' });
    this.#nextTickMs = this.#now() + this.#tickMs;
    this.#o.logger.info(
      { group: this.group, replayed, fromSnapshot, uncommittedOutputs: pending.length, identities: book.size, ms: this.#now() - t0 },
      'risk processor: book rebuilt from the log',
    );
  }

  // ---- helpers ----

  #build(): BuildEvent {
    const emitter = this.#o.emitter;
    return (o: RiskOutput): RiskEvent => {
      // The emitter stamps its own tenant.
      const { tenantId: _tenant, ...parts } = o.parts;
      return emitter.build(o.type as RiskOutputType, parts as Omit<EventParts<RiskOutputType>, 'tenantId'>);
    };
  }

  #decode(r: ConsumedRecord, count = true): AnyAttestEvent | undefined {
    try {
      return decodeEvent(r.value).event as AnyAttestEvent;
    } catch (err) {
      if (count) {
        this.stats.undecodable++;
        this.#o.logger.warn({ partition: r.partition, offset: r.offset, code: (err as { code?: string }).code }, 'risk: undecodable record skipped');
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

const OUTPUT_TYPES: ReadonlySet<string> = new Set(RISK_OUTPUT_TYPES);

/** What the rules emit on their own (RISK_ACTOR), as opposed to administrators' actions of the same types. */
export function isOwnOutput(e: RiskEvent): boolean {
  return OUTPUT_TYPES.has(e.metadata.type) && e.actor.subject === RISK_ACTOR.subject && e.actor.issuer === RISK_ACTOR.issuer;
}

/** Cheap pre-filter by the `type` header the emitter sets; records without it are decoded. */
function mayBeRiskOutput(r: ConsumedRecord): boolean {
  const t = r.headers['type'];
  return t === undefined || OUTPUT_TYPES.has(t);
}
