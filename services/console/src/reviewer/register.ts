import cookie from '@fastify/cookie';
import formbody from '@fastify/formbody';
import type { FastifyInstance } from 'fastify';
import { registerApiRoutes } from './api';
import { reviewerContext, type ReviewerDeps } from './context';
import { createRelyingParty, registerLoginRoutes, type RelyingParty } from './oidc-login';
import { sendPage } from './page-reply';
import { registerPageRoutes } from './page-routes';
import { BASE, messageMain } from './pages';

export interface RegisterReviewerOptions {
  /** Replaces the OIDC relying party (tests of the pages without an IdP). */
  relyingParty?: RelyingParty;
}

/**
 * Mounts the reviewer console on an existing fastify app (the console's): the sign-in routes and
 * pages under /reviewer, the bot API under /v1/approvals. Each part lives in its own encapsulated
 * scope, so its cookie and form parsing, error pages and auth hooks touch nothing else. Throws a
 * ReviewerConfigError at once when the options cannot work; the IdP is only contacted at the first
 * sign-in (a console whose IdP is down still starts and serves the API).
 */
export function registerReviewer(app: FastifyInstance, deps: ReviewerDeps, opts: RegisterReviewerOptions = {}): void {
  const ctx = reviewerContext(deps);
  const rp = opts.relyingParty ?? createRelyingParty(deps.oidc, deps.idpTimeoutMs ?? 10_000);

  registerApiRoutes(app, ctx);

  app.register(async (web) => {
    await web.register(cookie);
    await web.register(formbody, { bodyLimit: 16_384 });

    web.setErrorHandler((error: Error & { statusCode?: number; code?: string }, request, reply) => {
      if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
        return sendPage(reply, 413, { title: 'Too large', main: messageMain('The form is too large', 'Shorten the reason and try again.', { href: BASE, label: 'Back to approvals' }) }, 'body_too_large');
      }
      if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
        return sendPage(reply, 415, { title: 'Unsupported form', main: messageMain('Unsupported form', 'Submit the form from the console page.', { href: BASE, label: 'Back to approvals' }) }, 'unsupported_media_type');
      }
      // Never the message: it could quote input.
      deps.logger.error({ err: { name: error.name, code: error.code }, path: request.url.split('?')[0] }, 'reviewer page failed');
      return sendPage(reply, 500, { title: 'Error', main: messageMain('Something went wrong', 'The console could not show this page. Try again; if it persists, tell your Attest administrator.', { href: BASE, label: 'Back to approvals' }) }, 'internal_error');
    });

    registerLoginRoutes(web, ctx, rp);
    registerPageRoutes(web, ctx);
  });
}
