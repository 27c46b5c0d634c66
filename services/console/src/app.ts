import { createHash, randomUUID } from 'node:crypto';
import { AUTH_REASON_CODE } from '../../common/src/evidence/auth-reason';
import { registerReviewer, type ReviewerDeps } from './reviewer';
import { registerIdentityAdmin, type IdentityAdminDeps } from './identities';
import { actorFromPrincipal } from '../../common/src/evidence/actor';
import { collectDefaultMetrics, Registry } from 'prom-client';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { JSONWebKeySet } from 'jose';
import type { Logger } from 'pino';
import type { EvidenceEmitter } from '../../common/src/evidence/emitter';
import type { PanHmacKey } from '../../common/src/evidence/pan-hmac';
import { verifyEncodedEvents, type EvidenceRecord } from '../../common/src/evidence/verify-events';
import { decodeEvent, type Actor, type EvidenceAccessKind } from '../../common/src/events';
import { decodeEventChainMetadata } from '../../common/src/events/codec';
import { AuthError, type AuthFailureReason, type Principal, type TokenVerifier } from '../../common/src/identity';
import type { Cadence, Finding, PendingRange } from '../../common/src/integrity';
import { maxGapUsFor } from '../../common/src/integrity';
import { luhnValid } from '../../common/src/masking';
import {
  EVIDENCE_QUERIES,
  isStoreError,
  render,
  runEvidenceQuery,
  type EvidenceFilters,
  type EvidenceResult,
  type EvidenceStore,
  type QueryParams,
  type RenderFormat,
} from '../../common/src/store';

/**
 * The auditors' evidence API (PCI DSS 10.3.1: read-only, for those who need it). Every route needs
 * an OIDC access token whose groups include one of `auditorGroups`. Every evidence read (query,
 * session replay, card lookup, export, verification) is itself recorded as an `evidence.accessed`
 * event, durably, before the answer leaves (PCI DSS 10.2.1.3): if it cannot be recorded, the
 * answer is 503 `evidence_unavailable` and nothing is returned (fail closed).
 *
 *   GET  /v1/evidence/queries                 the catalog
 *   GET  /v1/evidence/queries/:name           run one (filters: from, to, subject, session, tenant, limit; format)
 *   GET  /v1/sessions/:id                     one session's events in order (replay)
 *   POST /v1/evidence/pan-lookup {"pan": …}   where did this card appear (BIN + last four only)
 *   GET  /v1/verify?from=&to=                 signature, chain and checkpoint verification of the store
 *   GET  /.well-known/jwks.json               the evidence-signing public keys
 *
 * Errors: `{ "error": { "code", "message", "parameter"? } }` with the code also in `x-attest-error`.
 */

export interface ConsoleDeps {
  store: EvidenceStore;
  verifier: TokenVerifier;
  /** Groups whose members may read evidence (read-only auditor role). */
  auditorGroups: readonly string[];
  /** Records every evidence access; the console fails closed when it cannot. */
  emitter: EvidenceEmitter;
  /** The evidence-signing public keys (the keyring's current JWKS, e.g. `() => keyring.jwks()`). */
  jwks: () => JSONWebKeySet;
  /** The PAN HMAC key the gateway fingerprints card numbers with (`EvidenceRuntime.panKey`). */
  panKey: PanHmacKey;
  logger: Logger;
  /** The producers' checkpoint cadence: how long a silence is still not a finding. */
  cadence: Cadence;
  /** Row cap for one query (default 10 000, at most 1 000 000 with `limit`). */
  maxRows?: number;
  /**
   * Most stored events one verification reads (default 2 000 000): it holds its window in memory,
   * so a larger window is refused (`verify_window_too_large`) with the count, instead of exhausting
   * the heap. Verify such a store in windows (from/to).
   */
  maxVerifyEvents?: number;
  /** Trust X-Forwarded-For (behind a load balancer). Default false. */
  trustProxy?: boolean;
  /** Wall clock in microseconds (tests). */
  nowUs?: () => number;
  /** The approvals reviewer console (pages + /v1/approvals); absent: not served. */
  reviewer?: Omit<ReviewerDeps, 'verifier' | 'logger'>;
  /** The identity admin API (suspend/restore); absent: not served. */
  identityAdmin?: Omit<IdentityAdminDeps, 'emitter' | 'common' | 'nowUs'>;
}

/** Stable error codes of the evidence API (docs/errors.md style: switch on the code, never the message). */
export const CONSOLE_ERROR_CODES = [
  'auth_token_missing',
  'auth_token_too_large',
  'auth_token_malformed',
  'auth_alg_not_allowed',
  'auth_unknown_issuer',
  'auth_unknown_kid',
  'auth_bad_signature',
  'auth_token_expired',
  'auth_token_not_yet_valid',
  'auth_wrong_audience',
  'auth_missing_claim',
  'auth_issuer_unavailable',
  'auditor_role_required',
  'admin_role_required',
  'self_restore_forbidden',
  'control_unavailable',
  'invalid_parameter',
  'unknown_query',
  'session_not_found',
  'verify_window_too_large',
  'pan_invalid',
  'invalid_json',
  'invalid_body',
  'unsupported_media_type',
  'body_too_large',
  'route_not_found',
  'evidence_unavailable',
  'store_unavailable',
  'internal_error',
] as const;
export type ConsoleErrorCode = (typeof CONSOLE_ERROR_CODES)[number];

