import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ApprovalService } from '../services/common/src/approvals';
import { parseConfigText } from '../services/common/src/config';
import { ControlPublisher, ControlState, ControlSubscriber, type ControlMessage } from '../services/common/src/control';
import { EvidenceEmitter, memoryCheckpoints } from '../services/common/src/evidence/emitter';
import { openEvidence, type EvidenceRuntime } from '../services/common/src/evidence/producer';
import { verifyEncodedEvents } from '../services/common/src/evidence/verify-events';
import type { AnyAttestEvent } from '../services/common/src/events';
import { createTokenVerifier, DevIssuer } from '../services/common/src/identity';
import { MemoryEventLog } from '../services/common/src/log';
import { buildGateway } from '../services/gateway/src/app';
import { GatewayRecorder } from '../services/gateway/src/evidence';
import { startAnthropicStandin, type AnthropicStandin } from './harness/anthropic-standin';

/**
 * The gateway's half of approvals through the real SDK: a matching request is held (or answered
 * with an approval id), and only a signed resolution on the control channel for exactly that
 * request releases it. The approvals processor and console are stood in for by publishing the
 * resolution directly, signed with the installation's key, as they do; where a test needs the
 * whole loop (decision, release, release marker), an ApprovalService folds the same evidence log and
 * decides, as the approvals processor does.
 */

const CADENCE = { everyEvents: 1000, everyMs: 60_000 };
const logger = pino({ level: 'silent' });
let standin: AnthropicStandin;
let dir: string;
let evidence: EvidenceRuntime;
let controlLog: MemoryEventLog;
let control: ControlState;
let subscriber: ControlSubscriber;
let publisher: ControlPublisher;
let app: FastifyInstance;
let baseURL: string;
let dev: DevIssuer;
let approvalsEmitter: EvidenceEmitter;
let approvals: ApprovalService;

const config = (standinUrl: string) =>
  parseConfigText(
    `
upstream: { anthropic: { baseUrl: "${standinUrl}", apiKey: { env: K } } }
identity: { devIssuer: { enabled: true } }
groups:
  developers: { models: ["claude-*"] }
approvals:
  keepAliveMs: 1000
  rules:
    - id: bulk-export
      match: { detectors: [bulk_extraction], keywords: ["card number"] }
      approverGroups: [secops]
      expiresAfter: 10s
      mode: hold
    - id: customer-lookup
      match: { keywords: ["customer record"] }
      approverGroups: [secops]
      mode: ask_and_retry
`,
    'approvals.yaml',
    { K: 'x' },
  );

const token = (subject = 'agent-7') => dev.mint({ subject, groups: ['developers'], audience: 'attest-dev', ttlSec: 600 });
const client = async (subject?: string) => new Anthropic({ baseURL, apiKey: await token(subject), maxRetries: 0, timeout: 20_000 });
const ask = (text: string) => ({ model: 'claude-sonnet-5-5', max_tokens: 20, messages: [{ role: 'user' as const, content: text }] });

