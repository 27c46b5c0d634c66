/**
 * Anthropic Messages API stand-in: the one allowed fake in Attest's tests (we cannot call the real
 * Claude API here). It speaks the real wire format, and the proof is anthropic-standin.int.test.ts,
 * which drives it with the official `@anthropic-ai/sdk` client. The response objects are typed with
 * the SDK's own types (`Message`, `RawMessageStreamEvent`, `ModelInfo`, ...), so a change in the
 * SDK's shapes fails the typecheck here.
 *
 * Routes: POST /v1/messages (JSON, or SSE when the body has `stream: true`),
 * POST /v1/messages/count_tokens, GET /v1/models (cursor pagination), GET /v1/models/{id}.
 * The query string is ignored for routing (older SDKs' beta.messages, as Claude Code uses them,
 * post to `/v1/messages?beta=true`).
 * Any other path gets a 404 not_found_error.
 *
 * Wire format, as the SDK reads it (a gateway in front must keep all of it):
 * - Credentials: the official SDK (1.13) sends `apiKey` as `authorization: Bearer <key>`, not as
 *   `x-api-key`; other clients send `x-api-key`. expectedApiKey accepts either.
 * - Every response carries a `request-id` header (`req_...`). The SDK puts it on errors
 *   (`err.requestID`) and on results (`_request_id`). Error bodies are
 *   `{"type":"error","error":{"type","message"},"request_id"}`.
 * - SSE is `content-type: text/event-stream; charset=utf-8`, chunked, framed as
 *   `event: <type>\ndata: <json>\n\n`. The SDK skips frames without an `event:` line and skips
 *   `event: ping`. It throws an APIError for `event: error`, taking the error type from the data.
 *   Whether the SDK parses a response as SSE depends on the request's `stream` flag, not on the
 *   response content-type.
 * - Event order: message_start (the message with empty content), ping, then for each block:
 *   content_block_start, its content_block_delta events, content_block_stop. Then message_delta
 *   (stop_reason, usage) and message_stop. Tool input arrives as `input_json_delta` pieces
 *   (the first one is "", as the API sends it). A thinking block ends with one `signature_delta`.
 * - The SDK retries 408, 409, 429 and >=500 (529 overloaded too) unless `x-should-retry` says
 *   otherwise, and it honours `retry-after` / `retry-after-ms`. It sends `x-stainless-retry-count`
 *   on each attempt.
 *
 * Usage: `const s = await startAnthropicStandin(); s.reply({...}); new Anthropic({ baseURL: s.url })`.
 * With no reply set, /v1/messages echoes the text of the last user message, so a test can see
 * exactly what reached the upstream. Token counts that are not given are estimated as
 * ceil(characters / 4) (see estimateInputTokens). Tool ids and thinking signatures that are not
 * given are generated when the reply renders: once for a reply with `usage` (cached), else per request.
 * /v1/messages requires `anthropic-version`, `model`, `max_tokens` and `messages`, as the API does.
 *
 * Spacing: `deltaSpacingMs` is the wait between consecutive content_block_delta events. Headers,
 * message_start, ping and the first delta go out at once, so time to first byte is immediate.
 * Each group of events is written as soon as it is produced (never buffered). With spacing 0 the
 * whole stream is produced at once and written as one chunk: that keeps the fixed reply cheap,
 * which matters because this server is also the "direct" baseline in benchmarks.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import type {
  ContentBlock,
  Message,
  MessageDeltaUsage,
  MessageTokensCount,
  RawMessageStreamEvent,
  StopReason,
  Usage,
} from '@anthropic-ai/sdk/resources/messages';
import type { ModelInfo } from '@anthropic-ai/sdk/resources/models';

export type StandinBlock =
  /** deltas: the exact split of `text` for streaming (default: pieces of 8 code points). */
  | { type: 'text'; text: string; deltas?: string[] }
  /** jsonDeltas: the `partial_json` pieces; their concatenation must parse to `input`. */
  | { type: 'tool_use'; id?: string; name: string; input: unknown; jsonDeltas?: string[] }
  | { type: 'thinking'; thinking: string; signature?: string; deltas?: string[] };

export interface StandinUsage {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens?: number;
  cache_read_input_tokens?: number;
}

