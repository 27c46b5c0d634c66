import { ApprovalError } from './errors';
import {
  decide,
  dueAtMs,
  eligibility,
  evolve,
  isOpen,
  type ApprovalCommand,
  type ApprovalEvent,
  type ApprovalPrincipal,
  type ApprovalState,
  type DecideResult,
} from './lifecycle';

/**
 * All approvals one processor (or gateway) knows, folded from approval events. The book is a
 * projection: rebuild it after a restart with `ApprovalBook.fromEvents(eventsFromTheLog)` and it
 * equals the book that wrote them. Commands go through `execute`, which serialises them so two
 * approvers clicking at once are decided one after the other against the state the first produced
 * (and persisted) — never both against the same state.
 */

export interface ApprovalBookOptions {
  /** Wall clock in milliseconds. Default Date.now. */
  readonly now?: () => number;
}

/** Appends the events durably (the log); the book applies them only after it resolves. */
export type PersistEvents = (events: readonly ApprovalEvent[]) => Promise<void>;

export type ExecuteResult =
  | { readonly ok: true; readonly events: ApprovalEvent[]; readonly state: ApprovalState | undefined }
  | { readonly ok: false; readonly error: ApprovalError };

export class ApprovalBook {
  private readonly states = new Map<string, ApprovalState>();
  private readonly now: () => number;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(opts: ApprovalBookOptions = {}) {
    this.now = opts.now ?? Date.now;
  }

  static fromEvents(events: Iterable<ApprovalEvent>, opts: ApprovalBookOptions = {}): ApprovalBook {
    const book = new ApprovalBook(opts);
    for (const e of events) book.apply(e);
    return book;
  }

  /** A book holding `states` as they are (a state snapshot of `all()`); later events fold onto them. */
  static fromStates(states: Iterable<ApprovalState>, opts: ApprovalBookOptions = {}): ApprovalBook {
    const book = new ApprovalBook(opts);
    for (const s of states) book.states.set(s.approvalId, s);
    return book;
  }

  /** Fold one event (from this book's own commands, or read from the log). Returns the new state. */
  apply(event: ApprovalEvent): ApprovalState | undefined {
    const next = evolve(this.states.get(event.approvalId), event);
    if (next !== undefined) this.states.set(event.approvalId, next);
    return next;
  }

  /** What `command` would produce now, without changing the book. */
  decide(command: ApprovalCommand): DecideResult {
    return decide(this.states.get(command.approvalId), command, this.now());
  }

  /**
   * Decide and apply at once, with no persistence (in-memory use, tests). Synchronous, hence atomic.
   */
  executeSync(command: ApprovalCommand): ExecuteResult {
    const result = this.decide(command);
    if (!result.ok) return result;
    let state = this.states.get(command.approvalId);
    for (const e of result.events) state = this.apply(e);
    return { ok: true, events: result.events, state };
  }

  /**
   * Decide, persist, then apply; commands run one at a time in call order. If `persist` fails the
   * book is unchanged and the result is a retriable approval_unavailable: a decision that is not in
   * the evidence log did not happen.
   */
  execute(command: ApprovalCommand, persist?: PersistEvents): Promise<ExecuteResult> {
    const run = async (): Promise<ExecuteResult> => {
      const result = this.decide(command);
      if (!result.ok) return result;
      if (persist !== undefined && result.events.length > 0) {
        try {
          await persist(result.events);
        } catch (cause) {
          return {
            ok: false,
            error: new ApprovalError('approval_unavailable', command.approvalId, 'the approval event could not be recorded', { cause }),
          };
        }
      }
      let state = this.states.get(command.approvalId);
      for (const e of result.events) state = this.apply(e);
      return { ok: true, events: result.events, state };
    };
    const next = this.queue.then(run, run);
    this.queue = next;
    return next;
  }

  get(approvalId: string): ApprovalState | undefined {
    return this.states.get(approvalId);
  }

  /** Every approval, in request order (ties by id), for snapshots and comparisons. */
  all(): ApprovalState[] {
    return [...this.states.values()].sort((a, b) => a.requestedAtMs - b.requestedAtMs || cmp(a.approvalId, b.approvalId));
  }

  /**
   * What `viewer` may decide now: pending, not yet expired, the viewer eligible (an approver, not
   * the requester, not yet voted). Soonest expiry first.
   */
  pendingFor(viewer: ApprovalPrincipal): ApprovalState[] {
    const now = this.now();
    return [...this.states.values()]
      .filter((s) => s.status === 'pending' && now < s.expiresAtMs && eligibility(s, viewer) === null)
      .sort((a, b) => a.expiresAtMs - b.expiresAtMs || cmp(a.approvalId, b.approvalId));
  }

  /** Approvals no longer pending (approved, rejected, expired, released, cancelled), latest first. */
  recentDecisions(limit = 50): ApprovalState[] {
    const changedAt = (s: ApprovalState) => s.closedAtMs ?? s.decidedAtMs ?? s.requestedAtMs;
    return [...this.states.values()]
      .filter((s) => s.status !== 'pending')
      .sort((a, b) => changedAt(b) - changedAt(a) || cmp(a.approvalId, b.approvalId))
      .slice(0, Math.max(0, limit));
  }

  /**
   * When the next approval falls due for `expire` (pending past its expiry, or approved past its
   * release window); undefined when none can. A linear scan: open approvals are few.
   */
  nextExpiry(): number | undefined {
    let next: number | undefined;
    for (const s of this.states.values()) {
      const due = dueAtMs(s);
      if (due !== null && (next === undefined || due < next)) next = due;
    }
    return next;
  }

  /** Expire every approval due now; returns the events (persisted first when `persist` is given). */
  async expireDue(persist?: PersistEvents): Promise<ApprovalEvent[]> {
    const now = this.now();
    const due = [...this.states.values()].filter((s) => {
      const at = dueAtMs(s);
      return at !== null && at <= now;
    });
    const events: ApprovalEvent[] = [];
    for (const s of due) {
      const r = await this.execute({ type: 'expire', approvalId: s.approvalId }, persist);
      if (r.ok) events.push(...r.events);
    }
    return events;
  }

  /**
   * Open hold-mode approvals of an earlier run of gateway `gatewayId`: after a restart their HTTP
   * requests are gone, so the gateway cancels them (reason 'gateway_restarted') before serving.
   */
  staleHolds(gatewayId: string, currentInstanceId: string): ApprovalState[] {
    return this.all().filter(
      (s) => isOpen(s) && s.rule.mode === 'hold' && s.hold.gatewayId === gatewayId && s.hold.instanceId !== currentInstanceId,
    );
  }

  /** Forget closed approvals that closed before `beforeMs` (bounded memory for a long run). */
  prune(beforeMs: number): number {
    let n = 0;
    for (const [id, s] of this.states) {
      const closedAt = s.closedAtMs ?? (s.status === 'rejected' ? s.decidedAtMs : null);
      if (closedAt !== null && closedAt < beforeMs) {
        this.states.delete(id);
        n++;
      }
    }
    return n;
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
