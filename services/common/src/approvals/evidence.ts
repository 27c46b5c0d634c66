import type { Actor, ApprovalDecidedPayload, ApprovalExpiredPayload, ApprovalRequestedPayload } from '../events/types.generated';
import type { ApprovalEvent, ApprovalPrincipal, ApprovalState } from './lifecycle';

/**
 * Domain events → the signed Avro events of the evidence log. `released` and `cancelled` have no
 * Avro type yet (see the report on issue #5); they map to undefined and live only in the domain
 * log until the schemas gain them.
 */

export type ApprovalEvidence =
  | ApprovalEvidenceOf<'approval.requested', ApprovalRequestedPayload>
  | ApprovalEvidenceOf<'approval.decided', ApprovalDecidedPayload>
  | ApprovalEvidenceOf<'approval.expired', ApprovalExpiredPayload>;

interface ApprovalEvidenceOf<T extends string, P> {
  readonly type: T;
  /** Who acted; null when the approvals processor itself did (expiry): use its system actor. */
  readonly actor: Actor | null;
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

const us = (ms: number): number => Math.round(ms * 1000);

/**
 * The evidence for `event`, given `state`: the approval's state after the event was applied.
 * Undefined for events without an Avro type (released, cancelled).
 */
export function toEvidence(event: ApprovalEvent, state: ApprovalState): ApprovalEvidence | undefined {
  const base = {
    correlation: { sessionId: state.context.sessionId, requestId: state.context.requestId, upstreamRequestId: null },
    target: { protocol: 'http', service: 'anthropic', resource: state.context.route, model: state.context.model },
  } as const;
  switch (event.type) {
    case 'requested':
      return {
        ...base,
        type: 'approval.requested',
        actor: actorOf(event.requester),
        payload: {
          approvalId: event.approvalId,
          scope: event.rule.scope,
          policyRuleId: event.rule.id,
          justification: event.context.justification ?? null,
          approverGroups: [...event.rule.approverGroups],
          quorum: event.rule.quorum,
          expiresAtUs: us(event.expiresAtMs),
        },
      };
    case 'decided':
      return {
        ...base,
        type: 'approval.decided',
        actor: actorOf(event.approver),
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
        payload: {
          approvalId: event.approvalId,
          requestedAtUs: us(state.requestedAtMs),
          expiresAtUs: us(event.stage === 'pending' ? state.expiresAtMs : (state.releaseByMs ?? state.expiresAtMs)),
          approvals: state.votes.filter((v) => v.decision === 'approved').length,
          quorum: state.rule.quorum,
        },
      };
    case 'released':
    case 'cancelled':
      return undefined;
    default: {
      const never: never = event;
      return never;
    }
  }
}
