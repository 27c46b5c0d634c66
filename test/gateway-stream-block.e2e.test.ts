import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseConfigText } from '../services/common/src/config';
import { openEvidence, type EvidenceRuntime } from '../services/common/src/evidence/producer';
import { verifyEncodedEvents } from '../services/common/src/evidence/verify-events';
import type { AnyAttestEvent } from '../services/common/src/events';
import { createTokenVerifier, DevIssuer } from '../services/common/src/identity';
import { findPans } from '../services/common/src/masking';
import { buildGateway } from '../services/gateway/src/app';
import { GatewayRecorder } from '../services/gateway/src/evidence';
import { startAnthropicStandin, type AnthropicStandin, type StandinBlock } from './harness/anthropic-standin';
import { filesUnder, readLogRecords } from './support/log-records';

/**
 * Response masking action `block` on streamed answers, end to end: the official SDK → a gateway with
 * an evidence recorder (dev issuer) → the Messages API stand-in, its deltas spaced so each reaches the
 * gateway as its own network chunk. Whatever the split or spelling of a card number in the model's
 * answer, the caller receives none of its digits, then an `error` event; the evidence records the
 * block and holds no card number either.
 */

// Test corpus card numbers (Luhn-valid test PANs), and a Luhn-invalid near miss.
const VISA = '4111111111111111';
const MC = '5555555555554444';
const NEAR = '4111111111111112';
const CADENCE = { everyEvents: 1000, everyMs: 60_000 };

let standin: AnthropicStandin;
let dir: string;
let evidence: EvidenceRuntime;
let app: FastifyInstance;
let baseURL: string;
let dev: DevIssuer;

beforeAll(async () => {
  standin = await startAnthropicStandin();
  dir = mkdtempSync(join(tmpdir(), 'attest-stream-block-'));
  evidence = await openEvidence({
    dataDir: dir,
    component: 'gateway',
    producerId: 'gateway-test',
    tenantId: 'acme',
    logger: pino({ level: 'silent' }),
    configText: 'x',
    configFile: 'stream-block.yaml',
    softwareVersion: 'test',
    cadence: CADENCE,
  });
  const config = parseConfigText(
    `
upstream: { anthropic: { baseUrl: "${standin.url}", apiKey: { env: K } } }
identity: { devIssuer: { enabled: true } }
groups:
  blockers: { models: ["claude-*"], masking: { response: block } }
  lenient: { models: ["claude-*"], masking: { request: allow, response: allow } }
`,
    'stream-block.yaml',
  );
  dev = await DevIssuer.loadOrCreate(dir);
  const verifier = createTokenVerifier({ issuers: [dev.issuerOptions(['attest-dev'])] });
  const recorder = new GatewayRecorder(evidence.emitter, evidence.panKey, { id: 'stream-block.yaml', version: 'test' }, 'standin');
  app = await buildGateway({ config, verifier, upstreamApiKey: 'k', logger: pino({ level: 'silent' }), recorder, jwks: () => evidence.keyring.jwks() });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  baseURL = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
});

afterAll(async () => {
  await app?.close();
  await evidence?.close('shutdown');
  await standin?.close();
});

beforeEach(() => {
  // Each delta its own chunk on the wire: the held-back tail, not one big read, must protect the PAN.
  standin.deltaSpacingMs = 15;
});

const token = (groups: string[], subject: string) => dev.mint({ subject, groups, audience: 'attest-dev', ttlSec: 600 });
const client = async (subject: string, groups = ['blockers']) => new Anthropic({ baseURL, apiKey: await token(groups, subject), maxRetries: 0 });

/** Every decimal digit of `s`, in any script (fullwidth, Arabic-Indic, math bold…), as ASCII; the rest dropped. */
function asciiDigits(s: string): string {
  let out = '';
  for (const ch of s) {
    if (!/\p{Nd}/u.test(ch)) continue;
    const cp = ch.codePointAt(0)!;
    let zero = cp;
    while (/\p{Nd}/u.test(String.fromCodePoint(zero - 1))) zero--;
    out += String((cp - zero) % 10);
  }
  return out;
}

