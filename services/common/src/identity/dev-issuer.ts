/**
 * DEVELOPMENT ONLY. A local token issuer so Attest can be tried without an identity provider.
 *
 * Anyone who can read `dev-issuer.jwk.json` can mint tokens for any subject and any group, so it
 * must never be enabled in front of real card data. Its tokens carry `attest_dev: true`, and the
 * verifier marks every principal from this issuer `dev: true` (from the issuer config, not from the
 * claim), so evidence always tells development traffic apart.
 */
import { randomUUID } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { chmod, link, mkdir, open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import {
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  importJWK,
  SignJWT,
  type CryptoKey,
  type JSONWebKeySet,
  type JWK,
} from 'jose';
import { AttestError } from '../errors';
import type { IssuerOptions, PrincipalKind } from './types';

export const DEV_ISSUER_DEFAULT = 'urn:attest:dev-issuer';
export const DEV_ISSUER_KEY_FILE = 'dev-issuer.jwk.json';

export type DevIssuerAlg = 'EdDSA' | 'ES256';
export type DevIssuerErrorCode = 'dev_issuer_key_insecure' | 'dev_issuer_key_invalid';

export interface DevIssuerLoadOptions {
  /** Default 'urn:attest:dev-issuer'. */
  issuer?: string;
  /** Algorithm for a newly created key (default EdDSA). An existing key keeps its own. */
  alg?: DevIssuerAlg;
  /** Where minted tokens put the groups and where issuerOptions() reads them. Default 'groups'. */
  groupsClaim?: string;
}

export interface DevMintOptions {
  subject: string;
  groups?: string[];
  audience: string | string[];
  /** Default 3600. */
  ttlSec?: number;
  clientId?: string;
  /** Written as `attest_kind`. */
  kind?: PrincipalKind;
  /** Extra claims (cannot override iss, sub, aud, iat, exp, jti or attest_dev). */
  claims?: Record<string, unknown>;
}

function isPrivateSigningJwk(v: unknown): v is JWK & { d: string; kid?: string } {
  if (v === null || typeof v !== 'object') return false;
  const k = v as Record<string, unknown>;
  const okp = k.kty === 'OKP' && k.crv === 'Ed25519' && typeof k.x === 'string';
  const ec = k.kty === 'EC' && k.crv === 'P-256' && typeof k.x === 'string' && typeof k.y === 'string';
  return (okp || ec) && typeof k.d === 'string';
}

function publicPart(jwk: JWK): JWK {
  const { kty, crv, x, y } = jwk;
  return y === undefined ? { kty, crv, x } as JWK : { kty, crv, x, y } as JWK;
}

/** Sets `value` at a dotted path, or literally for a namespaced (URL-like) claim name. */
function setClaim(target: Record<string, unknown>, name: string, value: unknown): void {
  if (name.includes('://') || !name.includes('.')) {
    target[name] = value;
    return;
  }
  const parts = name.split('.');
  let cur = target;
  for (const part of parts.slice(0, -1)) {
    const next = cur[part];
    if (next === null || typeof next !== 'object' || Array.isArray(next)) cur[part] = {};
    cur = cur[part] as Record<string, unknown>;
  }
  cur[parts[parts.length - 1] as string] = value;
}

export class DevIssuer {
  private constructor(
    readonly issuer: string,
    /** Where the private key lives (mode 0600). */
    readonly keyPath: string,
    readonly kid: string,
    readonly alg: DevIssuerAlg,
    /** True when this call generated the key, false when it reused the persisted one. */
    readonly created: boolean,
    private readonly groupsClaim: string,
    private readonly signingKey: CryptoKey,
    private readonly publicJwk: JWK,
  ) {}

  /**
   * Loads the signing key from `dir/dev-issuer.jwk.json`, or generates and persists one (0600,
   * directory 0700). Refuses a key file that group or others can read, as ssh does.
   */
  static async loadOrCreate(dir: string, opts: DevIssuerLoadOptions = {}): Promise<DevIssuer> {
    const issuer = opts.issuer ?? DEV_ISSUER_DEFAULT;
    const groupsClaim = opts.groupsClaim ?? 'groups';
    const keyPath = join(dir, DEV_ISSUER_KEY_FILE);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    let created = false;
    let jwk = await readKeyFile(keyPath);
    if (jwk === undefined) {
      jwk = await createKeyFile(keyPath, opts.alg ?? 'EdDSA');
      created = jwk.created;
    }
    const alg: DevIssuerAlg = jwk.key.kty === 'OKP' ? 'EdDSA' : 'ES256';
    const pub = publicPart(jwk.key);
    const kid = jwk.key.kid ?? (await calculateJwkThumbprint(pub));
    const signingKey = (await importJWK({ ...jwk.key, alg }, alg)) as CryptoKey;
    return new DevIssuer(issuer, keyPath, kid, alg, created, groupsClaim, signingKey, { ...pub, kid, alg, use: 'sig' });
  }

  publicJwks(): JSONWebKeySet {
    return { keys: [{ ...this.publicJwk }] };
  }

  /** Issuer config with the public key inline: verification never touches the network. */
  issuerOptions(audiences: string[], groupsClaim: string = this.groupsClaim): IssuerOptions {
    return { issuer: this.issuer, jwks: this.publicJwks(), audiences, groupsClaim, algorithms: [this.alg], dev: true };
  }

  /** A signed access token (typ at+jwt) carrying `attest_dev: true`. */
  async mint(opts: DevMintOptions): Promise<string> {
    const ttlSec = opts.ttlSec ?? 3600;
    if (!Number.isFinite(ttlSec) || ttlSec <= 0) throw new RangeError('ttlSec must be a positive number of seconds');
    if (typeof opts.subject !== 'string' || opts.subject.length === 0) throw new TypeError('subject must be a non-empty string');
    const claims: Record<string, unknown> = { ...opts.claims };
    setClaim(claims, this.groupsClaim, [...(opts.groups ?? [])]);
    if (opts.clientId !== undefined) claims.client_id = opts.clientId;
    if (opts.kind !== undefined) claims.attest_kind = opts.kind;
    claims.attest_dev = true;
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT(claims)
      .setProtectedHeader({ alg: this.alg, kid: this.kid, typ: 'at+jwt' })
      .setIssuer(this.issuer)
      .setSubject(opts.subject)
      .setAudience(opts.audience)
      .setIssuedAt(now)
      .setExpirationTime(now + Math.floor(ttlSec))
      .setJti(randomUUID())
      .sign(this.signingKey);
  }
}

async function readKeyFile(path: string): Promise<{ key: JWK & { d: string; kid?: string }; created: boolean } | undefined> {
  let handle;
  try {
    handle = await open(path, fsConstants.O_RDONLY | (fsConstants.O_NOFOLLOW ?? 0));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) {
      throw new AttestError<DevIssuerErrorCode>('dev_issuer_key_invalid', `${path} is not a regular file`, { where: path, fix: `remove ${path}; a new key is generated on the next start` });
    }
    if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
      throw new AttestError<DevIssuerErrorCode>('dev_issuer_key_insecure', `the development issuer key ${path} is readable by other users (mode ${(st.mode & 0o777).toString(8)})`, { where: path, fix: `chmod 600 ${path}` });
    }
    const text = await handle.readFile('utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (cause) {
      throw new AttestError<DevIssuerErrorCode>('dev_issuer_key_invalid', `${path} is not JSON`, { where: path, fix: `remove ${path}; a new key is generated on the next start`, cause });
    }
    if (!isPrivateSigningJwk(parsed)) {
      throw new AttestError<DevIssuerErrorCode>('dev_issuer_key_invalid', `${path} is not an Ed25519 or P-256 private JWK`, { where: path, fix: `remove ${path}; a new key is generated on the next start` });
    }
    return { key: parsed, created: false };
  } finally {
    await handle.close();
  }
}

/**
 * Writes the new key to a private temp file, then hard-links it into place: link() fails if the
 * file appeared meanwhile, so two processes starting together agree on one key and nobody ever
 * reads a half-written file.
 */
async function createKeyFile(path: string, alg: DevIssuerAlg): Promise<{ key: JWK & { d: string; kid?: string }; created: boolean }> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}) });
  const priv = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(publicPart(priv));
  const jwk = { ...priv, kid, alg, use: 'sig' } as JWK & { d: string; kid: string };
  const tmp = `${path}.${process.pid}.${randomUUID()}.tmp`;
  const handle = await open(tmp, 'wx', 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(jwk, null, 2)}\n`, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await chmod(tmp, 0o600); // the umask can only narrow the mode; make it exact regardless
    await link(tmp, path);
    return { key: jwk, created: true };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const existing = await readKeyFile(path);
    if (existing === undefined) throw err;
    return existing;
  } finally {
    await unlink(tmp).catch(() => {});
  }
}

