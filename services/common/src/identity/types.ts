import type { JSONWebKeySet } from 'jose';

/** Caller kinds recorded in evidence (the event model's actor.kind). */
export type PrincipalKind = 'human' | 'agent' | 'service';

/** One trusted token issuer (an OIDC provider, or the development issuer). */
export interface IssuerOptions {
  /** Exact `iss` value; compared byte for byte (a trailing slash matters, as in OIDC). */
  issuer: string;
  /** Default `${issuer}/.well-known/openid-configuration` (without a doubled slash). */
  discoveryUrl?: string;
  /** Skip discovery and fetch keys from here. */
  jwksUri?: string;
  /** Local public keys (the development issuer): no network at all. */
  jwks?: JSONWebKeySet;
  /** The token's `aud` must contain at least one of these. */
  audiences: string[];
  /**
   * Where the caller's groups are. Default 'groups'. A claim whose name literally contains dots
   * (Auth0-style 'https://example.com/groups') is tried first, then a dotted path
   * ('realm_access.roles'). The value may be a string or an array of strings.
   */
  groupsClaim?: string;
  /**
   * Allowed JWS algorithms, asymmetric only. Default RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384
   * ES512 EdDSA. Any HS* or `none` here is a configuration error, never silently accepted.
   */
  algorithms?: string[];
  /**
   * Claims that must be present. Default ['sub', 'exp', 'iat']. `sub` and `exp` are required even
   * if left out here: a caller without a subject or a token that never expires is never accepted.
   */
  requiredClaims?: string[];
  /**
   * Pin the kind of specific OAuth clients (by client_id / azp). Wins over the token's
   * `attest_kind` claim and over the heuristic, because the gateway operator owns this file.
   */
  kindByClientId?: Record<string, PrincipalKind>;
  /**
   * Allow plain-http discovery/JWKS URLs for non-loopback hosts. Off by default: keys fetched over
   * http can be swapped by anyone on the path, which defeats every signature check.
   */
  allowInsecureHttp?: boolean;
  /** Marks the development issuer: every principal it yields carries `dev: true`. */
  dev?: boolean;
}

/** Who is calling, as established from a verified access token. */
export interface Principal {
  /** The acting party: `act.sub` for a delegated (RFC 8693) token, otherwise `sub`. */
  subject: string;
  issuer: string;
  /** OAuth client: `client_id`, else `azp`, else Okta's `cid`, else Azure's `appid`. */
  clientId?: string;
  groups: string[];
  kind: PrincipalKind;
  /** For a delegated token (has `act`): the token's `sub`, the party the actor works for. */
  onBehalfOf?: string;
  tokenId?: string;
  /** Token expiry, seconds since the epoch (the JWT `exp`). */
  expiresAt: number;
  /** Seconds since the epoch (the JWT `iat`). */
  issuedAt?: number;
  amr?: string[];
  acr?: string;
  /** Set (true) only for tokens of an issuer configured with `dev: true` (the development issuer). */
  dev?: boolean;
}

export type AuthFailureReason =
  | 'token_missing'
  | 'token_too_large'
  | 'token_malformed'
  | 'alg_not_allowed'
  | 'unknown_issuer'
  | 'unknown_kid'
  | 'bad_signature'
  | 'token_expired'
  | 'token_not_yet_valid'
  | 'wrong_audience'
  | 'missing_claim'
  | 'issuer_unavailable';

export const AUTH_FAILURE_REASONS: readonly AuthFailureReason[] = [
  'token_missing',
  'token_too_large',
  'token_malformed',
  'alg_not_allowed',
  'unknown_issuer',
  'unknown_kid',
  'bad_signature',
  'token_expired',
  'token_not_yet_valid',
  'wrong_audience',
  'missing_claim',
  'issuer_unavailable',
];

/** pino-compatible: `logger.warn(obj, msg)`. Nothing logged through it ever contains a token. */
export interface IdentityLogger {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export interface TokenVerifierOptions {
  issuers: IssuerOptions[];
  /** Leeway for exp / nbf / iat, seconds. Default 30. */
  clockToleranceSec?: number;
  /** Tokens longer than this are refused before any parsing. Default 8192. */
  maxTokenBytes?: number;
  /** Minimum gap between JWKS refetches triggered by unknown `kid`s, per issuer. Default 30000. */
  jwksCooldownMs?: number;
  /**
   * Age after which keys are refreshed in the background (the request is not held up, and the old
   * keys stay in use if the refresh fails). Default 600000 (10 minutes).
   */
  jwksCacheMaxAgeMs?: number;
  /** Timeout for discovery and JWKS requests. Default 5000. */
  httpTimeoutMs?: number;
  /**
   * After a failed discovery or JWKS fetch, requests for that issuer fail fast with
   * `issuer_unavailable` for this long before the network is tried again. Default 1000. This keeps
   * an IdP outage from turning every request into an outbound connection attempt.
   */
  issuerRetryMs?: number;
  /**
   * Clock for token time claims (exp, nbf, iat), milliseconds. Default Date.now. The key caches'
   * timers (cooldown, max age, retry) use Date.now, as jose's remote key set does.
   */
  now?: () => number;
  /**
   * How many verified tokens to remember (by SHA-256), so a token reused for many requests has its
   * signature checked once. Time claims are still checked on every request, and entries are dropped
   * when the issuer's key set changes. Default 10000; 0 disables.
   */
  verifiedCacheSize?: number;
  logger?: IdentityLogger;
}

export interface IssuerStatus {
  issuer: string;
  ok: boolean;
  /** Caller-safe description when not ok. */
  error?: string;
}

export interface TokenVerifier {
  /** Resolves with the caller, or rejects with an AuthError naming the reason. */
  verify(token: string | undefined): Promise<Principal>;
  readonly issuers: string[];
  /**
   * Fetch discovery documents and keys for every issuer now (e.g. at startup), so the first
   * request does not pay for them. Never throws; an issuer that fails is retried lazily later.
   */
  warm(): Promise<IssuerStatus[]>;
}
