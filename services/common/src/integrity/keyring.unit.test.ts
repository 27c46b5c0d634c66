import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CompactSign, calculateJwkThumbprint, compactVerify, importJWK } from 'jose';
import type { JWK } from 'jose';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileKeyStore, InMemoryKeyStore, Keyring } from './keyring';
import type { AttestJwk, KeyStore } from './keyring';
import { FakeClock } from './testkit';

const stores: Array<[string, () => Promise<{ store: KeyStore; dir?: string }>]> = [
  ['in-memory', () => Promise.resolve({ store: new InMemoryKeyStore() })],
  [
    'file',
    async () => {
      const dir = join(await mkdtemp(join(tmpdir(), 'attest-keys-')), 'keys');
      return { store: new FileKeyStore(dir), dir };
    },
  ],
];

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(join(d, '..'), { recursive: true, force: true });
});

async function signWith(ring: Keyring, text: string): Promise<string> {
  const key = ring.signingKey();
  return new CompactSign(new TextEncoder().encode(text)).setProtectedHeader({ alg: 'EdDSA', kid: key.kid }).sign(key.privateKey);
}

async function verifyWithJwks(jws: string, jwks: { keys: JWK[] }): Promise<boolean> {
  const { kid } = JSON.parse(Buffer.from(jws.split('.')[0]!, 'base64url').toString()) as { kid: string };
  const jwk = jwks.keys.find((k) => k.kid === kid);
  if (jwk === undefined) return false;
  try {
    await compactVerify(jws, await importJWK(jwk, 'EdDSA'));
    return true;
  } catch {
    return false;
  }
}

describe.each(stores)('Keyring over the %s key store', (_name, make) => {
  let store: KeyStore;
  let clock: FakeClock;
  beforeEach(async () => {
    const made = await make();
    store = made.store;
    if (made.dir !== undefined) dirs.push(made.dir);
    clock = new FakeClock(1_000_000);
  });

  it('Given an empty store, When opened, Then there is no signing key until the first rotation creates one', async () => {
    const ring = await Keyring.open(store, { clock });
    expect(ring.currentKid).toBeUndefined();
    expect(() => ring.signingKey()).toThrow(expect.objectContaining({ code: 'integrity_no_signing_key' }));
    const first = await ring.rotate();
    expect(first.oldKeyId).toBeNull();
    expect(first.oldKeyRetiresAtUs).toBeNull();
    expect(ring.currentKid).toBe(first.newKeyId);
  });

  it('Given a key, When its kid is inspected, Then it is the RFC 7638 thumbprint of its public JWK', async () => {
    const ring = await Keyring.open(store, { clock });
    const { newKeyId } = await ring.rotate();
    const jwk = ring.jwks().keys[0]!;
    expect(await calculateJwkThumbprint({ kty: jwk.kty, crv: jwk.crv, x: jwk.x } as JWK)).toBe(newKeyId);
  });

  it('Given two rotations, When the JWKS is published, Then it holds all three keys with validity, sig use and EdDSA, and no private part', async () => {
    const ring = await Keyring.open(store, { clock });
    const r1 = await ring.rotate();
    clock.us = 2_000_000;
    const r2 = await ring.rotate();
    clock.us = 3_000_000;
    const r3 = await ring.rotate();
    expect(r2).toMatchObject({ oldKeyId: r1.newKeyId, rotatedAtUs: 2_000_000, oldKeyRetiresAtUs: 2_000_000, algorithm: 'Ed25519' });
    expect(r3.oldKeyId).toBe(r2.newKeyId);
    const keys = ring.jwks().keys as AttestJwk[];
    expect(keys.map((k) => k.kid)).toEqual([r1.newKeyId, r2.newKeyId, r3.newKeyId]);
    for (const k of keys) {
      expect(k).toMatchObject({ kty: 'OKP', crv: 'Ed25519', use: 'sig', alg: 'EdDSA' });
      expect(k).not.toHaveProperty('d');
    }
    expect(keys.map((k) => [k.createdUs, k.retiredUs])).toEqual([
      [1_000_000, 2_000_000],
      [2_000_000, 3_000_000],
      [3_000_000, undefined],
    ]);
  });

  it('Given signatures made before a rotation, When verified with the JWKS after it, Then they still verify', async () => {
    const ring = await Keyring.open(store, { clock });
    await ring.rotate();
    const old = await signWith(ring, 'before');
    await ring.rotate();
    const fresh = await signWith(ring, 'after');
    expect(await verifyWithJwks(old, ring.jwks())).toBe(true);
    expect(await verifyWithJwks(fresh, ring.jwks())).toBe(true);
  });

  it('Given a rotation, When the store is reopened, Then the retired key has lost its private part and the new key signs', async () => {
    const ring = await Keyring.open(store, { clock });
    const r1 = await ring.rotate();
    const r2 = await ring.rotate();
    const stored = await store.list();
    expect(stored.find((k) => k.kid === r1.newKeyId)?.privateJwk).toBeUndefined();
    expect(stored.find((k) => k.kid === r2.newKeyId)?.privateJwk?.d).toEqual(expect.any(String));
    const again = await Keyring.open(store, { clock });
    expect(again.currentKid).toBe(r2.newKeyId);
    expect(await verifyWithJwks(await signWith(again, 'x'), ring.jwks())).toBe(true);
  });

  it('Given a crash between creating the new key and retiring the old, When reopened, Then the newest is current and the rotation is recovered', async () => {
    const ring = await Keyring.open(store, { clock });
    const r1 = await ring.rotate();
    const oldRecord = (await store.list()).find((k) => k.kid === r1.newKeyId)!;
    clock.us = 5_000_000;
    await ring.rotate();
    await store.put(oldRecord); // put the old key back as it was before retirement: two live keys
    const reopened = await Keyring.open(store, { clock });
    expect(reopened.currentKid).not.toBe(r1.newKeyId);
    expect(reopened.recovered).toHaveLength(1);
    expect(reopened.recovered[0]).toMatchObject({ oldKeyId: r1.newKeyId, rotatedAtUs: 5_000_000 });
    expect((await store.list()).filter((k) => k.privateJwk !== undefined)).toHaveLength(1);
  });
});

