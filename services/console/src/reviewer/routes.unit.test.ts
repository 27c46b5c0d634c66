import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuthError, type Principal, type TokenVerifier } from '../../../common/src/identity';
import { apiIdentity } from './api';
import type { PendingApprovalView } from './backend';
import type { ReviewerDeps } from './context';
import { ReviewerConfigError } from './errors';
import { MemoryReviewerBackend } from './memory-backend';
import { safeReturnTo, type RelyingParty, type SignedInUser } from './oidc-login';
import { registerReviewer } from './register';
import { deriveSessionKeys, openSession, sealSession } from './session';

// The pages and login routes in-process (inject), with a scripted relying party in place of the
// IdP: the real OIDC exchange is covered by reviewer.int.test.ts and the browser e2e test.

const KEY = 'unit-test-session-key-0123456789abcdef';
const keys = deriveSessionKeys(KEY);
const PUBLIC = 'http://127.0.0.1:8090';
const VISA = '4111111111111111';
const alice = { issuer: 'https://idp.example', subject: 'user:alice', name: 'Alice', groups: ['approvers'] };

const silent = { info() {}, warn() {}, error() {} };
const noVerifier: TokenVerifier = {
  issuers: [],
  verify: async () => {
    throw new AuthError('token_missing');
  },
  warm: async () => [],
};

const pending = (id: string, over: Partial<PendingApprovalView> = {}): PendingApprovalView => ({
  approvalId: id,
  ruleId: 'hold-payments',
  reasons: ['refund'],
  requester: { issuer: 'https://idp.example', subject: 'agent-payments', kind: 'agent' },
  model: 'claude-sonnet-4-5',
  route: 'messages',
  maskedPrompt: `refund ${VISA}`,
  riskSignals: ['pan_in_prompt'],
  requestedAt: new Date().toISOString(),
  expiresAt: new Date(Date.now() + 300_000).toISOString(),
  quorum: 1,
  approvals: 0,
  mode: 'hold',
  ...over,
});

class ScriptedRp implements RelyingParty {
  user: SignedInUser = alice;
  finished: URL[] = [];
  async start(returnTo: string) {
    return { url: new URL('https://idp.example/authorize?client_id=console'), tx: { state: 'st', nonce: 'no', codeVerifier: 'cv', returnTo } };
  }
  async finish(url: URL) {
    this.finished.push(url);
    return this.user;
  }
}

function deps(backend: MemoryReviewerBackend, over: Partial<ReviewerDeps> = {}): ReviewerDeps {
  return {
    backend,
    verifier: noVerifier,
    oidc: { issuer: 'https://idp.example', clientId: 'console', redirectUri: `${PUBLIC}/reviewer/callback`, scopes: ['openid', 'profile', 'groups'], groupsClaim: 'groups' },
    reviewerGroups: ['approvers'],
    sessionKey: KEY,
    logger: silent,
    publicUrl: PUBLIC,
    ...over,
  };
}

let app: FastifyInstance;
let backend: MemoryReviewerBackend;
let rp: ScriptedRp;

beforeEach(async () => {
  backend = new MemoryReviewerBackend();
  backend.add(pending('apr_1'));
  rp = new ScriptedRp();
  app = Fastify();
  registerReviewer(app, deps(backend), { relyingParty: rp });
  await app.ready();
});
afterEach(() => app.close());

async function session(identity = alice): Promise<{ cookie: string; csrf: string }> {
  const token = await sealSession(keys, identity, 3600, Date.now());
  const s = await openSession(keys, token, Date.now());
  return { cookie: `attest_reviewer=${token}`, csrf: s?.csrf as string };
}

const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
const post = (url: string, cookie: string | undefined, fields: Record<string, string>, headers: Record<string, string> = {}) =>
  app.inject({ method: 'POST', url, headers: { 'content-type': 'application/x-www-form-urlencoded', ...(cookie === undefined ? {} : { cookie }), ...headers }, payload: form(fields) });
const decides = () => backend.calls.filter((c) => c.method === 'decide');

