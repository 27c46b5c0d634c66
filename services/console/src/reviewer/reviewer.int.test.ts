/**
 * The reviewer console against the real OpenID provider (oidc-provider, test/harness/idp.ts):
 * the bots' API with real access tokens from its token endpoint, verified by the real token
 * verifier; the browser sign-in (authorization code + PKCE) driven over real HTTP with a cookie
 * jar; every API answer checked against docs/openapi/approvals.yaml. The approval domain is the
 * in-memory twin, which records calls: refusals are its business, the console passes them on.
 */
import { readFileSync } from 'node:fs';
import Fastify, { type FastifyInstance } from 'fastify';
import { parse } from 'yaml';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { freePort, startIdp, type TestIdp } from '../../../../test/harness/idp';
import { createTokenVerifier } from '../../../common/src/identity';
import type { PendingApprovalView } from './backend';
import { MemoryReviewerBackend } from './memory-backend';
import { registerReviewer } from './register';

const AUDIENCE = 'attest-console';
const VISA = '4111111111111111';
const SESSION_KEY = 'int-test-session-key-0123456789abcdef';
const silent = { info() {}, warn() {}, error() {} };

let idp: TestIdp;
let app: FastifyInstance;
let base: string;
let backend: MemoryReviewerBackend;
let reviewerToken: string;
let developerToken: string;
let delegatedToken: string;

const pending = (id: string, over: Partial<PendingApprovalView> = {}): PendingApprovalView => ({
  approvalId: id,
  ruleId: 'hold-payments',
  reasons: ['refund over limit'],
  requester: { issuer: 'https://idp.example', subject: 'agent-payments', kind: 'agent' },
  model: 'claude-sonnet-4-5',
  route: 'messages',
  // The domain "forgot" to mask: the console must not.
  maskedPrompt: `refund card ${VISA}`,
  riskSignals: ['pan_in_prompt'],
  requestedAt: '2030-01-01T11:58:00.000Z',
  expiresAt: '2030-01-01T12:10:00.000Z',
  quorum: 1,
  approvals: 0,
  mode: 'hold',
  ...over,
});

beforeAll(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  idp = await startIdp({
    audience: AUDIENCE,
    clients: [
      { clientId: 'review-bot', clientSecret: 'review-bot-secret-0123456789', groups: ['approvers'] },
      { clientId: 'ci-bot', clientSecret: 'ci-bot-secret-0123456789', groups: ['developers'] },
    ],
    users: [
      { username: 'alice', password: 'alice-pw', name: 'Alice Reviewer', groups: ['approvers', 'staff'] },
      { username: 'dave', password: 'dave-pw', name: 'Dave Developer', groups: ['developers'] },
    ],
    webClients: [{ clientId: 'attest-console', clientSecret: 'console-secret-0123456789', redirectUris: [`${base}/reviewer/callback`] }],
  });
  app = Fastify();
  registerReviewer(app, {
    backend: (backend = new MemoryReviewerBackend()),
    verifier: createTokenVerifier({ issuers: [{ issuer: idp.issuer, audiences: [AUDIENCE] }] }),
    oidc: { issuer: idp.issuer, clientId: 'attest-console', clientSecret: 'console-secret-0123456789', redirectUri: `${base}/reviewer/callback`, scopes: ['openid', 'profile', 'groups'], groupsClaim: 'groups' },
    reviewerGroups: ['approvers'],
    sessionKey: SESSION_KEY,
    logger: silent,
    publicUrl: base,
  });
  await app.listen({ port, host: '127.0.0.1' });
  reviewerToken = await idp.clientCredentialsToken('review-bot');
  developerToken = await idp.clientCredentialsToken('ci-bot');
  const now = Math.floor(Date.now() / 1000);
  delegatedToken = await idp.signAccessToken({ iss: idp.issuer, aud: AUDIENCE, sub: 'user:alice', act: { sub: 'chat-bot' }, groups: ['approvers'], iat: now, exp: now + 300 });
});

