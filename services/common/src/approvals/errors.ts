import { AttestError } from '../errors';

/**
 * Why an approval command was refused. Stable codes: the console and the gateway switch on them,
 * and they appear in the gateway's Anthropic-style errors as `[attest:CODE]`.
 */
export const APPROVAL_ERROR_CODES = {
  approval_not_found: { status: 404, fix: 'check the approval id; approvals are kept only while the processor retains them' },
  approval_exists: { status: 409, fix: 'generate a fresh approval id for each request' },
  approval_invalid_command: { status: 400, fix: 'see the message for the field to correct' },
  approval_self_approval: { status: 403, fix: 'another member of an approver group must decide' },
  approval_not_approver: { status: 403, fix: "ask a member of one of the rule's approver groups" },
  approval_not_human: { status: 403, fix: 'sign in to the console as a person; agents and services cannot decide approvals' },
  approval_duplicate_vote: { status: 409, fix: 'each approver votes once; another approver must add the next approval' },
  approval_reason_required: { status: 400, fix: 'say why you approve or deny' },
  approval_reason_too_long: { status: 400, fix: 'shorten the reason' },
  approval_expired: { status: 409, fix: 'the approval expired; send the request again to ask for a new approval' },
  approval_already_decided: { status: 409, fix: 'the approval is already approved or rejected; nothing more to decide' },
  approval_cancelled: { status: 409, fix: 'the held request is gone (caller disconnected or gateway restarted); send it again' },
  approval_pending: { status: 409, fix: 'wait for the approvers to decide, then retry' },
  approval_rejected: { status: 403, fix: 'the request was denied; see the approver’s reason' },
  approval_already_released: { status: 409, fix: 'an approval releases one request once; ask for a new approval' },
  approval_digest_mismatch: { status: 403, fix: 'retry exactly the request that was approved (same route, model and body)' },
  approval_requester_mismatch: { status: 403, fix: 'only the caller who asked for the approval can use it' },
  approval_hold_mismatch: { status: 409, fix: 'the approval belongs to a different held request; it cannot release this one' },
  approval_unavailable: { status: 503, fix: 'the decision could not be recorded; retry' },
} as const satisfies Record<string, { status: number; fix: string }>;

export type ApprovalErrorCode = keyof typeof APPROVAL_ERROR_CODES;

export class ApprovalError extends AttestError<ApprovalErrorCode> {
  /** The approval the command was about. */
  readonly approvalId: string;

  constructor(code: ApprovalErrorCode, approvalId: string, message: string, opts: { where?: string; cause?: unknown } = {}) {
    super(code, message, {
      fix: APPROVAL_ERROR_CODES[code].fix,
      // Only recording can fail transiently; every other refusal is about the command itself.
      retriable: code === 'approval_unavailable',
      ...(opts.where === undefined ? {} : { where: opts.where }),
      ...(opts.cause === undefined ? {} : { cause: opts.cause }),
    });
    this.name = 'ApprovalError';
    this.approvalId = approvalId;
  }

  /** The HTTP status the console or the gateway answers with. */
  get httpStatus(): number {
    return APPROVAL_ERROR_CODES[this.code].status;
  }
}