export class ConsoleError extends Error {
  constructor(
    readonly status: number,
    readonly code: ConsoleErrorCode,
    message: string,
    readonly parameter?: string,
    readonly extra?: Record<string, unknown>,
  ) {
    super(message);
  }
}

const FORMATS: readonly RenderFormat[] = ['json', 'csv', 'table'];
const CONTENT_TYPES: Record<RenderFormat, string> = {
  json: 'application/json; charset=utf-8',
  csv: 'text/csv; charset=utf-8',
  table: 'text/plain; charset=utf-8',
};
const FILTER_PARAMS = ['from', 'to', 'subject', 'session', 'tenant', 'limit', 'format'] as const;
/** Queries that need more than the common filters: they have their own routes. */
const OWN_ROUTE: Record<string, string> = {
  'pan-lookup': 'POST /v1/evidence/pan-lookup with {"pan": "..."}',
  'session-replay': 'GET /v1/sessions/:id',
};
const MAX_LIMIT = 1_000_000;

declare module 'fastify' {
  interface FastifyRequest {
    consoleId: string;
    principal?: Principal;
  }
}

export async function buildConsole(deps: ConsoleDeps): Promise<FastifyInstance> {
  const { store, verifier, emitter, logger, cadence } = deps;
  const auditorGroups = new Set(deps.auditorGroups);
  const defaultMaxRows = deps.maxRows ?? 10_000;
  const maxVerifyEvents = deps.maxVerifyEvents ?? 2_000_000;
  const nowUs = deps.nowUs ?? (() => Date.now() * 1000);

  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // Request logging would log URLs and bodies; the console logs its own summary line instead.
    logController: new LogController({ disableRequestLogging: true }),
    // The only body is a card lookup.
    bodyLimit: 4096,
    trustProxy: deps.trustProxy ?? false,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
  });
  app.decorateRequest('consoleId', '');
  app.decorateRequest('principal', undefined);

  // Our own parser: the default one's errors can quote the body, and the body may hold a card number.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    try {
      done(null, JSON.parse(body as string));
    } catch {
      done(new ConsoleError(400, 'invalid_json', 'the request body is not valid JSON'), undefined);
    }
  });

  const send = (request: FastifyRequest, reply: FastifyReply, err: ConsoleError) =>
    reply
      .code(err.status)
      .header('content-type', 'application/json; charset=utf-8')
      .header('x-attest-error', err.code)
      .header('x-attest-request-id', request.consoleId)
      .send({ error: { code: err.code, message: err.message, ...(err.parameter === undefined ? {} : { parameter: err.parameter }), ...(err.extra ?? {}) } });

  app.setErrorHandler((error: Error & { statusCode?: number; code?: string }, request, reply) => {
    if (error instanceof ConsoleError) return send(request, reply, error);
    if (isStoreError(error)) {
      if (error.code === 'store_invalid_argument') {
        return send(request, reply, new ConsoleError(400, 'invalid_parameter', error.message, error.where));
      }
      request.log.error({ requestId: request.consoleId, code: error.code }, 'evidence store failed');
      return send(request, reply, new ConsoleError(503, 'store_unavailable', 'the evidence store could not answer; retry shortly'));
    }
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return send(request, reply, new ConsoleError(413, 'body_too_large', 'the request body is too large'));
    if (error.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return send(request, reply, new ConsoleError(400, 'invalid_json', 'the request body is empty'));
    if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return send(request, reply, new ConsoleError(415, 'unsupported_media_type', 'send the body as application/json'));
    if (typeof error.statusCode === 'number' && error.statusCode < 500) {
      return send(request, reply, new ConsoleError(400, 'invalid_parameter', 'the request could not be read'));
    }
    // Never the error message: it could quote input.
    request.log.error({ requestId: request.consoleId, err: { name: error.name, code: error.code } }, 'unexpected console error');
    return send(request, reply, new ConsoleError(500, 'internal_error', 'the evidence API failed to process the request'));
  });

  app.setNotFoundHandler((request, reply) => send(request, reply, new ConsoleError(404, 'route_not_found', `${request.method} ${request.url.split('?')[0]} is not served by the evidence API`)));

  app.addHook('onRequest', async (request, reply) => {
    request.consoleId = `req_console_${randomUUID().replaceAll('-', '')}`;
    const started = performance.now();
    reply.raw.once('close', () => {
      if (request.url === '/healthz') return;
      // Path only: query strings carry filters, and nothing here ever carries a body.
      logger.info(
        { requestId: request.consoleId, method: request.method, path: request.url.split('?')[0], status: reply.raw.statusCode, subject: request.principal?.subject, durationMs: Math.round((performance.now() - started) * 1000) / 1000 },
        'evidence api',
      );
    });
  });

  app.get('/healthz', async () => ({ status: 'ok' }));
  // Process metrics only (no labels from requests): what an operator's Prometheus scrapes.
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  app.get('/metrics', async (_request, reply) => reply.header('content-type', registry.contentType).send(await registry.metrics()));

  /**
   * An onRequest hook: a valid OIDC bearer token from a member of one of `groups`. Failures are
   * evidence (auth.failed, or policy.decided for a missing role) and answered 401/403.
   */
  const requireGroups = (groups: ReadonlySet<string>, code: ConsoleErrorCode, what: string) => async (request: FastifyRequest) => {
    let principal: Principal;
    try {
      principal = await verifier.verify(bearerToken(request));
    } catch (err) {
      const reason: AuthFailureReason = err instanceof AuthError ? err.code : 'token_malformed';
      await bestEffort(request, 'auth.failed', () => recordAuthFailure(request, reason));
      if (err instanceof AuthError && err.retriable) {
        throw new ConsoleError(503, 'auth_issuer_unavailable', 'the identity provider could not be reached to check your token; retry shortly');
      }
      const message = err instanceof AuthError ? err.message : 'invalid credentials';
      throw new ConsoleError(401, `auth_${reason}` as ConsoleErrorCode, `${message}. Present an OIDC access token as Authorization: Bearer`);
    }
    request.principal = principal;
    if (!principal.groups.some((g) => groups.has(g))) {
      await bestEffort(request, 'policy.decided', () => recordDenied(request, principal));
      throw new ConsoleError(403, code, `${what} needs membership in one of the groups ${[...groups].join(', ')}; the token's groups are: ${principal.groups.join(', ') || 'none'}`);
    }
  };

  if (deps.identityAdmin) {
    const admin = deps.identityAdmin;
    app.register(async (scope) => {
      scope.addHook('onRequest', requireGroups(new Set(admin.adminGroups), 'admin_role_required', 'suspending or restoring identities'));
      registerIdentityAdmin(scope, { ...admin, emitter, common, nowUs });
    });
  }

  // ---- every route below needs an auditor ----
  app.register(async (auditor) => {
    auditor.addHook('onRequest', requireGroups(auditorGroups, 'auditor_role_required', 'reading evidence'));

    auditor.get('/.well-known/jwks.json', async (_request, reply) => {
      reply.header('cache-control', 'no-store');
      return deps.jwks();
    });

    auditor.get('/v1/evidence/queries', async () => ({
      queries: Object.values(EVIDENCE_QUERIES).map((q) => ({
        name: q.id,
        requirement: q.requirement,
        title: q.title,
        description: q.description,
        columns: q.columns,
        args: q.args,
        ...(OWN_ROUTE[q.id] === undefined ? {} : { route: OWN_ROUTE[q.id] }),
      })),
    }));

    auditor.get<{ Params: { name: string } }>('/v1/evidence/queries/:name', async (request, reply) => {
      const name = request.params.name;
      if (EVIDENCE_QUERIES[name] === undefined) {
        throw new ConsoleError(404, 'unknown_query', `unknown evidence query '${name}'; known: ${Object.keys(EVIDENCE_QUERIES).join(', ')}`, undefined, { known: Object.keys(EVIDENCE_QUERIES) });
      }
      if (OWN_ROUTE[name] !== undefined) throw new ConsoleError(400, 'invalid_parameter', `${name} is run with ${OWN_ROUTE[name]}`, 'name');
      const q = readFilters(request.query);
      const result = await runEvidenceQuery(store, name, q.filters, undefined, { maxRows: q.maxRows, nowUs: nowUs() });
      return answer(request, reply, result, q.format, result.parameters);
    });

    auditor.get<{ Params: { id: string } }>('/v1/sessions/:id', async (request, reply) => {
      const id = request.params.id;
      if (id.length === 0 || id.length > 512) throw new ConsoleError(400, 'invalid_parameter', 'id must be a session id (1 to 512 characters)', 'id');
      const q = readFilters(request.query, ['session']);
      const result = await runEvidenceQuery(store, 'session-replay', q.filters, { sessionId: id }, { maxRows: q.maxRows });
      if (result.rows.length === 0) {
        await record(request, { accessKind: 'query', queryId: result.queryId, parameters: result.parameters, rowCount: 0, format: q.format, exportDigest: null }, 404);
        throw new ConsoleError(404, 'session_not_found', `no events for session '${id}'${q.filters.from !== undefined || q.filters.to !== undefined ? ' in that time range' : ''}`, 'id');
      }
      return answer(request, reply, result, q.format, result.parameters);
    });

    auditor.post('/v1/evidence/pan-lookup', async (request, reply) => {
      const body = request.body;
      if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new ConsoleError(400, 'invalid_body', 'send {"pan": "<card number>"}');
      const raw = (body as Record<string, unknown>).pan;
      const digits = typeof raw === 'string' ? raw.replace(/[\s-]/g, '') : '';
      // Never echoed: the message says what a card number looks like, not what was sent.
      if (!/^\d{13,19}$/.test(digits) || !luhnValid(digits)) {
        throw new ConsoleError(400, 'pan_invalid', 'pan must be a card number: 13 to 19 digits (spaces and dashes allowed) that pass the Luhn check', 'pan');
      }
      const q = readFilters(request.query, ['session', 'subject']);
      const fingerprint = Buffer.from(deps.panKey.hash(digits), 'base64url').toString('hex');
      const card = { bin: digits.slice(0, 6), last4: digits.slice(-4), panHmacKeyId: deps.panKey.kid };
      const result = await runEvidenceQuery(store, 'pan-lookup', q.filters, { fingerprint }, { maxRows: q.maxRows });
      // What is recorded and answered: the BIN, last four and the keyed HMAC, never the number.
      const parameters = { ...result.parameters, bin: card.bin, last4: card.last4, pan_hmac_key_id: card.panHmacKeyId };
      return answer(request, reply, { ...result, parameters, summary: { ...result.summary, card: `${card.bin}…${card.last4}`, sightings: result.rows.length } }, q.format, parameters);
    });

    auditor.get('/v1/verify', async (request) => {
      const q = readFilters(request.query, ['session', 'subject', 'tenant', 'limit', 'format']);
      const fromUs = q.fromUs ?? 0;
      // Without `to`, up to where the store is complete, not "now": the writer's ingestion lag
      // (checkpoints emitted, not stored yet) would otherwise read as every producer falling silent.
      const through = q.toUs === undefined ? await storedThrough(store, maxGapUsFor(cadence), nowUs()) : undefined;
      const toUs = Math.max(fromUs, q.toUs ?? through!.toUs);
      // Without a window every stored row is checked; `toUs` only ends the silence check.
      const window = q.fromUs === undefined && q.toUs === undefined ? undefined : { fromUs, toUs };
      const inWindow = await countForVerification(store, window);
      if (inWindow.events > maxVerifyEvents) {
        // The stored time span comes along so a client (`attest verify`) can split the window itself.
        throw new ConsoleError(
          413,
          'verify_window_too_large',
          `the window holds ${inWindow.events} stored events, more than one verification reads (${maxVerifyEvents}); verify it in smaller windows with from= and to= (attest verify does this by itself)`,
          window === undefined ? 'from' : 'to',
          {
            events: inWindow.events,
            max: maxVerifyEvents,
            // The span to split, in microseconds: the window asked for, else the stored events' span.
            fromUs: q.fromUs ?? inWindow.firstUs,
            toUs: q.toUs ?? inWindow.lastUs,
          },
        );
      }
      const read = await readForVerification(store, window);
      const report = await verifyEncodedEvents(read.records, deps.jwks(), { cadence, storageOrder: true, window: { fromUs, toUs } });
      // Rows that do not even decode are left out of the chain check (which then reports their
      // sequences as deleted) and named here.
      const undecodable = read.undecodable.map((u) => ({
        code: 'undecodable',
        producer: u.producer,
        epoch: null,
        sequences: u.sequence > 0 ? { from: u.sequence, to: u.sequence } : null,
        eventIds: [u.eventId],
        detail: `the stored bytes of event ${u.eventId} are not a decodable event: they were altered or damaged`,
      }));
      const parameters: Record<string, string> = { ...(q.filters.from === undefined ? {} : { from: isoOfUs(fromUs) }), ...(q.filters.to === undefined ? {} : { to: isoOfUs(toUs) }) };
      const out = {
        ok: report.ok && undecodable.length === 0,
        window: { from: isoOfUs(fromUs), to: isoOfUs(toUs), ...(through === undefined ? {} : { toBasis: through.basis }) },
        findings: [...undecodable, ...report.findings.map(findingJson)],
        pending: report.pending as readonly PendingRange[],
        stats: { ...report.stats, redactedEvents: report.redactedEvents },
      };
      await record(request, { accessKind: 'verify', queryId: 'verify', parameters, rowCount: report.stats.events + report.stats.checkpoints + undecodable.length, format: 'json', exportDigest: null });
      return out;
    });
  });

  // ---- evidence of the evidence access ----

  const actorOf = actorFromPrincipal;
  const common = (request: FastifyRequest) => ({
    actor: actorOf(request.principal),
    source: { address: request.ip, userAgent: typeof request.headers['user-agent'] === 'string' ? request.headers['user-agent'].slice(0, 512) : null },
    target: { protocol: 'http' as const, service: 'attest:console', resource: request.url.split('?')[0] ?? '/', model: null },
    correlation: { sessionId: sessionOf(request), requestId: request.consoleId, upstreamRequestId: null },
  });
  const sessionOf = (request: FastifyRequest) => (request.principal ? `console:${request.principal.subject}` : `console:anonymous:${request.ip}`);

  /** The evidence.accessed event, durable before the caller sees anything; 503 when it cannot be. */
  const record = async (
    request: FastifyRequest,
    a: { accessKind: EvidenceAccessKind; queryId: string; parameters: Readonly<Record<string, string>>; rowCount: number; format: string | null; exportDigest: Buffer | null },
    status = 200,
  ): Promise<void> => {
    const e = emitter.build('evidence.accessed', {
      ...common(request),
      outcome: { result: status < 400 ? 'success' : 'failure', status, reason: null },
      payload: { accessKind: a.accessKind, queryId: a.queryId, parameters: a.parameters, rowCount: a.rowCount, format: a.format, exportDigest: a.exportDigest, approvalId: null },
    });
    try {
      await emitter.emit([e], sessionOf(request));
    } catch (err) {
      request.log.error({ requestId: request.consoleId, code: (err as { code?: string }).code }, 'evidence access not recorded: failing closed');
      throw new ConsoleError(503, 'evidence_unavailable', 'Attest could not durably record this evidence access, so it was not answered; retry shortly');
    }
  };

  const recordAuthFailure = async (request: FastifyRequest, reason: AuthFailureReason) => {
    const e = emitter.build('auth.failed', {
      ...common(request),
      outcome: { result: 'failure', status: 401, reason },
      payload: { method: 'oidc_jwt', reasonCode: AUTH_REASON_CODE[reason], claimsVerified: false, amr: [], acr: null, tokenId: null },
    });
    await emitter.emit([e], sessionOf(request));
  };

  const recordDenied = async (request: FastifyRequest, principal: Principal) => {
    const reason = 'caller is in no auditor group';
    const e = emitter.build('policy.decided', {
      ...common(request),
      actor: actorOf(principal),
      outcome: { result: 'failure', status: 403, reason },
      payload: { policyId: 'console.auditorGroups', policyVersion: [...auditorGroups].sort().join(','), decision: 'deny', ruleIds: ['console.auditor_role'], reason, approvalId: null },
    });
    await emitter.emit([e], sessionOf(request));
  };

  const bestEffort = async (request: FastifyRequest, what: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (err) {
      request.log.error({ requestId: request.consoleId, code: (err as { code?: string }).code, what }, 'evidence not recorded');
    }
  };

  /** Render, record (fail closed), then answer. A CSV download is an export, with its digest. */
  const answer = async (request: FastifyRequest, reply: FastifyReply, result: EvidenceResult, format: RenderFormat, parameters: Readonly<Record<string, string>>) => {
    const text = render(result, format);
    const isExport = format === 'csv';
    await record(request, {
      accessKind: isExport ? 'export' : 'query',
      queryId: result.queryId,
      parameters,
      rowCount: result.rows.length,
      format,
      exportDigest: isExport ? createHash('sha256').update(text).digest() : null,
    });
    reply.header('content-type', CONTENT_TYPES[format]).header('x-attest-request-id', request.consoleId).header('x-attest-row-count', String(result.rows.length));
    if (result.truncated) reply.header('x-attest-truncated', 'true');
    if (isExport) reply.header('content-disposition', `attachment; filename="${result.queryId.replace(/[^A-Za-z0-9._-]/g, '_')}.csv"`);
    return reply.send(text);
  };

  interface ReadFilters {
    filters: EvidenceFilters;
    fromUs?: number;
    toUs?: number;
    maxRows: number;
    format: RenderFormat;
  }

  /** The query string, validated; a 400 names the first bad parameter. */
  const readFilters = (query: unknown, notHere: readonly string[] = []): ReadFilters => {
    const qs = (query ?? {}) as Record<string, unknown>;
    const allowed = FILTER_PARAMS.filter((p) => !notHere.includes(p));
    for (const key of Object.keys(qs)) {
      if (!(allowed as readonly string[]).includes(key)) throw new ConsoleError(400, 'invalid_parameter', `unknown parameter '${key}'; this route takes: ${allowed.join(', ')}`, key);
    }
    const one = (name: string): string | undefined => {
      const v = qs[name];
      if (v === undefined) return undefined;
      if (typeof v !== 'string') throw new ConsoleError(400, 'invalid_parameter', `${name} may be given once`, name);
      if (v.length === 0) throw new ConsoleError(400, 'invalid_parameter', `${name} is empty`, name);
      if (v.length > 512) throw new ConsoleError(400, 'invalid_parameter', `${name} is longer than 512 characters`, name);
      return v;
    };
    const out: ReadFilters = { filters: {}, maxRows: defaultMaxRows, format: 'json' };
    const filters: { -readonly [K in keyof EvidenceFilters]: EvidenceFilters[K] } = {};
    const from = one('from');
    const to = one('to');
    if (from !== undefined) {
      out.fromUs = timeUs(from, 'from');
      filters.from = out.fromUs;
    }
    if (to !== undefined) {
      out.toUs = timeUs(to, 'to');
      filters.to = out.toUs;
    }
    if (out.fromUs !== undefined && out.toUs !== undefined && out.toUs <= out.fromUs) throw new ConsoleError(400, 'invalid_parameter', 'to must be after from', 'to');
    const subject = one('subject');
    if (subject !== undefined) filters.actor = subject;
    const session = one('session');
    if (session !== undefined) filters.sessionId = session;
    const tenant = one('tenant');
    if (tenant !== undefined) filters.tenantId = tenant;
    const limit = one('limit');
    if (limit !== undefined) {
      if (!/^\d+$/.test(limit) || Number(limit) < 1 || Number(limit) > MAX_LIMIT) throw new ConsoleError(400, 'invalid_parameter', `limit must be a whole number from 1 to ${MAX_LIMIT}`, 'limit');
      out.maxRows = Number(limit);
    }
    const format = one('format');
    if (format !== undefined) {
      if (!(FORMATS as readonly string[]).includes(format)) throw new ConsoleError(400, 'invalid_parameter', `format must be one of ${FORMATS.join(', ')}`, 'format');
      out.format = format as RenderFormat;
    }
    out.filters = filters;
    return out;
  };

  if (deps.reviewer !== undefined) {
    const reviewer = deps.reviewer;
    // Reviewer sign-ins are individual accesses: evidence like every other console access.
    const at = (from: { ip: string; userAgent: string | null }) => ({
      source: { address: from.ip, userAgent: from.userAgent },
      target: { protocol: 'http' as const, service: 'attest:console', resource: '/reviewer', model: null },
    });
    const person = (u: { issuer: string; subject: string; groups: readonly string[] }): Actor => ({ subject: u.subject, issuer: u.issuer, clientId: reviewer.oidc.clientId, groups: [...u.groups], kind: 'human', onBehalfOf: null, dev: false });
    const correlation = (subject: string) => ({ sessionId: `console:${subject}`, requestId: `req_console_${randomUUID().replaceAll('-', '')}`, upstreamRequestId: null });
    registerReviewer(app, {
      ...reviewer,
      verifier,
      logger,
      audit: {
        signedIn: async (u, from) => {
          const e = emitter.build('auth.succeeded', {
            ...at(from),
            actor: person(u),
            outcome: { result: 'success', status: 200, reason: 'reviewer_sign_in' },
            correlation: correlation(u.subject),
            payload: { method: 'oidc_jwt', amr: [], acr: null, tokenId: null, tokenIssuedAtUs: null, tokenExpiresAtUs: null, audience: [reviewer.oidc.clientId] },
          });
          await emitter.emit([e], e.correlation.sessionId);
        },
        signInRefused: async (reason, u, from) => {
          const e = u
            ? emitter.build('policy.decided', {
                ...at(from),
                actor: person(u),
                outcome: { result: 'failure', status: 403, reason },
                correlation: correlation(u.subject),
                payload: { policyId: 'console.reviewer.reviewerGroups', policyVersion: [...reviewer.reviewerGroups].sort().join(','), decision: 'deny', ruleIds: ['console.reviewer_role'], reason: 'signed in, but in no reviewer group', approvalId: null },
              })
            : emitter.build('auth.failed', {
                ...at(from),
                actor: actorOf(undefined),
                outcome: { result: 'failure', status: 401, reason },
                correlation: correlation(`anonymous:${from.ip}`),
                payload: { method: 'oidc_jwt', reasonCode: reason === 'login_failed' ? 'malformed_credentials' : 'unknown', claimsVerified: false, amr: [], acr: null, tokenId: null },
              });
          await emitter.emit([e], e.correlation.sessionId);
        },
      },
    });
  }

  return app;
}

