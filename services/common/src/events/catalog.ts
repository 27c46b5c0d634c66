/**
 * The event catalog: every event type, its stable code and its current schema version.
 *
 * Code scheme (docs/events.md, "Codes"): `A` + domain letter + class digit + three-digit ordinal.
 *   domain: S session, A authentication, G gateway traffic, P policy, M masking, V approvals,
 *           D database, R risk, I identity, C configuration, K keys, L audit logging,
 *           E evidence access, T tamper evidence (integrity), F findings.
 *   class:  1 = normal activity; 2 = an exception a reviewer looks at first (a failure, denial,
 *           expiry, suspension, stop, detected risk, opened finding). Fixed per type, so a SIEM
 *           rule can key on the code alone; the per-event result is in `outcome.result`.
 *   ordinal: 001, 002, ... in order of introduction within domain and class.
 * A code is never reused or renumbered, even when its type is retired.
 */

export const EVENT_TYPES = [
  'session.started',
  'session.ended',
  'auth.succeeded',
  'auth.failed',
  'gateway.request.received',
  'policy.decided',
  'gateway.request.forwarded',
  'gateway.request.blocked',
  'gateway.response.completed',
  'data.masked',
  'approval.requested',
  'approval.decided',
  'approval.expired',
  'db.query.executed',
  'risk.detected',
  'identity.suspended',
  'identity.restored',
  'config.changed',
  'key.rotated',
  'audit.started',
  'audit.stopped',
  'evidence.accessed',
  'integrity.checkpoint',
  'finding.opened',
  'finding.updated',
  'finding.closed',
  'approval.released',
  'approval.cancelled',
] as const;

export type EventType = (typeof EVENT_TYPES)[number];

export interface CatalogEntry {
  /** Stable short code, e.g. 'AG1001'. */
  readonly code: string;
  /** Current schema version: what writers write and readers resolve into. */
  readonly version: number;
}

export const EVENT_CATALOG: { readonly [K in EventType]: CatalogEntry } = {
  'session.started': { code: 'AS1001', version: 1 },
  'session.ended': { code: 'AS1002', version: 1 },
  'auth.succeeded': { code: 'AA1001', version: 1 },
  'auth.failed': { code: 'AA2001', version: 1 },
  'gateway.request.received': { code: 'AG1001', version: 2 },
  'gateway.request.forwarded': { code: 'AG1002', version: 1 },
  'gateway.response.completed': { code: 'AG1003', version: 1 },
  'gateway.request.blocked': { code: 'AG2001', version: 1 },
  'policy.decided': { code: 'AP1001', version: 1 },
  'data.masked': { code: 'AM1001', version: 2 },
  'approval.requested': { code: 'AV1001', version: 2 },
  'approval.decided': { code: 'AV1002', version: 1 },
  'approval.released': { code: 'AV1003', version: 1 },
  'approval.expired': { code: 'AV2001', version: 2 },
  'approval.cancelled': { code: 'AV2002', version: 1 },
  'db.query.executed': { code: 'AD1001', version: 1 },
  'risk.detected': { code: 'AR2001', version: 1 },
  'identity.restored': { code: 'AI1001', version: 1 },
  'identity.suspended': { code: 'AI2001', version: 1 },
  'config.changed': { code: 'AC1001', version: 1 },
  'key.rotated': { code: 'AK1001', version: 1 },
  'audit.started': { code: 'AL1001', version: 1 },
  'audit.stopped': { code: 'AL2001', version: 1 },
  'evidence.accessed': { code: 'AE1001', version: 1 },
  'integrity.checkpoint': { code: 'AT1001', version: 1 },
  'finding.updated': { code: 'AF1001', version: 1 },
  'finding.closed': { code: 'AF1002', version: 1 },
  'finding.opened': { code: 'AF2001', version: 1 },
};

/** Domain letter of the code scheme, per type prefix. */
export const CODE_DOMAINS: Readonly<Record<string, { letter: string; name: string }>> = {
  session: { letter: 'S', name: 'sessions' },
  auth: { letter: 'A', name: 'authentication' },
  gateway: { letter: 'G', name: 'gateway traffic' },
  policy: { letter: 'P', name: 'policy' },
  data: { letter: 'M', name: 'masking' },
  approval: { letter: 'V', name: 'approvals' },
  db: { letter: 'D', name: 'database' },
  risk: { letter: 'R', name: 'risk' },
  identity: { letter: 'I', name: 'identity' },
  config: { letter: 'C', name: 'configuration' },
  key: { letter: 'K', name: 'keys' },
  audit: { letter: 'L', name: 'audit logging' },
  evidence: { letter: 'E', name: 'evidence access' },
  integrity: { letter: 'T', name: 'tamper evidence' },
  finding: { letter: 'F', name: 'findings' },
};

export const CODE_PATTERN = /^A[A-Z][12]\d{3}$/;

export const AVRO_NAMESPACE = 'dev.attest.events';

const EVENT_TYPE_SET: ReadonlySet<string> = new Set(EVENT_TYPES);

export function isEventType(value: string): value is EventType {
  return EVENT_TYPE_SET.has(value);
}

/** 'gateway.request.received' → 'GatewayRequestReceived': the envelope record's short name. */
export function recordNameOf(type: EventType): string {
  return type
    .split('.')
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join('');
}

export function fullRecordNameOf(type: EventType): string {
  return `${AVRO_NAMESPACE}.${recordNameOf(type)}`;
}