afterAll(async () => {
  await app?.close();
  await idp?.close();
});

beforeEach(() => {
  // Fresh approvals for every test on the one backend the app holds.
  backend.calls.length = 0;
  for (const a of ['apr_1', 'apr_2']) backend.add(pending(a));
});

// ---- OpenAPI: a structural check of every answer against the document ----

type Schema = Record<string, unknown>;
const doc = parse(readFileSync(new URL('../../../../docs/openapi/approvals.yaml', import.meta.url), 'utf8')) as Schema;

function deref(node: unknown): Schema {
  let n = node as Schema;
  while (typeof n.$ref === 'string') {
    n = (n.$ref as string)
      .slice(2)
      .split('/')
      .reduce<unknown>((o, k) => (o as Schema)[k], doc) as Schema;
  }
  return n;
}

/** Type, enum, required, properties, additionalProperties, items, length, pattern, bounds. */
function check(schemaNode: unknown, value: unknown, at: string, errors: string[]): void {
  const s = deref(schemaNode);
  const types = s.type === undefined ? [] : Array.isArray(s.type) ? (s.type as string[]) : [s.type as string];
  const typeOf = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'array' : Number.isInteger(v) ? 'integer' : typeof v);
  const actual = typeOf(value);
  if (types.length > 0 && !types.includes(actual) && !(actual === 'integer' && types.includes('number'))) {
    errors.push(`${at}: expected ${types.join('|')}, got ${actual}`);
    return;
  }
  if (Array.isArray(s.enum) && !s.enum.includes(value)) errors.push(`${at}: ${String(value)} not in ${s.enum.join(',')}`);
  if (actual === 'object') {
    const obj = value as Schema;
    for (const k of (s.required as string[] | undefined) ?? []) if (!(k in obj)) errors.push(`${at}: missing required ${k}`);
    const props = (s.properties as Schema | undefined) ?? {};
    for (const [k, v] of Object.entries(obj)) {
      if (k in props) check(props[k], v, `${at}.${k}`, errors);
      else if (s.additionalProperties === false) errors.push(`${at}: unexpected ${k}`);
    }
  }
  if (actual === 'array' && s.items !== undefined) (value as unknown[]).forEach((v, i) => check(s.items, v, `${at}[${i}]`, errors));
  if (actual === 'string') {
    const str = value as string;
    if (typeof s.minLength === 'number' && str.length < s.minLength) errors.push(`${at}: shorter than ${s.minLength}`);
    if (typeof s.maxLength === 'number' && str.length > s.maxLength) errors.push(`${at}: longer than ${s.maxLength}`);
    if (typeof s.pattern === 'string' && !new RegExp(s.pattern).test(str)) errors.push(`${at}: does not match ${s.pattern}`);
    if (s.format === 'date-time' && Number.isNaN(Date.parse(str))) errors.push(`${at}: not a date-time`);
  }
  if (actual === 'integer' && typeof s.minimum === 'number' && (value as number) < s.minimum) errors.push(`${at}: below ${s.minimum}`);
}

/** The documented operation's answer for this status must exist, and the body must fit its schema. */
function conforms(method: string, template: string, res: Response, body: unknown): string[] {
  const item = (doc.paths as Schema)[template] as Schema | undefined;
  const op = item?.[method.toLowerCase()] as Schema | undefined;
  if (op === undefined) return [`${method} ${template} is not documented`];
  const answer = (op.responses as Schema)[String(res.status)];
  if (answer === undefined) return [`${method} ${template} does not document status ${res.status}`];
  const response = deref(answer);
  const errors: string[] = [];
  const media = (response.content as Schema | undefined)?.['application/json'] as Schema | undefined;
  if (media === undefined) return [`${method} ${template} ${res.status} has no application/json schema`];
  if (!String(res.headers.get('content-type')).startsWith('application/json')) errors.push('content-type is not application/json');
  if ((response.headers as Schema | undefined)?.['x-attest-error'] !== undefined && res.headers.get('x-attest-error') !== (body as { error?: { code?: string } }).error?.code) {
    errors.push('x-attest-error does not repeat error.code');
  }
  check(media.schema, body, '$', errors);
  return errors;
}

