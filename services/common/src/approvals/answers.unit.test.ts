import { describe, expect, it } from 'vitest';
import { APPROVAL_ID_HEADER, approvalAnswer } from './answers';
import { replay } from './lifecycle';
import { DIGEST_A, HOLD, MIN, T0, bob, carol, history, requester, rule, run } from './testing';

describe('approvalAnswer', () => {
  it('ask-and-retry pending: names the approval, the reason, the expiry and the retry header', () => {
    const a = approvalAnswer(replay(history([], { rule: rule({ mode: 'ask_and_retry' }) }))!);
    expect(a).toMatchObject({ status: 403, errorType: 'permission_error', code: 'approval_required', approvalId: 'apr-1' });
    expect(a?.message).toBe(
      "This request needs approval under rule 'pci.card-data' (prompt asks for bulk data ('export all')). Approval apr-1 was requested and expires at 2025-01-01T12:15:00Z; " +
        `once it is approved, send the same request again with the header ${APPROVAL_ID_HEADER}: apr-1.`,
    );
  });

  it('approved and released let the request through', () => {
    const given = history([bob, carol]);
    expect(approvalAnswer(replay(given)!)).toBeUndefined();
    const released = [...given, ...run(given, { type: 'release', approvalId: 'apr-1', requestDigest: DIGEST_A, hold: HOLD, requester }, T0 + 3 * MIN)];
    expect(approvalAnswer(replay(released)!)).toBeUndefined();
  });

  it('rejected carries the approver’s reason; expired says how far the quorum got', () => {
    const denied = [...history(), ...run(history(), { type: 'deny', approvalId: 'apr-1', approver: bob, reason: 'no bulk exports' }, T0 + MIN)];
    expect(approvalAnswer(replay(denied)!)).toMatchObject({ code: 'approval_rejected', message: "Approval apr-1 under rule 'pci.card-data' was denied: no bulk exports." });
    const expired = [...history([bob]), ...run(history([bob]), { type: 'expire', approvalId: 'apr-1' }, T0 + 15 * MIN)];
    expect(approvalAnswer(replay(expired)!)?.message).toContain('expired at 2025-01-01T12:15:00Z with 1 of 2 approvals');
  });

  it('cancelled says why', () => {
    const c = [...history(), ...run(history(), { type: 'cancel', approvalId: 'apr-1', reason: 'gateway_restarted' }, T0 + MIN)];
    expect(approvalAnswer(replay(c)!)).toMatchObject({ code: 'approval_cancelled' });
    expect(approvalAnswer(replay(c)!)?.message).toContain('gateway_restarted');
  });
});
