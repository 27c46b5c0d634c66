import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { Pool, errors as undiciErrors } from 'undici';
import type { Logger } from 'pino';
import type { AttestConfig, MaskingAction, RouteName } from '../../common/src/config';
import { AuthError, type Principal, type TokenVerifier } from '../../common/src/identity';
import { errorBody, errorEvent, gatewayError, type GatewayError } from './anthropic-errors';
import { maskJson, type Direction, type LocatedHit } from './mask-json';
import { createGatewayMetrics, type GatewayMetrics } from './metrics';
import { decideModelCall, decideRoute, grantFor, modelMatches, type CallerGrant } from './policy';
import { SseMasker } from './sse-masker';

/**
 * The Claude API gateway: authenticate the caller (OIDC JWT), apply the group policy, mask card
 * numbers in the request, call the upstream with the gateway's own credential, mask the response
 * (streamed or not), answer exactly like the Anthropic API would.
 *
 *   agent ──▶ auth ──▶ policy ──▶ mask request ──▶ upstream (x-api-key injected)
 *         ◀── mask response (SSE: per content block, streaming) ◀──┘
 */

export interface GatewayDeps {
  config: AttestConfig;
  verifier: TokenVerifier;
  /** The real Anthropic credential. It is sent upstream only and never logged or echoed. */
  upstreamApiKey: string;
  logger: Logger;
  metrics?: GatewayMetrics;
  /** Keyed hash of a full PAN, kept in evidence instead of the number (PCI DSS 3.5.1.1). */
  hashPan?: (digits: string) => string;
  now?: () => number;
}

declare module 'fastify' {
  interface FastifyRequest {
    attest: ExchangeContext;
    rawBody?: string;
  }
}

/** What the gateway learns about one exchange while serving it. */
interface ExchangeContext {
  id: string;
  startedAt: number;
  route: RouteName | 'other';
  principal?: Principal;
  grant?: CallerGrant;
  model?: string;
  stream: boolean;
  hits: { request: number; response: number };
  upstreamRequestId?: string;
  status?: number;
  outcome?: string;
}

/** Request headers the upstream may see. The caller's credentials are never among them. */
const FORWARD_REQUEST_HEADERS = /^(anthropic-|x-stainless-)/;
const FORWARD_EXACT = new Set(['content-type', 'accept', 'user-agent']);
/** Upstream response headers the caller sees. */
const RETURN_RESPONSE_HEADERS = /^(anthropic-|x-should-retry$|retry-after$|request-id$)/;

const MAX_UPSTREAM_BODY_BYTES = 64 * 1024 * 1024;