describe('session gate', () => {
  it('sends a visitor without a session to sign in, remembering where they were going', async () => {
    const res = await app.inject({ url: '/reviewer/approvals/apr_1' });
    expect(res.statusCode).toBe(303);
    expect(res.headers.location).toBe('/reviewer/login?return=%2Freviewer%2Fapprovals%2Fapr_1');
    expect(backend.calls).toHaveLength(0);
  });

  it('treats a tampered session cookie as no session', async () => {
    const { cookie } = await session();
    const tampered = cookie.slice(0, -3) + (cookie.endsWith('AAA') ? 'BBB' : 'AAA');
    const res = await app.inject({ url: '/reviewer', headers: { cookie: tampered } });
    expect(res.statusCode).toBe(303);
    expect(res.headers.location).toMatch(/^\/reviewer\/login/);
    const postRes = await post('/reviewer/approvals/apr_1/decision', tampered, { decision: 'approve', reason: 'ok' });
    expect(postRes.statusCode).toBe(401);
    expect(postRes.headers['x-attest-error']).toBe('session_required');
    expect(backend.calls).toHaveLength(0);
  });

  it('refuses a session whose groups are no longer a reviewer group (403)', async () => {
    const { cookie } = await session({ ...alice, groups: ['developers'] });
    const res = await app.inject({ url: '/reviewer', headers: { cookie } });
    expect(res.statusCode).toBe(403);
    expect(res.headers['x-attest-error']).toBe('reviewer_role_required');
    expect(res.body).toContain('approvers');
    expect(backend.calls).toHaveLength(0);
  });

  it('shows the pending list to a reviewer, masked, under a nonce CSP', async () => {
    const { cookie } = await session();
    const res = await app.inject({ url: '/reviewer', headers: { cookie } });
    expect(res.statusCode).toBe(200);
    expect(res.body).toContain('apr_1');
    expect(res.body).not.toContain(VISA);
    expect(res.body).toContain('411111******1111');
    const nonce = /script-src 'nonce-([^']+)'/.exec(String(res.headers['content-security-policy']))?.[1];
    expect(nonce).toBeDefined();
    expect(res.body).toContain(`<style nonce="${nonce}">`);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers['x-frame-options']).toBe('DENY');
    expect(backend.calls[0]?.viewer).toMatchObject({ subject: 'user:alice', groups: ['approvers'], kind: 'human', channel: 'browser' });
  });

  it('404s an approval that is not pending for the viewer', async () => {
    const { cookie } = await session();
    const res = await app.inject({ url: '/reviewer/approvals/apr_nope', headers: { cookie } });
    expect(res.statusCode).toBe(404);
    expect(res.headers['x-attest-error']).toBe('approval_not_found');
  });
});

