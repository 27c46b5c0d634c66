import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair, SignJWT } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { freePort, startIdp, type IdpAlg, type TestIdp } from '../../../../test/harness/idp';
import { tokenAttacks } from '../../../../test/harness/token-attacks';
import { AuthError, createTokenVerifier, DevIssuer, type IdentityLogger, type TokenVerifierOptions } from './index';

// Against the real OpenID provider (oidc-provider) on 127.0.0.1: tokens come from its token
// endpoint, keys from its discovery document and JWKS endpoint, whose requests the harness counts.

const AUDIENCE = 'attest-gateway';
const CLIENTS = [
  { clientId: 'agent-payments', clientSecret: 'payments-secret-0123456789', groups: ['payments', 'developers'] },
  { clientId: 'agent-ops', clientSecret: 'ops-secret-0123456789', groups: ['ops'], claims: { attest_kind: 'agent' } },
];

const started: TestIdp[] = [];
async function idp(alg: IdpAlg = 'RS256', port?: number): Promise<TestIdp> {
  const i = await startIdp({ audience: AUDIENCE, clients: CLIENTS, alg, ...(port === undefined ? {} : { port }) });
  started.push(i);
  return i;
}

afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(started.splice(0).map((i) => i.close()));
});

function verifierFor(target: { issuer: string }, opts: Partial<TokenVerifierOptions> = {}) {
  return createTokenVerifier({ ...opts, issuers: [{ issuer: target.issuer, audiences: [AUDIENCE] }] });
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

/** Fetches made by the verifier to this IdP so far. */
const fetches = (i: TestIdp) => ({ discovery: i.discoveryRequests(), jwks: i.jwksRequests() });

/** Tokens signed by an attacker's key under kids the IdP never published. */
async function unknownKidTokens(i: TestIdp, n: number): Promise<string[]> {
  const { privateKey } = await generateKeyPair('ES256');
  const now = Math.floor(Date.now() / 1000);
  return Promise.all(
    Array.from({ length: n }, (_, k) =>
      new SignJWT({ iss: i.issuer, aud: AUDIENCE, sub: 'x', iat: now, exp: now + 60 })
        .setProtectedHeader({ alg: 'ES256', kid: `flood-${k}-${Math.random()}` })
        .sign(privateKey),
    ),
  );
}

/** Real-time wait for something the verifier does in the background. */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe.each(['RS256', 'ES256', 'PS256', 'EdDSA'] as const)('real IdP signing %s', (alg) => {
  let i: TestIdp;
  beforeAll(async () => {
    i = await startIdp({ audience: AUDIENCE, clients: CLIENTS, alg });
  });
  afterAll(async () => {
    await i.close();
  });

  it('turns a client-credentials token into a service principal with its groups, then verifies without network', async () => {
    const v = verifierFor(i);
    const token = await i.clientCredentialsToken('agent-payments');
    const before = fetches(i);
    const p = await v.verify(token);
    expect(p).toMatchObject({ subject: 'agent-payments', clientId: 'agent-payments', issuer: i.issuer, groups: ['payments', 'developers'], kind: 'service' });
    expect(p.dev).toBeUndefined();
    expect(typeof p.tokenId).toBe('string');
    expect(p.expiresAt - Math.floor(Date.now() / 1000)).toBeGreaterThan(500);
    expect(fetches(i)).toEqual({ discovery: before.discovery + 1, jwks: before.jwks + 1 });
    // Hot path: keys are cached, so many verifications cost no requests at all.
    const other = await i.clientCredentialsToken('agent-ops');
    for (let n = 0; n < 50; n++) await v.verify(n % 2 === 0 ? token : other);
    expect(fetches(i)).toEqual({ discovery: before.discovery + 1, jwks: before.jwks + 1 });
    // The IdP's attest_kind claim overrides the client-credentials heuristic.
    expect((await v.verify(other)).kind).toBe('agent');
  });

  it('refuses every attack with its specific reason, without fetching keys for those caught before key lookup', async () => {
    const logged: unknown[] = [];
    const logger: IdentityLogger = { warn: (o, m) => logged.push(o, m), info: (o, m) => logged.push(o, m), debug: (o, m) => logged.push(o, m) };
    const v = verifierFor(i, { logger, jwksCooldownMs: 0 });
    const valid = await i.clientCredentialsToken('agent-payments');
    const attacks = await tokenAttacks(i, valid);
    const pre = attacks.filter((a) => a.beforeKeyLookup);
    const post = attacks.filter((a) => !a.beforeKeyLookup);
    expect(pre.length).toBeGreaterThanOrEqual(15);
    expect(post.length).toBeGreaterThanOrEqual(15);

    const before = fetches(i);
    for (const a of pre) {
      const err = await v.verify(a.token).catch((e: unknown) => e);
      expect(err, a.name).toBeInstanceOf(AuthError);
      expect((err as AuthError).reason, a.name).toBe(a.reason);
      expect((err as AuthError).message, a.name).not.toContain(a.token);
    }
    // Rejected on structure, algorithm or issuer alone: no discovery, no JWKS request.
    expect(fetches(i)).toEqual(before);

    for (const a of post) {
      const err = await v.verify(a.token).catch((e: unknown) => e);
      expect(err, a.name).toBeInstanceOf(AuthError);
      expect((err as AuthError).reason, a.name).toBe(a.reason);
      expect((err as AuthError).message, a.name).not.toContain(a.token);
    }
    expect(await reasonOf(v.verify(valid))).toBe('accepted');
    // Nothing logged carries a token or a signature.
    const text = JSON.stringify(logged);
    for (const a of attacks) {
      const sig = a.token.split('.')[2] ?? '';
      if (sig.length > 16) expect(text, a.name).not.toContain(sig);
    }
  });
});

describe('several issuers at once', () => {
  it('routes tokens from two IdPs and the dev issuer, each to its own keys', async () => {
    const [a, b] = [await idp('RS256'), await idp('EdDSA')];
    const dir = await mkdtemp(join(tmpdir(), 'attest-dev-'));
    try {
      const dev = await DevIssuer.loadOrCreate(dir);
      const v = createTokenVerifier({
        issuers: [{ issuer: a.issuer, audiences: [AUDIENCE] }, { issuer: b.issuer, audiences: [AUDIENCE] }, dev.issuerOptions([AUDIENCE])],
      });
      expect(v.issuers).toEqual([a.issuer, b.issuer, dev.issuer]);
      const pa = await v.verify(await a.clientCredentialsToken('agent-payments'));
      const pb = await v.verify(await b.clientCredentialsToken('agent-ops'));
      const pd = await v.verify(await dev.mint({ subject: 'alice', groups: ['devs'], audience: AUDIENCE }));
      expect([pa.issuer, pb.issuer, pd.issuer]).toEqual([a.issuer, b.issuer, dev.issuer]);
      expect([pa.dev, pb.dev, pd.dev]).toEqual([undefined, undefined, true]);
      expect(pb.groups).toEqual(['ops']);
      // B's real key cannot vouch for a token claiming to be from A.
      const now = Math.floor(Date.now() / 1000);
      const crossed = await b.signAccessToken({ iss: a.issuer, aud: AUDIENCE, sub: 'agent-payments', iat: now, exp: now + 60 });
      expect(await reasonOf(v.verify(crossed))).toBe('unknown_kid');
      expect([a.jwksRequests(), b.jwksRequests()]).toEqual([1, 1]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('JWKS refresh and rate limiting', () => {
  it('refetches at most once per cooldown for a flood of unknown kids, and picks up a rotated key after the cooldown', async () => {
    // Only Date is faked: jose's cooldown clock moves when we say, sockets and timers stay real.
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.UTC(2026, 5, 1, 9, 0, 0));
    const i = await idp('ES256');
    const v = verifierFor(i, { jwksCooldownMs: 30_000 });
    const t1 = await i.clientCredentialsToken('agent-payments');
    expect(await reasonOf(v.verify(t1))).toBe('accepted');
    expect(i.jwksRequests()).toBe(1);

    // Inside the cooldown that started with the first fetch: no refetch at all.
    const flood1 = await Promise.all((await unknownKidTokens(i, 50)).map((t) => reasonOf(v.verify(t))));
    expect(new Set(flood1)).toEqual(new Set(['unknown_kid']));
    expect(i.jwksRequests()).toBe(1);

    // Past the cooldown: 50 concurrent unknown kids share exactly one refetch...
    vi.setSystemTime(Date.now() + 30_001);
    const flood2 = await Promise.all((await unknownKidTokens(i, 50)).map((t) => reasonOf(v.verify(t))));
    expect(new Set(flood2)).toEqual(new Set(['unknown_kid']));
    expect(i.jwksRequests()).toBe(2);
    // ...which starts a new cooldown.
    const flood3 = await Promise.all((await unknownKidTokens(i, 50)).map((t) => reasonOf(v.verify(t))));
    expect(new Set(flood3)).toEqual(new Set(['unknown_kid']));
    expect(i.jwksRequests()).toBe(2);

    // The IdP rotates. A token with the new kid arriving inside the cooldown is refused (the price
    // of the rate limit), and verifies once the cooldown has passed, after one refetch.
    await i.rotateKeys();
    const t2 = await i.clientCredentialsToken('agent-payments');
    expect(JSON.parse(Buffer.from(t2.split('.')[0] ?? '', 'base64url').toString()).kid).toBe(i.currentKid());
    expect(await reasonOf(v.verify(t2))).toBe('unknown_kid');
    expect(i.jwksRequests()).toBe(2);
    vi.setSystemTime(Date.now() + 30_001);
    expect(await reasonOf(v.verify(t2))).toBe('accepted');
    expect(i.jwksRequests()).toBe(3);
    // The previous key is still published during the rotation: old tokens keep working, no fetch.
    expect(await reasonOf(v.verify(t1))).toBe('accepted');
    expect(i.jwksRequests()).toBe(3);
  });

  it('refreshes keys in the background after max age, and drops a key the IdP withdrew', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.UTC(2026, 5, 1, 9, 0, 0));
    const i = await idp('EdDSA');
    const v = verifierFor(i, { jwksCacheMaxAgeMs: 60_000, jwksCooldownMs: 30_000 });
    const t1 = await i.clientCredentialsToken('agent-payments');
    expect(await reasonOf(v.verify(t1))).toBe('accepted');
    await i.rotateKeys({ retainPrevious: false });
    const t2 = await i.clientCredentialsToken('agent-payments');

    vi.setSystemTime(Date.now() + 60_001);
    // Served from the (stale) cache without waiting; the refresh happens behind it.
    expect(await reasonOf(v.verify(t1))).toBe('accepted');
    await until(() => i.jwksRequests() === 2, 'the background refresh');
    await new Promise((r) => setTimeout(r, 20)); // let jose swap the new set in
    expect(await reasonOf(v.verify(t2))).toBe('accepted');
    expect(await reasonOf(v.verify(t1))).toBe('unknown_kid');
    expect(i.jwksRequests()).toBe(2);
  });

  it('keeps verifying with cached keys while the IdP is down, and fails unknown kids as issuer_unavailable', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.UTC(2026, 5, 1, 9, 0, 0));
    const warnings: string[] = [];
    const logger: IdentityLogger = { warn: (_o, m) => warnings.push(m), info() {}, debug() {} };
    const i = await idp('ES256');
    // Default max age (10 min): past it, jose's own expiry would hold every request for a refetch
    // and fail it while the IdP is down; ours keeps serving the cached keys.
    const v = verifierFor(i, { jwksCooldownMs: 30_000, logger, httpTimeoutMs: 2000 });
    const t1 = await i.clientCredentialsToken('agent-payments');
    expect(await reasonOf(v.verify(t1))).toBe('accepted');
    await i.close();

    vi.setSystemTime(Date.now() + 600_001);
    expect(await reasonOf(v.verify(t1))).toBe('accepted');
    await until(() => warnings.some((w) => w.includes('background key refresh failed')), 'the failed background refresh');
    expect(await reasonOf(v.verify(t1))).toBe('accepted');

    vi.setSystemTime(Date.now() + 30_001);
    const [unknown] = await unknownKidTokens(i, 1);
    const err = await v.verify(unknown).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuthError);
    expect((err as AuthError).reason).toBe('issuer_unavailable');
    expect((err as AuthError).retriable).toBe(true);
  });
});

describe('IdP outage at startup', () => {
  it('reports issuer_unavailable (retriable), backs off, and recovers when the IdP comes up, without restart', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.UTC(2026, 5, 1, 9, 0, 0));
    const port = await freePort();
    const issuer = `http://127.0.0.1:${port}`;
    const v = createTokenVerifier({ issuers: [{ issuer, audiences: [AUDIENCE] }], issuerRetryMs: 5_000, httpTimeoutMs: 2000 });
    // Any well-formed token claiming this issuer makes the verifier look for its keys.
    const { privateKey } = await generateKeyPair('RS256');
    const now = Math.floor(Date.now() / 1000);
    const early = await new SignJWT({ iss: issuer, aud: AUDIENCE, sub: 's', iat: now, exp: now + 60 }).setProtectedHeader({ alg: 'RS256', kid: 'k' }).sign(privateKey);

    const err = await v.verify(early).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuthError);
    expect((err as AuthError).reason).toBe('issuer_unavailable');
    expect((err as AuthError).retriable).toBe(true);
    expect((err as AuthError).httpStatus).toBe(503);
    expect((await v.warm())[0]).toMatchObject({ issuer, ok: false });

    const i = await idp('RS256', port);
    const token = await i.clientCredentialsToken('agent-payments');
    // Within the retry backoff the verifier fails fast instead of hammering the IdP.
    expect(await reasonOf(v.verify(token))).toBe('issuer_unavailable');
    expect(fetches(i)).toEqual({ discovery: 0, jwks: 0 });

    vi.setSystemTime(Date.now() + 5_001);
    expect((await v.verify(token)).subject).toBe('agent-payments');
    expect(fetches(i)).toEqual({ discovery: 1, jwks: 1 });
  });

  it('warm() fetches discovery and keys up front so the first request costs no network', async () => {
    const i = await idp('ES256');
    const v = verifierFor(i);
    expect(await v.warm()).toEqual([{ issuer: i.issuer, ok: true }]);
    expect(fetches(i)).toEqual({ discovery: 1, jwks: 1 });
    await v.verify(await i.clientCredentialsToken('agent-payments'));
    expect(fetches(i)).toEqual({ discovery: 1, jwks: 1 });
  });

  it('refuses a discovery document that names another issuer', async () => {
    const i = await idp('ES256');
    const claimed = `${i.issuer}/tenant-b`;
    const v = createTokenVerifier({ issuers: [{ issuer: claimed, discoveryUrl: i.discoveryUrl, audiences: [AUDIENCE] }] });
    const token = await i.signAccessToken({ iss: claimed, aud: AUDIENCE, sub: 's', iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 60 });
    const err = await v.verify(token).catch((e: unknown) => e);
    expect((err as AuthError).reason).toBe('issuer_unavailable');
    expect((err as AuthError).detail).toContain('different issuer');
    expect(i.jwksRequests()).toBe(0);
  });

  it('uses a configured jwksUri directly, skipping discovery', async () => {
    const i = await idp('PS256');
    const v = createTokenVerifier({ issuers: [{ issuer: i.issuer, jwksUri: i.jwksUri, audiences: [AUDIENCE] }] });
    expect((await v.verify(await i.clientCredentialsToken('agent-payments'))).kind).toBe('service');
    expect(fetches(i)).toEqual({ discovery: 0, jwks: 1 });
  });
});
