import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { AuthError, extractBearerToken, type Principal } from '../../../common/src/identity';
import type { DecisionView, PendingApprovalView, ReviewerIdentity } from './backend';
import { APPROVAL_ID, isReviewer, MAX_REASON_CHARS, type ReviewerContext } from './context';
import { authErrorCode, decisionErrorStatus, ReviewerError } from './errors';
import { shown } from './html';

/**
 * The approvals API for bots (a chat bot, a CLI): the same actions as the pages, authenticated
 * with an OIDC access token (Bearer) verified by the console's token verifier, gated on the same
 * reviewer groups. Documented in docs/openapi/approvals.yaml.
 *
 *   GET  /v1/approvals                      pending approvals the caller may decide
 *   GET  /v1/approvals/decisions?limit=N    recent decisions, newest first (default 20, at most 200)
 *   GET  /v1/approvals/:id                  one pending approval
 *   POST /v1/approvals/:id/decision         {"decision": "approve"|"deny", "reason": "…"}
 *
 * Errors: `{ "error": { "code", "message", "parameter"?, "fix"? } }`, the code also in
 * `x-attest-error`. A refusal by the approval domain keeps the domain's code.
 */

declare module 'fastify' {
  interface FastifyRequest {
    reviewer?: ReviewerIdentity;
  }
}

const DecisionBody = z.strictObject({
  decision: z.enum(['approve', 'deny']),
  reason: z.string().trim().min(1).max(MAX_REASON_CHARS),
});

/** Defence in depth, as on the pages: no full card number leaves, whatever the domain hands us. */
const maskPending = (a: PendingApprovalView): PendingApprovalView => ({
  ...a,
  maskedPrompt: shown(a.maskedPrompt),
  reasons: a.reasons.map(shown),
  riskSignals: a.riskSignals.map(shown),
});
const maskDecision = (d: DecisionView): DecisionView => ({ ...d, reason: d.reason === null ? null : shown(d.reason) });

/** A delegated token (RFC 8693) decides for the person it was issued for, not for the bot holding it. */
export function apiIdentity(p: Principal): ReviewerIdentity {
  return {
    issuer: p.issuer,
    subject: p.onBehalfOf ?? p.subject,
    groups: [...p.groups],
    kind: p.kind,
    channel: 'api',
    ...(p.onBehalfOf === undefined ? {} : { actor: p.subject }),
  };
}

export function sendApiError(reply: FastifyReply, status: number, code: string, message: string, extra: { parameter?: string; fix?: string } = {}): FastifyReply {
  return reply
    .code(status)
    .header('content-type', 'application/json; charset=utf-8')
    .header('cache-control', 'no-store')
    .header('x-attest-error', code)
    .send({ error: { code, message, ...(extra.parameter === undefined ? {} : { parameter: extra.parameter }), ...(extra.fix === undefined ? {} : { fix: extra.fix }) } });
}

