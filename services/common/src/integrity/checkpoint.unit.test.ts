import { compactVerify, importJWK } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  checkpointFromParts,
  checkpointHashOf,
  decodeCheckpointPayload,
  encodeCheckpointPayload,
  parseCheckpoint,
  signCheckpoint,
  verifyCheckpoint,
} from './checkpoint';
import type { UnsignedCheckpoint } from './checkpoint';
import { ZERO_HASH, sha256 } from './hash';
import { InMemoryKeyStore, Keyring } from './keyring';
import { EMPTY_ROOT } from './merkle';
import { FakeClock } from './testkit';

const h = (s: string): Uint8Array => sha256(new TextEncoder().encode(s));
const body: UnsignedCheckpoint = {
  producer: 'gw-1',
  epoch: 'e1',
  firstSequence: 11,
  lastSequence: 20,
  fromTimeUs: 1_000_000,
  toTimeUs: 2_000_000,
  lastHash: h('event 20'),
  merkleRoot: h('root'),
  prevCheckpointHash: h('previous checkpoint'),
  closed: false,
};

let ring: Keyring;
const clock = new FakeClock(500_000);
beforeAll(async () => {
  ring = await Keyring.open(new InMemoryKeyStore(), { clock });
  await ring.rotate();
});

function b64(s: string): string {
  return Buffer.from(s).toString('base64url');
}

describe('signed checkpoints', () => {
  it('Given a range, When signed, Then it is a standard compact JWS any JOSE library verifies with the JWKS', async () => {
    const cp = await signCheckpoint(body, ring.signingKey());
    expect(cp.fields).toMatchObject({ ...body, count: 10, keyId: ring.currentKid });
    expect(cp.signature).toHaveLength(64);
    const header = JSON.parse(Buffer.from(cp.jws.split('.')[0]!, 'base64url').toString()) as Record<string, unknown>;
    expect(header).toEqual({ alg: 'EdDSA', kid: ring.currentKid, typ: 'attest-checkpoint+jws' });
    const { payload } = await compactVerify(cp.jws, await importJWK(ring.jwks().keys[0]!, 'EdDSA'));
    expect(Buffer.from(payload)).toEqual(Buffer.from(cp.payload));
    expect(cp.hash).toEqual(checkpointHashOf(cp.jws));
    expect(await verifyCheckpoint(cp, ring.jwks())).toMatchObject({ status: 'ok' });
  });

  it('Given the fields and the 64 signature bytes an event stores, When reassembled, Then the same JWS and hash come back', async () => {
    const cp = await signCheckpoint(body, ring.signingKey());
    const again = checkpointFromParts(decodeCheckpointPayload(cp.payload), cp.signature);
    expect(again.jws).toBe(cp.jws);
    expect(again.hash).toEqual(cp.hash);
    expect(await verifyCheckpoint(again.jws, ring.jwks())).toMatchObject({ status: 'ok' });
  });

  it('Given an idle period, When an empty checkpoint is signed, Then it has count 0 and carries the last hash', async () => {
    const cp = await signCheckpoint({ ...body, firstSequence: 21, lastSequence: 20, merkleRoot: EMPTY_ROOT }, ring.signingKey());
    expect(cp.fields.count).toBe(0);
    expect(cp.fields.lastHash).toEqual(body.lastHash);
    expect(await verifyCheckpoint(cp.jws, ring.jwks())).toMatchObject({ status: 'ok' });
  });

  it('Given a signed checkpoint, When a field is changed and re-encoded, Then the signature no longer verifies', async () => {
    const cp = await signCheckpoint(body, ring.signingKey());
    const [hdr, , sig] = cp.jws.split('.') as [string, string, string];
    const forged = encodeCheckpointPayload({ ...cp.fields, lastSequence: 19, count: 9 });
    const jws = `${hdr}.${Buffer.from(forged).toString('base64url')}.${sig}`;
    expect(await verifyCheckpoint(jws, ring.jwks())).toMatchObject({ status: 'bad_signature' });
  });

  it('Given a JWKS without the signing key, When verified, Then the kid is reported unknown', async () => {
    const cp = await signCheckpoint(body, ring.signingKey());
    const other = await Keyring.open(new InMemoryKeyStore());
    await other.rotate();
    expect(await verifyCheckpoint(cp.jws, other.jwks())).toMatchObject({ status: 'unknown_key' });
  });

  it('Given a key rotated at T, When a checkpoint signed by the old key claims to end after T, Then the key is not valid for it', async () => {
    const local = await Keyring.open(new InMemoryKeyStore(), { clock: new FakeClock(1_000_000) });
    await local.rotate();
    const oldKey = local.signingKey();
    await local.rotate(); // retires the old key at 1_000_000
    const late = await signCheckpoint({ ...body, fromTimeUs: 1_000_000, toTimeUs: 1_000_001 }, oldKey);
    expect(await verifyCheckpoint(late.jws, local.jwks())).toMatchObject({ status: 'key_not_valid' });
    const backdated = await signCheckpoint({ ...body, fromTimeUs: 0, toTimeUs: 999_999 }, local.signingKey());
    expect(await verifyCheckpoint(backdated.jws, local.jwks())).toMatchObject({ status: 'key_not_valid' });
  });

  it('Given payloads that are not exactly canonical, When parsed, Then they are refused as malformed', async () => {
    const cp = await signCheckpoint(body, ring.signingKey());
    const [hdr, , sig] = cp.jws.split('.') as [string, string, string];
    const reordered = JSON.stringify({ v: 1, ...(JSON.parse(Buffer.from(cp.payload).toString()) as object) });
    const spaced = Buffer.from(cp.payload).toString().replace(',', ', ');
    for (const p of [reordered, spaced, '{}', 'not json']) {
      expect(() => parseCheckpoint(`${hdr}.${b64(p)}.${sig}`)).toThrow(expect.objectContaining({ code: 'integrity_checkpoint_malformed' }));
    }
    expect(() => parseCheckpoint('a.b')).toThrow(expect.objectContaining({ code: 'integrity_checkpoint_malformed' }));
    expect(await verifyCheckpoint('a.b.c', ring.jwks())).toMatchObject({ status: 'malformed' });
  });

  it('Given incoherent fields, When signing, Then it is refused before any signature is made', async () => {
    await expect(signCheckpoint({ ...body, firstSequence: 0 }, ring.signingKey())).rejects.toMatchObject({ code: 'integrity_invalid_argument' });
    await expect(signCheckpoint({ ...body, lastSequence: 5 }, ring.signingKey())).rejects.toMatchObject({ code: 'integrity_invalid_argument' });
    await expect(signCheckpoint({ ...body, toTimeUs: 0 }, ring.signingKey())).rejects.toMatchObject({ code: 'integrity_invalid_argument' });
    await expect(signCheckpoint({ ...body, prevCheckpointHash: new Uint8Array(31) }, ring.signingKey())).rejects.toMatchObject({
      code: 'integrity_invalid_argument',
    });
  });

  it('Given the first checkpoint of a producer, When encoded, Then its predecessor is the zero hash', async () => {
    const cp = await signCheckpoint({ ...body, prevCheckpointHash: ZERO_HASH }, ring.signingKey());
    expect(Buffer.from(cp.payload).toString()).toContain(`"prevCheckpointHash":"${Buffer.alloc(32).toString('base64url')}"`);
  });
});
