import type { PrincipalKind } from '../identity/types';
import { maskPans } from '../masking';
import { ApprovalError, type ApprovalErrorCode } from './errors';
import { isRequestDigest } from './request-digest';
import type { ApprovalRule } from './rules';

/**
 * The life of one approval as pure functions, in the decide/evolve style: `decide` turns a command
 * into events (or refuses it), `evolve` folds an event into the state. No I/O and no clock: the
 * caller passes `nowMs`, so every rule here is a Given (events) / When (command) / Then (events)
 * test.
 *
 *            request              approve × quorum             release (same digest, same hold)
 *   (none) ──────────▶ pending ───────────────────▶ approved ─────────────────────────▶ released
 *                        │  │ deny                      │ │
 *                        │  └──────▶ rejected           │ └── now ≥ releaseBy ──▶ expired (unreleased)
 *                        ├── now ≥ expiresAt ──▶ expired (pending)
 *                        └── cancel (caller gone, gateway restarted) ──▶ cancelled  ◀── cancel ──┘
 *
 * Rules: an approver is a person (kind 'human') in one of the rule's approver groups and not the
 * requester (same issuer and subject, or the human the requesting agent acts for); one vote each;
 * one eligible denial rejects; `quorum` distinct approvals approve; a decision at or after the
 * expiry is refused (approval_expired), even before the expiry tick has been recorded; a release
 * needs the approved digest and, in hold mode, the very hold (gateway instance and hold id) that
 * asked, or in ask-and-retry mode the same requester; it succeeds once. rejected, expired, released
 * and cancelled are final.
 */

/** The parts of a Principal an approval records. A Principal is assignable to it. */
export interface ApprovalPrincipal {
  readonly subject: string;
  readonly issuer: string;
  readonly groups: readonly string[];
  readonly kind: PrincipalKind;
  readonly clientId?: string | undefined;
  readonly onBehalfOf?: string | undefined;
  readonly dev?: boolean | undefined;
}

/** The held request an approval may release: one gateway run's one hold. */
export interface HoldRef {
  /** Stable id of the gateway (its producer id). */
  readonly gatewayId: string;
  /** Id of this run of the gateway (its producer epoch): a restart changes it. */
  readonly instanceId: string;
  /** Id of the held request within the run (e.g. the gateway's request id). */
  readonly holdId: string;
}

/** What the approver sees and the evidence links to. Never raw card data (masked again here). */
export interface ApprovalContext {
  readonly requestId: string;
  readonly sessionId: string;
  readonly model: string;
  readonly route: string;
  /** The prompt after PAN masking; `decide` masks again and cuts it to MAX_EXCERPT_CHARS. */
  readonly promptExcerpt: string;
  /** From the rule match (`ApprovalMatch.reasons`). */
  readonly reasons: readonly string[];
  /** The caller's stated reason, when given. */
  readonly justification?: string | null | undefined;
}

export type RuleSnapshot = Pick<ApprovalRule, 'id' | 'approverGroups' | 'quorum' | 'expiresAfterMs' | 'mode' | 'scope'>;

export const CANCEL_REASONS = ['caller_disconnected', 'gateway_restarted', 'gateway_shutdown', 'withdrawn'] as const;
export type CancelReason = (typeof CANCEL_REASONS)[number];

export type ApprovalCommand =
  | {
      readonly type: 'request';
      readonly approvalId: string;
      readonly rule: RuleSnapshot;
      readonly requester: ApprovalPrincipal;
      /** `requestDigest()` of the request to release. */
      readonly requestDigest: string;
      readonly hold: HoldRef;
      readonly context: ApprovalContext;
      /** How long an approval stays usable once approved. Default: the rule's expiresAfterMs. */
      readonly releaseWindowMs?: number | undefined;
    }
  | { readonly type: 'approve' | 'deny'; readonly approvalId: string; readonly approver: ApprovalPrincipal; readonly reason: string }
  | { readonly type: 'expire'; readonly approvalId: string }
  | {
      readonly type: 'release';
      readonly approvalId: string;
      readonly requestDigest: string;
      /** The caller of the request being released (checked in ask-and-retry mode). */
      readonly requester: ApprovalPrincipal;
      /** The hold being released (checked in hold mode). */
      readonly hold: HoldRef;
    }
  | { readonly type: 'cancel'; readonly approvalId: string; readonly reason: CancelReason };