const seen = new Set<string>();
async function api(method: 'GET' | 'POST', path: string, template: string, opts: { token?: string; body?: unknown; raw?: string; contentType?: string } = {}) {
  const headers: Record<string, string> = {};
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  if (opts.body !== undefined || opts.raw !== undefined) headers['content-type'] = opts.contentType ?? 'application/json';
  const res = await fetch(`${base}${path}`, { method, headers, ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : opts.raw !== undefined ? { body: opts.raw } : {}) });
  const body = (await res.json()) as Record<string, any>;
  expect(conforms(method, template, res, body), `${method} ${path} → ${res.status} ${JSON.stringify(body)}`).toEqual([]);
  seen.add(`${method} ${template} ${res.status}`);
  return { status: res.status, body, code: res.headers.get('x-attest-error') };
}

describe('the OpenAPI check itself', () => {
  it('catches a missing field, a wrong type and an undocumented status', () => {
    const pendingSchema = { $ref: '#/components/schemas/PendingApproval' };
    const ok: string[] = [];
    check(pendingSchema, pending('apr_x'), '$', ok);
    expect(ok).toEqual([]);
    const { quorum: _q, ...missing } = pending('apr_x');
    const errs: string[] = [];
    check(pendingSchema, { ...missing, mode: 'yolo', approvals: '1' }, '$', errs);
    expect(errs).toEqual(expect.arrayContaining(['$: missing required quorum', '$.mode: yolo not in hold,ask_and_retry', '$.approvals: expected integer, got string']));
    const fake = new Response('{}', { status: 418, headers: { 'content-type': 'application/json' } });
    expect(conforms('GET', '/v1/approvals', fake, {})).toEqual(['GET /v1/approvals does not document status 418']);
  });
});