/** ISO 8601 (a date, or a date and time with a zone) or microseconds since the epoch. */
export function timeUs(text: string, name: string): number {
  if (/^\d{1,17}$/.test(text)) return Number(text);
  const iso = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2}))?$/i;
  const ms = iso.test(text) ? Date.parse(text) : Number.NaN;
  if (Number.isNaN(ms)) {
    throw new ConsoleError(400, 'invalid_parameter', `${name} is not a time: use ISO 8601 with a zone (2026-01-31T00:00:00Z), a date (2026-01-31, UTC) or microseconds since the epoch`, name);
  }
  const frac = /\.(\d{4,9})(?:Z|[+-]\d{2}:?\d{2})$/i.exec(text);
  return ms * 1000 + (frac ? Number((frac[1] ?? '').padEnd(6, '0').slice(3, 6)) : 0);
}

function isoOfUs(us: number): string {
  const ms = Math.floor(us / 1000);
  const rest = us - ms * 1000;
  const iso = new Date(ms).toISOString();
  return rest === 0 ? iso : `${iso.slice(0, -1)}${String(rest).padStart(3, '0')}Z`;
}

function findingJson(f: Finding) {
  return {
    code: f.code,
    producer: f.producer,
    epoch: f.epoch,
    sequences: f.sequences,
    eventIds: f.eventIds,
    detail: f.detail,
    ...(f.checkpoint === undefined ? {} : { checkpoint: f.checkpoint }),
    ...(f.timeUs === undefined ? {} : { time: { from: isoOfUs(f.timeUs.from), to: isoOfUs(f.timeUs.to) } }),
    ...(f.confirmed === undefined ? {} : { confirmed: f.confirmed }),
  };
}

