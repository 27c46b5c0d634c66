import { hash as oneShotHash } from 'node:crypto';
import { actorFromPrincipal } from '../../common/src/evidence/actor';
import { AUTH_REASON_CODE } from '../../common/src/evidence/auth-reason';
import type { AuthFailureReason, Principal } from '../../common/src/identity';
import { systemActor, type EvidenceEmitter } from '../../common/src/evidence/emitter';
import type { ApprovalEvidence } from '../../common/src/approvals';
import { containsPan, type Actor, type Correlation, type EventType, type MaskHit, type MaskingSummary, type Source, type Target, type UnchainedEvent } from '../../common/src/events';
import type { PanHmacKey } from '../../common/src/evidence/pan-hmac';
import { maskPans } from '../../common/src/masking';
import type { MaskingAction } from '../../common/src/config';
import type { LocatedHit } from './mask-json';

/** Where in the pipeline a request was refused (the event's `stage`). */
export type BlockStage = 'authorization' | 'policy' | 'masking' | 'approval' | 'suspension';

/**
 * What the gateway records about each exchange, as events (the evidence of PCI DSS 10.2.x):
 *
 *   admitted:  gateway.request.received + policy.decided(allow|mask) [+ data.masked] + gateway.request.forwarded
 *              — appended durably BEFORE the upstream is called (no access without evidence)
 *   refused:   gateway.request.received + policy.decided(deny) + gateway.request.blocked [+ data.masked]
 *   completed: gateway.response.completed [+ data.masked] — appended before the response ends
 *   auth.failed for every rejected credential.
 *
 * Events never carry a PAN: masking hits keep BIN, last four and an HMAC of the full number.
 */

export interface ExchangeFacts {
  requestId: string;
  sessionId: string;
  route: string;
  method: string;
  path: string;
  sourceAddress: string;
  userAgent: string | null;
  principal?: Principal;
  model?: string;
  stream: boolean;
  upstreamRequestId?: string;
}

export interface AdmittedFacts {
  bodyBytes: number;
  bodyDigest: Buffer;
  contentType: string | null;
  hits: LocatedHit[];
  action: MaskingAction;
  ruleIds: string[];
  forwardedBytes: number;
  forwardedDigest: Buffer;
  /**
   * The forwarded body as text (the bytes behind forwardedDigest), given only when the masker walked
   * the whole body; the recorder decides whether it is kept as gateway.request.received's content
   * (see requestContent). Absent, the event's content is null.
   */
  forwardedText?: string;
}

/** The approval that lets a request through: its approval.released evidence, and whether the request was held (its receipt already recorded). */
export interface Release {
  approvalId: string;
  evidence: ApprovalEvidence;
  held: boolean;
}

export interface ResponseFacts {
  status: number;
  stopReason: string | null;
  aborted: boolean;
  /** Masked content as sent to the caller (or null when not kept). */
  content: string | null;
  contentBytes: number;
  contentDigest: Buffer;
  hits: LocatedHit[];
  action: MaskingAction;
  usage: { inputTokens: number; outputTokens: number; cacheReadInputTokens: number | null; cacheCreationInputTokens: number | null } | null;
  latencyUs: number;
  ttfbUs: number | null;
  /** Why an exchange that began successfully (a stream already under way) did not complete, e.g. upstream_timeout. */
  failure?: string | null;
}

/**
 * The most content an event keeps, per message (request or response body), in UTF-16 characters:
 * evidence of a prompt or an answer, not an archive of pasted documents. A longer body keeps only its
 * digest and size, so one event stays far below a Kafka message limit and the encode cost is bounded.
 */
export const MAX_CONTENT_CHARS = 256 * 1024;

/**
 * What gateway.request.received keeps as `content`: exactly the forwarded body, or null.
 *
 * Kept only when no card number went through unmasked (no hit, or every hit masked) — the same rule
 * as response content — and the body fits MAX_CONTENT_CHARS. The last check asks the encoder's own
 * PAN guard, a last line behind the masker (which scans keys and values): should the guard still find
 * a card number, it would refuse the whole batch (event_pan_detected) and the
 * request would fail closed only because content was kept. Dropping the content instead keeps the
 * admission exactly as it was before content existed. The guard's prefilter is a native regular
 * expression, so this costs microseconds on an ordinary prompt.
 */