export type StandinReply =
  | {
      kind: 'message';
      content: StandinBlock[];
      stopReason?: string;
      usage?: StandinUsage;
      model?: string;
      /** Force SSE (true) or JSON (false) whatever the request's `stream` flag says. */
      stream?: boolean;
    }
  | {
      kind: 'error';
      status: number;
      errorType: string;
      message: string;
      /** Extra response headers, e.g. `retry-after` or `x-should-retry`. */
      headers?: Record<string, string>;
    }
  /** The stream starts, `afterDeltas` deltas go out, then `event: error` and the response ends. */
  | { kind: 'stream-error'; content: StandinBlock[]; afterDeltas: number; errorType: string; message: string }
  /** Accepts the request and never answers (to test client-disconnect cancellation). */
  | { kind: 'hang' };

export interface RecordedRequest {
  method: string;
  /** Path without the query string. */
  path: string;
  /** The raw request target, query string included. */
  url: string;
  headers: Record<string, string | string[] | undefined>;
  /** Parsed JSON body; undefined when the body is empty or not JSON. */
  body: any;
  rawBody: string;
  /** True once the client went away before the response was complete. */
  aborted: boolean;
  /** Date.now() when the request headers arrived. */
  receivedAt: number;
}

export interface AnthropicStandin {
  /** http://127.0.0.1:PORT, no trailing slash. */
  url: string;
  /** Every request, in the order their bodies completed. Empty when started with record: false. */
  requests: RecordedRequest[];
  /**
   * Sets the reply for following /v1/messages calls; no argument restores the default echo.
   * A fixed reply is validated here, at once.
   */
  reply(r?: StandinReply | ((req: RecordedRequest) => StandinReply)): void;
  /** Delay between SSE deltas, read when each response starts. Default 0. */
  deltaSpacingMs: number;
  /**
   * When set, a request that carries this key neither as `x-api-key` nor as
   * `authorization: Bearer <key>` (how the official SDK sends it) gets 401 authentication_error.
   */
  expectedApiKey?: string;
  /** Resolves when request i's client went away; rejects if it completed or on timeout. */
  waitForAbort(i: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export interface StandinOptions {
  port?: number;
  host?: string;
  expectedApiKey?: string;
  deltaSpacingMs?: number;
  /** Keep RecordedRequests (default true). Benchmarks turn it off so memory stays flat. */
  record?: boolean;
}

// ---------------------------------------------------------------------------------------------
// Ids. Real ids look like `msg_01XFDUDYJgAACzvnptvVoYEL`; here a per-process random stem plus a
// counter, so they are unique per process and cost no crypto call per request.

const B62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
function randomB62(n: number): string {
  let s = '';
  for (const b of randomBytes(n)) s += B62.charAt(b % 62);
  return s;
}
const ID_STEM = '01' + randomB62(12);
let idSeq = 0;
function newId(prefix: 'msg' | 'req' | 'toolu'): string {
  idSeq += 1;
  return `${prefix}_${ID_STEM}${idSeq.toString(36).padStart(10, '0')}`;
}

// ---------------------------------------------------------------------------------------------
// Token estimates (deterministic, so tests can compute the same numbers).

function collectText(v: unknown, out: string[]): void {
  if (typeof v === 'string') out.push(v);
  else if (Array.isArray(v)) for (const x of v) collectText(x, out);
  else if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if (typeof o.text === 'string') out.push(o.text);
    if (typeof o.thinking === 'string') out.push(o.thinking);
    if (o.input !== undefined) out.push(JSON.stringify(o.input));
    if (o.content !== undefined) collectText(o.content, out);
  }
}

/** ceil(characters / 4) over system, messages' text and tool definitions; at least 1. */
export function estimateInputTokens(body: any): number {
  const parts: string[] = [];
  if (body && typeof body === 'object') {
    collectText(body.system, parts);
    collectText(body.messages, parts);
    if (body.tools !== undefined) parts.push(JSON.stringify(body.tools));
  }
  let n = 0;
  for (const p of parts) n += p.length;
  return Math.max(1, Math.ceil(n / 4));
}

function estimateOutputTokens(blocks: StandinBlock[]): number {
  let n = 0;
  for (const b of blocks) {
    if (b.type === 'text') n += b.text.length;
    else if (b.type === 'thinking') n += b.thinking.length;
    else n += JSON.stringify(b.input ?? {}).length + b.name.length;
  }
  return Math.max(1, Math.ceil(n / 4));
}

// ---------------------------------------------------------------------------------------------
// Models (newest first, as the API lists them).

function model(id: string, display: string, line: ModelInfo['line'], createdAt: string): ModelInfo {
  return {
    type: 'model',
    id,
    display_name: display,
    created_at: createdAt,
    capabilities: null,
    deprecated_at: null,
    retires_at: null,
    lifecycle: 'active',
    line,
    max_input_tokens: 200_000,
    max_tokens: 64_000,
  };
}
// Ids from the SDK's Model union that it does not flag as deprecated; dates are stand-in data.
export const STANDIN_MODELS: readonly ModelInfo[] = [
  model('claude-opus-5-5', 'Claude Opus 5.5', 'opus', '2026-10-14T00:00:00Z'),
  model('claude-sonnet-5-5', 'Claude Sonnet 5.5', 'sonnet', '2026-10-14T00:00:00Z'),
  model('claude-haiku-5-5', 'Claude Haiku 5.5', 'haiku', '2026-10-01T00:00:00Z'),
  model('claude-sonnet-4-6', 'Claude Sonnet 4.6', 'sonnet', '2026-02-17T00:00:00Z'),
  model('claude-haiku-4-5-20251001', 'Claude Haiku 4.5', 'haiku', '2025-10-15T00:00:00Z'),
];
const DEFAULT_MODEL = 'claude-sonnet-4-6';

// ---------------------------------------------------------------------------------------------
// Rendering a reply into wire text. A message reply with explicit usage renders once and is cached
// (the benchmark fast path); otherwise usage depends on the request and it renders per request.

/** Splits into pieces of n code points, so a delta never cuts a surrogate pair. */
function splitPieces(s: string, n = 8): string[] {
  const cps = Array.from(s);
  const out: string[] = [];
  for (let i = 0; i < cps.length; i += n) out.push(cps.slice(i, i + n).join(''));
  return out;
}

function sseFrame(ev: RawMessageStreamEvent): string {
  return `event: ${ev.type}\ndata: ${JSON.stringify(ev)}\n\n`;
}
const PING_FRAME = 'event: ping\ndata: {"type": "ping"}\n\n';

interface Resolved {
  blocks: ContentBlock[];
  /** Deltas per block, in wire order. */
  deltas: Array<Array<{ kind: 'text' | 'json' | 'thinking' | 'signature'; value: string }>>;
}

function resolveBlocks(content: StandinBlock[]): Resolved {
  const blocks: ContentBlock[] = [];
  const deltas: Resolved['deltas'] = [];
  content.forEach((b, i) => {
    if (b.type === 'text') {
      const pieces = b.deltas ?? splitPieces(b.text);
      if (pieces.join('') !== b.text) throw new Error(`stand-in: content[${i}].deltas do not join to its text`);
      blocks.push({ type: 'text', text: b.text, citations: null });
      deltas.push(pieces.map((value) => ({ kind: 'text' as const, value })));
    } else if (b.type === 'tool_use') {
      const json = JSON.stringify(b.input ?? {});
      // The API's first input_json_delta is an empty string; keep that edge case on the wire.
      const pieces = b.jsonDeltas ?? ['', ...splitPieces(json)];
      let parsed: unknown;
      try {
        parsed = JSON.parse(pieces.join(''));
      } catch {
        throw new Error(`stand-in: content[${i}].jsonDeltas do not join to valid JSON`);
      }
      if (JSON.stringify(parsed) !== json) throw new Error(`stand-in: content[${i}].jsonDeltas do not join to its input`);
      blocks.push({ type: 'tool_use', id: b.id ?? newId('toolu'), name: b.name, input: b.input ?? {}, caller: { type: 'direct' } });
      deltas.push(pieces.map((value) => ({ kind: 'json' as const, value })));
    } else {
      const pieces = b.deltas ?? splitPieces(b.thinking);
      if (pieces.join('') !== b.thinking) throw new Error(`stand-in: content[${i}].deltas do not join to its thinking`);
      const signature = b.signature ?? 'Eq' + randomBytes(96).toString('base64');
      blocks.push({ type: 'thinking', thinking: b.thinking, signature });
      deltas.push([...pieces.map((value) => ({ kind: 'thinking' as const, value })), { kind: 'signature', value: signature }]);
    }
  });
  return { blocks, deltas };
}

function fullUsage(u: StandinUsage, thinkingTokens: number | null): Usage {
  return {
    input_tokens: u.input_tokens,
    cache_creation_input_tokens: u.cache_creation_input_tokens ?? 0,
    cache_read_input_tokens: u.cache_read_input_tokens ?? 0,
    cache_creation: { ephemeral_5m_input_tokens: u.cache_creation_input_tokens ?? 0, ephemeral_1h_input_tokens: 0 },
    output_tokens: u.output_tokens,
    output_tokens_details: thinkingTokens === null ? null : { thinking_tokens: thinkingTokens },
    server_tool_use: null,
    service_tier: 'standard',
    inference_geo: null,
    speed: null,
  };
}

interface Rendered {
  /** JSON body after `"model":<model>,` (the id and model are spliced in per request). */
  jsonTail: string;
  /** message_start's message after `"model":<model>,`. */
  startTail: string;
  /** SSE text after message_start, grouped so that every group but the first starts with a delta. */
  groups: string[];
  /** All groups joined, for the spacing-0 path. */
  joined: string;
  /** For stream-error: the error to append after the groups. */
  error?: { type: string; message: string };
}

interface MessageLike {
  content: StandinBlock[];
  stopReason?: string;
  usage: StandinUsage;
}

function render(reply: MessageLike, cutAfterDeltas?: number): Rendered {
  const { blocks, deltas } = resolveBlocks(reply.content);
  const stopReason = (reply.stopReason ?? (blocks.some((b) => b.type === 'tool_use') ? 'tool_use' : 'end_turn')) as StopReason;
  const thinking = reply.content.some((b) => b.type === 'thinking')
    ? estimateOutputTokens(reply.content.filter((b) => b.type === 'thinking'))
    : null;
  const usage = fullUsage(reply.usage, thinking === null ? null : Math.min(thinking, reply.usage.output_tokens));

  const message: Message = {
    id: '',
    type: 'message',
    role: 'assistant',
    model: '',
    content: blocks,
    stop_reason: stopReason,
    stop_sequence: null,
    stop_details: null,
    container: null,
    diagnostics: null,
    usage,
  };
  const { id: _id, type: _type, role: _role, model: _model, ...rest } = message;
  const jsonTail = JSON.stringify(rest).slice(1);

  // message_start carries the empty message; output_tokens is a running count that starts small.
  const startUsage: Usage = { ...usage, output_tokens: Math.min(1, usage.output_tokens), output_tokens_details: null };
  const { content: _c, ...startRest } = { ...rest, stop_reason: null, usage: startUsage };
  const startTail = JSON.stringify({ content: [], ...startRest }).slice(1);

  // Frames after message_start, with the deltas marked so they can be spaced and counted.
  const frames: Array<{ text: string; delta: boolean }> = [{ text: PING_FRAME, delta: false }];
  blocks.forEach((block, index) => {
    const startBlock: ContentBlock =
      block.type === 'text' ? { ...block, text: '' }
      : block.type === 'tool_use' ? { ...block, input: {} }
      : block.type === 'thinking' ? { ...block, thinking: '', signature: '' }
      : block;
    frames.push({ text: sseFrame({ type: 'content_block_start', index, content_block: startBlock }), delta: false });
    for (const d of deltas[index] ?? []) {
      const ev: RawMessageStreamEvent =
        d.kind === 'text' ? { type: 'content_block_delta', index, delta: { type: 'text_delta', text: d.value } }
        : d.kind === 'json' ? { type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: d.value } }
        : d.kind === 'thinking' ? { type: 'content_block_delta', index, delta: { type: 'thinking_delta', thinking: d.value } }
        : { type: 'content_block_delta', index, delta: { type: 'signature_delta', signature: d.value } };
      frames.push({ text: sseFrame(ev), delta: true });
    }
    frames.push({ text: sseFrame({ type: 'content_block_stop', index }), delta: false });
  });
  const deltaUsage: MessageDeltaUsage = {
    input_tokens: usage.input_tokens,
    output_tokens: usage.output_tokens,
    cache_creation_input_tokens: usage.cache_creation_input_tokens,
    cache_read_input_tokens: usage.cache_read_input_tokens,
    output_tokens_details: usage.output_tokens_details,
    server_tool_use: null,
  };
  frames.push({
    text: sseFrame({
      type: 'message_delta',
      delta: { stop_reason: stopReason, stop_sequence: null, stop_details: null, container: null },
      usage: deltaUsage,
    }),
    delta: false,
  });
  frames.push({ text: sseFrame({ type: 'message_stop' }), delta: false });