describe('decision form and CSRF', () => {
  it('records a decision with the session token, masking a card number typed into the reason', async () => {
    const { cookie, csrf } = await session();
    const res = await post('/reviewer/approvals/apr_1/decision', cookie, { csrf, decision: 'approve', reason: `ok, card ${VISA} verified` }, { origin: PUBLIC, 'sec-fetch-site': 'same-origin' });
    expect(res.statusCode).toBe(303);
    expect(res.headers.location).toBe('/reviewer?decided=apr_1&state=approved');
    expect(decides()).toHaveLength(1);
    expect(decides()[0]).toMatchObject({ approvalId: 'apr_1', decision: 'approve', reason: 'ok, card 411111******1111 verified' });
    const list = await app.inject({ url: res.headers.location as string, headers: { cookie } });
    expect(list.body).toContain('Your decision on approval apr_1 was recorded. It is now approved.');
  });

  it('refuses a post without the token, with another session\'s token, or from another origin; nothing reaches the backend', async () => {
    const { cookie } = await session();
    const other = await session();
    const url = '/reviewer/approvals/apr_1/decision';
    for (const res of [
      await post(url, cookie, { decision: 'approve', reason: 'x' }),
      await post(url, cookie, { csrf: other.csrf, decision: 'approve', reason: 'x' }),
      await post(url, cookie, { csrf: (await openSession(keys, cookie.split('=')[1], Date.now()))!.csrf, decision: 'approve', reason: 'x' }, { origin: 'https://evil.example' }),
      await post(url, cookie, { csrf: (await openSession(keys, cookie.split('=')[1], Date.now()))!.csrf, decision: 'approve', reason: 'x' }, { 'sec-fetch-site': 'cross-site' }),
    ]) {
      expect(res.statusCode).toBe(403);
      expect(res.headers['x-attest-error']).toBe('csrf_failed');
    }
    expect(decides()).toHaveLength(0);
  });

  it('requires a reason and a valid decision, keeping what was typed', async () => {
    const { cookie, csrf } = await session();
    const noReason = await post('/reviewer/approvals/apr_1/decision', cookie, { csrf, decision: 'approve', reason: '   ' });
    expect(noReason.statusCode).toBe(400);
    expect(noReason.body).toContain('A reason is required');
    const badDecision = await post('/reviewer/approvals/apr_1/decision', cookie, { csrf, decision: 'maybe', reason: 'kept <text>' });
    expect(badDecision.statusCode).toBe(400);
    expect(badDecision.body).toContain('kept &lt;text&gt;</textarea>');
    expect(decides()).toHaveLength(0);
  });

  it('shows the domain\'s refusal with its code and status', async () => {
    const { cookie, csrf } = await session();
    backend.refuseNext('self_approval_forbidden', 'you cannot decide your own request');
    const res = await post('/reviewer/approvals/apr_1/decision', cookie, { csrf, decision: 'approve', reason: 'mine' });
    expect(res.statusCode).toBe(403);
    expect(res.headers['x-attest-error']).toBe('self_approval_forbidden');
    expect(res.body).toContain('you cannot decide your own request');
  });

  it('answers 503 when the backend fails', async () => {
    const { cookie } = await session();
    backend.failNext();
    const res = await app.inject({ url: '/reviewer', headers: { cookie } });
    expect(res.statusCode).toBe(503);
    expect(res.headers['x-attest-error']).toBe('approvals_unavailable');
  });

  it('signs out only with the token, clearing the cookie', async () => {
    const { cookie, csrf } = await session();
    expect((await post('/reviewer/logout', cookie, {})).statusCode).toBe(403);
    const res = await post('/reviewer/logout', cookie, { csrf });
    expect(res.statusCode).toBe(303);
    expect(res.headers.location).toBe('/reviewer/signed-out');
    expect(res.cookies.find((c) => c.name === 'attest_reviewer')?.value).toBe('');
  });
});

