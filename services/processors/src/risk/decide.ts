/**
 * What the risk rules emit, decided from the identity's state and one input. Pure: no clock (the
 * caller passes `nowUs`), no I/O, ids derived from what they are about, so the same state and input
 * always decide the same outputs.
 *
 *   input                      outputs
 *   event (identity traffic)   per scored signal: finding.opened (first occurrence) or finding.updated
 *                              (the open finding of that identity and signal), then risk.detected with
 *                              the identity's score and its contributions; identity.suspended when this
 *                              event crosses `suspendAt` and the identity is not already suspended
 *   restore (administrator)    identity.restored (refused: not suspended, self-restore, no reason)
 *   close-finding (admin)      finding.closed with the given resolution and reason
 *   tick (time passes)         identity.restored (automatic) when a suspension's untilUs passed;
 *                              finding.closed for findings quiet for findings.autoCloseAfterMs
 *                              (not while the identity is suspended: the finding is the reason)
 *
 * `state` is the identity's state BEFORE the input; the caller folds the input event and then the
 * built outputs with `evolve` (book.ts does all three) before deciding the next input, which is what
 * makes a suspension happen once per crossing: the next event sees `suspension` set.
 *
 * Output shape (OCSF Detection Finding in mind): finding uid = findingId (stable, derived from
 * identity, signal and the first evidence event), severity from score bands, detector id
 * `risk.<signal>`, evidence event ids, and the identity in `location` as `identity <issuer> <subject>`.
 * Card data findings are category 'data_security' (OCSF 2006, PCI DSS 12.10.7), the others 'risk'.
 */
import { createHash } from 'node:crypto';
import { newEvent, type NewEventDeps } from '../../../common/src/events/builder';
import type { EventParts, UnchainedEvent } from '../../../common/src/events/types';
import type {
  Actor,
  Correlation,
  FindingCategory,
  FindingResolution,
  PrincipalRef,
  Source,
  Target,
} from '../../../common/src/events/types.generated';
import { RiskError } from './errors';
import { SIGNAL_IDS, signalSettings, type RiskPolicy, type RiskSeverity, type SignalId } from './policy';
import { evaluate, type EvaluatedSignal } from './signals';
import {
  findingLocation,
  identityKey,
  liveSessions,
  roundScore,
  scoreOf,
  trafficPrincipal,
  type IdentityState,
  type RiskEvent,
  type ScoredHit,
} from './state';

export const RISK_OUTPUT_TYPES = ['risk.detected', 'finding.opened', 'finding.updated', 'finding.closed', 'identity.suspended', 'identity.restored'] as const;
export type RiskOutputType = (typeof RISK_OUTPUT_TYPES)[number];

/** An event to emit: its type and everything newEvent (or EvidenceEmitter.build, without tenantId) needs. */
export type RiskOutput = { [K in RiskOutputType]: { readonly type: K; readonly parts: EventParts<K> } }[RiskOutputType];

/** An administrator's command, as the console received it. */
interface AdminCommand {
  readonly tenantId: string;
  /** The administrator (authorised by the caller: console.adminGroups). */
  readonly actor: Actor;
  readonly source: Source;
  /** Machine-readable and required, e.g. 'admin:reviewed-false-positive'. */
  readonly reason: string;
  /** The console request that carried the command; its session id when it has one. */
  readonly requestId: string;
  readonly sessionId?: string;
}

export type RiskInput =
  /** An event read from the log. */
  | { readonly kind: 'event'; readonly event: RiskEvent }
  /** Lift the identity's suspension. */
  | ({ readonly kind: 'restore'; readonly principal: PrincipalRef } & AdminCommand)
  /** Close an open risk finding. */
  | ({ readonly kind: 'close-finding'; readonly findingId: string; readonly resolution: FindingResolution } & AdminCommand)
  /** Time passes: lapse timed suspensions, close quiet findings. */
  | { readonly kind: 'tick' };

export interface DecideOptions {
  /** Actor of what the rules emit on their own. Default RISK_ACTOR. */
  readonly actor?: Actor;
  /** Session id of outputs no caller's event caused (ticks, commands without one). Default 'system:risk'. */
  readonly operationSessionId?: string;
}