export type ApprovalEvent =
  | {
      readonly type: 'requested';
      readonly approvalId: string;
      readonly atMs: number;
      readonly rule: RuleSnapshot;
      readonly requester: ApprovalPrincipal;
      readonly requestDigest: string;
      readonly hold: HoldRef;
      readonly context: ApprovalContext;
      readonly expiresAtMs: number;
      readonly releaseWindowMs: number;
    }
  | {
      readonly type: 'decided';
      readonly approvalId: string;
      readonly atMs: number;
      readonly approver: ApprovalPrincipal;
      readonly decision: 'approved' | 'rejected';
      /** Required; PAN-masked. */
      readonly reason: string;
      /** Subjects of everyone who has approved so far, this approver included when approving. */
      readonly approvers: readonly string[];
      readonly quorumMet: boolean;
    }
  | { readonly type: 'expired'; readonly approvalId: string; readonly atMs: number; readonly stage: 'pending' | 'unreleased' }
  | { readonly type: 'released'; readonly approvalId: string; readonly atMs: number; readonly requestDigest: string; readonly hold: HoldRef }
  | { readonly type: 'cancelled'; readonly approvalId: string; readonly atMs: number; readonly reason: CancelReason };

export type ApprovalStatus = 'pending' | 'approved' | 'rejected' | 'expired' | 'released' | 'cancelled';

export interface Vote {
  readonly approver: ApprovalPrincipal;
  readonly decision: 'approved' | 'rejected';
  readonly reason: string;
  readonly atMs: number;
}

export interface ApprovalState {
  readonly approvalId: string;
  readonly status: ApprovalStatus;
  readonly rule: RuleSnapshot;
  readonly requester: ApprovalPrincipal;
  readonly requestDigest: string;
  readonly hold: HoldRef;
  readonly context: ApprovalContext;
  readonly requestedAtMs: number;
  readonly expiresAtMs: number;
  readonly releaseWindowMs: number;
  readonly votes: readonly Vote[];
  /** When it became approved or rejected. */
  readonly decidedAtMs: number | null;
  /** Until when an approved approval can be released. */
  readonly releaseByMs: number | null;
  /** When it became expired, released or cancelled. */
  readonly closedAtMs: number | null;
  readonly expiredStage: 'pending' | 'unreleased' | null;
  readonly cancelReason: CancelReason | null;
}

export type DecideResult = { readonly ok: true; readonly events: ApprovalEvent[] } | { readonly ok: false; readonly error: ApprovalError };

export const MAX_REASON_CHARS = 1000;
export const MAX_EXCERPT_CHARS = 500;
const MAX_ID_CHARS = 128;

const ok = (events: ApprovalEvent[]): DecideResult => ({ ok: true, events });
const fail = (code: ApprovalErrorCode, id: string, message: string, where?: string): DecideResult => ({
  ok: false,
  error: new ApprovalError(code, id, message, where === undefined ? {} : { where }),
});

/** Only the fields an approval records (a Principal also carries token ids and expiry). */
export function approvalPrincipal(p: ApprovalPrincipal): ApprovalPrincipal {
  return {
    subject: p.subject,
    issuer: p.issuer,
    groups: [...p.groups],
    kind: p.kind,
    ...(p.clientId === undefined ? {} : { clientId: p.clientId }),
    ...(p.onBehalfOf === undefined ? {} : { onBehalfOf: p.onBehalfOf }),
    ...(p.dev === undefined ? {} : { dev: p.dev }),
  };
}

export function samePrincipal(a: ApprovalPrincipal, b: ApprovalPrincipal): boolean {
  return a.issuer === b.issuer && a.subject === b.subject;
}

