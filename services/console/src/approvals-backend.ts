import type { ApprovalPrincipal, ApprovalState } from '../../common/src/approvals';
import type { ApprovalService } from '../../common/src/approvals/service';
import type { DecideResult, DecisionView, PendingApprovalView, ReviewerBackend, ReviewerDecision, ReviewerIdentity } from './reviewer/backend';

/**
 * The reviewer console's backend over the ApprovalService: the real approval rules (who may
 * decide, quorum, expiry, no self-approval) are the domain's; this only translates.
 *
 * Choices:
 * - Identity. A browser sign-in or a person's own token decides as itself (kind from the token:
 *   an agent or service is refused by the domain with `approval_not_human`). A delegated token
 *   (RFC 8693 `act`, e.g. a chat bot relaying a person's click) decides as the person: subject =
 *   the person, kind 'human', and the acting party is kept as `clientId`, so the evidence
 *   (approval.decided actor) names both. The person's own eligibility (groups, not the requester,
 *   one vote) is what the domain checks.
 * - Refusals keep the domain's stable codes (`approval_self_approval`, `approval_not_approver`,
 *   `approval_duplicate_vote`, `approval_expired`, ...); DECISION_ERROR_STATUS maps them to HTTP
 *   statuses from APPROVAL_ERROR_CODES. `approval_unavailable` (the decision could not be recorded)
 *   is thrown instead, so the console answers its own retriable `approvals_unavailable` 503.
 * - Pending: what the viewer may decide now, oldest request first.
 * - Recent decisions: approvals whose approver groups include one of the viewer's groups (or that
 *   the viewer voted on). released → 'approved' (it was approved, then used); expired → 'expired';
 *   cancelled → 'expired' too (the request is gone and nobody decided it: the view has no
 *   'cancelled'), with the reason 'cancelled: <reason>' and no deciders. An approved or rejected
 *   one is dated by its decision, an expired or cancelled one by its closing.
 */
/**
 * The requester's current risk signals (e.g. open risk findings, with severity), when this process
 * has the risk processor's view: `attest start` passes it; a console run alone shows none.
 */
export type RiskSignalsOf = (requester: { issuer: string; subject: string }) => string[];

export function approvalsBackend(service: ApprovalService, riskSignalsOf?: RiskSignalsOf): ReviewerBackend {
  return {
    async listPending(viewer) {
      return service
        .pendingFor(principalOfReviewer(viewer))
        .sort((a, b) => a.requestedAtMs - b.requestedAtMs || (a.approvalId < b.approvalId ? -1 : a.approvalId > b.approvalId ? 1 : 0))
        .map((s) => {
          const view = pendingView(s);
          return riskSignalsOf ? { ...view, riskSignals: riskSignalsOf(s.requester) } : view;
        });
    },

    async recentDecisions(viewer, limit) {
      if (!(limit > 0)) return [];
      const out: DecisionView[] = [];
      for (const s of service.recentDecisions(Number.MAX_SAFE_INTEGER)) {
        if (!visibleTo(s, viewer)) continue;
        out.push(decisionView(s));
        if (out.length >= limit) break;
      }
      return out;
    },

    async decide(viewer: ReviewerIdentity, approvalId: string, decision: ReviewerDecision, reason: string): Promise<DecideResult> {
      const result = await service.execute({ type: decision, approvalId, approver: principalOfReviewer(viewer), reason });
      if (!result.ok) {
        if (result.error.code === 'approval_unavailable') throw result.error;
        return { ok: false, code: result.error.code, message: result.error.message };
      }
      return { ok: true, state: result.state?.status ?? 'pending' };
    },
  };
}

/** The approval principal a reviewer decides as (see the module comment for delegated tokens). */
export function principalOfReviewer(viewer: ReviewerIdentity): ApprovalPrincipal {
  const base = { subject: viewer.subject, issuer: viewer.issuer, groups: [...viewer.groups] };
  if (viewer.actor !== undefined) return { ...base, kind: 'human', clientId: viewer.actor };
  return { ...base, kind: viewer.kind };
}

const iso = (ms: number): string => new Date(ms).toISOString();

export function pendingView(s: ApprovalState): PendingApprovalView {
  return {
    approvalId: s.approvalId,
    ruleId: s.rule.id,
    reasons: [...s.context.reasons],
    requester: { issuer: s.requester.issuer, subject: s.requester.subject, kind: s.requester.kind },
    model: s.context.model,
    route: s.context.route,
    maskedPrompt: s.context.promptExcerpt,
    riskSignals: [],
    requestedAt: iso(s.requestedAtMs),
    expiresAt: iso(s.expiresAtMs),
    quorum: s.rule.quorum,
    approvals: s.votes.filter((v) => v.decision === 'approved').length,
    mode: s.rule.mode,
  };
}

export function decisionView(s: ApprovalState): DecisionView {
  const base = { approvalId: s.approvalId, ruleId: s.rule.id };
  const closedAt = iso(s.closedAtMs ?? s.decidedAtMs ?? s.requestedAtMs);
  switch (s.status) {
    case 'approved':
    case 'released': {
      const approvals = s.votes.filter((v) => v.decision === 'approved');
      return { ...base, decision: 'approved', by: approvals.map((v) => v.approver.subject), reason: approvals.at(-1)?.reason ?? null, decidedAt: iso(s.decidedAtMs ?? s.requestedAtMs) };
    }
    case 'rejected': {
      const denial = s.votes.find((v) => v.decision === 'rejected');
      return { ...base, decision: 'rejected', by: denial ? [denial.approver.subject] : [], reason: denial?.reason ?? null, decidedAt: iso(s.decidedAtMs ?? s.requestedAtMs) };
    }
    case 'expired':
      return { ...base, decision: 'expired', by: [], reason: s.expiredStage === 'unreleased' ? 'approved but not used in time' : 'not decided in time', decidedAt: closedAt };
    case 'cancelled':
      return { ...base, decision: 'expired', by: [], reason: `cancelled: ${s.cancelReason ?? 'unknown'}`, decidedAt: closedAt };
    case 'pending':
      // Not a decision; recentDecisions never lists one.
      return { ...base, decision: 'expired', by: [], reason: null, decidedAt: closedAt };
    default: {
      const never: never = s.status;
      return never;
    }
  }
}

function visibleTo(s: ApprovalState, viewer: ReviewerIdentity): boolean {
  return (
    viewer.groups.some((g) => s.rule.approverGroups.includes(g)) ||
    s.votes.some((v) => v.approver.issuer === viewer.issuer && v.approver.subject === viewer.subject)
  );
}
