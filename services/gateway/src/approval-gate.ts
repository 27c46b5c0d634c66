import { randomUUID } from 'node:crypto';
import {
  decide,
  evolve,
  matchApprovalRules,
  MAX_EXPIRY_MS,
  requestDigest,
  type ApprovalEvent,
  type ApprovalMatch,
  type ApprovalPolicy,
  type ApprovalState,
  type HoldRef,
} from '../../common/src/approvals';
import type { ApprovalResolution, ControlState } from '../../common/src/control';
import type { Principal } from '../../common/src/identity';

/**
 * The gateway's side of approvals: does a request need one (the policy's rules over the masked
 * prompt), open it (the `requested` domain event, validated by the same pure lifecycle the
 * approvals processor runs), and decide whether a resolution from the control channel releases
 * this very request (same digest; for ask-and-retry also the same caller, once).
 *
 * The gateway keeps no approval state of its own beyond a bounded set of ids it has released: the
 * book lives with the approvals processor and the console, both folded from the evidence log.
 *
 * Once, for ask-and-retry: the approvals processor folds each approval.released a gateway records
 * and publishes a release marker (a resolution with outcome 'released'), which every gateway, and
 * every restarted one, applies over the approval's 'approved'. Until the marker arrives, the
 * in-memory set refuses a second use at this gateway; another gateway (or this one restarted) in
 * that window of a few milliseconds, or while no processor runs, could still let one more retry
 * through. Held requests need neither: a hold is one request of one gateway run, woken once.
 */

/** Prompt text the rules look at: system prompt, messages and tool results, at most this much. */
const MAX_PROMPT_CHARS = 64 * 1024;
const MAX_RELEASED_IDS = 100_000;

export interface OpenedApproval {
  readonly approvalId: string;
  readonly match: ApprovalMatch;
  readonly digest: string;
  readonly event: Extract<ApprovalEvent, { type: 'requested' }>;
  readonly state: ApprovalState;
}

export type RetryVerdict =
  | { readonly ok: true; readonly resolution: ApprovalResolution }
  | { readonly ok: false; readonly code: 'approval_pending' | 'approval_rejected' | 'approval_expired' | 'approval_cancelled' | 'approval_digest_mismatch' | 'approval_requester_mismatch' | 'approval_already_released' | 'approval_mode_mismatch'; readonly message: string };

export class ApprovalGate {
  private readonly released = new Set<string>();

  constructor(
    private readonly policy: ApprovalPolicy,
    private readonly control: Pick<ControlState, 'resolution' | 'waitFor'>,
    private readonly nowMs: () => number = Date.now,
  ) {}

  get enabled(): boolean {
    return this.policy.rules.length > 0;
  }

  match(principal: Principal, route: string, model: string, body: Record<string, unknown>, panFound: boolean): ApprovalMatch | undefined {
    return matchApprovalRules(this.policy, { principal, route, model, promptText: promptTextOf(body), panFound });
  }

  /**
   * The digest an approval binds to: the request as forwarded (masked). Keyed with the PAN HMAC
   * key, since a body under a masking action of 'allow' may hold raw card data.
   */
  digest(route: string, model: string, body: unknown, key: Uint8Array | undefined): string {
    return requestDigest({ method: 'POST', route, model, body }, key ? { hmacKey: key } : {});
  }

  /** The `requested` event for a new approval; throws the lifecycle's error if the command is invalid. */
  open(input: { match: ApprovalMatch; principal: Principal; digest: string; hold: HoldRef; requestId: string; sessionId: string; model: string; route: string; promptExcerpt: string }): OpenedApproval {
    const approvalId = `apr_${randomUUID().replaceAll('-', '')}`;
    const r = decide(
      undefined,
      {
        type: 'request',
        approvalId,
        rule: input.match.rule,
        requester: input.principal,
        requestDigest: input.digest,
        hold: input.hold,
        context: { requestId: input.requestId, sessionId: input.sessionId, model: input.model, route: input.route, promptExcerpt: input.promptExcerpt, reasons: input.match.reasons },
      },
      this.nowMs(),
    );
    if (!r.ok) throw r.error;
    const event = r.events[0] as Extract<ApprovalEvent, { type: 'requested' }>;
    const state = evolve(undefined, event)!;
    return { approvalId, match: input.match, digest: input.digest, event, state };
  }