/** Self-approval: the approver is the requester, or the person the requesting agent acts for. */
export function isSelfApproval(requester: ApprovalPrincipal, approver: ApprovalPrincipal): boolean {
  return samePrincipal(requester, approver) || (requester.issuer === approver.issuer && requester.onBehalfOf === approver.subject);
}

/** Whether `viewer` may vote on the approval now (ignoring time and status). */
export function eligibility(state: ApprovalState, viewer: ApprovalPrincipal): ApprovalErrorCode | null {
  if (isSelfApproval(state.requester, viewer)) return 'approval_self_approval';
  if (viewer.kind !== 'human' || viewer.onBehalfOf !== undefined) return 'approval_not_human';
  if (!viewer.groups.some((g) => state.rule.approverGroups.includes(g))) return 'approval_not_approver';
  if (state.votes.some((v) => samePrincipal(v.approver, viewer))) return 'approval_duplicate_vote';
  return null;
}

function masked(text: string): string {
  return maskPans(text, 'last4').text;
}

/** Cut to `max` UTF-16 units without splitting a surrogate pair. */
export function cut(text: string, max: number): string {
  if (text.length <= max) return text;
  const end = /[\uD800-\uDBFF]/.test(text.charAt(max - 1)) ? max - 1 : max;
  return text.slice(0, end) + '…';
}

/** Why a closed approval refuses a command. */
function closedError(state: ApprovalState): DecideResult | undefined {
  const id = state.approvalId;
  switch (state.status) {
    case 'pending':
    case 'approved':
      return undefined;
    case 'rejected':
      return fail('approval_already_decided', id, `approval ${id} was already rejected`);
    case 'expired':
      return fail('approval_expired', id, `approval ${id} expired`);
    case 'released':
      return fail('approval_already_released', id, `approval ${id} already released its request`);
    case 'cancelled':
      return fail('approval_cancelled', id, `approval ${id} was cancelled (${state.cancelReason ?? 'unknown'})`);
    default: {
      const never: never = state.status;
      return never;
    }
  }
}

export function decide(state: ApprovalState | undefined, command: ApprovalCommand, nowMs: number): DecideResult {
  const id = command.approvalId;
  if (command.type === 'request') {
    if (state !== undefined) return fail('approval_exists', id, `approval ${id} already exists`, 'approvalId');
    return decideRequest(command, nowMs);
  }
  if (state === undefined) return fail('approval_not_found', id, `no approval ${id}`, 'approvalId');

  switch (command.type) {
    case 'approve':
    case 'deny': {
      const closed = closedError(state);
      if (closed) return closed;
      if (state.status === 'approved') return fail('approval_already_decided', id, `approval ${id} was already approved`);
      if (nowMs >= state.expiresAtMs) return fail('approval_expired', id, `approval ${id} expired before this decision`);
      const refusal = eligibility(state, command.approver);
      if (refusal !== null) return fail(refusal, id, eligibilityMessage(refusal, id));
      const reason = command.reason.trim();
      if (reason === '') return fail('approval_reason_required', id, 'a decision needs a reason', 'reason');
      if (reason.length > MAX_REASON_CHARS) {
        return fail('approval_reason_too_long', id, `a reason may have at most ${MAX_REASON_CHARS} characters`, 'reason');
      }
      const decision = command.type === 'approve' ? 'approved' : 'rejected';
      const approvers = state.votes.filter((v) => v.decision === 'approved').map((v) => v.approver.subject);
      if (decision === 'approved') approvers.push(command.approver.subject);
      return ok([
        {
          type: 'decided',
          approvalId: id,
          atMs: nowMs,
          approver: approvalPrincipal(command.approver),
          decision,
          reason: masked(reason),
          approvers,
          quorumMet: decision === 'approved' && approvers.length >= state.rule.quorum,
        },
      ]);
    }
    case 'expire': {
      if (state.status === 'pending' && nowMs >= state.expiresAtMs) return ok([{ type: 'expired', approvalId: id, atMs: nowMs, stage: 'pending' }]);
      if (state.status === 'approved' && state.releaseByMs !== null && nowMs >= state.releaseByMs) {
        return ok([{ type: 'expired', approvalId: id, atMs: nowMs, stage: 'unreleased' }]);
      }
      // Not due, or already closed: a timer tick is harmless.
      return ok([]);
    }
    case 'release': {
      if (state.status === 'rejected') return fail('approval_rejected', id, `approval ${id} was denied`);
      const closed = closedError(state);
      if (closed) return closed;
      if (state.status === 'pending') {
        return nowMs >= state.expiresAtMs
          ? fail('approval_expired', id, `approval ${id} expired undecided`)
          : fail('approval_pending', id, `approval ${id} is still waiting for approvers`);
      }
      if (state.releaseByMs !== null && nowMs >= state.releaseByMs) return fail('approval_expired', id, `approval ${id} was not used in time`);
      if (state.rule.mode === 'hold') {
        const h = state.hold;
        if (h.gatewayId !== command.hold.gatewayId || h.instanceId !== command.hold.instanceId || h.holdId !== command.hold.holdId) {
          return fail('approval_hold_mismatch', id, `approval ${id} belongs to another held request`);
        }
      } else if (!samePrincipal(state.requester, command.requester)) {
        return fail('approval_requester_mismatch', id, `approval ${id} was asked for by another caller`);
      }
      if (command.requestDigest !== state.requestDigest) {
        return fail('approval_digest_mismatch', id, `the request differs from the one approval ${id} approved`);
      }
      return ok([{ type: 'released', approvalId: id, atMs: nowMs, requestDigest: command.requestDigest, hold: { ...command.hold } }]);
    }
    case 'cancel': {
      const closed = closedError(state);
      if (closed) return closed;
      return ok([{ type: 'cancelled', approvalId: id, atMs: nowMs, reason: command.reason }]);
    }
    default: {
      const never: never = command;
      return never;
    }
  }
}

