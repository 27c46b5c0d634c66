/**
 * Per-identity risk state, folded from events: `evolve(state, event, policy)`. Pure: the state is
 * immutable, evolve returns a new one, nothing here reads a clock or does I/O. Time is event time
 * (`metadata.timeUs`); windows are judged against it, so a replay of the same events in the same
 * order gives the same state whatever the wall clock says.
 *
 * What it folds:
 *   traffic of the identity (its requests, responses, statements, refusals, sessions): windows,
 *     sessions, models and routes seen, and the signals each event raised (signals.ts), so the score
 *     and cooldowns follow from the events alone;
 *   the lifecycle events (finding.opened/updated/closed, identity.suspended/restored), whoever wrote
 *     them: the risk processor's own outputs read back, or an administrator's action in the console.
 *     Each is idempotent (keyed by finding id or suspension event id), so a redelivered event or
 *     one's own output read back after being applied changes nothing.
 *
 * Bounds (per identity, all from the policy; defaults in brackets):
 *   request times        ≤ volume.maxRequests + 1 numbers                     [301]
 *   denials              ≤ repeatedDenials.threshold (time, event id)          [5]
 *   sessions             ≤ limits.maxSessionsPerIdentity, idle ones dropped    [32]
 *   models, routes       ≤ newModel.maxKnown, newRoute.maxKnown (LRU)          [32 each]
 *   scored occurrences   ≤ limits.maxScoredHits, within scoring.windowMs       [64]
 *   open findings        ≤ one per signal                                      [8]
 *   signal marks         ≤ one per signal                                      [8]
 *   recent event ids     ≤ 32 (redelivery guard); lifted suspensions ≤ 8
 * Measured at the defaults (V8 heap): about 23 KB for an identity with every bound full, about 8 KB
 * for a busy ordinary one (a full request window, two models, two sessions). So the default
 * limits.maxIdentities of 10 000 stays under ~250 MB even at worst. How many identities are kept
 * is the RiskBook's business (book.ts): idle ones are evicted.
 */
import type { AnyAttestEvent, EventType, PayloadOf } from '../../../common/src/events/types';
import type { ActorKind, PrincipalRef } from '../../../common/src/events/types.generated';
import { isSignalId, type RiskPolicy, type RiskSeverity, type SignalId } from './policy';
import { evaluate } from './signals';

/** The parts of an event the rules read: built (`newEvent`) and chained events both fit. */
export interface RiskEvent {
  readonly metadata: Pick<AnyAttestEvent['metadata'], 'eventId' | 'type' | 'timeUs' | 'tenantId'>;
  readonly actor: AnyAttestEvent['actor'];
  readonly source: AnyAttestEvent['source'];
  readonly target: AnyAttestEvent['target'];
  readonly outcome: AnyAttestEvent['outcome'];
  readonly correlation: AnyAttestEvent['correlation'];
  readonly payload: AnyAttestEvent['payload'];
}

export interface SessionState {
  readonly sessionId: string;
  /** Requests (gateway requests, SQL statements) seen in the session. */
  readonly requests: number;
  readonly lastSeenUs: number;
}

export interface KnownValue {
  readonly value: string;
  readonly lastUsedUs: number;
}

export interface Denial {
  readonly timeUs: number;
  readonly eventId: string;
}

/** A signal occurrence that counted towards the score (outside its cooldown). */
export interface ScoredHit {
  readonly signalId: SignalId;
  readonly weight: number;
  readonly timeUs: number;
  readonly eventId: string;
}

/** Per signal: when it last occurred at all (quiet period) and last scored (cooldown). */
export interface SignalMark {
  readonly signalId: SignalId;
  readonly lastSeenUs: number;
  /** Null while every occurrence so far fell in a cooldown (out-of-order arrival). */
  readonly lastScoredUs: number | null;
}

export interface OpenFinding {
  readonly findingId: string;
  readonly signalId: SignalId;
  readonly severity: RiskSeverity;
  /** Time of the finding.opened event. */
  readonly openedAtUs: number;
}

export interface Suspension {
  /** The identity.suspended event in force. */
  readonly eventId: string;
  readonly sinceUs: number;
  readonly untilUs: number | null;
  readonly findingId: string | null;
  readonly reason: string;
}