/** Stored events in a verification window (the events it reads, checkpoints aside, give or take the straddling ones). */
/** How many stored events a verification of the window reads, and the time span they cover. */
async function countForVerification(store: EvidenceStore, window: { fromUs: number; toUs: number } | undefined): Promise<{ events: number; firstUs: number; lastUs: number }> {
  const where = window === undefined ? '' : "WHERE time >= fromUnixTimestamp64Micro({from_us:Int64}, 'UTC') AND time <= fromUnixTimestamp64Micro({to_us:Int64}, 'UTC')";
  const r = await store.query(
    `SELECT count(), toUnixTimestamp64Micro(min(time)), toUnixTimestamp64Micro(max(time)) FROM events ${where}`,
    window === undefined ? {} : { from_us: window.fromUs, to_us: window.toUs },
  );
  const row = r.rows[0] ?? [];
  return { events: Number(row[0] ?? 0), firstUs: Number(row[1] ?? 0), lastUs: Number(row[2] ?? 0) };
}

/** A producer whose last stored checkpoint is this many max gaps older than the newest is taken as stopped. */
const STOPPED_AFTER_GAPS = 10;

/**
 * Where a verification without `to` ends: the time through which the store holds every live
 * producer's evidence, i.e. the oldest "latest stored checkpoint" among producers whose epoch is
 * open and that checkpointed recently. A producer that closed its epoch, or whose last stored
 * checkpoint is more than STOPPED_AFTER_GAPS max gaps older than the newest one, has stopped: it does
 * not hold the window back, and its silence is reported.
 */
