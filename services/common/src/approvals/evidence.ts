import type { AnyAttestEvent, AttestEvent } from '../events/types';
import type {
  Actor,
  ApprovalCancelledPayload,
  ApprovalDecidedPayload,
  ApprovalExpiredPayload,
  ApprovalReleasedPayload,
  ApprovalRequestedPayload,
  Outcome,
} from '../events/types.generated';
import { CANCEL_REASONS, type ApprovalEvent, type ApprovalPrincipal, type ApprovalState, type CancelReason, type HoldRef } from './lifecycle';
import { isRequestDigest } from './request-digest';
import { APPROVAL_MODES, type ApprovalMode } from './rules';

/**
 * Domain events ⇄ the signed Avro events of the evidence log, so the evidence log alone rebuilds
 * the approval book:
 *
 *   requested → approval.requested (v2)   decided  → approval.decided
 *   expired   → approval.expired (v2)     released → approval.released
 *   cancelled → approval.cancelled
 *
 * `toEvidence(event, state)` gives the parts of the Avro event (the producer adds tenant, source
 * and metadata with `newEvent`, using `timeUs` as the event's time); `fromEvidence(avroEvent)` is
 * the inverse, so `ApprovalBook.fromEvents(log.map(fromEvidence))` equals the book that wrote the
 * log. What the inverse cannot recover exactly:
 *
 * - Times are whole microseconds (`atMs` comes back as `metadata.timeUs / 1000`), so the producer
 *   must write the event with `timeUs` as its time; the rule's `expiresAfterMs` is
 *   `expiresAtUs - metadata.timeUs`.
 * - Principals: `dev: false`, `clientId: null` and `onBehalfOf: null` read back as absent; an actor
 *   kind a principal cannot have (`system`, `unknown`) reads back as `service` (never a person, so
 *   it can never count as an approver).
 * - approval.requested written before version 2 (no mode, digest or hold), or with a malformed
 *   digest, hold or an unknown mode: the approval is rebuilt for the record (votes, expiry,
 *   answers) but can never release a request: its digest is '' (no request digest is empty), its
 *   hold has empty ids (no hold has), its mode is 'hold' (so the empty hold must match) and its
 *   release window is 0 (an approval is past its window the moment it is approved).
 * - approval.expired before version 2 (no stage): 'unreleased' when the approvals had reached the
 *   quorum, else 'pending'.
 * - approval.decided with a decision this reader does not know ('unknown'): undefined; the vote
 *   counts for nothing, neither approving nor rejecting.
 * - approval.cancelled with a reason this reader does not know ('unknown'): still cancels (the
 *   approval is closed either way), read as 'withdrawn'.
 */

export type ApprovalEvidence =
  | ApprovalEvidenceOf<'approval.requested', ApprovalRequestedPayload>
  | ApprovalEvidenceOf<'approval.decided', ApprovalDecidedPayload>
  | ApprovalEvidenceOf<'approval.expired', ApprovalExpiredPayload>
  | ApprovalEvidenceOf<'approval.released', ApprovalReleasedPayload>
  | ApprovalEvidenceOf<'approval.cancelled', ApprovalCancelledPayload>;

export type ApprovalEvidenceType = ApprovalEvidence['type'];

export const APPROVAL_EVIDENCE_TYPES: readonly ApprovalEvidenceType[] = [
  'approval.requested',
  'approval.decided',
  'approval.expired',
  'approval.released',
  'approval.cancelled',
];

interface ApprovalEvidenceOf<T extends string, P> {
  readonly type: T;
  /**
   * When the domain event happened, in microseconds since the Unix epoch: write the Avro event with
   * this time (`newEvent`'s clock), or `fromEvidence` gives back another `atMs`.
   */
  readonly timeUs: number;
  /**
   * Who acted; null when the approvals processor or the gateway itself did (expiry, a cancel after
   * a gateway restart or shutdown): use its system actor.
   */
  readonly actor: Actor | null;
  readonly outcome: Outcome;
  /** The request the approval belongs to. */
  readonly correlation: { readonly sessionId: string; readonly requestId: string; readonly upstreamRequestId: null };
  readonly target: { readonly protocol: 'http'; readonly service: 'anthropic'; readonly resource: string; readonly model: string };
  readonly payload: P;
}