export interface IdentityState {
  /** `identityKey(tenantId, principal)`. */
  readonly key: string;
  readonly tenantId: string;
  readonly principal: PrincipalRef;
  /** Kind of the principal as its latest traffic named it; null before any traffic. */
  readonly kind: ActorKind | null;
  /** Earliest and latest event time of the identity's traffic. */
  readonly firstSeenUs: number | null;
  readonly lastSeenUs: number | null;
  /** Times of recent requests, ascending. */
  readonly requests: readonly number[];
  readonly denials: readonly Denial[];
  readonly sessions: readonly SessionState[];
  readonly models: readonly KnownValue[];
  readonly routes: readonly KnownValue[];
  readonly marks: readonly SignalMark[];
  readonly hits: readonly ScoredHit[];
  readonly findings: readonly OpenFinding[];
  readonly suspension: Suspension | null;
  /** Suspensions already lifted, so a redelivered identity.suspended does not suspend again. */
  readonly liftedSuspensions: readonly string[];
  readonly recentEventIds: readonly string[];
}

const MAX_RECENT_IDS = 32;
const MAX_LIFTED = 8;
const ACTOR_KINDS: ReadonlySet<ActorKind> = new Set(['human', 'agent', 'service']);

/** Types whose actor is the identity the rules watch. */
export const TRAFFIC_TYPES: ReadonlySet<EventType> = new Set([
  'session.started',
  'session.ended',
  'auth.failed',
  'gateway.request.received',
  'gateway.request.blocked',
  'gateway.response.completed',
  'db.query.executed',
]);

export function identityKey(tenantId: string, principal: PrincipalRef): string {
  return `${tenantId}\u0000${principal.issuer}\u0000${principal.subject}`;
}

export function initialIdentityState(tenantId: string, principal: PrincipalRef): IdentityState {
  return {
    key: identityKey(tenantId, principal),
    tenantId,
    principal: { subject: principal.subject, issuer: principal.issuer },
    kind: null,
    firstSeenUs: null,
    lastSeenUs: null,
    requests: [],
    denials: [],
    sessions: [],
    models: [],
    routes: [],
    marks: [],
    hits: [],
    findings: [],
    suspension: null,
    liftedSuspensions: [],
    recentEventIds: [],
  };
}

/** The payload of `e` if it is of `type`. */
export function payloadOf<K extends EventType>(e: RiskEvent, type: K): PayloadOf<K> | null {
  return e.metadata.type === type ? (e.payload as PayloadOf<K>) : null;
}

/**
 * The watched identity whose traffic `e` is, or null: people, agents and services acting through
 * the gateway. Attest's own components, unauthenticated callers and failed logins whose claims
 * did not verify are nobody the rules can attribute behaviour to.
 */
export function trafficPrincipal(e: RiskEvent): PrincipalRef | null {
  if (!TRAFFIC_TYPES.has(e.metadata.type)) return null;
  const a = e.actor;
  if (!ACTOR_KINDS.has(a.kind) || a.subject.trim() === '' || a.subject === 'anonymous') return null;
  const failed = payloadOf(e, 'auth.failed');
  if (failed !== null && !failed.claimsVerified) return null;
  return { subject: a.subject, issuer: a.issuer };
}

/** Where a risk finding records whose it is (finding.opened has no principal field): `identity <issuer> <subject>`. */
export function findingLocation(principal: PrincipalRef): string {
  return `identity ${principal.issuer} ${principal.subject}`;
}

/** Inverse of findingLocation; issuers are URLs or ids without spaces, subjects may have them. */
export function principalOfLocation(location: string | null): PrincipalRef | null {
  const m = location === null ? null : /^identity (\S+) (.+)$/s.exec(location);
  return m === null ? null : { issuer: m[1] ?? '', subject: m[2] ?? '' };
}

/** The signal a risk finding is for, from its detector id `risk.<signal>`. */
export function signalOfDetector(detectorId: string): SignalId | null {
  const id = detectorId.startsWith('risk.') ? detectorId.slice(5) : '';
  return isSignalId(id) ? id : null;
}

/** A request: one unit of work through the gateway (a model call, a SQL statement). */
export function isRequest(e: RiskEvent): boolean {
  return e.metadata.type === 'gateway.request.received' || e.metadata.type === 'db.query.executed';
}

/**
 * A refusal of the identity. Counted once per refused request: gateway.request.blocked (policy.decided
 * 'deny' accompanies it and is not counted again), a denied statement, a failed login whose claims
 * verified. Refusals because the identity is suspended are the suspension working, not new evidence.
 */
export function isDenial(e: RiskEvent): boolean {
  const blocked = payloadOf(e, 'gateway.request.blocked');
  if (blocked !== null) return blocked.stage !== 'suspension';
  const query = payloadOf(e, 'db.query.executed');
  if (query !== null) return query.decision === 'deny';
  const failed = payloadOf(e, 'auth.failed');
  if (failed !== null) return failed.claimsVerified && failed.reasonCode !== 'identity_suspended';
  return false;
}

export function modelOf(e: RiskEvent): string | null {
  const received = payloadOf(e, 'gateway.request.received');
  return received === null ? null : (received.model ?? e.target.model);
}

