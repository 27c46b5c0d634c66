import { identityKey, type ControlMessage } from './messages';

/**
 * What a gateway knows from the control channel: identities suspended now, and how approvals were
 * resolved (and whether one has released its request). Folded from messages in log order, so a
 * restarted gateway rebuilds the same state; the approval rules below also give the same state
 * when a release marker and the approval's other messages arrive in another order.
 */

export interface Suspension {
  readonly reason: string;
  readonly untilUs: number | null;
  readonly eventId: string;
  readonly atUs: number;
}

export type ApprovalResolution = Extract<ControlMessage, { type: 'approval.resolved' }>;

/** Resolutions kept for late lookups (ask-and-retry); older ones are forgotten first. */
const DEFAULT_MAX_RESOLUTIONS = 100_000;

export class ControlState {
  private readonly suspended = new Map<string, Suspension>();
  private readonly resolutions = new Map<string, ApprovalResolution>();
  private readonly waiters = new Map<string, Set<(r: ApprovalResolution) => void>>();

  constructor(private readonly maxResolutions = DEFAULT_MAX_RESOLUTIONS) {}

  apply(msg: ControlMessage): void {
    switch (msg.type) {
      case 'identity.suspended':
        this.suspended.set(identityKey(msg.issuer, msg.subject), { reason: msg.reason, untilUs: msg.untilUs, eventId: msg.eventId, atUs: msg.atUs });
        return;
      case 'identity.restored': {
        const key = identityKey(msg.issuer, msg.subject);
        const cur = this.suspended.get(key);
        // A restore older than the suspension in force (reordered delivery) does not lift it.
        if (cur && cur.atUs <= msg.atUs) this.suspended.delete(key);
        return;
      }
      case 'approval.resolved': {
        // A final outcome is final: a later message cannot turn a rejection (or a release) into an
        // approval. 'approved' is the one outcome that can still end: a final one (released,
        // expired, cancelled; the lifecycle never rejects after approving, and refusing would be
        // the safe reading if it did) replaces it, and a release marker that arrives before the
        // approval (another partition) is not undone by it.
        const cur = this.resolutions.get(msg.approvalId);
        if (cur !== undefined && (cur.outcome !== 'approved' || msg.outcome === 'approved')) return;
        this.resolutions.delete(msg.approvalId);
        this.resolutions.set(msg.approvalId, msg);
        if (this.resolutions.size > this.maxResolutions) {
          const oldest = this.resolutions.keys().next().value;
          if (oldest !== undefined) this.resolutions.delete(oldest);
        }
        // Waiters woke on the approval already (and are gone) when this replaces it.
        const ws = this.waiters.get(msg.approvalId);
        if (ws) {
          this.waiters.delete(msg.approvalId);
          for (const w of ws) w(msg);
        }
        return;
      }
    }
  }

  /** The suspension in force for this identity at `nowUs`, if any (a lapsed one is not). */
  suspension(issuer: string, subject: string, nowUs: number): Suspension | undefined {
    const s = this.suspended.get(identityKey(issuer, subject));
    if (s === undefined) return undefined;
    if (s.untilUs !== null && s.untilUs <= nowUs) return undefined;
    return s;
  }

  /** Every suspension in force at `nowUs`. */
  suspensions(nowUs: number): Array<Suspension & { issuer: string; subject: string }> {
    const out: Array<Suspension & { issuer: string; subject: string }> = [];
    for (const [key, s] of this.suspended) {
      if (s.untilUs !== null && s.untilUs <= nowUs) continue;
      const [issuer = '', subject = ''] = key.split('\u0000');
      out.push({ ...s, issuer, subject });
    }
    return out;
  }

  /**
   * The approval's latest outcome: 'approved' until a final one (released, expired, cancelled)
   * replaces it; rejected, expired, cancelled and released never change.
   */
  resolution(approvalId: string): ApprovalResolution | undefined {
    return this.resolutions.get(approvalId);
  }

  /**
   * Resolves when the approval is resolved; rejects with the signal's reason when aborted. A
   * waiting request holds a closure and nothing else: no timer, no polling.
   */
  waitFor(approvalId: string, signal: AbortSignal): Promise<ApprovalResolution> {
    const done = this.resolutions.get(approvalId);
    if (done) return Promise.resolve(done);
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      let set = this.waiters.get(approvalId);
      if (!set) this.waiters.set(approvalId, (set = new Set()));
      const onAbort = () => {
        set.delete(wake);
        if (set.size === 0) this.waiters.delete(approvalId);
        reject(signal.reason);
      };
      const wake = (r: ApprovalResolution) => {
        signal.removeEventListener('abort', onAbort);
        resolve(r);
      };
      set.add(wake);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  waitingCount(): number {
    let n = 0;
    for (const s of this.waiters.values()) n += s.size;
    return n;
  }
}