export async function storedThrough(store: EvidenceStore, maxGapUs: number, nowUs: number): Promise<{ toUs: number; basis: string }> {
  const r = await store.query(
    `SELECT JSONExtractString(payload, 'producer') AS p, max(JSONExtractInt(payload, 'toTimeUs')) AS last,
            argMax(JSONExtractBool(payload, 'closed'), JSONExtractInt(payload, 'toTimeUs')) AS closed
     FROM events WHERE type = 'integrity.checkpoint' GROUP BY p`,
    {},
    { maxRows: 100_000 },
  );
  const producers = r.rows.map((row) => ({ producer: String(row[0]), lastUs: Number(row[1]), closed: Number(row[2]) === 1 || row[2] === true }));
  if (producers.length === 0) return { toUs: nowUs, basis: 'no checkpoint is stored yet: verified up to now' };
  const newest = Math.max(...producers.map((p) => p.lastUs));
  const live = producers.filter((p) => !p.closed && newest - p.lastUs <= STOPPED_AFTER_GAPS * maxGapUs);
  if (live.length === 0) return { toUs: nowUs, basis: 'every producer has stopped: verified up to now' };
  const oldest = live.reduce((a, b) => (b.lastUs < a.lastUs ? b : a));
  return {
    toUs: Math.min(oldest.lastUs, nowUs),
    basis: `the store holds every running producer's evidence through this time (the latest stored checkpoint of ${oldest.producer}); later events are still being ingested. Pass to= to verify a fixed window`,
  };
}

