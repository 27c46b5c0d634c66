/**
 * Issue #5 end to end on the embedded platform (`attest start`'s code path): the official SDK sends
 * a request that a rule holds for approval; a reviewer signs in to the console in real Chromium
 * (Debian's, via playwright-core) through a real OpenID provider (authorization code + PKCE) and
 * approves or denies it with a reason; the SDK call completes or fails accordingly; the evidence log
 * holds the whole chain. Also: expiry, and a gateway restart during a hold, after which the old
 * approval can release nothing.
 */
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import pino from 'pino';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfigText, type LoadedConfig } from '../services/common/src/config';
import { decodeEvent, type AnyAttestEvent } from '../services/common/src/events';
import { DevIssuer } from '../services/common/src/identity';
import { startPlatform, type RunningPlatform } from '../services/cli/src/platform';
import { startAnthropicStandin, type AnthropicStandin } from './harness/anthropic-standin';
import { freePort, startIdp, type TestIdp } from './harness/idp';

const ARTIFACTS = join(process.cwd(), 'test-artifacts');
const VISA = '4111111111111111';
const ENV = { APPROVALS_TEST_KEY: 'sk-test', REVIEWER_SESSION_KEY: 'approvals-e2e-session-key-0123456789abcdef' };

let standin: AnthropicStandin;
let idp: TestIdp;
let browser: Browser;
let dataDir: string;
let consolePort: number;
let consoleBase: string;
let platform: RunningPlatform | undefined;
let dev: DevIssuer;

const loaded = (): LoadedConfig => {
  const text = `
server: { host: 127.0.0.1, port: 0 }
upstream: { anthropic: { baseUrl: "${standin.url}", apiKey: { env: APPROVALS_TEST_KEY } } }
identity:
  devIssuer: { enabled: true }
  issuers: [{ issuer: "${idp.issuer}", audiences: [attest-console] }]
groups:
  developers: { models: ["claude-*"] }
approvals:
  rules:
    - id: quick-expiry
      match: { keywords: ["expire quickly"] }
      approverGroups: [approvers]
      expiresAfter: 10s
      mode: hold
    - id: card-data-export
      match: { keywords: ["card number"], detectors: [bulk_extraction] }
      approverGroups: [approvers]
      expiresAfter: 5m
      mode: hold
    - id: customer-record
      match: { keywords: ["customer record"] }
      approverGroups: [approvers]
      mode: ask_and_retry
console:
  host: 127.0.0.1
  port: ${consolePort}
  reviewer:
    issuer: "${idp.issuer}"
    clientId: attest-console
    publicUrl: "${consoleBase}"
    scopes: [openid, profile, groups]
    reviewerGroups: [approvers]
    sessionKey: { env: REVIEWER_SESSION_KEY }
dataDir: ${dataDir}
logging: { level: silent }
`;
  return { config: parseConfigText(text, 'approvals.yaml', ENV), file: 'approvals.yaml', text };
};

const start = async () => (platform = await startPlatform(loaded(), pino({ level: 'silent' }), ENV));
const agent = async () => new Anthropic({ baseURL: platform!.gateway.url, apiKey: await dev.mint({ subject: 'svc-reporting', groups: ['developers'], audience: 'attest-dev', ttlSec: 600 }), maxRetries: 0, timeout: 120_000 });
/** A promise that never rejects: a held call awaited only after the browser steps must not surface as an unhandled rejection if a step fails first. */
const settle = <T,>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> => p.then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error }));
const ask = (text: string) => ({ model: 'claude-sonnet-5-5', max_tokens: 20, messages: [{ role: 'user' as const, content: text }] });

async function events(): Promise<AnyAttestEvent[]> {
  const c = await platform!.log.consumer(`read-${Math.random()}`, { startFrom: 'earliest' });
  const out: AnyAttestEvent[] = [];
  for (;;) {
    const batch = await c.poll(10_000, 100);
    if (batch.length === 0) break;
    for (const r of batch) out.push(decodeEvent(r.value).event as AnyAttestEvent);
  }
  await c.close();
  return out;
}

