import { AttestError } from '../../../common/src/errors';

/**
 * Stable codes of the risk rules' refusals of administrator commands. Nothing here is I/O:
 * the same command against the same state is refused the same way, so none is retriable.
 */
export const RISK_ERROR_CODES = [
  /** A restore for an identity that is not suspended (or was already restored). */
  'risk_not_suspended',
  /** A close for a finding the risk rules do not hold open (unknown, already closed, or not theirs). */
  'risk_finding_not_open',
  /** An identity may not lift its own suspension. */
  'risk_self_restore',
  /** A restore or close without a reason: the reason is the evidence (PCI DSS 10.4.3). */
  'risk_reason_required',
] as const;

export type RiskErrorCode = (typeof RISK_ERROR_CODES)[number];

export class RiskError extends AttestError<RiskErrorCode> {
  constructor(code: RiskErrorCode, message: string, opts: { where?: string; fix?: string } = {}) {
    super(code, message, { ...opts, retriable: false });
    this.name = 'RiskError';
  }
}

export function isRiskError(err: unknown, code?: RiskErrorCode): err is RiskError {
  return err instanceof RiskError && (code === undefined || err.code === code);
}
