/**
 * An attack corpus for the token verifier: each entry is a token an attacker (or a broken client)
 * could present, with the AuthFailureReason the verifier must give. Tokens that need a valid IdP
 * signature to reach a claim check (expired, wrong audience, missing sub...) are signed with the
 * test IdP's real key via signAccessToken; the rest are forged without it.
 *
 * Assumes the verifier's defaults (clock tolerance 30 s, maxTokenBytes 8192 unless given) and that
 * the IdP's issuer and audience are configured. Every token is a header-safe ASCII string, so the
 * corpus can also be replayed through the gateway over HTTP.
 */
import { createHmac, createPublicKey, randomUUID, type JsonWebKey } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import type { AuthFailureReason } from '../../services/common/src/identity';
import type { TestIdp } from './idp';

export interface TokenAttack {
  name: string;
  token: string;
  reason: AuthFailureReason;
  /** True when the verifier must reject it without discovery or a JWKS fetch. */
  beforeKeyLookup: boolean;
}

export type AttackTarget = Pick<TestIdp, 'issuer' | 'audience' | 'alg' | 'publicJwks' | 'currentKid' | 'signAccessToken'>;

const b64 = (s: string | Buffer): string => Buffer.from(s).toString('base64url');
const enc = (v: unknown): string => b64(JSON.stringify(v));

function decodePart(part: string | undefined): Record<string, unknown> {
  if (part === undefined) throw new Error('token-attacks: the valid token is not a JWT');
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as Record<string, unknown>;
}

function without(claims: Record<string, unknown>, ...names: string[]): Record<string, unknown> {
  const copy = { ...claims };
  for (const n of names) delete copy[n];
  return copy;
}

/** Flips one character in the middle of a base64url string (the end may hold only padding bits). */
function flipOne(s: string): string {
  const i = Math.floor(s.length / 2);
  const c = s[i] === 'A' ? 'B' : 'A';
  return `${s.slice(0, i)}${c}${s.slice(i + 1)}`;
}