export function requestContent(req: Pick<AdmittedFacts, 'hits' | 'action' | 'forwardedText'>): string | null {
  const text = req.forwardedText;
  if (text === undefined || text.length > MAX_CONTENT_CHARS) return null;
  if (req.hits.length > 0 && req.action !== 'mask') return null;
  return containsPan(text) ? null : text;
}


/**
 * A caller-controlled string (user agent, path, session header, model id, policy reason, approval
 * id, upstream request id) made safe for evidence and logs: a card number in it is masked to its
 * last four. Without this, one such string makes the encoder's PAN guard refuse the whole batch, so
 * the exchange (or a failed login) would go unrecorded, chosen by the caller. Short, digit-poor
 * strings (nearly all) cost one prefilter pass.
 */
export function panSafe(s: string): string {
  return containsPan(s) ? maskPans(s, 'last4').text : s;
}

const panSafeOrNull = (s: string | null | undefined): string | null => (s === null || s === undefined ? null : panSafe(s));

export class GatewayRecorder {
  constructor(
    private readonly emitter: EvidenceEmitter,
    private readonly panKey: PanHmacKey,
    private readonly policy: { id: string; version: string },
    private readonly upstreamHost: string,
  ) {}

  /** The keyed hash the masking engine stores instead of the digits. */
  get hashPan(): (digits: string) => string {
    return this.panKey.hash;
  }

  /** `status` is what the caller got: 401, or 503 when the identity provider could not be reached. */
  async authFailed(f: ExchangeFacts, reason: AuthFailureReason, status: 401 | 503 = 401): Promise<void> {
    const p = envelope(f);
    const e = this.emitter.build('auth.failed', {
      actor: actorFromPrincipal(undefined),
      source: p.source,
      target: p.target,
      outcome: { result: 'failure', status, reason },
      correlation: p.correlation,
      payload: { method: 'oidc_jwt', reasonCode: AUTH_REASON_CODE[reason], claimsVerified: false, amr: [], acr: null, tokenId: null },
    });
    await this.emitter.emit([e], f.sessionId);
  }

  /** Durable before the upstream call; rejects (and the caller fails closed) if the log cannot confirm. */
  async admitted(f: ExchangeFacts, req: AdmittedFacts, approval?: Release): Promise<void> {
    const p = envelope(f);
    const events: UnchainedEvent<EventType>[] = [];
    const decision = req.hits.length > 0 && req.action === 'mask' ? 'mask' : 'allow';
    // A held request's receipt and hold decision were recorded when it was held.
    if (!approval?.held) {
      events.push(this.received(f, p, req, 'success', null, requestContent(req)));
      events.push(this.decided(p, decision, req.ruleIds, null, approval?.approvalId ?? null));
    }
    if (approval) events.push(this.approval(p, approval.evidence));
    if (req.hits.length > 0) events.push(this.masked(p, 'request', req.hits, req.action, req.bodyDigest, req.forwardedDigest));
    events.push(
      this.emitter.build('gateway.request.forwarded', {
        actor: p.actor,
        source: p.source,
        target: p.target,
        outcome: { result: 'success', status: null, reason: null },
        correlation: p.correlation,
        payload: { upstreamHost: this.upstreamHost, attempt: 1, credentialId: 'upstream.anthropic', masked: req.hits.length > 0 && req.action === 'mask', bodyBytes: req.forwardedBytes, bodyDigest: req.forwardedDigest },
      }),
    );
    await this.emitter.emit(events, f.sessionId, { onLateConfirm: () => this.notDelivered(f, p, 'request') });
  }

  /**
   * An append that failed with an unknown outcome is appended again later, for the chain's sake
   * (emitter.ts, "in doubt"): the admission then says "forwarded" (or the completion says
   * "completed") of an exchange the caller was refused with 503 evidence_unavailable, which was never
   * forwarded (or whose answer was never delivered). This records what happened, once the log holds
   * the late events: a block by the fail-closed policy, rule evidence.unavailable.
   */
  private notDelivered(f: ExchangeFacts, p: SharedParts, direction: 'request' | 'response'): void {
    const what = direction === 'request' ? 'the request was not forwarded' : 'the response was not delivered to the caller';
    const e = this.emitter.build('gateway.request.blocked', {
      actor: p.actor,
      source: p.source,
      target: p.target,
      outcome: { result: 'failure', status: 503, reason: `evidence confirmed only after the caller was refused with evidence_unavailable: ${what}` },
      correlation: p.correlation,
      payload: { ruleId: 'evidence.unavailable', direction, stage: 'policy', approvalId: null },
    });
    this.emitter.emit([e], f.sessionId).catch(() => undefined);
  }

