import type { ApprovalState } from './lifecycle';

/**
 * What the gateway tells a caller whose request waits on, or was refused by, an approval: the
 * parts of an Anthropic-style error (`{"type":"error","error":{"type","message"}}`) plus the stable
 * code. Pure, so the wording is tested once and the hold and ask-and-retry paths say the same.
 */

/** The header an ask-and-retry caller sends the approval id back in. */
export const APPROVAL_ID_HEADER = 'x-attest-approval-id';

export type ApprovalAnswerCode = 'approval_required' | 'approval_rejected' | 'approval_expired' | 'approval_cancelled';

export interface ApprovalAnswer {
  readonly status: number;
  /** Anthropic API error type. */
  readonly errorType: 'permission_error';
  readonly code: ApprovalAnswerCode;
  readonly message: string;
  readonly approvalId: string;
}

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** The answer for the approval as it stands; undefined when it lets the request through (approved, released). */
export function approvalAnswer(s: ApprovalState): ApprovalAnswer | undefined {
  const id = s.approvalId;
  const why = s.context.reasons.length > 0 ? s.context.reasons.join('; ') : 'required by the policy';
  const approvals = s.votes.filter((v) => v.decision === 'approved').length;
  const answer = (code: ApprovalAnswerCode, message: string): ApprovalAnswer => ({ status: 403, errorType: 'permission_error', code, message, approvalId: id });
  switch (s.status) {
    case 'approved':
    case 'released':
      return undefined;
    case 'pending':
      return answer(
        'approval_required',
        s.rule.mode === 'ask_and_retry'
          ? `This request needs approval under rule '${s.rule.id}' (${why}). Approval ${id} was requested and expires at ${iso(s.expiresAtMs)}; ` +
              `once it is approved, send the same request again with the header ${APPROVAL_ID_HEADER}: ${id}.`
          : `This request is waiting for approval ${id} under rule '${s.rule.id}' (${why}); it expires at ${iso(s.expiresAtMs)}.`,
      );
    case 'rejected': {
      const denial = s.votes.find((v) => v.decision === 'rejected');
      return answer('approval_rejected', `Approval ${id} under rule '${s.rule.id}' was denied: ${denial?.reason ?? 'no reason recorded'}.`);
    }
    case 'expired':
      return answer(
        'approval_expired',
        s.expiredStage === 'unreleased'
          ? `Approval ${id} was granted but not used before ${iso(s.releaseByMs ?? s.expiresAtMs)}; send the request again to ask for a new approval.`
          : `Approval ${id} under rule '${s.rule.id}' (${why}) expired at ${iso(s.expiresAtMs)} with ${approvals} of ${s.rule.quorum} approvals; send the request again to ask for a new approval.`,
      );
    case 'cancelled':
      return answer('approval_cancelled', `Approval ${id} was cancelled (${s.cancelReason ?? 'unknown'}); send the request again to ask for a new approval.`);
    default: {
      const never: never = s.status;
      return never;
    }
  }
}
