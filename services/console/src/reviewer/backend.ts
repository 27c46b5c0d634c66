/**
 * The seam between the reviewer console (pages and API) and the approval domain. The console never
 * decides anything itself: who may decide what (no self-approval, quorum, expiry, group rules of
 * the policy) is the backend's job. The console only authenticates the reviewer, gates on the
 * configured reviewer groups, and shows or forwards.
 *
 * The lead implements this over the real ApprovalBook; tests use an in-memory recorder.
 */

/** Who is looking or deciding, as established by the console (session or bearer token). */
export interface ReviewerIdentity {
  issuer: string;
  /**
   * The person (or party) the decision is attributed to. For a delegated token (RFC 8693, e.g. a
   * chat bot acting for a person) this is the person (`sub`), not the bot.
   */
  subject: string;
  name?: string;
  groups: string[];
  /** human for browser sign-ins; from the token for API callers. */
  kind: 'human' | 'agent' | 'service';
  /** The acting party of a delegated token (`act.sub`, e.g. the chat bot), when there is one. */
  actor?: string;
  /** How the reviewer reached the console: evidence of the channel for the decision event. */
  channel: 'browser' | 'api';
}

export interface PendingApprovalView {
  approvalId: string;
  ruleId: string;
  reasons: string[];
  requester: { issuer: string; subject: string; kind: string };
  model: string;
  route: string;
  /** Already masked by the domain; the console masks PANs again before showing it. */
  maskedPrompt: string;
  riskSignals: string[];
  /** ISO 8601 with zone. */
  requestedAt: string;
  /** ISO 8601 with zone. */
  expiresAt: string;
  quorum: number;
  approvals: number;
  mode: 'hold' | 'ask_and_retry';
}

export interface DecisionView {
  approvalId: string;
  decision: 'approved' | 'rejected' | 'expired';
  /** Subjects of the deciders (empty for an expiry). */
  by: string[];
  reason: string | null;
  /** ISO 8601 with zone. */
  decidedAt: string;
  ruleId: string;
}

export type ReviewerDecision = 'approve' | 'deny';

/**
 * A refusal from the domain. `code` is the domain's stable code (e.g. `approval_not_found`,
 * `self_approval_forbidden`, `already_decided`, `approval_expired`); the console passes it through
 * unchanged and picks the HTTP status from DECISION_ERROR_STATUS (409 for codes it does not know).
 */
export type DecideResult = { ok: true; state: string } | { ok: false; code: string; message: string };

export interface ReviewerBackend {
  /** Pending approvals the viewer may decide (excluding the viewer's own requests), oldest first. */
  listPending(viewer: ReviewerIdentity): Promise<PendingApprovalView[]>;
  /** The most recent decisions the viewer may see, newest first, at most `limit`. */
  recentDecisions(viewer: ReviewerIdentity, limit: number): Promise<DecisionView[]>;
  /** Records one reviewer's approve or deny; `state` is the approval's state afterwards. */
  decide(viewer: ReviewerIdentity, approvalId: string, decision: ReviewerDecision, reason: string): Promise<DecideResult>;
}
