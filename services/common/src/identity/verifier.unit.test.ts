import fc from 'fast-check';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AttestError } from '../errors';
import {
  AUTH_FAILURE_REASONS,
  AuthError,
  createTokenVerifier,
  extractBearerToken,
  type IssuerOptions,
  type TokenVerifierOptions,
} from './index';

// Unit level: keys are local (IssuerOptions.jwks), so nothing here touches the network; the
// real-IdP behaviour (discovery, JWKS refresh, outages) is in verifier.int.test.ts.

const ISS = 'https://idp.example.com';
const AUD = 'attest-gateway';
const NOW_MS = Date.UTC(2026, 0, 15, 12, 0, 0);
const NOW = NOW_MS / 1000;

interface Key {
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

async function newKey(alg: 'ES256' | 'EdDSA' | 'RS256' = 'ES256', kid = `kid-${Math.random().toString(36).slice(2)}`): Promise<Key> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

function sign(key: Key, claims: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
  const alg = key.publicJwk.alg as string;
  return new SignJWT(claims).setProtectedHeader({ alg, kid: key.kid, ...header }).sign(key.privateKey);
}

const base = (extra: Record<string, unknown> = {}) => ({ iss: ISS, aud: AUD, sub: 'agent-7', client_id: 'agent-7', iat: NOW - 5, exp: NOW + 600, ...extra });

function verifierFor(keys: Key[], issuer: Partial<IssuerOptions> = {}, opts: Partial<TokenVerifierOptions> = {}) {
  return createTokenVerifier({
    now: () => NOW_MS,
    ...opts,
    issuers: [{ issuer: ISS, audiences: [AUD], jwks: { keys: keys.map((k) => k.publicJwk) }, ...issuer }],
  });
}

async function reasonOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof AuthError) return err.reason;
    throw err;
  }
  return 'accepted';
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('createTokenVerifier: configuration', () => {
  const ok: IssuerOptions = { issuer: ISS, audiences: [AUD] };
  const configCode = (fn: () => unknown) => {
    try {
      fn();
    } catch (err) {
      expect(err).toBeInstanceOf(AttestError);
      return `${(err as AttestError).code}@${(err as AttestError).where}`;
    }
    return 'accepted';
  };

  it('refuses HS* and none in the allowlist, in any case, as a configuration error', () => {
    for (const alg of ['HS256', 'hs512', 'none', 'None']) {
      expect(configCode(() => createTokenVerifier({ issuers: [{ ...ok, algorithms: ['RS256', alg] }] }))).toBe('identity_config_invalid@issuers.0.algorithms');
    }
  });

  it('refuses unknown algorithms and an empty allowlist', () => {
    expect(configCode(() => createTokenVerifier({ issuers: [{ ...ok, algorithms: ['ES256K'] }] }))).toBe('identity_config_invalid@issuers.0.algorithms');
    expect(configCode(() => createTokenVerifier({ issuers: [{ ...ok, algorithms: [] }] }))).toBe('identity_config_invalid@issuers.0.algorithms');
  });

  it('accepts every default asymmetric algorithm and Ed25519', () => {
    const all = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];
    expect(configCode(() => createTokenVerifier({ issuers: [{ ...ok, algorithms: all }] }))).toBe('accepted');
  });

  it('requires issuers, audiences and unique issuer entries', () => {
    expect(configCode(() => createTokenVerifier({ issuers: [] }))).toBe('identity_config_invalid@issuers');
    expect(configCode(() => createTokenVerifier({ issuers: [{ ...ok, audiences: [] }] }))).toBe('identity_config_invalid@issuers.0.audiences');
    expect(configCode(() => createTokenVerifier({ issuers: [ok, { ...ok, audiences: ['other'] }] }))).toBe('identity_config_invalid@issuers.1.issuer');
  });

  it('fetches keys over https only, except on loopback or when explicitly allowed', () => {
    expect(configCode(() => createTokenVerifier({ issuers: [{ ...ok, issuer: 'http://idp.corp.example' }] }))).toBe('identity_config_invalid@issuers.0.issuer');
    expect(configCode(() => createTokenVerifier({ issuers: [{ ...ok, jwksUri: 'http://idp.corp.example/jwks' }] }))).toBe('identity_config_invalid@issuers.0.jwksUri');
    expect(configCode(() => createTokenVerifier({ issuers: [{ ...ok, issuer: 'http://idp.corp.example', allowInsecureHttp: true }] }))).toBe('accepted');
    expect(configCode(() => createTokenVerifier({ issuers: [{ ...ok, issuer: 'http://127.0.0.1:8080' }] }))).toBe('accepted');
    expect(configCode(() => createTokenVerifier({ issuers: [{ ...ok, issuer: 'http://localhost:8080/realms/x' }] }))).toBe('accepted');
    // A non-URL issuer has nowhere to discover keys from.
    expect(configCode(() => createTokenVerifier({ issuers: [{ ...ok, issuer: 'urn:example:idp' }] }))).toBe('identity_config_invalid@issuers.0.issuer');
  });

  it('refuses private or symmetric keys in a local key set, and two key sources at once', async () => {
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const priv = await exportJWK(privateKey);
    expect(configCode(() => createTokenVerifier({ issuers: [{ ...ok, jwks: { keys: [priv] } }] }))).toBe('identity_config_invalid@issuers.0.jwks');
    expect(configCode(() => createTokenVerifier({ issuers: [{ ...ok, jwks: { keys: [{ kty: 'oct', k: 'c2VjcmV0' }] } }] }))).toBe('identity_config_invalid@issuers.0.jwks');
    expect(configCode(() => createTokenVerifier({ issuers: [{ ...ok, jwks: { keys: [] }, jwksUri: `${ISS}/jwks` }] }))).toBe('identity_config_invalid@issuers.0');
  });

  it('refuses negative or non-finite numeric options', () => {
    expect(configCode(() => createTokenVerifier({ issuers: [ok], clockToleranceSec: -1 }))).toBe('identity_config_invalid@clockToleranceSec');
    expect(configCode(() => createTokenVerifier({ issuers: [ok], maxTokenBytes: 0 }))).toBe('identity_config_invalid@maxTokenBytes');
    expect(configCode(() => createTokenVerifier({ issuers: [ok], httpTimeoutMs: Number.NaN }))).toBe('identity_config_invalid@httpTimeoutMs');
  });

  it('lists its issuers', () => {
    const v = createTokenVerifier({ issuers: [ok, { ...ok, issuer: 'https://other.example.com' }] });
    expect(v.issuers).toEqual([ISS, 'https://other.example.com']);
  });
});