export const RISK_ACTOR: Actor = {
  subject: 'attest:risk',
  issuer: 'attest',
  clientId: null,
  groups: [],
  kind: 'system',
  onBehalfOf: null,
  dev: false,
};

const INTERNAL: Source = { address: 'internal', userAgent: null };
const SUCCESS = { result: 'success', status: null, reason: null } as const;

const TITLES: { readonly [K in SignalId]: string } = {
  'card-data': 'Card data in AI or database traffic',
  'bulk-extraction': 'Bulk data extraction attempt',
  'prompt-injection': 'Prompt-injection marker in tool output',
  volume: 'Unusual request volume',
  'off-hours': 'Activity outside working hours',
  'repeated-denials': 'Repeated refused requests',
  'new-model': 'First use of a model',
  'new-route': 'First use of a route',
};

const SEVERITY_RANK: { readonly [K in RiskSeverity]: number } = { info: 0, low: 1, medium: 2, high: 3, critical: 4 };

export function maxSeverity(a: RiskSeverity, b: RiskSeverity): RiskSeverity {
  return SEVERITY_RANK[a] >= SEVERITY_RANK[b] ? a : b;
}

/** The severity band a score falls in. */
export function severityOf(score: number, policy: RiskPolicy): RiskSeverity {
  const b = policy.scoring.severityBands;
  if (score >= b.critical) return 'critical';
  if (score >= b.high) return 'high';
  if (score >= b.medium) return 'medium';
  if (score >= b.low) return 'low';
  return 'info';
}

export function categoryOf(signalId: SignalId): FindingCategory {
  return signalId === 'card-data' ? 'data_security' : 'risk';
}

/** A finding id from what the finding is about: a redelivered input yields the same id. */
export function findingIdOf(...parts: readonly string[]): string {
  return `fnd_${createHash('sha256').update(parts.join('\u0000')).digest('base64url').slice(0, 22)}`;
}

export function identityTarget(principal: PrincipalRef): Target {
  return { protocol: 'internal', service: 'attest:identity', resource: principal.subject, model: null };
}

/** The score and what makes it up, in words: 'identity score 0.7 (card-data 0.3, volume 0.4 in 3600 s)'. */
export function explainScore(hits: readonly ScoredHit[], atUs: number, policy: RiskPolicy): string {
  const from = atUs - policy.scoring.windowMs * 1000;
  const bySignal = new Map<SignalId, number>();
  for (const h of hits) if (h.timeUs > from && h.timeUs <= atUs) bySignal.set(h.signalId, (bySignal.get(h.signalId) ?? 0) + h.weight);
  const parts = SIGNAL_IDS.filter((id) => bySignal.has(id)).map((id) => `${id} ${roundScore(bySignal.get(id) ?? 0)}`);
  return `identity score ${scoreOf(hits, atUs, policy)} (${parts.join(', ')} in ${Math.round(policy.scoring.windowMs / 1000)} s)`;
}

/** Decide the outputs of one input for one identity. Throws RiskError for a refused administrator command. */
export function decide(state: IdentityState, input: RiskInput, policy: RiskPolicy, nowUs: number, opts: DecideOptions = {}): RiskOutput[] {
  switch (input.kind) {
    case 'event':
      return decideEvent(state, input.event, policy, nowUs, opts);
    case 'restore':
      return decideRestore(state, input, opts);
    case 'close-finding':
      return decideClose(state, input, opts);
    case 'tick':
      return decideTick(state, policy, nowUs, opts);
    default: {
      const never: never = input;
      return never;
    }
  }
}