export async function tokenAttacks(idp: AttackTarget, validToken: string, opts: { maxTokenBytes?: number } = {}): Promise<TokenAttack[]> {
  const [h, p, s = ''] = validToken.split('.');
  const header = decodePart(h);
  const claims = decodePart(p);
  const now = Math.floor(Date.now() / 1000);
  const live = { ...claims, iat: now - 10, exp: now + 600 };
  const kid = idp.currentKid();
  const publicJwk = idp.publicJwks().keys.find((k) => k.kid === kid) as JWK;
  const pem = createPublicKey({ key: publicJwk as JsonWebKey, format: 'jwk' }).export({ type: 'spki', format: 'pem' }).toString();

  // The attacker's own key pair of the same type as the IdP's, so kid matching alone cannot save us.
  const attacker = await generateKeyPair(idp.alg, { extractable: true, ...(idp.alg === 'EdDSA' ? { crv: 'Ed25519' } : {}) });
  const attackerPublic = await exportJWK(attacker.publicKey);
  const forge = (hdr: Record<string, unknown>, payload: Record<string, unknown>, key: CryptoKey = attacker.privateKey) =>
    new SignJWT(payload).setProtectedHeader({ alg: idp.alg, typ: 'at+jwt', ...hdr }).sign(key);
  const hmac = (alg: 'HS256' | 'HS512', secret: string, payload: Record<string, unknown>) => {
    const input = `${enc({ alg, typ: 'JWT', kid })}.${enc(payload)}`;
    return `${input}.${createHmac(alg === 'HS256' ? 'sha256' : 'sha512', secret).update(input).digest('base64url')}`;
  };
  const signed = (payload: Record<string, unknown>) => idp.signAccessToken(payload);

  const maxTokenBytes = opts.maxTokenBytes ?? 8192;
  // Over the limit once base64url-encoded, yet under Node's 16 KiB header limit so it can still
  // travel in an Authorization header.
  const padding = 'A'.repeat(maxTokenBytes);
  const otherAlg = idp.alg === 'ES256' ? 'RS256' : 'ES256';

  const pre = (name: string, token: string, reason: AuthFailureReason): TokenAttack => ({ name, token, reason, beforeKeyLookup: true });
  const post = (name: string, token: string, reason: AuthFailureReason): TokenAttack => ({ name, token, reason, beforeKeyLookup: false });

  return [
    // Structure, checked before anything else.
    pre('not a JWT at all', 'not-a-jwt', 'token_malformed'),
    pre('two segments', `${h}.${p}`, 'token_malformed'),
    pre('five segments (JWE shape)', `${h}.${p}.${s}.AAAA.BBBB`, 'token_malformed'),
    pre('header is not JSON', `${b64('{"alg":"RS256"')}.${p}.${s}`, 'token_malformed'),
    pre('payload is a JSON array', `${h}.${enc([claims])}.${s}`, 'token_malformed'),
    pre('characters outside base64url', `${h}.${p}+/=.${s}`, 'token_malformed'),
    pre('oversized (padded claims)', `${h}.${enc({ ...live, pad: padding })}.${s}`, 'token_too_large'),
    pre('b64 header (unencoded payload)', `${enc({ ...header, b64: false, crit: ['b64'] })}.${p}.${s}`, 'token_malformed'),
    pre('kid is not a string', `${enc({ ...header, kid: 12345 })}.${p}.${s}`, 'token_malformed'),
    pre('unknown critical header', `${enc({ ...header, crit: ['x-attest-unknown'], 'x-attest-unknown': true })}.${p}.${s}`, 'token_malformed'),

    // Algorithm, checked before any key lookup.
    pre('alg none, empty signature', `${enc({ alg: 'none', typ: 'JWT' })}.${enc(live)}.`, 'alg_not_allowed'),
    pre('alg None (case variant) with the original signature', `${enc({ ...header, alg: 'None' })}.${p}.${s}`, 'alg_not_allowed'),
    pre('HS256 keyed with the issuer public key (PEM)', hmac('HS256', pem, live), 'alg_not_allowed'),
    pre('HS256 keyed with the issuer public JWK (JSON)', hmac('HS256', JSON.stringify(publicJwk), live), 'alg_not_allowed'),
    pre('HS512 keyed with the issuer public key (PEM)', hmac('HS512', pem, live), 'alg_not_allowed'),
    pre('unsupported algorithm (ES256K)', `${enc({ ...header, alg: 'ES256K' })}.${p}.${s}`, 'alg_not_allowed'),

    // Issuer routing, before any key lookup; a valid IdP signature does not help.
    pre('untrusted issuer (attacker-signed)', await forge({ kid: 'attacker' }, { ...live, iss: 'https://idp.attacker.example' }), 'unknown_issuer'),
    pre('issuer with a trailing slash (IdP-signed)', await signed({ ...live, iss: `${idp.issuer}/` }), 'unknown_issuer'),
    pre('missing iss (IdP-signed)', await signed(without(live, 'iss')), 'missing_claim'),

    // Keys.
    post('unknown kid (attacker key)', await forge({ kid: `attacker-${randomUUID()}` }, live), 'unknown_kid'),
    post('jku header pointing at attacker keys', await forge({ kid: `attacker-${randomUUID()}`, jku: 'https://idp.attacker.example/jwks' }, live), 'unknown_kid'),
    post('real kid, attacker key', await forge({ kid }, live), 'bad_signature'),
    post('no kid, attacker key', await forge({}, live), 'bad_signature'),
    post('embedded jwk header (attacker key)', await forge({ kid, jwk: attackerPublic }, live), 'bad_signature'),
    post(`alg confusion: ${otherAlg} header with the IdP kid`, `${enc({ ...header, alg: otherAlg })}.${p}.${s}`, 'bad_signature'),

    // Signature.
    post('payload tampered (groups escalated), signature kept', `${h}.${enc({ ...claims, groups: ['admins'] })}.${s}`, 'bad_signature'),
    post('signature altered', `${h}.${p}.${flipOne(s)}`, 'bad_signature'),
    post('signature stripped', `${h}.${p}.`, 'bad_signature'),

    // Claims, behind a valid IdP signature.
    post('wrong audience', await signed({ ...live, aud: 'https://other-service.example' }), 'wrong_audience'),
    post('missing aud', await signed(without(live, 'aud')), 'missing_claim'),
    post('expired an hour ago', await signed({ ...live, iat: now - 7200, exp: now - 3600 }), 'token_expired'),
    post('expired beyond the clock tolerance', await signed({ ...live, iat: now - 700, exp: now - 120 }), 'token_expired'),
    post('not yet valid (nbf in an hour)', await signed({ ...live, nbf: now + 3600 }), 'token_not_yet_valid'),
    post('issued in the future (iat in an hour)', await signed({ ...live, iat: now + 3600, exp: now + 7200 }), 'token_not_yet_valid'),
    post('missing sub', await signed(without(live, 'sub')), 'missing_claim'),
    post('missing exp', await signed(without(live, 'exp')), 'missing_claim'),
    post('exp is a string', await signed({ ...live, exp: String(now + 600) }), 'token_malformed'),
    post('sub is not a string', await signed({ ...live, sub: 42 }), 'token_malformed'),
  ];
}
