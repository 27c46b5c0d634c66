import { createServer } from 'node:http';
import type { Socket } from 'node:net';
import { createHash, hash as oneShotHash, randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { Pool, errors as undiciErrors } from 'undici';
import type { Logger } from 'pino';
import type { AttestConfig, MaskingAction, RouteName } from '../../common/src/config';
import { AuthError, type Principal, type TokenVerifier } from '../../common/src/identity';
import { errorBody, errorEvent, gatewayError, type GatewayError } from './anthropic-errors';
import { maskPans } from '../../common/src/masking';
import { containsPan } from '../../common/src/events';
import { maskJson, type Direction, type LocatedHit } from './mask-json';
import { createGatewayMetrics, type GatewayMetrics } from './metrics';
import { decideModelCall, decideRoute, grantFor, modelMatches, type CallerGrant } from './policy';
import { SseMasker } from './sse-masker';
import type { ApprovalResolution, ControlState } from '../../common/src/control';
import { APPROVAL_ID_HEADER, MAX_EXCERPT_CHARS, approvalAnswer, toEvidence, type ApprovalEvidence } from '../../common/src/approvals';
import { actorFromPrincipal } from '../../common/src/evidence/actor';
import { ApprovalGate, promptTextOf, type OpenedApproval } from './approval-gate';
import { panSafe, sha256, type AdmittedFacts, type BlockStage, type ExchangeFacts, type GatewayRecorder, type Release, type ResponseFacts } from './evidence';

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
  /**
   * Records every exchange as signed events on the durable log. When present the gateway fails
   * closed: a request whose evidence cannot be appended is not forwarded (503).
   */
  recorder?: GatewayRecorder;
  /** Public keys that verify the evidence signatures, served at /.well-known/jwks.json. */
  jwks?: () => unknown;
  /**
   * What the control channel says (suspended identities, approval outcomes). When present, a
   * suspended identity is refused right after authentication, before any policy or upstream work.
   */
  control?: Pick<ControlState, 'suspension' | 'resolution' | 'waitFor'>;
  /**
   * Where this gateway's holds live (producer id and epoch): an approval granted for a hold of one
   * run can never release a request of another. Required for approvals (with `control`).
   */
  holder?: () => { gatewayId: string; instanceId: string };
  /** Key material for approval request digests of bodies that may hold raw card data. */
  digestKey?: Uint8Array;
  /**
   * Exchanges whose handlers are still running. Whoever closes the evidence after the server waits
   * on it (`settled`), so an exchange cut at the end of the shutdown grace still records its
   * completion. Default: a tracker of the gateway's own.
   */
  exchanges?: InFlightExchanges;
  now?: () => number;
}

/**
 * Handlers of model and model-list exchanges that have not finished yet. An exchange outlives its
 * connection: a caller that goes away (or a shutdown that cuts it) still gets its
 * gateway.response.completed recorded after the socket is gone, and the server's 'close' does not
 * wait for that.
 */
export class InFlightExchanges {
  readonly #running = new Set<Promise<unknown>>();

  get size(): number {
    return this.#running.size;
  }

  track<T>(handler: Promise<T>): Promise<T> {
    this.#running.add(handler);
    const done = () => this.#running.delete(handler);
    handler.then(done, done);
    return handler;
  }

