import { AttestError } from '../errors';
import type { AuthFailureReason } from './types';

const DEFAULT_MESSAGES: Record<AuthFailureReason, string> = {
  token_missing: 'no access token: send "Authorization: Bearer <token>" with an access token from your identity provider',
  token_too_large: 'the access token is larger than this gateway accepts',
  token_malformed: 'the access token is not a well-formed signed JWT',
  alg_not_allowed: 'the access token is signed with an algorithm this gateway does not accept',
  unknown_issuer: 'the access token comes from an issuer this gateway does not trust',
  unknown_kid: 'the access token is signed with a key its issuer does not publish',
  bad_signature: 'the access token signature is invalid',
  token_expired: 'the access token has expired; request a new one',
  token_not_yet_valid: 'the access token is not valid yet; check the clocks of the issuer and the gateway',
  wrong_audience: 'the access token was not issued for this gateway (audience mismatch)',
  missing_claim: 'the access token lacks a required claim',
  issuer_unavailable: 'the identity provider could not be reached for its signing keys; retry shortly',
};

const FIXES: Partial<Record<AuthFailureReason, string>> = {
  token_missing: 'obtain an access token from your identity provider and send it as a Bearer token',
  token_expired: 'request a fresh access token',
  wrong_audience: 'request the token for this gateway (the audience configured in identity.issuers)',
  issuer_unavailable: 'retry; if it persists, check that the identity provider is reachable from the gateway',
};

/**
 * Authentication failed. `message` is safe to return to the caller: it never contains the token
 * or any claim value from it (those are attacker-controlled and may be sensitive). `detail` is a
 * little more precise for operators' logs and equally token-free.
 */
export class AuthError extends AttestError<AuthFailureReason> {
  /** The configured issuer the token was routed to, when it got that far. */
  readonly issuer: string | undefined;
  /** Operator-facing detail (e.g. which claim check failed). Never contains token content. */
  readonly detail: string | undefined;

  constructor(
    reason: AuthFailureReason,
    opts: { message?: string; issuer?: string; detail?: string; cause?: unknown } = {},
  ) {
    const fix = FIXES[reason];
    super(reason, opts.message ?? DEFAULT_MESSAGES[reason], {
      retriable: reason === 'issuer_unavailable',
      ...(fix === undefined ? {} : { fix }),
      ...(opts.cause === undefined ? {} : { cause: opts.cause }),
    });
    this.name = 'AuthError';
    this.issuer = opts.issuer;
    this.detail = opts.detail;
  }

  get reason(): AuthFailureReason {
    return this.code;
  }

  /** 503 when the IdP is unreachable (the caller did nothing wrong), 401 otherwise. */
  get httpStatus(): 401 | 503 {
    return this.code === 'issuer_unavailable' ? 503 : 401;
  }
}

export function isAuthError(err: unknown): err is AuthError {
  return err instanceof AuthError;
}