/** Text and tool input as the SDK hands them to the caller, plus the error the stream ends with. */
async function streamVia(subject: string, content: StandinBlock[] | Parameters<AnthropicStandin['reply']>[0], groups?: string[]) {
  standin.reply(Array.isArray(content) ? { kind: 'message', content } : content);
  const stream = (await client(subject, groups)).messages.stream({ model: 'claude-sonnet-5-5', max_tokens: 100, messages: [{ role: 'user', content: 'x' }] });
  let text = '';
  let json = '';
  const events: string[] = [];
  stream.on('text', (t) => (text += t));
  stream.on('inputJson', (partial) => (json += partial));
  stream.on('streamEvent', (e) => events.push(e.type));
  const result = await stream.finalMessage().then(
    (message) => ({ message, error: undefined }),
    (error: unknown) => ({ message: undefined, error }),
  );
  return { text, json, events, ...result };
}

function expectBlockedError(error: unknown): void {
  expect(error).toBeInstanceOf(Anthropic.APIError);
  expect(String((error as Error).message)).toContain('response blocked by Attest policy');
  expect(String((error as Error).message)).toContain('[attest:response_blocked]');
}

const readAllEvents = (): Promise<Uint8Array[]> => readLogRecords(evidence.log);

/** An event's text fields as JSON, binary fields (digests, HMACs, signatures) left out. */
const eventText = (e: unknown) => JSON.stringify(e, (_k, v: unknown) => (v instanceof Uint8Array || (v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer') ? '<bytes>' : v));

describe('streamed answers with masking.response = block', () => {
  it('the reported case: deltas ["friend ", PAN, " end"] — the caller gets "friend ", then the block error', async () => {
    const r = await streamVia('blocker-1', [{ type: 'text', text: `friend ${VISA} end`, deltas: ['friend ', VISA, ' end'] }]);
    expect(r.text).toBe('friend ');
    expect(asciiDigits(r.text)).not.toContain(VISA);
    expectBlockedError(r.error);
    expect(r.events).not.toContain('message_stop');
  });

  const cases: Array<[string, string[]]> = [
    ['inside one delta', [`friend ${VISA} end`]],
    ['split across 2 deltas', ['friend 41111111', '11111111 end']],
    ['split across 3 deltas, with spaces', ['card 4111 ', '1111 1111', ' 1111 thanks']],
    ['dashes, ending the answer', ['card 4111-1111-', '1111-1111']],
    ['a zero-width space between every digit', ['card ', [...VISA].slice(0, 7).join('\u200b'), '\u200b', [...VISA].slice(7).join('\u200b'), ' ok']],
    ['full-width digits', ['card ４１１１１１１１', '１１１１１１１１ ok']],
    ['math bold digits, a surrogate pair apart', ['card 𝟒𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏\ud835', '\udfcf ok']],
  ];
  for (const [name, deltas] of cases) {
    it(`never delivers a card number ${name}`, async () => {
      const text = deltas.join('');
      const r = await streamVia('blocker-2', [{ type: 'text', text, deltas }]);
      expect(asciiDigits(r.text)).not.toContain(VISA);
      expect(findPans(r.text)).toEqual([]);
      // What arrived is the answer up to, at most, the first digit of the card number.
      expect(text.startsWith(r.text)).toBe(true);
      expect(r.text.length).toBeLessThanOrEqual(findPans(text)[0]!.start);
      expectBlockedError(r.error);
    });
  }

  it('never delivers a card number streamed inside tool input, as a string or a bare number', async () => {
    const cases: Array<[StandinBlock, string]> = [
      [{ type: 'tool_use', name: 'charge', input: { card: VISA, amount: 12 }, jsonDeltas: ['{"card": "41111111', '11111111", "amo', 'unt": 12}'] }, '{"card": "'],
      [{ type: 'tool_use', name: 'refund', input: { pan: Number(MC) }, jsonDeltas: ['{"pan": 55555555', '55554444}'] }, '{"pan": '],
    ];
    for (const [block, received] of cases) {
      const r = await streamVia('blocker-3', [block]);
      // Not one digit of the number: its first fragment is held back, the one completing it dropped.
      expect(r.json).toBe(received);
      expectBlockedError(r.error);
    }
  });

  it('on the wire: valid SSE, no card digits anywhere in the body, and a final error event', async () => {
    standin.reply({ kind: 'message', content: [{ type: 'text', text: `friend ${VISA} end`, deltas: ['friend ', VISA, ' end'] }] });
    const res = await fetch(`${baseURL}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': await token(['blockers'], 'blocker-4'), 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
      body: JSON.stringify({ model: 'claude-sonnet-5-5', max_tokens: 100, stream: true, messages: [{ role: 'user', content: 'x' }] }),
    });
    expect(res.status).toBe(200);
    const body = await res.text();
    expect(body).not.toContain('4111');
    expect(asciiDigits(body)).not.toContain(VISA);
    const events = body
      .split('\n\n')
      .filter((b) => b.trim())
      .map((b) => ({ event: /^event: (.*)$/m.exec(b)![1], data: JSON.parse(/^data: (.*)$/m.exec(b)![1]!) as Record<string, any> }));
    expect(events.map((e) => e.event)).toEqual(['message_start', 'ping', 'content_block_start', 'content_block_delta', 'error']);
    expect(events[3]!.data.delta).toEqual({ type: 'text_delta', text: 'friend ' });
    expect(events.at(-1)!.data).toMatchObject({ type: 'error', error: { type: 'permission_error' } });
    expect(events.at(-1)!.data.error.message).toContain('[attest:response_blocked]');
  });

  it('never delivers a card number that ends a stream the upstream cuts (no content_block_stop)', async () => {
    // Three deltas go out, then the upstream's own error event, and the response ends: the card
    // number is still held when the stream ends, and is found (and dropped) only then.
    const r = await streamVia('blocker-5', {
      kind: 'stream-error',
      content: [{ type: 'text', text: `friend card ${VISA} end`, deltas: ['friend ', 'card ', VISA, ' end'] }],
      afterDeltas: 3,
      errorType: 'overloaded_error',
      message: 'Overloaded',
    });
    expect(r.text).toBe('friend card ');
    expect(asciiDigits(r.text)).not.toContain(VISA);
    expect(r.error).toBeInstanceOf(Anthropic.APIError);
    expect(String((r.error as Error).message)).toContain('Overloaded');
  });

  it('lets a Luhn-invalid near miss through whole, and the answer completes', async () => {
    const r = await streamVia('blocker-6', [{ type: 'text', text: `ref ${NEAR} ok`, deltas: ['ref ', NEAR, ' ok'] }]);
    expect(r.error).toBeUndefined();
    expect(r.text).toBe(`ref ${NEAR} ok`);
    expect(r.message?.content[0]).toMatchObject({ type: 'text', text: `ref ${NEAR} ok` });
    expect(r.message?.stop_reason).toBe('end_turn');
  });

  it('records each block as evidence, and no event or file holds a card number', async () => {
    const decoded = (await verifyEncodedEvents(await readAllEvents(), evidence.keyring.jwks(), { cadence: CADENCE })).decoded as AnyAttestEvent[];
    const mine = decoded.filter((e) => e.actor.subject.startsWith('blocker-'));
    const blocked = mine.filter((e) => e.metadata.type === 'gateway.request.blocked') as Array<AnyAttestEvent & { payload: { direction: string; ruleId: string } }>;
    // blocker-1 once, blocker-2 per case, blocker-3 twice, blocker-4 once, blocker-5 once (found when
    // the cut stream ends), blocker-6 (a near miss) never.
    expect(blocked.filter((e) => e.actor.subject === 'blocker-1')).toHaveLength(1);
    expect(blocked.filter((e) => e.actor.subject === 'blocker-2')).toHaveLength(cases.length);
    expect(blocked.filter((e) => e.actor.subject === 'blocker-3')).toHaveLength(2);
    expect(blocked.filter((e) => e.actor.subject === 'blocker-4')).toHaveLength(1);
    expect(blocked.filter((e) => e.actor.subject === 'blocker-5')).toHaveLength(1);
    expect(blocked.filter((e) => e.actor.subject === 'blocker-6')).toHaveLength(0);
    for (const e of blocked) {
      expect(e.payload).toMatchObject({ direction: 'response', ruleId: 'builtin.pan' });
      expect(e.outcome).toMatchObject({ result: 'failure', status: 403 });
    }
    const masked = mine.filter((e) => e.metadata.type === 'data.masked' && e.actor.subject === 'blocker-1') as Array<AnyAttestEvent & { payload: { hits: Array<Record<string, unknown>> } }>;
    expect(masked).toHaveLength(1);
    expect(masked[0]!.payload.hits[0]).toMatchObject({ bin: '411111', last4: '1111', direction: 'response' });
    expect(Buffer.from(masked[0]!.payload.hits[0]!.panHmac as Buffer).toString('base64url')).toBe(evidence.panKey.hash(VISA));

    for (const e of decoded) {
      const t = eventText(e);
      expect(findPans(t), e.metadata.type).toEqual([]);
      expect(t).not.toContain(VISA);
      expect(t).not.toContain(MC);
    }
    await evidence.emitter.checkpoint();
    // (The near miss, which shares VISA's first 15 digits, is kept as the answer's content: a prefix is no needle.)
    const needles = [VISA, MC, '4111 1111 1111 1111', '5555 5555 5555 4444', '４１１１１１１１１１１１１１１１'];
    for (const f of filesUnder(dir)) {
      const bytes = readFileSync(f);
      for (const n of needles) expect(bytes.includes(Buffer.from(n)), `${f} holds ${n}`).toBe(false);
    }
  });
});

describe('an upstream that closes the stream while a card number is held back', () => {
  it('the caller gets the block error event, not the number', async () => {
    // No content_block_stop, no error event: the response just ends after the card number's delta.
    const frame = (e: Record<string, unknown>) => `event: ${String(e.type)}\ndata: ${JSON.stringify(e)}\n\n`;
    const upstream = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
      res.write(frame({ type: 'message_start', message: { id: 'msg_cut', type: 'message', role: 'assistant', content: [], model: 'claude-sonnet-5-5', stop_reason: null, stop_sequence: null, usage: { input_tokens: 1, output_tokens: 1 } } }));
      res.write(frame({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }));
      res.write(frame({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'friend ' } }));
      setTimeout(() => res.end(frame({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: VISA } })), 15);
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
    const addr = upstream.address();
    const config = parseConfigText(
      `upstream: { anthropic: { baseUrl: "http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}", apiKey: { env: K } } }\nidentity: { devIssuer: { enabled: true } }\ngroups: { blockers: { models: ["claude-*"], masking: { response: block } } }\n`,
      'cut.yaml',
    );
    const cutDev = await DevIssuer.loadOrCreate(mkdtempSync(join(tmpdir(), 'attest-stream-cut-')));
    const gw = await buildGateway({ config, verifier: createTokenVerifier({ issuers: [cutDev.issuerOptions(['attest-dev'])] }), upstreamApiKey: 'k', logger: pino({ level: 'silent' }) });
    try {
      await gw.listen({ host: '127.0.0.1', port: 0 });
      const gwAddr = gw.server.address();
      const url = `http://127.0.0.1:${typeof gwAddr === 'object' && gwAddr ? gwAddr.port : 0}`;
      const apiKey = await cutDev.mint({ subject: 'cut-1', groups: ['blockers'], audience: 'attest-dev', ttlSec: 60 });
      const stream = new Anthropic({ baseURL: url, apiKey, maxRetries: 0 }).messages.stream({ model: 'claude-sonnet-5-5', max_tokens: 100, messages: [{ role: 'user', content: 'x' }] });
      let text = '';
      stream.on('text', (t) => (text += t));
      const error = await stream.finalMessage().then(() => undefined, (e: unknown) => e);
      expect(text).toBe('friend ');
      expectBlockedError(error);
    } finally {
      await gw.close();
      await new Promise<void>((r) => upstream.close(() => r()));
    }
  });
});

describe('streamed answers with masking.response = allow', () => {
  it('forwards the card number as the policy allows, and records the hit as allowed', async () => {
    const r = await streamVia('lenient-1', [{ type: 'text', text: `friend ${VISA} end`, deltas: ['friend ', VISA, ' end'] }], ['lenient']);
    expect(r.error).toBeUndefined();
    expect(r.text).toBe(`friend ${VISA} end`);
    expect(r.message?.stop_reason).toBe('end_turn');
    const decoded = (await verifyEncodedEvents(await readAllEvents(), evidence.keyring.jwks(), { cadence: CADENCE })).decoded as AnyAttestEvent[];
    const mine = decoded.filter((e) => e.actor.subject === 'lenient-1');
    const masked = mine.filter((e) => e.metadata.type === 'data.masked') as Array<AnyAttestEvent & { payload: { hits: Array<{ action: string; direction: string; last4: string }> } }>;
    expect(masked.flatMap((e) => e.payload.hits.map((h) => `${h.direction}:${h.action}:${h.last4}`))).toEqual(['response:allowed:1111']);
    expect(mine.map((e) => e.metadata.type)).not.toContain('gateway.request.blocked');
  });
});