/** The route as the identity uses it: `<service> <route>` for HTTP, `<service> <database>` for SQL. */
export function routeOf(e: RiskEvent): string | null {
  const received = payloadOf(e, 'gateway.request.received');
  if (received !== null) return `${e.target.service} ${received.route}`;
  const query = payloadOf(e, 'db.query.executed');
  if (query !== null) return `${e.target.service} ${query.database}`;
  return null;
}

/** Sessions still live at `atUs`: seen within limits.sessionIdleMs. */
export function liveSessions(state: IdentityState, atUs: number, policy: RiskPolicy): SessionState[] {
  const horizon = atUs - policy.limits.sessionIdleMs * 1000;
  return state.sessions.filter((s) => s.lastSeenUs > horizon);
}

/** Rounded so that sums of weights compare with thresholds exactly (0.1 + 0.2 + 0.7 is 1). */
export function roundScore(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}

/** The identity's score at `atUs`: weights of scored occurrences within scoring.windowMs, capped at 1. */
export function scoreOf(hits: readonly ScoredHit[], atUs: number, policy: RiskPolicy): number {
  const from = atUs - policy.scoring.windowMs * 1000;
  let sum = 0;
  for (const h of hits) if (h.timeUs > from && h.timeUs <= atUs) sum += h.weight;
  return Math.min(1, roundScore(sum));
}

/** Fold one event into the identity's state. Events of other identities leave it unchanged. */
export function evolve(state: IdentityState, event: RiskEvent, policy: RiskPolicy): IdentityState {
  if (event.metadata.tenantId !== state.tenantId) return state;
  switch (event.metadata.type) {
    case 'finding.opened':
      return evolveFindingOpened(state, event);
    case 'finding.updated':
      return evolveFindingUpdated(state, event);
    case 'finding.closed': {
      const p = event.payload as PayloadOf<'finding.closed'>;
      return state.findings.some((f) => f.findingId === p.findingId)
        ? { ...state, findings: state.findings.filter((f) => f.findingId !== p.findingId) }
        : state;
    }
    case 'identity.suspended':
      return evolveSuspended(state, event);
    case 'identity.restored':
      return evolveRestored(state, event);
    default: {
      const principal = trafficPrincipal(event);
      if (principal === null || identityKey(event.metadata.tenantId, principal) !== state.key) return state;
      return evolveTraffic(state, event, policy);
    }
  }
}

function samePrincipal(a: PrincipalRef, b: PrincipalRef): boolean {
  return a.subject === b.subject && a.issuer === b.issuer;
}

function evolveFindingOpened(state: IdentityState, e: RiskEvent): IdentityState {
  const p = e.payload as PayloadOf<'finding.opened'>;
  const signalId = signalOfDetector(p.detectorId);
  const principal = principalOfLocation(p.location);
  if (signalId === null || principal === null || !samePrincipal(principal, state.principal)) return state;
  if (state.findings.some((f) => f.findingId === p.findingId)) return state;
  const severity = p.severity === 'unknown' ? 'info' : p.severity;
  // One open finding per signal: a second one (another processor instance raced us) replaces the first
  // in our view; both stay in the evidence and the older one is closed by its own lifecycle.
  const others = state.findings.filter((f) => f.signalId !== signalId);
  return { ...state, findings: [...others, { findingId: p.findingId, signalId, severity, openedAtUs: e.metadata.timeUs }] };
}

function evolveFindingUpdated(state: IdentityState, e: RiskEvent): IdentityState {
  const p = e.payload as PayloadOf<'finding.updated'>;
  const severity = p.severity === null || p.severity === 'unknown' ? null : p.severity;
  // Only a severity change matters here; evidence and notes live in the events themselves.
  if (severity === null || !state.findings.some((f) => f.findingId === p.findingId && f.severity !== severity)) return state;
  return { ...state, findings: state.findings.map((f) => (f.findingId === p.findingId ? { ...f, severity } : f)) };
}

function evolveSuspended(state: IdentityState, e: RiskEvent): IdentityState {
  const p = e.payload as PayloadOf<'identity.suspended'>;
  if (!samePrincipal(p.principal, state.principal)) return state;
  const id = e.metadata.eventId;
  if (state.suspension?.eventId === id || state.liftedSuspensions.includes(id)) return state;
  return { ...state, suspension: { eventId: id, sinceUs: e.metadata.timeUs, untilUs: p.untilUs, findingId: p.findingId, reason: p.reason } };
}

