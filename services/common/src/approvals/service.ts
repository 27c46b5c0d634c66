import type { Logger } from 'pino';
import { controlKey, type ControlMessage, type ControlPublisher } from '../control';
import { decodeEvent, type AnyAttestEvent, type AttestEvent, type EventType, type Source, type UnchainedEvent } from '../events';
import { systemActor, type EvidenceEmitter } from '../evidence/emitter';
import type { ConsumedRecord, EventLog, LogConsumer } from '../log';
import { ApprovalBook, type ExecuteResult } from './book';
import { ApprovalError } from './errors';
import { fromEvidence, toEvidence } from './evidence';
import { dueAtMs, evolve, type ApprovalCommand, type ApprovalEvent, type ApprovalPrincipal, type ApprovalState } from './lifecycle';
import { MAX_EXPIRY_MS } from './rules';

/**
 * One approval book kept in step with the evidence log: what the console decides with and what
 * the approvals processor expires and notifies from, in one process (embedded) or in several that
 * fold the same log (distributed).
 *
 *   start ──▶ read the evidence log from its earliest record to its end (approval.* events folded
 *             into the book through fromEvidence) ──▶ resolve ──▶ keep following the log
 *
 *   execute(cmd) ──▶ catch up with the log (sync) ──▶ decide ──▶ evidence events durable (fail closed)
 *                ──▶ book applied ──▶ final outcome? ──▶ 'approval.resolved' on the control channel
 *
 * The evidence log is the source of truth: a command whose events cannot be appended fails with
 * approval_unavailable and leaves the book as it was. The service's own events come back to it
 * through the log; folding them again changes nothing (`evolve` ignores a second `requested`, a
 * second vote by the same approver, and anything after a final state).
 *
 * The consumer group is never committed: every start reads the whole log (the book is a
 * projection of it), or, with `resume`, the log after a state snapshot of the book
 * (services/processors/src/approvals/snapshots.ts). `group` must be unique per instance, or two
 * instances would split the log.
 *
 * Distributed mode: several instances decide against their own book. `execute` first catches up
 * with the log (`sync`), which narrows but does not close the window in which two instances decide
 * the same approval at once (e.g. two last votes in two consoles, each seeing one vote and neither
 * meeting the quorum). Route decisions to one instance when that matters.
 *
 * Control messages: after the evidence is durable and the book applied, a final outcome is
 * published; a failed publish is retried in the background (the decision stands: it is in the
 * evidence). A crash between the evidence append and the publish loses the control message: the
 * gateway then learns nothing and its hold ends at the approval's expiry (fail closed).
 *
 * Release markers: a release is recorded by the gateway that forwarded the request
 * (approval.released on the evidence log), not decided here. When the book folds one (approved →
 * released), the service publishes the approval's resolution with outcome 'released', so every
 * gateway, restarted ones included, refuses another ask-and-retry use of it. Releases folded
 * during the initial read (recorded while no service ran, or before a crash let it publish) are
 * published once the book is caught up, for ask-and-retry approvals decided within the longest
 * release window (MAX_EXPIRY_MS; a gateway refuses older ones anyway). Every instance publishes
 * them; a repeated marker changes nothing.
 */

