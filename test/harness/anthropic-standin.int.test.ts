// The stand-in is only worth something if the official SDK cannot tell it from the real API, so
// every behaviour here is observed through `@anthropic-ai/sdk` (raw fetch only where the SDK hides
// the wire: framing, headers it never sends wrong).
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { performance } from 'node:perf_hooks';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import Anthropic, {
  APIError,
  APIUserAbortError,
  AuthenticationError,
  BadRequestError,
  ContentTooLargeError,
  InternalServerError,
  NotFoundError,
  OverloadedError,
  PermissionDeniedError,
  RateLimitError,
} from '@anthropic-ai/sdk';
import { estimateInputTokens, startAnthropicStandin, STANDIN_MODELS, type AnthropicStandin } from './anthropic-standin';

const KEY = 'sk-ant-test-key';
const MODEL = 'claude-sonnet-4-6';

let s: AnthropicStandin;
let client: Anthropic;

beforeAll(async () => {
  s = await startAnthropicStandin();
  // No retries: each test states its own expectations about how many requests arrive.
  client = new Anthropic({ apiKey: KEY, baseURL: s.url, maxRetries: 0 });
});
afterAll(async () => {
  await s.close();
});
afterEach(() => {
  // Each test starts from the defaults: echo reply, no spacing, no key check, empty record.
  s.requests.length = 0;
  s.deltaSpacingMs = 0;
  s.expectedApiKey = undefined;
  s.reply();
});

const user = (text: string) => ({ model: MODEL, max_tokens: 1024, messages: [{ role: 'user' as const, content: text }] });

