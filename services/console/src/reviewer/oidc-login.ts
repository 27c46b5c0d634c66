/**
 * Browser sign-in: OpenID Connect authorization code flow with PKCE (S256), state and nonce, using
 * openid-client against the configured issuer (discovery).
 *
 *   browser                     console                                  IdP
 *     │ GET /reviewer/login       │                                        │
 *     │──────────────────────────▶│ state, nonce, verifier → sealed login  │
 *     │◀── 303 authorize?…&code_challenge=S256(verifier) + Set-Cookie (Lax)│
 *     │─────────────────────────────────────────────────────────────────────▶ sign in
 *     │◀──────────────────────── 303 /reviewer/callback?code&state&iss ─────│
 *     │ GET /reviewer/callback    │ check state, code → tokens (verifier)  │
 *     │──────────────────────────▶│──────────────────────────────────────▶│
 *     │                           │ ID token: signature, iss, aud, nonce   │
 *     │                           │ groups ∩ reviewerGroups, else 403      │
 *     │◀── 200 "continue" + Set-Cookie session (Strict) ──────────────────│
 *     │ GET /reviewer (same-site: the Strict cookie is sent)               │
 *
 * The hop through a "continue" page exists because the callback is reached by a cross-site
 * redirect: a Strict cookie set there is only sent once a navigation starts from our own page.
 */
import * as oidc from 'openid-client';
import type {} from '@fastify/cookie'; // its request.cookies / reply.setCookie typings
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { groupsFrom, readClaim } from '../../../common/src/identity';
import { isReviewer, LOGIN_TTL_SEC, type ReviewerContext, type ReviewerOidcOptions } from './context';
import { html } from './html';
import { BASE, messageMain } from './pages';
import { sendPage } from './page-reply';
import { csrfMatches, loginCookie, openLogin, openSession, sealLogin, sealSession, sessionCookie, type LoginTransaction, type ReviewerSession } from './session';

const MAX_SESSION_COOKIE_CHARS = 3800;

/** Who signed in, from a validated ID token. */
export interface SignedInUser {
  issuer: string;
  subject: string;
  name?: string;
  groups: string[];
}

export type LoginFailure = { kind: 'idp_unavailable' } | { kind: 'refused'; error: string } | { kind: 'invalid'; code: string };

export class LoginError extends Error {
  constructor(readonly failure: LoginFailure) {
    super(failure.kind);
    this.name = 'LoginError';
  }
}

export interface RelyingParty {
  /** A new login: the IdP URL to send the browser to, and what to remember until the callback. */
  start(returnTo: string): Promise<{ url: URL; tx: LoginTransaction }>;
  /** Validates the callback (state, code with PKCE, ID token with nonce) and reads the user. */
  finish(callbackUrl: URL, tx: LoginTransaction): Promise<SignedInUser>;
}

const isLoopbackHttp = (u: URL) => u.protocol === 'http:' && (u.hostname === '127.0.0.1' || u.hostname === 'localhost' || u.hostname === '[::1]');

/** A network failure reaching the IdP (as opposed to the IdP answering "no"). */
function isUnreachable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err.name === 'TimeoutError' || err.name === 'AbortError') return true;
  return err instanceof TypeError && /fetch failed/i.test(err.message);
}

export function createRelyingParty(opts: ReviewerOidcOptions, timeoutMs: number): RelyingParty {
  const scope = [...new Set(['openid', ...opts.scopes])].join(' ');
  let config: Promise<oidc.Configuration> | undefined;

  // Discovered lazily and cached; a failed discovery is retried by the next login.
  const configuration = (): Promise<oidc.Configuration> => {
    config ??= (async () => {
      const issuer = new URL(opts.issuer);
      const auth = opts.clientSecret === undefined ? oidc.None() : oidc.ClientSecretBasic(opts.clientSecret);
      return oidc.discovery(issuer, opts.clientId, undefined, auth, {
        timeout: Math.ceil(timeoutMs / 1000),
        // Plain http only for an IdP on this machine (tests, a laptop); anything else needs https.
        ...(isLoopbackHttp(issuer) ? { execute: [oidc.allowInsecureRequests] } : {}),
      });
    })();
    config.catch(() => {
      config = undefined;
    });
    return config;
  };

  return {
    async start(returnTo) {
      let c: oidc.Configuration;
      try {
        c = await configuration();
      } catch (err) {
        throw new LoginError(isUnreachable(err) ? { kind: 'idp_unavailable' } : { kind: 'invalid', code: errorCode(err) });
      }
      const tx: LoginTransaction = { state: oidc.randomState(), nonce: oidc.randomNonce(), codeVerifier: oidc.randomPKCECodeVerifier(), returnTo };
      const url = oidc.buildAuthorizationUrl(c, {
        redirect_uri: opts.redirectUri,
        scope,
        response_type: 'code',
        code_challenge: await oidc.calculatePKCECodeChallenge(tx.codeVerifier),
        code_challenge_method: 'S256',
        state: tx.state,
        nonce: tx.nonce,
      });
      return { url, tx };
    },

    async finish(callbackUrl, tx) {
      let c: oidc.Configuration;
      try {
        c = await configuration();
      } catch (err) {
        throw new LoginError(isUnreachable(err) ? { kind: 'idp_unavailable' } : { kind: 'invalid', code: errorCode(err) });
      }
      let claims: Record<string, unknown> | undefined;
      try {
        const tokens = await oidc.authorizationCodeGrant(c, callbackUrl, {
          pkceCodeVerifier: tx.codeVerifier,
          expectedState: tx.state,
          expectedNonce: tx.nonce,
          idTokenExpected: true,
        });
        claims = tokens.claims() as Record<string, unknown> | undefined;
      } catch (err) {
        if (isUnreachable(err)) throw new LoginError({ kind: 'idp_unavailable' });
        // The IdP's own refusal of the authorization (?error=access_denied) is not our fault.
        if (err instanceof oidc.AuthorizationResponseError) throw new LoginError({ kind: 'refused', error: err.error });
        throw new LoginError({ kind: 'invalid', code: errorCode(err) });
      }
      if (claims === undefined || typeof claims.sub !== 'string' || typeof claims.iss !== 'string') {
        throw new LoginError({ kind: 'invalid', code: 'id_token_missing' });
      }
      const name = [claims.name, claims.preferred_username, claims.email].find((v): v is string => typeof v === 'string' && v.length > 0);
      return {
        issuer: claims.iss,
        subject: claims.sub,
        groups: groupsFrom(readClaim(claims, opts.groupsClaim)),
        ...(name === undefined ? {} : { name }),
      };
    },
  };
}