  // stream-error: keep everything before the (cutAfterDeltas + 1)-th delta, or before
  // message_delta when there are fewer deltas.
  let kept = frames;
  if (cutAfterDeltas !== undefined) {
    let seen = 0;
    let cut = frames.length - 2;
    for (let i = 0; i < frames.length; i++) {
      if (frames[i]?.delta) {
        if (seen === cutAfterDeltas) {
          cut = i;
          break;
        }
        seen++;
      }
    }
    kept = frames.slice(0, Math.max(0, cut));
  }

  const groups: string[] = [];
  let current = '';
  let deltasSeen = 0;
  for (const f of kept) {
    if (f.delta) {
      if (deltasSeen > 0) {
        groups.push(current);
        current = '';
      }
      deltasSeen++;
    }
    current += f.text;
  }
  groups.push(current);
  return { jsonTail, startTail, groups, joined: groups.join('') };
}

// ---------------------------------------------------------------------------------------------
// Compiled replies, cached per reply object.

type Compiled =
  | { kind: 'message'; model?: string; stream?: boolean; fixed?: Rendered; source: Extract<StandinReply, { kind: 'message' }> }
  | { kind: 'stream-error'; source: Extract<StandinReply, { kind: 'stream-error' }> }
  | { kind: 'error'; source: Extract<StandinReply, { kind: 'error' }> }
  | { kind: 'hang' };