export interface ApprovalServiceOptions {
  /** The evidence log (the Kafka events topic, or the embedded file log). */
  readonly log: EventLog;
  /** Consumer group of this instance; unique per instance (never committed). */
  readonly group: string;
  /** Emits this instance's approval events (decisions, expiries, cancellations). */
  readonly emitter: EvidenceEmitter;
  /** The control channel the gateways follow. */
  readonly publisher: ControlPublisher;
  /** This instance's producer id: the system actor of expiries and cancellations. */
  readonly producerId: string;
  readonly logger: Logger;
  /** Wall clock in ms. Default Date.now. */
  readonly now?: () => number;
  /**
   * Called once per approval that appears after start() resolved (requested through this
   * service or folded from the log). Approvals folded during the initial read are not reported:
   * use `pending()` for those. Exceptions are logged and swallowed.
   */
  readonly onRequested?: (state: ApprovalState) => void;
  /** Longest a poll of the follow loop waits; bounds how fast stop() returns. Default 500 ms. */
  readonly pollWaitMs?: number;
  /** How long `execute` waits to catch up with the log before deciding anyway. Default 2000 ms. */
  readonly syncTimeoutMs?: number;
  /** First delay of the background retry of a failed control publish. Default 500 ms (doubling, ≤ 30 s). */
  readonly publishRetryMs?: number;
  /**
   * Start from a saved book instead of the oldest record (a state snapshot, see
   * services/processors/src/approvals/snapshots.ts): `states` are the fold of every record below
   * `positions`, and the initial read starts there. With `check`, it starts one record earlier in
   * each partition `check.partitions` names (positions above 0) and hands that record to
   * `check.record`, which throws to refuse the snapshot: start() then rejects with that error.
   */
  readonly resume?: {
    readonly states: readonly ApprovalState[];
    readonly positions: readonly number[];
    readonly check?: { readonly partitions: readonly boolean[]; readonly record: (record: ConsumedRecord) => void };
  };
  /** Called after each batch of records the book has folded (initial read and follow loop), e.g. to track positions for snapshots. */
  readonly onIngested?: (batch: readonly ConsumedRecord[]) => void;
}

/** What an observer (the approvals processor) is told while the service follows the log. */
export interface ApprovalListener {
  /** A new approval, once per approval per run (not for those folded before the listener was added). */
  readonly requested?: (state: ApprovalState) => void;
  /** An approval's state changed (new, voted, decided, closed): e.g. re-arm an expiry timer. */
  readonly changed?: (state: ApprovalState) => void;
  /** An audit.started event was read from the log (a component, e.g. a gateway, started a run). */
  readonly auditStarted?: (event: AttestEvent<'audit.started'>) => void;
}

export interface ExecuteOptions {
  /** Where the command came from (the reviewer's address); default { address: 'internal' }. */
  readonly source?: Source;
}

const INTERNAL: Source = { address: 'internal', userAgent: null };
/** Log record types worth decoding; the emitter puts the event type in the `type` header. */
const WANTED = (type: string | undefined): boolean => type === undefined || type.startsWith('approval.') || type === 'audit.started';

export class ApprovalService {
  private readonly book: ApprovalBook;
  private readonly now: () => number;
  private readonly listeners = new Set<ApprovalListener>();
  /** Next offset to read per partition, as far as the book has folded. */
  private readonly seen: number[];
  private readonly syncWaiters = new Set<() => void>();
  private readonly retries = new Set<Promise<void>>();
  private readonly stopping = new AbortController();
  private consumer: LogConsumer | undefined;
  private loop: Promise<void> | undefined;
  private live = false;
  /** Per partition, while resuming: the record before the snapshot's position is not checked yet. */
  private unchecked: boolean[] = [];
  /** Approvals already reported as requested (a fold and an execute can both see one appear). */
  private readonly announced = new Set<string>();
  /** Release markers of releases folded during the initial read, published once it is done. */
  private readonly foldedReleases = new Map<string, ControlMessage>();
  /** Records read, approval events folded, records skipped (undecodable or unmappable). */
  readonly counts = { records: 0, folded: 0, skipped: 0, published: 0, publishFailures: 0 };

  private constructor(private readonly opts: ApprovalServiceOptions) {
    this.now = opts.now ?? Date.now;
    this.book = opts.resume === undefined ? new ApprovalBook({ now: this.now }) : ApprovalBook.fromStates(opts.resume.states, { now: this.now });
    this.seen = Array.from({ length: opts.log.partitionCount }, (_, p) => opts.resume?.positions[p] ?? 0);
  }