describe('verify: mapping a verified token to a Principal', () => {
  it('maps the standard claims and never touches the network with local keys', async () => {
    const fetchSpy = vi.spyOn(globalThis, 'fetch');
    const key = await newKey();
    const token = await sign(key, base({ jti: 'tok-1', groups: ['payments', 'payments', 7], amr: ['mfa', 3], acr: 'urn:acr:gold' }));
    const p = await verifierFor([key]).verify(token);
    expect(p).toEqual({
      subject: 'agent-7',
      issuer: ISS,
      clientId: 'agent-7',
      groups: ['payments'],
      kind: 'human', // amr is a signed-in-person signal
      tokenId: 'tok-1',
      expiresAt: NOW + 600,
      issuedAt: NOW - 5,
      amr: ['mfa'],
      acr: 'urn:acr:gold',
    });
    expect(fetchSpy).not.toHaveBeenCalled();
  });

  it('reads groups from a dotted path, a namespaced claim, or a single string', async () => {
    const key = await newKey();
    const keycloak = await sign(key, base({ realm_access: { roles: ['auditors', 'devs'] } }));
    expect((await verifierFor([key], { groupsClaim: 'realm_access.roles' }).verify(keycloak)).groups).toEqual(['auditors', 'devs']);
    const auth0 = await sign(key, base({ 'https://attest.example/groups': ['ops'] }));
    expect((await verifierFor([key], { groupsClaim: 'https://attest.example/groups' }).verify(auth0)).groups).toEqual(['ops']);
    const single = await sign(key, base({ groups: 'solo' }));
    expect((await verifierFor([key]).verify(single)).groups).toEqual(['solo']);
    const none = await sign(key, base({ groups: { not: 'a list' } }));
    expect((await verifierFor([key]).verify(none)).groups).toEqual([]);
  });

  it.each([
    ['client credentials: sub equals client_id', { sub: 'svc', client_id: 'svc' }, 'service'],
    ['client credentials: sub equals azp', { sub: 'svc', client_id: undefined, azp: 'svc' }, 'service'],
    ['Auth0 client credentials', { sub: 'abc@clients', client_id: undefined, azp: 'abc', gty: 'client-credentials' }, 'service'],
    ['Azure AD app token', { sub: 'object-id', client_id: undefined, appid: 'app-1', idtyp: 'app' }, 'service'],
    ['Keycloak service account', { sub: 'uuid-1', client_id: undefined, azp: 'ci', preferred_username: 'service-account-ci' }, 'service'],
    ['a person signed in through a client', { sub: 'alice', client_id: 'cli', email: 'alice@example.com' }, 'human'],
    ['sub equals client but a human claim is present', { sub: 'svc', client_id: 'svc', name: 'Alice' }, 'human'],
    ['no client at all', { sub: 'bob', client_id: undefined }, 'human'],
    ['attest_kind claim', { sub: 'svc', client_id: 'svc', attest_kind: 'agent' }, 'agent'],
    ['attest_kind with an unknown value is ignored', { sub: 'svc', client_id: 'svc', attest_kind: 'root' }, 'service'],
  ] as const)('kind: %s', async (_name, claims, kind) => {
    const key = await newKey();
    const token = await sign(key, base(claims as Record<string, unknown>));
    expect((await verifierFor([key]).verify(token)).kind).toBe(kind);
  });

  it('lets kindByClientId (operator config) win over the attest_kind claim', async () => {
    const key = await newKey();
    const token = await sign(key, base({ attest_kind: 'human' }));
    expect((await verifierFor([key], { kindByClientId: { 'agent-7': 'agent' } }).verify(token)).kind).toBe('agent');
  });

  it('treats an RFC 8693 delegated token as the actor acting on behalf of the subject', async () => {
    const key = await newKey();
    const token = await sign(key, base({ sub: 'alice', client_id: 'coding-agent', act: { sub: 'coding-agent', act: { sub: 'orchestrator' } }, groups: ['devs'] }));
    const p = await verifierFor([key]).verify(token);
    expect(p).toMatchObject({ subject: 'coding-agent', onBehalfOf: 'alice', kind: 'agent', groups: ['devs'] });
  });

  it('marks principals dev only for an issuer configured dev, never because of a claim', async () => {
    const key = await newKey();
    const token = await sign(key, base({ attest_dev: true }));
    expect((await verifierFor([key]).verify(token)).dev).toBeUndefined();
    expect((await verifierFor([key], { dev: true }).verify(token)).dev).toBe(true);
  });
});