export async function buildGateway(deps: GatewayDeps): Promise<FastifyInstance> {
  const { config, verifier, logger } = deps;
  const now = deps.now ?? (() => performance.now());
  const metrics = deps.metrics ?? createGatewayMetrics();
  const format = config.masking.format;
  const upstreamUrl = new URL(config.upstream.anthropic.baseUrl);
  const upstreamBasePath = upstreamUrl.pathname.replace(/\/$/, '');
  const upstream = new Pool(upstreamUrl.origin, {
    connections: config.upstream.anthropic.connections,
    headersTimeout: config.limits.upstreamHeadersTimeoutMs,
    // Streams may pause between deltas (long thinking); the overall timeout below bounds the whole call.
    bodyTimeout: config.limits.upstreamTimeoutMs,
    keepAliveTimeout: 30_000,
  });
  let closing = false;

  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    disableRequestLogging: true,
    bodyLimit: config.limits.maxBodyBytes,
    trustProxy: config.server.trustProxy,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    serverFactory: (handler) =>
      createServer(
        { maxHeaderSize: config.limits.maxHeaderBytes, requestTimeout: 120_000, keepAliveTimeout: 65_000 },
        handler,
      ),
  });

  app.decorateRequest('attest', null as unknown as ExchangeContext);
  app.decorateRequest('rawBody', undefined);

  // JSON.parse directly: bodies are re-serialised before use, never merged into objects, so
  // prototype-poisoning keys are inert data, and the plain parser is the fastest one.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    try {
      const parsed: unknown = JSON.parse(body as string);
      // Kept to forward the caller's exact bytes when masking changed nothing.
      req.rawBody = body as string;
      done(null, parsed);
    } catch {
      done(Object.assign(new Error('the request body is not valid JSON'), { statusCode: 400, code: 'invalid_json' }), undefined);
    }
  });

  const send = (request: FastifyRequest, reply: FastifyReply, err: GatewayError) => {
    const ctx = request.attest;
    if (ctx) {
      ctx.status = err.status;
      ctx.outcome = err.code;
    }
    return reply
      .code(err.status)
      .header('content-type', 'application/json')
      .header('x-attest-request-id', ctx?.id ?? '')
      .header('x-attest-error', err.code)
      .send(errorBody(err, ctx?.id ?? 'unknown'));
  };

  app.setErrorHandler((error: Error & { statusCode?: number; code?: string }, request, reply) => {
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return send(request, reply, gatewayError(413, 'request_too_large', 'body_too_large', `request body is larger than the ${config.limits.maxBodyBytes}-byte limit`));
    }
    if (error.code === 'invalid_json' || error.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
      return send(request, reply, gatewayError(400, 'invalid_request_error', 'invalid_json', 'the request body is not valid JSON'));
    }
    if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      return send(request, reply, gatewayError(415, 'invalid_request_error', 'unsupported_media_type', 'send the body as application/json'));
    }
    if (typeof error.statusCode === 'number' && error.statusCode < 500) {
      return send(request, reply, gatewayError(error.statusCode, 'invalid_request_error', 'bad_request', 'the request could not be read'));
    }
    request.log.error({ err: { code: error.code, name: error.name }, requestId: request.attest?.id }, 'unexpected gateway error');
    return send(request, reply, gatewayError(500, 'api_error', 'internal_error', 'the gateway failed to process the request'));
  });

  app.setNotFoundHandler((request, reply) =>
    send(request, reply, gatewayError(404, 'not_found_error', 'route_not_found', `${request.method} ${request.url.split('?')[0]} is not served by this gateway`)),
  );

  app.addHook('onRequest', async (request, reply) => {
    request.attest = { id: `req_attest_${randomUUID().replaceAll('-', '')}`, startedAt: now(), route: 'other', stream: false, hits: { request: 0, response: 0 } };
    metrics.inFlight.inc();
    // 'close' fires once for every response, finished, hijacked or aborted by the caller alike.
    reply.raw.once('close', () => {
      metrics.inFlight.dec();
      logExchange(request, reply.raw.statusCode);
    });
  });

  const logExchange = (request: FastifyRequest, statusCode: number) => {
    const ctx = request.attest;
    if (!ctx || ctx.route === 'other') return;
    const durationMs = now() - ctx.startedAt;
    metrics.requests.inc({ route: ctx.route, status: String(ctx.status ?? statusCode) });
    metrics.latency.observe({ route: ctx.route, stream: String(ctx.stream) }, durationMs / 1000);
    if (!logger.isLevelEnabled('info')) return;
    // Content never goes to the process log: only who, what, outcome and counts.
    logger.info(
      {
        requestId: ctx.id,
        route: ctx.route,
        status: ctx.status ?? statusCode,
        outcome: ctx.outcome ?? 'ok',
        subject: ctx.principal?.subject,
        issuer: ctx.principal?.issuer,
        model: ctx.model,
        stream: ctx.stream,
        maskedRequest: ctx.hits.request,
        maskedResponse: ctx.hits.response,
        upstreamRequestId: ctx.upstreamRequestId,
        durationMs: Math.round(durationMs * 1000) / 1000,
      },
      'exchange',
    );
  };

  // ---- operations endpoints ----
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    if (closing) return reply.code(503).send({ status: 'shutting_down' });
    return { status: 'ready' };
  });
  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  // ---- authentication and route policy for the Claude routes ----
  const authenticate = async (request: FastifyRequest, reply: FastifyReply, route: RouteName): Promise<boolean> => {
    const ctx = request.attest;
    ctx.route = route;
    let principal: Principal;
    try {
      principal = await verifier.verify(extractToken(request));
    } catch (err) {
      const reason = err instanceof AuthError ? err.code : 'token_malformed';
      metrics.authFailures.inc({ reason });
      if (err instanceof AuthError && err.retriable) {
        send(request, reply, gatewayError(503, 'api_error', `auth_${reason}`, 'the identity provider could not be reached to check your token; retry shortly'));
      } else {
        const message = err instanceof AuthError ? err.message : 'invalid credentials';
        send(request, reply, gatewayError(401, 'authentication_error', `auth_${reason}`, `${message}. Present an OIDC access token from your identity provider as x-api-key or Authorization: Bearer`));
      }
      return false;
    }
    ctx.principal = principal;
    ctx.grant = grantFor(config, principal.groups);
    const decision = decideRoute(ctx.grant, route);
    if (!decision.allow) {
      metrics.policyDenials.inc({ rule: decision.rule });
      send(request, reply, gatewayError(403, 'permission_error', `policy_${decision.rule}`, decision.reason));
      return false;
    }
    return true;
  };

  const maskBody = (request: FastifyRequest, body: unknown, direction: Direction, action: MaskingAction): LocatedHit[] => {
    const hits = maskJson(body, { format, rewrite: action === 'mask', ...(deps.hashPan ? { hashPan: deps.hashPan } : {}) });
    if (hits.length > 0) {
      request.attest.hits[direction] += hits.length;
      metrics.maskingHits.inc({ rule: 'pan', direction, action }, hits.length);
    }
    return hits;
  };

  const blockedByRule = (direction: Direction, hits: LocatedHit[]): GatewayError => {
    const where = [...new Set(hits.map((h) => h.location))].slice(0, 5).join(', ');
    return gatewayError(
      403,
      'permission_error',
      `${direction}_blocked`,
      `${direction === 'request' ? 'request' : 'response'} blocked by Attest policy: rule "pan" (card number detected at ${where}). Remove card data ${direction === 'request' ? 'from the request' : 'from what you ask the model to produce'}, or ask your administrator about the masking policy`,
    );
  };

  /** Model routes: auth, route policy, model policy, request masking. Returns the body text to forward. */
  const admitModelCall = async (request: FastifyRequest, reply: FastifyReply, route: RouteName): Promise<string | undefined> => {
    if (!(await authenticate(request, reply, route))) return undefined;
    const ctx = request.attest;
    const body = request.body;
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      send(request, reply, gatewayError(400, 'invalid_request_error', 'invalid_body', 'the request body must be a JSON object'));
      return undefined;
    }
    const b = body as Record<string, unknown>;
    if (typeof b.model !== 'string' || b.model.length === 0) {
      send(request, reply, gatewayError(400, 'invalid_request_error', 'model_missing', 'model: field required'));
      return undefined;
    }
    ctx.model = b.model;
    ctx.stream = route === 'messages' && b.stream === true;
    const decision = decideModelCall(ctx.grant!, {
      model: b.model,
      stream: ctx.stream,
      ...(typeof b.max_tokens === 'number' ? { maxTokens: b.max_tokens } : {}),
    });
    if (!decision.allow) {
      metrics.policyDenials.inc({ rule: decision.rule });
      send(request, reply, gatewayError(403, 'permission_error', `policy_${decision.rule}`, decision.reason));
      return undefined;
    }
    const action = ctx.grant!.masking.request;
    const hits = maskBody(request, b, 'request', action);
    if (hits.length > 0 && action === 'block') {
      send(request, reply, blockedByRule('request', hits));
      return undefined;
    }
    return hits.length > 0 && action === 'mask' ? JSON.stringify(b) : (request.rawBody ?? JSON.stringify(b));
  };

  const upstreamHeaders = (request: FastifyRequest, hasBody: boolean): Record<string, string> => {
    const out: Record<string, string> = {};
    for (const [name, value] of Object.entries(request.headers)) {
      if (typeof value !== 'string') continue;
      if (FORWARD_EXACT.has(name) || FORWARD_REQUEST_HEADERS.test(name)) out[name] = value;
    }
    if (hasBody) out['content-type'] = 'application/json';
    out['x-api-key'] = deps.upstreamApiKey;
    return out;
  };

  const responseHeaders = (upstreamHeaders: Record<string, string | string[] | undefined>, ctx: ExchangeContext) => {
    const out: Record<string, string> = { 'x-attest-request-id': ctx.id };
    for (const [name, value] of Object.entries(upstreamHeaders)) {
      if (typeof value === 'string' && RETURN_RESPONSE_HEADERS.test(name)) out[name] = value;
    }
    const rid = upstreamHeaders['request-id'];
    if (typeof rid === 'string') ctx.upstreamRequestId = rid;
    return out;
  };

  /** Removes the upstream credential from anything the upstream sends back (defence in depth). */
  const scrubKey = (text: string) => (text.includes(deps.upstreamApiKey) ? text.replaceAll(deps.upstreamApiKey, '[redacted]') : text);

  const callUpstream = async (request: FastifyRequest, reply: FastifyReply, method: 'GET' | 'POST', path: string, body?: string) => {
    const ctx = request.attest;
    const abort = new AbortController();
    // A caller that goes away cancels the upstream call (and the tokens it would spend).
    const onClose = () => {
      if (!reply.raw.writableFinished) abort.abort(new Error('client disconnected'));
    };
    reply.raw.on('close', onClose);
    // One controller for both causes: AbortSignal.any/timeout cost more per request than a timer.
    const timer = setTimeout(() => abort.abort(Object.assign(new Error('upstream timeout'), { name: 'TimeoutError' })), config.limits.upstreamTimeoutMs);
    reply.raw.once('close', () => clearTimeout(timer));
    const signal = abort.signal;
    const search = request.url.includes('?') ? request.url.slice(request.url.indexOf('?')) : '';
    let res: Awaited<ReturnType<Pool['request']>>;
    try {
      res = await upstream.request({
        method,
        path: `${upstreamBasePath}${path}${search}`,
        headers: upstreamHeaders(request, body !== undefined),
        ...(body !== undefined ? { body } : {}),
        signal,
      });
    } catch (err) {
      reply.raw.off('close', onClose);
      if (abort.signal.aborted && reply.raw.destroyed) {
        ctx.outcome = 'client_aborted';
        return reply.hijack();
      }
      return send(request, reply, upstreamFailure(abort.signal.aborted ? abort.signal.reason : err, metrics));
    }

    const headers = responseHeaders(res.headers, ctx);
    const contentType = String(res.headers['content-type'] ?? '');
    if (ctx.stream && res.statusCode === 200 && contentType.startsWith('text/event-stream')) {
      return streamResponse(request, reply, res, headers, abort, onClose);
    }

    // Whole-body responses: JSON messages, errors, count_tokens, models.
    let text: string;
    try {
      text = await readLimited(res.body, MAX_UPSTREAM_BODY_BYTES);
    } catch (err) {
      reply.raw.off('close', onClose);
      if (abort.signal.aborted && reply.raw.destroyed) {
        ctx.outcome = 'client_aborted';
        return reply.hijack();
      }
      return send(request, reply, upstreamFailure(abort.signal.aborted ? abort.signal.reason : err, metrics));
    }
    reply.raw.off('close', onClose);
    ctx.status = res.statusCode;
    if (res.statusCode >= 400) ctx.outcome = 'upstream_error';
    text = scrubKey(text);
    if (contentType.includes('json')) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      if (parsed !== undefined) {
        if (ctx.route === 'models' && res.statusCode === 200) filterModels(parsed, ctx.grant!);
        const action = ctx.grant!.masking.response;
        const hits = maskBody(request, parsed, 'response', action);
        if (hits.length > 0 && action === 'block') return send(request, reply, blockedByRule('response', hits));
        if (hits.length > 0 || ctx.route === 'models') text = JSON.stringify(parsed);
      }
    }
    return reply.code(res.statusCode).headers(headers).header('content-type', contentType || 'application/json').send(text);
  };

  const streamResponse = async (
    request: FastifyRequest,
    reply: FastifyReply,
    res: Awaited<ReturnType<Pool['request']>>,
    headers: Record<string, string>,
    abort: AbortController,
    onClose: () => void,
  ) => {
    const ctx = request.attest;
    const action = ctx.grant!.masking.response;
    let blocked: LocatedHit[] | undefined;
    const masker = new SseMasker({
      format,
      rewrite: action === 'mask',
      ...(deps.hashPan ? { hashPan: deps.hashPan } : {}),
      onHit: (hit) => {
        ctx.hits.response++;
        metrics.maskingHits.inc({ rule: 'pan', direction: 'response', action });
        if (action === 'block') (blocked ??= []).push(hit);
      },
    });
    reply.hijack();
    const out = reply.raw;
    out.writeHead(200, {
      ...headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    ctx.status = 200;
    let firstByte = true;
    const write = async (chunk: string) => {
      if (!chunk) return;
      if (firstByte) {
        firstByte = false;
        metrics.ttfb.observe({ route: ctx.route, stream: 'true' }, (now() - ctx.startedAt) / 1000);
      }
      if (!out.write(chunk)) await waitDrain(out);
    };
    try {
      for await (const chunk of res.body) {
        const text = masker.push(chunk as Buffer);
        if (blocked) {
          await write(errorEvent(blockedByRule('response', blocked)));
          ctx.outcome = 'response_blocked';
          abort.abort(new Error('response blocked'));
          break;
        }
        await write(text);
      }
      if (!blocked) await write(masker.end());
    } catch (err) {
      if (abort.signal.aborted && !blocked) {
        ctx.outcome = 'client_aborted';
      } else if (!blocked) {
        // The held tail is dropped, not flushed: it may be the start of a card number.
        ctx.outcome = 'upstream_stream_failed';
        metrics.upstreamErrors.inc({ kind: 'stream_reset' });
        request.log.warn({ requestId: ctx.id, err: { name: (err as Error).name, code: (err as { code?: string }).code } }, 'upstream stream failed');
        if (!out.destroyed) out.write(errorEvent({ type: 'api_error', code: 'upstream_stream_failed', message: 'the upstream connection failed mid-stream' }));
      }
    } finally {
      out.off('close', onClose);
      if (!out.destroyed) out.end();
      if (!res.body.destroyed) res.body.destroy();
    }
  };

  app.post('/v1/messages', async (request, reply) => {
    const body = await admitModelCall(request, reply, 'messages');
    if (!body) return reply;
    return callUpstream(request, reply, 'POST', '/v1/messages', body);
  });

  app.post('/v1/messages/count_tokens', async (request, reply) => {
    const body = await admitModelCall(request, reply, 'count_tokens');
    if (!body) return reply;
    return callUpstream(request, reply, 'POST', '/v1/messages/count_tokens', body);
  });

  app.get('/v1/models', async (request, reply) => {
    if (!(await authenticate(request, reply, 'models'))) return reply;
    return callUpstream(request, reply, 'GET', '/v1/models');
  });

  app.get<{ Params: { id: string } }>('/v1/models/:id', async (request, reply) => {
    if (!(await authenticate(request, reply, 'models'))) return reply;
    const id = request.params.id;
    if (!request.attest.grant!.entries.some(([, g]) => g.models.some((p) => modelMatches(p, id)))) {
      return send(request, reply, gatewayError(404, 'not_found_error', 'model_not_allowed', `model ${id} is not available to your groups`));
    }
    return callUpstream(request, reply, 'GET', `/v1/models/${encodeURIComponent(id)}`);
  });

  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onClose', async () => {
    await upstream.close();
  });

  return app;
}

