/**
 * Signed checkpoints: a producer's statement, signed with Ed25519 as a JWS, that its chain in one
 * epoch covered sequences [firstSequence, lastSequence] (possibly none) between fromTimeUs and
 * toTimeUs, ending at lastHash, with the given Merkle root, and following the checkpoint whose hash
 * is prevCheckpointHash. Like CloudTrail's digest files, checkpoints are emitted on a cadence even
 * when idle and each names its predecessor, so missing time and missing checkpoints are provable.
 *
 * Format: the signed payload is canonical JSON built from the fields (fixed member order, integers,
 * base64url hashes); the JWS protected header is {"alg":"EdDSA","kid":…,"typ":"attest-checkpoint+jws"}.
 * Because both are rebuilt byte-for-byte from the fields, the integrity.checkpoint event can store
 * the fields plus the 64 signature bytes (a detached-payload JWS, RFC 7515 Appendix F), and anyone
 * can reassemble the compact JWS with `checkpointFromParts` and verify it with any JOSE library.
 * The checkpoint's hash is SHA-256 of the compact JWS (ASCII), binding key id and signature too.
 */
import { CompactSign, compactVerify, importJWK } from 'jose';
import type { CryptoKey, JSONWebKeySet, JWK } from 'jose';
import { IntegrityError } from './errors';
import { HASH_BYTES, hashFromBase64Url, sha256, toBase64Url } from './hash';
import { SIGNING_ALGORITHM } from './keyring';
import type { SigningKey } from './keyring';

export const CHECKPOINT_TYPE = 'attest.checkpoint';
export const CHECKPOINT_VERSION = 1;
const JWS_TYP = 'attest-checkpoint+jws';

export interface CheckpointFields {
  readonly producer: string;
  readonly epoch: string;
  /** First sequence covered. For an empty checkpoint, lastSequence + 1. */
  readonly firstSequence: number;
  /** Last sequence covered (the previous checkpoint's lastSequence when empty). */
  readonly lastSequence: number;
  /** lastSequence - firstSequence + 1 (0 for an empty checkpoint). */
  readonly count: number;
  /** Start of the window, = the previous checkpoint's toTimeUs (the epoch start for the first). */
  readonly fromTimeUs: number;
  /** When the checkpoint was cut. */
  readonly toTimeUs: number;
  /** Hash of the event at lastSequence; for an empty range, carried over (the epoch's link at first). */
  readonly lastHash: Uint8Array;
  /** RFC 9162 tree hash over the range's event hashes (SHA-256("") when empty). */
  readonly merkleRoot: Uint8Array;
  /** Hash of the previous checkpoint (across epochs too); 32 zero bytes for a producer's first. */
  readonly prevCheckpointHash: Uint8Array;
  /** True on the last checkpoint of an epoch that ended cleanly: nothing may follow in that epoch. */
  readonly closed: boolean;
  readonly keyId: string;
}

export type UnsignedCheckpoint = Omit<CheckpointFields, 'count' | 'keyId'>;

export interface SignedCheckpoint {
  readonly fields: CheckpointFields;
  /** The exact signed payload bytes (canonical JSON, UTF-8). */
  readonly payload: Uint8Array;
  /** The 64-byte Ed25519 signature (what the event's `signature` field stores). */
  readonly signature: Uint8Array;
  /** Self-contained compact JWS: header.payload.signature. */
  readonly jws: string;
  /** SHA-256 of the compact JWS: the next checkpoint's prevCheckpointHash. */
  readonly hash: Uint8Array;
  readonly algorithm: typeof SIGNING_ALGORITHM;
}

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

function isSeq(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

function isTime(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n);
}