describe('verify: time claims with clock tolerance', () => {
  // jose's rule: expired when exp <= now - tolerance; not yet valid when nbf > now + tolerance.
  it.each([
    ['exp just inside tolerance', { exp: NOW - 29 }, 'accepted'],
    ['exp at the tolerance edge', { exp: NOW - 30 }, 'token_expired'],
    ['nbf at the tolerance edge', { nbf: NOW + 30 }, 'accepted'],
    ['nbf beyond tolerance', { nbf: NOW + 31 }, 'token_not_yet_valid'],
    ['iat at the tolerance edge', { iat: NOW + 30 }, 'accepted'],
    ['iat beyond tolerance', { iat: NOW + 31 }, 'token_not_yet_valid'],
  ])('%s', async (_name, claims, expected) => {
    const key = await newKey();
    expect(await reasonOf(verifierFor([key]).verify(await sign(key, base(claims))))).toBe(expected);
  });

  it('honours clockToleranceSec 0', async () => {
    const key = await newKey();
    const v = verifierFor([key], {}, { clockToleranceSec: 0 });
    expect(await reasonOf(v.verify(await sign(key, base({ exp: NOW }))))).toBe('token_expired');
    expect(await reasonOf(v.verify(await sign(key, base({ exp: NOW + 1 }))))).toBe('accepted');
    expect(await reasonOf(v.verify(await sign(key, base({ iat: NOW + 1 }))))).toBe('token_not_yet_valid');
  });
});

describe('verify: required claims and allowlists', () => {
  it('requires iat by default, and sub and exp always', async () => {
    const key = await newKey();
    const noIat = base();
    delete (noIat as Record<string, unknown>).iat;
    expect(await reasonOf(verifierFor([key]).verify(await sign(key, noIat)))).toBe('missing_claim');
    const relaxed = verifierFor([key], { requiredClaims: [] });
    expect(await reasonOf(relaxed.verify(await sign(key, noIat)))).toBe('accepted');
    const { sub: _sub, ...noSub } = base();
    const { exp: _exp, ...noExp } = base();
    expect(await reasonOf(relaxed.verify(await sign(key, noSub)))).toBe('missing_claim');
    expect(await reasonOf(relaxed.verify(await sign(key, noExp)))).toBe('missing_claim');
  });

  it('names the missing claim in the caller-safe message', async () => {
    const key = await newKey();
    const err = await verifierFor([key], { requiredClaims: ['jti'] }).verify(await sign(key, base())).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuthError);
    expect((err as AuthError).message).toContain('"jti"');
  });

  it('applies a narrower per-issuer algorithm allowlist before key lookup', async () => {
    const key = await newKey('ES256');
    expect(await reasonOf(verifierFor([key], { algorithms: ['EdDSA'] }).verify(await sign(key, base())))).toBe('alg_not_allowed');
  });

  it('accepts any of several audiences, and an aud array containing one of them', async () => {
    const key = await newKey();
    const v = verifierFor([key], { audiences: ['first', AUD] });
    expect(await reasonOf(v.verify(await sign(key, base({ aud: ['someone-else', AUD] }))))).toBe('accepted');
    expect(await reasonOf(v.verify(await sign(key, base({ aud: ['someone-else'] }))))).toBe('wrong_audience');
  });
});

