import type { TokenVerifier } from '../../../common/src/identity';
import type { ReviewerBackend } from './backend';
import { ReviewerConfigError } from './errors';
import { cookieNames, deriveSessionKeys, MIN_SESSION_KEY_BYTES, type CookieNames, type SessionKeys } from './session';

/** pino-compatible; nothing logged through it carries a token, a cookie or a prompt. */
export interface ReviewerLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** The reviewer console's sign-in: an OIDC relying party (authorization code + PKCE). */
export interface ReviewerOidcOptions {
  /** Exact issuer; discovery at `${issuer}/.well-known/openid-configuration`. */
  issuer: string;
  clientId: string;
  /** Confidential client (client_secret_basic) when set; public client (PKCE only) otherwise. */
  clientSecret?: string;
  /** Must be `${publicUrl}/reviewer/callback`, registered at the IdP. */
  redirectUri: string;
  /** Requested scopes; `openid` is added when missing. */
  scopes: string[];
  /** ID token claim with the groups (a literal name or a dotted path, as in the verifier). */
  groupsClaim: string;
}

export interface ReviewerDeps {
  backend: ReviewerBackend;
  /** Verifies the API's bearer tokens (the console's existing verifier). */
  verifier: TokenVerifier;
  oidc: ReviewerOidcOptions;
  /** Only members of one of these groups get in, in the browser and through the API. */
  reviewerGroups: readonly string[];
  /** Secret for the sealed session cookies (at least 32 bytes), from config or a secret store. */
  sessionKey: string | Uint8Array;
  logger: ReviewerLogger;
  /** The console's external origin, e.g. https://attest.example.com (https makes cookies Secure). */
  publicUrl: string;
  /** Session lifetime. Default 3600 (one hour); at most 12 hours. */
  sessionTtlSec?: number;
  /** How many recent decisions the page shows. Default 20. */
  recentDecisions?: number;
  /** Timeout for discovery and token requests to the IdP. Default 10 000. */
  idpTimeoutMs?: number;
  /** Wall clock, milliseconds (tests). */
  now?: () => number;
  /**
   * Records sign-ins as evidence (PCI DSS 10.2.1: every individual access). A successful sign-in
   * is refused when its evidence cannot be recorded (fail closed); refusals are recorded best effort.
   */
  audit?: ReviewerAudit;
}

export interface ReviewerAudit {
  signedIn(user: { issuer: string; subject: string; groups: readonly string[] }, from: { ip: string; userAgent: string | null }): Promise<void>;
  /** reason: 'not_a_reviewer', or the login failure ('login_refused', 'login_failed'). */
  signInRefused(reason: string, user: { issuer: string; subject: string; groups: readonly string[] } | undefined, from: { ip: string; userAgent: string | null }): Promise<void>;
}

/** The validated options and what is derived from them, shared by the login, page and API routes. */
export interface ReviewerContext {
  deps: ReviewerDeps;
  keys: SessionKeys;
  cookies: CookieNames;
  /** https: cookies are Secure and `__Host-` prefixed. */
  secure: boolean;
  publicOrigin: string;
  callbackPath: string;
  reviewerGroups: ReadonlySet<string>;
  sessionTtlSec: number;
  recentDecisions: number;
  now: () => number;
}

export const LOGIN_TTL_SEC = 600;
const MAX_SESSION_TTL_SEC = 12 * 3600;

const isLoopback = (u: URL) => u.hostname === '127.0.0.1' || u.hostname === 'localhost' || u.hostname === '[::1]';

function absoluteUrl(value: string, where: string): URL {
  if (!URL.canParse(value)) throw new ReviewerConfigError(`${where} is not an absolute URL`, where, 'write it as https://host[:port][/path]');
  const u = new URL(value);
  if (u.protocol !== 'https:' && !(u.protocol === 'http:' && isLoopback(u))) {
    throw new ReviewerConfigError(`${where} must use https (plain http only on a loopback address)`, where, 'serve it over https');
  }
  return u;
}

export function reviewerContext(deps: ReviewerDeps): ReviewerContext {
  if (deps.reviewerGroups.length === 0) {
    throw new ReviewerConfigError('no reviewer groups: nobody could sign in', 'reviewerGroups', 'list the IdP groups whose members review approvals');
  }
  let keys: SessionKeys;
  try {
    keys = deriveSessionKeys(deps.sessionKey);
  } catch {
    throw new ReviewerConfigError(`the session key is shorter than ${MIN_SESSION_KEY_BYTES} bytes`, 'sessionKey', 'generate one with `openssl rand -base64 48` and keep it in your secret store');
  }
  const publicUrl = absoluteUrl(deps.publicUrl, 'publicUrl');
  absoluteUrl(deps.oidc.issuer, 'oidc.issuer');
  const redirect = absoluteUrl(deps.oidc.redirectUri, 'oidc.redirectUri');
  if (redirect.origin !== publicUrl.origin || redirect.pathname !== '/reviewer/callback' || redirect.search !== '') {
    throw new ReviewerConfigError(
      'oidc.redirectUri must be the console callback under publicUrl',
      'oidc.redirectUri',
      `use ${publicUrl.origin}/reviewer/callback and register it at the IdP`,
    );
  }
  if (deps.oidc.clientId.length === 0) throw new ReviewerConfigError('oidc.clientId is empty', 'oidc.clientId', 'use the client id the IdP assigned to the console');
  if (deps.oidc.groupsClaim.length === 0) throw new ReviewerConfigError('oidc.groupsClaim is empty', 'oidc.groupsClaim', "name the ID token claim with the user's groups, e.g. groups");
  const ttl = deps.sessionTtlSec ?? 3600;
  if (!Number.isInteger(ttl) || ttl < 60 || ttl > MAX_SESSION_TTL_SEC) {
    throw new ReviewerConfigError('sessionTtlSec must be a whole number of seconds from 60 to 43200', 'sessionTtlSec', 'keep reviewer sessions short, e.g. 3600');
  }
  const secure = publicUrl.protocol === 'https:';
  return {
    deps,
    keys,
    cookies: cookieNames(secure),
    secure,
    publicOrigin: publicUrl.origin,
    callbackPath: redirect.pathname,
    reviewerGroups: new Set(deps.reviewerGroups),
    sessionTtlSec: ttl,
    recentDecisions: Math.min(Math.max(deps.recentDecisions ?? 20, 1), 200),
    now: deps.now ?? Date.now,
  };
}

export const isReviewer = (ctx: ReviewerContext, groups: readonly string[]): boolean => groups.some((g) => ctx.reviewerGroups.has(g));

/** Approval ids as they may appear in a path; anything else is refused before the backend sees it. */
export const APPROVAL_ID = /^[A-Za-z0-9._:-]{1,200}$/;

/** Reasons are bounded (they go into evidence) and never carry a full card number. */
export const MAX_REASON_CHARS = 1000;
