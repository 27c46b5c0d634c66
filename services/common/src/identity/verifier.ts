import {
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  errors,
  jwtVerify,
  type CryptoKey,
  type FetchImplementation,
  type FlattenedJWSInput,
  type JSONWebKeySet,
  type JWSHeaderParameters,
  type JWTPayload,
  type JWTVerifyOptions,
  type JWTVerifyResult,
} from 'jose';
import { createHash } from 'node:crypto';
import { AttestError } from '../errors';
import { AuthError } from './errors';
import { principalFrom } from './principal';
import type {
  IdentityLogger,
  IssuerOptions,
  IssuerStatus,
  Principal,
  TokenVerifier,
  TokenVerifierOptions,
} from './types';

/** Asymmetric algorithms accepted by default. */
export const DEFAULT_ALGORITHMS: readonly string[] = [
  'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA',
];
/** What may be configured: the defaults plus the fully-specified Ed25519 name (RFC 9864). */
const PERMITTED_ALGORITHMS: ReadonlySet<string> = new Set([...DEFAULT_ALGORITHMS, 'Ed25519']);

const DEFAULTS = {
  clockToleranceSec: 30,
  maxTokenBytes: 8192,
  verifiedCacheSize: 10_000,
  jwksCooldownMs: 30_000,
  jwksCacheMaxAgeMs: 600_000,
  httpTimeoutMs: 5_000,
  issuerRetryMs: 1_000,
};
/** Discovery documents and key sets are small; anything bigger is not what we asked for. */
const MAX_METADATA_BYTES = 1024 * 1024;
/** Bound on signature attempts for a kid-less token when several published keys fit it. */
const MAX_KEY_CANDIDATES = 8;
const B64URL = /^[A-Za-z0-9_-]+$/;

const NOOP_LOGGER: IdentityLogger = { warn() {}, info() {}, debug() {} };

type KeySet = {
  (protectedHeader?: JWSHeaderParameters, token?: FlattenedJWSInput): Promise<CryptoKey>;
  jwks: () => JSONWebKeySet | undefined;
  reload?: () => Promise<void>;
  reloading?: boolean;
};

export type IdentityConfigErrorCode = 'identity_config_invalid';

function configError(where: string, message: string, fix: string): AttestError<IdentityConfigErrorCode> {
  return new AttestError('identity_config_invalid', message, { where, fix });
}

function isLoopbackHost(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127(\.\d{1,3}){3}$/.test(hostname);
}

/** https anywhere; http only on loopback unless the operator opted in for this issuer. */
function insecureUrlProblem(raw: string, allowInsecureHttp: boolean): string | undefined {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'is not a valid URL';
  }
  if (url.protocol === 'https:') return undefined;
  if (url.protocol === 'http:' && (allowInsecureHttp || isLoopbackHost(url.hostname))) return undefined;
  return `uses ${url.protocol}//; signing keys must be fetched over https (http is allowed only on loopback, or with allowInsecureHttp)`;
}