  /** Reads the evidence log to its end, then follows it. Resolves when the book is caught up. */
  static async start(opts: ApprovalServiceOptions): Promise<ApprovalService> {
    const service = new ApprovalService(opts);
    try {
      await service.catchUp();
    } catch (err) {
      await service.stop();
      throw err;
    }
    return service;
  }

  private async catchUp(): Promise<void> {
    const { log } = this.opts;
    const ends = await log.endOffsets();
    const resume = this.opts.resume;
    this.consumer = await log.consumer(
      this.opts.group,
      // Ephemeral: the service never commits (every start reads from the log or a snapshot), so a
      // stored group would hold the log's retention back at its first position for good.
      resume === undefined
        ? { startFrom: 'earliest', ephemeral: true }
        : { startAt: resume.positions.map((o, p) => (o > 0 && resume.check?.partitions[p] === true ? o - 1 : o)), ephemeral: true },
    );
    // Resuming with a check: also until each partition's record before its position has been checked.
    this.unchecked = Array.from({ length: log.partitionCount }, (_, p) => (resume?.positions[p] ?? 0) > 0 && resume?.check?.partitions[p] === true);
    const caughtUp = () => ends.every((end, p) => (this.seen[p] ?? 0) >= end) && !this.unchecked.some((u) => u);
    while (!caughtUp()) {
      // Catching up only folds: large polls (a restart reads the whole retained log).
      const batch = await this.consumer.poll(10_000, 1000);
      if (this.stopping.signal.aborted) return;
      this.ingest(batch);
      if (batch.length === 0 && !this.unchecked.some((u) => u)) {
        // An empty poll delivered everything that was durable when it started, so each partition
        // is at its end, also one whose records retention deleted: `seen` would wait for a record
        // of it that never comes.
        ends.forEach((end, p) => (this.seen[p] = Math.max(this.seen[p] ?? 0, end)));
      }
    }
    this.live = true;
    this.opts.logger.info({ group: this.opts.group, approvals: this.book.all().length, releaseMarkers: this.foldedReleases.size }, 'approval book caught up with the evidence log');
    for (const msg of this.foldedReleases.values()) this.track(this.publish(msg));
    this.foldedReleases.clear();
    this.loop = this.follow();
  }

  private async follow(): Promise<void> {
    const wait = this.opts.pollWaitMs ?? 500;
    while (!this.stopping.signal.aborted) {
      let batch: ConsumedRecord[];
      try {
        batch = await this.consumer!.poll(500, wait);
      } catch (err) {
        if (this.stopping.signal.aborted) return;
        this.opts.logger.error({ code: (err as { code?: string }).code }, 'approval service: evidence log poll failed; retrying');
        await sleep(wait, this.stopping.signal);
        continue;
      }
      this.ingest(batch);
    }
  }

  private ingest(batch: readonly ConsumedRecord[]): void {
    const resume = this.opts.resume;
    if (resume !== undefined) {
      // The records just before a snapshot's positions: checked, never folded (the snapshot holds them).
      const before = batch.filter((r) => r.offset < (resume.positions[r.partition] ?? 0));
      for (const r of before) {
        resume.check?.record(r);
        this.unchecked[r.partition] = false;
      }
      if (before.length > 0) batch = batch.filter((r) => r.offset >= (resume.positions[r.partition] ?? 0));
    }
    for (const r of batch) {
      this.counts.records++;
      try {
        if (WANTED(r.headers['type'])) this.handle(r);
      } finally {
        this.seen[r.partition] = Math.max(this.seen[r.partition] ?? 0, r.offset + 1);
      }
    }
    if (batch.length > 0) {
      this.opts.onIngested?.(batch);
      for (const w of [...this.syncWaiters]) w();
    }
  }

