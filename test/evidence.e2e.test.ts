import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfigText } from '../services/common/src/config';
import { openEvidence, type EvidenceRuntime } from '../services/common/src/evidence/producer';
import { verifyEncodedEvents } from '../services/common/src/evidence/verify-events';
import { missingRequiredFields, type AnyAttestEvent } from '../services/common/src/events';
import { createTokenVerifier, DevIssuer } from '../services/common/src/identity';
import { FileEventLog, LogError, MemoryEventLog } from '../services/common/src/log';
import { buildGateway } from '../services/gateway/src/app';
import { GatewayRecorder } from '../services/gateway/src/evidence';
import { startAnthropicStandin, type AnthropicStandin } from './harness/anthropic-standin';
import { filesUnder, readLogRecords } from './support/log-records';

/**
 * Invariants 1, 2 and 4 through the real gateway: every exchange is evidence on the durable log,
 * appended before the upstream is called; no card number reaches any file; the chain verifies.
 */

// Test corpus card numbers (Luhn-valid test PANs).
const VISA = '4111111111111111';
const AMEX = '378282246310005';
const CADENCE = { everyEvents: 1000, everyMs: 60_000 };
const config = (standinUrl: string) =>
  parseConfigText(
    `
upstream: { anthropic: { baseUrl: "${standinUrl}", apiKey: { env: K } } }
identity: { devIssuer: { enabled: true } }
groups:
  developers: { models: ["claude-*"] }
  analysts: { models: ["claude-haiku-*"], masking: { request: block } }
  lenient: { models: ["claude-*"], masking: { request: allow, response: allow } }
`,
    'evidence.yaml',
  );

let standin: AnthropicStandin;
let dir: string;
let evidence: EvidenceRuntime;
let app: FastifyInstance;
let baseURL: string;
let dev: DevIssuer;

async function startGateway(ev: EvidenceRuntime, dataDir: string): Promise<{ app: FastifyInstance; url: string }> {
  const cfg = config(standin.url);
  dev = await DevIssuer.loadOrCreate(dataDir);
  const verifier = createTokenVerifier({ issuers: [dev.issuerOptions(['attest-dev'])] });
  const recorder = new GatewayRecorder(ev.emitter, ev.panKey, { id: 'evidence.yaml', version: 'test' }, 'standin');
  const gw = await buildGateway({ config: cfg, verifier, upstreamApiKey: 'k', logger: pino({ level: 'silent' }), recorder, jwks: () => ev.keyring.jwks() });
  await gw.listen({ host: '127.0.0.1', port: 0 });
  const addr = gw.server.address();
  return { app: gw, url: `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}` };
}

const token = (groups: string[], subject = 'agent-7') => dev.mint({ subject, groups, audience: 'attest-dev', ttlSec: 600 });

beforeAll(async () => {
  standin = await startAnthropicStandin();
  dir = mkdtempSync(join(tmpdir(), 'attest-evidence-'));
  evidence = await openEvidence({
    dataDir: dir,
    component: 'gateway',
    producerId: 'gateway-test',
    tenantId: 'acme',
    logger: pino({ level: 'silent' }),
    configText: 'x',
    configFile: 'evidence.yaml',
    softwareVersion: 'test',
    cadence: CADENCE,
  });
  ({ app, url: baseURL } = await startGateway(evidence, dir));
});

afterAll(async () => {
  await app?.close();
  await evidence?.close('shutdown');
  await standin?.close();
});

const readAllEvents = (): Promise<Uint8Array[]> => readLogRecords(evidence.log);