const compiledCache = new WeakMap<StandinReply, Compiled>();

function errorBody(type: string, message: string, requestId: string): string {
  return JSON.stringify({ type: 'error', error: { type, message }, request_id: requestId });
}

function compile(r: StandinReply): Compiled {
  const hit = compiledCache.get(r);
  if (hit) return hit;
  let c: Compiled;
  switch (r.kind) {
    case 'message': {
      const fixed = r.usage ? render({ content: r.content, stopReason: r.stopReason, usage: r.usage }) : undefined;
      // Without usage, still resolve once so bad deltas fail at reply() time.
      if (!fixed) resolveBlocks(r.content);
      c = { kind: 'message', model: r.model, stream: r.stream, fixed, source: r };
      break;
    }
    case 'stream-error':
      if (!Number.isInteger(r.afterDeltas) || r.afterDeltas < 0) {
        throw new Error(`stand-in: afterDeltas must be a non-negative integer, got ${r.afterDeltas}`);
      }
      resolveBlocks(r.content);
      c = { kind: 'stream-error', source: r };
      break;
    case 'error':
      if (!Number.isInteger(r.status) || r.status < 400 || r.status > 599) {
        throw new Error(`stand-in: error status must be 4xx or 5xx, got ${r.status}`);
      }
      // Nothing to pre-render: the body carries each request's own id.
      c = { kind: 'error', source: r };
      break;
    case 'hang':
      c = { kind: 'hang' };
      break;
    default: {
      const never: never = r;
      throw new Error(`stand-in: unknown reply ${JSON.stringify(never)}`);
    }
  }
  compiledCache.set(r, c);
  return c;
}