describe('verify: key selection', () => {
  it('tries each candidate for a kid-less token when several keys fit, and fails closed', async () => {
    const [a, b] = [await newKey('ES256', 'a'), await newKey('ES256', 'b')];
    const v = verifierFor([a, b]);
    const kidless = await new SignJWT(base()).setProtectedHeader({ alg: 'ES256' }).sign(b.privateKey);
    expect((await v.verify(kidless)).subject).toBe('agent-7');
    const stranger = await newKey('ES256');
    const forged = await new SignJWT(base()).setProtectedHeader({ alg: 'ES256' }).sign(stranger.privateKey);
    expect(await reasonOf(v.verify(forged))).toBe('bad_signature');
  });

  it('routes by iss: a token claiming another configured issuer is checked against that issuer\'s keys', async () => {
    const [a, b] = [await newKey('ES256'), await newKey('EdDSA')];
    const v = createTokenVerifier({
      now: () => NOW_MS,
      issuers: [
        { issuer: ISS, audiences: [AUD], jwks: { keys: [a.publicJwk] } },
        { issuer: 'https://b.example.com', audiences: [AUD], jwks: { keys: [b.publicJwk] } },
      ],
    });
    expect((await v.verify(await sign(b, base({ iss: 'https://b.example.com' })))).issuer).toBe('https://b.example.com');
    expect(await reasonOf(v.verify(await sign(b, base())))).toBe('unknown_kid');
    // Same kid at both issuers: still only the routed issuer's key counts.
    const clash = await newKey('ES256', a.kid);
    const v2 = createTokenVerifier({
      now: () => NOW_MS,
      issuers: [
        { issuer: ISS, audiences: [AUD], jwks: { keys: [a.publicJwk] } },
        { issuer: 'https://b.example.com', audiences: [AUD], jwks: { keys: [clash.publicJwk] } },
      ],
    });
    expect(await reasonOf(v2.verify(await sign(clash, base())))).toBe('bad_signature');
  });
});

describe('verify: verified-token cache', () => {
  it('checks a reused token\'s signature once, unless the cache is disabled', async () => {
    const key = await newKey('ES256');
    const token = await sign(key, base());
    const subtleVerify = vi.spyOn(crypto.subtle, 'verify');
    const cached = verifierFor([key]);
    for (let n = 0; n < 5; n++) await cached.verify(token);
    expect(subtleVerify).toHaveBeenCalledTimes(1);
    subtleVerify.mockClear();
    const uncached = verifierFor([key], {}, { verifiedCacheSize: 0 });
    for (let n = 0; n < 5; n++) await uncached.verify(token);
    expect(subtleVerify).toHaveBeenCalledTimes(5);
  });

  it('re-checks expiry on every hit', async () => {
    const key = await newKey();
    let clock = NOW_MS;
    const v = verifierFor([key], {}, { now: () => clock });
    const token = await sign(key, base({ exp: NOW + 60 }));
    expect(await reasonOf(v.verify(token))).toBe('accepted');
    clock = NOW_MS - 60_000; // iat (NOW - 5) is now 55 s ahead of the clock: beyond tolerance
    expect(await reasonOf(v.verify(token))).toBe('token_not_yet_valid');
    clock = NOW_MS + 89_000; // exp + 29 s: inside the tolerance
    expect(await reasonOf(v.verify(token))).toBe('accepted');
    clock = NOW_MS + 90_000; // exp + 30 s: at the tolerance edge, expired as on the full path
    expect(await reasonOf(v.verify(token))).toBe('token_expired');
  });

  it('hands out copies: a caller mutating its Principal does not affect the next request', async () => {
    const key = await newKey();
    const v = verifierFor([key]);
    const token = await sign(key, base({ groups: ['payments'] }));
    // The first result comes from the full path, the second from the cache: mutate both.
    for (let n = 0; n < 2; n++) {
      const p = await v.verify(token);
      p.groups.push('admins');
      p.subject = 'root';
    }
    expect(await v.verify(token)).toMatchObject({ subject: 'agent-7', groups: ['payments'] });
  });

  it('stays bounded, evicting the oldest entries', async () => {
    const key = await newKey('ES256');
    const v = verifierFor([key], {}, { verifiedCacheSize: 2 });
    const tokens = await Promise.all([1, 2, 3].map((n) => sign(key, base({ jti: `t${n}` }))));
    for (const t of tokens) await v.verify(t);
    const subtleVerify = vi.spyOn(crypto.subtle, 'verify');
    await v.verify(tokens[2] as string); // newest: cached
    await v.verify(tokens[1] as string); // cached
    expect(subtleVerify).toHaveBeenCalledTimes(0);
    await v.verify(tokens[0] as string); // evicted: verified again
    expect(subtleVerify).toHaveBeenCalledTimes(1);
  });
});

