/**
 * Ed25519 checkpoint-signing keys (PCI DSS 3.6/3.7): generation, rotation, retirement, and the
 * JWKS history an auditor needs to verify offline.
 *
 * - kid = RFC 7638 thumbprint of the public JWK, so a kid can be checked against its key.
 * - At most one key is current. Rotating creates a new key, makes it current, and retires the old
 *   one: its public part stays (and stays in the JWKS, so old checkpoints keep verifying), its
 *   private part is destroyed (removed from the store), so a retired key can sign nothing new.
 * - The JWKS carries each key's validity (`createdUs`, `retiredUs`, extra JWK members that other
 *   JOSE libraries ignore per RFC 7517 §4): the verifier refuses a checkpoint signed by a key
 *   outside its validity, so a stolen current key cannot rewrite history from before its creation.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readFile, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK } from 'jose';
import type { CryptoKey, JSONWebKeySet, JWK } from 'jose';
import { IntegrityError } from './errors';

/** Wall-clock time in microseconds since the Unix epoch (UTC). Injected so tests control time. */
export interface Clock {
  nowUs(): number;
}

export const systemClock: Clock = { nowUs: () => Date.now() * 1000 };

export const SIGNING_ALGORITHM = 'Ed25519';

/** A key as the store keeps it. `privateJwk` is present only while the key is current. */
export interface StoredKey {
  readonly kid: string;
  readonly createdUs: number;
  readonly retiredUs?: number | undefined;
  /** Public JWK: kty OKP, crv Ed25519, x. */
  readonly publicJwk: JWK;
  readonly privateJwk?: JWK | undefined;
}

/**
 * Where keys live. `put` creates or replaces the whole record for `key.kid` atomically; a record put
 * without `privateJwk` has its private key destroyed.
 */
export interface KeyStore {
  list(): Promise<StoredKey[]>;
  put(key: StoredKey): Promise<void>;
}

/** A published key with its validity, as it appears in `Keyring.jwks()`. */
export type AttestJwk = JWK & {
  kid: string;
  use: 'sig';
  alg: 'EdDSA';
  createdUs: number;
  retiredUs?: number;
};

export interface SigningKey {
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly createdUs: number;
}

/** What a caller needs to emit the key.rotated event (fields named as in its schema). */
export interface KeyRotation {
  /** null when this created the first key. */
  readonly oldKeyId: string | null;
  readonly newKeyId: string;
  readonly rotatedAtUs: number;
  /** When the old key stopped signing; equals rotatedAtUs (no overlap: there is one signer). */
  readonly oldKeyRetiresAtUs: number | null;
  readonly algorithm: typeof SIGNING_ALGORITHM;
  /** RFC 7638 thumbprint of the new public key (= newKeyId). */
  readonly publicKeyThumbprint: string;
}

const KID = /^[A-Za-z0-9_-]{43}$/;

function publicPart(jwk: JWK): JWK {
  return { kty: jwk.kty, crv: jwk.crv, x: jwk.x } as JWK;
}

async function checkRecord(rec: StoredKey, where: string): Promise<void> {
  const pub = rec.publicJwk;
  const bad = (why: string): never => {
    throw new IntegrityError('integrity_keystore_corrupt', `signing key record ${where}: ${why}`, {
      where,
      fix: 'restore the key directory from backup; never edit key files by hand',
    });
  };
  if (!KID.test(rec.kid)) bad('kid is not an RFC 7638 SHA-256 thumbprint');
  if (pub.kty !== 'OKP' || pub.crv !== 'Ed25519' || typeof pub.x !== 'string') bad('not an Ed25519 public key');
  if (!Number.isSafeInteger(rec.createdUs)) bad('createdUs is not an integer');
  if (rec.retiredUs !== undefined && !Number.isSafeInteger(rec.retiredUs)) bad('retiredUs is not an integer');
  if ((await calculateJwkThumbprint(publicPart(pub))) !== rec.kid) bad('kid does not match the public key');
  if (rec.privateJwk !== undefined && (rec.privateJwk.x !== pub.x || typeof rec.privateJwk.d !== 'string')) {
    bad('private key does not belong to the public key');
  }
}