  /**
   * A request held for approval: received, the hold decision and approval.requested, durable before
   * the caller is held or told to retry (fail closed).
   */
  async held(f: ExchangeFacts, req: AdmittedFacts, ruleId: string, requested: ApprovalEvidence): Promise<void> {
    const p = envelope(f);
    await this.emitter.emit(
      [this.received(f, p, req, 'success', null, requestContent(req)), this.decided(p, 'hold', [...req.ruleIds, ruleId], 'approval required', requested.payload.approvalId), this.approval(p, requested)],
      f.sessionId,
    );
  }

  async refused(
    f: ExchangeFacts,
    r: { status: number; stage: BlockStage; ruleId: string; reason: string; direction: 'request' | 'response'; bodyBytes: number; bodyDigest: Buffer; contentType: string | null; hits: LocatedHit[]; approvalId?: string; held?: boolean; also?: ApprovalEvidence },
  ): Promise<void> {
    const p = envelope(f);
    const events: UnchainedEvent<EventType>[] = [];
    if (r.direction === 'request' && !r.held) events.push(this.received(f, p, { ...r, action: 'block' }, 'failure', r.status, null));
    if (r.also) events.push(this.approval(p, r.also));
    events.push(this.decided(p, 'deny', [r.ruleId], r.reason, r.approvalId ?? null));
    if (r.hits.length > 0) events.push(this.masked(p, r.direction, r.hits, 'block', r.bodyDigest, null));
    events.push(
      this.emitter.build('gateway.request.blocked', {
        actor: p.actor,
        source: p.source,
        target: p.target,
        outcome: { result: 'failure', status: r.status, reason: panSafe(r.reason) },
        correlation: p.correlation,
        payload: { ruleId: r.ruleId, direction: r.direction, stage: r.stage, approvalId: panSafeOrNull(r.approvalId) },
      }),
    );
    await this.emitter.emit(events, f.sessionId);
  }

  async completed(f: ExchangeFacts, r: ResponseFacts): Promise<void> {
    const p = envelope(f);
    const content = r.content !== null && r.content.length <= MAX_CONTENT_CHARS ? r.content : null;
    const events: UnchainedEvent<EventType>[] = [
      this.emitter.build('gateway.response.completed', {
        actor: p.actor,
        source: p.source,
        target: p.target,
        outcome: { result: r.status < 400 && !r.aborted && !r.failure ? 'success' : 'failure', status: r.status, reason: r.failure ?? (r.aborted ? 'client_aborted' : null) },
        correlation: p.correlation,
        payload: {
          upstreamStatus: r.status,
          stopReason: r.stopReason,
          stream: f.stream,
          aborted: r.aborted,
          content,
          contentDigest: r.contentDigest,
          contentBytes: r.contentBytes,
          masking: summary('response', r.hits, r.action),
          usage: r.usage,
          latencyUs: Math.round(r.latencyUs),
          timeToFirstByteUs: r.ttfbUs === null ? null : Math.round(r.ttfbUs),
        },
      }),
    ];
    if (r.hits.length > 0) events.push(this.masked(p, 'response', r.hits, r.action, null, r.contentDigest));
    // Only an answer withheld for want of this evidence needs the follow-up: a stream was delivered
    // as it came (its caller got an error event at the end), an aborted exchange went nowhere.
    await this.emitter.emit(events, f.sessionId, r.aborted || f.stream ? {} : { onLateConfirm: () => this.notDelivered(f, p, 'response') });
  }

  /** An approval.* event the gateway itself records (requested, released, cancelled). */
  private approval(p: SharedParts, ev: ApprovalEvidence) {
    return this.emitter.build(ev.type, {
      actor: ev.actor ?? systemActor(this.emitter.producer.id),
      source: p.source,
      target: ev.target,
      outcome: ev.outcome,
      correlation: ev.correlation,
      payload: ev.payload,
    } as Parameters<EvidenceEmitter['build']>[1]);
  }

