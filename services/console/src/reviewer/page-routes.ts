import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { PendingApprovalView, ReviewerDecision, ReviewerIdentity } from './backend';
import { APPROVAL_ID, isReviewer, MAX_REASON_CHARS, type ReviewerContext } from './context';
import { decisionErrorStatus } from './errors';
import { shown } from './html';
import { readSession } from './oidc-login';
import { sendPage } from './page-reply';
import { approvalMain, BASE, messageMain, pendingMain } from './pages';
import { csrfMatches, sessionIdentity, type ReviewerSession } from './session';

/**
 * The reviewer's pages: the pending list with recent decisions, one approval with the decision
 * form, and the form's POST (post/redirect/get). Every route needs a valid session of a member of
 * a reviewer group; a POST also needs the session's CSRF token and, when the browser says where
 * the request came from (Origin, Sec-Fetch-Site), that it came from this console.
 */

declare module 'fastify' {
  interface FastifyRequest {
    reviewerSession?: ReviewerSession;
  }
}

type Body = Record<string, unknown> | undefined;

export function registerPageRoutes(app: FastifyInstance, ctx: ReviewerContext): void {
  const { backend, logger } = ctx.deps;
  app.decorateRequest('reviewerSession', undefined);

  const viewerOf = (s: ReviewerSession) => ({ subject: s.identity.subject, ...(s.identity.name === undefined ? {} : { name: s.identity.name }) });

  const page = (reply: FastifyReply, s: ReviewerSession, status: number, title: string, main: ReturnType<typeof pendingMain>, code?: string) =>
    sendPage(reply, status, { title, main, viewer: viewerOf(s), csrf: s.csrf }, code);

  const unavailable = (reply: FastifyReply, s: ReviewerSession, err: unknown) => {
    logger.error({ err: { name: err instanceof Error ? err.name : 'unknown' } }, 'approval backend failed');
    return page(reply, s, 503, 'Approvals unavailable', messageMain('Approvals are unavailable', 'The approval service did not answer. Try again in a moment.', { href: BASE, label: 'Reload' }), 'approvals_unavailable');
  };

  // The session gate: signed in, still a reviewer (groups are re-checked on every request).
  const gate = async (request: FastifyRequest, reply: FastifyReply) => {
    const session = await readSession(ctx, request);
    if (session === undefined) {
      if (request.method === 'GET') {
        const path = request.url.split('?')[0] ?? BASE;
        return reply.header('cache-control', 'no-store').redirect(`${BASE}/login?return=${encodeURIComponent(path)}`, 303);
      }
      return sendPage(reply, 401, { title: 'Signed out', main: messageMain('Your session has ended', 'Sign in again; your last action was not recorded.', { href: `${BASE}/login`, label: 'Sign in' }) }, 'session_required');
    }
    if (!isReviewer(ctx, session.identity.groups)) {
      return page(reply, session, 403, 'Not a reviewer', messageMain('You are not a reviewer', `Approvals are reviewed only by members of: ${[...ctx.reviewerGroups].join(', ')}.`), 'reviewer_role_required');
    }
    request.reviewerSession = session;
  };

  // Cross-site form posts are already stopped by the Strict cookie and the token; this is the third lock.
  const sameOrigin = (request: FastifyRequest): boolean => {
    const origin = request.headers.origin;
    if (origin !== undefined && origin !== ctx.publicOrigin) return false;
    const site = request.headers['sec-fetch-site'];
    return site === undefined || site === 'same-origin' || site === 'none';
  };

  async function findPending(viewer: ReviewerIdentity, id: string): Promise<PendingApprovalView | undefined> {
    return (await backend.listPending(viewer)).find((a) => a.approvalId === id);
  }

  const notPending = (reply: FastifyReply, s: ReviewerSession, id: string) =>
    page(reply, s, 404, 'Not pending', messageMain('This approval is not pending', `Approval ${id} was already decided, has expired, or is not yours to decide.`, { href: BASE, label: 'Back to pending approvals' }), 'approval_not_found');

  app.get<{ Querystring: { decided?: string; state?: string } }>(BASE, { preHandler: gate }, async (request, reply) => {
    const s = request.reviewerSession as ReviewerSession;
    const viewer = sessionIdentity(s);
    let pending: PendingApprovalView[];
    let decisions;
    try {
      [pending, decisions] = await Promise.all([backend.listPending(viewer), backend.recentDecisions(viewer, ctx.recentDecisions)]);
    } catch (err) {
      return unavailable(reply, s, err);
    }
    const { decided, state } = request.query;
    const notice =
      typeof decided === 'string' && APPROVAL_ID.test(decided) && typeof state === 'string' && /^[a-z_]{1,32}$/.test(state)
        ? `Your decision on approval ${decided} was recorded. It is now ${state.replaceAll('_', ' ')}.`
        : undefined;
    return page(reply, s, 200, 'Pending approvals', pendingMain({ pending, decisions, nowMs: ctx.now(), ...(notice === undefined ? {} : { notice }) }));
  });

  app.get(`${BASE}/`, async (_request, reply) => reply.redirect(BASE, 301));

  app.get<{ Params: { id: string } }>(`${BASE}/approvals/:id`, { preHandler: gate }, async (request, reply) => {
    const s = request.reviewerSession as ReviewerSession;
    const id = request.params.id;
    if (!APPROVAL_ID.test(id)) return notPending(reply, s, id.slice(0, 200));
    let approval: PendingApprovalView | undefined;
    try {
      approval = await findPending(sessionIdentity(s), id);
    } catch (err) {
      return unavailable(reply, s, err);
    }
    if (approval === undefined) return notPending(reply, s, id);
    return page(reply, s, 200, `Approval ${id}`, approvalMain({ approval, nowMs: ctx.now(), csrf: s.csrf }));
  });

  app.post<{ Params: { id: string }; Body: Body }>(`${BASE}/approvals/:id/decision`, { preHandler: gate, bodyLimit: 16_384 }, async (request, reply) => {
    const s = request.reviewerSession as ReviewerSession;
    const id = request.params.id;
    const body = request.body ?? {};
    if (!sameOrigin(request) || !csrfMatches(s.csrf, body.csrf)) {
      logger.warn({ subject: s.identity.subject, approvalId: APPROVAL_ID.test(id) ? id : undefined }, 'reviewer decision refused: CSRF check failed');
      return page(reply, s, 403, 'Request refused', messageMain('Request refused', 'The form was stale or did not come from this console. Nothing was recorded. Go back, reload the page and try again.', { href: BASE, label: 'Back to pending approvals' }), 'csrf_failed');
    }
    if (!APPROVAL_ID.test(id)) return notPending(reply, s, id.slice(0, 200));
    const viewer = sessionIdentity(s);
    const decision = body.decision;
    const rawReason = typeof body.reason === 'string' ? body.reason.trim() : '';
    const formError = async (status: number, message: string, code: string) => {
      let approval: PendingApprovalView | undefined;
      try {
        approval = await findPending(viewer, id);
      } catch (err) {
        return unavailable(reply, s, err);
      }
      if (approval === undefined) return notPending(reply, s, id);
      return page(reply, s, status, `Approval ${id}`, approvalMain({ approval, nowMs: ctx.now(), csrf: s.csrf, error: message, reason: shown(rawReason).slice(0, MAX_REASON_CHARS) }), code);
    };
    if (decision !== 'approve' && decision !== 'deny') return formError(400, 'Choose Approve or Deny.', 'invalid_body');
    if (rawReason.length === 0) return formError(400, 'A reason is required for the audit record.', 'invalid_body');
    if (rawReason.length > MAX_REASON_CHARS) return formError(400, `The reason is too long: at most ${MAX_REASON_CHARS} characters.`, 'invalid_body');
    // A reviewer may paste a card number into the reason; it is masked before it can reach evidence.
    const reason = shown(rawReason);
    let result;
    try {
      result = await backend.decide(viewer, id, decision as ReviewerDecision, reason);
    } catch (err) {
      return unavailable(reply, s, err);
    }
    if (!result.ok) {
      logger.info({ subject: s.identity.subject, approvalId: id, code: result.code }, 'reviewer decision refused by the approval domain');
      return formError(decisionErrorStatus(result.code), result.message, result.code);
    }
    logger.info({ subject: s.identity.subject, approvalId: id, decision, state: result.state }, 'reviewer decision recorded');
    return reply.redirect(`${BASE}?decided=${encodeURIComponent(id)}&state=${encodeURIComponent(result.state)}`, 303);
  });
}