describe('non-streaming messages.create', () => {
  it('returns a text message with usage, stop_reason and the request id', async () => {
    s.reply({ kind: 'message', content: [{ type: 'text', text: 'Hello there.' }], usage: { input_tokens: 11, output_tokens: 3 } });
    const msg = await client.messages.create(user('hi'));
    expect(msg.type).toBe('message');
    expect(msg.role).toBe('assistant');
    expect(msg.id).toMatch(/^msg_[0-9A-Za-z]{24}$/);
    expect(msg.model).toBe(MODEL);
    expect(msg.content).toEqual([{ type: 'text', text: 'Hello there.', citations: null }]);
    expect(msg.stop_reason).toBe('end_turn');
    expect(msg.stop_sequence).toBeNull();
    expect(msg.usage.input_tokens).toBe(11);
    expect(msg.usage.output_tokens).toBe(3);
    expect(msg._request_id).toMatch(/^req_[0-9A-Za-z]{24}$/);

    const [req] = s.requests;
    expect(req?.method).toBe('POST');
    expect(req?.path).toBe('/v1/messages');
    // This SDK version sends the API key as a bearer token, not as x-api-key.
    expect(req?.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(req?.headers['x-api-key']).toBeUndefined();
    expect(req?.headers['anthropic-version']).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(req?.body).toEqual(user('hi'));
    expect(JSON.parse(req?.rawBody ?? '')).toEqual(req?.body);
    expect(req?.aborted).toBe(false);
  });

  it('returns tool_use with the input object and stop_reason tool_use', async () => {
    const input = { city: 'Zürich', units: 'metric', days: [1, 2, 3], nested: { ok: true } };
    s.reply({ kind: 'message', content: [{ type: 'text', text: 'Checking.' }, { type: 'tool_use', id: 'toolu_fixed', name: 'weather', input }] });
    const msg = await client.messages.create(user('weather?'));
    expect(msg.stop_reason).toBe('tool_use');
    const tool = msg.content[1];
    expect(tool?.type).toBe('tool_use');
    if (tool?.type !== 'tool_use') throw new Error('unreachable');
    expect(tool.id).toBe('toolu_fixed');
    expect(tool.name).toBe('weather');
    expect(tool.input).toEqual(input);
  });

  it('gives every response its own message id and request id', async () => {
    s.reply({ kind: 'message', content: [{ type: 'text', text: 'same' }], usage: { input_tokens: 1, output_tokens: 1 } });
    const a = await client.messages.create(user('a'));
    const b = await client.messages.create(user('b'));
    expect(a.id).not.toBe(b.id);
    expect(a._request_id).not.toBe(b._request_id);
  });

  it('passes the recorded request to a reply function', async () => {
    s.reply((req) => ({ kind: 'message', content: [{ type: 'text', text: `model=${req.body.model} path=${req.path}` }] }));
    const msg = await client.messages.create(user('x'));
    expect(msg.content[0]).toMatchObject({ text: `model=${MODEL} path=/v1/messages` });
  });
});

describe('default echo reply (none set)', () => {
  it('echoes the last user message, JSON and streaming', async () => {
    const params = {
      model: MODEL,
      max_tokens: 100,
      messages: [
        { role: 'user' as const, content: 'first' },
        { role: 'assistant' as const, content: 'ok' },
        { role: 'user' as const, content: [{ type: 'text' as const, text: 'card 4111 1111 ' }, { type: 'text' as const, text: '1111 1111 end' }] },
      ],
    };
    const msg = await client.messages.create(params);
    expect(msg.content).toEqual([{ type: 'text', text: 'card 4111 1111 1111 1111 end', citations: null }]);
    expect(msg.usage.input_tokens).toBe(estimateInputTokens(params));

    const streamed = await client.messages.stream(params).finalMessage();
    expect(streamed.content[0]).toMatchObject({ type: 'text', text: 'card 4111 1111 1111 1111 end' });
  });
});

describe('streaming', () => {
  it('messages.stream reassembles text sent across many deltas, with usage and stop_reason', async () => {
    // Characters that would break naive SSE framing or code-unit splitting.
    const deltas = ['Line one\n', '\ndata: not-an-event\n\n', 'event: ping', ' ünïcødé ', '👋🏽', ' "quoted" \\ ', '\r\n', 'end.'];
    const text = deltas.join('');
    s.reply({ kind: 'message', content: [{ type: 'text', text, deltas }], usage: { input_tokens: 21, output_tokens: 17 } });
    const stream = client.messages.stream(user('go'));
    const pieces: string[] = [];
    stream.on('text', (t) => pieces.push(t));
    const msg = await stream.finalMessage();
    expect(pieces).toEqual(deltas);
    expect(await stream.finalText()).toBe(text);
    expect(msg.content).toHaveLength(1);
    expect(msg.stop_reason).toBe('end_turn');
    expect(msg.usage).toMatchObject({ input_tokens: 21, output_tokens: 17 });
    expect(msg.id).toMatch(/^msg_/);
    expect(s.requests[0]?.body.stream).toBe(true);
  });

  it('splits long text into many default deltas', async () => {
    const text = 'The quick brown fox jumps over the lazy dog. '.repeat(8);
    s.reply({ kind: 'message', content: [{ type: 'text', text }] });
    const stream = client.messages.stream(user('go'));
    let n = 0;
    stream.on('text', () => n++);
    expect(await stream.finalText()).toBe(text);
    expect(n).toBe(Math.ceil(text.length / 8));
  });

  it('create({stream:true}) yields the documented event sequence (ping is consumed by the SDK)', async () => {
    s.reply({ kind: 'message', content: [{ type: 'text', text: 'abcdefghijkl', deltas: ['abc', 'def', 'ghijkl'] }], usage: { input_tokens: 4, output_tokens: 5 } });
    const stream = await client.messages.create({ ...user('go'), stream: true });
    const types: string[] = [];
    let text = '';
    let stop: string | null = null;
    let outTokens = -1;
    for await (const ev of stream) {
      types.push(ev.type === 'content_block_delta' ? `delta:${ev.delta.type}` : ev.type);
      if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text;
      if (ev.type === 'message_delta') {
        stop = ev.delta.stop_reason;
        outTokens = ev.usage.output_tokens;
      }
      if (ev.type === 'message_start') expect(ev.message.content).toEqual([]);
    }
    expect(types).toEqual([
      'message_start',
      'content_block_start',
      'delta:text_delta',
      'delta:text_delta',
      'delta:text_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    expect(text).toBe('abcdefghijkl');
    expect(stop).toBe('end_turn');
    expect(outTokens).toBe(5);
  });

  it('tool use arrives as input_json_delta pieces and finalMessage has the input object', async () => {
    const input = { query: 'SELECT * FROM "orders" WHERE id = 42', limit: 10, flags: ['a', 'b'], emoji: '🚀' };
    s.reply({ kind: 'message', content: [{ type: 'text', text: 'Let me look.' }, { type: 'tool_use', name: 'sql', input }] });
    const stream = client.messages.stream(user('orders'));
    const partials: string[] = [];
    stream.on('inputJson', (partial) => partials.push(partial));
    const msg = await stream.finalMessage();
    expect(msg.stop_reason).toBe('tool_use');
    const tool = msg.content[1];
    if (tool?.type !== 'tool_use') throw new Error(`expected tool_use, got ${tool?.type}`);
    expect(tool.input).toEqual(input);
    expect(tool.name).toBe('sql');
    expect(tool.id).toMatch(/^toolu_/);
    // The API's first partial_json is "", then the JSON text in pieces.
    expect(partials[0]).toBe('');
    expect(partials.length).toBeGreaterThan(3);
    expect(partials.join('')).toBe(JSON.stringify(input));
  });

  it('honours explicit jsonDeltas', async () => {
    const jsonDeltas = ['{"a":', ' [1, ', '2]', ', "b": "x"}'];
    s.reply({ kind: 'message', content: [{ type: 'tool_use', name: 't', input: { a: [1, 2], b: 'x' }, jsonDeltas }] });
    const stream = client.messages.stream(user('x'));
    const partials: string[] = [];
    stream.on('inputJson', (p) => partials.push(p));
    const msg = await stream.finalMessage();
    expect(partials).toEqual(jsonDeltas);
    expect(msg.content[0]).toMatchObject({ type: 'tool_use', input: { a: [1, 2], b: 'x' } });
  });

  it('thinking blocks stream thinking_delta then signature_delta', async () => {
    s.reply({
      kind: 'message',
      content: [
        { type: 'thinking', thinking: 'The user wants a number. 6 times 7.', signature: 'sig-abc123==', deltas: ['The user wants', ' a number.', ' 6 times 7.'] },
        { type: 'text', text: '42' },
      ],
      usage: { input_tokens: 9, output_tokens: 30 },
    });
    const stream = client.messages.stream({ ...user('6*7?'), thinking: { type: 'enabled', budget_tokens: 1024 } });
    const thoughts: string[] = [];
    const signatures: string[] = [];
    stream.on('thinking', (d) => thoughts.push(d));
    stream.on('signature', (sig) => signatures.push(sig));
    const msg = await stream.finalMessage();
    expect(thoughts).toEqual(['The user wants', ' a number.', ' 6 times 7.']);
    expect(signatures).toEqual(['sig-abc123==']);
    expect(msg.content[0]).toEqual({ type: 'thinking', thinking: 'The user wants a number. 6 times 7.', signature: 'sig-abc123==' });
    expect(msg.content[1]).toMatchObject({ type: 'text', text: '42' });
    expect(msg.usage.output_tokens).toBe(30);
  });

  it('a non-streaming thinking reply carries a generated signature', async () => {
    s.reply({ kind: 'message', content: [{ type: 'thinking', thinking: 'hmm' }, { type: 'text', text: 'ok' }] });
    const msg = await client.messages.create(user('x'));
    const block = msg.content[0];
    if (block?.type !== 'thinking') throw new Error('expected thinking');
    expect(block.thinking).toBe('hmm');
    expect(block.signature.length).toBeGreaterThan(20);
  });

  it('spaces deltas by deltaSpacingMs', async () => {
    s.deltaSpacingMs = 30;
    const deltas = ['a', 'b', 'c', 'd', 'e', 'f'];
    s.reply({ kind: 'message', content: [{ type: 'text', text: deltas.join(''), deltas }] });
    const stream = client.messages.stream(user('go'));
    const at: number[] = [];
    stream.on('text', () => at.push(performance.now()));
    expect(await stream.finalText()).toBe('abcdef');
    expect(at).toHaveLength(6);
    const span = (at.at(-1) ?? 0) - (at[0] ?? 0);
    // A lower bound only (load can only stretch it); loose because a client that handles the first
    // event late sees the rest bunched up.
    expect(span).toBeGreaterThanOrEqual(30 * 5 * 0.6);
  });

  it('a mid-stream event: error surfaces as an APIError after some text arrived', async () => {
    s.reply({
      kind: 'stream-error',
      content: [{ type: 'text', text: 'one two three four', deltas: ['one ', 'two ', 'three ', 'four'] }],
      afterDeltas: 2,
      errorType: 'overloaded_error',
      message: 'Overloaded',
    });
    const stream = client.messages.stream(user('go'));
    const seen: string[] = [];
    stream.on('text', (t) => seen.push(t));
    stream.on('error', () => {}); // finalMessage() below is where the test observes the error
    const err = await stream.finalMessage().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(seen).toEqual(['one ', 'two ']);
    expect(err).toBeInstanceOf(APIError);
    const apiErr = err as APIError;
    expect(apiErr.type).toBe('overloaded_error');
    expect(apiErr.apiMessage).toBe('Overloaded');
    expect(apiErr.status).toBeUndefined(); // the HTTP status was 200
    expect(apiErr.requestID).toMatch(/^req_/);
    expect((apiErr.error as any).request_id).toBe(apiErr.requestID);
  });

  it('a mid-stream error also throws from create({stream:true}) iteration', async () => {
    s.reply({ kind: 'stream-error', content: [{ type: 'text', text: 'abcdef', deltas: ['ab', 'cd', 'ef'] }], afterDeltas: 1, errorType: 'api_error', message: 'Internal server error' });
    const stream = await client.messages.create({ ...user('go'), stream: true });
    let text = '';
    const err = await (async () => {
      for await (const ev of stream) {
        if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text;
      }
    })().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(text).toBe('ab');
    expect(err).toBeInstanceOf(APIError);
    expect((err as APIError).type).toBe('api_error');
  });
});

describe('error statuses', () => {
  const cases = [
    [400, 'invalid_request_error', BadRequestError],
    [401, 'authentication_error', AuthenticationError],
    [403, 'permission_error', PermissionDeniedError],
    [404, 'not_found_error', NotFoundError],
    [413, 'request_too_large', ContentTooLargeError],
    [429, 'rate_limit_error', RateLimitError],
    [500, 'api_error', InternalServerError],
    [529, 'overloaded_error', OverloadedError],
  ] as const;

  for (const [status, errorType, cls] of cases) {
    it(`${status} ${errorType} becomes ${cls.name}`, async () => {
      s.reply({ kind: 'error', status, errorType, message: `stand-in says ${status}` });
      const err = await client.messages.create(user('x')).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(cls);
      const apiErr = err as APIError;
      expect(apiErr.status).toBe(status);
      expect(apiErr.type).toBe(errorType);
      expect(apiErr.apiMessage).toBe(`stand-in says ${status}`);
      expect(apiErr.requestID).toMatch(/^req_[0-9A-Za-z]{24}$/);
      expect(apiErr.error).toEqual({ type: 'error', error: { type: errorType, message: `stand-in says ${status}` }, request_id: apiErr.requestID });
    });
  }

  it('streaming requests get the same error JSON before any SSE', async () => {
    s.reply({ kind: 'error', status: 429, errorType: 'rate_limit_error', message: 'slow down' });
    const err = await client.messages.stream(user('x')).finalMessage().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RateLimitError);
  });

  it('the SDK retries a 529 (honouring retry-after-ms) and sends x-stainless-retry-count', async () => {
    const retrying = new Anthropic({ apiKey: KEY, baseURL: s.url, maxRetries: 2 });
    s.reply(() =>
      s.requests.length === 1
        ? { kind: 'error', status: 529, errorType: 'overloaded_error', message: 'Overloaded', headers: { 'retry-after-ms': '5' } }
        : { kind: 'message', content: [{ type: 'text', text: 'second time lucky' }] },
    );
    const msg = await retrying.messages.create(user('x'));
    expect(msg.content[0]).toMatchObject({ text: 'second time lucky' });
    expect(s.requests.map((r) => r.headers['x-stainless-retry-count'])).toEqual(['0', '1']);
  });

  it('x-should-retry: false stops the SDK from retrying a 500', async () => {
    const retrying = new Anthropic({ apiKey: KEY, baseURL: s.url, maxRetries: 2 });
    s.reply({ kind: 'error', status: 500, errorType: 'api_error', message: 'no', headers: { 'x-should-retry': 'false' } });
    await expect(retrying.messages.create(user('x'))).rejects.toBeInstanceOf(InternalServerError);
    expect(s.requests).toHaveLength(1);
  });

  it('rejects a bad reply at reply() time', () => {
    expect(() => s.reply({ kind: 'message', content: [{ type: 'text', text: 'abc', deltas: ['a', 'b'] }] })).toThrow(/do not join/);
    expect(() => s.reply({ kind: 'message', content: [{ type: 'tool_use', name: 't', input: { a: 1 }, jsonDeltas: ['{"a":', '2}'] }] })).toThrow(/do not join/);
    expect(() => s.reply({ kind: 'error', status: 200, errorType: 'x', message: 'y' })).toThrow(/4xx or 5xx/);
  });
});

describe('count_tokens and models', () => {
  it('count_tokens returns {input_tokens}', async () => {
    const small = user('hi');
    const big = user('hello world, '.repeat(100));
    const a = await client.messages.countTokens(small);
    const b = await client.messages.countTokens({ ...big, system: 'You are terse.' });
    expect(a).toEqual({ input_tokens: estimateInputTokens(small) });
    expect(b.input_tokens).toBe(estimateInputTokens({ ...big, system: 'You are terse.' }));
    expect(b.input_tokens).toBeGreaterThan(300);
    expect(a._request_id).toMatch(/^req_/);
    expect(s.requests[0]?.path).toBe('/v1/messages/count_tokens');
  });

  it('models.list paginates with has_more / first_id / last_id, and retrieve works', async () => {
    const first = await client.models.list({ limit: 2 });
    expect(first.data.map((m) => m.id)).toEqual(STANDIN_MODELS.slice(0, 2).map((m) => m.id));
    expect(first.has_more).toBe(true);
    expect(first.first_id).toBe(STANDIN_MODELS[0]?.id);
    expect(first.last_id).toBe(STANDIN_MODELS[1]?.id);

    const all: string[] = [];
    for await (const m of client.models.list({ limit: 2 })) all.push(m.id);
    expect(all).toEqual(STANDIN_MODELS.map((m) => m.id));
    // 1 + 3 pages of 2 for the iteration: the SDK followed after_id until has_more was false.
    expect(s.requests.filter((r) => r.path === '/v1/models')).toHaveLength(4);
    expect(s.requests.at(-1)?.url).toContain(`after_id=${STANDIN_MODELS[3]?.id}`);

    const back = await client.models.list({ limit: 2, before_id: STANDIN_MODELS[4]?.id ?? '' });
    expect(back.data.map((m) => m.id)).toEqual(STANDIN_MODELS.slice(2, 4).map((m) => m.id));
    expect(back.has_more).toBe(true);

    const one = await client.models.retrieve(STANDIN_MODELS[2]?.id ?? '');
    expect(one).toMatchObject({ type: 'model', id: STANDIN_MODELS[2]?.id });
    await expect(client.models.retrieve('claude-nonexistent')).rejects.toBeInstanceOf(NotFoundError);
  });
});

describe('client disconnects', () => {
  it('detects a client that aborts a hanging request', async () => {
    s.reply({ kind: 'hang' });
    const ac = new AbortController();
    const p = client.messages.create(user('wait'), { signal: ac.signal });
    await vi.waitFor(() => expect(s.requests).toHaveLength(1));
    expect(s.requests[0]?.aborted).toBe(false);
    ac.abort();
    await expect(p).rejects.toBeInstanceOf(APIUserAbortError);
    await s.waitForAbort(0, 2000);
    expect(s.requests[0]?.aborted).toBe(true);
  });

  it('detects a client that aborts mid-stream, and stops sending', async () => {
    s.deltaSpacingMs = 50;
    const text = 'x'.repeat(400); // 50 deltas, 2.5 s if it ran to the end
    s.reply({ kind: 'message', content: [{ type: 'text', text }] });
    const stream = client.messages.stream(user('go'));
    const done = stream.done().then(
      () => undefined,
      (e: unknown) => e,
    );
    let got = '';
    await new Promise<void>((resolve) => {
      stream.on('text', (t) => {
        got += t;
        if (got.length >= 16) resolve();
      });
    });
    stream.abort();
    await s.waitForAbort(0, 2000);
    expect(s.requests[0]?.aborted).toBe(true);
    expect(got.length).toBeLessThan(400);
    expect(await done).toBeInstanceOf(APIUserAbortError);
  });

  it('waitForAbort rejects for a request that completed, and times out for a missing one', async () => {
    await client.messages.create(user('done'));
    await expect(s.waitForAbort(0, 1000)).rejects.toThrow(/completed/);
    await expect(s.waitForAbort(5, 50)).rejects.toThrow(/not aborted within 50 ms/);
  });
});

describe('authentication and request validation', () => {
  it('enforces expectedApiKey', async () => {
    s.expectedApiKey = KEY;
    await expect(client.messages.create(user('ok'))).resolves.toMatchObject({ type: 'message' });
    const wrong = new Anthropic({ apiKey: 'sk-ant-wrong', baseURL: s.url, maxRetries: 0 });
    const err = await wrong.messages.create(user('no')).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AuthenticationError);
    expect((err as APIError).type).toBe('authentication_error');
    await expect(wrong.models.list()).rejects.toBeInstanceOf(AuthenticationError);

    const missing = await fetch(`${s.url}/v1/messages`, {
      method: 'POST',
      headers: { 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
      body: JSON.stringify(user('x')),
    });
    expect(missing.status).toBe(401);
    expect(await missing.json()).toMatchObject({ type: 'error', error: { type: 'authentication_error', message: 'x-api-key header is required' } });

    // x-api-key (curl, older SDKs) is accepted as well as the SDK's bearer form.
    const viaHeader = await fetch(`${s.url}/v1/messages`, {
      method: 'POST',
      headers: { 'anthropic-version': '2023-06-01', 'content-type': 'application/json', 'x-api-key': KEY },
      body: JSON.stringify(user('x')),
    });
    expect(viaHeader.status).toBe(200);
    await viaHeader.text();
    const wrongHeader = await fetch(`${s.url}/v1/messages`, {
      method: 'POST',
      headers: { 'anthropic-version': '2023-06-01', 'content-type': 'application/json', 'x-api-key': 'nope' },
      body: JSON.stringify(user('x')),
    });
    expect(wrongHeader.status).toBe(401);
    await wrongHeader.text();
  });

  it('starts with expectedApiKey from options', async () => {
    const keyed = await startAnthropicStandin({ expectedApiKey: 'k1' });
    try {
      const c = new Anthropic({ apiKey: 'k2', baseURL: keyed.url, maxRetries: 0 });
      await expect(c.messages.create(user('x'))).rejects.toBeInstanceOf(AuthenticationError);
      const ok = new Anthropic({ apiKey: 'k1', baseURL: keyed.url, maxRetries: 0 });
      await expect(ok.messages.create(user('x'))).resolves.toMatchObject({ content: [{ text: 'x' }] });
    } finally {
      await keyed.close();
    }
  });

  it('answers malformed requests as the API does', async () => {
    const post = (path: string, body: string, headers: Record<string, string> = { 'anthropic-version': '2023-06-01' }) =>
      fetch(`${s.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });

    const noVersion = await post('/v1/messages', JSON.stringify(user('x')), {});
    expect(noVersion.status).toBe(400);
    expect(await noVersion.json()).toMatchObject({ error: { type: 'invalid_request_error', message: 'anthropic-version: header is required' } });

    const badJson = await post('/v1/messages', '{"model": ');
    expect(badJson.status).toBe(400);
    expect(badJson.headers.get('request-id')).toMatch(/^req_/);

    const noMaxTokens = await post('/v1/messages', JSON.stringify({ model: MODEL, messages: [] }));
    expect(await noMaxTokens.json()).toMatchObject({ error: { type: 'invalid_request_error', message: 'max_tokens: Field required' } });

    const unknown = await post('/v1/complete-nonsense', '{}');
    expect(unknown.status).toBe(404);
    const body = (await unknown.json()) as { type: string; error: { type: string }; request_id: string };
    expect(body.error.type).toBe('not_found_error');
    expect(body.request_id).toBe(unknown.headers.get('request-id'));
  });

  it('routes on the path and ignores the query string (Claude Code posts ?beta=true)', async () => {
    const msg = await client.messages.create(user('beta hello'), { query: { beta: 'true' } });
    expect(msg.content[0]).toMatchObject({ type: 'text', text: 'beta hello' });
    expect(s.requests[0]?.path).toBe('/v1/messages');
    expect(s.requests[0]?.url).toBe('/v1/messages?beta=true');
  });
});

describe('wire framing (what a proxy must preserve byte for byte)', () => {
  it('sends chunked text/event-stream frames of `event: T` + `data: JSON` + blank line, including ping', async () => {
    s.reply({ kind: 'message', content: [{ type: 'text', text: 'hi there', deltas: ['hi', ' there'] }, { type: 'tool_use', name: 't', input: { a: 1 } }] });
    const res = await fetch(`${s.url}/v1/messages`, {
      method: 'POST',
      headers: { 'anthropic-version': '2023-06-01', 'content-type': 'application/json', 'x-api-key': KEY },
      body: JSON.stringify({ ...user('x'), stream: true }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    expect(res.headers.get('cache-control')).toBe('no-cache');
    expect(res.headers.get('content-length')).toBeNull();
    expect(res.headers.get('request-id')).toMatch(/^req_/);
    const raw = await res.text();
    expect(raw.endsWith('\n\n')).toBe(true);
    const frames = raw.slice(0, -2).split('\n\n');
    const names: string[] = [];
    for (const f of frames) {
      const m = /^event: ([a-z_]+)\ndata: (.*)$/s.exec(f);
      expect(m, `bad frame ${JSON.stringify(f)}`).not.toBeNull();
      const [, name = '', data = ''] = m ?? [];
      expect(data).not.toContain('\n');
      expect(JSON.parse(data).type).toBe(name);
      names.push(name);
    }
    expect(names.slice(0, 3)).toEqual(['message_start', 'ping', 'content_block_start']);
    expect(names.slice(-2)).toEqual(['message_delta', 'message_stop']);
    const firstJson = frames.find((f) => f.includes('input_json_delta'));
    expect(JSON.parse(firstJson?.split('data: ')[1] ?? '{}').delta.partial_json).toBe('');
  });

  it('writes the first events before later deltas exist (no buffering)', async () => {
    s.deltaSpacingMs = 300;
    s.reply({ kind: 'message', content: [{ type: 'text', text: 'abc', deltas: ['a', 'b', 'c'] }] });
    const res = await fetch(`${s.url}/v1/messages`, {
      method: 'POST',
      headers: { 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
      body: JSON.stringify({ ...user('x'), stream: true }),
    });
    const reader = res.body?.getReader();
    if (!reader) throw new Error('no body');
    // Read until the first delta is in; a buffering server would hand over "b" with it.
    const decoder = new TextDecoder();
    let got = '';
    while (!got.includes('"text":"a"')) {
      const { value, done } = await reader.read();
      if (done) break;
      got += decoder.decode(value, { stream: true });
    }
    expect(got.startsWith('event: message_start\n')).toBe(true);
    expect(got).toContain('"text":"a"');
    expect(got).not.toContain('"text":"b"');
    await reader.cancel();
  });
});

describe('anthropic-standin-main (separate process)', () => {
  it('prints its url, serves fixed-sse regardless of the stream flag, and exits on SIGTERM', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/harness/anthropic-standin-main.ts', '--port', '0', '--reply', 'fixed-sse'], {
      cwd: process.cwd(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const line = await new Promise<string>((resolve, reject) => {
        const rl = createInterface({ input: child.stdout });
        rl.once('line', resolve);
        child.once('exit', () => reject(new Error(`exited early: ${stderr}`)));
      });
      const { url } = JSON.parse(line) as { url: string };
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const c = new Anthropic({ apiKey: KEY, baseURL: url, maxRetries: 0 });
      const text = await c.messages.stream(user('x')).finalText();
      expect(text.length).toBeGreaterThan(50);
      const raw = await fetch(`${url}/v1/messages`, {
        method: 'POST',
        headers: { 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
        body: JSON.stringify(user('x')),
      });
      expect(raw.headers.get('content-type')).toContain('text/event-stream');
      await raw.text();
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  });
});
