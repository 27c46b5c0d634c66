import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { restoreIdentity, suspendIdentity, type ControlPublisher, type ControlState } from '../../common/src/control';
import type { Actor, Correlation, Source, Target } from '../../common/src/events';
import type { EvidenceEmitter } from '../../common/src/evidence/emitter';
import { ConsoleError } from './app';

/**
 * The identity admin API: suspend an identity at every gateway, or restore it (PCI DSS 8.2.6,
 * 12.10: a compromised service account is blocked at once). Each action is an evidence event
 * (identity.suspended / identity.restored) first and a signed control message second.
 *
 *   POST /v1/identities/suspend   {"issuer","subject","reason","until"?}  → 201 {"eventId"}
 *   POST /v1/identities/restore   {"issuer","subject","reason"}           → 201 {"eventId"}
 *   GET  /v1/identities/suspended                                          → the suspensions in force
 *
 * Four eyes: an admin cannot restore their own identity.
 */

export interface IdentityAdminDeps {
  adminGroups: readonly string[];
  publisher: ControlPublisher;
  /** The console's own view of the control channel: suspensions in force. */
  control: Pick<ControlState, 'suspension' | 'suspensions'>;
  emitter: EvidenceEmitter;
  common: (request: FastifyRequest) => { actor: Actor; source: Source; target: Target; correlation: Correlation };
  nowUs: () => number;
}

const MAX_FIELD = 256;
const REASON = /^[\x20-\x7e]{1,256}$/;

function field(body: Record<string, unknown>, name: string): string {
  const v = body[name];
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_FIELD) {
    throw new ConsoleError(400, 'invalid_parameter', `${name} must be a string of 1 to ${MAX_FIELD} characters`, name);
  }
  return v;
}

function reasonOf(body: Record<string, unknown>): string {
  const v = body.reason;
  if (typeof v !== 'string' || !REASON.test(v)) {
    throw new ConsoleError(400, 'invalid_parameter', 'reason must be 1 to 256 printable ASCII characters, e.g. "offboarding" or "ticket SEC-1234"', 'reason');
  }
  return v.startsWith('admin:') ? v : `admin:${v}`;
}

function bodyOf(request: FastifyRequest): Record<string, unknown> {
  const b = request.body;
  if (b === null || typeof b !== 'object' || Array.isArray(b)) throw new ConsoleError(400, 'invalid_body', 'send a JSON object');
  return b as Record<string, unknown>;
}

export function registerIdentityAdmin(app: FastifyInstance, deps: IdentityAdminDeps): void {
  const run = async (fn: () => Promise<{ eventId: string }>) => {
    try {
      return await fn();
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'control_unavailable') {
        throw new ConsoleError(503, 'control_unavailable', 'the decision is recorded as evidence but could not be sent to the gateways; retry the same request');
      }
      throw new ConsoleError(503, 'evidence_unavailable', 'Attest could not durably record this action, so it was not taken; retry shortly');
    }
  };

  app.post('/v1/identities/suspend', async (request, reply) => {
    const body = bodyOf(request);
    const identity = { issuer: field(body, 'issuer'), subject: field(body, 'subject') };
    const reason = reasonOf(body);
    let untilUs: number | null = null;
    if (body.until !== undefined && body.until !== null) {
      const t = typeof body.until === 'string' ? Date.parse(body.until) : Number.NaN;
      if (!Number.isFinite(t) || t * 1000 <= deps.nowUs()) {
        throw new ConsoleError(400, 'invalid_parameter', 'until must be an ISO 8601 time in the future, or omitted for "until restored"', 'until');
      }
      untilUs = t * 1000;
    }
    const c = deps.common(request);
    const out = await run(() =>
      suspendIdentity(deps, { identity, reason, untilUs, findingId: null, actor: c.actor, source: c.source, requestId: request.consoleId || randomUUID() }),
    );
    return reply.code(201).send(out);
  });

  app.post('/v1/identities/restore', async (request, reply) => {
    const body = bodyOf(request);
    const identity = { issuer: field(body, 'issuer'), subject: field(body, 'subject') };
    const reason = reasonOf(body);
    const c = deps.common(request);
    if (c.actor.issuer === identity.issuer && c.actor.subject === identity.subject) {
      throw new ConsoleError(403, 'self_restore_forbidden', 'an administrator cannot restore their own identity; ask another administrator');
    }
    const current = deps.control.suspension(identity.issuer, identity.subject, deps.nowUs());
    const out = await run(() =>
      restoreIdentity(deps, { identity, reason, suspendedEventId: current?.eventId ?? null, actor: c.actor, source: c.source, requestId: request.consoleId || randomUUID() }),
    );
    return reply.code(201).send(out);
  });

  app.get('/v1/identities/suspended', async () => ({
    suspensions: deps.control.suspensions(deps.nowUs()).map((s) => ({
      issuer: s.issuer,
      subject: s.subject,
      reason: s.reason,
      since: new Date(s.atUs / 1000).toISOString(),
      until: s.untilUs === null ? null : new Date(s.untilUs / 1000).toISOString(),
      eventId: s.eventId,
    })),
  }));
}
