/**
 * A real OpenID provider (panva's oidc-provider, the certified implementation) in-process on
 * 127.0.0.1, for integration and end-to-end tests and benchmarks. Callers get access tokens the way
 * agents do: a client_credentials request over HTTP to the token endpoint, with a resource
 * indicator (RFC 8707) so the token is a JWT (RFC 9068) for the gateway's audience.
 *
 * With `users` and `webClients` it also signs people in: the authorization code flow (PKCE S256
 * required) through the provider's interaction flow, with a plain username/password form rendered
 * here at /interaction/:uid. Consent is implied (first-party clients), and the users' groups are in
 * the ID token under `groupsClaim`, as Okta, Keycloak or Entra ID can be configured to do.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import Provider, { errors as oidcErrors, type OidcConfiguration } from 'oidc-provider';
// The provider's own in-memory adapter, created explicitly: same behaviour as its default, one store
// per IdP, and without the "development-only adapter" warning on every start.
import { createMemoryAdapter } from 'oidc-provider/lib/adapters/memory_adapter.js';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JSONWebKeySet, type JWK } from 'jose';

export type IdpAlg = 'RS256' | 'ES256' | 'PS256' | 'EdDSA';

export interface IdpClient {
  clientId: string;
  clientSecret: string;
  groups: string[];
  /** More claims for this client's access tokens (e.g. attest_kind, act). */
  claims?: Record<string, unknown>;
}

/** A person who can sign in at the harness's login form. */
export interface IdpUser {
  username: string;
  password: string;
  /** Default `user:<username>`. */
  sub?: string;
  name?: string;
  email?: string;
  groups: string[];
}

/** An OIDC relying party using the authorization code flow with PKCE (e.g. the reviewer console). */
export interface IdpWebClient {
  clientId: string;
  /** Confidential (client_secret_basic) when set, public (token_endpoint_auth_method none) otherwise. */
  clientSecret?: string;
  redirectUris: string[];
}

export interface StartIdpOptions {
  /**
   * The `aud` of access tokens. An absolute URI is also used as the resource indicator (RFC 8707);
   * a bare name ('attest-gateway') is requested as `urn:attest:resource:<name>`, since resource
   * indicators must be absolute URIs, and the token still carries the bare name as `aud`.
   */
  audience: string;
  clients: IdpClient[];
  /** Signing algorithm of access tokens. Default RS256. */
  alg?: IdpAlg;
  /** Bind this port (e.g. one reserved with freePort() while the IdP was "down"). Default random. */
  port?: number;
  /** Default 600. */
  accessTokenTtlSec?: number;
  /** People for the authorization code flow. Default none. */
  users?: IdpUser[];
  /** Authorization code + PKCE clients. Default none. */
  webClients?: IdpWebClient[];
  /** Claim carrying the users' groups in ID and access tokens. Default 'groups'. */
  groupsClaim?: string;
}

export interface TestIdp {
  /** http://127.0.0.1:<port>, exactly as in the tokens' `iss`. */
  issuer: string;
  jwksUri: string;
  discoveryUrl: string;
  tokenEndpoint: string;
  port: number;
  audience: string;
  alg: IdpAlg;
  /** A fresh access token from the token endpoint (real HTTP request, client_secret_basic). */
  clientCredentialsToken(clientId: string): Promise<string>;
  /** Requests served by the JWKS endpoint so far (proves caching and rate limiting). */
  jwksRequests(): number;
  /** Requests served by the discovery endpoint so far. */
  discoveryRequests(): number;
  /**
   * New signing key with a new kid. The previous key stays published (as IdPs do during a
   * rotation) unless retainPrevious is false.
   */
  rotateKeys(opts?: { retainPrevious?: boolean }): Promise<void>;
  currentKid(): string;
  /** The public keys the JWKS endpoint serves, newest first. */
  publicJwks(): JSONWebKeySet;
  /**
   * Signs an arbitrary payload with the IdP's current private key: the same key the provider signs
   * with, for claim-level negative tests (expired, wrong audience, missing sub) that a correct
   * provider never issues. Nothing is defaulted: the payload is signed as given.
   */
  signAccessToken(payload: Record<string, unknown>, header?: Record<string, unknown>): Promise<string>;
  /** Successful and failed submissions of the login form so far. */
  logins(): { ok: number; failed: number };
  close(): Promise<void>;
}

interface SigningKey {
  kid: string;
  privateJwk: JWK;
  publicJwk: JWK;
  privateKey: CryptoKey;
}

async function newSigningKey(alg: IdpAlg): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}) });
  const kid = randomUUID();
  const meta = { kid, alg, use: 'sig' };
  return {
    kid,
    privateJwk: { ...(await exportJWK(privateKey)), ...meta },
    publicJwk: { ...(await exportJWK(publicKey)), ...meta },
    privateKey,
  };
}