/** Why fields are not a coherent checkpoint, or undefined when they are. */
export function checkpointFieldsProblem(f: CheckpointFields): string | undefined {
  if (typeof f.producer !== 'string' || f.producer === '') return 'producer is empty';
  if (typeof f.epoch !== 'string' || f.epoch === '') return 'epoch is empty';
  if (!isSeq(f.firstSequence) || f.firstSequence < 1) return 'firstSequence must be an integer ≥ 1';
  if (!isSeq(f.lastSequence) || f.lastSequence < f.firstSequence - 1) return 'lastSequence must be ≥ firstSequence - 1';
  if (f.count !== f.lastSequence - f.firstSequence + 1) return 'count does not equal lastSequence - firstSequence + 1';
  if (!isTime(f.fromTimeUs) || !isTime(f.toTimeUs) || f.toTimeUs < f.fromTimeUs) return 'time window is not ordered';
  for (const [name, h] of [
    ['lastHash', f.lastHash],
    ['merkleRoot', f.merkleRoot],
    ['prevCheckpointHash', f.prevCheckpointHash],
  ] as const) {
    if (!(h instanceof Uint8Array) || h.length !== HASH_BYTES) return `${name} is not a 32-byte hash`;
  }
  if (typeof f.closed !== 'boolean') return 'closed is not a boolean';
  if (typeof f.keyId !== 'string' || f.keyId === '') return 'keyId is empty';
  return undefined;
}

/** Canonical payload bytes for the fields. */
export function encodeCheckpointPayload(f: CheckpointFields): Uint8Array {
  // Member order is fixed by this literal; every value is a string, safe integer or boolean.
  const body = {
    typ: CHECKPOINT_TYPE,
    v: CHECKPOINT_VERSION,
    producer: f.producer,
    epoch: f.epoch,
    firstSequence: f.firstSequence,
    lastSequence: f.lastSequence,
    count: f.count,
    fromTimeUs: f.fromTimeUs,
    toTimeUs: f.toTimeUs,
    lastHash: toBase64Url(f.lastHash),
    merkleRoot: toBase64Url(f.merkleRoot),
    prevCheckpointHash: toBase64Url(f.prevCheckpointHash),
    closed: f.closed,
    keyId: f.keyId,
  };
  return enc.encode(JSON.stringify(body));
}

function malformed(detail: string, cause?: unknown): IntegrityError {
  return new IntegrityError('integrity_checkpoint_malformed', `malformed checkpoint: ${detail}`, {
    ...(cause === undefined ? {} : { cause }),
  });
}

/** Parses and validates payload bytes; they must be exactly the canonical encoding. */
export function decodeCheckpointPayload(payload: Uint8Array): CheckpointFields {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(dec.decode(payload)) as Record<string, unknown>;
  } catch (err) {
    throw malformed('payload is not JSON', err);
  }
  if (typeof o !== 'object' || o === null) throw malformed('payload is not an object');
  if (o['typ'] !== CHECKPOINT_TYPE || o['v'] !== CHECKPOINT_VERSION) throw malformed('not an Attest checkpoint v1');
  const hash = (name: string): Uint8Array => {
    const h = hashFromBase64Url(o[name]);
    if (h === undefined) throw malformed(`${name} is not a base64url SHA-256`);
    return h;
  };
  const fields: CheckpointFields = {
    producer: o['producer'] as string,
    epoch: o['epoch'] as string,
    firstSequence: o['firstSequence'] as number,
    lastSequence: o['lastSequence'] as number,
    count: o['count'] as number,
    fromTimeUs: o['fromTimeUs'] as number,
    toTimeUs: o['toTimeUs'] as number,
    lastHash: hash('lastHash'),
    merkleRoot: hash('merkleRoot'),
    prevCheckpointHash: hash('prevCheckpointHash'),
    closed: o['closed'] as boolean,
    keyId: o['keyId'] as string,
  };
  const problem = checkpointFieldsProblem(fields);
  if (problem !== undefined) throw malformed(problem);
  // One spelling per checkpoint, so its hash (and the parts form) is well defined.
  if (Buffer.compare(Buffer.from(encodeCheckpointPayload(fields)), Buffer.from(payload)) !== 0) {
    throw malformed('payload is not in canonical form');
  }
  return fields;
}