function extractToken(request: FastifyRequest): string | undefined {
  const auth = request.headers.authorization;
  if (typeof auth === 'string' && auth.length > 0) {
    const m = /^Bearer\s+(.+)$/i.exec(auth);
    return m ? m[1]!.trim() : auth;
  }
  const key = request.headers['x-api-key'];
  return typeof key === 'string' && key.length > 0 ? key : undefined;
}

function upstreamFailure(err: unknown, metrics: GatewayMetrics): GatewayError {
  if (err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError || (err as Error)?.name === 'TimeoutError') {
    metrics.upstreamErrors.inc({ kind: 'timeout' });
    return gatewayError(504, 'api_error', 'upstream_timeout', 'the upstream did not answer in time');
  }
  metrics.upstreamErrors.inc({ kind: 'connect' });
  return gatewayError(502, 'api_error', 'upstream_unreachable', 'the upstream API could not be reached');
}

async function readLimited(body: AsyncIterable<Buffer | Uint8Array>, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > limit) throw new Error(`upstream response larger than ${limit} bytes`);
    chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  }
  return Buffer.concat(chunks).toString('utf8');
}

function waitDrain(out: NodeJS.WritableStream & { destroyed?: boolean }): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      out.off('drain', done);
      out.off('close', done);
      resolve();
    };
    out.on('drain', done);
    out.on('close', done);
  });
}

/** The models list shows a caller only the models its groups may use. */
function filterModels(body: unknown, grant: CallerGrant): void {
  if (!body || typeof body !== 'object' || !Array.isArray((body as { data?: unknown }).data)) return;
  const b = body as { data: Array<{ id?: unknown }>; first_id?: unknown; last_id?: unknown };
  b.data = b.data.filter((m) => typeof m.id === 'string' && grant.entries.some(([, g]) => g.models.some((p) => modelMatches(p, m.id as string))));
  b.first_id = b.data[0]?.id ?? null;
  b.last_id = b.data[b.data.length - 1]?.id ?? null;
}
