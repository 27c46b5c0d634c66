/**
 * A real OpenID provider (panva's oidc-provider, the certified implementation) in-process on
 * 127.0.0.1, for integration and end-to-end tests and benchmarks. Callers get access tokens the way
 * agents do: a client_credentials request over HTTP to the token endpoint, with a resource
 * indicator (RFC 8707) so the token is a JWT (RFC 9068) for the gateway's audience.
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
    clients: opts.clients.map((c) => ({
      client_id: c.clientId,
      client_secret: c.clientSecret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    })),
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
      if (client === undefined) return undefined;
      return { ...client.claims, groups: [...client.groups] };
    },
    ttl: { ClientCredentials: ttl, AccessToken: ttl },
  });

  // The provider's key store is fixed at construction, so a rotation builds a new provider behind
  // the same listener; clients are static, and JWT access tokens need no server-side state.
  let handler = new Provider(issuer, configuration()).callback();
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/jwks') jwksCount += 1;
    else if (path === '/.well-known/openid-configuration') discoveryCount += 1;
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
      handler = new Provider(issuer, configuration()).callback();
    },

    currentKid: () => current().kid,

    publicJwks: () => ({ keys: keys.map((k) => ({ ...k.publicJwk })) }),

    async signAccessToken(payload, header = {}): Promise<string> {
      const key = current();
      return new SignJWT(payload).setProtectedHeader({ alg, kid: key.kid, typ: 'at+jwt', ...header }).sign(key.privateKey);
    },

    async close(): Promise<void> {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections(); // keep-alive sockets from fetch would hold close() open
      });
    },
  };
}
