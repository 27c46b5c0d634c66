import type { Actor, Source } from '../events';
import type { EvidenceEmitter } from '../evidence/emitter';
import type { ControlPublisher } from './channel';
import type { ControlMessage } from './messages';

/**
 * Suspending and restoring an identity: first the evidence event (durable, fail closed), then the
 * control message that makes every gateway enforce it. Used by the risk processor (automatic) and
 * the console's admin API (manual). If the publish fails after the evidence was written the call
 * rejects and the caller retries: a second identical evidence event is harmless, a suspension in
 * force without evidence is not allowed. If the evidence append fails, the emitter appends it again
 * when the log returns; once it lands, the control message is published then (`lateEnforce`).
 */

export interface IdentityRef {
  issuer: string;
  subject: string;
}

export interface SuspensionDeps {
  emitter: EvidenceEmitter;
  publisher: ControlPublisher;
  nowUs?: () => number;
}

export interface SuspendInput {
  identity: IdentityRef;
  /** Machine-readable, e.g. 'risk:exfiltration-pattern', 'admin:offboarding'. */
  reason: string;
  untilUs: number | null;
  findingId: string | null;
  /** Who decided: an admin, or the risk processor's system actor. */
  actor: Actor;
  source: Source;
  /** Correlates the decision with what caused it (an admin request id, a finding id). */
  requestId: string;
}

export async function suspendIdentity(deps: SuspensionDeps, input: SuspendInput): Promise<{ eventId: string }> {
  const ev = deps.emitter.build('identity.suspended', {
    actor: input.actor,
    source: input.source,
    target: { protocol: 'internal', service: 'attest:gateways', resource: `identity:${input.identity.subject}`, model: null },
    outcome: { result: 'success', status: null, reason: input.reason },
    correlation: { sessionId: `identity:${input.identity.issuer}:${input.identity.subject}`, requestId: input.requestId, upstreamRequestId: null },
    payload: { principal: input.identity, reason: input.reason, findingId: input.findingId, untilUs: input.untilUs, sessionsTerminated: 0 },
  });
  const msg = {
    type: 'identity.suspended' as const,
    issuer: input.identity.issuer,
    subject: input.identity.subject,
    reason: input.reason,
    untilUs: input.untilUs,
    eventId: ev.metadata.eventId,
    atUs: ev.metadata.timeUs,
  };
  await deps.emitter.emit([ev], ev.correlation.sessionId, { onLateConfirm: () => lateEnforce(deps, msg) });
  await deps.publisher.publish(msg);
  return { eventId: ev.metadata.eventId };
}

export interface RestoreInput {
  identity: IdentityRef;
  reason: string;
  suspendedEventId: string | null;
  actor: Actor;
  source: Source;
  requestId: string;
}

export async function restoreIdentity(deps: SuspensionDeps, input: RestoreInput): Promise<{ eventId: string }> {
  const ev = deps.emitter.build('identity.restored', {
    actor: input.actor,
    source: input.source,
    target: { protocol: 'internal', service: 'attest:gateways', resource: `identity:${input.identity.subject}`, model: null },
    outcome: { result: 'success', status: null, reason: input.reason },
    correlation: { sessionId: `identity:${input.identity.issuer}:${input.identity.subject}`, requestId: input.requestId, upstreamRequestId: null },
    payload: { principal: input.identity, reason: input.reason, suspendedEventId: input.suspendedEventId, automatic: false },
  });
  const msg = {
    type: 'identity.restored' as const,
    issuer: input.identity.issuer,
    subject: input.identity.subject,
    reason: input.reason,
    eventId: ev.metadata.eventId,
    atUs: ev.metadata.timeUs,
  };
  await deps.emitter.emit([ev], ev.correlation.sessionId, { onLateConfirm: () => lateEnforce(deps, msg) });
  await deps.publisher.publish(msg);
  return { eventId: ev.metadata.eventId };
}

/**
 * The evidence of a suspension or restore whose append failed reached the log after all (the
 * emitter appends what is in doubt again): the log says it happened, so it is enforced now too.
 * Best effort: the caller was told the call failed and retries anyway (a second event is harmless).
 */
function lateEnforce(deps: SuspensionDeps, msg: ControlMessage): void {
  deps.publisher.publish(msg).catch(() => undefined);
}