/**
 * The signed bytes to verify, per producer in the order the store holds them (ingest time, then
 * sequence within one insert). With a window: the events in it, plus every event and checkpoint
 * of the checkpoints that overlap it, plus each producer's last checkpoint before it (the anchor
 * the first overlapping checkpoint links to), so that a checkpoint straddling an edge is checked
 * whole instead of reporting its out-of-window events as deleted.
 */
export async function readForVerification(store: EvidenceStore, window: { fromUs: number; toUs: number } | undefined): Promise<Collected> {
  const order = 'ORDER BY producer, ingest_time, sequence, event_id';
  const rowCols = "hex(event_bytes), toString(event_id), producer, sequence, hex(event_hash), ifNull(toString(redacted_by), '')";
  if (window === undefined) return withAttestations(store, await collect(store, `SELECT ${rowCols} FROM events ${order}`, {}), rowCols);
  const cpCols = "hex(event_bytes), JSONExtractString(payload, 'producer'), JSONExtractString(payload, 'epoch'), JSONExtractUInt(payload, 'firstSequence'), JSONExtractUInt(payload, 'lastSequence')";
  const params = { from_us: window.fromUs, to_us: window.toUs };
  const overlapping = await store.query(
    `SELECT ${cpCols} FROM events WHERE type = 'integrity.checkpoint' AND JSONExtractInt(payload, 'toTimeUs') >= {from_us:Int64} AND JSONExtractInt(payload, 'fromTimeUs') <= {to_us:Int64} ${order}`,
    params,
    { maxRows: 10_000_000 },
  );
  const anchors = await store.query(
    `SELECT ${cpCols} FROM events WHERE type = 'integrity.checkpoint' AND JSONExtractInt(payload, 'toTimeUs') < {from_us:Int64}
     ORDER BY JSONExtractString(payload, 'producer'), JSONExtractInt(payload, 'toTimeUs') DESC LIMIT 1 BY JSONExtractString(payload, 'producer')`,
    params,
    { maxRows: 1_000_000 },
  );
  const ranges = new Map<string, { producer: string; epoch: string; from: number; to: number }>();
  const checkpoints: Uint8Array[] = [];
  for (const row of [...anchors.rows, ...overlapping.rows]) {
    const [hex, producer, epoch, first, last] = row as [string, string, string, string | number, string | number];
    checkpoints.push(Buffer.from(hex, 'hex'));
    if (Number(last) < Number(first)) continue; // an idle checkpoint covers no event
    const key = `${producer}\u0000${epoch}`;
    const r = ranges.get(key);
    if (r === undefined) ranges.set(key, { producer, epoch, from: Number(first), to: Number(last) });
    else {
      r.from = Math.min(r.from, Number(first));
      r.to = Math.max(r.to, Number(last));
    }
  }
  const covered: string[] = [];
  const bound: Record<string, string | number> = { ...params };
  let i = 0;
  for (const r of ranges.values()) {
    covered.push(`(producer = {p${i}:String} AND producer_epoch = {e${i}:String} AND sequence BETWEEN {a${i}:UInt64} AND {b${i}:UInt64})`);
    bound[`p${i}`] = r.producer;
    bound[`e${i}`] = r.epoch;
    bound[`a${i}`] = r.from;
    bound[`b${i}`] = r.to;
    i += 1;
  }
  const inWindow = "time >= fromUnixTimestamp64Micro({from_us:Int64}, 'UTC') AND time <= fromUnixTimestamp64Micro({to_us:Int64}, 'UTC')";
  const events = await collect(
    store,
    `SELECT ${rowCols} FROM events WHERE type != 'integrity.checkpoint' AND ((${inWindow})${covered.map((c) => ` OR ${c}`).join('')}) ${order}`,
    bound,
  );
  const cps: Uint8Array[] = [];
  const undecodable = [...events.undecodable];
  for (const [i, bytes] of checkpoints.entries()) {
    try {
      decodeEvent(bytes);
      cps.push(bytes);
    } catch {
      const row = [...anchors.rows, ...overlapping.rows][i];
      undecodable.push({ eventId: 'checkpoint', producer: String(row?.[1] ?? ''), sequence: 0 });
    }
  }
  return withAttestations(store, { records: [...events.records, ...cps], undecodable }, rowCols);
}

