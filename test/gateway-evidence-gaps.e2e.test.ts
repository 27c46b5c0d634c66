import { mkdtempSync } from 'node:fs';
import { Writable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfigText } from '../services/common/src/config';
import { openEvidence, type EvidenceRuntime } from '../services/common/src/evidence/producer';
import { verifyEncodedEvents } from '../services/common/src/evidence/verify-events';
import type { AnyAttestEvent } from '../services/common/src/events';
import { createTokenVerifier, DevIssuer } from '../services/common/src/identity';
import { FileEventLog, LogError } from '../services/common/src/log';
import { buildGateway, InFlightExchanges } from '../services/gateway/src/app';
import { GatewayRecorder } from '../services/gateway/src/evidence';
import { startAnthropicStandin, type AnthropicStandin } from './harness/anthropic-standin';
import { readLogRecords } from './support/log-records';

/**
 * Ways an exchange once escaped the evidence, or was recorded wrongly (found in review).
 *
 * A caller that goes away while the gateway is still authenticating or recording the admission:
 * its connection's 'close' has fired before the upstream call is made. The upstream must not be
 * called, the exchange must end with exactly one gateway.response.completed (aborted), and the
 * handler must finish (it once waited forever for a 'drain' on a dead socket).
 */

const CADENCE = { everyEvents: 1000, everyMs: 60_000 };
// Test corpus card number (Luhn-valid Visa test PAN).
const VISA = '4111111111111111';
/** The gateway's process log, as written (info level). */
let processLog = '';
const ADMISSION_DELAY_MS = 400;
/** The gateway's whole-call upstream timeout here: a 60-delta stream 30 ms apart outlasts it. */
const UPSTREAM_TIMEOUT_MS = 1000;

let standin: AnthropicStandin;
let dir: string;
let log: FileEventLog;
let evidence: EvidenceRuntime;
let app: FastifyInstance;
let baseURL: string;
let dev: DevIssuer;
const exchanges = new InFlightExchanges();
/** While set, every append to the evidence log waits ADMISSION_DELAY_MS first (a slow disk). */
let slowAppends = false;
/** The next appends' fates: true fails it (log_unavailable, nothing written: an outcome the emitter must treat as unknown). */
const appendPlan: boolean[] = [];