export function actorOf(p: ApprovalPrincipal): Actor {
  return {
    subject: p.subject,
    issuer: p.issuer,
    clientId: p.clientId ?? null,
    groups: [...p.groups],
    kind: p.kind,
    onBehalfOf: p.onBehalfOf ?? null,
    dev: p.dev === true,
  };
}

/** The inverse of `actorOf`: absent and null optional fields, and `dev: false`, read back as absent. */
export function principalOf(actor: Actor): ApprovalPrincipal {
  return {
    subject: actor.subject,
    issuer: actor.issuer,
    groups: [...actor.groups],
    kind: actor.kind === 'human' || actor.kind === 'agent' || actor.kind === 'service' ? actor.kind : 'service',
    ...(actor.clientId === null ? {} : { clientId: actor.clientId }),
    ...(actor.onBehalfOf === null ? {} : { onBehalfOf: actor.onBehalfOf }),
    ...(actor.dev ? { dev: true } : {}),
  };
}

const us = (ms: number): number => Math.round(ms * 1000);
const ms = (us: number): number => us / 1000;

const SUCCESS: Outcome = { result: 'success', status: null, reason: null };

/**
 * The evidence for `event`, given `state`: the approval's state after the event was applied
 * (`replay`/`evolve`, or what `ApprovalBook.execute` returns).
 */
export function toEvidence(event: ApprovalEvent, state: ApprovalState): ApprovalEvidence {
  const base = {
    timeUs: us(event.atMs),
    correlation: { sessionId: state.context.sessionId, requestId: state.context.requestId, upstreamRequestId: null },
    target: { protocol: 'http', service: 'anthropic', resource: state.context.route, model: state.context.model },
  } as const;
  switch (event.type) {
    case 'requested':
      return {
        ...base,
        type: 'approval.requested',
        actor: actorOf(event.requester),
        outcome: { result: 'unknown', status: null, reason: 'approval_required' },
        payload: {
          approvalId: event.approvalId,
          scope: event.rule.scope,
          policyRuleId: event.rule.id,
          justification: event.context.justification ?? null,
          approverGroups: [...event.rule.approverGroups],
          quorum: event.rule.quorum,
          expiresAtUs: us(event.expiresAtMs),
          mode: event.rule.mode,
          requestDigest: event.requestDigest,
          reasons: [...event.context.reasons],
          excerpt: event.context.promptExcerpt === '' ? null : event.context.promptExcerpt,
          hold: { gatewayId: event.hold.gatewayId, instanceId: event.hold.instanceId, holdId: event.hold.holdId },
          releaseWindowUs: us(event.releaseWindowMs),
        },
      };
    case 'decided':
      return {
        ...base,
        type: 'approval.decided',
        actor: actorOf(event.approver),
        outcome: SUCCESS,
        payload: {
          approvalId: event.approvalId,
          decision: event.decision,
          approvers: [...event.approvers],
          quorum: state.rule.quorum,
          quorumMet: event.quorumMet,
          comment: event.reason,
        },
      };
    case 'expired':
      return {
        ...base,
        type: 'approval.expired',
        actor: null,
        outcome: { result: 'failure', status: 403, reason: 'approval_expired' },
        payload: {
          approvalId: event.approvalId,
          requestedAtUs: us(state.requestedAtMs),
          expiresAtUs: us(event.stage === 'pending' ? state.expiresAtMs : (state.releaseByMs ?? state.expiresAtMs)),
          approvals: state.votes.filter((v) => v.decision === 'approved').length,
          quorum: state.rule.quorum,
          stage: event.stage,
        },
      };
    case 'released':
      return {
        ...base,
        type: 'approval.released',
        // The caller whose request went through: in hold mode the one who asked, in ask-and-retry
        // mode the same caller (a release by anyone else is refused).
        actor: actorOf(state.requester),
        outcome: SUCCESS,
        payload: {
          approvalId: event.approvalId,
          requestDigest: event.requestDigest,
          gatewayId: event.hold.gatewayId,
          instanceId: event.hold.instanceId,
          holdId: event.hold.holdId,
        },
      };
    case 'cancelled':
      return {
        ...base,
        type: 'approval.cancelled',
        // The caller went away or withdrew; a gateway restart or shutdown is the gateway's doing.
        actor: event.reason === 'caller_disconnected' || event.reason === 'withdrawn' ? actorOf(state.requester) : null,
        // No status: what the caller got depends on who cancelled (nothing, a 403 or a 503).
        outcome: { result: 'failure', status: null, reason: 'approval_cancelled' },
        payload: { approvalId: event.approvalId, reason: event.reason },
      };
    default: {
      const never: never = event;
      return never;
    }
  }
}

