import { Writable } from 'node:stream';
import Anthropic from '@anthropic-ai/sdk';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseConfigText } from '../services/common/src/config';
import { createTokenVerifier } from '../services/common/src/identity';
import { createLogger } from '../services/common/src/logger';
import { buildGateway } from '../services/gateway/src/app';
import { startAnthropicStandin, type AnthropicStandin } from './harness/anthropic-standin';
import { startIdp } from './harness/idp';
import { tokenAttacks } from './harness/token-attacks';

/**
 * The gateway end to end: the official SDK → gateway → Messages API stand-in, with a real OpenID
 * provider issuing client-credentials tokens.
 */

const UPSTREAM_KEY = 'sk-ant-upstream-secret-0123456789';
const AUDIENCE = 'attest-gateway';
// Test corpus card numbers (Luhn-valid test PANs).
const VISA = '4111111111111111';
const VISA_MASKED = '411111******1111';
const MC = '5555555555554444';
const MC_MASKED = '555555******4444';

type Idp = Awaited<ReturnType<typeof startIdp>>;

let idp: Idp;
let standin: AnthropicStandin;
let app: FastifyInstance;
let baseURL: string;
let logText = '';
const tokens: Record<string, string> = {};

beforeAll(async () => {
  idp = await startIdp({
    audience: AUDIENCE,
    clients: [
      { clientId: 'agent-dev', clientSecret: 'dev-secret-123456789', groups: ['developers'] },
      { clientId: 'agent-analyst', clientSecret: 'analyst-secret-123456789', groups: ['analysts'] },
      { clientId: 'agent-lenient', clientSecret: 'lenient-secret-123456789', groups: ['lenient'] },
      { clientId: 'agent-nogroup', clientSecret: 'nogroup-secret-123456789', groups: ['visitors'] },
    ],
  });
  standin = await startAnthropicStandin({ expectedApiKey: UPSTREAM_KEY });
  const config = parseConfigText(
    `
upstream:
  anthropic:
    baseUrl: ${standin.url}
    apiKey: { env: UPSTREAM_KEY }
identity:
  issuers:
    - issuer: ${idp.issuer}
      audiences: [${AUDIENCE}]
limits:
  maxBodyBytes: 200000
groups:
  developers: { models: ["claude-*"], maxTokens: 4096 }
  analysts:
    routes: [messages]
    models: ["claude-haiku-*"]
    maxTokens: 1024
    streaming: false
    masking: { request: block, response: block }
  lenient: { models: ["claude-*"], masking: { request: allow, response: allow } }
`,
    'e2e.yaml',
  );
  const logger = createLogger(
    { level: 'info' },
    new Writable({
      write(chunk, _enc, cb) {
        logText += String(chunk);
        cb();
      },
    }),
  );
  const verifier = createTokenVerifier({ issuers: [{ issuer: idp.issuer, audiences: [AUDIENCE] }] });
  app = await buildGateway({ config, verifier, upstreamApiKey: UPSTREAM_KEY, logger });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  baseURL = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  for (const c of ['agent-dev', 'agent-analyst', 'agent-lenient', 'agent-nogroup']) tokens[c] = await idp.clientCredentialsToken(c);
});

afterAll(async () => {
  await app?.close();
  await standin?.close();
  await idp?.close();
});

beforeEach(() => {
  standin.reply((req) => echo(req));
  standin.deltaSpacingMs = 0;
});

function echo(req: { body: any }) {
  const msgs = req.body?.messages ?? [];
  const last = msgs[msgs.length - 1];
  const text = typeof last?.content === 'string' ? last.content : JSON.stringify(last?.content ?? '');
  return { kind: 'message' as const, content: [{ type: 'text' as const, text: `echo: ${text}` }] };
}

const client = (token: string, extra: Partial<ConstructorParameters<typeof Anthropic>[0]> = {}) =>
  new Anthropic({ baseURL, apiKey: token, maxRetries: 0, ...extra });