beforeAll(async () => {
  standin = await startAnthropicStandin({ deltaSpacingMs: 30 });
  dir = mkdtempSync(join(tmpdir(), 'attest-caller-gone-'));
  log = await FileEventLog.open({ dir: join(dir, 'log') });
  const append = log.append.bind(log);
  log.append = async (records) => {
    if (slowAppends) await new Promise((r) => setTimeout(r, ADMISSION_DELAY_MS));
    if (appendPlan.shift() === true) throw new LogError('log_unavailable', 'injected: the disk did not answer', { retriable: true });
    return append(records);
  };
  evidence = await openEvidence({ dataDir: dir, log, component: 'gateway', producerId: 'gw-gone', tenantId: 't', logger: pino({ level: 'silent' }), configText: 'x', configFile: 'c.yaml', softwareVersion: 'test', cadence: CADENCE });
  dev = await DevIssuer.loadOrCreate(dir);
  const config = parseConfigText(`upstream: { anthropic: { baseUrl: "${standin.url}", apiKey: { env: K } } }\nidentity: { devIssuer: { enabled: true } }\nlimits: { upstreamTimeoutMs: ${UPSTREAM_TIMEOUT_MS} }\ngroups: { developers: {}, capped: { maxTokens: 1000 }, lenient: { masking: { request: allow, response: allow } } }\n`, 'c.yaml');
  const logStream = new Writable({
    write(chunk: Buffer, _enc, done) {
      processLog += chunk.toString('utf8');
      done();
    },
  });
  app = await buildGateway({
    config,
    verifier: createTokenVerifier({ issuers: [dev.issuerOptions(['attest-dev'])] }),
    upstreamApiKey: 'k',
    logger: pino({ level: 'info' }, logStream),
    recorder: new GatewayRecorder(evidence.emitter, evidence.panKey, { id: 'c.yaml', version: 'test' }, 'standin'),
    exchanges,
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  baseURL = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
});

afterAll(async () => {
  await app?.close();
  await evidence?.close('shutdown');
  await standin?.close();
});

async function events(): Promise<AnyAttestEvent[]> {
  const records = await readLogRecords(log);
  // No record holds the card number, as text or as its UTF-16 form.
  for (const r of records) expect(Buffer.from(r).includes(VISA)).toBe(false);
  const report = await verifyEncodedEvents(records, evidence.keyring.jwks(), { cadence: CADENCE });
  expect(report.findings).toEqual([]);
  return report.decoded;
}

describe('a caller that leaves before the upstream call', () => {
  for (const stream of [true, false]) {
    it(`${stream ? 'streaming' : 'non-streaming'}: no upstream call, one aborted completion, and the handler finishes`, async () => {
      standin.reply({ kind: 'message', content: [{ type: 'text', text: 'one two three four', deltas: ['one ', 'two ', 'three ', 'four'] }] });
      const subject = `gone-${stream ? 's' : 'j'}`;
      const client = new Anthropic({ baseURL, apiKey: await dev.mint({ subject, groups: ['developers'], audience: 'attest-dev', ttlSec: 600 }), maxRetries: 0 });
      const upstreamCalls = standin.requests.length;
      const ac = new AbortController();
      slowAppends = true;
      const call = stream
        ? client.messages.create({ model: 'claude-sonnet-5-5', max_tokens: 50, stream: true, messages: [{ role: 'user', content: 'hi' }] }, { signal: ac.signal }).then(async (s) => {
            for await (const _ of s) void _;
          })
        : client.messages.create({ model: 'claude-sonnet-5-5', max_tokens: 50, messages: [{ role: 'user', content: 'hi' }] }, { signal: ac.signal });
      setTimeout(() => ac.abort(), ADMISSION_DELAY_MS / 4);
      await expect(call).rejects.toThrow();
      // The admission append is still being made when the caller leaves; then the handler must end.
      expect(await exchanges.settled(5_000)).toBe(true);
      slowAppends = false;
      expect(standin.requests.length).toBe(upstreamCalls);

      const mine = (await events()).filter((e) => e.actor.subject === subject);
      expect(mine.map((e) => e.metadata.type)).toEqual(['gateway.request.received', 'policy.decided', 'gateway.request.forwarded', 'gateway.response.completed']);
      expect(mine[3]!.payload).toMatchObject({ aborted: true, stream });
      expect(mine[3]!.outcome).toMatchObject({ result: 'failure', reason: 'client_aborted' });
    });
  }
});

describe('card numbers in caller-chosen fields', () => {
  const mint = (subject: string, group: string) => dev.mint({ subject, groups: [group], audience: 'attest-dev', ttlSec: 600 });
  const post = (headers: Record<string, string>, body: unknown) =>
    fetch(`${baseURL}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', ...headers }, body: JSON.stringify(body) });
  const ofSubject = async (subject: string) => (await events()).filter((e) => e.actor.subject === subject).map((e) => e.metadata.type);

  it('a failed login with a card number in its user agent is still recorded as auth.failed', async () => {
    const before = (await events()).filter((e) => e.metadata.type === 'auth.failed').length;
    const res = await post({ 'x-api-key': 'not-a-token', 'user-agent': `probe ${VISA}` }, { model: 'claude-sonnet-5-5', max_tokens: 10, messages: [] });
    expect(res.status).toBe(401);
    const failed = (await events()).filter((e) => e.metadata.type === 'auth.failed');
    expect(failed).toHaveLength(before + 1);
    expect(failed.at(-1)!.source.userAgent).toBe('probe ************1111');
  });

  it('a refusal that quotes a card-number-like max_tokens is recorded, and the error does not echo it', async () => {
    const res = await post({ 'x-api-key': await mint('cap-1', 'capped') }, { model: 'claude-sonnet-5-5', max_tokens: Number(VISA), messages: [{ role: 'user', content: 'hi' }] });
    expect(res.status).toBe(403);
    expect(await res.text()).not.toContain(VISA);
    expect(await ofSubject('cap-1')).toEqual(['gateway.request.received', 'policy.decided', 'gateway.request.blocked']);
  });

  it('a card number as the model id, the session header or an allowed JSON key is masked in evidence and logs', async () => {
    const res = await post(
      { 'x-api-key': await mint('odd-1', 'lenient'), 'x-attest-session-id': `s-${VISA}` },
      { model: VISA, max_tokens: 10, metadata: { [VISA]: 'x' }, messages: [{ role: 'user', content: 'hi' }] },
    );
    expect(res.status).toBe(200);
    // The stand-in's reply names the model it was asked for: a card number in the response too.
    expect(await ofSubject('odd-1')).toEqual(['gateway.request.received', 'policy.decided', 'data.masked', 'gateway.request.forwarded', 'gateway.response.completed', 'data.masked']);
    expect(processLog).toContain('odd-1');
    expect(processLog).not.toContain(VISA);
  });
});

describe('refusals and failures that must be evidence', () => {
  const mint = (subject: string) => dev.mint({ subject, groups: ['developers'], audience: 'attest-dev', ttlSec: 600 });
  const mine = async (subject: string) => (await events()).filter((e) => e.actor.subject === subject);

  it('an authenticated request with a malformed body is recorded as refused', async () => {
    const res = await fetch(`${baseURL}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': await mint('bad-body') }, body: '[1, 2]' });
    expect(res.status).toBe(400);
    const ev = await mine('bad-body');
    expect(ev.map((e) => e.metadata.type)).toEqual(['gateway.request.received', 'policy.decided', 'gateway.request.blocked']);
    expect(ev[2]!.payload).toMatchObject({ ruleId: 'request.invalid_body' });
  });

  it('a request whose evidence can never fit the log is refused for good (413), and the log still verifies', async () => {
    // Thousands of card numbers: one masking hit each, too many for one data.masked event.
    const text = Array.from({ length: 12_000 }, () => VISA).join(' ');
    const res = await fetch(`${baseURL}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': await mint('huge') },
      body: JSON.stringify({ model: 'claude-sonnet-5-5', max_tokens: 10, messages: [{ role: 'user', content: text }] }),
    });
    expect(res.status).toBe(413);
    expect(res.headers.get('x-attest-error')).toBe('evidence_too_large');
    await events();
  });

  it('a stream the upstream ends with an error event is recorded as a failure, not a success', async () => {
    const words = ['one ', 'two ', 'three ', 'four '];
    standin.reply({ kind: 'stream-error', content: [{ type: 'text', text: words.join(''), deltas: words }], afterDeltas: 2, errorType: 'overloaded_error', message: 'Overloaded' });
    const client = new Anthropic({ baseURL, apiKey: await mint('overloaded'), maxRetries: 0 });
    const consume = async () => {
      for await (const _ of await client.messages.create({ model: 'claude-sonnet-5-5', max_tokens: 50, stream: true, messages: [{ role: 'user', content: 'hi' }] })) void _;
    };
    await expect(consume()).rejects.toThrow(/Overloaded/);
    const done = (await mine('overloaded')).filter((e) => e.metadata.type === 'gateway.response.completed');
    expect(done).toHaveLength(1);
    expect(done[0]!.outcome).toMatchObject({ result: 'failure', reason: 'upstream_overloaded_error' });
  });

  it('a stream the gateway cuts at its upstream timeout is recorded as a failure, and the caller is told', async () => {
    const words = Array.from({ length: 60 }, (_, i) => `w${i} `);
    standin.reply({ kind: 'message', content: [{ type: 'text', text: words.join(''), deltas: words }] });
    const res = await fetch(`${baseURL}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': await mint('slow-up') },
      body: JSON.stringify({ model: 'claude-sonnet-5-5', max_tokens: 100, stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain('upstream_timeout');
    expect(text).not.toContain('message_stop');
    const done = (await mine('slow-up')).filter((e) => e.metadata.type === 'gateway.response.completed');
    expect(done).toHaveLength(1);
    expect(done[0]!.outcome).toMatchObject({ result: 'failure', reason: 'upstream_timeout' });
    // Ended early (aborted), by the gateway's timeout, not by the caller.
    expect(done[0]!.payload).toMatchObject({ aborted: true, stream: true });
  });
});

describe('evidence that lands after the caller was refused for want of it', () => {
  const ask = async (subject: string) => {
    const res = await fetch(`${baseURL}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': await dev.mint({ subject, groups: ['developers'], audience: 'attest-dev', ttlSec: 600 }) },
      body: JSON.stringify({ model: 'claude-sonnet-5-5', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] }),
    });
    await res.arrayBuffer();
    return res.status;
  };
  const typesOf = async (subject: string) =>
    (await events()).filter((e) => e.actor.subject === subject).map((e) => (e.metadata.type === 'gateway.request.blocked' ? `blocked:${(e.payload as { ruleId: string; direction: string }).ruleId}:${(e.payload as { direction: string }).direction}` : e.metadata.type));

  it('an admission whose append failed and landed later is followed by a block: the request was never forwarded', async () => {
    const upstreamCalls = standin.requests.length;
    appendPlan.push(true);
    expect(await ask('late-admission')).toBe(503);
    // The next exchange appends the earlier batch again first (the chain needs it), then its own.
    expect(await ask('late-next')).toBe(200);
    expect(standin.requests.length).toBe(upstreamCalls + 1);
    await expect.poll(() => typesOf('late-admission')).toEqual(['gateway.request.received', 'policy.decided', 'gateway.request.forwarded', 'blocked:evidence.unavailable:request']);
  });

  it('a completion whose append failed and landed later is followed by a block: the answer was withheld', async () => {
    appendPlan.push(false, true); // the admission passes, the completion fails
    expect(await ask('late-completion')).toBe(503);
    expect(await ask('late-next-2')).toBe(200);
    await expect
      .poll(() => typesOf('late-completion'))
      .toEqual(['gateway.request.received', 'policy.decided', 'gateway.request.forwarded', 'gateway.response.completed', 'blocked:evidence.unavailable:response']);
  });
});
