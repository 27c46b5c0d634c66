import type { JWTPayload } from 'jose';
import type { IssuerOptions, Principal, PrincipalKind } from './types';

const KINDS: ReadonlySet<string> = new Set<PrincipalKind>(['human', 'agent', 'service']);

/** Claims only a signed-in person has; client-credentials tokens carry none of them. */
const HUMAN_CLAIMS = ['email', 'name', 'given_name', 'family_name', 'nickname', 'upn', 'unique_name', 'amr'] as const;

const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);

/**
 * Reads a claim by name, then as a dotted path. The literal name goes first because namespaced
 * custom claims ('https://example.com/groups') contain dots and must not be split.
 */
export function readClaim(claims: Record<string, unknown>, name: string): unknown {
  if (Object.hasOwn(claims, name)) return claims[name];
  let cur: unknown = claims;
  for (const part of name.split('.')) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur) || !Object.hasOwn(cur, part)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/** A string claim is one group; an array keeps its string members; anything else is no groups. */
export function groupsFrom(value: unknown): string[] {
  if (typeof value === 'string') return value.length > 0 ? [value] : [];
  if (!Array.isArray(value)) return [];
  const out = new Set<string>();
  for (const g of value) if (typeof g === 'string' && g.length > 0) out.add(g);
  return [...out];
}

export function clientIdFrom(claims: Record<string, unknown>): string | undefined {
  // client_id is RFC 9068; azp is OIDC; cid is Okta; appid is Azure AD v1.
  return str(claims.client_id) ?? str(claims.azp) ?? str(claims.cid) ?? str(claims.appid);
}

/**
 * Decides human / agent / service. In order:
 *  1. `kindByClientId[clientId]` from the issuer config (the operator's word wins);
 *  2. an `attest_kind` claim set by the IdP ('human' | 'agent' | 'service');
 *  3. a delegated token (RFC 8693 `act` claim) is an 'agent' acting for someone;
 *  4. 'service' for client-credentials tokens: `sub` equals the client id (RFC 9068, Okta,
 *     oidc-provider) or `${clientId}@clients` (Auth0), `gty: client-credentials` (Auth0),
 *     `idtyp: app` (Azure AD) or a Keycloak `service-account-*` username; and in each case none of
 *     the claims only a signed-in person has (email, name, upn, amr, ...);
 *  5. otherwise 'human'.
 * An agent holding its own client credentials therefore shows as 'service' unless the IdP or the
 * config says 'agent'.
 */
export function kindFrom(
  claims: Record<string, unknown>,
  clientId: string | undefined,
  delegated: boolean,
  opts: Pick<IssuerOptions, 'kindByClientId'>,
): PrincipalKind {
  const pinned = clientId === undefined ? undefined : opts.kindByClientId?.[clientId];
  if (pinned !== undefined) return pinned;
  const claimed = claims.attest_kind;
  if (typeof claimed === 'string' && KINDS.has(claimed)) return claimed as PrincipalKind;
  if (delegated) return 'agent';

  const username = str(claims.preferred_username);
  const keycloakServiceAccount = username?.startsWith('service-account-') ?? false;
  const humanSignals = HUMAN_CLAIMS.some((c) => claims[c] !== undefined) || (username !== undefined && !keycloakServiceAccount);
  if (humanSignals) return 'human';
  const sub = str(claims.sub);
  const machine =
    (clientId !== undefined && (sub === clientId || sub === `${clientId}@clients`)) ||
    claims.gty === 'client-credentials' ||
    claims.idtyp === 'app' ||
    keycloakServiceAccount;
  return machine ? 'service' : 'human';
}

/** Builds the Principal from a payload whose signature and time/audience claims are verified. */
export function principalFrom(payload: JWTPayload, issuer: IssuerOptions): Principal {
  const claims = payload as Record<string, unknown>;
  const sub = payload.sub as string; // presence and type checked by the verifier
  const clientId = clientIdFrom(claims);

  // RFC 8693: `sub` is who the token is about, `act.sub` the party currently acting for it.
  const act = claims.act;
  const actor = act !== null && typeof act === 'object' && !Array.isArray(act) ? str((act as Record<string, unknown>).sub) : undefined;

  const principal: Principal = {
    subject: actor ?? sub,
    issuer: issuer.issuer,
    groups: groupsFrom(readClaim(claims, issuer.groupsClaim ?? 'groups')),
    kind: kindFrom(claims, clientId, actor !== undefined, issuer),
    expiresAt: payload.exp as number, // required and type-checked by the verifier
  };
  if (clientId !== undefined) principal.clientId = clientId;
  if (actor !== undefined) principal.onBehalfOf = sub;
  const jti = str(payload.jti);
  if (jti !== undefined) principal.tokenId = jti;
  if (typeof payload.iat === 'number') principal.issuedAt = payload.iat;
  if (Array.isArray(claims.amr)) principal.amr = claims.amr.filter((m): m is string => typeof m === 'string');
  const acr = str(claims.acr);
  if (acr !== undefined) principal.acr = acr;
  // Only the issuer decides this: a production token carrying attest_dev must not be able to
  // get itself filtered out of evidence as "dev traffic".
  if (issuer.dev === true) principal.dev = true;
  return principal;
}