function eligibilityMessage(code: ApprovalErrorCode, id: string): string {
  switch (code) {
    case 'approval_self_approval':
      return `you asked for approval ${id} (or an agent acting for you did); someone else must decide`;
    case 'approval_not_human':
      return `only a signed-in person can decide approval ${id}`;
    case 'approval_not_approver':
      return `you are in none of the approver groups of approval ${id}`;
    case 'approval_duplicate_vote':
      return `you already decided approval ${id}`;
    default:
      return `cannot decide approval ${id}`;
  }
}

const PRINTABLE_ID = /^[\x21-\x7e]+$/;

function decideRequest(c: Extract<ApprovalCommand, { type: 'request' }>, nowMs: number): DecideResult {
  const id = c.approvalId;
  const bad = (where: string, message: string) => fail('approval_invalid_command', id, message, where);
  if (!PRINTABLE_ID.test(id) || id.length > MAX_ID_CHARS) return bad('approvalId', `an approval id is 1-${MAX_ID_CHARS} printable ASCII characters`);
  if (!isRequestDigest(c.requestDigest)) return bad('requestDigest', 'the request digest must be 64 lowercase hex characters');
  if (!Number.isInteger(c.rule.quorum) || c.rule.quorum < 1) return bad('rule.quorum', 'quorum must be an integer of at least 1');
  if (c.rule.approverGroups.length === 0) return bad('rule.approverGroups', 'a rule needs at least one approver group');
  if (!(c.rule.expiresAfterMs > 0)) return bad('rule.expiresAfterMs', 'expiry must be positive');
  const releaseWindowMs = c.releaseWindowMs ?? c.rule.expiresAfterMs;
  if (!(releaseWindowMs > 0)) return bad('releaseWindowMs', 'the release window must be positive');
  if (c.requester.subject === '' || c.requester.issuer === '') return bad('requester', 'the requester must be an authenticated principal');
  if (c.hold.gatewayId === '' || c.hold.instanceId === '' || c.hold.holdId === '') return bad('hold', 'the hold reference is incomplete');
  const justification = c.context.justification;
  return ok([
    {
      type: 'requested',
      approvalId: id,
      atMs: nowMs,
      rule: {
        id: c.rule.id,
        approverGroups: [...c.rule.approverGroups],
        quorum: c.rule.quorum,
        expiresAfterMs: c.rule.expiresAfterMs,
        mode: c.rule.mode,
        scope: c.rule.scope,
      },
      requester: approvalPrincipal(c.requester),
      requestDigest: c.requestDigest,
      hold: { gatewayId: c.hold.gatewayId, instanceId: c.hold.instanceId, holdId: c.hold.holdId },
      context: {
        requestId: c.context.requestId,
        sessionId: c.context.sessionId,
        model: c.context.model,
        route: c.context.route,
        // Mask before cutting: a cut could split a card number into digits the scanner no longer sees.
        promptExcerpt: cut(masked(c.context.promptExcerpt), MAX_EXCERPT_CHARS),
        reasons: c.context.reasons.map(masked),
        justification: justification === undefined || justification === null ? null : cut(masked(justification), MAX_REASON_CHARS),
      },
      expiresAtMs: nowMs + c.rule.expiresAfterMs,
      releaseWindowMs,
    },
  ]);
}