function decideEvent(state: IdentityState, e: RiskEvent, policy: RiskPolicy, nowUs: number, opts: DecideOptions): RiskOutput[] {
  const principal = trafficPrincipal(e);
  if (principal === null || identityKey(e.metadata.tenantId, principal) !== state.key) return [];
  const scored = evaluate(state, e, policy).filter((s) => s.scored);
  if (scored.length === 0) return [];
  const t = e.metadata.timeUs;
  const tenantId = state.tenantId;
  const hits: ScoredHit[] = [...state.hits, ...scored.map((s) => ({ signalId: s.signalId, weight: s.weight, timeUs: t, eventId: e.metadata.eventId }))];
  const score = scoreOf(hits, t, policy);
  const band = severityOf(score, policy);
  const breakdown = explainScore(hits, t, policy);
  const actor = opts.actor ?? RISK_ACTOR;
  const correlation: Correlation = { sessionId: e.correlation.sessionId, requestId: e.correlation.requestId, upstreamRequestId: null };
  const common = { tenantId, actor, source: INTERNAL, outcome: SUCCESS, correlation };
  const target = identityTarget(state.principal);

  const out: RiskOutput[] = [];
  const findingBySignal = new Map<SignalId, string>();
  for (const s of scored) {
    const severity = maxSeverity(band, signalSettings(policy, s.signalId).minSeverity);
    const open = state.findings.find((f) => f.signalId === s.signalId);
    let findingId: string;
    if (open !== undefined) {
      findingId = open.findingId;
      const raised = maxSeverity(open.severity, severity);
      out.push({
        type: 'finding.updated',
        parts: {
          ...common,
          target,
          payload: {
            findingId,
            status: 'open',
            severity: raised === open.severity ? null : raised,
            assignee: null,
            note: `occurred again: ${s.explanation}; ${breakdown}`,
            relatedEventIds: [...s.evidenceEventIds],
          },
        },
      });
    } else {
      findingId = findingIdOf(state.key, s.signalId, e.metadata.eventId);
      out.push({
        type: 'finding.opened',
        parts: {
          ...common,
          target,
          payload: {
            findingId,
            category: categoryOf(s.signalId),
            severity,
            title: `${TITLES[s.signalId]}: ${state.principal.subject}`,
            description: `${s.explanation}; ${breakdown}`,
            detectorId: `risk.${s.signalId}`,
            relatedEventIds: [...s.evidenceEventIds],
            location: findingLocation(state.principal),
            startedAtUs: t,
          },
        },
      });
    }
    findingBySignal.set(s.signalId, findingId);
    out.push({
      type: 'risk.detected',
      parts: {
        ...common,
        target: e.target,
        payload: {
          detectorId: `risk.${s.signalId}`,
          severity,
          score,
          principal: { ...state.principal },
          description: `${s.explanation}; ${breakdown}`,
          evidenceEventIds: [...s.evidenceEventIds],
          findingId,
        },
      },
    });
  }

  const suspension = suspensionTrigger(state, scored, score, policy);
  if (suspension !== null) {
    const live = new Set(liveSessions(state, t, policy).map((s) => s.sessionId));
    if (e.metadata.type === 'session.ended') live.delete(e.correlation.sessionId);
    else live.add(e.correlation.sessionId);
    const durationMs = policy.suspendAt.durationMs;
    out.push({
      type: 'identity.suspended',
      parts: {
        ...common,
        target,
        payload: {
          principal: { ...state.principal },
          reason: suspension.reason,
          findingId: findingBySignal.get(suspension.signalId) ?? null,
          untilUs: durationMs === null ? null : nowUs + durationMs * 1000,
          sessionsTerminated: live.size,
        },
      },
    });
  }
  return out;
}

/** Whether this event's scored signals cross `suspendAt`, and which signal to name. Null while suspended. */
function suspensionTrigger(
  state: IdentityState,
  scored: readonly EvaluatedSignal[],
  score: number,
  policy: RiskPolicy,
): { reason: string; signalId: SignalId } | null {
  const at = policy.suspendAt;
  if (!at.enabled || state.suspension !== null) return null;
  const bySignal = scored.find((s) => at.signals.includes(s.signalId));
  if (bySignal !== undefined) return { reason: `risk:${bySignal.signalId}`, signalId: bySignal.signalId };
  if (at.score === null || score < at.score) return null;
  // Name the heaviest signal of the crossing event (the first of equals, in SIGNAL_IDS order).
  const heaviest = scored.reduce((a, b) => (b.weight > a.weight ? b : a));
  return { reason: 'risk:score', signalId: heaviest.signalId };
}

function commandCorrelation(cmd: AdminCommand, opts: DecideOptions): Correlation {
  return { sessionId: cmd.sessionId ?? opts.operationSessionId ?? 'system:risk', requestId: cmd.requestId, upstreamRequestId: null };
}

function requireReason(reason: string, where: string): void {
  if (reason.trim() === '') {
    throw new RiskError('risk_reason_required', 'a reason is required', { where, fix: "give a machine-readable reason, e.g. 'admin:reviewed-false-positive'" });
  }
}