/** In-memory twin of the file store, for tests and ephemeral runs. */
export class InMemoryKeyStore implements KeyStore {
  private readonly keys = new Map<string, StoredKey>();

  list(): Promise<StoredKey[]> {
    return Promise.resolve([...this.keys.values()].map((k) => structuredClone(k)));
  }

  put(key: StoredKey): Promise<void> {
    this.keys.set(key.kid, structuredClone(key));
    return Promise.resolve();
  }
}

/**
 * One JSON file per key, `<dir>/<kid>.json`. A file holding a private key is created with mode
 * 0600 (in a 0700 directory); once the key is retired the file is atomically replaced by one
 * without the private part. Writes go to a temporary file, are fsync'd and renamed into place, so
 * a crash leaves the old or the new record, never half of one. One writer (the producer process)
 * per directory.
 */
export class FileKeyStore implements KeyStore {
  constructor(private readonly dir: string) {}

  async list(): Promise<StoredKey[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw this.ioError('read', err);
    }
    const out: StoredKey[] = [];
    for (const name of names.filter((n) => n.endsWith('.json')).sort()) {
      const path = join(this.dir, name);
      let rec: StoredKey;
      try {
        rec = JSON.parse(await readFile(path, 'utf8')) as StoredKey;
      } catch (err) {
        throw new IntegrityError('integrity_keystore_corrupt', `unreadable signing key file ${path}`, {
          where: path,
          cause: err,
        });
      }
      if (`${rec.kid}.json` !== name) {
        throw new IntegrityError('integrity_keystore_corrupt', `key file ${path} holds kid ${String(rec.kid)}`, {
          where: path,
        });
      }
      out.push(rec);
    }
    return out;
  }

  async put(key: StoredKey): Promise<void> {
    if (!KID.test(key.kid)) throw new IntegrityError('integrity_invalid_argument', `invalid kid ${key.kid}`);
    const file = join(this.dir, `${key.kid}.json`);
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    const mode = key.privateJwk === undefined ? 0o644 : 0o600;
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      const fh = await open(tmp, 'wx', mode);
      try {
        await fh.writeFile(`${JSON.stringify(key, null, 2)}\n`);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await chmod(tmp, mode); // the umask may have narrowed or the mode widened it; be exact
      await rename(tmp, file);
      const dh = await open(this.dir, 'r');
      try {
        await dh.sync(); // make the rename itself durable
      } finally {
        await dh.close();
      }
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => undefined);
      throw this.ioError('write', err);
    }
  }

  private ioError(op: string, err: unknown): IntegrityError {
    return new IntegrityError('integrity_keystore_io', `cannot ${op} the signing key directory ${this.dir}`, {
      retriable: true,
      where: this.dir,
      cause: err,
    });
  }
}

interface Current {
  readonly record: StoredKey;
  readonly key: SigningKey;
}

export class Keyring {
  private current: Current | undefined;

  private constructor(
    private readonly store: KeyStore,
    private readonly clock: Clock,
    private records: StoredKey[],
    /** Rotations found half-done at open (crash between creating the new key and retiring the old). */
    readonly recovered: readonly KeyRotation[],
  ) {}