/** A stored row whose bytes are not a decodable event: it cannot be verified, and says so. */
export interface UndecodableRow {
  readonly eventId: string;
  readonly producer: string;
  readonly sequence: number;
}

interface Collected {
  readonly records: EvidenceRecord[];
  readonly undecodable: UndecodableRow[];
}

/**
 * Stored redactions are checked against their data.masked attestations; one written after the
 * window's end is not in the read set, so the attestations named are read by id too.
 */
async function withAttestations(store: EvidenceStore, c: Collected, rowCols: string): Promise<Collected> {
  const named = new Set<string>();
  for (const r of c.records) if (!(r instanceof Uint8Array)) named.add(r.redactedBy);
  if (named.size === 0) return c;
  for (const r of c.records) if (r instanceof Uint8Array) named.delete(decodeEvent(r).event.metadata.eventId);
  if (named.size === 0) return c;
  const more = await collect(store, `SELECT ${rowCols} FROM events WHERE event_id IN {ids:Array(UUID)} ORDER BY producer, ingest_time, sequence, event_id`, { ids: [...named] });
  return { records: [...c.records, ...more.records], undecodable: [...c.undecodable, ...more.undecodable] };
}

async function collect(store: EvidenceStore, sql: string, params: QueryParams): Promise<Collected> {
  const records: EvidenceRecord[] = [];
  const undecodable: UndecodableRow[] = [];
  for await (const row of store.stream(sql, params)) {
    const bytes = Buffer.from(String(row[0]), 'hex');
    try {
      // Refuses exactly what decodeEvent refuses (it falls back to it on anything unusual), without
      // building the whole event: verification reads only the chain metadata.
      decodeEventChainMetadata(bytes);
    } catch {
      undecodable.push({ eventId: String(row[1]), producer: String(row[2]), sequence: Number(row[3]) });
      continue;
    }
    // A stored redaction: the DLP stage's copy in place of the event, kept with the original's hash.
    const redactedBy = String(row[5] ?? '');
    records.push(redactedBy === '' ? bytes : { bytes, originalHash: Buffer.from(String(row[4]), 'hex'), redactedBy });
  }
  return { records, undecodable };
}

function bearerToken(request: FastifyRequest): string | undefined {
  const auth = request.headers.authorization;
  if (typeof auth !== 'string' || auth.length === 0) return undefined;
  const m = /^Bearer\s+(.+)$/i.exec(auth);
  return m ? m[1]!.trim() : auth;
}