describe('verify: input limits and error hygiene', () => {
  it('reports a missing token', async () => {
    const v = verifierFor([await newKey()]);
    expect(await reasonOf(v.verify(undefined))).toBe('token_missing');
    expect(await reasonOf(v.verify(''))).toBe('token_missing');
  });

  it('checks the size before parsing anything', async () => {
    const key = await newKey();
    const v = verifierFor([key], {}, { maxTokenBytes: 400 });
    const big = await sign(key, base({ pad: 'x'.repeat(400) }));
    expect(await reasonOf(v.verify(big))).toBe('token_too_large');
    // Not a JWT at all, yet reported as too large: parsing never started.
    expect(await reasonOf(v.verify('%'.repeat(401)))).toBe('token_too_large');
    expect(await reasonOf(v.verify('%'.repeat(400)))).toBe('token_malformed');
  });

  it('is retriable only for issuer_unavailable, and maps reasons to 401/503', () => {
    for (const reason of AUTH_FAILURE_REASONS) {
      const err = new AuthError(reason);
      expect(err.retriable, reason).toBe(reason === 'issuer_unavailable');
      expect(err.httpStatus, reason).toBe(reason === 'issuer_unavailable' ? 503 : 401);
      expect(err.code).toBe(reason);
      expect(err).toBeInstanceOf(AttestError);
    }
  });

  it('rejects arbitrary input with a known reason and never echoes it (property)', async () => {
    const key = await newKey();
    const v = verifierFor([key]);
    const segment = fc.oneof(
      fc.string({ unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.split('')) }),
      fc.jsonValue().map((j) => Buffer.from(JSON.stringify(j)).toString('base64url')),
      fc.record({ alg: fc.constantFrom('none', 'HS256', 'ES256', 'RS256', 'EdDSA', 'x'), kid: fc.string(), iss: fc.constantFrom(ISS, 'https://evil.example', 'x') }).map((o) => Buffer.from(JSON.stringify(o)).toString('base64url')),
    );
    const tokenArb = fc.oneof(fc.string({ maxLength: 200 }), fc.array(segment, { minLength: 1, maxLength: 5 }).map((parts) => parts.join('.')));
    await fc.assert(
      fc.asyncProperty(tokenArb, async (token) => {
        const err = await v.verify(token).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(AuthError);
        const authErr = err as AuthError;
        expect(AUTH_FAILURE_REASONS).toContain(authErr.reason);
        if (token.length >= 12) {
          expect(authErr.message).not.toContain(token);
          expect(authErr.detail ?? '').not.toContain(token);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('extractBearerToken', () => {
  it('returns the token of a Bearer header, undefined when absent, and refuses other schemes', () => {
    expect(extractBearerToken(undefined)).toBeUndefined();
    expect(extractBearerToken('')).toBeUndefined();
    expect(extractBearerToken('Bearer abc.def.ghi')).toBe('abc.def.ghi');
    expect(extractBearerToken('bearer   abc')).toBe('abc');
    expect(extractBearerToken(['Bearer abc'])).toBe('abc');
    const reason = (h: string | string[]) => {
      try {
        extractBearerToken(h);
        return 'accepted';
      } catch (err) {
        return (err as AuthError).reason;
      }
    };
    expect(reason('Basic dXNlcjpwYXNz')).toBe('token_malformed');
    expect(reason('Bearer a b')).toBe('token_malformed');
    expect(reason(['Bearer a', 'Bearer b'])).toBe('token_malformed');
  });
});