  /**
   * Loads every key and validates it. If a crash interrupted a rotation (two keys still hold their
   * private part), the newest stays current and the older ones are retired now; those rotations
   * are in `recovered` so the caller can still emit their key.rotated events.
   */
  static async open(store: KeyStore, opts: { clock?: Clock } = {}): Promise<Keyring> {
    const clock = opts.clock ?? systemClock;
    const records = await store.list();
    for (const r of records) await checkRecord(r, r.kid);
    records.sort((a, b) => a.createdUs - b.createdUs || a.kid.localeCompare(b.kid));
    const live = records.filter((r) => r.privateJwk !== undefined && r.retiredUs === undefined);
    const recovered: KeyRotation[] = [];
    const newest = live.at(-1);
    for (const r of records) {
      // A retired key that still has a private part, or an older live key: destroy its private part.
      const stale = r.privateJwk !== undefined && r !== newest;
      if (!stale) continue;
      const retiredUs = r.retiredUs ?? newest?.createdUs ?? clock.nowUs();
      const retired: StoredKey = { kid: r.kid, createdUs: r.createdUs, retiredUs, publicJwk: r.publicJwk };
      await store.put(retired);
      records[records.indexOf(r)] = retired;
      if (r.retiredUs === undefined && newest !== undefined) {
        recovered.push(rotation(r.kid, newest.kid, retiredUs));
      }
    }
    const ring = new Keyring(store, clock, records, recovered);
    if (newest !== undefined) ring.current = { record: newest, key: await importSigningKey(newest) };
    return ring;
  }

  /** kid of the current signing key, if there is one. */
  get currentKid(): string | undefined {
    return this.current?.key.kid;
  }

  /**
   * The current signing key, synchronously, so a checkpoint can take its key in the same tick as
   * its end time (a checkpoint is only valid if its end time falls inside its key's validity).
   */
  signingKey(): SigningKey {
    if (this.current === undefined) {
      throw new IntegrityError('integrity_no_signing_key', 'the keyring has no current signing key', {
        fix: 'call Keyring.rotate() once to create the first key (and emit its key.rotated event)',
      });
    }
    return this.current.key;
  }

  /**
   * Creates a new key and makes it current; retires and destroys the old one. The new key is
   * persisted before it signs anything; the old one stops being current in the same tick as
   * `rotatedAtUs` is read, so no checkpoint is signed by a key outside its validity.
   */
  async rotate(): Promise<KeyRotation> {
    const { publicKey, privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    const publicJwk = publicPart(await exportJWK(publicKey));
    const privateJwk = await exportJWK(privateKey);
    const kid = await calculateJwkThumbprint(publicJwk);
    const created: StoredKey = { kid, createdUs: this.clock.nowUs(), publicJwk, privateJwk };
    await this.store.put(created);

    const old = this.current;
    const rotatedAtUs = Math.max(this.clock.nowUs(), created.createdUs);
    this.current = { record: created, key: { kid, privateKey, createdUs: created.createdUs } };
    this.records.push(created);
    if (old !== undefined) {
      const retired: StoredKey = {
        kid: old.record.kid,
        createdUs: old.record.createdUs,
        retiredUs: rotatedAtUs,
        publicJwk: old.record.publicJwk,
      };
      this.records = this.records.map((r) => (r.kid === retired.kid ? retired : r));
      await this.store.put(retired);
    }
    return rotation(old?.key.kid ?? null, kid, rotatedAtUs);
  }

  /** Every key ever used (current and retired), public parts only, oldest first. */
  jwks(): JSONWebKeySet {
    return {
      keys: this.records.map((r) => {
        const jwk: AttestJwk = { ...publicPart(r.publicJwk), kid: r.kid, use: 'sig', alg: 'EdDSA', createdUs: r.createdUs };
        if (r.retiredUs !== undefined) jwk.retiredUs = r.retiredUs;
        return jwk;
      }),
    };
  }
}

function rotation(oldKid: string | null, newKid: string, atUs: number): KeyRotation {
  return {
    oldKeyId: oldKid,
    newKeyId: newKid,
    rotatedAtUs: atUs,
    oldKeyRetiresAtUs: oldKid === null ? null : atUs,
    algorithm: SIGNING_ALGORITHM,
    publicKeyThumbprint: newKid,
  };
}

async function importSigningKey(rec: StoredKey): Promise<SigningKey> {
  const key = await importJWK(rec.privateJwk ?? {}, 'EdDSA');
  if (key instanceof Uint8Array) {
    throw new IntegrityError('integrity_keystore_corrupt', `key ${rec.kid} is not an asymmetric key`, { where: rec.kid });
  }
  return { kid: rec.kid, privateKey: key, createdUs: rec.createdUs };
}