/** A port that was free a moment ago (bind 0, read it, release it). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', resolve);
  });
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

export async function startIdp(opts: StartIdpOptions): Promise<TestIdp> {
  const alg = opts.alg ?? 'RS256';
  const ttl = opts.accessTokenTtlSec ?? 600;
  const clients = new Map(opts.clients.map((c) => [c.clientId, c]));
  const resource = URL.canParse(opts.audience) ? opts.audience : `urn:attest:resource:${encodeURIComponent(opts.audience)}`;
  let keys: SigningKey[] = [await newSigningKey(alg)];
  let jwksCount = 0;
  let discoveryCount = 0;

  const webClients = opts.webClients ?? [];
  const groupsClaim = opts.groupsClaim ?? 'groups';
  const users = (opts.users ?? []).map((u) => ({ ...u, sub: u.sub ?? `user:${u.username}` }));
  const usersBySub = new Map(users.map((u) => [u.sub, u]));
  const usersByName = new Map(users.map((u) => [u.username, u]));
  const loginCounts = { ok: 0, failed: 0 };

  /** The provider options only the authorization code flow needs. */
  const signInConfiguration = (): Partial<OidcConfiguration> => ({
    // Scope → claims; `groups` becomes a scope of its own.
    claims: { openid: ['sub'], profile: ['name', 'preferred_username'], email: ['email'], groups: [groupsClaim] },
    // Claims of the granted scopes go into the ID token too, not only to userinfo.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    interactions: { url: async (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
    findAccount: async (_ctx: unknown, sub: string) => {
      const user = usersBySub.get(sub);
      if (user === undefined) return undefined;
      return {
        accountId: sub,
        claims: async () => ({
          sub,
          preferred_username: user.username,
          ...(user.name === undefined ? {} : { name: user.name }),
          ...(user.email === undefined ? {} : { email: user.email }),
          [groupsClaim]: [...user.groups],
        }),
      };
    },
    // First-party clients: consent is implied, so the only interaction is the login form.
    loadExistingGrant: async (ctx: GrantContext) => {
      const grantId = ctx.oidc.result?.consent?.grantId ?? ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId !== undefined) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope('openid profile email groups');
      grant.addResourceScope(resource, '');
      await grant.save();
      return grant;
    },
  });

  const adapter = createMemoryAdapter();
  const server: Server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const issuer = `http://127.0.0.1:${port}`;

  const configuration = (): OidcConfiguration => ({
    adapter,
    jwks: { keys: keys.map((k) => ({ ...k.privateJwk })) },
    clients: [
      ...opts.clients.map((c) => ({
        client_id: c.clientId,
        client_secret: c.clientSecret,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
      })),
      ...webClients.map((c) => ({
        client_id: c.clientId,
        ...(c.clientSecret === undefined ? {} : { client_secret: c.clientSecret }),
        grant_types: ['authorization_code'],
        response_types: ['code'],
        redirect_uris: c.redirectUris,
        token_endpoint_auth_method: c.clientSecret === undefined ? 'none' : 'client_secret_basic',
      })),
    ],
    ...(webClients.length === 0 ? {} : signInConfiguration()),
    clientDefaults: { id_token_signed_response_alg: alg },
    features: {
      clientCredentials: { enabled: true },
      devInteractions: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => resource,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx: unknown, resourceIndicator: string) => {
          if (resourceIndicator !== resource) throw new oidcErrors.InvalidTarget();
          // Sign with the newest key by kid, as an IdP does right after a rotation.
          return { scope: '', audience: opts.audience, accessTokenTTL: ttl, accessTokenFormat: 'jwt', jwt: { sign: { alg, kid: keys[0]?.kid } } };
        },
      },
    },
    extraTokenClaims: async (_ctx, token) => {
      const client = token.clientId === undefined ? undefined : clients.get(token.clientId);
      if (client !== undefined) return { ...client.claims, groups: [...client.groups] };
      // A signed-in person's access token carries their groups, as their ID token does.
      const user = token.accountId === undefined ? undefined : usersBySub.get(token.accountId);
      return user === undefined ? undefined : { [groupsClaim]: [...user.groups] };
    },
    // Explicit lifetimes for the sign-in artifacts too (the provider nags about its defaults).
    ttl: { ClientCredentials: ttl, AccessToken: ttl, IdToken: ttl, Interaction: 600, Grant: 3600, Session: 3600 },
  });

  // The provider's key store is fixed at construction, so a rotation builds a new provider behind
  // the same listener; clients are static, and JWT access tokens need no server-side state.
  let provider = new Provider(issuer, configuration()) as InteractiveProvider;
  let handler = provider.callback();
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path === '/jwks') jwksCount += 1;
    else if (path === '/.well-known/openid-configuration') discoveryCount += 1;
    if (path.startsWith('/interaction/')) {
      loginInteraction(provider, req, res, usersByName, loginCounts).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`test IdP interaction failed: ${err instanceof Error ? err.message : String(err)}`);
      });
      return;
    }
    handler(req, res);
  });

  const current = (): SigningKey => keys[0] as SigningKey;

  return {
    issuer,
    jwksUri: `${issuer}/jwks`,
    discoveryUrl: `${issuer}/.well-known/openid-configuration`,
    tokenEndpoint: `${issuer}/token`,
    port,
    audience: opts.audience,
    alg,

    async clientCredentialsToken(clientId: string): Promise<string> {
      const client = clients.get(clientId);
      if (client === undefined) throw new Error(`test IdP: unknown client ${clientId}`);
      // RFC 6749 §2.3.1: form-encode id and secret before base64.
      const basic = Buffer.from(`${encodeURIComponent(client.clientId)}:${encodeURIComponent(client.clientSecret)}`).toString('base64');
      const res = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'client_credentials', resource }).toString(),
      });
      const body = (await res.json()) as { access_token?: string; error?: string; error_description?: string };
      if (res.status !== 200 || typeof body.access_token !== 'string') {
        throw new Error(`test IdP: token request failed with HTTP ${res.status}: ${body.error ?? ''} ${body.error_description ?? ''}`);
      }
      return body.access_token;
    },

    jwksRequests: () => jwksCount,
    discoveryRequests: () => discoveryCount,

    async rotateKeys(rotateOpts = {}): Promise<void> {
      const next = await newSigningKey(alg);
      keys = rotateOpts.retainPrevious === false ? [next] : [next, ...keys];
      provider = new Provider(issuer, configuration()) as InteractiveProvider;
      handler = provider.callback();
    },

    currentKid: () => current().kid,

    publicJwks: () => ({ keys: keys.map((k) => ({ ...k.publicJwk })) }),

    async signAccessToken(payload, header = {}): Promise<string> {
      const key = current();
      return new SignJWT(payload).setProtectedHeader({ alg, kid: key.kid, typ: 'at+jwt', ...header }).sign(key.privateKey);
    },

    logins: () => ({ ...loginCounts }),

    async close(): Promise<void> {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections(); // keep-alive sockets from fetch would hold close() open
      });
    },
  };
}