  private handle(r: ConsumedRecord): void {
    let event: AnyAttestEvent;
    try {
      event = decodeEvent(r.value).event as AnyAttestEvent;
    } catch (err) {
      this.counts.skipped++;
      this.opts.logger.warn({ partition: r.partition, offset: r.offset, code: (err as { code?: string }).code }, 'approval service: undecodable record skipped');
      return;
    }
    const type = event.metadata.type;
    if (type === 'audit.started') {
      if (this.live) this.emit((l) => l.auditStarted?.(event as AttestEvent<'audit.started'>));
      return;
    }
    if (!type.startsWith('approval.')) return;
    let domain: ApprovalEvent | undefined;
    try {
      domain = fromEvidence(event);
    } catch (err) {
      domain = undefined;
      this.opts.logger.warn({ eventId: event.metadata.eventId, type, err: (err as Error).message }, 'approval service: approval event could not be mapped');
    }
    if (domain === undefined) {
      this.counts.skipped++;
      this.opts.logger.warn({ eventId: event.metadata.eventId, type }, 'approval service: approval event without a domain meaning skipped');
      return;
    }
    this.counts.folded++;
    const before = this.book.get(domain.approvalId);
    this.applyAndTell(domain);
    if (domain.type === 'released') this.releaseFolded(before, this.book.get(domain.approvalId), event);
  }

  /** A folded approval.released that released the approval: its marker, now or after the initial read. */
  private releaseFolded(before: ApprovalState | undefined, after: ApprovalState | undefined, evidence: AnyAttestEvent): void {
    if (after === undefined || after === before || after.status !== 'released') return;
    const msg = releaseMarker(after, evidence);
    if (this.live) {
      this.track(this.publish(msg));
      return;
    }
    // A gateway refuses an approval decided longer ago than the longest release window, and a
    // held one is never retried: only the others still need a marker.
    if (after.rule.mode === 'ask_and_retry' && after.decidedAtMs !== null && after.decidedAtMs + MAX_EXPIRY_MS > this.now()) {
      this.foldedReleases.set(after.approvalId, msg);
    }
  }

  /** Keeps a background publish until it settles (stop() waits for it). */
  private track(p: Promise<void>): void {
    this.retries.add(p);
    void p.finally(() => this.retries.delete(p));
  }

  /** Folds one event into the book and tells the listeners what changed. */
  private applyAndTell(event: ApprovalEvent): void {
    const before = this.book.get(event.approvalId);
    const after = this.book.apply(event);
    if (after === undefined || after === before) return;
    this.changed(before, after);
  }

  private changed(before: ApprovalState | undefined, after: ApprovalState): void {
    if (!this.live) return;
    if (before === undefined && !this.announced.has(after.approvalId)) {
      this.announced.add(after.approvalId);
      try {
        this.opts.onRequested?.(after);
      } catch (err) {
        this.opts.logger.error({ approvalId: after.approvalId, err: (err as Error).message }, 'approval service: onRequested failed');
      }
      this.emit((l) => l.requested?.(after));
    }
    this.emit((l) => l.changed?.(after));
  }

  private emit(call: (l: ApprovalListener) => void): void {
    for (const l of this.listeners) {
      try {
        call(l);
      } catch (err) {
        this.opts.logger.error({ err: (err as Error).message }, 'approval service: listener failed');
      }
    }
  }