describe('approvals API with real tokens', () => {
  it('lists pending approvals to a reviewer bot, masked, and passes the caller to the backend', async () => {
    const r = await api('GET', '/v1/approvals', '/v1/approvals', { token: reviewerToken });
    expect(r.status).toBe(200);
    expect(r.body.approvals.map((a: PendingApprovalView) => a.approvalId)).toEqual(['apr_1', 'apr_2']);
    expect(JSON.stringify(r.body)).not.toContain(VISA);
    expect(r.body.approvals[0].maskedPrompt).toBe('refund card 411111******1111');
    expect(backend.calls[0]?.viewer).toMatchObject({ issuer: idp.issuer, subject: 'review-bot', groups: ['approvers'], kind: 'service', channel: 'api' });
  });

  it('refuses a missing, forged or foreign-audience token (401) and a non-reviewer (403), before the backend', async () => {
    const missing = await api('GET', '/v1/approvals', '/v1/approvals');
    expect([missing.status, missing.code]).toEqual([401, 'auth_token_missing']);
    const forged = await api('GET', '/v1/approvals', '/v1/approvals', { token: `${reviewerToken.slice(0, -4)}AAAA` });
    expect([forged.status, forged.code]).toEqual([401, 'auth_bad_signature']);
    const now = Math.floor(Date.now() / 1000);
    const wrongAud = await idp.signAccessToken({ iss: idp.issuer, aud: 'attest-gateway', sub: 'x', groups: ['approvers'], iat: now, exp: now + 60 });
    const aud = await api('GET', '/v1/approvals', '/v1/approvals', { token: wrongAud });
    expect([aud.status, aud.code]).toEqual([401, 'auth_wrong_audience']);
    const dev = await api('POST', '/v1/approvals/apr_1/decision', '/v1/approvals/{id}/decision', { token: developerToken, body: { decision: 'approve', reason: 'lgtm' } });
    expect([dev.status, dev.code]).toEqual([403, 'reviewer_role_required']);
    expect(dev.body.error.message).toContain('developers');
    expect(backend.calls).toHaveLength(0);
  });

  it('records a decision, masking a card number in the reason', async () => {
    const r = await api('POST', '/v1/approvals/apr_1/decision', '/v1/approvals/{id}/decision', { token: reviewerToken, body: { decision: 'approve', reason: `  checked card ${VISA} with the customer ` } });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ approvalId: 'apr_1', decision: 'approve', state: 'approved' });
    const call = backend.calls.find((c) => c.method === 'decide');
    expect(call).toMatchObject({ approvalId: 'apr_1', decision: 'approve', reason: 'checked card 411111******1111 with the customer', viewer: { subject: 'review-bot', channel: 'api' } });
    const d = await api('GET', '/v1/approvals/decisions?limit=5', '/v1/approvals/decisions', { token: reviewerToken });
    expect(d.status).toBe(200);
    expect(d.body.decisions[0]).toMatchObject({ approvalId: 'apr_1', decision: 'approved', by: ['review-bot'] });
  });

  it('decides in the person\'s name for a delegated (act) token', async () => {
    const r = await api('POST', '/v1/approvals/apr_2/decision', '/v1/approvals/{id}/decision', { token: delegatedToken, body: { decision: 'deny', reason: 'not now' } });
    expect(r.status).toBe(200);
    expect(r.body.state).toBe('rejected');
    expect(backend.calls.find((c) => c.method === 'decide')?.viewer).toMatchObject({ subject: 'user:alice', actor: 'chat-bot', kind: 'agent' });
  });

  it('passes the domain\'s refusals through with their own codes', async () => {
    for (const [code, status] of [
      ['self_approval_forbidden', 403],
      ['already_decided', 409],
      ['quorum_rule_changed', 409],
    ] as const) {
      backend.refuseNext(code, `refused: ${code}`);
      const r = await api('POST', '/v1/approvals/apr_2/decision', '/v1/approvals/{id}/decision', { token: reviewerToken, body: { decision: 'approve', reason: 'ok' } });
      expect([r.status, r.code, r.body.error.message]).toEqual([status, code, `refused: ${code}`]);
    }
    const gone = await api('POST', '/v1/approvals/apr_gone/decision', '/v1/approvals/{id}/decision', { token: reviewerToken, body: { decision: 'approve', reason: 'ok' } });
    expect([gone.status, gone.code]).toEqual([404, 'approval_not_found']);
  });

  it('validates the body and parameters with stable codes, never echoing the input', async () => {
    const t = '/v1/approvals/{id}/decision';
    const noReason = await api('POST', '/v1/approvals/apr_1/decision', t, { token: reviewerToken, body: { decision: 'approve', reason: '   ' } });
    expect([noReason.status, noReason.code, noReason.body.error.parameter]).toEqual([400, 'invalid_body', 'reason']);
    const extra = await api('POST', '/v1/approvals/apr_1/decision', t, { token: reviewerToken, body: { decision: 'approve', reason: 'x', approvals: 5 } });
    expect([extra.status, extra.code]).toEqual([400, 'invalid_body']);
    const badJson = await api('POST', '/v1/approvals/apr_1/decision', t, { token: reviewerToken, raw: `{"reason": "${VISA}"` });
    expect([badJson.status, badJson.code]).toEqual([400, 'invalid_json']);
    expect(JSON.stringify(badJson.body)).not.toContain(VISA);
    const form = await api('POST', '/v1/approvals/apr_1/decision', t, { token: reviewerToken, raw: 'decision=approve', contentType: 'application/x-www-form-urlencoded' });
    expect([form.status, form.code]).toEqual([415, 'unsupported_media_type']);
    const badId = await api('GET', '/v1/approvals/bad%20id', '/v1/approvals/{id}', { token: reviewerToken });
    expect([badId.status, badId.code, badId.body.error.parameter]).toEqual([400, 'invalid_parameter', 'id']);
    const badLimit = await api('GET', '/v1/approvals/decisions?limit=0', '/v1/approvals/decisions', { token: reviewerToken });
    expect([badLimit.status, badLimit.code]).toEqual([400, 'invalid_parameter']);
    expect(backend.calls.filter((c) => c.method === 'decide')).toHaveLength(0);
  });

  it('gets one pending approval, 404 when not pending, 503 when the backend fails', async () => {
    const one = await api('GET', '/v1/approvals/apr_2', '/v1/approvals/{id}', { token: reviewerToken });
    expect([one.status, one.body.approval.approvalId]).toEqual([200, 'apr_2']);
    const none = await api('GET', '/v1/approvals/apr_none', '/v1/approvals/{id}', { token: reviewerToken });
    expect([none.status, none.code]).toEqual([404, 'approval_not_found']);
    backend.failNext();
    const down = await api('GET', '/v1/approvals', '/v1/approvals', { token: reviewerToken });
    expect([down.status, down.code]).toEqual([503, 'approvals_unavailable']);
  });
});