export function defaultDiscoveryUrl(issuer: string): string {
  return `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
}

function positive(name: string, value: number | undefined, fallback: number, allowZero = false): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
    throw configError(name, `${name} must be a ${allowZero ? 'non-negative' : 'positive'} number`, `set ${name} to a number of ${name.endsWith('Sec') ? 'seconds' : name.endsWith('Bytes') ? 'bytes' : 'milliseconds'}`);
  }
  return value;
}

function validateIssuer(opts: IssuerOptions, where: string): void {
  if (typeof opts.issuer !== 'string' || opts.issuer.length === 0) {
    throw configError(`${where}.issuer`, 'issuer must be a non-empty string (the exact `iss` value of its tokens)', 'copy `issuer` from the provider\'s /.well-known/openid-configuration');
  }
  if (!Array.isArray(opts.audiences) || opts.audiences.length === 0 || opts.audiences.some((a) => typeof a !== 'string' || a.length === 0)) {
    throw configError(`${where}.audiences`, 'audiences must list at least one non-empty audience', 'list the audience (resource) your IdP puts in `aud` for this gateway');
  }
  for (const alg of opts.algorithms ?? []) {
    if (/^none$/i.test(alg) || /^HS/i.test(alg)) {
      // A shared-secret algorithm next to a published public key is the classic key-confusion hole.
      throw configError(`${where}.algorithms`, `algorithm ${alg} is not allowed: only asymmetric signatures are accepted`, `remove ${alg}; use ${DEFAULT_ALGORITHMS.join(', ')}`);
    }
    if (!PERMITTED_ALGORITHMS.has(alg)) {
      throw configError(`${where}.algorithms`, `unknown algorithm ${alg}`, `use one of ${[...PERMITTED_ALGORITHMS].join(', ')}`);
    }
  }
  if (opts.algorithms !== undefined && opts.algorithms.length === 0) {
    throw configError(`${where}.algorithms`, 'algorithms is empty, so no token could ever verify', 'remove the setting to use the defaults, or list the algorithms your IdP signs with');
  }
  const sources = [opts.jwks !== undefined, opts.jwksUri !== undefined, opts.discoveryUrl !== undefined].filter(Boolean).length;
  if (sources > 1) {
    throw configError(where, 'give only one of jwks, jwksUri, discoveryUrl', 'keep the one that tells where this issuer\'s keys are');
  }
  if (opts.jwks !== undefined) {
    const keys: unknown = (opts.jwks as { keys?: unknown }).keys;
    if (!Array.isArray(keys) || keys.some((k) => k === null || typeof k !== 'object' || 'd' in k || 'k' in k)) {
      throw configError(`${where}.jwks`, 'jwks must be a JSON Web Key Set of public keys only', 'publish only the public half of each key (no "d" or "k" members)');
    }
    try {
      createLocalJWKSet(opts.jwks);
    } catch (cause) {
      throw new AttestError('identity_config_invalid', 'jwks is not a valid JSON Web Key Set', { where: `${where}.jwks`, fix: 'provide {"keys": [...]} with public JWKs', cause });
    }
    return;
  }
  const url = opts.jwksUri ?? opts.discoveryUrl ?? defaultDiscoveryUrl(opts.issuer);
  const field = opts.jwksUri !== undefined ? 'jwksUri' : opts.discoveryUrl !== undefined ? 'discoveryUrl' : 'issuer';
  const problem = insecureUrlProblem(url, opts.allowInsecureHttp === true);
  if (problem !== undefined) {
    throw configError(`${where}.${field}`, `${field === 'issuer' ? 'discovery URL derived from issuer' : field} ${problem}`, field === 'issuer' ? 'use an https issuer, or give jwksUri / jwks' : 'use an https URL');
  }
}

interface Verified {
  principal: Principal;
  nbf: number | undefined;
  keysVersion: number;
}

interface CacheEntry extends Verified {
  runtime: IssuerRuntime;
}

function copyPrincipal(p: Principal): Principal {
  const copy: Principal = { ...p, groups: [...p.groups] };
  if (p.amr !== undefined) copy.amr = [...p.amr];
  return copy;
}

interface Parsed {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
}

function decodeSegment(segment: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
  } catch {
    throw new AuthError('token_malformed', { detail: `${what} is not JSON` });
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new AuthError('token_malformed', { detail: `${what} is not a JSON object` });
  }
  return value as Record<string, unknown>;
}

/** Structure only, nothing trusted: enough to reject early and to route by `iss`. */
function parseUnverified(token: string): Parsed {
  const dot1 = token.indexOf('.');
  const dot2 = dot1 < 0 ? -1 : token.indexOf('.', dot1 + 1);
  if (dot1 <= 0 || dot2 < 0 || token.indexOf('.', dot2 + 1) !== -1) {
    throw new AuthError('token_malformed', { detail: 'not three dot-separated parts (a JWS compact JWT)' });
  }
  const h = token.slice(0, dot1);
  const p = token.slice(dot1 + 1, dot2);
  const s = token.slice(dot2 + 1);
  // An empty signature is let through here so that `alg: none` is reported as what it is.
  if (!B64URL.test(h) || !B64URL.test(p) || (s.length > 0 && !B64URL.test(s))) {
    throw new AuthError('token_malformed', { detail: 'a part is not base64url' });
  }
  return { header: decodeSegment(h, 'header'), payload: decodeSegment(p, 'payload') };
}

/** Per-issuer state: config, lazily discovered key set, failure backoff. */
class IssuerRuntime {
  readonly options: IssuerOptions;
  readonly algorithms: ReadonlySet<string>;
  private readonly verifyOptions: Omit<JWTVerifyOptions, 'currentDate'>;
  private keySet: KeySet | undefined;
  private pending: Promise<KeySet> | undefined;
  private failedAt = Number.NEGATIVE_INFINITY;
  private lastFailure = '';
  private jwksFetchedAt = Number.NEGATIVE_INFINITY;
  /** Bumped on every successful JWKS fetch: cached verifications from older key sets are void. */
  keysVersion = 0;

  constructor(
    options: IssuerOptions,
    private readonly cfg: {
      clockToleranceSec: number;
      jwksCooldownMs: number;
      jwksCacheMaxAgeMs: number;
      httpTimeoutMs: number;
      issuerRetryMs: number;
      now: () => number;
      logger: IdentityLogger;
    },
  ) {
    this.options = options;
    this.algorithms = new Set(options.algorithms ?? DEFAULT_ALGORITHMS);
    const required = new Set(['sub', 'exp', ...(options.requiredClaims ?? ['iat'])]);
    this.verifyOptions = {
      issuer: options.issuer,
      audience: options.audiences,
      algorithms: [...this.algorithms],
      requiredClaims: [...required],
      clockTolerance: cfg.clockToleranceSec,
    };
    if (options.jwks !== undefined) this.keySet = createLocalJWKSet(options.jwks);
    else if (options.jwksUri !== undefined) this.keySet = this.remote(options.jwksUri);
  }

  get issuer(): string {
    return this.options.issuer;
  }

  async verify(token: string): Promise<Verified> {
    const nowMs = this.cfg.now();
    // Taken before the key lookup: if the key set changes meanwhile, the cache entry is born stale
    // (one extra verification) rather than outliving a key the issuer withdrew.
    const keysVersion = this.keysVersion;
    const options: JWTVerifyOptions = { ...this.verifyOptions, currentDate: new Date(nowMs) };
    let result: JWTVerifyResult;
    try {
      try {
        result = await jwtVerify(token, this.getKey, options);
      } catch (err) {
        if (!(err instanceof errors.JWKSMultipleMatchingKeys)) throw err;
        result = await this.verifyWithCandidates(token, err, options);
      }
    } catch (err) {
      throw this.classify(err);
    }
    const payload = result.payload;
    if (typeof payload.sub !== 'string' || payload.sub.length === 0) {
      throw new AuthError('token_malformed', { issuer: this.issuer, detail: '"sub" is not a non-empty string' });
    }
    // jose checks iat only together with maxTokenAge; a token issued in the future is not valid yet.
    if (typeof payload.iat === 'number' && payload.iat > Math.floor(nowMs / 1000) + this.cfg.clockToleranceSec) {
      throw new AuthError('token_not_yet_valid', { issuer: this.issuer, detail: '"iat" is in the future' });
    }
    this.maybeRefreshInBackground();
    return {
      principal: principalFrom(payload as JWTPayload, this.options),
      nbf: typeof payload.nbf === 'number' ? payload.nbf : undefined,
      keysVersion,
    };
  }

  /** Called on a verified-token cache hit: keeps the age-based key refresh going. */
  touch(): void {
    this.maybeRefreshInBackground();
  }

  /** Discovery (once, lazily) and the key set. Retries after a failure, never gives up for good. */
  keys(): Promise<KeySet> {
    if (this.keySet !== undefined) return Promise.resolve(this.keySet);
    if (this.pending !== undefined) return this.pending;
    const backoff = this.backoff();
    if (backoff !== undefined) return Promise.reject(backoff);
    const pending = this.discover().then(
      (ks) => {
        this.keySet = ks;
        return ks;
      },
      (err: unknown) => {
        this.markFailed('discovery', err);
        throw this.unavailable(err);
      },
    );
    this.pending = pending;
    void pending.finally(() => {
      if (this.pending === pending) this.pending = undefined;
    }).catch(() => {});
    return pending;
  }

  async warm(): Promise<IssuerStatus> {
    try {
      const ks = await this.keys();
      if (ks.reload !== undefined && ks.jwks() === undefined) await ks.reload();
      return { issuer: this.issuer, ok: true };
    } catch (err) {
      const e = err instanceof AuthError ? err : this.unavailable(err);
      return { issuer: this.issuer, ok: false, error: e.detail ?? e.message };
    }
  }

  private readonly getKey = async (header: JWSHeaderParameters, token: FlattenedJWSInput): Promise<CryptoKey> => {
    const ks = await this.keys();
    try {
      return await ks(header, token);
    } catch (err) {
      if (err instanceof errors.JWKSMultipleMatchingKeys || err instanceof AuthError) throw err;
      if (err instanceof errors.JWKSNoMatchingKey) {
        const published = header.kid !== undefined && (ks.jwks()?.keys ?? []).some((k) => k.kid === header.kid);
        throw published
          ? new AuthError('bad_signature', { issuer: this.issuer, detail: 'the kid is published, but for a different key type or algorithm' })
          : new AuthError('unknown_kid', { issuer: this.issuer, detail: ks.reload === undefined ? 'no such key' : 'no such key, after a refetch or within the refetch cooldown' });
      }
      if (err instanceof errors.JOSENotSupported) throw new AuthError('alg_not_allowed', { issuer: this.issuer });
      throw this.unavailable(err);
    }
  };

  /** A kid-less token that fits several published keys: try each (bounded), as jose's docs show. */
  private async verifyWithCandidates(
    token: string,
    multiple: errors.JWKSMultipleMatchingKeys,
    options: JWTVerifyOptions,
  ): Promise<JWTVerifyResult> {
    let tried = 0;
    for await (const key of multiple) {
      if (++tried > MAX_KEY_CANDIDATES) break;
      try {
        return await jwtVerify(token, key, options);
      } catch (err) {
        if (!(err instanceof errors.JWSSignatureVerificationFailed)) throw err;
      }
    }
    throw new errors.JWSSignatureVerificationFailed();
  }

  private classify(err: unknown): AuthError {
    const issuer = this.issuer;
    if (err instanceof AuthError) return err;
    if (err instanceof errors.JWTExpired) return new AuthError('token_expired', { issuer });
    if (err instanceof errors.JWTClaimValidationFailed) {
      if (err.reason === 'missing') {
        return new AuthError('missing_claim', { issuer, message: `the access token lacks the required "${err.claim}" claim`, detail: err.claim });
      }
      if (err.reason === 'invalid') return new AuthError('token_malformed', { issuer, detail: safeDetail(err.message) });
      switch (err.claim) {
        case 'aud':
          return new AuthError('wrong_audience', { issuer });
        case 'iss':
          return new AuthError('unknown_issuer');
        case 'nbf':
        case 'iat':
          return new AuthError('token_not_yet_valid', { issuer, detail: `"${err.claim}" is in the future` });
        default:
          return new AuthError('token_malformed', { issuer, detail: safeDetail(err.message) });
      }
    }
    if (err instanceof errors.JWSSignatureVerificationFailed) return new AuthError('bad_signature', { issuer });
    if (err instanceof errors.JOSEAlgNotAllowed) return new AuthError('alg_not_allowed', { issuer });
    // The algorithm was already checked against jose's table, so "not supported" here is about
    // the token's structure (e.g. an unrecognised critical header), not the algorithm.
    if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid || err instanceof errors.JOSENotSupported) {
      return new AuthError('token_malformed', { issuer, detail: safeDetail(err.message) });
    }
    // E.g. an RSA key under 2048 bits: the key cannot vouch for the token.
    const detail = safeDetail(err instanceof Error ? err.message : String(err));
    this.cfg.logger.warn({ issuer, error: detail }, 'identity: unexpected verification error, treated as bad signature');
    return new AuthError('bad_signature', { issuer, detail });
  }

  private async discover(): Promise<KeySet> {
    const url = this.options.discoveryUrl ?? defaultDiscoveryUrl(this.issuer);
    const doc = await fetchJson(url, this.cfg.httpTimeoutMs);
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new Error('discovery document is not a JSON object');
    const { issuer, jwks_uri: jwksUri } = doc as Record<string, unknown>;
    // OpenID Connect Discovery 1.0 §4.3: the document must name exactly the issuer we asked about.
    if (issuer !== this.issuer) throw new Error('discovery document names a different issuer');
    if (typeof jwksUri !== 'string') throw new Error('discovery document has no jwks_uri');
    const problem = insecureUrlProblem(jwksUri, this.options.allowInsecureHttp === true);
    if (problem !== undefined) throw new Error(`jwks_uri ${problem}`);
    this.cfg.logger.info({ issuer: this.issuer, jwksUri }, 'identity: issuer discovered');
    return this.remote(jwksUri);
  }

  private remote(jwksUri: string): KeySet {
    return createRemoteJWKSet(new URL(jwksUri), {
      cooldownDuration: this.cfg.jwksCooldownMs,
      // Age-based refresh is ours (in the background, keeping old keys on failure): jose's own
      // would hold the request and fail it when the IdP is down, on every request, unthrottled.
      cacheMaxAge: Number.POSITIVE_INFINITY,
      timeoutDuration: this.cfg.httpTimeoutMs,
      [customFetch]: this.fetchJwks,
    });
  }

  /** Every JWKS fetch jose makes comes through here: backoff, validation, bookkeeping. */
  private readonly fetchJwks: FetchImplementation = async (url, init) => {
    const backoff = this.backoff();
    if (backoff !== undefined) throw backoff;
    try {
      const text = await fetchText(url, init.signal, init.headers);
      const json: unknown = JSON.parse(text);
      createLocalJWKSet(json as JSONWebKeySet); // throws on a malformed set, before jose swaps it in
      this.jwksFetchedAt = Date.now();
      this.failedAt = Number.NEGATIVE_INFINITY;
      this.keysVersion += 1;
      const keys = (json as JSONWebKeySet).keys;
      this.cfg.logger.info({ issuer: this.issuer, keys: keys.length, kids: keys.map((k) => k.kid ?? null) }, 'identity: signing keys fetched');
      return new Response(text, { status: 200, headers: { 'content-type': 'application/json' } });
    } catch (err) {
      this.markFailed('jwks', err);
      throw err;
    }
  };

  /** Stale-while-revalidate: past max age, refresh once in the background; old keys stay in use. */
  private maybeRefreshInBackground(): void {
    const ks = this.keySet;
    if (ks?.reload === undefined || ks.reloading === true) return;
    const t = Date.now();
    if (t - this.jwksFetchedAt < this.cfg.jwksCacheMaxAgeMs || t - this.failedAt < this.cfg.issuerRetryMs) return;
    this.jwksFetchedAt = t; // one attempt per max-age window even if many requests race here
    ks.reload().catch((err: unknown) => {
      this.jwksFetchedAt = Number.NEGATIVE_INFINITY; // retry after issuerRetryMs, not after max age
      this.cfg.logger.warn({ issuer: this.issuer, error: errorText(err) }, 'identity: background key refresh failed; keeping the cached keys');
    });
  }

  private backoff(): AuthError | undefined {
    if (Date.now() - this.failedAt >= this.cfg.issuerRetryMs) return undefined;
    return new AuthError('issuer_unavailable', { issuer: this.issuer, detail: `recent failure, retrying shortly: ${this.lastFailure}` });
  }

  private markFailed(what: 'discovery' | 'jwks', err: unknown): void {
    if (err instanceof AuthError) return; // our own fast-fail, not a new failure
    this.failedAt = Date.now();
    this.lastFailure = `${what}: ${errorText(err)}`;
    this.cfg.logger.warn({ issuer: this.issuer, error: this.lastFailure }, 'identity: issuer unavailable');
  }

  private unavailable(err: unknown): AuthError {
    if (err instanceof AuthError) return err;
    return new AuthError('issuer_unavailable', { issuer: this.issuer, detail: errorText(err), cause: err });
  }
}

const STANDARD_NAMES = new Set(['alg', 'crit', 'b64', 'kid', 'typ', 'iss', 'sub', 'aud', 'exp', 'nbf', 'iat', 'jti']);

/** jose messages sometimes quote names taken from the token (e.g. a crit entry): blank those. */
function safeDetail(message: string): string {
  return message.replace(/"([^"]*)"/g, (m, name: string) => (STANDARD_NAMES.has(name) ? m : '"…"')).slice(0, 200);
}

function errorText(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? ` (${err.cause.message})` : '';
  return `${err.message}${cause}`;
}

async function fetchText(url: string, signal: AbortSignal, headers?: Headers | Record<string, string>): Promise<string> {
  // No redirects (as jose does for JWKS): the configured/discovered URL is the one we trust.
  const res = await fetch(url, { method: 'GET', redirect: 'manual', signal, ...(headers === undefined ? {} : { headers }) });
  if (res.status !== 200) {
    await res.body?.cancel();
    throw new Error(`${url} answered HTTP ${res.status}`);
  }
  const declared = Number(res.headers.get('content-length') ?? '0');
  if (declared > MAX_METADATA_BYTES) {
    await res.body?.cancel();
    throw new Error(`${url} answered more than ${MAX_METADATA_BYTES} bytes`);
  }
  const text = await res.text();
  if (text.length > MAX_METADATA_BYTES) throw new Error(`${url} answered more than ${MAX_METADATA_BYTES} bytes`);
  return text;
}

async function fetchJson(url: string, timeoutMs: number): Promise<unknown> {
  const text = await fetchText(url, AbortSignal.timeout(timeoutMs), { accept: 'application/json' });
  return JSON.parse(text) as unknown;
}

/**
 * Builds the verifier the gateway uses on every request. Checks, in order: presence, size (before
 * any parsing), structure, algorithm (none / HS* / outside the allowlist, before any key lookup),
 * issuer (routed by the unverified `iss`, then verified), signature, then `iss`, `aud`, `exp`,
 * `nbf`, `iat` with the clock tolerance and the required claims.
 */
export function createTokenVerifier(opts: TokenVerifierOptions): TokenVerifier {
  if (!Array.isArray(opts.issuers) || opts.issuers.length === 0) {
    throw configError('issuers', 'no token issuer is configured, so no caller could authenticate', 'add your OIDC provider (or, for a trial only, the development issuer)');
  }
  const cfg = {
    clockToleranceSec: positive('clockToleranceSec', opts.clockToleranceSec, DEFAULTS.clockToleranceSec, true),
    maxTokenBytes: positive('maxTokenBytes', opts.maxTokenBytes, DEFAULTS.maxTokenBytes),
    jwksCooldownMs: positive('jwksCooldownMs', opts.jwksCooldownMs, DEFAULTS.jwksCooldownMs, true),
    jwksCacheMaxAgeMs: positive('jwksCacheMaxAgeMs', opts.jwksCacheMaxAgeMs, DEFAULTS.jwksCacheMaxAgeMs),
    httpTimeoutMs: Math.round(positive('httpTimeoutMs', opts.httpTimeoutMs, DEFAULTS.httpTimeoutMs)),
    issuerRetryMs: positive('issuerRetryMs', opts.issuerRetryMs, DEFAULTS.issuerRetryMs, true),
    verifiedCacheSize: Math.floor(positive('verifiedCacheSize', opts.verifiedCacheSize, DEFAULTS.verifiedCacheSize, true)),
    now: opts.now ?? Date.now,
    logger: opts.logger ?? NOOP_LOGGER,
  };
  const byIssuer = new Map<string, IssuerRuntime>();
  opts.issuers.forEach((issuer, i) => {
    validateIssuer(issuer, `issuers.${i}`);
    if (byIssuer.has(issuer.issuer)) {
      throw configError(`issuers.${i}.issuer`, `issuer ${issuer.issuer} is listed twice`, 'merge the two entries (list all audiences in one)');
    }
    byIssuer.set(issuer.issuer, new IssuerRuntime(issuer, cfg));
  });
  const issuers = [...byIssuer.keys()];

  // Verified-token cache: an agent reuses one access token for many requests, so the signature is
  // checked once per token. Keyed by a SHA-256 of the token (the raw credential is not retained);
  // only tokens that fully verified get in; time claims are re-checked on every hit; an entry dies
  // with the key set it was verified against; bounded, oldest out first.
  const cache = new Map<string, CacheEntry>();
  const fromCache = (key: string): Principal | undefined => {
    const hit = cache.get(key);
    if (hit === undefined) return undefined;
    if (hit.keysVersion !== hit.runtime.keysVersion) {
      cache.delete(key);
      return undefined;
    }
    const nowSec = Math.floor(cfg.now() / 1000);
    const tol = cfg.clockToleranceSec;
    const issuer = hit.runtime.issuer;
    // Same rules as the full path (jose's for exp/nbf, ours for iat).
    if (hit.principal.expiresAt <= nowSec - tol) {
      cache.delete(key);
      throw new AuthError('token_expired', { issuer });
    }
    if ((hit.nbf !== undefined && hit.nbf > nowSec + tol) || (hit.principal.issuedAt !== undefined && hit.principal.issuedAt > nowSec + tol)) {
      throw new AuthError('token_not_yet_valid', { issuer });
    }
    hit.runtime.touch();
    return copyPrincipal(hit.principal);
  };

  return {
    get issuers() {
      return [...issuers];
    },

    async verify(token: string | undefined): Promise<Principal> {
      if (token === undefined || token === '') throw new AuthError('token_missing');
      if (typeof token !== 'string') throw new AuthError('token_malformed', { detail: 'not a string' });
      // Before any parsing: bounds the work an arbitrary caller can make us do.
      if (token.length > cfg.maxTokenBytes) {
        throw new AuthError('token_too_large', { message: `the access token is larger than the ${cfg.maxTokenBytes}-byte limit` });
      }
      const cacheKey = cfg.verifiedCacheSize > 0 ? createHash('sha256').update(token).digest('base64url') : undefined;
      if (cacheKey !== undefined) {
        const cached = fromCache(cacheKey);
        if (cached !== undefined) return cached;
      }
      const { header, payload } = parseUnverified(token);
      const alg = header.alg;
      if (typeof alg !== 'string' || alg.length === 0) throw new AuthError('token_malformed', { detail: 'header has no "alg"' });
      if (!PERMITTED_ALGORITHMS.has(alg)) {
        // none, HS* (e.g. HS256 keyed with the issuer's public key) and anything unknown.
        throw new AuthError('alg_not_allowed', { detail: /^none$/i.test(alg) ? 'unsigned token (alg none)' : /^HS/i.test(alg) ? 'symmetric algorithm' : 'unknown algorithm' });
      }
      if ('b64' in header) throw new AuthError('token_malformed', { detail: 'JWTs must not use the b64 header' });
      if (header.kid !== undefined && typeof header.kid !== 'string') throw new AuthError('token_malformed', { detail: '"kid" is not a string' });
      const iss = payload.iss;
      if (iss === undefined) {
        throw new AuthError('missing_claim', { message: 'the access token lacks the required "iss" claim', detail: 'iss' });
      }
      if (typeof iss !== 'string') throw new AuthError('token_malformed', { detail: '"iss" is not a string' });
      const runtime = byIssuer.get(iss);
      if (runtime === undefined) throw new AuthError('unknown_issuer');
      if (!runtime.algorithms.has(alg)) {
        throw new AuthError('alg_not_allowed', { issuer: runtime.issuer, detail: 'algorithm not in this issuer\'s allowlist' });
      }
      const verified = await runtime.verify(token);
      if (cacheKey !== undefined) {
        cache.set(cacheKey, { ...verified, runtime });
        if (cache.size > cfg.verifiedCacheSize) cache.delete(cache.keys().next().value as string);
      }
      return copyPrincipal(verified.principal);
    },

    async warm(): Promise<IssuerStatus[]> {
      return Promise.all([...byIssuer.values()].map((r) => r.warm()));
    },
  };
}

/**
 * The token from an Authorization header value, or undefined when there is none. A header with a
 * scheme other than Bearer is malformed rather than missing, so the caller learns what is wrong.
 */
export function extractBearerToken(authorization: string | string[] | undefined): string | undefined {
  if (authorization === undefined) return undefined;
  if (Array.isArray(authorization)) {
    if (authorization.length === 0) return undefined;
    if (authorization.length > 1) throw new AuthError('token_malformed', { message: 'send exactly one Authorization header' });
    authorization = authorization[0] as string;
  }
  const value = authorization.trim();
  if (value === '') return undefined;
  const m = /^Bearer +(\S+)$/i.exec(value);
  if (m === null) {
    throw new AuthError('token_malformed', { message: 'the Authorization header must be "Bearer <access token>"' });
  }
  return m[1];
}
