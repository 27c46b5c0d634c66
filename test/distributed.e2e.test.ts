/**
 * Distributed mode with each role its own process, as deploy/ runs them: `attest processors`,
 * `attest gateway` and `attest console` started from one config file, on a real Apache Kafka
 * broker (events and control topics) and a ClickHouse engine behind the ClickHouse HTTP interface
 * (test/harness/chdb-http.ts: the real engine, see docs/evidence-store.md for what that covers).
 *
 * The official SDK calls the gateway process; the exchange reaches the store through the
 * processors process; an auditor queries and verifies it through the console process; an admin's
 * suspension travels over the Kafka control topic to the gateway process.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DevIssuer } from '../services/common/src/identity';
import { startAnthropicStandin, type AnthropicStandin } from './harness/anthropic-standin';
import { startChdbHttp, type ChdbHttpProcess } from './harness/chdb-http';
import { freePort } from './harness/idp';
import { kafkaForTests, type KafkaBroker } from './harness/kafka';
import { startProcess, type Proc } from './support/processes';

const VISA = '4111111111111111';
let kafka: KafkaBroker;
let clickhouse: ChdbHttpProcess;
let standin: AnthropicStandin;
let dataDir: string;
let configFile: string;
let env: NodeJS.ProcessEnv;
const procs: Proc[] = [];
let gatewayUrl: string;
let consoleUrl: string;
let processorsUrl: string;
let dev: DevIssuer;

const attest = (role: string): Proc => {
  const p = startProcess(process.execPath, ['bin/attest.mjs', role, '--config', configFile], { env });
  procs.push(p);
  return p;
};

beforeAll(async () => {
  [kafka, clickhouse, standin] = await Promise.all([kafkaForTests(), startChdbHttp(), startAnthropicStandin()]);
  dataDir = mkdtempSync(join(tmpdir(), 'attest-distributed-'));
  const [gatewayPort, consolePort, processorsPort] = [await freePort(), await freePort(), await freePort()];
  const suffix = randomBytes(4).toString('hex');
  configFile = join(dataDir, 'attest.yaml');
  writeFileSync(
    configFile,
    `
server: { host: 127.0.0.1, port: ${gatewayPort} }
upstream: { anthropic: { baseUrl: "${standin.url}", apiKey: { env: DIST_ANTHROPIC_KEY } } }
identity: { devIssuer: { enabled: true } }
groups:
  developers: { models: ["claude-*"] }
evidence: { checkpointEveryMs: 1000 }
log:
  kind: kafka
  kafka:
    brokers: [${kafka.brokers.join(', ')}]
    clientId: attest-dist-${suffix}
    topics: { events: "dist-${suffix}.events", control: "dist-${suffix}.control", deadLetter: "dist-${suffix}.dlq" }
    partitions: 3
    replicationFactor: 1
    minInsyncReplicas: 1
store:
  kind: clickhouse
  clickhouse:
    url: ${clickhouse.url}
    database: attest_${suffix}
    username: ${clickhouse.writer.username}
    password: { env: DIST_CH_PASSWORD }
    readonlyUsername: ${clickhouse.reader.username}
    readonlyPassword: { env: DIST_CH_AUDITOR_PASSWORD }
console: { port: ${consolePort}, adminGroups: [secops] }
processors: { port: ${processorsPort} }
dataDir: ${dataDir}
logging: { level: warn }
`,
  );
  env = { DIST_ANTHROPIC_KEY: 'sk-dist', DIST_CH_PASSWORD: clickhouse.writer.password, DIST_CH_AUDITOR_PASSWORD: clickhouse.reader.password };
  // The processors first: they create the topics, migrate the store and the installation's keys.
  const processors = attest('processors');
  processorsUrl = (await processors.waitFor(/health: (http:\S+)\/healthz/, 90_000))[1]!;
  const gateway = attest('gateway');
  const consoleProc = attest('console');
  gatewayUrl = (await gateway.waitFor(/listening on (http:\S+)/, 90_000))[1]!;
  consoleUrl = (await consoleProc.waitFor(/console \(auditors\) on (http:\S+)/, 90_000))[1]!;
  dev = await DevIssuer.loadOrCreate(dataDir);
}, 240_000);

afterAll(async () => {
  for (const p of procs.reverse()) await p.stop('SIGTERM').catch(() => undefined);
  await clickhouse?.stop();
  await standin?.close();
  await kafka?.close();
}, 60_000);

const token = (subject: string, groups: string[]) => dev.mint({ subject, groups, audience: 'attest-dev', ttlSec: 600 });

async function auditorGet(path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${consoleUrl}${path}`, { headers: { authorization: `Bearer ${await token('auditor-1', ['auditors'])}` } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('distributed mode: gateway, processors and console as separate processes on Kafka and ClickHouse', () => {
  it('each process serves health and Prometheus metrics', async () => {
    for (const base of [gatewayUrl, processorsUrl, consoleUrl]) {
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      const metrics = await fetch(`${base}/metrics`);
      expect(metrics.status).toBe(200);
      expect(await metrics.text()).toContain('process_cpu_user_seconds_total');
    }
  });

  it('an exchange through the gateway process is stored by the processors and verifiable through the console', async () => {
    const client = new Anthropic({ baseURL: gatewayUrl, apiKey: await token('svc-billing', ['developers']), maxRetries: 0 });
    const msg = await client.messages.create({ model: 'claude-sonnet-5-5', max_tokens: 20, messages: [{ role: 'user', content: `refund card ${VISA}` }] });
    expect(msg.type).toBe('message');

    // The processors' evidence writer moves it from the Kafka topic into ClickHouse.
    await expect
      .poll(async () => {
        const r = await auditorGet('/v1/evidence/queries/pci.10.2.1.1?format=json&subject=svc-billing');
        return r.status === 200 ? (r.body.rows as unknown[]).length : -1;
      }, { timeout: 30_000, interval: 500 })
      .toBeGreaterThan(0);
    // Verification covers what the store holds; the producers' checkpoints arrive asynchronously.
    let verify = await auditorGet('/v1/verify');
    for (let i = 0; i < 30 && verify.body.ok !== true; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      verify = await auditorGet('/v1/verify');
    }
    expect(verify.status).toBe(200);
    expect(verify.body.ok, JSON.stringify(verify.body).slice(0, 2000)).toBe(true);
    expect(JSON.stringify(verify.body)).not.toContain(VISA);
  }, 90_000);

  it('a suspension through the console process reaches the gateway process over the Kafka control topic', async () => {
    const agent = await token('svc-rogue', ['developers']);
    const client = new Anthropic({ baseURL: gatewayUrl, apiKey: agent, maxRetries: 0 });
    await expect(client.messages.create({ model: 'claude-sonnet-5-5', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] })).resolves.toMatchObject({ type: 'message' });
    const res = await fetch(`${consoleUrl}/v1/identities/suspend`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await token('alice', ['secops'])}`, 'content-type': 'application/json' },
      body: JSON.stringify({ issuer: dev.issuer, subject: 'svc-rogue', reason: 'drill' }),
    });
    expect(res.status).toBe(201);
    const t0 = performance.now();
    for (;;) {
      const code = await client.messages.create({ model: 'claude-sonnet-5-5', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }).then(
        () => 'served',
        (err: unknown) => (err as InstanceType<typeof Anthropic.PermissionDeniedError>).headers?.get('x-attest-error') ?? 'error',
      );
      if (code === 'identity_suspended') break;
      if (performance.now() - t0 > 10_000) throw new Error(`gateway still answered ${code} 10 s after the suspension`);
    }
    process.stderr.write(`[distributed] suspension in force at the gateway process ${(performance.now() - t0).toFixed(0)} ms after the console answered\n`);
  }, 60_000);
});