function protectedHeader(kid: string): { alg: 'EdDSA'; kid: string; typ: string } {
  return { alg: 'EdDSA', kid, typ: JWS_TYP };
}

export function checkpointHashOf(jws: string): Uint8Array {
  return sha256(enc.encode(jws));
}

function assemble(fields: CheckpointFields, payload: Uint8Array, jws: string): SignedCheckpoint {
  const sig = jws.slice(jws.lastIndexOf('.') + 1);
  return {
    fields,
    payload,
    signature: new Uint8Array(Buffer.from(sig, 'base64url')),
    jws,
    hash: checkpointHashOf(jws),
    algorithm: SIGNING_ALGORITHM,
  };
}

/** Signs a checkpoint (one Ed25519 signature, ~0.1 ms). */
export async function signCheckpoint(body: UnsignedCheckpoint, key: SigningKey): Promise<SignedCheckpoint> {
  const fields: CheckpointFields = {
    ...body,
    count: body.lastSequence - body.firstSequence + 1,
    keyId: key.kid,
  };
  const problem = checkpointFieldsProblem(fields);
  if (problem !== undefined) throw new IntegrityError('integrity_invalid_argument', `cannot sign checkpoint: ${problem}`);
  const payload = encodeCheckpointPayload(fields);
  const jws = await new CompactSign(payload).setProtectedHeader(protectedHeader(key.kid)).sign(key.privateKey);
  return assemble(fields, payload, jws);
}

/**
 * Parses a compact JWS into a checkpoint WITHOUT verifying its signature (use verifyCheckpoint).
 * Throws IntegrityError('integrity_checkpoint_malformed').
 */
export function parseCheckpoint(jws: string): SignedCheckpoint {
  const parts = jws.split('.');
  if (parts.length !== 3) throw malformed('not a compact JWS');
  const [h, p, s] = parts as [string, string, string];
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch (err) {
    throw malformed('protected header is not JSON', err);
  }
  const payload = new Uint8Array(Buffer.from(p, 'base64url'));
  const fields = decodeCheckpointPayload(payload);
  const expected = Buffer.from(JSON.stringify(protectedHeader(fields.keyId))).toString('base64url');
  if (h !== expected || header['kid'] !== fields.keyId) throw malformed('protected header is not the canonical one');
  if (toBase64Url(payload) !== p || Buffer.from(s, 'base64url').length !== 64) throw malformed('bad encoding');
  return assemble(fields, payload, jws);
}

/** Rebuilds the checkpoint from the fields and signature stored in an integrity.checkpoint event. */
export function checkpointFromParts(fields: CheckpointFields, signature: Uint8Array): SignedCheckpoint {
  const problem = checkpointFieldsProblem(fields);
  if (problem !== undefined) throw malformed(problem);
  const payload = encodeCheckpointPayload(fields);
  const h = Buffer.from(JSON.stringify(protectedHeader(fields.keyId))).toString('base64url');
  const jws = `${h}.${toBase64Url(payload)}.${toBase64Url(signature)}`;
  return assemble(fields, payload, jws);
}

/** A JWKS indexed by kid, importing each key once. */
export class JwksKeys {
  private readonly byKid = new Map<string, { jwk: JWK; key?: Promise<CryptoKey | undefined> }>();