describe('FileKeyStore on disk', () => {
  let dir: string;
  beforeEach(async () => {
    dir = join(await mkdtemp(join(tmpdir(), 'attest-keys-')), 'keys');
    dirs.push(dir);
  });

  it('Given a current and a retired key, When written, Then one JSON file per key, 0600 while it holds a private key, 0644 after', async () => {
    const ring = await Keyring.open(new FileKeyStore(dir));
    const r1 = await ring.rotate();
    expect((await stat(join(dir, `${r1.newKeyId}.json`))).mode & 0o777).toBe(0o600);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    const r2 = await ring.rotate();
    expect((await readdir(dir)).sort()).toEqual([`${r1.newKeyId}.json`, `${r2.newKeyId}.json`].sort());
    expect((await stat(join(dir, `${r1.newKeyId}.json`))).mode & 0o777).toBe(0o644);
    expect(await readFile(join(dir, `${r1.newKeyId}.json`), 'utf8')).not.toContain('"d"');
    expect((await stat(join(dir, `${r2.newKeyId}.json`))).mode & 0o777).toBe(0o600);
  });

  it('Given a key file whose public key was swapped, When opened, Then it is refused as corrupt', async () => {
    const ring = await Keyring.open(new FileKeyStore(dir));
    const { newKeyId } = await ring.rotate();
    const other = await Keyring.open(new InMemoryKeyStore());
    await other.rotate();
    const file = join(dir, `${newKeyId}.json`);
    const rec = JSON.parse(await readFile(file, 'utf8')) as { publicJwk: JWK };
    rec.publicJwk = other.jwks().keys[0]!;
    await writeFile(file, JSON.stringify(rec));
    await expect(Keyring.open(new FileKeyStore(dir))).rejects.toMatchObject({ code: 'integrity_keystore_corrupt' });
  });

  it('Given a directory that does not exist yet, When listed, Then it is an empty store', async () => {
    expect(await new FileKeyStore(join(dir, 'nope')).list()).toEqual([]);
  });
});