// ---- browser sign-in over plain HTTP (the e2e test does it in Chromium) ----

/** One browser's cookies. Cookies are per host, not per port, so one jar serves console and IdP. */
class Jar {
  readonly cookies = new Map<string, string>();
  header(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
  async fetch(url: string, init: RequestInit = {}): Promise<Response> {
    const res = await fetch(url, { ...init, redirect: 'manual', headers: { ...((init.headers as Record<string, string>) ?? {}), cookie: this.header() } });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = (pair as string).indexOf('=');
      const name = (pair as string).slice(0, i);
      const value = (pair as string).slice(i + 1);
      if (value === '' || /max-age=0|expires=thu, 01 jan 1970/i.test(c)) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return res;
  }
}

const location = (res: Response, from: string) => new URL(res.headers.get('location') as string, from).href;

/** Console → IdP login form → IdP → the callback URL (not yet visited). */
async function toCallback(jar: Jar, username: string, password: string): Promise<{ callback: string; authorize: URL }> {
  const first = await jar.fetch(`${base}/reviewer`);
  expect(first.status).toBe(303);
  const login = await jar.fetch(location(first, base));
  expect(login.status).toBe(303);
  const authorize = new URL(location(login, base));
  const interaction = await jar.fetch(authorize.href);
  const formUrl = location(interaction, idp.issuer);
  const page = await jar.fetch(formUrl);
  expect(await page.text()).toContain('<label for="username">Username</label>');
  const submitted = await jar.fetch(`${formUrl}/login`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ username, password }).toString() });
  expect(submitted.status).toBe(303);
  const resumed = await jar.fetch(location(submitted, idp.issuer));
  expect(resumed.status).toBe(303);
  return { callback: location(resumed, idp.issuer), authorize };
}