/** The approval the platform's book holds for the newest held request. */
async function pendingApproval(after: number): Promise<string> {
  for (let i = 0; i < 1200; i++) {
    const s = platform!.approvals.pending().filter((a) => a.requestedAtMs >= after).at(-1);
    if (s) return s.approvalId;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('no approval became pending');
}

async function signIn(page: Page, username: string): Promise<void> {
  await page.goto(`${consoleBase}/reviewer`);
  await page.waitForURL((u) => u.href.startsWith(`${idp.issuer}/interaction/`));
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(`${username}-pw`);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${consoleBase}/reviewer`);
}

async function decideInBrowser(username: string, approvalId: string, button: 'Approve' | 'Deny', reason: string, screenshot?: string): Promise<void> {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    page.setDefaultTimeout(45_000);
    page.setDefaultNavigationTimeout(45_000);
    await signIn(page, username);
    await page.getByRole('link', { name: `Review and decide on approval ${approvalId}` }).click();
    await page.waitForURL(`${consoleBase}/reviewer/approvals/${approvalId}`);
    const detail = await page.content();
    expect(detail).not.toContain(VISA);
    await page.getByLabel('Reason (required)').fill(reason);
    await page.getByRole('button', { name: button }).click();
    await page.waitForURL((u) => u.pathname === '/reviewer' && u.searchParams.get('decided') === approvalId);
    if (screenshot) {
      mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: join(ARTIFACTS, screenshot), fullPage: true });
    }
  } finally {
    await context.close();
  }
}

beforeAll(async () => {
  standin = await startAnthropicStandin();
  consolePort = await freePort();
  // localhost for the console, 127.0.0.1 for the IdP: two sites, as in production.
  consoleBase = `http://localhost:${consolePort}`;
  idp = await startIdp({
    audience: 'attest-console',
    clients: [],
    users: [
      { username: 'alice', password: 'alice-pw', name: 'Alice Approver', groups: ['approvers'] },
      { username: 'bob', password: 'bob-pw', name: 'Bob Approver', groups: ['approvers'] },
    ],
    webClients: [{ clientId: 'attest-console', redirectUris: [`${consoleBase}/reviewer/callback`] }],
  });
  dataDir = mkdtempSync(join(tmpdir(), 'attest-approvals-e2e-'));
  dev = await DevIssuer.loadOrCreate(dataDir);
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    timeout: 30_000,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-gpu', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  await start();
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await platform?.close();
  await idp?.close();
  await standin?.close();
});

