/**
 * The approver's console in a real browser: Debian's Chromium driven by playwright-core signs in
 * through the real OpenID provider's login page (authorization code + PKCE), sees a pending
 * approval with its masked prompt, approves it with a reason, and the approval backend receives
 * exactly that decision. A user outside the reviewer groups gets the 403 page.
 *
 * The console is addressed as http://localhost:<port> and the IdP as http://127.0.0.1:<port>:
 * two different sites, so the IdP's redirect back is a cross-site navigation, as in production,
 * and the SameSite choices of the cookies are really exercised.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTokenVerifier } from '../services/common/src/identity';
import type { PendingApprovalView } from '../services/console/src/reviewer/backend';
import { MemoryReviewerBackend } from '../services/console/src/reviewer/memory-backend';
import { registerReviewer } from '../services/console/src/reviewer/register';
import { freePort, startIdp, type TestIdp } from './harness/idp';

const VISA = '4111111111111111';
const ARTIFACTS = join(process.cwd(), 'test-artifacts');
const silent = { info() {}, warn() {}, error() {} };

let idp: TestIdp;
let app: FastifyInstance;
let browser: Browser;
let base: string;
const backend = new MemoryReviewerBackend();
const cspViolations: string[] = [];

const approval = (id: string, prompt: string, over: Partial<PendingApprovalView> = {}): PendingApprovalView => ({
  approvalId: id,
  ruleId: 'hold-large-refunds',
  reasons: ['refund above 500 EUR'],
  requester: { issuer: 'https://idp.example', subject: 'agent-payments', kind: 'agent' },
  model: 'claude-sonnet-4-5',
  route: 'messages',
  maskedPrompt: prompt,
  riskSignals: ['pan_in_prompt', 'new_payee'],
  requestedAt: new Date().toISOString(),
  expiresAt: new Date(Date.now() + 15 * 60_000).toISOString(),
  quorum: 1,
  approvals: 0,
  mode: 'hold',
  ...over,
});

beforeAll(async () => {
  const port = await freePort();
  base = `http://localhost:${port}`;
  idp = await startIdp({
    audience: 'attest-console',
    clients: [],
    users: [
      { username: 'alice', password: 'alice-pw', name: 'Alice Reviewer', groups: ['approvers'] },
      { username: 'dave', password: 'dave-pw', name: 'Dave Developer', groups: ['developers'] },
    ],
    // A public client: PKCE is its only protection of the code, and the IdP requires it.
    webClients: [{ clientId: 'attest-console', redirectUris: [`${base}/reviewer/callback`] }],
  });
  // The domain forgot to mask this one: the page must not show the number anyway.
  backend.add(approval('apr_refund_7', `Refund order 1234 to card ${VISA}, customer says it was charged twice.`));
  backend.add(approval('apr_export_8', 'Export the last 90 days of payouts to a CSV.', { ruleId: 'hold-bulk-export', riskSignals: ['bulk_data'], quorum: 2 }));
  app = Fastify();
  registerReviewer(app, {
    backend,
    verifier: createTokenVerifier({ issuers: [{ issuer: idp.issuer, audiences: ['attest-console'] }] }),
    oidc: { issuer: idp.issuer, clientId: 'attest-console', redirectUri: `${base}/reviewer/callback`, scopes: ['openid', 'profile', 'groups'], groupsClaim: 'groups' },
    reviewerGroups: ['approvers'],
    sessionKey: 'e2e-session-key-0123456789abcdefghijkl',
    logger: silent,
    publicUrl: base,
  });
  await app.listen({ port, host: '127.0.0.1' });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    timeout: 30_000,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-gpu', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await app?.close();
  await idp?.close();
});

async function newPage(): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.setDefaultNavigationTimeout(15_000);
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
  });
  return { context, page };
}

/** From the console, through the IdP's login page. */
async function signIn(page: Page, username: string, password: string): Promise<void> {
  await page.goto(`${base}/reviewer`);
  await page.waitForURL((u) => u.href.startsWith(`${idp.issuer}/interaction/`));
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

describe('reviewer console in Chromium', () => {
  it('a reviewer signs in, sees the masked pending approval, approves it with a reason', async () => {
    const { context, page } = await newPage();
    try {
      await signIn(page, 'alice', 'alice-pw');
      // The callback's same-site hop lands on the list, now with the Strict session cookie.
      await page.waitForURL(`${base}/reviewer`);
      await expect(page.getByRole('heading', { level: 1, name: 'Approvals' }).isVisible()).resolves.toBe(true);
      await expect(page.getByText('Signed in as').textContent()).resolves.toContain('Alice Reviewer');
      const session = (await context.cookies(base)).find((c) => c.name === 'attest_reviewer');
      expect(session).toMatchObject({ httpOnly: true, sameSite: 'Strict' });

      const list = await page.content();
      expect(list).toContain('apr_refund_7');
      expect(list).not.toContain(VISA);
      expect(list).toContain('411111******1111');
      await expect(page.getByText('pan_in_prompt').first().isVisible()).resolves.toBe(true);
      expect(await page.locator('time[data-countdown]').first().textContent()).toMatch(/^in (1[0-5] min|\d+ min \d+ s)/);

      await page.getByRole('link', { name: 'Review and decide on approval apr_refund_7' }).click();
      await page.waitForURL(`${base}/reviewer/approvals/apr_refund_7`);
      await expect(page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('Approval apr_refund_7');
      // The reason is required: the browser will not submit the form without it.
      await page.getByRole('button', { name: 'Approve' }).click();
      expect(page.url()).toBe(`${base}/reviewer/approvals/apr_refund_7`);
      expect(backend.calls.filter((c) => c.method === 'decide')).toHaveLength(0);

      await page.getByLabel('Reason (required)').fill('Confirmed the double charge with the customer on the phone.');
      await page.getByRole('button', { name: 'Approve' }).click();
      await page.waitForURL((u) => u.pathname === '/reviewer' && u.searchParams.get('decided') === 'apr_refund_7');
      await expect(page.getByRole('status').textContent()).resolves.toContain('Your decision on approval apr_refund_7 was recorded. It is now approved.');
      const decisions = page.getByRole('table');
      await expect(decisions.textContent()).resolves.toContain('Confirmed the double charge');

      const decided = backend.calls.filter((c) => c.method === 'decide');
      expect(decided).toHaveLength(1);
      expect(decided[0]).toMatchObject({
        approvalId: 'apr_refund_7',
        decision: 'approve',
        reason: 'Confirmed the double charge with the customer on the phone.',
        viewer: { issuer: idp.issuer, subject: 'user:alice', name: 'Alice Reviewer', groups: ['approvers'], kind: 'human', channel: 'browser' },
      });
      expect(await page.content()).not.toContain(VISA);

      mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: join(ARTIFACTS, 'reviewer-console.png'), fullPage: true });

      // Signing out ends the session.
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.waitForURL(`${base}/reviewer/signed-out`);
      expect((await context.cookies(base)).find((c) => c.name === 'attest_reviewer')).toBeUndefined();
      expect(cspViolations).toEqual([]);
    } finally {
      await context.close();
    }
  }, 90_000);

  it('a signed-in user outside the reviewer groups gets the 403 page and no session', async () => {
    const { context, page } = await newPage();
    try {
      const callback = page.waitForResponse((r) => r.url().startsWith(`${base}/reviewer/callback`));
      await signIn(page, 'dave', 'dave-pw');
      const res = await callback;
      expect(res.status()).toBe(403);
      await expect(page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('You are not a reviewer');
      await expect(page.locator('main').textContent()).resolves.toContain('approvers');
      expect((await context.cookies(base)).find((c) => c.name === 'attest_reviewer')).toBeUndefined();
      // And the list stays closed to them: with the IdP's own session the round trip needs no
      // login form any more, and ends at the same 403.
      const again = page.waitForResponse((r) => r.url().startsWith(`${base}/reviewer/callback`));
      await page.goto(`${base}/reviewer`);
      expect((await again).status()).toBe(403);
      expect(backend.calls.filter((c) => c.viewer.subject === 'user:dave')).toHaveLength(0);
    } finally {
      await context.close();
    }
  }, 90_000);
});