  /** Adds an observer; returns the function that removes it. */
  subscribe(listener: ApprovalListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The evidence log the service follows (the processor reads it with a group of its own). */
  get log(): EventLog {
    return this.opts.log;
  }

  /** The service's clock (ms). */
  nowMs(): number {
    return this.now();
  }

  /**
   * Resolves true once the book has folded every record that was on the log when called; false
   * after `timeoutMs` (the follow loop is behind or the log is unavailable) or when stopped.
   */
  async sync(timeoutMs = this.opts.syncTimeoutMs ?? 2000): Promise<boolean> {
    if (!this.live) return false;
    const ends = await this.opts.log.endOffsets();
    const done = () => ends.every((end, p) => (this.seen[p] ?? 0) >= end);
    if (done()) return true;
    return new Promise<boolean>((resolve) => {
      const finish = (ok: boolean) => {
        clearTimeout(timer);
        this.syncWaiters.delete(check);
        this.stopping.signal.removeEventListener('abort', onAbort);
        resolve(ok);
      };
      const check = () => {
        if (done()) finish(true);
      };
      const onAbort = () => finish(false);
      const timer = setTimeout(() => finish(false), timeoutMs);
      this.syncWaiters.add(check);
      this.stopping.signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Runs one command: evidence first (fail closed), then the book, then, for a final outcome, the
   * control message. Returns the domain result; a refusal is `{ ok: false, error }`, never a throw.
   */
  async execute(command: ApprovalCommand, opts: ExecuteOptions = {}): Promise<ExecuteResult> {
    if (this.stopping.signal.aborted) {
      return { ok: false, error: new ApprovalError('approval_unavailable', command.approvalId, 'the approval service is stopped') };
    }
    // An earlier command of this service whose evidence append failed is appended again first, and
    // folded below: the log may record it after all, and this command must be decided after it.
    try {
      await this.opts.emitter.settle();
    } catch {
      return { ok: false, error: new ApprovalError('approval_unavailable', command.approvalId, 'the evidence log is unavailable: an earlier decision is not confirmed yet; retry when the log is back') };
    }
    if (!(await this.sync().catch(() => false))) {
      this.opts.logger.warn({ approvalId: command.approvalId }, 'approval service: deciding before catching up with the evidence log');
    }
    const emitted = new Map<ApprovalEvent, AnyAttestEvent>();
    const before = this.book.get(command.approvalId);
    const result = await this.book.execute(command, async (events) => {
      const chained = await this.persist(events, opts.source ?? INTERNAL);
      events.forEach((e, i) => {
        const c = chained[i];
        if (c !== undefined) emitted.set(e, c);
      });
    });
    if (!result.ok) {
      if (result.error.code === 'approval_unavailable') {
        this.opts.logger.error({ approvalId: command.approvalId, command: command.type }, 'approval command failed closed: its evidence could not be recorded');
      }
      return result;
    }
    if (result.state !== undefined && result.events.length > 0) {
      // The follow loop may already have folded the same events from the log (then it told the
      // listeners, and `announced` keeps `requested` to once).
      if (result.state !== before) this.changed(before, result.state);
      for (const e of result.events) {
        const ev = emitted.get(e);
        const msg = ev === undefined ? undefined : resolutionOf(e, result.state, ev);
        if (msg !== undefined) await this.publish(msg);
      }
    }
    return result;
  }

  /** Builds and durably appends the evidence of `events`; rejects when any cannot be recorded. */
  private async persist(events: readonly ApprovalEvent[], source: Source): Promise<AnyAttestEvent[]> {
    const first = events[0];
    if (first === undefined) return [];
    let state = this.book.get(first.approvalId);
    const built: UnchainedEvent[] = [];
    let key: string | undefined;
    for (const e of events) {
      state = evolve(state, e);
      if (state === undefined) throw new Error(`no approval state for ${e.type} ${e.approvalId}`);
      const ev = toEvidence(e, state);
      if (ev === undefined) throw new Error(`approval event ${e.type} has no evidence type`);
      key ??= ev.correlation.sessionId;
      const parts = { actor: ev.actor ?? systemActor(this.opts.producerId), source, target: ev.target, outcome: ev.outcome, correlation: ev.correlation, payload: ev.payload };
      const unchained = this.opts.emitter.build(ev.type as EventType, parts as never) as UnchainedEvent;
      // The event's time is the domain event's: fromEvidence reads `atMs` back from it, so a book
      // rebuilt from the log equals this one.
      built.push({ ...unchained, metadata: { ...unchained.metadata, timeUs: ev.timeUs } } as UnchainedEvent);
    }
    return this.opts.emitter.emit(built, key ?? `approval:${first.approvalId}`, { onLateConfirm: (chained) => void this.lateConfirmed(events, chained) });
  }

  /**
   * The evidence of a command that failed closed reached the log after all (the emitter appends
   * what is in doubt again): the log now says it happened, so its outcome is published like any
   * other, once the book has folded it.
   */
  private async lateConfirmed(events: readonly ApprovalEvent[], chained: readonly AnyAttestEvent[]): Promise<void> {
    await this.sync().catch(() => false);
    for (const [i, e] of events.entries()) {
      const state = this.book.get(e.approvalId);
      const ev = chained[i];
      const msg = state === undefined || ev === undefined ? undefined : resolutionOf(e, state, ev);
      if (msg === undefined) continue;
      this.opts.logger.warn({ approvalId: e.approvalId, eventId: ev!.metadata.eventId }, 'approval decision recorded late (its append had failed): publishing its outcome now');
      await this.publish(msg);
    }
  }

  /**
   * Publishes now; on failure keeps retrying in the background until published, stopped, or
   * superseded: an 'approved' whose approval has since ended (released, expired, cancelled) is not
   * published late, where it would be the latest record under the approval's key.
   */
  private async publish(msg: ControlMessage): Promise<void> {
    if (this.superseded(msg)) return;
    try {
      await this.opts.publisher.publish(msg);
      this.counts.published++;
      return;
    } catch (err) {
      this.counts.publishFailures++;
      const code = (err as { code?: string }).code;
      if (code === 'control_invalid_message') {
        // Retrying cannot help (e.g. an approval rebuilt from evidence too old to carry a digest).
        this.opts.logger.error({ code, key: keyOf(msg) }, 'approval resolution not published: the control channel refuses it');
        return;
      }
      this.opts.logger.error({ code, key: keyOf(msg) }, 'approval resolution not published; retrying in the background');
    }
    const retry = (async () => {
      let delay = this.opts.publishRetryMs ?? 500;
      while (!this.stopping.signal.aborted) {
        await sleep(delay, this.stopping.signal);
        if (this.stopping.signal.aborted) break;
        if (this.superseded(msg)) {
          this.opts.logger.info({ key: keyOf(msg) }, 'approval resolution superseded before its retry: not published');
          return;
        }
        try {
          await this.opts.publisher.publish(msg);
          this.counts.published++;
          this.opts.logger.info({ key: keyOf(msg) }, 'approval resolution published after retry');
          return;
        } catch {
          this.counts.publishFailures++;
          delay = Math.min(delay * 2, 30_000);
        }
      }
      this.opts.logger.error({ key: keyOf(msg) }, 'approval resolution never published: stopped while retrying');
    })();
    this.retries.add(retry);
    void retry.finally(() => this.retries.delete(retry));
  }

  private superseded(msg: ControlMessage): boolean {
    if (msg.type !== 'approval.resolved' || msg.outcome !== 'approved') return false;
    const status = this.book.get(msg.approvalId)?.status;
    return status === 'released' || status === 'expired' || status === 'cancelled';
  }

  /** Expires every approval due now (pending past expiry, approved past its release window). */
  async expireDue(): Promise<ApprovalEvent[]> {
    const now = this.now();
    const due = this.book.all().filter((s) => {
      const at = dueAtMs(s);
      return at !== null && at <= now;
    });
    const events: ApprovalEvent[] = [];
    for (const s of due) {
      const r = await this.execute({ type: 'expire', approvalId: s.approvalId });
      if (r.ok) events.push(...r.events);
      else if (r.error.code !== 'approval_not_found') this.opts.logger.warn({ approvalId: s.approvalId, code: r.error.code }, 'approval could not be expired');
    }
    return events;
  }

  /** When the next approval falls due for expiry (ms), or undefined. */
  nextExpiry(): number | undefined {
    return this.book.nextExpiry();
  }

  /**
   * Cancels (reason 'gateway_restarted') the open hold-mode approvals of gateway `gatewayId` held
   * by another run than `instanceId`. With `requestedBeforeMs`, only those requested before it
   * (the new run's start): a late, re-delivered start of an older run then cannot cancel the holds
   * of a newer one.
   */
  async cancelStaleHolds(gatewayId: string, instanceId: string, opts: { requestedBeforeMs?: number } = {}): Promise<ExecuteResult[]> {
    const before = opts.requestedBeforeMs;
    const stale = this.book.staleHolds(gatewayId, instanceId).filter((s) => before === undefined || s.requestedAtMs < before);
    const results: ExecuteResult[] = [];
    for (const s of stale) results.push(await this.execute({ type: 'cancel', approvalId: s.approvalId, reason: 'gateway_restarted' }));
    return results;
  }

  /** What `viewer` may decide now (the book's order: soonest expiry first). */
  pendingFor(viewer: ApprovalPrincipal): ApprovalState[] {
    return this.book.pendingFor(viewer);
  }

  /** Every pending approval (for notifications after a restart, dashboards). */
  pending(): ApprovalState[] {
    return this.book.all().filter((s) => s.status === 'pending');
  }

  /** Approvals no longer pending, latest change first. */
  recentDecisions(limit = 50): ApprovalState[] {
    return this.book.recentDecisions(limit);
  }

  get(approvalId: string): ApprovalState | undefined {
    return this.book.get(approvalId);
  }

  /** Every approval in request order (for comparisons and snapshots). */
  all(): ApprovalState[] {
    return this.book.all();
  }

  /** Stops following the log and abandons background publish retries (logged). Idempotent. */
  async stop(): Promise<void> {
    if (this.stopping.signal.aborted) return;
    this.stopping.abort();
    await this.consumer?.close();
    await this.loop;
    await Promise.allSettled([...this.retries]);
  }
}

/** The control message for `event` when it is a final outcome; undefined otherwise. */
function resolutionOf(event: ApprovalEvent, state: ApprovalState, evidence: AnyAttestEvent): ControlMessage | undefined {
  const common = {
    type: 'approval.resolved' as const,
    approvalId: state.approvalId,
    requestDigest: state.requestDigest,
    requester: { issuer: state.requester.issuer, subject: state.requester.subject },
    mode: state.rule.mode,
    eventId: evidence.metadata.eventId,
    atUs: evidence.metadata.timeUs,
  };
  switch (event.type) {
    case 'decided':
      if (event.decision === 'rejected') return { ...common, outcome: 'rejected', reason: event.reason, by: [event.approver.subject] };
      if (!event.quorumMet) return undefined;
      return { ...common, outcome: 'approved', reason: event.reason, by: [...event.approvers] };
    case 'expired':
      return {
        ...common,
        outcome: 'expired',
        reason: event.stage === 'pending' ? 'not decided before it expired' : 'approved but not used within the release window',
        by: [],
      };
    case 'cancelled':
      return { ...common, outcome: 'cancelled', reason: event.reason, by: [] };
    case 'released':
      return releaseMarker(state, evidence);
    case 'requested':
      return undefined;
    default: {
      const never: never = event;
      return never;
    }
  }
}

/** The marker that `state` (released) has released its request; `evidence` is its approval.released. */
function releaseMarker(state: ApprovalState, evidence: AnyAttestEvent): ControlMessage {
  return {
    type: 'approval.resolved',
    approvalId: state.approvalId,
    outcome: 'released',
    requestDigest: state.requestDigest,
    reason: null,
    by: [],
    requester: { issuer: state.requester.issuer, subject: state.requester.subject },
    mode: state.rule.mode,
    eventId: evidence.metadata.eventId,
    atUs: evidence.metadata.timeUs,
  };
}

function keyOf(msg: ControlMessage): string {
  return msg.type === 'approval.resolved' ? controlKey(msg) : msg.type;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
