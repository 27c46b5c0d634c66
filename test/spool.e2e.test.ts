/**
 * log.kafka.onUnavailable: spool. With the Kafka broker stopped, the gateway keeps answering: each
 * exchange's evidence goes durably to the local spool; when the broker is back the spool drains to
 * the events topic in order, and the outage window is itself recorded as audit.stopped (paused).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import Anthropic from '@anthropic-ai/sdk';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfigText, type LoadedConfig } from '../services/common/src/config';
import { decodeEvent, type AnyAttestEvent } from '../services/common/src/events';
import { DevIssuer } from '../services/common/src/identity';
import { startPlatform, type RunningPlatform } from '../services/cli/src/platform';
import { startAnthropicStandin, type AnthropicStandin } from './harness/anthropic-standin';
import { startKafka, type KafkaBroker } from './harness/kafka';

let kafka: KafkaBroker;
let standin: AnthropicStandin;
let platform: RunningPlatform | undefined;
let dataDir: string;
let dev: DevIssuer;

beforeAll(async () => {
  [kafka, standin] = await Promise.all([startKafka({ dedicated: true }), startAnthropicStandin()]);
  dataDir = mkdtempSync(join(tmpdir(), 'attest-spool-'));
  const suffix = randomBytes(4).toString('hex');
  const text = `
server: { host: 127.0.0.1, port: 0 }
upstream: { anthropic: { baseUrl: "${standin.url}", apiKey: { env: SPOOL_KEY } } }
identity: { devIssuer: { enabled: true } }
groups:
  developers: { models: ["claude-*"] }
log:
  kind: kafka
  kafka:
    brokers: [${kafka.brokers.join(', ')}]
    clientId: spool-${suffix}
    topics: { events: "spool-${suffix}.events", control: "spool-${suffix}.control", deadLetter: "spool-${suffix}.dlq" }
    partitions: 2
    replicationFactor: 1
    minInsyncReplicas: 1
    onUnavailable: spool
console: { enabled: false }
dataDir: ${dataDir}
logging: { level: silent }
`;
  const loaded: LoadedConfig = { config: parseConfigText(text, 'spool.yaml', { SPOOL_KEY: 'k' }), file: 'spool.yaml', text };
  platform = await startPlatform(loaded, pino({ level: 'silent' }), { SPOOL_KEY: 'k' });
  dev = await DevIssuer.loadOrCreate(dataDir);
}, 180_000);

afterAll(async () => {
  await platform?.close();
  await standin?.close();
  await kafka?.close();
}, 60_000);

async function events(): Promise<AnyAttestEvent[]> {
  const c = await platform!.log.consumer(`read-${Math.random().toString(36).slice(2)}`, { startFrom: 'earliest' });
  const out: AnyAttestEvent[] = [];
  for (;;) {
    const batch = await c.poll(10_000, 1000);
    if (batch.length === 0) break;
    for (const r of batch) out.push(decodeEvent(r.value).event as AnyAttestEvent);
  }
  await c.close();
  return out;
}

describe('spooling through a Kafka outage', () => {
  it('serves during the outage, delivers the spooled evidence afterwards, and records the outage window', async () => {
    const client = new Anthropic({ baseURL: platform!.gateway.url, apiKey: await dev.mint({ subject: 'svc-spool', groups: ['developers'], audience: 'attest-dev', ttlSec: 600 }), maxRetries: 0, timeout: 60_000 });
    const ask = () => client.messages.create({ model: 'claude-sonnet-5-5', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }).withResponse();
    const ids: string[] = [];
    ids.push((await ask()).response.headers.get('x-attest-request-id')!);

    const gauge = async (name: string) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(await (await fetch(`${platform!.gateway.url}/metrics`)).text())?.[1]);
    expect(await gauge('attest_evidence_spooling')).toBe(0);

    await kafka.stop!();
    for (let i = 0; i < 3; i++) ids.push((await ask()).response.headers.get('x-attest-request-id')!);
    // What an operator's alert reads: evidence is only on this machine's disk.
    expect(await gauge('attest_evidence_spooling')).toBe(1);
    await kafka.start!();

    await expect
      .poll(async () => {
        const evs = await events();
        const completed = new Set(evs.filter((e) => e.metadata.type === 'gateway.response.completed').map((e) => e.correlation.requestId));
        return ids.every((id) => completed.has(id)) && evs.some((e) => e.metadata.type === 'audit.stopped' && e.metadata.producer.startsWith('spool-platform-'));
      }, { timeout: 90_000, interval: 1000 })
      .toBe(true);
    await expect.poll(() => gauge('attest_evidence_spooling'), { timeout: 30_000 }).toBe(0);
    expect(await gauge('attest_evidence_spool_drain_stalled')).toBe(0);
    const evs = await events();
    const perRequest = ids.map((id) => evs.filter((e) => e.metadata.type === 'gateway.response.completed' && e.correlation.requestId === id).length);
    expect(perRequest).toEqual([1, 1, 1, 1]);
    const outage = evs.find((e) => e.metadata.type === 'audit.stopped' && e.metadata.producer.startsWith('spool-platform-'))!;
    expect(outage.payload).toMatchObject({ reason: 'paused', resumeExpected: true, detail: expect.stringMatching(/Kafka was unreachable from .* to .*; \d+ evidence records were spooled/) });
  }, 240_000);
});