describe('evidence of every exchange', () => {
  it('records request, decision, masking, forwarding and response for streamed and plain calls, with every 10.2.2 field', async () => {
    const client = new Anthropic({ baseURL, apiKey: await token(['developers']), maxRetries: 0 });
    await client.messages.create({ model: 'claude-sonnet-5-5', max_tokens: 50, messages: [{ role: 'user', content: `card ${VISA}` }] });
    standin.reply({ kind: 'message', content: [{ type: 'text', text: `amex ${AMEX} done`, deltas: ['amex 3782822', '46310005 done'] }], usage: { input_tokens: 5, output_tokens: 9 } });
    const streamed = await client.messages.stream({ model: 'claude-sonnet-5-5', max_tokens: 50, messages: [{ role: 'user', content: 'x' }] }).finalMessage();
    standin.reply();
    expect(streamed.content[0]).toMatchObject({ text: 'amex 378282*****0005 done' });

    const events = (await verifyEncodedEvents(await readAllEvents(), evidence.keyring.jwks(), { cadence: CADENCE })).decoded;
    const byRequest = new Map<string, AnyAttestEvent[]>();
    for (const e of events) {
      if (!e.correlation.requestId.startsWith('req_attest_')) continue;
      byRequest.set(e.correlation.requestId, [...(byRequest.get(e.correlation.requestId) ?? []), e]);
    }
    const exchanges = [...byRequest.values()];
    expect(exchanges).toHaveLength(2);
    // The echoed answer carries the already-masked number: nothing more to mask in the response.
    expect(exchanges[0]!.map((e) => e.metadata.type)).toEqual(['gateway.request.received', 'policy.decided', 'data.masked', 'gateway.request.forwarded', 'gateway.response.completed']);
    expect(exchanges[1]!.map((e) => e.metadata.type)).toEqual(['gateway.request.received', 'policy.decided', 'gateway.request.forwarded', 'gateway.response.completed', 'data.masked']);

    for (const e of events) {
      expect(missingRequiredFields(e), e.metadata.type).toEqual([]);
      expect(e.metadata.tenantId).toBe('acme');
    }
    const [received, decided, masked] = exchanges[0]!;
    expect(received!.actor).toMatchObject({ subject: 'agent-7', groups: ['developers'], dev: true });
    expect(received!.source.address).toBe('127.0.0.1');
    expect(received!.target).toMatchObject({ protocol: 'http', service: 'anthropic', resource: '/v1/messages', model: 'claude-sonnet-5-5' });
    expect(decided!.payload).toMatchObject({ decision: 'mask' });
    // The store keeps BIN, last four and a keyed hash: the same HMAC an investigator computes.
    const hit = (masked as AnyAttestEvent & { payload: { hits: Array<Record<string, unknown>> } }).payload.hits[0]!;
    expect(hit).toMatchObject({ bin: '411111', last4: '1111', panHmacKeyId: evidence.panKey.kid, action: 'masked', direction: 'request' });
    expect(Buffer.from(hit.panHmac as Buffer).toString('base64url')).toBe(evidence.panKey.hash(VISA));
    const completed = exchanges[1]!.find((e) => e.metadata.type === 'gateway.response.completed') as AnyAttestEvent & { payload: Record<string, unknown> };
    expect(completed.payload).toMatchObject({ stream: true, aborted: false, upstreamStatus: 200, stopReason: 'end_turn', usage: { inputTokens: 5, outputTokens: 9 } });
    expect(String(completed.payload.content)).toContain('378282*****0005');
  });

  it('records auth failures and policy refusals', async () => {
    await fetch(`${baseURL}/v1/messages`, { method: 'POST', headers: { 'x-api-key': 'not-a-token', 'content-type': 'application/json' }, body: '{}' });
    const analyst = new Anthropic({ baseURL, apiKey: await token(['analysts'], 'analyst-1'), maxRetries: 0 });
    await analyst.messages.create({ model: 'claude-haiku-5-5', max_tokens: 10, messages: [{ role: 'user', content: `pay ${VISA}` }] }).catch(() => undefined);
    await analyst.messages.create({ model: 'claude-opus-5-5', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] }).catch(() => undefined);
    const events = (await verifyEncodedEvents(await readAllEvents(), evidence.keyring.jwks(), { cadence: CADENCE })).decoded;
    const failed = events.filter((e) => e.metadata.type === 'auth.failed');
    expect(failed.at(-1)).toMatchObject({ outcome: { result: 'failure', status: 401, reason: 'token_malformed' }, actor: { subject: 'anonymous' } });
    const blocked = events.filter((e) => e.metadata.type === 'gateway.request.blocked' && e.actor.subject === 'analyst-1');
    expect(blocked.map((e) => (e.payload as { ruleId: string; stage: string }).ruleId)).toEqual(['builtin.pan', 'policy.models']);
    expect(blocked.map((e) => e.outcome.status)).toEqual([403, 403]);
  });

  it('records card data a lenient group may send as allowed, without keeping the number in the evidence', async () => {
    const lenient = new Anthropic({ baseURL, apiKey: await token(['lenient'], 'lenient-1'), maxRetries: 0 });
    const msg = await lenient.messages.create({ model: 'claude-sonnet-5-5', max_tokens: 10, messages: [{ role: 'user', content: `raw ${VISA}` }] });
    expect(msg.content[0]).toMatchObject({ text: `raw ${VISA}` });
    const events = (await verifyEncodedEvents(await readAllEvents(), evidence.keyring.jwks(), { cadence: CADENCE })).decoded.filter((e) => e.actor.subject === 'lenient-1');
    const masked = events.filter((e) => e.metadata.type === 'data.masked') as Array<AnyAttestEvent & { payload: { hits: Array<{ action: string; direction: string }> } }>;
    expect(masked.map((e) => e.payload.hits.map((h) => `${h.direction}:${h.action}`))).toEqual([['request:allowed'], ['response:allowed']]);
    const completed = events.find((e) => e.metadata.type === 'gateway.response.completed') as AnyAttestEvent & { payload: { content: string | null } };
    expect(completed.payload.content).toBeNull();
  });

  it('leaves no card number in any file of the data directory', async () => {
    await evidence.emitter.checkpoint();
    const needles = [VISA, AMEX, '4111 1111', '3782 8224'].map((n) => Buffer.from(n));
    const files = filesUnder(dir);
    expect(files.some((f) => f.includes(`${join(dir, 'log')}`))).toBe(true);
    for (const f of files) {
      const bytes = readFileSync(f);
      for (const n of needles) expect(bytes.includes(n), `${f} holds a card number`).toBe(false);
    }
  });

  it('serves the JWKS, and the log verifies against it: chain, Merkle roots and signed checkpoints', async () => {
    const jwks = (await fetch(`${baseURL}/.well-known/jwks.json`).then((r) => r.json())) as { keys: Array<Record<string, unknown>> };
    expect(jwks.keys[0]).toMatchObject({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig' });
    expect(jwks.keys[0]).not.toHaveProperty('d');
    await evidence.emitter.checkpoint();
    const report = await verifyEncodedEvents(await readAllEvents(), jwks as never, { cadence: CADENCE });
    expect(report.findings).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.stats.attestedEvents).toBe(report.stats.events);
    expect(report.stats.checkpoints).toBeGreaterThanOrEqual(2);
  });
});