  /** Resolves true once every exchange running now has finished, false if `timeoutMs` passes first. */
  async settled(timeoutMs: number): Promise<boolean> {
    if (this.#running.size === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(resolve, timeoutMs, false);
    });
    try {
      return await Promise.race([Promise.allSettled([...this.#running]).then(() => true as const), timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }
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
  sessionId: string;
  principal?: Principal;
  grant?: CallerGrant;
  model?: string;
  stream: boolean;
  hits: { request: number; response: number };
  upstreamRequestId?: string;
  status?: number;
  outcome?: string;
  /** A held streaming request: the SSE response is already open (keep-alive comments sent). */
  preopened?: boolean;
}

/** Request headers the upstream may see. The caller's credentials are never among them. */
const FORWARD_REQUEST_HEADERS = /^(anthropic-|x-stainless-)/;
const FORWARD_EXACT = new Set(['content-type', 'accept', 'user-agent']);
/** Upstream response headers the caller sees. */
const RETURN_RESPONSE_HEADERS = /^(anthropic-|x-should-retry$|retry-after$|request-id$)/;

const MAX_UPSTREAM_BODY_BYTES = 64 * 1024 * 1024;
/**
 * How long closing waits for exchanges still recording after their connection is gone (a cut
 * stream's completion is one durable append away); a handler stuck longer is not waited for.
 */
export const EXCHANGE_SETTLE_MS = 10_000;
/** How long past an approval's expiry a held request still waits for the processor's word. */
const HOLD_GRACE_MS = 2000;

/** Shortest upstream credential the gateway scrubs from responses (Anthropic keys are ~100 characters). */
export const MIN_SCRUBBED_KEY_CHARS = 16;

export async function buildGateway(deps: GatewayDeps): Promise<FastifyInstance> {
  const { config, verifier, logger } = deps;
  const now = deps.now ?? (() => performance.now());
  const metrics = deps.metrics ?? createGatewayMetrics();
  const exchanges = deps.exchanges ?? new InFlightExchanges();
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

  /**
   * Open connections, and how many requests each is serving. At close, fastify ('idle') ends only
   * keep-alive connections between requests; a connection a client opened ahead of time (an SDK's
   * spare) that has not sent a request yet would hold server.close() until headersTimeout (60 s).
   * Such connections are ended at preClose too; connections serving a request get the grace.
   */
  const sockets = new Set<Socket>();
  const serving = new WeakMap<Socket, number>();

  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    // No child logger per request (a pino child costs µs on every exchange): our log lines carry
    // the request id themselves.
    childLoggerFactory: (parent) => parent,
    bodyLimit: config.limits.maxBodyBytes,
    trustProxy: config.server.trustProxy,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    serverFactory: (handler) => {
      const server = createServer({ maxHeaderSize: config.limits.maxHeaderBytes, requestTimeout: 120_000, keepAliveTimeout: 65_000 }, handler);
      server.on('connection', (socket: Socket) => {
        sockets.add(socket);
        socket.once('close', () => sockets.delete(socket));
      });
      return server;
    },
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

  const send = (request: FastifyRequest, reply: FastifyReply, err: GatewayError, extraHeaders: Record<string, string> = {}) => {
    const ctx = request.attest;
    if (ctx) {
      ctx.status = err.status;
      ctx.outcome = err.code;
    }
    if (ctx?.preopened) {
      // The SSE response of a held request has started: the error goes as an SSE error event.
      if (!reply.raw.destroyed) reply.raw.end(errorEvent(err));
      return reply;
    }
    // While shutting down, a response must not leave a keep-alive socket that server.close() then
    // waits for (keepAliveTimeout): held requests are answered after close() has begun.
    if (closing) reply.header('connection', 'close');
    return reply
      .headers(extraHeaders)
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
    request.attest = { id: `req_attest_${randomUUID().replaceAll('-', '')}`, startedAt: now(), route: 'other', sessionId: '', stream: false, hits: { request: 0, response: 0 } };
    metrics.inFlight.inc();
    const socket = request.raw.socket;
    serving.set(socket, (serving.get(socket) ?? 0) + 1);
    // 'close' fires once for every response, finished, hijacked or aborted by the caller alike.
    reply.raw.once('close', () => {
      serving.set(socket, (serving.get(socket) ?? 1) - 1);
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
  if (deps.jwks) {
    const jwks = deps.jwks;
    app.get('/.well-known/jwks.json', async (_request, reply) => {
      reply.header('cache-control', 'public, max-age=300');
      return jwks();
    });
  }
  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  // ---- authentication and route policy for the Claude routes ----
  const authenticate = async (request: FastifyRequest, reply: FastifyReply, route: RouteName): Promise<boolean> => {
    const ctx = request.attest;
    ctx.route = route;
    let principal: Principal;
    const token = extractToken(request);
    ctx.sessionId = sessionIdFor(request, token);
    try {
      principal = await verifier.verify(token);
    } catch (err) {
      const reason = err instanceof AuthError ? err.code : 'token_malformed';
      metrics.authFailures.inc({ reason });
      const status = err instanceof AuthError && err.retriable ? 503 : 401;
      await recordBestEffort(request, 'auth.failed', (rec) => rec.authFailed(facts(request), reason, status));
      if (err instanceof AuthError && err.retriable) {
        send(request, reply, gatewayError(503, 'api_error', `auth_${reason}`, 'the identity provider could not be reached to check your token; retry shortly'));
      } else {
        const message = err instanceof AuthError ? err.message : 'invalid credentials';
        send(request, reply, gatewayError(401, 'authentication_error', `auth_${reason}`, `${message}. Present an OIDC access token from your identity provider as x-api-key or Authorization: Bearer`));
      }
      return false;
    }
    ctx.principal = principal;
    const suspended = deps.control?.suspension(principal.issuer, principal.subject, Date.now() * 1000);
    if (suspended) {
      metrics.policyDenials.inc({ rule: 'identity_suspended' });
      const until = suspended.untilUs === null ? 'until an administrator restores it' : `until ${new Date(suspended.untilUs / 1000).toISOString()}`;
      await refuse(request, reply, gatewayError(403, 'permission_error', 'identity_suspended', `this identity is suspended by Attest (${suspended.reason}) ${until}. Ask your security team; the suspension is evidence event ${suspended.eventId}`), { stage: 'suspension', ruleId: 'control.suspension', direction: 'request', hits: [] });
      return false;
    }
    ctx.grant = grantFor(config, principal.groups);
    const decision = decideRoute(ctx.grant, route);
    if (!decision.allow) {
      metrics.policyDenials.inc({ rule: decision.rule });
      await refuse(request, reply, gatewayError(403, 'permission_error', `policy_${decision.rule}`, panSafe(decision.reason)), { stage: 'authorization', ruleId: `policy.${decision.rule}`, direction: 'request', hits: [] });
      return false;
    }
    return true;
  };

  const recorder = deps.recorder;
  const hashPan = recorder?.hashPan;

  const facts = (request: FastifyRequest): ExchangeFacts => {
    const ctx = request.attest;
    const url = request.url;
    const q = url.indexOf('?');
    const ua = request.headers['user-agent'];
    const f: ExchangeFacts = {
      requestId: ctx.id,
      sessionId: ctx.sessionId || `anonymous:${request.ip}`,
      route: ctx.route,
      method: request.method,
      path: q < 0 ? url : url.slice(0, q),
      sourceAddress: request.ip,
      userAgent: typeof ua === 'string' ? (ua.length > 512 ? ua.slice(0, 512) : ua) : null,
      stream: ctx.stream,
    };
    // Conditional assignments, not spreads: this runs twice per exchange.
    if (ctx.principal) f.principal = ctx.principal;
    if (ctx.model) f.model = ctx.model;
    if (ctx.upstreamRequestId) f.upstreamRequestId = ctx.upstreamRequestId;
    return f;
  };

  /** Records evidence that does not gate the exchange (refusals are refused either way); failures are logged. */
  const recordBestEffort = async (request: FastifyRequest, what: string, fn: (r: GatewayRecorder) => Promise<void>) => {
    if (!recorder) return;
    try {
      await fn(recorder);
    } catch (err) {
      request.log.error({ requestId: request.attest.id, code: (err as { code?: string }).code, what }, 'evidence not recorded');
    }
  };

  const evidenceUnavailable = gatewayError(503, 'api_error', 'evidence_unavailable', 'Attest could not durably record this exchange, so it was not completed; retry shortly');

  const refuse = async (request: FastifyRequest, reply: FastifyReply, err: GatewayError, r: { stage: BlockStage; ruleId: string; direction: Direction; hits: LocatedHit[]; approvalId?: string; held?: boolean; also?: ApprovalEvidence }) => {
    await recordBestEffort(request, 'refusal', (rec) =>
      rec.refused(facts(request), {
        status: err.status,
        stage: r.stage,
        ruleId: r.ruleId,
        reason: err.message,
        direction: r.direction,
        bodyBytes: Buffer.byteLength(request.rawBody ?? ''),
        bodyDigest: evidenceDigest(request.rawBody ?? ''),
        contentType: typeof request.headers['content-type'] === 'string' ? request.headers['content-type'] : null,
        hits: r.hits,
        ...(r.approvalId === undefined ? {} : { approvalId: r.approvalId }),
        ...(r.held ? { held: true } : {}),
        ...(r.also ? { also: r.also } : {}),
      }),
    );
    return send(request, reply, err);
  };

  const maskBody = (request: FastifyRequest, body: unknown, direction: Direction, action: MaskingAction): LocatedHit[] => {
    const hits = maskJson(body, { format, rewrite: action === 'mask', ...(hashPan ? { hashPan } : {}) });
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

  /** Model routes: auth, route policy, model policy, request masking. Returns what to forward. */
  const admitModelCall = async (request: FastifyRequest, reply: FastifyReply, route: RouteName): Promise<Admitted | undefined> => {
    if (!(await authenticate(request, reply, route))) return undefined;
    const ctx = request.attest;
    const body = request.body;
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      // Refused after authentication: evidence like any other refusal (who tried what), not silence.
      await refuse(request, reply, gatewayError(400, 'invalid_request_error', 'invalid_body', 'the request body must be a JSON object'), { stage: 'policy', ruleId: 'request.invalid_body', direction: 'request', hits: [] });
      return undefined;
    }
    const b = body as Record<string, unknown>;
    if (typeof b.model !== 'string' || b.model.length === 0) {
      await refuse(request, reply, gatewayError(400, 'invalid_request_error', 'model_missing', 'model: field required'), { stage: 'policy', ruleId: 'request.model_missing', direction: 'request', hits: [] });
      return undefined;
    }
    // Kept for evidence and the process log, so never a card number (the body forwards b.model as sent).
    ctx.model = panSafe(b.model);
    ctx.stream = route === 'messages' && b.stream === true;
    const decision = decideModelCall(ctx.grant!, {
      model: b.model,
      stream: ctx.stream,
      ...(typeof b.max_tokens === 'number' ? { maxTokens: b.max_tokens } : {}),
    });
    if (!decision.allow) {
      metrics.policyDenials.inc({ rule: decision.rule });
      await refuse(request, reply, gatewayError(403, 'permission_error', `policy_${decision.rule}`, panSafe(decision.reason)), { stage: 'policy', ruleId: `policy.${decision.rule}`, direction: 'request', hits: [] });
      return undefined;
    }
    const action = ctx.grant!.masking.request;
    const hits = maskBody(request, b, 'request', action);
    if (hits.length > 0 && action === 'block') {
      await refuse(request, reply, blockedByRule('request', hits), { stage: 'masking', ruleId: 'builtin.pan', direction: 'request', hits });
      return undefined;
    }
    const text = hits.length > 0 && action === 'mask' ? JSON.stringify(b) : (request.rawBody ?? JSON.stringify(b));
    return { text, hits, action, ruleIds: [`policy.${decision.rule}`] };
  };

  /** The evidence of an admitted request, durable before the upstream is called (fail closed). */
  const recordAdmission = async (request: FastifyRequest, reply: FastifyReply, a: Admitted, release?: Release): Promise<boolean> => {
    if (!recorder) return true;
    try {
      await recorder.admitted(facts(request), admittedFacts(request, a), release);
      return true;
    } catch (err) {
      const code = (err as { code?: string }).code;
      request.log.error({ requestId: request.attest.id, code, what: 'admission' }, 'evidence not recorded');
      // An exchange whose evidence can never fit (e.g. thousands of card numbers, each a masking
      // hit) is refused for good, not with a "retry shortly" that would fail the same way.
      if (code === 'evidence_event_too_large') {
        send(request, reply, gatewayError(413, 'request_too_large', 'evidence_too_large', 'the evidence of this request would exceed the evidence log\'s event size limit (too many card numbers or too much content in one request); send a smaller request'));
      } else {
        send(request, reply, evidenceUnavailable);
      }
      return false;
    }
  };

  /**
   * SHA-256 of a body for evidence, never over an unmasked card number: a plain hash of text whose
   * only unknown is a PAN's middle digits is reversed by trying the ~10^5 Luhn-valid candidates
   * (PCI DSS 3.5.1.1 wants a keyed hash for that), and the rest of the text is often known (the
   * masked content kept in the same events). Where the text still holds one (the policy allowed
   * it, a refused body, a PAN in a JSON key), the digest is over the text with every card number
   * masked by the text masker. A full scan of the body: ~1 µs per KB of prose.
   */
  // containsPan is findPans(text).length > 0 behind its necessary-condition prefilter, and it
  // remembers the last clean long text, so requestContent and the encoder's guard of the same body
  // do not scan it again.
  const evidenceDigest = (text: string): Buffer => (containsPan(text) ? sha256(maskPans(text, format).text) : sha256(text));

  const admittedFacts = (request: FastifyRequest, a: Admitted): AdmittedFacts => {
    const raw = request.rawBody ?? '';
    // "After inline masking": the bytes forwarded, the same digest as the forwarded event's.
    const bodyDigest = evidenceDigest(a.text);
    return {
      bodyBytes: Buffer.byteLength(raw),
      bodyDigest,
      contentType: typeof request.headers['content-type'] === 'string' ? request.headers['content-type'] : null,
      hits: a.hits,
      action: a.action,
      ruleIds: a.ruleIds,
      forwardedBytes: Buffer.byteLength(a.text),
      forwardedDigest: bodyDigest,
      // admitModelCall walked the whole body before building a.text, so it may be kept as content.
      forwardedText: a.text,
    };
  };

  /** The evidence of a completed exchange; the response is acknowledged only once it is durable. */
  const recordCompletion = async (request: FastifyRequest, r: Omit<ResponseFacts, 'latencyUs'>): Promise<boolean> => {
    if (!recorder) return true;
    try {
      await recorder.completed(facts(request), { ...r, latencyUs: (now() - request.attest.startedAt) * 1000 });
      return true;
    } catch (err) {
      request.log.error({ requestId: request.attest.id, code: (err as { code?: string }).code, what: 'response.completed' }, 'evidence not recorded');
      return false;
    }
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

  /**
   * Removes the upstream credential from anything the upstream sends back (defence in depth). Only
   * a credential of MIN_SCRUBBED_KEY_CHARS or more: a shorter string is no real API key, and
   * replacing it everywhere would corrupt ordinary responses (a one-letter test key would take
   * every such letter out of the answer). Startup warns about such a key.
   */
  const scrubbable = deps.upstreamApiKey.length >= MIN_SCRUBBED_KEY_CHARS;
  if (!scrubbable) {
    logger.warn({ length: deps.upstreamApiKey.length }, `upstream.anthropic.apiKey is shorter than ${MIN_SCRUBBED_KEY_CHARS} characters: not a real API key, and responses are not scrubbed of it`);
  }
  const scrubKey = (text: string) => (scrubbable && text.includes(deps.upstreamApiKey) ? text.replaceAll(deps.upstreamApiKey, '[redacted]') : text);

  const callUpstream = async (request: FastifyRequest, reply: FastifyReply, method: 'GET' | 'POST', path: string, body?: string) => {
    const ctx = request.attest;
    const abort = new AbortController();
    // A caller that goes away cancels the upstream call (and the tokens it would spend). An object
    // method rather than a named closure: see readLimited.
    const { onClose } = {
      onClose() {
        if (!reply.raw.writableFinished) abort.abort(new Error('client disconnected'));
      },
    };
    reply.raw.on('close', onClose);
    // A caller that went away before this point (during authentication or the admission append):
    // its 'close' has fired already, so the upstream is never called and the exchange is recorded
    // as aborted by the caller.
    if (callerGone(request)) abort.abort(new Error('client disconnected'));
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
      return failedUpstream(request, reply, abort, err);
    }

    const headers = responseHeaders(res.headers, ctx);
    const contentType = String(res.headers['content-type'] ?? '');
    if (ctx.stream && res.statusCode === 200 && contentType.startsWith('text/event-stream')) {
      return streamResponse(request, reply, res, headers, abort, onClose);
    }

    // Whole-body responses: JSON messages, errors, count_tokens, models.
    let text: string;
    let hits: LocatedHit[] = [];
    let stopReason: string | null = null;
    let usage: ResponseFacts['usage'] = null;
    // Only a body the masker has walked may be kept as evidence content.
    let scanned = false;
    try {
      text = await readLimited(res.body, MAX_UPSTREAM_BODY_BYTES);
    } catch (err) {
      reply.raw.off('close', onClose);
      return failedUpstream(request, reply, abort, err);
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
        hits = maskBody(request, parsed, 'response', action);
        scanned = true;
        if (hits.length > 0 && action === 'block') {
          return refuse(request, reply, blockedByRule('response', hits), { stage: 'masking', ruleId: 'builtin.pan', direction: 'response', hits });
        }
        if (hits.length > 0 || ctx.route === 'models') text = JSON.stringify(parsed);
        const p = parsed as { stop_reason?: unknown; usage?: Record<string, unknown> };
        if (typeof p.stop_reason === 'string') stopReason = p.stop_reason;
        usage = usageOf(p.usage);
      }
    }
    const action = ctx.grant!.masking.response;
    if (!scanned && text.length > 0) {
      // Not JSON (a proxy's HTML error page, say): still no card number gets past as plain text.
      const r = maskPans(text, format, hashPan ? { hashPan } : undefined);
      hits = r.hits.map((hit) => ({ hit, location: 'body' }));
      if (hits.length > 0) {
        request.attest.hits.response += hits.length;
        metrics.maskingHits.inc({ rule: 'pan', direction: 'response', action }, hits.length);
        if (action === 'block') {
          return refuse(request, reply, blockedByRule('response', hits), { stage: 'masking', ruleId: 'builtin.pan', direction: 'response', hits });
        }
        if (action === 'mask') text = r.text;
      }
      scanned = true;
    }
    const recorded = await recordCompletion(request, {
      status: res.statusCode,
      stopReason,
      aborted: false,
      // Evidence never holds a card number: content is kept only when it was masked or had none.
      content: scanned && (hits.length === 0 || action === 'mask') ? text : null,
      contentBytes: Buffer.byteLength(text),
      contentDigest: sha256(text),
      hits,
      action,
      usage,
      ttfbUs: null,
    });
    if (!recorded) return send(request, reply, evidenceUnavailable);
    if (ctx.preopened) {
      // A held streaming request whose upstream answered without a stream (an error): the
      // Anthropic error body is exactly an SSE error event's data.
      if (!reply.raw.destroyed) reply.raw.end(`event: error\ndata: ${text.replace(/\n/g, ' ')}\n\n`);
      return reply;
    }
    return reply.code(res.statusCode).headers(headers).header('content-type', contentType || 'application/json').send(text);
  };

  /** An upstream call that failed or was abandoned by the caller: answered (if anyone listens) and recorded. */
  const failedUpstream = async (request: FastifyRequest, reply: FastifyReply, abort: AbortController, err: unknown) => {
    const ctx = request.attest;
    const clientGone = abort.signal.aborted && (reply.raw.destroyed || callerGone(request));
    const failure = clientGone ? undefined : upstreamFailure(abort.signal.aborted ? abort.signal.reason : err, metrics);
    if (clientGone) ctx.outcome = 'client_aborted';
    await recordBestEffort(request, 'response.completed', (rec) =>
      rec.completed(facts(request), {
        status: failure?.status ?? 499,
        stopReason: null,
        aborted: clientGone,
        // A connection that went while shutting down was most likely cut by the gateway's grace.
        failure: clientGone && closing ? 'gateway_shutdown' : null,
        content: null,
        contentBytes: 0,
        contentDigest: sha256(''),
        hits: [],
        action: ctx.grant?.masking.response ?? 'mask',
        usage: null,
        latencyUs: (now() - ctx.startedAt) * 1000,
        ttfbUs: null,
      }),
    );
    return failure ? send(request, reply, failure) : reply.hijack();
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
      action,
      ...(hashPan ? { hashPan } : {}),
      onHit: (hit) => {
        ctx.hits.response++;
        hits.push(hit);
        metrics.maskingHits.inc({ rule: 'pan', direction: 'response', action });
        if (action === 'block') (blocked ??= []).push(hit);
      },
    });
    const hits: LocatedHit[] = [];
    // Masked output as sent, kept for the evidence up to a bound (never raw when action is allow).
    const kept: string[] = [];
    let keptChars = 0;
    let sentBytes = 0;
    const digest = createHash('sha256');
    let ttfbUs: number | null = null;
    const out = reply.raw;
    // A held request's SSE response is already open: the model's events continue it.
    if (!ctx.preopened) {
      reply.hijack();
      out.writeHead(200, {
        ...headers,
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
    }
    ctx.status = 200;
    let firstByte = true;
    const write = async (chunk: string) => {
      if (!chunk) return;
      if (firstByte) {
        firstByte = false;
        ttfbUs = (now() - ctx.startedAt) * 1000;
        metrics.ttfb.observe({ route: ctx.route, stream: 'true' }, ttfbUs / 1_000_000);
      }
      if (recorder) {
        digest.update(chunk);
        sentBytes += Buffer.byteLength(chunk);
        if (keptChars < MAX_KEPT_CHARS) {
          kept.push(chunk);
          keptChars += chunk.length;
        }
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
      if (!blocked) {
        const tail = masker.end();
        // end() can find a card number too (a stream cut while one was held back): with action
        // block it returns nothing, and the caller gets the block error instead.
        if (masker.blocked) {
          await write(errorEvent(blockedByRule('response', blocked ?? [])));
          ctx.outcome = 'response_blocked';
        } else {
          await write(tail);
        }
      }
    } catch (err) {
      if (abort.signal.aborted && !blocked && (abort.signal.reason as Error | undefined)?.name === 'TimeoutError') {
        // The gateway's own upstream timeout, not the caller: the caller is told, and the evidence says so.
        ctx.outcome = 'upstream_timeout';
        metrics.upstreamErrors.inc({ kind: 'timeout' });
        if (!out.destroyed) out.write(errorEvent({ type: 'api_error', code: 'upstream_timeout', message: `the upstream did not finish within ${config.limits.upstreamTimeoutMs} ms` }));
      } else if (abort.signal.aborted && !blocked) {
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
      if (!res.body.destroyed) res.body.destroy();
    }
    if (recorder) {
      const s = masker.summary;
      // Ended early (the schema's `aborted`): by the caller, by the upstream, or cut by the gateway.
      const aborted = ctx.outcome === 'client_aborted' || ctx.outcome === 'upstream_timeout' || ctx.outcome === 'upstream_stream_failed';
      const facts_: Omit<ResponseFacts, 'latencyUs'> = {
        status: blocked ? 403 : 200,
        stopReason: s.stopReason,
        aborted,
        content: keptChars < MAX_KEPT_CHARS && (hits.length === 0 || action === 'mask') ? kept.join('') : null,
        contentBytes: sentBytes,
        contentDigest: digest.digest(),
        hits,
        action,
        usage: s.sawUsage ? { inputTokens: s.inputTokens, outputTokens: s.outputTokens, cacheReadInputTokens: s.cacheRead, cacheCreationInputTokens: s.cacheCreation } : null,
        ttfbUs,
        // The stream began with 200, but it did not end as the model's answer.
        failure:
          ctx.outcome === 'upstream_timeout' || ctx.outcome === 'upstream_stream_failed'
            ? ctx.outcome
            : ctx.outcome === 'client_aborted' && closing
              ? 'gateway_shutdown' // cut when the shutdown grace ran out
              : s.error !== null
                ? `upstream_${s.error}`
                : null,
      };
      const recorded = blocked
        ? (await refuseStreamed(request, blocked), true)
        : await recordCompletion(request, facts_);
      if (!recorded && !out.destroyed) out.write(errorEvent({ type: 'api_error', code: 'evidence_unavailable', message: evidenceUnavailable.message }));
    }
    if (!out.destroyed) out.end();
  };

  const refuseStreamed = (request: FastifyRequest, hits: LocatedHit[]) =>
    recordBestEffort(request, 'refusal', (rec) =>
      rec.refused(facts(request), { status: 403, stage: 'masking', ruleId: 'builtin.pan', reason: 'card number in the response', direction: 'response', bodyBytes: 0, bodyDigest: sha256(''), contentType: null, hits }),
    );

  // ---- approvals: hold, or ask-and-retry ----
  const gate = deps.control && deps.holder && config.approvals.rules.length > 0 ? new ApprovalGate(config.approvals, deps.control) : undefined;
  /** Held requests, aborted with 'gateway_shutdown' when the gateway closes. */
  const holds = new Set<AbortController>();

  /**
   * Decides whether an admitted request needs an approval and, if so, holds it or answers with the
   * approval id. Returns the release to record when the request may go on, `undefined` when no
   * approval applies, or 'answered' when the caller has been answered.
   */
  const approvalStep = async (request: FastifyRequest, reply: FastifyReply, route: RouteName, a: Admitted): Promise<Release | undefined | 'answered'> => {
    if (!gate) return undefined;
    const ctx = request.attest;
    const principal = ctx.principal!;
    const body = request.body as Record<string, unknown>;
    const header = request.headers[APPROVAL_ID_HEADER];
    // A body sent with masking 'allow' may hold raw card data: its digest is keyed.
    const digest = gate.digest(route, ctx.model!, body, a.action === 'allow' ? deps.digestKey : undefined);
    const holder = deps.holder!();
    const approvalRefusal = async (code: string, message: string, approvalId: string, extra: { held?: boolean; also?: ApprovalEvidence } = {}) => {
      metrics.policyDenials.inc({ rule: code });
      await refuse(request, reply, gatewayError(403, 'permission_error', code, message), { stage: 'approval', ruleId: `approval.${code}`, direction: 'request', hits: a.hits, approvalId, ...extra });
      return 'answered' as const;
    };

    if (typeof header === 'string' && header.length > 0) {
      if (header.length > 128) return approvalRefusal('approval_invalid', `${APPROVAL_ID_HEADER} is not an approval id`, header.slice(0, 128));
      const verdict = gate.checkRetry(header, digest, principal);
      if (!verdict.ok) return approvalRefusal(verdict.code, verdict.message, header);
      const released = releasedEvidence(request, header, digest, holder, principal);
      return { approvalId: header, evidence: released, held: false };
    }

    const match = gate.match(principal, route, ctx.model!, body, a.hits.length > 0);
    if (!match) return undefined;
    let opened: OpenedApproval;
    try {
      opened = gate.open({
        match,
        principal,
        digest,
        hold: { ...holder, holdId: ctx.id },
        requestId: ctx.id,
        sessionId: facts(request).sessionId,
        model: ctx.model!,
        route,
        promptExcerpt: promptTextOf(body).slice(0, MAX_EXCERPT_CHARS),
      });
    } catch (err) {
      request.log.error({ requestId: ctx.id, code: (err as { code?: string }).code }, 'approval could not be opened');
      return approvalRefusal('approval_unavailable', 'the approval could not be requested; retry shortly', 'none');
    }
    const requested = toEvidence(opened.event, opened.state);
    if (recorder) {
      try {
        await recorder.held(facts(request), admittedFacts(request, a), match.rule.id, requested);
      } catch {
        send(request, reply, evidenceUnavailable);
        return 'answered';
      }
    }
    metrics.approvals.inc({ outcome: 'requested', mode: match.rule.mode });
    const answer = approvalAnswer(opened.state)!;
    if (match.rule.mode === 'ask_and_retry') {
      send(request, reply, gatewayError(answer.status, answer.errorType, answer.code, answer.message), { [APPROVAL_ID_HEADER]: opened.approvalId });
      return 'answered';
    }
    return holdRequest(request, reply, opened, a, holder);
  };

  const holdRequest = async (request: FastifyRequest, reply: FastifyReply, opened: OpenedApproval, a: Admitted, holder: { gatewayId: string; instanceId: string }): Promise<Release | 'answered'> => {
    const ctx = request.attest;
    const id = opened.approvalId;
    const ac = new AbortController();
    holds.add(ac);
    // The approvals processor expires the approval at expiresAtMs and says so on the control
    // channel; this timer only guarantees nobody waits forever if no processor runs.
    const timer = setTimeout(() => ac.abort('expired'), Math.max(0, opened.state.expiresAtMs - Date.now()) + HOLD_GRACE_MS);
    const onClose = () => {
      if (!reply.raw.writableFinished) ac.abort('caller_disconnected');
    };
    reply.raw.on('close', onClose);
    // The caller may have gone (or shutdown begun) while the hold was being recorded: 'close' and
    // preClose have then fired already and would never reach this hold.
    if (callerGone(request)) ac.abort('caller_disconnected');
    else if (closing) ac.abort('gateway_shutdown');
    let keepAlive: NodeJS.Timeout | undefined;
    if (ctx.stream) {
      // Streaming callers get the SSE response at once, with comments to keep proxies from
      // closing an idle connection; the model's events follow once the request is released.
      reply.hijack();
      reply.raw.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
        'x-attest-request-id': ctx.id,
        [APPROVAL_ID_HEADER]: id,
      });
      reply.raw.write(`: attest: waiting for approval ${id}\n\n`);
      ctx.preopened = true;
      ctx.status = 200;
      keepAlive = setInterval(() => {
        if (!reply.raw.destroyed) reply.raw.write(': keep-alive\n\n');
      }, config.approvals.keepAliveMs);
    }
    let outcome: ApprovalResolution | 'expired' | 'caller_disconnected' | 'gateway_shutdown';
    try {
      outcome = await gate!.wait(id, ac.signal);
    } catch (reason) {
      outcome = reason === 'caller_disconnected' || reason === 'gateway_shutdown' ? reason : 'expired';
    } finally {
      clearTimeout(timer);
      clearInterval(keepAlive);
      reply.raw.off('close', onClose);
      holds.delete(ac);
    }
    const cancelled = (reason: 'caller_disconnected' | 'gateway_shutdown') =>
      toEvidence({ type: 'cancelled', approvalId: id, atMs: Date.now(), reason }, opened.state);
    if (outcome === 'caller_disconnected') {
      ctx.outcome = 'client_aborted';
      metrics.approvals.inc({ outcome: 'cancelled', mode: 'hold' });
      await recordBestEffort(request, 'approval.cancelled', (rec) => rec.refused(facts(request), { status: 499, stage: 'approval', ruleId: 'approval.approval_cancelled', reason: 'the caller went away while the request was held', direction: 'request', bodyBytes: 0, bodyDigest: sha256(''), contentType: null, hits: [], approvalId: id, held: true, also: cancelled('caller_disconnected') }));
      if (!ctx.preopened) reply.hijack();
      return 'answered';
    }
    if (outcome === 'gateway_shutdown') {
      metrics.approvals.inc({ outcome: 'cancelled', mode: 'hold' });
      await recordBestEffort(request, 'approval.cancelled', (rec) => rec.refused(facts(request), { status: 503, stage: 'approval', ruleId: 'approval.approval_cancelled', reason: 'the gateway shut down while the request was held', direction: 'request', bodyBytes: 0, bodyDigest: sha256(''), contentType: null, hits: [], approvalId: id, held: true, also: cancelled('gateway_shutdown') }));
      send(request, reply, gatewayError(503, 'api_error', 'approval_cancelled', `the gateway restarted while request was held for approval ${id}; send the request again to ask for a new approval`));
      return 'answered';
    }
    const refuseHeld = async (code: string, message: string) => {
      metrics.approvals.inc({ outcome: code, mode: 'hold' });
      await refuse(request, reply, gatewayError(403, 'permission_error', code, message), { stage: 'approval', ruleId: `approval.${code}`, direction: 'request', hits: a.hits, approvalId: id, held: true });
      return 'answered' as const;
    };
    if (outcome === 'expired') return refuseHeld('approval_expired', `approval ${id} under rule '${opened.match.rule.id}' was not granted before it expired; send the request again to ask for a new approval`);
    if (outcome.outcome !== 'approved') {
      const code = outcome.outcome === 'rejected' ? 'approval_rejected' : outcome.outcome === 'expired' ? 'approval_expired' : 'approval_cancelled';
      return refuseHeld(code, `approval ${id} under rule '${opened.match.rule.id}' was ${outcome.outcome}${outcome.reason ? `: ${outcome.reason}` : ''}`);
    }
    // Defence in depth: the resolution must be for exactly this request.
    if (outcome.requestDigest !== opened.digest) return refuseHeld('approval_digest_mismatch', `approval ${id} does not match this request`);
    metrics.approvals.inc({ outcome: 'released', mode: 'hold' });
    const released = toEvidence({ type: 'released', approvalId: id, atMs: Date.now(), requestDigest: opened.digest, hold: { ...holder, holdId: ctx.id } }, opened.state);
    return { approvalId: id, evidence: released, held: true };
  };

  /** approval.released for an ask-and-retry retry (a new HTTP request: no state of its own). */
  const releasedEvidence = (request: FastifyRequest, approvalId: string, digest: string, holder: { gatewayId: string; instanceId: string }, principal: Principal): ApprovalEvidence => {
    const ctx = request.attest;
    return {
      type: 'approval.released',
      timeUs: Date.now() * 1000,
      actor: actorFromPrincipal(principal),
      outcome: { result: 'success', status: null, reason: null },
      correlation: { sessionId: facts(request).sessionId, requestId: ctx.id, upstreamRequestId: null },
      target: { protocol: 'http', service: 'anthropic', resource: ctx.route, model: ctx.model ?? '' },
      payload: { approvalId, requestDigest: digest, gatewayId: holder.gatewayId, instanceId: holder.instanceId, holdId: ctx.id },
    };
  };

  const modelCall = (route: 'messages' | 'count_tokens', path: string) => (request: FastifyRequest, reply: FastifyReply) => exchanges.track(runModelCall(route, path, request, reply));
  const runModelCall = async (route: 'messages' | 'count_tokens', path: string, request: FastifyRequest, reply: FastifyReply) => {
    const admitted = await admitModelCall(request, reply, route);
    if (!admitted) return reply;
    // count_tokens sends the prompt upstream too, so the same approval rules apply (a rule may also
    // name the route).
    const release = await approvalStep(request, reply, route, admitted);
    if (release === 'answered') return reply;
    if (!(await recordAdmission(request, reply, admitted, release))) {
      // Nothing was forwarded: an ask-and-retry approval may be used again.
      if (release !== undefined && !release.held) gate?.retryNotForwarded(release.approvalId);
      return reply;
    }
    return callUpstream(request, reply, 'POST', path, admitted.text);
  };

  app.post('/v1/messages', modelCall('messages', '/v1/messages'));
  app.post('/v1/messages/count_tokens', modelCall('count_tokens', '/v1/messages/count_tokens'));

  app.get('/v1/models', (request, reply) =>
    exchanges.track(
      (async () => {
        if (!(await authenticate(request, reply, 'models'))) return reply;
        if (!(await recordAdmission(request, reply, { text: '', hits: [], action: 'allow', ruleIds: ['policy.routes'] }))) return reply;
        return callUpstream(request, reply, 'GET', '/v1/models');
      })(),
    ),
  );

  app.get<{ Params: { id: string } }>('/v1/models/:id', (request, reply) =>
    exchanges.track(
      (async () => {
        if (!(await authenticate(request, reply, 'models'))) return reply;
        const id = request.params.id;
        if (!request.attest.grant!.entries.some(([, g]) => g.models.some((p) => modelMatches(p, id)))) {
          return refuse(request, reply, gatewayError(404, 'not_found_error', 'model_not_allowed', `model ${panSafe(id)} is not available to your groups`), { stage: 'authorization', ruleId: 'policy.models', direction: 'request', hits: [] });
        }
        if (!(await recordAdmission(request, reply, { text: '', hits: [], action: 'allow', ruleIds: ['policy.routes'] }))) return reply;
        return callUpstream(request, reply, 'GET', `/v1/models/${encodeURIComponent(id)}`);
      })(),
    ),
  );

  app.addHook('preClose', async () => {
    closing = true;
    for (const socket of sockets) if (!serving.get(socket)) socket.destroy();
    for (const h of holds) h.abort('gateway_shutdown');
  });
  app.addHook('onClose', async () => {
    // A tracker passed in belongs to whoever closes the evidence, and it waits (main.ts); waiting
    // here again would only double a timed-out wait.
    if (deps.exchanges === undefined) await exchanges.settled(EXCHANGE_SETTLE_MS);
    await upstream.close();
  });

  return app;
}

interface Admitted {
  /** Body to forward: the caller's bytes when nothing was masked. */
  text: string;
  hits: LocatedHit[];
  action: MaskingAction;
  ruleIds: string[];
}

const MAX_KEPT_CHARS = 256 * 1024;

/**
 * The session an exchange belongs to: the client's own session header when it sends one (Claude Code
 * does), else one session per token, so one agent run's calls replay together.
 */
function sessionIdFor(request: FastifyRequest, token: string | undefined): string {
  for (const h of ['x-claude-code-session-id', 'x-attest-session-id']) {
    const v = request.headers[h];
    // The session id keys the event log's records and is logged: never a card number.
    if (typeof v === 'string' && /^[\w.:-]{1,128}$/.test(v)) return panSafe(v);
  }
  return token ? `token:${oneShotHash('sha256', token, 'hex').slice(0, 32)}` : `anonymous:${request.ip}`;
}

function usageOf(u: Record<string, unknown> | undefined): ResponseFacts['usage'] {
  if (!u || typeof u.input_tokens !== 'number' || typeof u.output_tokens !== 'number') return null;
  return {
    inputTokens: u.input_tokens,
    outputTokens: u.output_tokens,
    cacheReadInputTokens: typeof u.cache_read_input_tokens === 'number' ? u.cache_read_input_tokens : null,
    cacheCreationInputTokens: typeof u.cache_creation_input_tokens === 'number' ? u.cache_creation_input_tokens : null,
  };
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

/**
 * The whole upstream body as text, refusing more than `limit` bytes. Read with 'data' events rather
 * than `for await` (whose async iterator costs a generator and promises per body). Rejects, like the
 * iterator did, on a stream error (an abort) and on a close before the end.
 */
function readLimited(body: NodeJS.ReadableStream & { destroy(err?: Error): void; destroyed?: boolean; errored?: Error | null }, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    // Already torn down (an abort that landed first): its 'error' and 'close' may be gone.
    if (body.destroyed) {
      reject(body.errored ?? Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }));
      return;
    }
    // Listeners as object methods, not named local closures: this runs per exchange, and tsx
    // (esbuild keepNames) names every named local closure with an Object.defineProperty call.
    const st = {
      chunks: [] as Buffer[],
      size: 0,
      settled: false,
      fail(err: Error) {
        if (st.settled) return;
        st.settled = true;
        body.off('data', st.onData);
        reject(err);
      },
      onData(chunk: Buffer | Uint8Array | string) {
        const b = typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
        st.size += b.length;
        if (st.size > limit) {
          const err = new Error(`upstream response larger than ${limit} bytes`);
          st.fail(err);
          body.destroy(err);
          return;
        }
        st.chunks.push(b);
      },
    };
    body.on('data', st.onData);
    body.once('error', (err: Error) => st.fail(err));
    body.once('end', () => {
      if (st.settled) return;
      st.settled = true;
      const { chunks, size } = st;
      resolve(chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks, size).toString('utf8'));
    });
    // 'close' follows 'end' on every body: build the error only for a body that closed early.
    body.once('close', () => {
      if (!st.settled) st.fail(Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }));
    });
  });
}

/** The caller's connection is gone (a closed keep-alive connection, a reset, an abort). */
function callerGone(request: FastifyRequest): boolean {
  return request.raw.socket?.destroyed === true;
}

function waitDrain(out: NodeJS.WritableStream & { destroyed?: boolean; writableEnded?: boolean }): Promise<void> {
  // A destroyed or ended stream emits no more 'drain' or 'close': waiting would never end.
  if (out.destroyed || out.writableEnded) return Promise.resolve();
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