  private received(
    f: ExchangeFacts,
    p: SharedParts,
    req: { bodyBytes: number; bodyDigest: Buffer; contentType: string | null; hits: LocatedHit[]; action: MaskingAction },
    result: 'success' | 'failure',
    status: number | null,
    // Null for a refused request: it was never forwarded, and it may hold the card number it was refused for.
    content: string | null,
  ) {
    return this.emitter.build('gateway.request.received', {
      actor: p.actor,
      source: p.source,
      target: p.target,
      outcome: { result, status, reason: null },
      correlation: p.correlation,
      payload: { method: f.method, route: f.route, model: p.target.model, stream: f.stream, contentType: panSafeOrNull(req.contentType), bodyBytes: req.bodyBytes, bodyDigest: req.bodyDigest, masking: summary('request', req.hits, req.action), content },
    });
  }

  private decided(p: SharedParts, decision: 'allow' | 'deny' | 'mask' | 'hold', ruleIds: string[], rawReason: string | null, rawApprovalId: string | null = null) {
    // Reasons quote the request (e.g. its max_tokens) and approval ids come from a header.
    const reason = panSafeOrNull(rawReason);
    const approvalId = panSafeOrNull(rawApprovalId);
    return this.emitter.build('policy.decided', {
      actor: p.actor,
      source: p.source,
      target: p.target,
      outcome: { result: decision === 'deny' ? 'failure' : 'success', status: decision === 'deny' ? 403 : null, reason },
      correlation: p.correlation,
      payload: { policyId: this.policy.id, policyVersion: this.policy.version, decision, ruleIds, reason, approvalId },
    });
  }

  private masked(p: SharedParts, direction: 'request' | 'response', hits: LocatedHit[], action: MaskingAction, originalDigest: Buffer | null, maskedDigest: Buffer | null) {
    const maskHits: MaskHit[] = hits.map((h) => ({
      ruleId: 'builtin.pan',
      detector: 'pan',
      direction,
      location: { jsonPath: h.location, contentBlockIndex: blockIndex(h.location), charOffset: h.hit.start },
      bin: h.hit.bin,
      last4: h.hit.last4,
      panHmac: h.hit.fingerprint ? Buffer.from(h.hit.fingerprint, 'base64url') : null,
      panHmacKeyId: h.hit.fingerprint ? this.panKey.kid : null,
      action: maskAction(action),
    }));
    return this.emitter.build('data.masked', {
      actor: p.actor,
      source: p.source,
      target: p.target,
      outcome: { result: 'success', status: null, reason: null },
      correlation: p.correlation,
      payload: { subjectEventId: null, originalDigest: action === 'mask' ? null : originalDigest, maskedDigest: maskedDigest ?? sha256(''), redactedEventDigest: null, hits: maskHits },
    });
  }
}

/** SHA-256 with node:crypto's one-shot `hash()` (no Hash object per digest). */
export function sha256(data: string | Uint8Array): Buffer {
  return oneShotHash('sha256', data, 'buffer');
}

function maskAction(a: MaskingAction): MaskHit['action'] {
  return a === 'mask' ? 'masked' : a === 'block' ? 'blocked' : 'allowed';
}

function summary(direction: 'request' | 'response', hits: LocatedHit[], action: MaskingAction): MaskingSummary {
  return {
    cardDataPresent: hits.length > 0,
    totalHits: hits.length,
    stats: hits.length > 0 ? [{ ruleId: 'builtin.pan', direction, action: maskAction(action), hits: hits.length }] : [],
  };
}

function blockIndex(location: string): number | null {
  const m = /^content\[(\d+)\]/.exec(location);
  return m ? Number(m[1]) : null;
}

/**
 * The envelope parts every event of one recorder call shares, built once per call rather than once
 * per event (the encoder only reads them).
 */
interface SharedParts {
  actor: Actor;
  source: Source;
  target: Target;
  correlation: Correlation;
}

function envelope(f: ExchangeFacts): SharedParts {
  // Every string the caller (or the upstream) chose goes through panSafe; the request id is ours.
  return {
    actor: actorFromPrincipal(f.principal),
    source: { address: f.sourceAddress, userAgent: panSafeOrNull(f.userAgent) },
    target: { protocol: 'http', service: 'anthropic', resource: panSafe(f.path), model: panSafeOrNull(f.model) },
    correlation: { sessionId: panSafe(f.sessionId), requestId: f.requestId, upstreamRequestId: panSafeOrNull(f.upstreamRequestId) },
  };
}