describe('failing closed', () => {
  it('refuses with 503 and never calls the upstream when the request event cannot be made durable', async () => {
    const memDir = mkdtempSync(join(tmpdir(), 'attest-failclosed-'));
    const log = new MemoryEventLog();
    const ev = await openEvidence({ dataDir: memDir, component: 'gateway', producerId: 'gw-mem', tenantId: 't', logger: pino({ level: 'silent' }), configText: 'y', configFile: 'c', softwareVersion: 'test', cadence: CADENCE, log });
    const gw = await startGateway(ev, memDir);
    try {
      const client = new Anthropic({ baseURL: gw.url, apiKey: await token(['developers']), maxRetries: 0 });
      log.injectFailure(new LogError('log_unavailable', 'disk gone', { retriable: true }));
      const before = standin.requests.length;
      const err = await client.messages.create({ model: 'claude-sonnet-5-5', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Anthropic.APIError);
      expect((err as InstanceType<typeof Anthropic.APIError>).status).toBe(503);
      expect((err as InstanceType<typeof Anthropic.APIError>).headers?.get('x-attest-error')).toBe('evidence_unavailable');
      expect(standin.requests.length).toBe(before);

      // Back to normal: requests flow again, and the chain continues from the last durable event.
      log.injectFailure(undefined);
      await client.messages.create({ model: 'claude-sonnet-5-5', max_tokens: 5, messages: [{ role: 'user', content: 'y' }] });
      expect(standin.requests.length).toBe(before + 1);
      await ev.emitter.checkpoint();
      const consumer = await log.consumer('verify', { startFrom: 'earliest' });
      const records = (await consumer.poll(100_000, 10)).map((r) => r.value);
      const report = await verifyEncodedEvents(records, ev.keyring.jwks(), { cadence: CADENCE });
      expect(report.findings).toEqual([]);
      expect(report.stats.epochs).toBe(1);
      expect(report.stats.attestedEvents).toBe(report.stats.events);
    } finally {
      await gw.app.close();
      await ev.close('shutdown');
    }
  });

  it('opens on the same data directory again after a restart, linking the new epoch to the last checkpoint', async () => {
    const d = mkdtempSync(join(tmpdir(), 'attest-restart-'));
    const open = () => openEvidence({ dataDir: d, component: 'gateway', producerId: 'gw-r', tenantId: 't', logger: pino({ level: 'silent' }), configText: 'z', configFile: 'c', softwareVersion: 'test', cadence: CADENCE });
    const first = await open();
    await first.close('shutdown');
    const second = await open();
    await second.close('shutdown');
    const log = await FileEventLog.open({ dir: join(d, 'log') });
    const consumer = await log.consumer('v', { startFrom: 'earliest' });
    const records = (await consumer.poll(100_000, 10)).map((r) => r.value);
    await consumer.close();
    await log.close();
    const keyring = second.keyring;
    const report = await verifyEncodedEvents(records, keyring.jwks(), { cadence: CADENCE });
    expect(report.findings).toEqual([]);
    expect(report.stats.epochs).toBe(2);
    const started = report.decoded.filter((e) => e.metadata.type === 'audit.started');
    expect(started[1]!.payload).toMatchObject({ previousStopRecorded: true });
    expect(report.decoded.filter((e) => e.metadata.type === 'config.changed')).toHaveLength(1);
  });
});
