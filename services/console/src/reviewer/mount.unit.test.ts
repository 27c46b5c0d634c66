import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { AuthError, type TokenVerifier } from '../../../common/src/identity';
import { buildConsole, type ConsoleDeps } from '../app';
import { MemoryReviewerBackend } from './memory-backend';
import { registerReviewer } from './register';
import type { PendingApprovalView } from './backend';

// Mounted on the real console app (buildConsole): its JSON parser, 4 KiB body limit, error and
// not-found handlers must not change the reviewer routes, and the reviewer routes must not change
// the evidence API. The evidence store and emitter are never reached by these requests.

const verifier: TokenVerifier = {
  issuers: ['https://idp.example'],
  verify: async (token) => {
    if (token !== 'good') throw new AuthError('bad_signature');
    return { subject: 'review-bot', issuer: 'https://idp.example', groups: ['approvers'], kind: 'service', expiresAt: 0 };
  },
  warm: async () => [],
};

const backend = new MemoryReviewerBackend();
let app: FastifyInstance;

beforeAll(async () => {
  app = await buildConsole({
    store: {} as ConsoleDeps['store'],
    emitter: { emit: async () => { throw new Error('not in this test'); } } as unknown as ConsoleDeps['emitter'],
    verifier,
    auditorGroups: ['auditors'],
    jwks: () => ({ keys: [] }),
    panKey: {} as ConsoleDeps['panKey'],
    logger: pino({ level: 'silent' }),
    cadence: { everyEvents: 4, everyMs: 60_000 },
  });
  registerReviewer(app, {
    backend,
    verifier,
    oidc: { issuer: 'https://idp.example', clientId: 'console', redirectUri: 'http://127.0.0.1:8090/reviewer/callback', scopes: ['openid'], groupsClaim: 'groups' },
    reviewerGroups: ['approvers'],
    sessionKey: 'mount-test-session-key-0123456789abcdef',
    logger: pino({ level: 'silent' }),
    publicUrl: 'http://127.0.0.1:8090',
  });
  await app.ready();
  backend.add({
    approvalId: 'apr_1', ruleId: 'r', reasons: [], requester: { issuer: 'i', subject: 's', kind: 'agent' }, model: 'm', route: 'messages',
    maskedPrompt: 'p', riskSignals: [], requestedAt: '2030-01-01T00:00:00Z', expiresAt: '2030-01-01T00:10:00Z', quorum: 1, approvals: 0, mode: 'hold',
  } satisfies PendingApprovalView);
});
afterAll(() => app.close());

const auth = { authorization: 'Bearer good', 'content-type': 'application/json' };

describe('registerReviewer on buildConsole', () => {
  it('serves the approvals API and the pages next to the evidence API', async () => {
    expect((await app.inject({ url: '/v1/approvals', headers: auth })).json().approvals).toHaveLength(1);
    expect((await app.inject({ url: '/reviewer' })).statusCode).toBe(303);
    expect((await app.inject({ url: '/healthz' })).json()).toEqual({ status: 'ok' });
    const unknown = await app.inject({ url: '/v1/nothing' });
    expect([unknown.statusCode, unknown.headers['x-attest-error']]).toEqual([404, 'route_not_found']);
  });

  it('uses its own body limit and JSON errors, not the console\'s', async () => {
    const long = await app.inject({ method: 'POST', url: '/v1/approvals/apr_1/decision', headers: auth, payload: JSON.stringify({ decision: 'approve', reason: 'x'.repeat(5000) }) });
    expect([long.statusCode, long.headers['x-attest-error']]).toEqual([400, 'invalid_body']);
    const huge = await app.inject({ method: 'POST', url: '/v1/approvals/apr_1/decision', headers: auth, payload: JSON.stringify({ decision: 'approve', reason: 'x'.repeat(20_000) }) });
    expect([huge.statusCode, huge.headers['x-attest-error']]).toEqual([413, 'body_too_large']);
    const ok = await app.inject({ method: 'POST', url: '/v1/approvals/apr_1/decision', headers: auth, payload: JSON.stringify({ decision: 'approve', reason: 'fine' }) });
    expect(ok.json()).toEqual({ approvalId: 'apr_1', decision: 'approve', state: 'approved' });
  });

  it('keeps the evidence API closed to a reviewer-only token', async () => {
    const res = await app.inject({ url: '/v1/evidence/queries', headers: { authorization: 'Bearer good' } });
    expect([res.statusCode, res.headers['x-attest-error']]).toEqual([403, 'auditor_role_required']);
  });
});
