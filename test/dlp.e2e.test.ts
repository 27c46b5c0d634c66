/**
 * The DLP processor on the running platform: a model answer that leaks a cloud secret and a CVV
 * (which the gateway's PAN masking does not cover) is found after the fact: a derived data.masked
 * event names the original event and the rules applied, a data security finding is opened, and
 * no derived event carries the secret. The original chain still verifies (attest verify).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfigText, type LoadedConfig } from '../services/common/src/config';
import { decodeEvent, type AnyAttestEvent } from '../services/common/src/events';
import { DevIssuer } from '../services/common/src/identity';
import { sha256 } from '../services/common/src/integrity';
import { startPlatform, type RunningPlatform } from '../services/cli/src/platform';
import { startAnthropicStandin, type AnthropicStandin } from './harness/anthropic-standin';

// AWS's own documentation example key: the shape of a secret access key, not a credential.
const AWS_SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
let standin: AnthropicStandin;
let platform: RunningPlatform | undefined;
let dataDir: string;

beforeAll(async () => {
  standin = await startAnthropicStandin();
  dataDir = mkdtempSync(join(tmpdir(), 'attest-dlp-'));
  const text = `
server: { host: 127.0.0.1, port: 0 }
upstream: { anthropic: { baseUrl: "${standin.url}", apiKey: { env: DLP_KEY } } }
identity: { devIssuer: { enabled: true } }
groups:
  developers: { models: ["claude-*"] }
console: { port: 0 }
dataDir: ${dataDir}
logging: { level: silent }
`;
  const loaded: LoadedConfig = { config: parseConfigText(text, 'dlp.yaml', { DLP_KEY: 'sk-ant-test-upstream-key-0123456789' }), file: 'dlp.yaml', text };
  platform = await startPlatform(loaded, pino({ level: 'silent' }), { DLP_KEY: 'sk-ant-test-upstream-key-0123456789' });
}, 60_000);

afterAll(async () => {
  await platform?.close();
  await standin?.close();
});

async function events(): Promise<{ decoded: AnyAttestEvent[]; raw: Buffer[] }> {
  const c = await platform!.log.consumer(`read-${Math.random().toString(36).slice(2)}`, { startFrom: 'earliest' });
  const decoded: AnyAttestEvent[] = [];
  const raw: Buffer[] = [];
  for (;;) {
    const batch = await c.poll(10_000, 100);
    if (batch.length === 0) break;
    for (const r of batch) {
      raw.push(Buffer.from(r.value));
      decoded.push(decodeEvent(r.value).event as AnyAttestEvent);
    }
  }
  await c.close();
  return { decoded, raw };
}

describe('DLP processor on the platform', () => {
  it('finds a secret and a CVV the gateway let through, with provenance and a finding, without copying them', async () => {
    const dev = await DevIssuer.loadOrCreate(dataDir);
    const client = new Anthropic({ baseURL: platform!.gateway.url, apiKey: await dev.mint({ subject: 'svc-ops', groups: ['developers'], audience: 'attest-dev', ttlSec: 600 }), maxRetries: 0 });
    standin.reply({ kind: 'message', content: [{ type: 'text', text: `Use aws_secret_access_key = ${AWS_SECRET} and card 4111 1111 1111 1111 cvv 737.` }], usage: { input_tokens: 3, output_tokens: 30 } });
    const res = await client.messages.create({ model: 'claude-sonnet-5-5', max_tokens: 50, messages: [{ role: 'user', content: 'config?' }] }).withResponse();
    const requestId = res.response.headers.get('x-attest-request-id')!;

    await expect
      .poll(async () => (await events()).decoded.some((e) => e.metadata.type === 'data.masked' && e.metadata.producer.startsWith('dlp-') && e.correlation.requestId === requestId), { timeout: 15_000, interval: 200 })
      .toBe(true);
    const { decoded, raw } = await events();
    const original = decoded.find((e) => e.metadata.type === 'gateway.response.completed' && e.correlation.requestId === requestId)!;
    const derived = decoded.find((e) => e.metadata.type === 'data.masked' && e.metadata.producer.startsWith('dlp-') && e.correlation.requestId === requestId)!;
    const p = derived.payload as unknown as { subjectEventId: string; hits: Array<{ ruleId: string }> };
    expect(p.subjectEventId).toBe(original.metadata.eventId);
    expect(p.hits.map((h) => h.ruleId).sort()).toEqual(['dlp.cvv', 'dlp.secret.aws_secret_key']);
    expect(decoded.some((e) => e.metadata.type === 'finding.opened' && e.metadata.producer.startsWith('dlp-'))).toBe(true);
    // Nothing the DLP processor wrote holds the secret.
    const dlpBytes = raw.filter((_, i) => decoded[i]!.metadata.producer.startsWith('dlp-'));
    expect(dlpBytes.length).toBeGreaterThan(0);
    expect(dlpBytes.some((b) => b.includes(AWS_SECRET))).toBe(false);

    // The store keeps the redacted copy in the original's place (PCI DSS 3.3.1: the CVV, sensitive
    // authentication data, is never stored), attested by the derived data.masked.
    const store = await platform!.store();
    const rowOf = async () =>
      (await store.query("SELECT ifNull(toString(redacted_by), ''), payload, hex(event_bytes), hex(event_hash) FROM events WHERE event_id = {id:UUID}", { id: original.metadata.eventId })).rows[0];
    await expect.poll(async () => (await rowOf()) !== undefined, { message: 'the content row is stored', timeout: 30_000, interval: 200 }).toBe(true);
    const [redactedBy, payload, bytesHex, hashHex] = (await rowOf())!.map(String) as [string, string, string, string];
    expect(redactedBy).toBe(derived.metadata.eventId);
    const storedBytes = Buffer.from(bytesHex, 'hex');
    expect(Buffer.from(hashHex, 'hex').equals(Buffer.from(sha256(raw[decoded.indexOf(original)]!)))).toBe(true);
    expect(Buffer.from((derived.payload as unknown as { redactedEventDigest: Uint8Array }).redactedEventDigest).equals(Buffer.from(sha256(storedBytes)))).toBe(true);
    const storedContent = (decodeEvent(storedBytes).event.payload as { content: string }).content;
    for (const secret of [AWS_SECRET, 'cvv 737']) {
      expect(storedContent).not.toContain(secret);
      expect(payload).not.toContain(secret);
    }
    const everywhere = await store.query('SELECT count() FROM events WHERE position(payload, {s:String}) > 0 OR position(event_bytes, {s:String}) > 0', { s: AWS_SECRET });
    expect(Number(everywhere.rows[0]![0]), 'the secret is nowhere in the store').toBe(0);

    // The original chain and the processor's derived events verify together, the stored copy
    // accepted through its attestation.
    const auditor = await dev.mint({ subject: 'auditor-1', groups: ['auditors'], audience: 'attest-dev', ttlSec: 600 });
    await expect
      .poll(async () => {
        const r = await fetch(`${platform!.consoleUrl}/v1/verify`, { headers: { authorization: `Bearer ${auditor}` } });
        const body = (await r.json()) as { ok: boolean; stats?: { redactedEvents?: number } };
        return body.ok && (body.stats?.redactedEvents ?? 0) >= 1;
      }, { message: 'the store verifies with the redaction accepted', timeout: 30_000, interval: 500 })
      .toBe(true);
  }, 120_000);
});
