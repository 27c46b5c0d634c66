import { chmod, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AttestError } from '../errors';
import { AuthError, createTokenVerifier, DEV_ISSUER_DEFAULT, DEV_ISSUER_KEY_FILE, DevIssuer } from './index';

let dir: string;

beforeEach(async () => {
  dir = join(await mkdtemp(join(tmpdir(), 'attest-dev-issuer-')), 'state');
});

afterEach(async () => {
  await rm(join(dir, '..'), { recursive: true, force: true });
});

async function errorCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(AttestError);
    return (err as AttestError).code;
  }
  return 'accepted';
}

describe('DevIssuer (development only)', () => {
  it('creates an Ed25519 key file with mode 0600 in a 0700 directory', async () => {
    const dev = await DevIssuer.loadOrCreate(dir);
    expect(dev.created).toBe(true);
    expect(dev.alg).toBe('EdDSA');
    expect(dev.issuer).toBe(DEV_ISSUER_DEFAULT);
    expect(dev.keyPath).toBe(join(dir, DEV_ISSUER_KEY_FILE));
    expect((await stat(dev.keyPath)).mode & 0o777).toBe(0o600);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    // The temp file used for the atomic create is gone.
    expect(await readdir(dir)).toEqual([DEV_ISSUER_KEY_FILE]);
    // Only the public half is published.
    expect(dev.publicJwks().keys).toHaveLength(1);
    expect(dev.publicJwks().keys[0]).not.toHaveProperty('d');
  });

  it('reuses the persisted key on the next run: tokens from one run verify in the next', async () => {
    const first = await DevIssuer.loadOrCreate(dir);
    const token = await first.mint({ subject: 'alice', groups: ['devs'], audience: 'attest-dev' });
    const second = await DevIssuer.loadOrCreate(dir);
    expect(second.created).toBe(false);
    expect(second.kid).toBe(first.kid);
    const v = createTokenVerifier({ issuers: [second.issuerOptions(['attest-dev'])] });
    expect(await v.verify(token)).toMatchObject({ subject: 'alice', groups: ['devs'], issuer: DEV_ISSUER_DEFAULT, dev: true });
  });

  it('mints tokens carrying attest_dev, typ at+jwt, a jti, and the requested lifetime', async () => {
    const dev = await DevIssuer.loadOrCreate(dir, { issuer: 'urn:attest:dev-issuer:laptop' });
    const token = await dev.mint({ subject: 'ci-bot', clientId: 'ci-bot', groups: ['ci'], audience: ['attest-dev', 'other'], ttlSec: 120 });
    const claims = decodeJwt(token);
    expect(claims).toMatchObject({ iss: 'urn:attest:dev-issuer:laptop', sub: 'ci-bot', client_id: 'ci-bot', groups: ['ci'], attest_dev: true, aud: ['attest-dev', 'other'] });
    expect((claims.exp ?? 0) - (claims.iat ?? 0)).toBe(120);
    expect(typeof claims.jti).toBe('string');
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'EdDSA', kid: dev.kid, typ: 'at+jwt' });
    const p = await createTokenVerifier({ issuers: [dev.issuerOptions(['attest-dev'])] }).verify(token);
    expect(p).toMatchObject({ subject: 'ci-bot', clientId: 'ci-bot', kind: 'service', dev: true, groups: ['ci'] });
  });

  it('supports ES256, a custom groups claim path and an explicit kind', async () => {
    const dev = await DevIssuer.loadOrCreate(dir, { alg: 'ES256', groupsClaim: 'realm_access.roles' });
    expect(dev.alg).toBe('ES256');
    const token = await dev.mint({ subject: 'bob', groups: ['ops'], audience: 'attest-dev', kind: 'agent' });
    expect(decodeJwt(token)).toMatchObject({ realm_access: { roles: ['ops'] }, attest_kind: 'agent' });
    const p = await createTokenVerifier({ issuers: [dev.issuerOptions(['attest-dev'])] }).verify(token);
    expect(p).toMatchObject({ groups: ['ops'], kind: 'agent', dev: true });
    // An existing key keeps its algorithm whatever a later call asks for.
    expect((await DevIssuer.loadOrCreate(dir, { alg: 'EdDSA' })).alg).toBe('ES256');
  });

  it('verifies locally: an expired dev token and a wrong audience are refused like any other', async () => {
    const dev = await DevIssuer.loadOrCreate(dir);
    const v = createTokenVerifier({ issuers: [dev.issuerOptions(['attest-dev'])], now: () => Date.now() + 2 * 3600_000 });
    const err = await v.verify(await dev.mint({ subject: 'alice', audience: 'attest-dev' })).catch((e: unknown) => e);
    expect((err as AuthError).reason).toBe('token_expired');
    const v2 = createTokenVerifier({ issuers: [dev.issuerOptions(['attest-dev'])] });
    const err2 = await v2.verify(await dev.mint({ subject: 'alice', audience: 'elsewhere' })).catch((e: unknown) => e);
    expect((err2 as AuthError).reason).toBe('wrong_audience');
  });

  it('refuses a key file that group or others can read', async () => {
    const dev = await DevIssuer.loadOrCreate(dir);
    await chmod(dev.keyPath, 0o644);
    expect(await errorCode(DevIssuer.loadOrCreate(dir))).toBe('dev_issuer_key_insecure');
  });

  it('refuses a corrupt or foreign key file instead of replacing it', async () => {
    await DevIssuer.loadOrCreate(dir);
    await writeFile(join(dir, DEV_ISSUER_KEY_FILE), '{"kty":"RSA","n":"x","e":"AQAB"}', { mode: 0o600 });
    expect(await errorCode(DevIssuer.loadOrCreate(dir))).toBe('dev_issuer_key_invalid');
    await writeFile(join(dir, DEV_ISSUER_KEY_FILE), 'not json', { mode: 0o600 });
    expect(await errorCode(DevIssuer.loadOrCreate(dir))).toBe('dev_issuer_key_invalid');
  });

  it('agrees on one key when several processes start at once', async () => {
    const all = await Promise.all(Array.from({ length: 6 }, () => DevIssuer.loadOrCreate(dir)));
    expect(new Set(all.map((d) => d.kid)).size).toBe(1);
    expect(all.filter((d) => d.created)).toHaveLength(1);
    expect(await readdir(dir)).toEqual([DEV_ISSUER_KEY_FILE]);
  });

  it('rejects nonsensical mint options', async () => {
    const dev = await DevIssuer.loadOrCreate(dir);
    await expect(dev.mint({ subject: 'a', audience: 'x', ttlSec: 0 })).rejects.toThrow(RangeError);
    await expect(dev.mint({ subject: '', audience: 'x' })).rejects.toThrow(TypeError);
  });
});
