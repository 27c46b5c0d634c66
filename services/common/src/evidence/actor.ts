import type { Actor } from '../events';
import type { Principal } from '../identity';

/** The event actor for an authenticated principal, or the anonymous actor when there is none. */
export function actorFromPrincipal(p: Principal | undefined): Actor {
  if (p === undefined) return { subject: 'anonymous', issuer: 'none', clientId: null, groups: [], kind: 'unknown', onBehalfOf: null, dev: false };
  return { subject: p.subject, issuer: p.issuer, clientId: p.clientId ?? null, groups: p.groups, kind: p.kind, onBehalfOf: p.onBehalfOf ?? null, dev: p.dev === true };
}