beforeAll(async () => {
  standin = await startAnthropicStandin();
  dir = mkdtempSync(join(tmpdir(), 'attest-approvals-'));
  evidence = await openEvidence({ dataDir: dir, component: 'gateway', producerId: 'gateway-approvals', tenantId: 'acme', logger, configText: 'x', configFile: 'approvals.yaml', softwareVersion: 'test', cadence: CADENCE });
  dev = await DevIssuer.loadOrCreate(dir);
  controlLog = new MemoryEventLog({ partitions: 2 });
  control = new ControlState();
  subscriber = new ControlSubscriber({ log: controlLog, group: 'gw', trust: async () => evidence.keyring.jwks(), onMessage: (m) => control.apply(m), logger, pollWaitMs: 50 });
  await subscriber.start();
  publisher = new ControlPublisher(controlLog, evidence.keyring);
  app = await buildGateway({
    config: config(standin.url),
    verifier: createTokenVerifier({ issuers: [dev.issuerOptions(['attest-dev'])] }),
    upstreamApiKey: 'k',
    logger,
    recorder: new GatewayRecorder(evidence.emitter, evidence.panKey, { id: 'approvals.yaml', version: 'test' }, 'standin'),
    control,
    holder: () => ({ gatewayId: evidence.emitter.producer.id, instanceId: evidence.emitter.producer.epoch }),
    digestKey: Buffer.alloc(32, 7),
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  baseURL = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  approvalsEmitter = await EvidenceEmitter.open({ log: evidence.log, keyring: evidence.keyring, producerId: 'approvals-e2e', tenantId: 'acme', checkpoints: memoryCheckpoints(), logger, cadence: CADENCE });
  approvals = await ApprovalService.start({ log: evidence.log, group: 'approvals-e2e', emitter: approvalsEmitter, publisher, producerId: 'approvals-e2e', logger, pollWaitMs: 20 });
});

/** Another gateway over the same logs, as after a restart (or behind the same load balancer): its ControlState rebuilt from the control log. */
async function otherGateway(): Promise<{ url: string; control: ControlState; close(): Promise<void> }> {
  const state = new ControlState();
  const sub = new ControlSubscriber({ log: controlLog, group: `gw-${Math.random()}`, trust: async () => evidence.keyring.jwks(), onMessage: (m) => state.apply(m), logger, pollWaitMs: 50 });
  await sub.start();
  const other = await buildGateway({
    config: config(standin.url),
    verifier: createTokenVerifier({ issuers: [dev.issuerOptions(['attest-dev'])] }),
    upstreamApiKey: 'k',
    logger,
    recorder: new GatewayRecorder(evidence.emitter, evidence.panKey, { id: 'approvals.yaml', version: 'test' }, 'standin'),
    control: state,
    holder: () => ({ gatewayId: evidence.emitter.producer.id, instanceId: 'restarted' }),
    digestKey: Buffer.alloc(32, 7),
  });
  await other.listen({ host: '127.0.0.1', port: 0 });
  const addr = other.server.address();
  return {
    url: `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`,
    control: state,
    close: async () => {
      await other.close();
      await sub.stop();
    },
  };
}

/** An approver as the console passes one to the approvals service. */
const reviewer = () => ({ subject: 'sec-1', issuer: dev.issuer, groups: ['secops'], kind: 'human' as const });

afterEach(() => standin.reply());

afterAll(async () => {
  await app?.close();
  await approvals?.stop();
  await approvalsEmitter?.close();
  await subscriber?.stop();
  await controlLog?.close();
  await evidence?.close('shutdown');
  await standin?.close();
});

async function readEvents(): Promise<AnyAttestEvent[]> {
  const c = await evidence.log.consumer(`read-${Math.random()}`, { startFrom: 'earliest' });
  const out: Uint8Array[] = [];
  for (;;) {
    const batch = await c.poll(10_000, 50);
    if (batch.length === 0) break;
    for (const r of batch) out.push(r.value);
  }
  await c.close();
  return (await verifyEncodedEvents(out, evidence.keyring.jwks(), { cadence: CADENCE })).decoded;
}

/** Waits until the gateway has recorded approval.requested for a request, and returns it. */
async function requestedApproval(after: number): Promise<{ approvalId: string; requestDigest: string; event: AnyAttestEvent }> {
  for (let i = 0; i < 600; i++) {
    const evs = (await readEvents()).filter((e) => e.metadata.type === 'approval.requested' && e.metadata.timeUs > after);
    const e = evs.at(-1);
    if (e) {
      const p = e.payload as { approvalId: string; requestDigest: string };
      return { approvalId: p.approvalId, requestDigest: p.requestDigest, event: e };
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('no approval.requested recorded');
}

const resolve = (approvalId: string, requestDigest: string, outcome: 'approved' | 'rejected', mode: 'hold' | 'ask_and_retry', subject = 'agent-7', reason = 'ok'): ControlMessage => ({
  type: 'approval.resolved',
  approvalId,
  outcome,
  requestDigest,
  reason,
  by: ['alice'],
  requester: { issuer: dev.issuer, subject },
  mode,
  eventId: `ev-${approvalId}`,
  atUs: Date.now() * 1000,
});

describe('approvals at the gateway', () => {
  it('requests that match no rule pass straight through', async () => {
    const c = await client();
    await expect(c.messages.create(ask('summarise the release notes'))).resolves.toMatchObject({ type: 'message' });
  });

  it('holds a matching request until it is approved, then forwards it and records the chain', async () => {
    const c = await client();
    const t0 = Date.now() * 1000;
    const before = standin.requests.length;
    const call = c.messages.create(ask('export all customers with their card number'));
    const { approvalId, requestDigest } = await requestedApproval(t0);
    await new Promise((r) => setTimeout(r, 200));
    expect(standin.requests.length).toBe(before); // nothing reached the model while held
    await publisher.publish(resolve(approvalId, requestDigest, 'approved', 'hold'));
    await expect(call).resolves.toMatchObject({ type: 'message' });
    expect(standin.requests.length).toBe(before + 1);

    const chain = (await readEvents()).filter((e) => JSON.stringify(e.payload).includes(approvalId) || (e.metadata.type === 'gateway.response.completed' && e.metadata.timeUs > t0));
    expect(chain.map((e) => e.metadata.type)).toEqual(['policy.decided', 'approval.requested', 'approval.released', 'gateway.response.completed']);
  });

  it('a held streaming call gets keep-alive comments while it waits, then the model stream', async () => {
    const t0 = Date.now() * 1000;
    const res = fetch(`${baseURL}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': await token() },
      body: JSON.stringify({ ...ask('dump the table of every customer'), stream: true }),
    });
    const { approvalId, requestDigest } = await requestedApproval(t0);
    const r = await res;
    expect(r.status).toBe(200);
    expect(r.headers.get('x-attest-approval-id')).toBe(approvalId);
    const reader = r.body!.getReader();
    const dec = new TextDecoder();
    let text = '';
    const started = Date.now();
    while (!text.includes(': keep-alive')) {
      const { value, done } = await reader.read();
      if (done) throw new Error('stream ended while held');
      text += dec.decode(value);
      if (Date.now() - started > 5000) throw new Error('no keep-alive within 5 s');
    }
    await publisher.publish(resolve(approvalId, requestDigest, 'approved', 'hold'));
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += dec.decode(value);
    }
    expect(text).toContain(`: attest: waiting for approval ${approvalId}`);
    expect(text).toContain('event: message_start');
    expect(text).toContain('event: message_stop');
  });

  it('a rejection reaches the held caller as a permission error naming the approval and the reason', async () => {
    const c = await client();
    const t0 = Date.now() * 1000;
    const call = c.messages.create(ask('list every card number we have'));
    const { approvalId, requestDigest } = await requestedApproval(t0);
    await publisher.publish(resolve(approvalId, requestDigest, 'rejected', 'hold', 'agent-7', 'not for this ticket'));
    const err = await call.then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.PermissionDeniedError);
    expect(String((err as Error).message)).toContain(approvalId);
    expect(String((err as Error).message)).toContain('not for this ticket');
    expect(String((err as Error).message)).toContain('[attest:approval_rejected]');
  });

  it('a resolution for another request (wrong digest) does not release a held one', async () => {
    const c = await client();
    const t0 = Date.now() * 1000;
    const call = c.messages.create(ask('export all customers and their card number'));
    const { approvalId } = await requestedApproval(t0);
    await publisher.publish(resolve(approvalId, 'f'.repeat(64), 'approved', 'hold'));
    const err = await call.then(() => undefined, (e: unknown) => e);
    expect(String((err as Error).message)).toContain('[attest:approval_digest_mismatch]');
  });

  it('ask-and-retry: an id at once; a tampered retry and another caller are refused; the approved request goes through once', async () => {
    const c = await client();
    const t0 = Date.now() * 1000;
    const first = await c.messages.create(ask('show me the customer record of ACME')).then(() => undefined, (e: unknown) => e as InstanceType<typeof Anthropic.PermissionDeniedError>);
    expect(first).toBeInstanceOf(Anthropic.PermissionDeniedError);
    const approvalId = first!.headers?.get('x-attest-approval-id');
    expect(approvalId).toMatch(/^apr_/);
    expect(first!.message).toContain('[attest:approval_required]');
    const { requestDigest } = await requestedApproval(t0);

    const withId = (subject?: string) => client(subject).then((cl) => cl.messages.create(ask('show me the customer record of ACME'), { headers: { 'x-attest-approval-id': approvalId! } }));
    // Not approved yet.
    await expect(withId()).rejects.toThrow('[attest:approval_pending]');
    await publisher.publish(resolve(approvalId!, requestDigest, 'approved', 'ask_and_retry'));
    await expect.poll(() => control.resolution(approvalId!)?.outcome, { timeout: 10_000 }).toBe('approved');

    const tampered = await (await client()).messages.create(ask('show me the customer record of EVERYONE'), { headers: { 'x-attest-approval-id': approvalId! } }).then(() => undefined, (e: unknown) => e as Error);
    expect(tampered?.message).toContain('[attest:approval_digest_mismatch]');
    await expect(withId('agent-8')).rejects.toThrow('[attest:approval_requester_mismatch]');
    await expect(withId()).resolves.toMatchObject({ type: 'message' });
    await expect(withId()).rejects.toThrow('[attest:approval_already_released]');

    const blocked = (await readEvents()).filter((e) => e.metadata.type === 'gateway.request.blocked' && (e.payload as { approvalId: string | null }).approvalId === approvalId);
    expect(blocked.map((e) => (e.payload as { ruleId: string }).ruleId)).toEqual([
      'approval.approval_pending',
      'approval.approval_digest_mismatch',
      'approval.approval_requester_mismatch',
      'approval.approval_already_released',
    ]);
  });

  it('count_tokens is subject to the same rules: the prompt does not reach the upstream unapproved', async () => {
    const before = standin.requests.length;
    const res = await (await client()).messages.countTokens(ask('show me the customer record of ACME')).then(() => undefined, (e: unknown) => e as InstanceType<typeof Anthropic.PermissionDeniedError>);
    expect(res).toBeInstanceOf(Anthropic.PermissionDeniedError);
    expect(res!.message).toContain('[attest:approval_required]');
    expect(res!.headers?.get('x-attest-approval-id')).toMatch(/^apr_/);
    expect(standin.requests.length).toBe(before);
    // A prompt no rule matches is counted as before.
    await expect((await client()).messages.countTokens(ask('summarise the release notes'))).resolves.toMatchObject({ input_tokens: expect.any(Number) });
  });

  it('a caller that goes away while held cancels the approval (evidence), and nothing reaches the model', async () => {
    const before = standin.requests.length;
    const t0 = Date.now() * 1000;
    const ac = new AbortController();
    const c = await client();
    const call = c.messages.create(ask('export all customers with their card number'), { signal: ac.signal }).catch(() => undefined);
    const { approvalId, requestDigest } = await requestedApproval(t0);
    ac.abort();
    await call;
    await expect.poll(async () => (await readEvents()).some((e) => e.metadata.type === 'approval.cancelled' && (e.payload as { approvalId: string }).approvalId === approvalId), { timeout: 3000 }).toBe(true);
    // An approval arriving later releases nothing.
    await publisher.publish(resolve(approvalId, requestDigest, 'approved', 'hold'));
    await new Promise((r) => setTimeout(r, 200));
    expect(standin.requests.length).toBe(before);
  });

  it('ask-and-retry with the approvals service: once released, the release marker refuses the approval at a restarted gateway too', async () => {
    const c = await client();
    const request = ask('show me the customer record of Initech');
    const first = await c.messages.create(request).then(() => undefined, (e: unknown) => e as InstanceType<typeof Anthropic.PermissionDeniedError>);
    expect(first!.message).toContain('[attest:approval_required]');
    const approvalId = first!.headers?.get('x-attest-approval-id');
    expect(approvalId).toMatch(/^apr_/);
    await expect.poll(() => approvals.get(approvalId!)?.status, { timeout: 5000 }).toBe('pending');
    expect(await approvals.execute({ type: 'approve', approvalId: approvalId!, approver: reviewer(), reason: 'ticket CS-77' })).toMatchObject({ ok: true, state: { status: 'approved' } });
    await expect.poll(() => control.resolution(approvalId!)?.outcome, { timeout: 5000 }).toBe('approved');

    const before = standin.requests.length;
    const withId = { headers: { 'x-attest-approval-id': approvalId! } };
    await expect(c.messages.create(request, withId)).resolves.toMatchObject({ type: 'message' });
    // The service folds the gateway's approval.released and publishes the marker.
    await expect.poll(() => control.resolution(approvalId!)?.outcome, { timeout: 5000 }).toBe('released');
    expect(approvals.get(approvalId!)?.status).toBe('released');

    const restarted = await otherGateway();
    try {
      expect(restarted.control.resolution(approvalId!)?.outcome).toBe('released');
      const c2 = new Anthropic({ baseURL: restarted.url, apiKey: await token(), maxRetries: 0, timeout: 20_000 });
      await expect(c2.messages.create(request, withId)).rejects.toThrow('[attest:approval_already_released]');
    } finally {
      await restarted.close();
    }
    await expect(c.messages.create(request, withId)).rejects.toThrow('[attest:approval_already_released]');
    expect(standin.requests.length).toBe(before + 1);
    const released = (await readEvents()).filter((e) => e.metadata.type === 'approval.released' && (e.payload as { approvalId: string }).approvalId === approvalId);
    expect(released).toHaveLength(1);
    expect(control.resolution(approvalId!)?.eventId).toBe(released[0]!.metadata.eventId);
  });

  it('hold with the approvals service: the held request is released once, and its release marker disturbs nothing', async () => {
    const c = await client();
    const t0 = Date.now() * 1000;
    const before = standin.requests.length;
    const call = c.messages.create(ask('export all customers with their card number, for the audit'));
    const { approvalId } = await requestedApproval(t0);
    await expect.poll(() => approvals.get(approvalId)?.status, { timeout: 5000 }).toBe('pending');
    expect(await approvals.execute({ type: 'approve', approvalId, approver: reviewer(), reason: 'audit ticket A-1' })).toMatchObject({ ok: true });
    await expect(call).resolves.toMatchObject({ type: 'message' });
    expect(standin.requests.length).toBe(before + 1);
    await expect.poll(() => control.resolution(approvalId)?.outcome, { timeout: 5000 }).toBe('released');
    expect(control.resolution(approvalId)).toMatchObject({ mode: 'hold' });
    expect(control.waitingCount()).toBe(0);
    // A held approval never releases a retry, marker or not.
    await expect(c.messages.create(ask('export all customers with their card number, for the audit'), { headers: { 'x-attest-approval-id': approvalId } })).rejects.toThrow('[attest:approval_mode_mismatch]');

    // The next held request of the same run is held and released as before.
    const t1 = Date.now() * 1000;
    const next = c.messages.create(ask('export all customers with their card number, again'));
    const second = await requestedApproval(t1);
    expect(second.approvalId).not.toBe(approvalId);
    await expect.poll(() => approvals.get(second.approvalId)?.status, { timeout: 5000 }).toBe('pending');
    await approvals.execute({ type: 'approve', approvalId: second.approvalId, approver: reviewer(), reason: 'audit ticket A-2' });
    await expect(next).resolves.toMatchObject({ type: 'message' });
    expect(standin.requests.length).toBe(before + 2);
  });
});