  /** Waits for the approval's resolution; rejects when `signal` aborts (caller gone, expiry, shutdown). */
  wait(approvalId: string, signal: AbortSignal): Promise<ApprovalResolution> {
    return this.control.waitFor(approvalId, signal);
  }

  /**
   * An ask-and-retry retry carrying `approvalId`: released only if approved, for this request and
   * this caller, once. A release the control channel reports (any gateway, any run) is refused, and
   * so is one this gateway let through since it started: the id is marked used here, before the
   * admission evidence is recorded; call `retryNotForwarded` if that fails.
   */
  checkRetry(approvalId: string, digest: string, principal: Principal): RetryVerdict {
    const r = this.control.resolution(approvalId);
    if (r === undefined) return { ok: false, code: 'approval_pending', message: `approval ${approvalId} has not been granted (yet); retry once an approver has approved it` };
    if (r.mode !== 'ask_and_retry') return { ok: false, code: 'approval_mode_mismatch', message: `approval ${approvalId} was for a held request and cannot be used for a retry; send the request without the approval header` };
    if (r.outcome === 'released') return alreadyReleased(approvalId);
    if (r.outcome !== 'approved') {
      const code = r.outcome === 'rejected' ? 'approval_rejected' : r.outcome === 'expired' ? 'approval_expired' : 'approval_cancelled';
      return { ok: false, code, message: `approval ${approvalId} was ${r.outcome}${r.reason ? `: ${r.reason}` : ''}; send the request without the header to ask for a new approval` };
    }
    // No release window is longer than a rule's longest expiry; past it the processor's 'expired'
    // may never come (it expires only what its book holds as approved and unreleased).
    if (r.atUs / 1000 + MAX_EXPIRY_MS <= this.nowMs()) {
      return { ok: false, code: 'approval_expired', message: `approval ${approvalId} was not used within its release window; send the request without the header to ask for a new approval` };
    }
    if (r.requester.issuer !== principal.issuer || r.requester.subject !== principal.subject) {
      return { ok: false, code: 'approval_requester_mismatch', message: `approval ${approvalId} was granted to another caller` };
    }
    if (r.requestDigest !== digest) {
      return { ok: false, code: 'approval_digest_mismatch', message: `this request differs from the one approval ${approvalId} approved; send exactly the approved request, or ask for a new approval` };
    }
    if (this.released.has(approvalId)) return alreadyReleased(approvalId);
    this.released.add(approvalId);
    if (this.released.size > MAX_RELEASED_IDS) {
      const oldest = this.released.values().next().value;
      if (oldest !== undefined) this.released.delete(oldest);
    }
    return { ok: true, resolution: r };
  }

  /**
   * The retry `checkRetry` let through was not forwarded: its admission evidence (which carries
   * approval.released) could not be recorded, and the caller was answered 503. The approval may be
   * used again. Should that evidence reach the log after all, the processor's release marker then
   * refuses the next use; nothing was forwarded either way.
   */
  retryNotForwarded(approvalId: string): void {
    this.released.delete(approvalId);
  }
}

function alreadyReleased(approvalId: string): RetryVerdict {
  return { ok: false, code: 'approval_already_released', message: `approval ${approvalId} has already been used; ask for a new approval` };
}

/** The text of a Messages API request that rules match against (already PAN-masked by the caller). */
export function promptTextOf(body: Record<string, unknown>): string {
  const parts: string[] = [];
  let size = 0;
  const add = (s: string) => {
    if (size >= MAX_PROMPT_CHARS) return;
    const piece = s.slice(0, MAX_PROMPT_CHARS - size);
    parts.push(piece);
    size += piece.length + 1;
  };
  const walk = (content: unknown) => {
    if (typeof content === 'string') return add(content);
    if (!Array.isArray(content)) return;
    for (const block of content) {
      if (block === null || typeof block !== 'object') continue;
      const b = block as Record<string, unknown>;
      if (typeof b.text === 'string') add(b.text);
      if (b.type === 'tool_result') walk(b.content);
    }
  };
  walk(body.system);
  if (Array.isArray(body.messages)) {
    for (const m of body.messages) if (m !== null && typeof m === 'object') walk((m as Record<string, unknown>).content);
  }
  return parts.join('\n');
}