/** A log-safe code for a failure (never its message: it may quote a response). */
function errorCode(err: unknown): string {
  if (err !== null && typeof err === 'object') {
    const code = (err as { code?: unknown }).code;
    const error = (err as { error?: unknown }).error;
    if (typeof error === 'string') return error.slice(0, 64);
    if (typeof code === 'string') return code.slice(0, 64);
  }
  return err instanceof Error ? err.name : 'unknown';
}

/** Only a path inside the console, so the login can never be used as an open redirect. */
export function safeReturnTo(value: unknown): string {
  if (typeof value !== 'string' || value.length > 512) return BASE;
  // Console paths only ever hold approval ids, so no percent-encoding and no dot segments are needed.
  if (!/^\/reviewer(\/[A-Za-z0-9._:-]+)*$/.test(value)) return BASE;
  return value.split('/').some((seg) => seg === '.' || seg === '..') ? BASE : value;
}

export async function readSession(ctx: ReviewerContext, request: FastifyRequest): Promise<ReviewerSession | undefined> {
  return openSession(ctx.keys, request.cookies[ctx.cookies.session], ctx.now());
}

function refuse(ctx: ReviewerContext, reply: FastifyReply, status: number, code: string, title: string, message: string) {
  ctx.deps.logger.warn({ code, status }, 'reviewer sign-in refused');
  return sendPage(reply, status, { title, main: messageMain(title, message, { href: `${BASE}/login`, label: 'Sign in again' }) }, code);
}