/** Reads the raw SSE body of a streaming call, to check the wire format the SDK hides. */
async function rawStream(token: string, body: Record<string, unknown>): Promise<{ status: number; text: string; headers: Headers }> {
  const res = await fetch(`${baseURL}/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': token, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
    body: JSON.stringify({ model: 'claude-sonnet-5-5', max_tokens: 100, stream: true, ...body }),
  });
  return { status: res.status, text: await res.text(), headers: res.headers };
}

function parseSse(text: string): Array<{ event: string; data: any }> {
  return text
    .split('\n\n')
    .filter((b) => b.trim())
    .map((block) => {
      const event = /^event: (.*)$/m.exec(block)?.[1] ?? '';
      const data = /^data: (.*)$/m.exec(block)?.[1] ?? '';
      return { event, data: JSON.parse(data) };
    });
}

describe('gateway: the official SDK through Attest', () => {
  it('forwards a non-streaming call with the gateway credential, masking card numbers both ways', async () => {
    const before = standin.requests.length;
    const msg = await client(tokens['agent-dev']!).messages.create({
      model: 'claude-sonnet-5-5',
      max_tokens: 100,
      system: `Card on file: ${MC}`,
      messages: [{ role: 'user', content: `Refund card ${VISA} please` }],
    });
    const upstreamReq = standin.requests[before]!;
    expect(upstreamReq.headers['x-api-key']).toBe(UPSTREAM_KEY);
    expect(upstreamReq.headers.authorization).toBeUndefined();
    expect(upstreamReq.rawBody).not.toContain(VISA);
    expect(upstreamReq.rawBody).not.toContain(MC);
    expect(upstreamReq.body.messages[0].content).toBe(`Refund card ${VISA_MASKED} please`);
    expect(upstreamReq.body.system).toBe(`Card on file: ${MC_MASKED}`);
    expect(msg.content[0]).toMatchObject({ type: 'text', text: `echo: Refund card ${VISA_MASKED} please` });
  });

  it('masks card numbers in the upstream response', async () => {
    standin.reply({ kind: 'message', content: [{ type: 'text', text: `Your card ${VISA} was charged.` }] });
    const msg = await client(tokens['agent-dev']!).messages.create({ model: 'claude-sonnet-5-5', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] });
    expect(msg.content[0]).toMatchObject({ text: `Your card ${VISA_MASKED} was charged.` });
  });

  it('never hands the upstream credential back: an upstream echo of the key reaches the caller as [redacted]', async () => {
    standin.reply({ kind: 'message', content: [{ type: 'text', text: `debug: x-api-key was ${UPSTREAM_KEY} (sorry)` }] });
    const msg = await client(tokens['agent-dev']!).messages.create({ model: 'claude-sonnet-5-5', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] });
    expect(msg.content[0]).toMatchObject({ text: 'debug: x-api-key was [redacted] (sorry)' });
  });

  it('accepts the token as x-api-key as well as Authorization: Bearer, and never forwards it', async () => {
    // The SDK sends its key as a Bearer token; other clients (Claude Code, older SDKs) use x-api-key.
    const before = standin.requests.length;
    const res = await fetch(`${baseURL}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': tokens['agent-dev']!, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
      body: JSON.stringify({ model: 'claude-sonnet-5-5', max_tokens: 10, messages: [{ role: 'user', content: 'via x-api-key' }] }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ content: [{ text: 'echo: via x-api-key' }] });
    const msg = await new Anthropic({ baseURL, authToken: tokens['agent-dev']!, apiKey: null, maxRetries: 0 }).messages.create({
      model: 'claude-sonnet-5-5',
      max_tokens: 10,
      messages: [{ role: 'user', content: 'bearer' }],
    });
    expect(msg.content[0]).toMatchObject({ text: 'echo: bearer' });
    for (const r of standin.requests.slice(before)) {
      expect(r.headers['x-api-key']).toBe(UPSTREAM_KEY);
      expect(r.headers.authorization).toBeUndefined();
      expect(JSON.stringify(r.headers)).not.toContain(tokens['agent-dev']!.slice(-40));
    }
  });

  it('passes anthropic-version, anthropic-beta and the upstream request-id through', async () => {
    const before = standin.requests.length;
    const { response } = await client(tokens['agent-dev']!, { defaultHeaders: { 'anthropic-beta': 'test-beta-2025', 'anthropic-version': '2023-06-01' } })
      .messages.create({ model: 'claude-sonnet-5-5', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] })
      .withResponse();
    expect(standin.requests[before]!.headers['anthropic-version']).toBe('2023-06-01');
    expect(standin.requests[before]!.headers['anthropic-beta']).toBe('test-beta-2025');
    expect(response.headers.get('request-id')).toMatch(/^req_/);
    expect(response.headers.get('x-attest-request-id')).toMatch(/^req_attest_/);
  });

  it('streams, masking a card number split across several deltas, with valid SSE throughout', async () => {
    standin.reply({
      kind: 'message',
      content: [{ type: 'text', text: `Card 4111 1111 1111 1111 ok`, deltas: ['Card 41', '11 11', '11 1111 11', '11 ok'] }],
      usage: { input_tokens: 7, output_tokens: 11 },
    });
    const stream = client(tokens['agent-dev']!).messages.stream({ model: 'claude-sonnet-5-5', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] });
    const deltas: string[] = [];
    stream.on('text', (t) => deltas.push(t));
    const final = await stream.finalMessage();
    expect(final.content[0]).toMatchObject({ type: 'text', text: `Card ${VISA_MASKED} ok` });
    expect(deltas.join('')).toBe(`Card ${VISA_MASKED} ok`);
    expect(deltas.join('')).not.toMatch(/4111 1111/);
    expect(final.usage.output_tokens).toBe(11);
    expect(final.stop_reason).toBe('end_turn');
  });

  it('emits every event as valid SSE JSON and leaves usage and stop events byte-identical', async () => {
    const content = [{ type: 'text' as const, text: `a ${VISA} b`, deltas: ['a 4111', '1111111', '11111 b'] }];
    standin.reply({ kind: 'message', content, usage: { input_tokens: 3, output_tokens: 5 } });
    const viaGateway = await rawStream(tokens['agent-dev']!, { messages: [{ role: 'user', content: 'x' }] });
    expect(viaGateway.status).toBe(200);
    const events = parseSse(viaGateway.text);
    expect(events.map((e) => e.event)).toContain('message_stop');
    const text = events.filter((e) => e.data.type === 'content_block_delta').map((e) => e.data.delta.text).join('');
    expect(text).toBe(`a ${VISA_MASKED} b`);
    // Direct from the stand-in, the same reply: message_delta and message_stop must be identical.
    standin.reply({ kind: 'message', content, usage: { input_tokens: 3, output_tokens: 5 } });
    const direct = await fetch(`${standin.url}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': UPSTREAM_KEY, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
      body: JSON.stringify({ model: 'claude-sonnet-5-5', max_tokens: 100, stream: true, messages: [{ role: 'user', content: 'x' }] }),
    }).then((r) => r.text());
    const pick = (t: string) => t.split('\n\n').filter((b) => /event: (message_delta|message_stop)/.test(b));
    expect(pick(viaGateway.text)).toEqual(pick(direct));
  });

  it('masks a card number streamed inside tool-use input (input_json_delta), as a string or a bare number', async () => {
    standin.reply({
      kind: 'message',
      content: [
        { type: 'tool_use', name: 'charge', input: { card: VISA, amount: 12 }, jsonDeltas: ['{"card": "41111111', '11111111", "amo', 'unt": 12}'] },
        { type: 'tool_use', name: 'refund', input: { pan: Number(MC) }, jsonDeltas: ['{"pan": 55555555', '55554444}'] },
      ],
      stopReason: 'tool_use',
    });
    const final = await client(tokens['agent-dev']!).messages.stream({ model: 'claude-sonnet-5-5', max_tokens: 100, messages: [{ role: 'user', content: 'x' }] }).finalMessage();
    expect(final.content[0]).toMatchObject({ type: 'tool_use', input: { card: VISA_MASKED, amount: 12 } });
    expect(final.content[1]).toMatchObject({ type: 'tool_use', input: { pan: MC_MASKED } });
  });

  it('decodes \\u escapes inside streamed tool input before looking for card numbers', async () => {
    const escaped = VISA.split('').map((d) => `\\u003${d}`).join('');
    standin.reply({ kind: 'message', content: [{ type: 'tool_use', name: 't', input: { c: VISA }, jsonDeltas: [`{"c": "${escaped.slice(0, 30)}`, `${escaped.slice(30)}"}`] }] });
    const final = await client(tokens['agent-dev']!).messages.stream({ model: 'claude-sonnet-5-5', max_tokens: 100, messages: [{ role: 'user', content: 'x' }] }).finalMessage();
    expect(final.content[0]).toMatchObject({ input: { c: VISA_MASKED } });
  });

  it('masks thinking blocks and keeps their signatures', async () => {
    standin.reply({
      kind: 'message',
      content: [
        { type: 'thinking', thinking: `The card is ${VISA}.`, signature: 'sig-abc', deltas: ['The card is 4111111', '111111111.'] },
        { type: 'text', text: 'done' },
      ],
    });
    const final = await client(tokens['agent-dev']!).messages.stream({ model: 'claude-sonnet-5-5', max_tokens: 100, messages: [{ role: 'user', content: 'x' }] }).finalMessage();
    expect(final.content[0]).toMatchObject({ type: 'thinking', thinking: `The card is ${VISA_MASKED}.`, signature: 'sig-abc' });
  });

  it('keeps upstream error statuses and bodies', async () => {
    standin.reply({ kind: 'error', status: 429, errorType: 'rate_limit_error', message: 'slow down' });
    const err = await client(tokens['agent-dev']!)
      .messages.create({ model: 'claude-sonnet-5-5', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.RateLimitError);
    expect((err as InstanceType<typeof Anthropic.RateLimitError>).error).toMatchObject({ error: { type: 'rate_limit_error', message: 'slow down' } });
    expect((err as InstanceType<typeof Anthropic.RateLimitError>).requestID).toMatch(/^req_/);
  });

  it('delivers an upstream failure mid-stream to the client as the API would', async () => {
    standin.reply({ kind: 'stream-error', content: [{ type: 'text', text: 'partial answer here', deltas: ['partial ', 'answer ', 'here'] }], afterDeltas: 2, errorType: 'overloaded_error', message: 'Overloaded' });
    const stream = client(tokens['agent-dev']!).messages.stream({ model: 'claude-sonnet-5-5', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] });
    let text = '';
    stream.on('text', (t) => (text += t));
    const err = await stream.finalMessage().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.APIError);
    expect(String((err as Error).message)).toContain('Overloaded');
    expect(text).toBe('partial answer ');
  });

  it('cancels the upstream request when the client disconnects', async () => {
    standin.reply({ kind: 'hang' });
    const before = standin.requests.length;
    const ac = new AbortController();
    const call = client(tokens['agent-dev']!).messages.create({ model: 'claude-sonnet-5-5', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] }, { signal: ac.signal });
    while (standin.requests.length === before) await new Promise((r) => setTimeout(r, 5));
    ac.abort();
    await expect(call).rejects.toThrow();
    await standin.waitForAbort(before, 5000);
    expect(standin.requests[before]!.aborted).toBe(true);
  });

  it('serves count_tokens and a models list filtered to what the caller may use', async () => {
    const count = await client(tokens['agent-dev']!).messages.countTokens({ model: 'claude-sonnet-5-5', messages: [{ role: 'user', content: `card ${VISA}` }] });
    expect(count.input_tokens).toBeGreaterThan(0);
    const countReq = standin.requests[standin.requests.length - 1]!;
    expect(countReq.path).toBe('/v1/messages/count_tokens');
    expect(countReq.rawBody).not.toContain(VISA);
    const models = [];
    for await (const m of client(tokens['agent-dev']!).models.list()) models.push(m.id);
    expect(models.length).toBeGreaterThan(0);
    expect(models.every((id) => id.startsWith('claude-'))).toBe(true);
  });

  it('masks card numbers written with JSON \\u escapes in the raw request body', async () => {
    const before = standin.requests.length;
    const escaped = VISA.split('').map((d) => `\\u003${d}`).join('');
    const raw = `{"model":"claude-sonnet-5-5","max_tokens":10,"messages":[{"role":"user","content":"card ${escaped}"}]}`;
    const res = await fetch(`${baseURL}/v1/messages`, { method: 'POST', headers: { 'x-api-key': tokens['agent-dev']!, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' }, body: raw });
    expect(res.status).toBe(200);
    expect(standin.requests[before]!.body.messages[0].content).toBe(`card ${VISA_MASKED}`);
  });
});

describe('gateway: authentication', () => {
  it('refuses a call without a token with 401 authentication_error and no upstream call', async () => {
    const before = standin.requests.length;
    const res = await fetch(`${baseURL}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":"claude-sonnet-5-5","max_tokens":1,"messages":[]}' });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ type: 'error', error: { type: 'authentication_error' } });
    expect(standin.requests.length).toBe(before);
  });

  it('refuses every token in the attack corpus with 401 and never calls the upstream', async () => {
    const attacks = await tokenAttacks(idp, tokens['agent-dev']!);
    expect(attacks.length).toBeGreaterThanOrEqual(10);
    const before = standin.requests.length;
    for (const attack of attacks) {
      const err = await client(attack.token)
        .messages.create({ model: 'claude-sonnet-5-5', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] })
        .catch((e: unknown) => e);
      expect(err, attack.name).toBeInstanceOf(Anthropic.AuthenticationError);
      expect((err as InstanceType<typeof Anthropic.APIError>).headers?.get('x-attest-error'), attack.name).toBe(`auth_${attack.reason}`);
    }
    expect(standin.requests.length).toBe(before);
  });
});