describe('sign-in routes', () => {
  it('starts a login: a Lax, HttpOnly login cookie and a redirect to the IdP; only console paths are remembered', async () => {
    const res = await app.inject({ url: '/reviewer/login?return=%2F%2Fevil.example%2Fx' });
    expect(res.statusCode).toBe(303);
    expect(res.headers.location).toBe('https://idp.example/authorize?client_id=console');
    const c = res.cookies.find((k) => k.name === 'attest_reviewer_login');
    expect(c).toMatchObject({ httpOnly: true, sameSite: 'Lax', path: '/' });
    expect(safeReturnTo('//evil.example/x')).toBe('/reviewer');
    expect(safeReturnTo('https://evil.example')).toBe('/reviewer');
    expect(safeReturnTo('/reviewer/../admin')).toBe('/reviewer');
    expect(safeReturnTo('/reviewer\\evil')).toBe('/reviewer');
    expect(safeReturnTo('/reviewer/approvals/apr_1')).toBe('/reviewer/approvals/apr_1');
  });

  async function callback(user: SignedInUser) {
    rp.user = user;
    const start = await app.inject({ url: '/reviewer/login?return=%2Freviewer%2Fapprovals%2Fapr_1' });
    const login = start.cookies.find((k) => k.name === 'attest_reviewer_login')?.value as string;
    return app.inject({ url: '/reviewer/callback?code=c&state=st&iss=x', headers: { cookie: `attest_reviewer_login=${login}` } });
  }

  it('a reviewer gets a Strict HttpOnly session and a same-site hop to where they were going', async () => {
    const res = await callback(alice);
    expect(res.statusCode).toBe(200);
    expect(rp.finished[0]?.href).toBe(`${PUBLIC}/reviewer/callback?code=c&state=st&iss=x`);
    const s = res.cookies.find((k) => k.name === 'attest_reviewer');
    expect(s).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/' });
    expect(s?.secure).toBeFalsy();
    expect((await openSession(keys, s?.value, Date.now()))?.identity.subject).toBe('user:alice');
    expect(res.body).toContain('<meta http-equiv="refresh" content="0;url=/reviewer/approvals/apr_1">');
    // The login cookie is spent.
    expect(res.cookies.find((k) => k.name === 'attest_reviewer_login')?.value).toBe('');
  });

  it('a signed-in non-reviewer gets a clear 403 page and no session', async () => {
    const res = await callback({ issuer: 'https://idp.example', subject: 'user:dave', name: 'Dave <dev>', groups: ['developers'] });
    expect(res.statusCode).toBe(403);
    expect(res.headers['x-attest-error']).toBe('reviewer_role_required');
    expect(res.body).toContain('You are not a reviewer');
    expect(res.body).toContain('Dave &lt;dev&gt;');
    expect(res.cookies.find((k) => k.name === 'attest_reviewer')).toBeUndefined();
  });

  it('refuses, clearly, a user whose groups would not fit in a cookie', async () => {
    const groups = ['approvers', ...Array.from({ length: 150 }, (_, i) => `department-group-number-${i}`)];
    const res = await callback({ ...alice, groups });
    expect([res.statusCode, res.headers['x-attest-error']]).toEqual([500, 'session_too_large']);
    expect(res.cookies.find((k) => k.name === 'attest_reviewer')).toBeUndefined();
  });

  it('a callback without the login cookie is refused before the IdP is asked', async () => {
    const res = await app.inject({ url: '/reviewer/callback?code=c&state=st' });
    expect(res.statusCode).toBe(400);
    expect(res.headers['x-attest-error']).toBe('login_expired');
    expect(rp.finished).toHaveLength(0);
  });
});

describe('options', () => {
  const build = (over: Partial<ReviewerDeps>) => () => registerReviewer(Fastify(), deps(new MemoryReviewerBackend(), over), { relyingParty: rp });
  it.each([
    ['sessionKey', { sessionKey: 'too-short' }],
    ['reviewerGroups', { reviewerGroups: [] }],
    ['publicUrl', { publicUrl: 'http://console.example.com' }],
    ['oidc.redirectUri', { oidc: { ...deps(backend).oidc, redirectUri: 'https://elsewhere.example/reviewer/callback' } }],
    ['sessionTtlSec', { sessionTtlSec: 7 * 24 * 3600 }],
  ] as const)('refuses a bad %s with a config error naming it', (where, over) => {
    let err: unknown;
    try {
      build(over as Partial<ReviewerDeps>)();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ReviewerConfigError);
    expect((err as ReviewerConfigError).where).toBe(where);
    expect((err as ReviewerConfigError).fix).toBeTruthy();
  });

  it('https public URL: Secure, __Host- cookies', async () => {
    const https = Fastify();
    registerReviewer(https, deps(new MemoryReviewerBackend(), { publicUrl: 'https://attest.example', oidc: { ...deps(backend).oidc, redirectUri: 'https://attest.example/reviewer/callback' } }), { relyingParty: rp });
    const res = await https.inject({ url: '/reviewer/login' });
    expect(res.cookies.find((k) => k.name === '__Host-attest_reviewer_login')).toMatchObject({ secure: true, httpOnly: true });
    await https.close();
  });
});

describe('API identity', () => {
  it('attributes a delegated token to the person, keeping the bot as actor', () => {
    const p: Principal = { subject: 'chatbot', onBehalfOf: 'user:alice', issuer: 'i', groups: ['approvers'], kind: 'agent', expiresAt: 0 };
    expect(apiIdentity(p)).toEqual({ issuer: 'i', subject: 'user:alice', actor: 'chatbot', groups: ['approvers'], kind: 'agent', channel: 'api' });
  });
});