/**
 * Fold one event into the state. Total: an event that does not apply (unknown approval, a second
 * `requested`, a vote after the end) leaves the state as it is, so replaying a log with
 * re-delivered events gives the same state.
 */
export function evolve(state: ApprovalState | undefined, event: ApprovalEvent): ApprovalState | undefined {
  if (event.type === 'requested') {
    if (state !== undefined) return state;
    return {
      approvalId: event.approvalId,
      status: 'pending',
      rule: event.rule,
      requester: event.requester,
      requestDigest: event.requestDigest,
      hold: event.hold,
      context: event.context,
      requestedAtMs: event.atMs,
      expiresAtMs: event.expiresAtMs,
      releaseWindowMs: event.releaseWindowMs,
      votes: [],
      decidedAtMs: null,
      releaseByMs: null,
      closedAtMs: null,
      expiredStage: null,
      cancelReason: null,
    };
  }
  if (state === undefined || state.approvalId !== event.approvalId) return state;
  switch (event.type) {
    case 'decided': {
      if (state.status !== 'pending' || state.votes.some((v) => samePrincipal(v.approver, event.approver))) return state;
      const votes = [...state.votes, { approver: event.approver, decision: event.decision, reason: event.reason, atMs: event.atMs }];
      if (event.decision === 'rejected') return { ...state, votes, status: 'rejected', decidedAtMs: event.atMs };
      if (!event.quorumMet) return { ...state, votes };
      return { ...state, votes, status: 'approved', decidedAtMs: event.atMs, releaseByMs: event.atMs + state.releaseWindowMs };
    }
    case 'expired':
      if (state.status !== 'pending' && state.status !== 'approved') return state;
      return { ...state, status: 'expired', closedAtMs: event.atMs, expiredStage: event.stage };
    case 'released':
      if (state.status !== 'approved') return state;
      return { ...state, status: 'released', closedAtMs: event.atMs };
    case 'cancelled':
      if (state.status !== 'pending' && state.status !== 'approved') return state;
      return { ...state, status: 'cancelled', closedAtMs: event.atMs, cancelReason: event.reason };
    default: {
      const never: never = event;
      return never;
    }
  }
}

/** The state after a sequence of events about one approval. */
export function replay(events: Iterable<ApprovalEvent>, initial?: ApprovalState): ApprovalState | undefined {
  let state = initial;
  for (const e of events) state = evolve(state, e);
  return state;
}

/** When the next `expire` command can change this approval, or null if it never will. */
export function dueAtMs(state: ApprovalState): number | null {
  if (state.status === 'pending') return state.expiresAtMs;
  if (state.status === 'approved') return state.releaseByMs;
  return null;
}

export function isOpen(state: ApprovalState): boolean {
  return state.status === 'pending' || state.status === 'approved';
}


