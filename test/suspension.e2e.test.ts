import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfigText, type LoadedConfig } from '../services/common/src/config';
import { decodeEvent, type AnyAttestEvent } from '../services/common/src/events';
import { DevIssuer } from '../services/common/src/identity';
import { startPlatform, type RunningPlatform } from '../services/cli/src/platform';
import { startAnthropicStandin, type AnthropicStandin } from './harness/anthropic-standin';

/**
 * The "compromised service account is blocked instantly" promise, end to end on the embedded
 * platform: an admin suspends an identity through the console, the running gateway refuses it
 * promptly (the one-second target is measured in bench/RESULTS.md), the suspension survives a restart, another admin restores it, and every step is
 * evidence.
 */

let standin: AnthropicStandin;
let dataDir: string;
let platform: RunningPlatform | undefined;
let dev: DevIssuer;

const loaded = (): LoadedConfig => {
  const text = `
server: { host: 127.0.0.1, port: 0 }
upstream: { anthropic: { baseUrl: "${standin.url}", apiKey: { env: SUSPENSION_TEST_KEY } } }
identity: { devIssuer: { enabled: true } }
groups:
  developers: { models: ["claude-*"] }
console: { port: 0, adminGroups: [secops] }
risk:
  signals: { repeatedDenials: { threshold: 3 } }
  suspendAt: { enabled: true, score: null, signals: [repeated-denials] }
dataDir: ${dataDir}
logging: { level: silent }
`;
  return { config: parseConfigText(text, 'suspension.yaml', { SUSPENSION_TEST_KEY: 'sk-test' }), file: 'suspension.yaml', text };
};

const start = async () => {
  platform = await startPlatform(loaded(), pino({ level: 'silent' }), { SUSPENSION_TEST_KEY: 'sk-test' });
  return platform;
};

const mint = (subject: string, groups: string[]) => dev.mint({ subject, groups, audience: 'attest-dev', ttlSec: 600 });

async function call(p: RunningPlatform, token: string) {
  const client = new Anthropic({ baseURL: p.gateway.url, apiKey: token, maxRetries: 0 });
  return client.messages.create({ model: 'claude-sonnet-5-5', max_tokens: 20, messages: [{ role: 'user', content: 'hello' }] });
}