/** The default: echo the last user message's text. */
function echoReply(body: any): Extract<StandinReply, { kind: 'message' }> {
  const messages: unknown[] = Array.isArray(body?.messages) ? body.messages : [];
  let text = '';
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i] as { role?: unknown; content?: unknown } | undefined;
    if (m?.role !== 'user') continue;
    if (typeof m.content === 'string') text = m.content;
    else if (Array.isArray(m.content)) {
      text = m.content
        .filter((b: any) => b && b.type === 'text' && typeof b.text === 'string')
        .map((b: any) => b.text as string)
        .join('');
    }
    break;
  }
  return { kind: 'message', content: [{ type: 'text', text }] };
}

// ---------------------------------------------------------------------------------------------
// The server.

const JSON_CONTENT_TYPE = 'application/json';
const SSE_CONTENT_TYPE = 'text/event-stream; charset=utf-8';

function sendJson(res: http.ServerResponse, status: number, body: string, requestId: string, extra?: Record<string, string>): void {
  const headers: http.OutgoingHttpHeaders = {
    'content-type': JSON_CONTENT_TYPE,
    'content-length': Buffer.byteLength(body),
    'request-id': requestId,
  };
  if (extra) for (const [k, v] of Object.entries(extra)) headers[k.toLowerCase()] = v;
  res.writeHead(status, headers);
  res.end(body);
}