/** Registers the API in its own encapsulated scope: its parser, error handler and auth hook stay there. */
export function registerApiRoutes(app: FastifyInstance, ctx: ReviewerContext): void {
  const { backend, verifier, logger } = ctx.deps;

  app.register(async (api) => {
    // Our own JSON parser: the default one's errors can quote the body.
    api.removeContentTypeParser('application/json');
    api.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: 16_384 }, (_req, body, done) => {
      try {
        done(null, JSON.parse(body as string));
      } catch {
        done(new ReviewerError(400, 'invalid_json', 'the request body is not valid JSON'), undefined);
      }
    });
    api.decorateRequest('reviewer', undefined);

    api.setErrorHandler((error: Error & { statusCode?: number; code?: string }, request, reply) => {
      if (error instanceof ReviewerError) {
        return sendApiError(reply, error.status, error.code, error.message, { ...(error.where === undefined ? {} : { parameter: error.where }), ...(error.fix === undefined ? {} : { fix: error.fix }) });
      }
      if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return sendApiError(reply, 413, 'body_too_large', 'the request body is too large');
      if (error.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return sendApiError(reply, 400, 'invalid_json', 'the request body is empty');
      if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return sendApiError(reply, 415, 'unsupported_media_type', 'send the body as application/json');
      if (typeof error.statusCode === 'number' && error.statusCode < 500) return sendApiError(reply, 400, 'invalid_body', 'the request could not be read');
      // Never the message: it could quote input.
      logger.error({ err: { name: error.name, code: error.code }, path: request.url.split('?')[0] }, 'approvals api failed');
      return sendApiError(reply, 500, 'internal_error', 'the approvals API failed to process the request');
    });

    api.addHook('onRequest', async (request: FastifyRequest) => {
      let principal: Principal;
      try {
        principal = await verifier.verify(extractBearerToken(request.headers.authorization));
      } catch (err) {
        if (err instanceof AuthError) {
          if (err.retriable) throw new ReviewerError(503, 'auth_issuer_unavailable', 'the identity provider could not be reached to check your token; retry shortly', { retriable: true });
          logger.warn({ reason: err.code, issuer: err.issuer }, 'approvals api: token refused');
          throw new ReviewerError(401, authErrorCode(err.code), `${err.message}. Present an OIDC access token as Authorization: Bearer`, err.fix === undefined ? {} : { fix: err.fix });
        }
        throw new ReviewerError(401, 'auth_token_malformed', 'invalid credentials. Present an OIDC access token as Authorization: Bearer');
      }
      if (!isReviewer(ctx, principal.groups)) {
        logger.warn({ subject: principal.subject, issuer: principal.issuer }, 'approvals api: caller is not a reviewer');
        throw new ReviewerError(403, 'reviewer_role_required', `deciding approvals needs membership in a reviewer group (${[...ctx.reviewerGroups].join(', ')}); the token's groups are: ${principal.groups.join(', ') || 'none'}`, {
          fix: 'ask your administrator to add you (or your bot) to a reviewer group',
        });
      }
      request.reviewer = apiIdentity(principal);
    });

    const idParam = (id: string): string => {
      if (!APPROVAL_ID.test(id)) throw new ReviewerError(400, 'invalid_parameter', 'id must be 1 to 200 letters, digits or . _ : -', { where: 'id' });
      return id;
    };
    const call = async <T>(what: () => Promise<T>): Promise<T> => {
      try {
        return await what();
      } catch (err) {
        logger.error({ err: { name: err instanceof Error ? err.name : 'unknown' } }, 'approval backend failed');
        throw new ReviewerError(503, 'approvals_unavailable', 'the approval service did not answer; retry shortly', { retriable: true });
      }
    };
    const noStore = (reply: FastifyReply) => reply.header('cache-control', 'no-store');

    api.get('/v1/approvals', async (request, reply) => {
      const pending = await call(() => backend.listPending(request.reviewer as ReviewerIdentity));
      noStore(reply);
      return { approvals: pending.map(maskPending) };
    });

    api.get<{ Querystring: { limit?: string } }>('/v1/approvals/decisions', async (request, reply) => {
      const raw = request.query.limit;
      const limit = raw === undefined ? ctx.recentDecisions : Number(raw);
      if (!Number.isInteger(limit) || limit < 1 || limit > 200) throw new ReviewerError(400, 'invalid_parameter', 'limit must be a whole number from 1 to 200', { where: 'limit' });
      const decisions = await call(() => backend.recentDecisions(request.reviewer as ReviewerIdentity, limit));
      noStore(reply);
      return { decisions: decisions.slice(0, limit).map(maskDecision) };
    });

    api.get<{ Params: { id: string } }>('/v1/approvals/:id', async (request, reply) => {
      const id = idParam(request.params.id);
      const pending = await call(() => backend.listPending(request.reviewer as ReviewerIdentity));
      const approval = pending.find((a) => a.approvalId === id);
      if (approval === undefined) throw new ReviewerError(404, 'approval_not_found', `approval '${id}' is not pending for you: decided, expired, yours, or unknown`, { where: 'id' });
      noStore(reply);
      return { approval: maskPending(approval) };
    });

    api.post<{ Params: { id: string } }>('/v1/approvals/:id/decision', async (request, reply) => {
      const id = idParam(request.params.id);
      const parsed = DecisionBody.safeParse(request.body);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        const where = issue?.path.length ? issue.path.join('.') : undefined;
        throw new ReviewerError(400, 'invalid_body', `send {"decision": "approve" | "deny", "reason": "1 to ${MAX_REASON_CHARS} characters"}${where === undefined ? '' : `; check ${where}`}`, where === undefined ? {} : { where });
      }
      const viewer = request.reviewer as ReviewerIdentity;
      // A card number typed into a reason never reaches the evidence.
      const reason = shown(parsed.data.reason);
      const result = await call(() => backend.decide(viewer, id, parsed.data.decision, reason));
      if (!result.ok) {
        logger.info({ subject: viewer.subject, approvalId: id, code: result.code }, 'approvals api: decision refused by the approval domain');
        return sendApiError(reply, decisionErrorStatus(result.code), result.code, result.message);
      }
      logger.info({ subject: viewer.subject, actor: viewer.actor, approvalId: id, decision: parsed.data.decision, state: result.state }, 'approvals api: decision recorded');
      noStore(reply);
      return { approvalId: id, decision: parsed.data.decision, state: result.state };
    });
  });
}
