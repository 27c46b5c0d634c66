import { APPROVAL_ERROR_CODES } from '../../../common/src/approvals/errors';
import { AttestError } from '../../../common/src/errors';
import type { AuthFailureReason } from '../../../common/src/identity';

/**
 * Stable codes of the reviewer console (pages and `/v1/approvals` API). Callers switch on the code,
 * never the message. Refusals of a decision by the approval domain keep the domain's own code (see
 * DECISION_ERROR_STATUS); everything else is one of these.
 */
export const REVIEWER_ERROR_CODES = [
  'auth_token_missing',
  'auth_token_too_large',
  'auth_token_malformed',
  'auth_alg_not_allowed',
  'auth_unknown_issuer',
  'auth_unknown_kid',
  'auth_bad_signature',
  'auth_token_expired',
  'auth_token_not_yet_valid',
  'auth_wrong_audience',
  'auth_missing_claim',
  'auth_issuer_unavailable',
  'reviewer_role_required',
  'session_required',
  'csrf_failed',
  'login_expired',
  'login_failed',
  'login_refused',
  'idp_unavailable',
  'session_too_large',
  'invalid_parameter',
  'invalid_json',
  'invalid_body',
  'unsupported_media_type',
  'body_too_large',
  'approval_not_found',
  'approvals_unavailable',
  'route_not_found',
  'internal_error',
] as const;
export type ReviewerErrorCode = (typeof REVIEWER_ERROR_CODES)[number];

export class ReviewerError extends AttestError<ReviewerErrorCode> {
  constructor(
    readonly status: number,
    code: ReviewerErrorCode,
    message: string,
    opts: { where?: string; fix?: string; retriable?: boolean; cause?: unknown } = {},
  ) {
    super(code, message, opts);
    this.name = 'ReviewerError';
  }
}

export const authErrorCode = (reason: AuthFailureReason): ReviewerErrorCode => `auth_${reason}`;

/**
 * HTTP status for the approval domain's refusal codes: the domain's own table
 * (APPROVAL_ERROR_CODES[code].status), which the console passes through unchanged. The short
 * names of the in-memory twin (MemoryReviewerBackend) are kept as aliases. A code not listed here
 * is answered 409 (the request was well-formed, the approval's state refuses it).
 */
export const DECISION_ERROR_STATUS: Readonly<Record<string, number>> = {
  ...Object.fromEntries(Object.entries(APPROVAL_ERROR_CODES).map(([code, { status }]) => [code, status])),
  not_found: 404,
  self_approval_forbidden: 403,
  self_approval: 403,
  not_an_approver: 403,
  approver_not_eligible: 403,
  forbidden: 403,
  reason_required: 400,
  invalid_reason: 400,
  already_decided: 409,
  already_voted: 409,
};

export const decisionErrorStatus = (code: string): number =>
  Object.hasOwn(DECISION_ERROR_STATUS, code) ? (DECISION_ERROR_STATUS[code] as number) : 409;

/** The reviewer options cannot work as given; raised by registerReviewer before anything is served. */
export class ReviewerConfigError extends AttestError<'reviewer_config_invalid'> {
  constructor(message: string, where: string, fix: string) {
    super('reviewer_config_invalid', message, { where, fix });
    this.name = 'ReviewerConfigError';
  }
}