function sendError(
  res: http.ServerResponse,
  status: number,
  type: string,
  message: string,
  requestId: string,
  extra?: Record<string, string>,
): void {
  sendJson(res, status, errorBody(type, message, requestId), requestId, extra);
}

interface RequestState {
  completed: boolean;
}

export async function startAnthropicStandin(opts: StandinOptions = {}): Promise<AnthropicStandin> {
  const record = opts.record ?? true;
  const requests: RecordedRequest[] = [];
  const states = new WeakMap<RecordedRequest, RequestState>();
  const listeners = new Set<() => void>();
  const timers = new Set<NodeJS.Timeout>();
  let current: StandinReply | ((req: RecordedRequest) => StandinReply) | undefined;
  let currentCompiled: Compiled | undefined;

  const notify = (): void => {
    for (const l of [...listeners]) l();
  };

  const standin: AnthropicStandin = {
    url: '',
    requests,
    deltaSpacingMs: opts.deltaSpacingMs ?? 0,
    expectedApiKey: opts.expectedApiKey,
    reply(r) {
      current = r;
      currentCompiled = r === undefined || typeof r === 'function' ? undefined : compile(r);
    },
    waitForAbort(i, timeoutMs = 5000) {
      return new Promise<void>((resolve, reject) => {
        let timer: NodeJS.Timeout | undefined;
        const finish = (err?: Error): void => {
          listeners.delete(check);
          if (timer) clearTimeout(timer);
          if (err) reject(err);
          else resolve();
        };
        function check(): void {
          const r = requests[i];
          if (!r) return;
          if (r.aborted) finish();
          else if (states.get(r)?.completed) finish(new Error(`stand-in: request ${i} completed; its client did not go away`));
        }
        listeners.add(check);
        timer = setTimeout(() => {
          finish(new Error(`stand-in: request ${i} was not aborted within ${timeoutMs} ms (${requests.length} requests seen)`));
        }, timeoutMs);
        check();
      });
    },
    close() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      return new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      });
    },
  };

  function writeStream(res: http.ServerResponse, requestId: string, id: string, model: string, r: Rendered): void {
    res.writeHead(200, { 'content-type': SSE_CONTENT_TYPE, 'cache-control': 'no-cache', 'request-id': requestId });
    const start = `event: message_start\ndata: {"type":"message_start","message":{"id":"${id}","type":"message","role":"assistant","model":${JSON.stringify(model)},${r.startTail}}\n\n`;
    const errorFrame = r.error
      ? `event: error\ndata: ${errorBody(r.error.type, r.error.message, requestId)}\n\n`
      : '';
    const spacing = standin.deltaSpacingMs;
    if (!(spacing > 0) || r.groups.length === 1) {
      res.end(start + r.joined + errorFrame);
      return;
    }
    let i = 1;
    const step = (): void => {
      if (res.destroyed) return;
      const last = i === r.groups.length - 1;
      const chunk = r.groups[i++] ?? '';
      if (last) {
        res.end(chunk + errorFrame);
        return;
      }
      const ok = res.write(chunk);
      if (ok) schedule();
      else res.once('drain', schedule);
    };
    const schedule = (): void => {
      const t = setTimeout(() => {
        timers.delete(t);
        step();
      }, spacing);
      timers.add(t);
    };
    if (res.write(start + (r.groups[0] ?? ''))) schedule();
    else res.once('drain', schedule);
  }

  function handleMessages(req: RecordedRequest, res: http.ServerResponse, requestId: string): void {
    const body = req.body;
    if (body === undefined || body === null || typeof body !== 'object' || Array.isArray(body)) {
      sendError(res, 400, 'invalid_request_error', 'There was an error parsing the body of your request: expected a JSON object', requestId);
      return;
    }
    for (const field of ['model', 'max_tokens', 'messages'] as const) {
      if (body[field] === undefined) {
        sendError(res, 400, 'invalid_request_error', `${field}: Field required`, requestId);
        return;
      }
    }
    if (!Array.isArray(body.messages)) {
      sendError(res, 400, 'invalid_request_error', 'messages: Input should be a valid list', requestId);
      return;
    }

    let compiled: Compiled;
    try {
      compiled =
        currentCompiled ?? (typeof current === 'function' ? compile(current(req)) : compile(echoReply(body)));
    } catch (e) {
      // A broken reply is a test bug: make it loud on both sides.
      const msg = e instanceof Error ? e.message : String(e);
      console.error(`anthropic stand-in: ${msg}`);
      sendError(res, 500, 'api_error', `stand-in reply failed: ${msg}`, requestId);
      return;
    }

    switch (compiled.kind) {
      case 'hang':
        return;
      case 'error': {
        const r = compiled.source;
        sendError(res, r.status, r.errorType, r.message, requestId, r.headers);
        return;
      }
      case 'message': {
        const src = compiled.source;
        const rendered =
          compiled.fixed ??
          render({
            content: src.content,
            stopReason: src.stopReason,
            usage: { input_tokens: estimateInputTokens(body), output_tokens: estimateOutputTokens(src.content) },
          });
        const model = compiled.model ?? (typeof body.model === 'string' ? body.model : DEFAULT_MODEL);
        const id = newId('msg');
        const stream = compiled.stream ?? body.stream === true;
        if (stream) writeStream(res, requestId, id, model, rendered);
        else {
          const json = `{"id":"${id}","type":"message","role":"assistant","model":${JSON.stringify(model)},${rendered.jsonTail}`;
          sendJson(res, 200, json, requestId);
        }
        return;
      }
      case 'stream-error': {
        // Rendered per request: not a fast path, and usage follows the request.
        const src = compiled.source;
        const rendered: Rendered = {
          ...render(
            { content: src.content, usage: { input_tokens: estimateInputTokens(body), output_tokens: estimateOutputTokens(src.content) } },
            src.afterDeltas,
          ),
          error: { type: src.errorType, message: src.message },
        };
        const model = typeof body.model === 'string' ? body.model : DEFAULT_MODEL;
        writeStream(res, requestId, newId('msg'), model, rendered);
        return;
      }
    }
  }

  function handleCountTokens(req: RecordedRequest, res: http.ServerResponse, requestId: string): void {
    const body = req.body;
    if (!body || typeof body !== 'object' || body.model === undefined || !Array.isArray(body.messages)) {
      sendError(res, 400, 'invalid_request_error', body && body.model === undefined ? 'model: Field required' : 'messages: Field required', requestId);
      return;
    }
    const count: MessageTokensCount = { input_tokens: estimateInputTokens(body) };
    sendJson(res, 200, JSON.stringify(count), requestId);
  }

  function handleModels(req: RecordedRequest, res: http.ServerResponse, requestId: string): void {
    const q = new URLSearchParams(req.url.slice(req.path.length + 1));
    const limitText = q.get('limit');
    const limit = limitText === null ? 20 : Number(limitText);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
      sendError(res, 400, 'invalid_request_error', 'limit: Input should be between 1 and 1000', requestId);
      return;
    }
    const afterId = q.get('after_id');
    const beforeId = q.get('before_id');
    const ids = STANDIN_MODELS.map((m) => m.id);
    let from = 0;
    let to = STANDIN_MODELS.length;
    let hasMore: boolean;
    if (beforeId !== null) {
      to = ids.indexOf(beforeId);
      if (to < 0) return sendError(res, 400, 'invalid_request_error', `before_id: unknown id ${beforeId}`, requestId);
      from = Math.max(0, to - limit);
      hasMore = from > 0;
    } else {
      if (afterId !== null) {
        const at = ids.indexOf(afterId);
        if (at < 0) return sendError(res, 400, 'invalid_request_error', `after_id: unknown id ${afterId}`, requestId);
        from = at + 1;
      }
      to = Math.min(STANDIN_MODELS.length, from + limit);
      hasMore = to < STANDIN_MODELS.length;
    }
    const data = STANDIN_MODELS.slice(from, to);
    const page = { data, has_more: hasMore, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null };
    sendJson(res, 200, JSON.stringify(page), requestId);
  }

  function route(req: RecordedRequest, res: http.ServerResponse): void {
    const requestId = newId('req');
    const expected = standin.expectedApiKey;
    if (expected !== undefined) {
      // The official SDK (1.13) sends its apiKey as `Authorization: Bearer`; curl users and older
      // clients send `x-api-key`. Either form must carry the expected key.
      const key = req.headers['x-api-key'];
      const auth = req.headers.authorization;
      if (key === undefined && auth === undefined) {
        sendError(res, 401, 'authentication_error', 'x-api-key header is required', requestId);
        return;
      }
      if (key !== expected && auth !== `Bearer ${expected}`) {
        sendError(res, 401, 'authentication_error', 'invalid x-api-key', requestId);
        return;
      }
    }
    const p = req.path;
    if (p === '/v1/messages' || p === '/v1/messages/count_tokens') {
      if (req.method !== 'POST') {
        sendError(res, 405, 'invalid_request_error', `Method ${req.method} not allowed`, requestId, { allow: 'POST' });
        return;
      }
      if (req.headers['anthropic-version'] === undefined) {
        sendError(res, 400, 'invalid_request_error', 'anthropic-version: header is required', requestId);
        return;
      }
      if (p === '/v1/messages') handleMessages(req, res, requestId);
      else handleCountTokens(req, res, requestId);
      return;
    }
    if (p === '/v1/models' && req.method === 'GET') return handleModels(req, res, requestId);
    if (p.startsWith('/v1/models/') && req.method === 'GET') {
      const id = decodeURIComponent(p.slice('/v1/models/'.length));
      const m = STANDIN_MODELS.find((x) => x.id === id);
      if (m) sendJson(res, 200, JSON.stringify(m), requestId);
      else sendError(res, 404, 'not_found_error', `model: ${id}`, requestId);
      return;
    }
    sendError(res, 404, 'not_found_error', 'Not Found', requestId);
  }

  const server = http.createServer((req, res) => {
    const receivedAt = Date.now();
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const rec: RecordedRequest = {
      method: req.method ?? 'GET',
      path: q < 0 ? url : url.slice(0, q),
      url,
      headers: req.headers,
      body: undefined,
      rawBody: '',
      aborted: false,
      receivedAt,
    };
    const state: RequestState = { completed: false };
    states.set(rec, state);
    let pushed = false;
    const push = (): void => {
      if (pushed || !record) return;
      pushed = true;
      requests.push(rec);
      notify();
    };

    res.on('finish', () => {
      state.completed = true;
      notify();
    });
    res.on('close', () => {
      if (res.writableFinished) return;
      rec.aborted = true;
      push(); // a client that left during the upload is still recorded
      notify();
    });

    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => {
      /* the client went away; res 'close' records it */
    });
    req.on('end', () => {
      if (chunks.length === 1) rec.rawBody = (chunks[0] as Buffer).toString('utf8');
      else if (chunks.length > 1) rec.rawBody = Buffer.concat(chunks).toString('utf8');
      if (rec.rawBody.length > 0) {
        try {
          rec.body = JSON.parse(rec.rawBody);
        } catch {
          rec.body = undefined;
        }
      }
      push();
      try {
        route(rec, res);
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        console.error(`anthropic stand-in: ${msg}`);
        if (!res.headersSent) sendError(res, 500, 'api_error', `stand-in failure: ${msg}`, newId('req'));
        else res.destroy();
      }
    });
  });
  // Longer than undici's 4 s client keep-alive, so a reused connection is never closed under it.
  server.keepAliveTimeout = 65_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  standin.url = `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;
  return standin;
}