describe('approvals end to end', () => {
  it('a held SDK call completes once a reviewer approves it in the browser; the evidence shows the chain', async () => {
    const client = await agent();
    const t0 = Date.now();
    const before = standin.requests.length;
    const call = settle(client.messages.create(ask(`export all customers with their card number, e.g. ${VISA}`)));
    const id = await pendingApproval(t0);
    expect(standin.requests.length).toBe(before);
    await decideInBrowser('alice', id, 'Approve', 'Ticket FIN-88: quarterly reconciliation', 'approvals-e2e.png');
    expect(await call).toMatchObject({ ok: true, value: { type: 'message' } });
    expect(standin.requests.length).toBe(before + 1);
    // The model never saw the card number.
    expect(JSON.stringify(standin.requests.at(-1)?.body)).not.toContain(VISA);

    const evs = await events();
    const about = (e: AnyAttestEvent) => (e.payload as { approvalId?: string }).approvalId === id;
    const chain = evs.filter((e) => e.metadata.type.startsWith('approval.') && about(e));
    expect(chain.map((e) => e.metadata.type)).toEqual(['approval.requested', 'approval.decided', 'approval.released']);
    expect(chain[1]!.actor).toMatchObject({ subject: 'user:alice', kind: 'human' });
    expect(chain[1]!.payload).toMatchObject({ decision: 'approved', quorumMet: true, comment: 'Ticket FIN-88: quarterly reconciliation' });
    const requestId = chain[0]!.correlation.requestId;
    const exchange = evs.filter((e) => e.correlation.requestId === requestId).map((e) => e.metadata.type);
    expect(exchange).toEqual(expect.arrayContaining(['gateway.request.received', 'policy.decided', 'gateway.request.forwarded', 'gateway.response.completed']));
    expect(JSON.stringify(chain[0]!.payload)).not.toContain(VISA);
    // The reviewer's sign-in is itself evidence.
    expect(evs.some((e) => e.metadata.type === 'auth.succeeded' && e.actor.subject === 'user:alice' && e.outcome.reason === 'reviewer_sign_in')).toBe(true);
  }, 90_000);

  it('a denial reaches the held SDK call as a permission error with the reviewer’s reason', async () => {
    const client = await agent();
    const t0 = Date.now();
    const call = client.messages.create(ask('dump the table with every card number')).then(() => undefined, (e: unknown) => e as Error);
    const id = await pendingApproval(t0);
    await decideInBrowser('bob', id, 'Deny', 'No ticket for this export');
    const err = await call;
    expect(err).toBeInstanceOf(Anthropic.PermissionDeniedError);
    expect(err?.message).toContain(id);
    expect(err?.message).toContain('No ticket for this export');
  }, 90_000);

  it('an approval nobody decides expires: the caller is told, the processor records approval.expired', async () => {
    const client = await agent();
    const t0 = Date.now();
    const call = client.messages.create(ask('export all card number records, and expire quickly')).then(() => undefined, (e: unknown) => e as Error);
    const id = await pendingApproval(t0);
    const err = await call;
    expect(err?.message).toMatch(/\[attest:approval_expired\]/);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(9_000);
    await expect.poll(async () => (await events()).some((e) => e.metadata.type === 'approval.expired' && (e.payload as { approvalId: string }).approvalId === id), { timeout: 5000 }).toBe(true);
  }, 60_000);

  it('a gateway restart during a hold cancels the approval: approving it afterwards releases nothing', async () => {
    const client = await agent();
    const t0 = Date.now();
    const before = standin.requests.length;
    const call = client.messages.create(ask('export all customers with card number')).then(() => undefined, (e: unknown) => e as Error);
    const id = await pendingApproval(t0);
    const t = Date.now();
    await platform!.close();
    // The held caller is answered at once, and its socket does not keep the close waiting.
    expect(Date.now() - t).toBeLessThan(30_000);
    platform = undefined;
    const err = await call;
    expect(err?.message).toContain('[attest:approval_cancelled]');
    await start();
    await expect.poll(() => platform!.approvals.get(id)?.status, { timeout: 5000 }).toBe('cancelled');
    const r = await platform!.approvals.execute({ type: 'approve', approvalId: id, approver: { subject: 'user:alice', issuer: idp.issuer, groups: ['approvers'], kind: 'human' }, reason: 'late' });
    expect(r.ok).toBe(false);
    expect(standin.requests.length).toBe(before);
    const cancelled = (await events()).filter((e) => e.metadata.type === 'approval.cancelled' && (e.payload as { approvalId: string }).approvalId === id);
    expect(cancelled).toHaveLength(1);
    expect((cancelled[0]!.payload as { reason: string }).reason).toBe('gateway_shutdown');
  }, 90_000);

  it('ask-and-retry: an approval id at once; approved in the browser, the same request goes through once; a tampered retry is refused', async () => {
    const client = await agent();
    const request = ask('show me the customer record of ACME Corp');
    const first = await client.messages.create(request).then(() => undefined, (e: unknown) => e as InstanceType<typeof Anthropic.PermissionDeniedError>);
    expect(first).toBeInstanceOf(Anthropic.PermissionDeniedError);
    expect(first!.message).toContain('[attest:approval_required]');
    const id = first!.headers?.get('x-attest-approval-id');
    expect(id).toMatch(/^apr_/);
    await expect.poll(() => platform!.approvals.get(id!)?.status, { timeout: 5000 }).toBe('pending');
    await decideInBrowser('alice', id!, 'Approve', 'Account review for ticket CS-12');
    const withId = { headers: { 'x-attest-approval-id': id! } };
    await expect.poll(() => client.messages.create(ask('show me the customer record of EVERY customer'), withId).then(() => 'served', (e: Error) => e.message), { timeout: 5000 }).toContain('[attest:approval_digest_mismatch]');
    await expect(client.messages.create(request, withId)).resolves.toMatchObject({ type: 'message' });
    await expect(client.messages.create(request, withId)).rejects.toThrow('[attest:approval_already_released]');
    await expect.poll(() => platform!.approvals.get(id!)?.status, { timeout: 5000 }).toBe('released');
  }, 90_000);
});