async function admin(p: RunningPlatform, path: string, token: string, body: unknown) {
  const res = await fetch(`${p.consoleUrl}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, code: res.headers.get('x-attest-error'), body: (await res.json()) as Record<string, unknown> };
}

async function events(p: RunningPlatform): Promise<AnyAttestEvent[]> {
  const c = await p.log.consumer(`read-${Math.random()}`, { startFrom: 'earliest' });
  const out: AnyAttestEvent[] = [];
  for (;;) {
    const batch = await c.poll(10_000, 100);
    if (batch.length === 0) break;
    for (const r of batch) out.push(decodeEvent(r.value).event as AnyAttestEvent);
  }
  await c.close();
  return out;
}

beforeAll(async () => {
  standin = await startAnthropicStandin();
  dataDir = mkdtempSync(join(tmpdir(), 'attest-suspension-'));
  dev = await DevIssuer.loadOrCreate(dataDir);
});

afterAll(async () => {
  await platform?.close();
  await standin?.close();
});

describe('identity suspension', () => {
  it('a suspended identity is refused by the running gateway, across a restart, until another admin restores it', async () => {
    const p1 = await start();
    const agent = await mint('svc-payments-bot', ['developers']);
    const alice = await mint('alice', ['secops']);
    const bob = await mint('bob', ['secops']);
    await expect(call(p1, agent)).resolves.toMatchObject({ type: 'message' });

    // Not an admin: refused, nothing suspended.
    const denied = await admin(p1, '/v1/identities/suspend', agent, { issuer: 'x', subject: 'y', reason: 'x' });
    expect([denied.status, denied.code]).toEqual([403, 'admin_role_required']);

    const issuer = dev.issuer;
    const t0 = performance.now();
    const s = await admin(p1, '/v1/identities/suspend', alice, { issuer, subject: 'svc-payments-bot', reason: 'ticket SEC-1234' });
    expect(s.status).toBe(201);
    let refusedAfterMs = -1;
    while (refusedAfterMs < 0) {
      try {
        await call(p1, agent);
      } catch (err) {
        expect(err).toBeInstanceOf(Anthropic.PermissionDeniedError);
        expect((err as InstanceType<typeof Anthropic.PermissionDeniedError>).headers?.get('x-attest-error')).toBe('identity_suspended');
        expect(String((err as Error).message)).toContain('admin:ticket SEC-1234');
        refusedAfterMs = performance.now() - t0;
      }
      // The product target is one second (bench/RESULTS.md measures it); the test only bounds it, so
      // a loaded CI machine cannot fail it on timing alone.
      if (refusedAfterMs < 0 && performance.now() - t0 > 10_000) throw new Error('the gateway still served the suspended identity after 10 s');
    }
    process.stderr.write(`[suspension] admin suspension in force at the gateway after ${refusedAfterMs.toFixed(0)} ms\n`);
    // Other identities are unaffected.
    await expect(call(p1, await mint('svc-other', ['developers']))).resolves.toMatchObject({ type: 'message' });

    // A restart keeps the suspension: the gateway reads the control log before it takes traffic.
    await p1.close();
    platform = undefined;
    const p2 = await start();
    await expect(call(p2, agent)).rejects.toBeInstanceOf(Anthropic.PermissionDeniedError);

    const listed = await fetch(`${p2.consoleUrl}/v1/identities/suspended`, { headers: { authorization: `Bearer ${bob}` } });
    expect(((await listed.json()) as { suspensions: Array<{ subject: string }> }).suspensions.map((x) => x.subject)).toEqual(['svc-payments-bot']);

    // Four eyes: alice suspended herself by mistake? She cannot lift it herself.
    await admin(p2, '/v1/identities/suspend', bob, { issuer, subject: 'alice', reason: 'drill' });
    const self = await admin(p2, '/v1/identities/restore', alice, { issuer, subject: 'alice', reason: 'mine' });
    expect([self.status, self.code]).toEqual([403, 'self_restore_forbidden']);

    const r = await admin(p2, '/v1/identities/restore', bob, { issuer, subject: 'svc-payments-bot', reason: 'credentials rotated' });
    expect(r.status).toBe(201);
    await expect.poll(async () => (await call(p2, agent).then(() => 'served', () => 'refused')), { timeout: 10_000, interval: 20 }).toBe('served');

    const evs = await events(p2);
    const suspended = evs.filter((e) => e.metadata.type === 'identity.suspended');
    expect(suspended.map((e) => [e.actor.subject, (e.payload as { principal: { subject: string } }).principal.subject, (e.payload as { reason: string }).reason])).toEqual([
      ['alice', 'svc-payments-bot', 'admin:ticket SEC-1234'],
      ['bob', 'alice', 'admin:drill'],
    ]);
    const restored = evs.filter((e) => e.metadata.type === 'identity.restored');
    expect(restored).toHaveLength(1);
    expect(restored[0]!.payload).toMatchObject({ principal: { subject: 'svc-payments-bot' }, suspendedEventId: suspended[0]!.metadata.eventId, automatic: false });
    const blocked = evs.filter((e) => e.metadata.type === 'gateway.request.blocked' && (e.payload as { stage: string }).stage === 'suspension');
    expect(blocked.length).toBeGreaterThanOrEqual(2);
    expect(blocked.every((e) => e.actor.subject === 'svc-payments-bot')).toBe(true);
  });

  it('the risk processor suspends an identity after repeated denials; the gateway refuses it', async () => {
    const p = platform ?? (await start());
    const rogue = await mint('svc-rogue', ['developers']);
    const client = new Anthropic({ baseURL: p.gateway.url, apiKey: rogue, maxRetries: 0 });
    // Three requests for a model the group may not use: three denials.
    for (let i = 0; i < 3; i++) {
      await expect(client.messages.create({ model: 'gpt-4o', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] })).rejects.toBeInstanceOf(Anthropic.PermissionDeniedError);
    }
    const t0 = performance.now();
    let code: string | null = null;
    while (code !== 'identity_suspended') {
      code = await call(p, rogue).then(
        () => 'served',
        (err: unknown) => (err as InstanceType<typeof Anthropic.PermissionDeniedError>).headers?.get('x-attest-error') ?? 'error',
      );
      if (code !== 'identity_suspended' && performance.now() - t0 > 10_000) throw new Error(`still ${code} 10 s after the third denial`);
    }
    process.stderr.write(`[suspension] risk suspension in force at the gateway ${(performance.now() - t0).toFixed(0)} ms after the third denial\n`);
    const evs = await events(p);
    const suspended = evs.filter((e) => e.metadata.type === 'identity.suspended' && (e.payload as { principal: { subject: string } }).principal.subject === 'svc-rogue');
    expect(suspended).toHaveLength(1);
    expect(suspended[0]!.metadata.producer).toMatch(/^risk-/);
    expect(evs.some((e) => e.metadata.type === 'finding.opened' && JSON.stringify(e.payload).includes('repeated-denials'))).toBe(true);
  });
});
