import type { DecideResult, DecisionView, PendingApprovalView, ReviewerBackend, ReviewerDecision, ReviewerIdentity } from './backend';

/**
 * The in-memory twin of ReviewerBackend, for tests and demos: approvals added by hand, decisions
 * recorded as calls. Its rules are deliberately simple (a requester never sees their own request; a
 * deny rejects; approvals up to the quorum approve); the real rules belong to the approval domain.
 */
export interface RecordedCall {
  method: 'listPending' | 'recentDecisions' | 'decide';
  viewer: ReviewerIdentity;
  approvalId?: string;
  decision?: ReviewerDecision;
  reason?: string;
  limit?: number;
}

export class MemoryReviewerBackend implements ReviewerBackend {
  readonly calls: RecordedCall[] = [];
  private readonly pending = new Map<string, PendingApprovalView & { voters: string[] }>();
  private readonly decided: DecisionView[] = [];
  private scripted: { kind: 'refuse'; code: string; message: string } | { kind: 'throw' } | undefined;

  constructor(private readonly now: () => number = Date.now) {}

  add(approval: PendingApprovalView): void {
    this.pending.set(approval.approvalId, { ...approval, voters: [] });
  }

  /** The next call answers with this refusal (once). */
  refuseNext(code: string, message: string): void {
    this.scripted = { kind: 'refuse', code, message };
  }

  /** The next call throws, as a backend that cannot reach its store (once). */
  failNext(): void {
    this.scripted = { kind: 'throw' };
  }

  decisions(): DecisionView[] {
    return [...this.decided];
  }

  private takeScript() {
    const s = this.scripted;
    this.scripted = undefined;
    if (s?.kind === 'throw') throw new Error('approval store unavailable');
    return s;
  }

  async listPending(viewer: ReviewerIdentity): Promise<PendingApprovalView[]> {
    this.calls.push({ method: 'listPending', viewer });
    this.takeScript();
    return [...this.pending.values()]
      .filter((a) => !(a.requester.issuer === viewer.issuer && a.requester.subject === viewer.subject))
      .map(({ voters: _voters, ...view }) => view);
  }

  async recentDecisions(viewer: ReviewerIdentity, limit: number): Promise<DecisionView[]> {
    this.calls.push({ method: 'recentDecisions', viewer, limit });
    this.takeScript();
    return this.decided.slice(-limit).reverse();
  }

  async decide(viewer: ReviewerIdentity, approvalId: string, decision: ReviewerDecision, reason: string): Promise<DecideResult> {
    this.calls.push({ method: 'decide', viewer, approvalId, decision, reason });
    const script = this.takeScript();
    if (script !== undefined) return { ok: false, code: script.code, message: script.message };
    const a = this.pending.get(approvalId);
    if (a === undefined) return { ok: false, code: 'approval_not_found', message: `approval ${approvalId} is not pending` };
    if (a.requester.subject === viewer.subject && a.requester.issuer === viewer.issuer) {
      return { ok: false, code: 'self_approval_forbidden', message: 'you cannot decide your own request' };
    }
    const settle = (outcome: 'approved' | 'rejected') => {
      this.pending.delete(approvalId);
      this.decided.push({ approvalId, decision: outcome, by: [...a.voters, viewer.subject], reason, decidedAt: new Date(this.now()).toISOString(), ruleId: a.ruleId });
      return { ok: true as const, state: outcome };
    };
    if (decision === 'deny') return settle('rejected');
    if (a.approvals + 1 >= a.quorum) return settle('approved');
    a.approvals += 1;
    a.voters.push(viewer.subject);
    return { ok: true, state: 'pending' };
  }
}