  constructor(jwks: JSONWebKeySet) {
    for (const jwk of jwks.keys) {
      if (typeof jwk.kid !== 'string' || jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519') continue;
      if (jwk.use !== undefined && jwk.use !== 'sig') continue;
      if (jwk.alg !== undefined && jwk.alg !== 'EdDSA' && jwk.alg !== 'Ed25519') continue;
      this.byKid.set(jwk.kid, { jwk });
    }
  }

  has(kid: string): boolean {
    return this.byKid.has(kid);
  }

  /** `createdUs`/`retiredUs` as published by Keyring.jwks(), when present. */
  validity(kid: string): { createdUs?: number; retiredUs?: number } {
    const jwk = this.byKid.get(kid)?.jwk as Record<string, unknown> | undefined;
    const out: { createdUs?: number; retiredUs?: number } = {};
    if (typeof jwk?.['createdUs'] === 'number') out.createdUs = jwk['createdUs'];
    if (typeof jwk?.['retiredUs'] === 'number') out.retiredUs = jwk['retiredUs'];
    return out;
  }

  key(kid: string): Promise<CryptoKey | undefined> {
    const entry = this.byKid.get(kid);
    if (entry === undefined) return Promise.resolve(undefined);
    entry.key ??= importJWK({ kty: entry.jwk.kty, crv: entry.jwk.crv, x: entry.jwk.x } as JWK, 'EdDSA').then(
      (k) => (k instanceof Uint8Array ? undefined : k),
      () => undefined,
    );
    return entry.key;
  }
}

export type CheckpointVerdict =
  | { readonly status: 'ok'; readonly checkpoint: SignedCheckpoint }
  /** Parsed, but signed with a kid the JWKS does not have. */
  | { readonly status: 'unknown_key'; readonly checkpoint: SignedCheckpoint; readonly detail: string }
  /** Parsed, but the signature does not verify (the checkpoint or its signature was altered). */
  | { readonly status: 'bad_signature'; readonly checkpoint: SignedCheckpoint; readonly detail: string }
  /** Signature valid, but the checkpoint's time lies outside its key's validity. */
  | { readonly status: 'key_not_valid'; readonly checkpoint: SignedCheckpoint; readonly detail: string }
  /** Not parseable as a checkpoint at all. */
  | { readonly status: 'malformed'; readonly hash: Uint8Array; readonly detail: string };

/**
 * Verifies one checkpoint against a JWKS. Only `jws` (or fields + signature) is trusted input:
 * any `fields`/`hash` supplied alongside are recomputed from it.
 */
export async function verifyCheckpoint(
  input: SignedCheckpoint | string,
  keys: JwksKeys | JSONWebKeySet,
): Promise<CheckpointVerdict> {
  const jws = typeof input === 'string' ? input : input.jws;
  const resolver = keys instanceof JwksKeys ? keys : new JwksKeys(keys);
  let cp: SignedCheckpoint;
  try {
    cp = parseCheckpoint(jws);
  } catch (err) {
    const detail = err instanceof IntegrityError ? err.message : 'unparseable checkpoint';
    return { status: 'malformed', hash: checkpointHashOf(jws), detail };
  }
  const kid = cp.fields.keyId;
  const key = await resolver.key(kid);
  if (key === undefined) {
    return { status: 'unknown_key', checkpoint: cp, detail: `key ${kid} is not in the JWKS` };
  }
  try {
    await compactVerify(jws, key, { algorithms: ['EdDSA', 'Ed25519'] });
  } catch {
    return { status: 'bad_signature', checkpoint: cp, detail: `signature does not verify with key ${kid}` };
  }
  const { createdUs, retiredUs } = resolver.validity(kid);
  if (createdUs !== undefined && cp.fields.toTimeUs < createdUs) {
    return {
      status: 'key_not_valid',
      checkpoint: cp,
      detail: `checkpoint ends at ${cp.fields.toTimeUs}, before key ${kid} was created (${createdUs})`,
    };
  }
  if (retiredUs !== undefined && cp.fields.toTimeUs > retiredUs) {
    return {
      status: 'key_not_valid',
      checkpoint: cp,
      detail: `checkpoint ends at ${cp.fields.toTimeUs}, after key ${kid} was retired (${retiredUs})`,
    };
  }
  return { status: 'ok', checkpoint: cp };
}