function decideRestore(state: IdentityState, cmd: Extract<RiskInput, { kind: 'restore' }>, opts: DecideOptions): RiskOutput[] {
  requireReason(cmd.reason, 'reason');
  const p = state.principal;
  const self = (cmd.actor.subject === p.subject && cmd.actor.issuer === p.issuer) || cmd.actor.onBehalfOf === p.subject;
  if (self) {
    throw new RiskError('risk_self_restore', `${p.subject} may not lift its own suspension`, { where: 'actor', fix: 'ask another administrator to review and restore it' });
  }
  const s = state.suspension;
  if (s === null) {
    throw new RiskError('risk_not_suspended', `${p.subject} is not suspended`, { where: 'principal', fix: 'nothing to restore; check the identity and issuer' });
  }
  return [
    {
      type: 'identity.restored',
      parts: {
        tenantId: state.tenantId,
        actor: cmd.actor,
        source: cmd.source,
        target: identityTarget(p),
        outcome: SUCCESS,
        correlation: commandCorrelation(cmd, opts),
        payload: { principal: { ...p }, reason: cmd.reason, suspendedEventId: s.eventId, automatic: false },
      },
    },
  ];
}

function decideClose(state: IdentityState, cmd: Extract<RiskInput, { kind: 'close-finding' }>, opts: DecideOptions): RiskOutput[] {
  requireReason(cmd.reason, 'reason');
  const f = state.findings.find((x) => x.findingId === cmd.findingId);
  if (f === undefined) {
    throw new RiskError('risk_finding_not_open', `finding ${cmd.findingId} is not open`, { where: 'findingId', fix: 'list the open findings; a closed finding stays closed' });
  }
  return [
    {
      type: 'finding.closed',
      parts: {
        tenantId: state.tenantId,
        actor: cmd.actor,
        source: cmd.source,
        target: identityTarget(state.principal),
        outcome: SUCCESS,
        correlation: commandCorrelation(cmd, opts),
        payload: {
          findingId: f.findingId,
          resolution: cmd.resolution,
          reason: cmd.reason,
          openedAtUs: f.openedAtUs,
          endedAtUs: state.marks.find((m) => m.signalId === f.signalId)?.lastSeenUs ?? null,
        },
      },
    },
  ];
}

function decideTick(state: IdentityState, policy: RiskPolicy, nowUs: number, opts: DecideOptions): RiskOutput[] {
  // Rules off: nothing happens on its own (administrators' commands still work).
  if (!policy.enabled) return [];
  const common = {
    tenantId: state.tenantId,
    actor: opts.actor ?? RISK_ACTOR,
    source: INTERNAL,
    target: identityTarget(state.principal),
    outcome: SUCCESS,
    correlation: { sessionId: opts.operationSessionId ?? 'system:risk', requestId: `risk-tick:${nowUs}`, upstreamRequestId: null },
  };
  const out: RiskOutput[] = [];
  const s = state.suspension;
  if (s !== null && s.untilUs !== null && nowUs >= s.untilUs) {
    out.push({
      type: 'identity.restored',
      parts: { ...common, payload: { principal: { ...state.principal }, reason: 'risk:suspension-lapsed', suspendedEventId: s.eventId, automatic: true } },
    });
  }
  const quietMs = policy.findings.autoCloseAfterMs;
  if (quietMs !== null && s === null) {
    for (const f of state.findings) {
      const lastUs = state.marks.find((m) => m.signalId === f.signalId)?.lastSeenUs ?? f.openedAtUs;
      if (nowUs - lastUs < quietMs * 1000) continue;
      out.push({
        type: 'finding.closed',
        parts: {
          ...common,
          payload: {
            findingId: f.findingId,
            resolution: 'resolved',
            reason: `risk:auto-closed: no occurrence for ${Math.round(quietMs / 1000)} s`,
            openedAtUs: f.openedAtUs,
            endedAtUs: lastUs,
          },
        },
      });
    }
  }
  return out;
}

/** Build the event of an output, as the shell would (`EvidenceEmitter.build` does the same without tenantId). */
export function toEvent(output: RiskOutput, deps: NewEventDeps): UnchainedEvent<RiskOutputType> {
  return newEvent(output.type, output.parts, deps);
}