// ---- the login form (authorization code flow) ----

/** The parts of oidc-provider's Grant the harness uses (its typings are declared by hand). */
interface GrantLike {
  addOIDCScope(scope: string): void;
  addResourceScope(resource: string, scope: string): void;
  save(): Promise<string>;
}
interface GrantContext {
  oidc: {
    result?: { consent?: { grantId?: string } };
    session: { accountId: string; grantIdFor(clientId: string): string | undefined };
    client: { clientId: string };
    provider: { Grant: { new (init: { clientId: string; accountId: string }): GrantLike; find(id: string): Promise<GrantLike | undefined> } };
  };
}
interface InteractiveProvider extends Provider {
  interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<{ uid: string; prompt: { name: string }; params: Record<string, unknown> }>;
  interactionFinished(req: IncomingMessage, res: ServerResponse, result: Record<string, unknown>, opts?: { mergeWithLastSubmission?: boolean }): Promise<void>;
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(uid: string, clientId: string, error?: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in - test IdP</title></head>
<body><main>
<h1>Sign in</h1>
<p>to continue to ${escapeHtml(clientId)}</p>
${error === undefined ? '' : `<p role="alert">${escapeHtml(error)}</p>`}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<label for="username">Username</label> <input id="username" name="username" autocomplete="username" required>
<label for="password">Password</label> <input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
</main></body></html>`;
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  let body = '';
  for await (const chunk of req) {
    body += String(chunk);
    if (body.length > 16_384) throw new Error('login form too large');
  }
  return new URLSearchParams(body);
}

/**
 * GET /interaction/:uid shows the form; POST /interaction/:uid/login checks the user and finishes the
 * login prompt, after which the provider issues the code (consent is implied by loadExistingGrant).
 */
async function loginInteraction(
  provider: InteractiveProvider,
  req: IncomingMessage,
  res: ServerResponse,
  usersByName: ReadonlyMap<string, IdpUser & { sub: string }>,
  counts: { ok: number; failed: number },
): Promise<void> {
  const html = (status: number, body: string) => {
    res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(body);
  };
  let details: Awaited<ReturnType<InteractiveProvider['interactionDetails']>>;
  try {
    details = await provider.interactionDetails(req, res);
  } catch {
    return html(400, '<!doctype html><title>Sign-in expired</title><p>This sign-in has expired or was not started here. Start again from the application.</p>');
  }
  const clientId = String(details.params.client_id ?? '');
  if (details.prompt.name !== 'login') {
    // Consent is granted by loadExistingGrant, so any other prompt is a harness bug worth seeing.
    return html(500, `<!doctype html><title>Unexpected prompt</title><p>unexpected prompt ${escapeHtml(details.prompt.name)}</p>`);
  }
  if (req.method === 'GET') return html(200, loginPage(details.uid, clientId));
  if (req.method !== 'POST') return html(405, '<!doctype html><title>Method not allowed</title>');
  const form = await readForm(req);
  const user = usersByName.get(form.get('username') ?? '');
  if (user === undefined || user.password !== form.get('password')) {
    counts.failed += 1;
    return html(401, loginPage(details.uid, clientId, 'Unknown username or wrong password.'));
  }
  counts.ok += 1;
  await provider.interactionFinished(req, res, { login: { accountId: user.sub } }, { mergeWithLastSubmission: false });
}