function evolveRestored(state: IdentityState, e: RiskEvent): IdentityState {
  const p = e.payload as PayloadOf<'identity.restored'>;
  const current = state.suspension;
  if (!samePrincipal(p.principal, state.principal) || current === null) return state;
  // A restore of an older suspension, delivered after a newer one began, does not lift the newer one.
  // Same rule as the gateways' ControlState (restore at or after the suspension in force lifts it),
  // plus an exact match on the suspension it names, which holds whatever the producers' clocks say.
  if (p.suspendedEventId !== current.eventId && e.metadata.timeUs < current.sinceUs) return state;
  return {
    ...state,
    suspension: null,
    liftedSuspensions: [...state.liftedSuspensions, current.eventId].slice(-MAX_LIFTED),
    // The score starts again from zero: what led to the suspension has been reviewed (or has lapsed),
    // and keeping it would suspend the identity again at its next occurrence.
    hits: [],
  };
}

function evolveTraffic(state: IdentityState, e: RiskEvent, policy: RiskPolicy): IdentityState {
  const id = e.metadata.eventId;
  if (state.recentEventIds.includes(id)) return state;
  const t = e.metadata.timeUs;
  const signals = evaluate(state, e, policy);
  const horizon = Math.max(state.lastSeenUs ?? t, t);
  const p = policy.signals;

  let requests = state.requests;
  if (isRequest(e)) {
    const from = horizon - p.volume.windowMs * 1000;
    requests = insertSorted(requests.filter((r) => r > from), t).slice(-(p.volume.maxRequests + 1));
  }
  let denials = state.denials;
  if (isDenial(e)) {
    const from = horizon - p.repeatedDenials.windowMs * 1000;
    denials = [...denials.filter((d) => d.timeUs > from), { timeUs: t, eventId: id }]
      .sort((a, b) => a.timeUs - b.timeUs)
      .slice(-p.repeatedDenials.threshold);
  }

  const model = modelOf(e);
  const route = routeOf(e);
  let marks = state.marks;
  let hits = state.hits;
  for (const s of signals) {
    const old = marks.find((m) => m.signalId === s.signalId);
    const mark: SignalMark = {
      signalId: s.signalId,
      lastSeenUs: Math.max(old?.lastSeenUs ?? t, t),
      lastScoredUs: s.scored ? Math.max(old?.lastScoredUs ?? t, t) : (old?.lastScoredUs ?? null),
    };
    marks = [...marks.filter((m) => m.signalId !== s.signalId), mark];
    if (s.scored) hits = [...hits, { signalId: s.signalId, weight: s.weight, timeUs: t, eventId: id }];
  }
  const scoreFrom = horizon - policy.scoring.windowMs * 1000;
  if (hits !== state.hits || hits.some((h) => h.timeUs <= scoreFrom)) {
    hits = hits.filter((h) => h.timeUs > scoreFrom).slice(-policy.limits.maxScoredHits);
  }

  return {
    ...state,
    kind: e.actor.kind,
    firstSeenUs: Math.min(state.firstSeenUs ?? t, t),
    lastSeenUs: horizon,
    requests,
    denials,
    sessions: evolveSessions(state, e, horizon, policy),
    models: model === null ? state.models : learn(state.models, model, t, p.newModel.maxKnown),
    routes: route === null ? state.routes : learn(state.routes, route, t, p.newRoute.maxKnown),
    marks,
    hits,
    recentEventIds: [...state.recentEventIds, id].slice(-MAX_RECENT_IDS),
  };
}

function evolveSessions(state: IdentityState, e: RiskEvent, horizon: number, policy: RiskPolicy): SessionState[] {
  const sid = e.correlation.sessionId;
  const t = e.metadata.timeUs;
  const from = horizon - policy.limits.sessionIdleMs * 1000;
  const kept = state.sessions.filter((s) => s.sessionId !== sid && s.lastSeenUs > from);
  if (e.metadata.type === 'session.ended') return kept;
  const old = state.sessions.find((s) => s.sessionId === sid);
  const session: SessionState = {
    sessionId: sid,
    requests: (old?.requests ?? 0) + (isRequest(e) ? 1 : 0),
    lastSeenUs: Math.max(old?.lastSeenUs ?? t, t),
  };
  // Least recently seen sessions go first when over the bound.
  return [...kept, session].sort((a, b) => a.lastSeenUs - b.lastSeenUs).slice(-policy.limits.maxSessionsPerIdentity);
}

function learn(known: readonly KnownValue[], value: string, t: number, max: number): KnownValue[] {
  const old = known.find((k) => k.value === value);
  const next = { value, lastUsedUs: Math.max(old?.lastUsedUs ?? t, t) };
  return [...known.filter((k) => k.value !== value), next].sort((a, b) => a.lastUsedUs - b.lastUsedUs).slice(-max);
}

function insertSorted(xs: readonly number[], x: number): number[] {
  const out = [...xs];
  let i = out.length;
  while (i > 0 && (out[i - 1] ?? 0) > x) i--;
  out.splice(i, 0, x);
  return out;
}