/** The digest of an approval that can never release a request: no request digest is empty. */
export const UNRELEASABLE_DIGEST = '';
/** The hold of an approval that can never release a request: no hold has empty ids. */
export const UNRELEASABLE_HOLD: HoldRef = Object.freeze({ gatewayId: '', instanceId: '', holdId: '' });

/**
 * The domain event an approval.* evidence event records, the inverse of `toEvidence`; undefined
 * for any other type and for a decision this reader does not know. See the module comment for
 * what cannot be recovered exactly, and how approvals requested before version 2 are kept from
 * ever releasing a request.
 */
export function fromEvidence(event: AnyAttestEvent): ApprovalEvent | undefined {
  const atMs = ms(event.metadata.timeUs);
  switch (event.metadata.type) {
    case 'approval.requested':
      return requestedFrom(event as AttestEvent<'approval.requested'>, atMs);
    case 'approval.decided': {
      const p = (event as AttestEvent<'approval.decided'>).payload;
      if (p.decision !== 'approved' && p.decision !== 'rejected') return undefined;
      return {
        type: 'decided',
        approvalId: p.approvalId,
        atMs,
        approver: principalOf(event.actor),
        decision: p.decision,
        reason: p.comment ?? '',
        approvers: [...p.approvers],
        quorumMet: p.quorumMet,
      };
    }
    case 'approval.expired': {
      const p = (event as AttestEvent<'approval.expired'>).payload;
      const stage = p.stage === 'pending' || p.stage === 'unreleased' ? p.stage : p.approvals >= p.quorum ? 'unreleased' : 'pending';
      return { type: 'expired', approvalId: p.approvalId, atMs, stage };
    }
    case 'approval.released': {
      const p = (event as AttestEvent<'approval.released'>).payload;
      return {
        type: 'released',
        approvalId: p.approvalId,
        atMs,
        requestDigest: p.requestDigest,
        hold: { gatewayId: p.gatewayId, instanceId: p.instanceId, holdId: p.holdId },
      };
    }
    case 'approval.cancelled': {
      const p = (event as AttestEvent<'approval.cancelled'>).payload;
      const reason: CancelReason = (CANCEL_REASONS as readonly string[]).includes(p.reason) ? (p.reason as CancelReason) : 'withdrawn';
      return { type: 'cancelled', approvalId: p.approvalId, atMs, reason };
    }
    default:
      return undefined;
  }
}

function requestedFrom(event: AttestEvent<'approval.requested'>, atMs: number): ApprovalEvent {
  const p = event.payload;
  const mode = (APPROVAL_MODES as readonly (string | null)[]).includes(p.mode) ? (p.mode as ApprovalMode) : null;
  const digest = p.requestDigest !== null && isRequestDigest(p.requestDigest) ? p.requestDigest : null;
  const hold = p.hold !== null && p.hold.gatewayId !== '' && p.hold.instanceId !== '' && p.hold.holdId !== '' ? p.hold : null;
  const releasable = mode !== null && digest !== null && hold !== null;
  const expiresAtMs = ms(p.expiresAtUs);
  const expiresAfterMs = expiresAtMs - atMs;
  return {
    type: 'requested',
    approvalId: p.approvalId,
    atMs,
    rule: {
      id: p.policyRuleId,
      approverGroups: [...p.approverGroups],
      quorum: p.quorum,
      expiresAfterMs,
      mode: releasable ? mode : 'hold',
      scope: p.scope,
    },
    requester: principalOf(event.actor),
    requestDigest: releasable ? digest : UNRELEASABLE_DIGEST,
    hold: releasable ? { gatewayId: hold.gatewayId, instanceId: hold.instanceId, holdId: hold.holdId } : { ...UNRELEASABLE_HOLD },
    context: {
      requestId: event.correlation.requestId,
      sessionId: event.correlation.sessionId,
      model: event.target.model ?? '',
      route: event.target.resource,
      promptExcerpt: p.excerpt ?? '',
      reasons: [...p.reasons],
      justification: p.justification,
    },
    expiresAtMs,
    // The domain's default window is the rule's expiry; an unreleasable approval gets none.
    releaseWindowMs: !releasable ? 0 : p.releaseWindowUs !== null ? ms(p.releaseWindowUs) : expiresAfterMs,
  };
}
