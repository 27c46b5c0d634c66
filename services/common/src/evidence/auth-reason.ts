import type { AuthFailedPayload } from '../events';
import type { AuthFailureReason } from '../identity';

/**
 * The verifier's precise failure reasons in the event schema's coarser vocabulary. Producers keep
 * the precise reason in `outcome.reason`; this is `payload.reasonCode`.
 */
export const AUTH_REASON_CODE: Record<AuthFailureReason, AuthFailedPayload['reasonCode']> = {
  token_missing: 'missing_credentials',
  token_too_large: 'malformed_credentials',
  token_malformed: 'malformed_credentials',
  alg_not_allowed: 'malformed_credentials',
  unknown_issuer: 'unknown_issuer',
  unknown_kid: 'bad_signature',
  bad_signature: 'bad_signature',
  token_expired: 'expired',
  token_not_yet_valid: 'not_yet_valid',
  wrong_audience: 'wrong_audience',
  missing_claim: 'malformed_credentials',
  issuer_unavailable: 'unknown',
};