describe('gateway: group policy', () => {
  const call = (who: string, body: Partial<Anthropic.MessageCreateParamsNonStreaming>) =>
    client(tokens[who]!)
      .messages.create({ model: 'claude-haiku-5-5', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }], ...body })
      .catch((e: unknown) => e);

  it('refuses a caller in no granted group with permission_error', async () => {
    expect(await call('agent-nogroup', {})).toBeInstanceOf(Anthropic.PermissionDeniedError);
  });

  it('refuses a model, a max_tokens or streaming beyond the group grant, naming the rule', async () => {
    const before = standin.requests.length;
    const model = await call('agent-analyst', { model: 'claude-opus-4' });
    expect(model).toBeInstanceOf(Anthropic.PermissionDeniedError);
    expect((model as Error).message).toContain('claude-opus-4');
    const tokensErr = await call('agent-analyst', { max_tokens: 5000 });
    expect((tokensErr as InstanceType<typeof Anthropic.APIError>).headers?.get('x-attest-error')).toBe('policy_max_tokens');
    const streamErr = await client(tokens['agent-analyst']!)
      .messages.create({ model: 'claude-haiku-5-5', max_tokens: 10, stream: true, messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e);
    expect((streamErr as InstanceType<typeof Anthropic.APIError>).headers?.get('x-attest-error')).toBe('policy_streaming');
    const routeErr = await client(tokens['agent-analyst']!).messages.countTokens({ model: 'claude-haiku-5-5', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
    expect((routeErr as InstanceType<typeof Anthropic.APIError>).headers?.get('x-attest-error')).toBe('policy_routes');
    expect(standin.requests.length).toBe(before);
  });

  it('blocks a request carrying a card number for a group whose action is block, without echoing it', async () => {
    const before = standin.requests.length;
    const err = await call('agent-analyst', { messages: [{ role: 'user', content: `look up 4111-1111-1111-1111` }] });
    expect(err).toBeInstanceOf(Anthropic.PermissionDeniedError);
    const message = (err as InstanceType<typeof Anthropic.APIError>).error as { error: { message: string } };
    expect(message.error.message).toContain('rule "pan"');
    expect(message.error.message).toContain('messages[0].content');
    expect(JSON.stringify(err).replace(/\D/g, '')).not.toContain('41111111');
    expect(standin.requests.length).toBe(before);
  });

  it('blocks a response carrying a card number for a group whose response action is block', async () => {
    standin.reply({ kind: 'message', content: [{ type: 'text', text: `the card is ${VISA}` }] });
    const err = await call('agent-analyst', {});
    expect(err).toBeInstanceOf(Anthropic.PermissionDeniedError);
    expect(JSON.stringify(err)).not.toContain(VISA);
  });

  it('lets card numbers through for a group whose action is allow, and still counts them', async () => {
    standin.reply((req) => echo(req));
    const msg = (await call('agent-lenient', { model: 'claude-sonnet-5-5', messages: [{ role: 'user', content: VISA }] })) as Anthropic.Message;
    expect(msg.content[0]).toMatchObject({ text: `echo: ${VISA}` });
    const metrics = await fetch(`${baseURL}/metrics`).then((r) => r.text());
    expect(metrics).toMatch(/attest_masking_hits_total\{rule="pan",direction="request",action="allow"\} [1-9]/);
  });
});

describe('gateway: operations', () => {
  it('answers health, readiness and Prometheus metrics', async () => {
    expect((await fetch(`${baseURL}/healthz`)).status).toBe(200);
    expect(await (await fetch(`${baseURL}/readyz`)).json()).toEqual({ status: 'ready' });
    const metrics = await fetch(`${baseURL}/metrics`).then((r) => r.text());
    expect(metrics).toContain('attest_gateway_requests_total{route="messages",status="200"}');
    expect(metrics).toMatch(/attest_auth_failures_total\{reason="token_expired"\} [1-9]/);
    expect(metrics).toContain('attest_gateway_request_duration_seconds_bucket');
    expect(metrics).toMatch(/attest_masking_hits_total\{rule="pan",direction="response",action="mask"\} [1-9]/);
  });

  it('refuses an oversized body with request_too_large and an unknown route with not_found_error', async () => {
    const big = await fetch(`${baseURL}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': tokens['agent-dev']!, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'claude-sonnet-5-5', max_tokens: 1, messages: [{ role: 'user', content: 'x'.repeat(300_000) }] }),
    });
    expect(big.status).toBe(413);
    expect(await big.json()).toMatchObject({ error: { type: 'request_too_large' } });
    const missing = await fetch(`${baseURL}/v1/complete`, { method: 'POST' });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ type: 'error', error: { type: 'not_found_error' } });
  });

  it('refuses an oversized header block with 431 before any processing', async () => {
    const before = standin.requests.length;
    const res = await fetch(`${baseURL}/v1/messages`, { method: 'POST', headers: { 'x-api-key': tokens['agent-dev']!, 'x-padding': 'p'.repeat(40_000) }, body: '{}' });
    expect(res.status).toBe(431);
    expect(standin.requests.length).toBe(before);
  });

  it('refuses invalid JSON with invalid_request_error', async () => {
    const res = await fetch(`${baseURL}/v1/messages`, { method: 'POST', headers: { 'x-api-key': tokens['agent-dev']!, 'content-type': 'application/json' }, body: '{"model": ' });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { type: 'invalid_request_error' } });
  });

  it('never writes a card number, a caller token or the upstream key to the process log', () => {
    expect(logText).toContain('"msg":"exchange"');
    for (const secret of [VISA, MC, UPSTREAM_KEY, ...Object.values(tokens).map((t) => t.slice(-30))]) {
      expect(logText).not.toContain(secret);
    }
  });
});