export function registerLoginRoutes(app: FastifyInstance, ctx: ReviewerContext, rp: RelyingParty): void {
  const { cookies, secure } = ctx;

  app.get<{ Querystring: { return?: string } }>(`${BASE}/login`, async (request, reply) => {
    let started: { url: URL; tx: LoginTransaction };
    try {
      started = await rp.start(safeReturnTo(request.query.return));
    } catch (err) {
      if (err instanceof LoginError && err.failure.kind === 'idp_unavailable') {
        return refuse(ctx, reply, 503, 'idp_unavailable', 'Sign-in is unavailable', 'The identity provider could not be reached. Try again in a moment.');
      }
      ctx.deps.logger.error({ code: err instanceof LoginError && err.failure.kind === 'invalid' ? err.failure.code : 'unknown' }, 'reviewer login could not start');
      return refuse(ctx, reply, 503, 'idp_unavailable', 'Sign-in is unavailable', 'The identity provider is not configured correctly. Tell your Attest administrator.');
    }
    reply.setCookie(cookies.login, await sealLogin(ctx.keys, started.tx, LOGIN_TTL_SEC, ctx.now()), loginCookie(secure, LOGIN_TTL_SEC));
    return reply.code(303).header('cache-control', 'no-store').redirect(started.url.href, 303);
  });

  app.get(ctx.callbackPath, async (request, reply) => {
    const tx = await openLogin(ctx.keys, request.cookies[cookies.login], ctx.now());
    // One use only, whatever happens next.
    reply.clearCookie(cookies.login, { path: '/', secure, httpOnly: true, sameSite: 'lax' });
    if (tx === undefined) {
      return refuse(ctx, reply, 400, 'login_expired', 'Sign-in expired', 'This sign-in took too long, or was started in another browser or tab. Sign in again.');
    }
    const callbackUrl = new URL(ctx.deps.oidc.redirectUri);
    callbackUrl.search = new URL(request.url, ctx.publicOrigin).search;
    let user: SignedInUser;
    try {
      user = await rp.finish(callbackUrl, tx);
    } catch (err) {
      const failure: LoginFailure = err instanceof LoginError ? err.failure : { kind: 'invalid', code: 'unknown' };
      switch (failure.kind) {
        case 'idp_unavailable':
          return refuse(ctx, reply, 503, 'idp_unavailable', 'Sign-in is unavailable', 'The identity provider could not be reached. Try again in a moment.');
        case 'refused':
          await auditRefusal(ctx, request, 'login_refused', undefined);
          return refuse(ctx, reply, 401, 'login_refused', 'Sign-in was refused', `The identity provider refused the sign-in (${failure.error}).`);
        case 'invalid':
          ctx.deps.logger.warn({ reason: failure.code }, 'reviewer callback rejected');
          await auditRefusal(ctx, request, 'login_failed', undefined);
          return refuse(ctx, reply, 401, 'login_failed', 'Sign-in failed', 'The answer from the identity provider could not be verified. Sign in again.');
        default: {
          const never: never = failure;
          throw new Error(`unhandled login failure ${String(never)}`);
        }
      }
    }
    if (!isReviewer(ctx, user.groups)) {
      ctx.deps.logger.warn({ issuer: user.issuer, subject: user.subject }, 'reviewer sign-in denied: not in a reviewer group');
      await auditRefusal(ctx, request, 'not_a_reviewer', user);
      return sendPage(
        reply,
        403,
        {
          title: 'Not a reviewer',
          main: messageMain(
            'You are not a reviewer',
            `You signed in as ${user.name ?? user.subject}, but approvals are reviewed only by members of: ${[...ctx.reviewerGroups].join(', ')}. Ask your administrator for access if you need it.`,
            undefined,
            html`<p>Your groups: ${user.groups.length === 0 ? 'none' : user.groups.join(', ')}</p>`,
          ),
        },
        'reviewer_role_required',
      );
    }
    const sealed = await sealSession(ctx.keys, user, ctx.sessionTtlSec, ctx.now());
    // Browsers drop cookies over ~4 KB silently, which would loop the user through the IdP forever.
    if (sealed.length > MAX_SESSION_COOKIE_CHARS) {
      ctx.deps.logger.error({ subject: user.subject, groups: user.groups.length }, 'reviewer session too large for a cookie');
      return refuse(ctx, reply, 500, 'session_too_large', 'Sign-in failed', 'Your account has too many groups to fit in a session. Ask your administrator to have the identity provider send only the groups this console needs.');
    }
    if (ctx.deps.audit) {
      try {
        await ctx.deps.audit.signedIn(user, fromOf(request));
      } catch {
        ctx.deps.logger.error({ subject: user.subject }, 'reviewer sign-in not recorded: refused (fail closed)');
        return refuse(ctx, reply, 503, 'approvals_unavailable', 'Sign-in is unavailable', 'Your sign-in could not be recorded, so it was not completed. Try again in a moment.');
      }
    }
    reply.setCookie(cookies.session, sealed, sessionCookie(secure, ctx.sessionTtlSec));
    ctx.deps.logger.info({ issuer: user.issuer, subject: user.subject }, 'reviewer signed in');
    return sendPage(reply, 200, {
      title: 'Signed in',
      head: html`<meta http-equiv="refresh" content="0;url=${tx.returnTo}">`,
      main: messageMain('Signed in', `Welcome, ${user.name ?? user.subject}.`, { href: tx.returnTo, label: 'Continue to approvals' }),
    });
  });

  app.post<{ Body: Record<string, unknown> | undefined }>(`${BASE}/logout`, async (request, reply) => {
    const session = await readSession(ctx, request);
    // Without a session there is nothing to end; with one, only our own form may end it.
    if (session !== undefined && !csrfMatches(session.csrf, request.body?.csrf)) {
      return sendPage(reply, 403, { title: 'Request refused', main: messageMain('Request refused', 'The form was stale or did not come from this console. Go back, reload the page and try again.') }, 'csrf_failed');
    }
    reply.clearCookie(cookies.session, { path: '/', secure, httpOnly: true, sameSite: 'strict' });
    if (session !== undefined) ctx.deps.logger.info({ subject: session.identity.subject }, 'reviewer signed out');
    return reply.redirect(`${BASE}/signed-out`, 303);
  });

  app.get(`${BASE}/signed-out`, async (_request, reply) =>
    sendPage(reply, 200, { title: 'Signed out', main: messageMain('Signed out', 'You are signed out of the reviewer console.', { href: `${BASE}/login`, label: 'Sign in' }) }),
  );
}

function fromOf(request: FastifyRequest): { ip: string; userAgent: string | null } {
  const ua = request.headers['user-agent'];
  return { ip: request.ip, userAgent: typeof ua === 'string' ? ua.slice(0, 512) : null };
}

/** A refused sign-in is evidence too; recorded best effort (the refusal stands either way). */
async function auditRefusal(ctx: ReviewerContext, request: FastifyRequest, reason: string, user: SignedInUser | undefined): Promise<void> {
  try {
    await ctx.deps.audit?.signInRefused(reason, user, fromOf(request));
  } catch {
    ctx.deps.logger.error({ reason }, 'refused reviewer sign-in not recorded');
  }
}
