import { hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { EncryptJWT, jwtDecrypt } from 'jose';
import type { ReviewerIdentity } from './backend';

/**
 * Sealed cookies: the reviewer's session and the in-flight login (state, nonce, PKCE verifier).
 * Both are JWTs encrypted with A256GCM under keys derived (HKDF-SHA256) from the console's own
 * session key, never from anything the IdP controls: nothing in them can be read or forged by the
 * browser, and a login cookie can never be replayed as a session (different key and audience).
 *
 * The session is stateless, so logout only clears the cookie; a copied cookie stays valid until its
 * short expiry. That is the trade for not needing a session store.
 */

export const MIN_SESSION_KEY_BYTES = 32;

export interface SessionKeys {
  session: Uint8Array;
  login: Uint8Array;
}

/** Separate keys per purpose from one configured secret (at least 32 bytes). */
export function deriveSessionKeys(secret: string | Uint8Array): SessionKeys {
  const ikm = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : Buffer.from(secret);
  if (ikm.length < MIN_SESSION_KEY_BYTES) throw new RangeError(`the session key must be at least ${MIN_SESSION_KEY_BYTES} bytes`);
  const derive = (info: string) => new Uint8Array(hkdfSync('sha256', ikm, 'attest-reviewer-console', info, 32));
  return { session: derive('session v1'), login: derive('login v1') };
}

/** What the session cookie holds: who signed in, and the CSRF token bound to this session. */
export interface ReviewerSession {
  identity: { issuer: string; subject: string; name?: string; groups: string[] };
  csrf: string;
  /** Seconds since the epoch. */
  expiresAt: number;
}

/** The login in flight between /login and the callback. */
export interface LoginTransaction {
  state: string;
  nonce: string;
  codeVerifier: string;
  /** A path under the console to go to after signing in. */
  returnTo: string;
}

const SESSION_AUD = 'attest-reviewer-session';
const LOGIN_AUD = 'attest-reviewer-login';
const ISS = 'attest-console';

async function seal(payload: Record<string, unknown>, key: Uint8Array, aud: string, ttlSec: number, nowMs: number): Promise<string> {
  const iat = Math.floor(nowMs / 1000);
  return new EncryptJWT(payload)
    .setProtectedHeader({ alg: 'dir', enc: 'A256GCM' })
    .setIssuer(ISS)
    .setAudience(aud)
    .setIssuedAt(iat)
    .setExpirationTime(iat + ttlSec)
    .encrypt(key);
}

async function open(token: string | undefined, key: Uint8Array, aud: string, nowMs: number): Promise<Record<string, unknown> | undefined> {
  // Cookies are small; anything larger was not written by us.
  if (token === undefined || token.length === 0 || token.length > 8192) return undefined;
  try {
    const { payload } = await jwtDecrypt(token, key, {
      issuer: ISS,
      audience: aud,
      currentDate: new Date(nowMs),
      keyManagementAlgorithms: ['dir'],
      contentEncryptionAlgorithms: ['A256GCM'],
      requiredClaims: ['exp', 'iat'],
    });
    return payload as Record<string, unknown>;
  } catch {
    // Tampered, expired, from another key or another purpose: all mean "no valid cookie".
    return undefined;
  }
}

const strings = (v: unknown): string[] | undefined => (Array.isArray(v) && v.every((g) => typeof g === 'string') ? (v as string[]) : undefined);

export async function sealSession(keys: SessionKeys, identity: ReviewerSession['identity'], ttlSec: number, nowMs: number): Promise<string> {
  return seal({ idp: { ...identity }, csrf: newCsrfToken() }, keys.session, SESSION_AUD, ttlSec, nowMs);
}

export async function openSession(keys: SessionKeys, token: string | undefined, nowMs: number): Promise<ReviewerSession | undefined> {
  const p = await open(token, keys.session, SESSION_AUD, nowMs);
  const idp = p?.idp as Record<string, unknown> | undefined;
  if (p === undefined || idp === undefined || idp === null || typeof idp !== 'object') return undefined;
  const groups = strings(idp.groups);
  if (typeof idp.issuer !== 'string' || typeof idp.subject !== 'string' || groups === undefined || typeof p.csrf !== 'string') return undefined;
  return {
    identity: { issuer: idp.issuer, subject: idp.subject, groups, ...(typeof idp.name === 'string' ? { name: idp.name } : {}) },
    csrf: p.csrf,
    expiresAt: p.exp as number,
  };
}

export async function sealLogin(keys: SessionKeys, tx: LoginTransaction, ttlSec: number, nowMs: number): Promise<string> {
  return seal({ tx: { ...tx } }, keys.login, LOGIN_AUD, ttlSec, nowMs);
}

export async function openLogin(keys: SessionKeys, token: string | undefined, nowMs: number): Promise<LoginTransaction | undefined> {
  const p = await open(token, keys.login, LOGIN_AUD, nowMs);
  const tx = p?.tx as Record<string, unknown> | undefined;
  if (tx === undefined || tx === null || typeof tx !== 'object') return undefined;
  const { state, nonce, codeVerifier, returnTo } = tx;
  if (typeof state !== 'string' || typeof nonce !== 'string' || typeof codeVerifier !== 'string' || typeof returnTo !== 'string') return undefined;
  return { state, nonce, codeVerifier, returnTo };
}

export const sessionIdentity = (s: ReviewerSession): ReviewerIdentity => ({ ...s.identity, groups: [...s.identity.groups], kind: 'human', channel: 'browser' });

// ---- CSRF: a synchronizer token carried inside the sealed session ----

export const newCsrfToken = (): string => randomBytes(32).toString('base64url');

/** Constant-time comparison of the form's token with the session's. */
export function csrfMatches(expected: string, presented: unknown): boolean {
  if (typeof presented !== 'string') return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(presented);
  return a.length === b.length && timingSafeEqual(a, b);
}

// ---- cookies ----

export interface CookieNames {
  session: string;
  login: string;
}

/** `__Host-` pins the cookie to this exact origin (Secure, Path=/, no Domain); only possible over https. */
export const cookieNames = (secure: boolean): CookieNames =>
  secure ? { session: '__Host-attest_reviewer', login: '__Host-attest_reviewer_login' } : { session: 'attest_reviewer', login: 'attest_reviewer_login' };

export interface CookieOptions {
  httpOnly: true;
  secure: boolean;
  sameSite: 'strict' | 'lax';
  path: '/';
  maxAge: number;
}

/**
 * The session is SameSite=Strict: it is never sent on a request another site starts, so a
 * cross-site POST cannot even reach the CSRF check signed in. The login cookie must survive the
 * IdP's cross-site redirect back to the callback, so it is Lax (sent on top-level GET only).
 */
export const sessionCookie = (secure: boolean, ttlSec: number): CookieOptions => ({ httpOnly: true, secure, sameSite: 'strict', path: '/', maxAge: ttlSec });
export const loginCookie = (secure: boolean, ttlSec: number): CookieOptions => ({ httpOnly: true, secure, sameSite: 'lax', path: '/', maxAge: ttlSec });
