import { describe, expect, it } from 'vitest';
import { cookieNames, csrfMatches, deriveSessionKeys, loginCookie, openLogin, openSession, sealLogin, sealSession, sessionCookie } from './session';

const KEY = 'k'.repeat(32);
const keys = deriveSessionKeys(KEY);
const NOW = Date.parse('2030-01-01T12:00:00Z');
const who = { issuer: 'https://idp.example', subject: 'user:alice', name: 'Alice', groups: ['approvers'] };

/** Flips one character in the ciphertext part of a compact JWE. */
function tamper(token: string): string {
  const parts = token.split('.');
  const ct = parts[3] as string;
  parts[3] = (ct[0] === 'A' ? 'B' : 'A') + ct.slice(1);
  return parts.join('.');
}

describe('sealed session cookie', () => {
  it('round-trips the identity and a fresh CSRF token', async () => {
    const token = await sealSession(keys, who, 3600, NOW);
    const s = await openSession(keys, token, NOW + 1000);
    expect(s?.identity).toEqual(who);
    expect(s?.csrf).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(s?.expiresAt).toBe(NOW / 1000 + 3600);
    // The payload is encrypted: nothing about the reviewer is readable from the cookie.
    expect(Buffer.from(token.split('.')[3] as string, 'base64url').toString('latin1')).not.toContain('alice');
    const again = await openSession(keys, await sealSession(keys, who, 3600, NOW), NOW);
    expect(again?.csrf).not.toBe(s?.csrf);
  });

  it('rejects a tampered, truncated, foreign-key, expired or empty cookie', async () => {
    const token = await sealSession(keys, who, 3600, NOW);
    expect(await openSession(keys, tamper(token), NOW)).toBeUndefined();
    expect(await openSession(keys, token.slice(0, -2), NOW)).toBeUndefined();
    expect(await openSession(deriveSessionKeys('x'.repeat(32)), token, NOW)).toBeUndefined();
    expect(await openSession(keys, token, NOW + 3601_000 + 60_000)).toBeUndefined();
    expect(await openSession(keys, undefined, NOW)).toBeUndefined();
    expect(await openSession(keys, '', NOW)).toBeUndefined();
    expect(await openSession(keys, 'a.b.c.d.e', NOW)).toBeUndefined();
  });

  it('never accepts a login cookie as a session, or a session as a login', async () => {
    const login = await sealLogin(keys, { state: 's', nonce: 'n', codeVerifier: 'v', returnTo: '/reviewer' }, 600, NOW);
    expect(await openLogin(keys, login, NOW)).toEqual({ state: 's', nonce: 'n', codeVerifier: 'v', returnTo: '/reviewer' });
    expect(await openSession(keys, login, NOW)).toBeUndefined();
    expect(await openLogin(keys, await sealSession(keys, who, 3600, NOW), NOW)).toBeUndefined();
    expect(await openLogin(keys, tamper(login), NOW)).toBeUndefined();
  });

  it('refuses a session key shorter than 32 bytes', () => {
    expect(() => deriveSessionKeys('short')).toThrow(RangeError);
  });
});

describe('CSRF token comparison', () => {
  it('matches only the exact token', () => {
    expect(csrfMatches('abc', 'abc')).toBe(true);
    expect(csrfMatches('abc', 'abd')).toBe(false);
    expect(csrfMatches('abc', 'ab')).toBe(false);
    expect(csrfMatches('abc', undefined)).toBe(false);
    expect(csrfMatches('abc', ['abc'])).toBe(false);
  });
});

describe('cookie attributes', () => {
  it('session: HttpOnly, Strict, Secure and __Host- over https', () => {
    expect(sessionCookie(true, 60)).toEqual({ httpOnly: true, secure: true, sameSite: 'strict', path: '/', maxAge: 60 });
    expect(cookieNames(true).session.startsWith('__Host-')).toBe(true);
    expect(sessionCookie(false, 60).secure).toBe(false);
    expect(cookieNames(false).session.startsWith('__Host-')).toBe(false);
  });

  it('login: Lax, so it survives the IdP redirect back', () => {
    expect(loginCookie(true, 600)).toMatchObject({ httpOnly: true, secure: true, sameSite: 'lax' });
  });
});