describe('sign-in with the real OpenID provider', () => {
  it('asks for the code with PKCE S256, state and nonce, and a reviewer gets a session', async () => {
    const jar = new Jar();
    const { callback, authorize } = await toCallback(jar, 'alice', 'alice-pw');
    const q = authorize.searchParams;
    expect(q.get('response_type')).toBe('code');
    expect(q.get('code_challenge_method')).toBe('S256');
    expect(q.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(q.get('state')).toBeTruthy();
    expect(q.get('nonce')).toBeTruthy();
    expect(q.get('scope')?.split(' ')).toEqual(expect.arrayContaining(['openid', 'groups']));
    expect(callback.startsWith(`${base}/reviewer/callback?code=`)).toBe(true);
    const done = await jar.fetch(callback);
    expect(done.status).toBe(200);
    expect(jar.cookies.has('attest_reviewer')).toBe(true);
    expect(jar.cookies.has('attest_reviewer_login')).toBe(false);
    const list = await jar.fetch(`${base}/reviewer`);
    expect(list.status).toBe(200);
    const html = await list.text();
    expect(html).toContain('Alice Reviewer');
    expect(html).toContain('apr_1');
    expect(backend.calls.find((c) => c.method === 'listPending')?.viewer).toMatchObject({ issuer: idp.issuer, subject: 'user:alice', groups: ['approvers', 'staff'], channel: 'browser' });
    // The callback is single use: replaying it finds no login in flight.
    const replay = await jar.fetch(callback);
    expect([replay.status, replay.headers.get('x-attest-error')]).toEqual([400, 'login_expired']);
  });

  it('a signed-in user outside the reviewer groups gets 403 and no session', async () => {
    const jar = new Jar();
    const { callback } = await toCallback(jar, 'dave', 'dave-pw');
    const res = await jar.fetch(callback);
    expect([res.status, res.headers.get('x-attest-error')]).toEqual([403, 'reviewer_role_required']);
    expect(await res.text()).toContain('Dave Developer');
    expect(jar.cookies.has('attest_reviewer')).toBe(false);
  });

  it('a callback whose state was altered is refused, and no code is exchanged for a session', async () => {
    const jar = new Jar();
    const { callback } = await toCallback(jar, 'alice', 'alice-pw');
    const u = new URL(callback);
    u.searchParams.set('state', 'attacker-state');
    const res = await jar.fetch(u.href);
    expect([res.status, res.headers.get('x-attest-error')]).toEqual([401, 'login_failed']);
    expect(jar.cookies.has('attest_reviewer')).toBe(false);
  });

  it('a code delivered to another browser (login fixation) is useless there', async () => {
    const victim = new Jar();
    const { callback } = await toCallback(victim, 'alice', 'alice-pw');
    const attacker = new Jar();
    // The attacker has a login of their own in flight, with another state and PKCE verifier.
    await attacker.fetch(location(await attacker.fetch(`${base}/reviewer`), base));
    const res = await attacker.fetch(callback);
    expect([res.status, res.headers.get('x-attest-error')]).toEqual([401, 'login_failed']);
    expect(attacker.cookies.has('attest_reviewer')).toBe(false);
  });

  it('an authorization the IdP refused is shown as refused, with its error code', async () => {
    const jar = new Jar();
    const login = await jar.fetch(`${base}/reviewer/login`);
    const state = new URL(location(login, base)).searchParams.get('state') as string;
    const cb = new URL(`${base}/reviewer/callback`);
    cb.search = new URLSearchParams({ error: 'access_denied', error_description: '<b>no</b>', state, iss: idp.issuer }).toString();
    const res = await jar.fetch(cb.href);
    expect([res.status, res.headers.get('x-attest-error')]).toEqual([401, 'login_refused']);
    const html = await res.text();
    expect(html).toContain('(access_denied)');
    expect(html).not.toContain('<b>no</b>');
  });

  it('a wrong password stays at the IdP', async () => {
    const before = idp.logins().failed;
    const jar = new Jar();
    const login = await jar.fetch(`${base}/reviewer/login`);
    const formUrl = location(await jar.fetch(location(login, base)), idp.issuer);
    const res = await jar.fetch(`${formUrl}/login`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'username=alice&password=nope' });
    expect(res.status).toBe(401);
    expect(idp.logins().failed).toBe(before + 1);
  });
});

describe('documentation coverage', () => {
  it('exercised every documented operation', () => {
    for (const op of ['GET /v1/approvals 200', 'GET /v1/approvals/decisions 200', 'GET /v1/approvals/{id} 200', 'POST /v1/approvals/{id}/decision 200']) expect(seen).toContain(op);
  });
});
