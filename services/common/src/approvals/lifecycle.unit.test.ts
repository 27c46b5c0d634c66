import { describe, expect, it } from 'vitest';
import { luhnNumber } from '../events/testing';
import { decide, evolve, replay, type ApprovalEvent } from './lifecycle';
import {
  DIGEST_A,
  DIGEST_B,
  HOLD,
  MIN,
  T0,
  alice,
  bob,
  carol,
  dave,
  eve,
  expectRefused,
  history,
  person,
  requestCommand,
  requester,
  rule,
  run,
} from './testing';

const approve = (approver = bob, reason = 'looks fine') => ({ type: 'approve' as const, approvalId: 'apr-1', approver, reason });
const deny = (approver = bob, reason = 'no customer exports') => ({ type: 'deny' as const, approvalId: 'apr-1', approver, reason });
const release = (over: { requestDigest?: string; hold?: typeof HOLD; requester?: typeof requester } = {}) => ({
  type: 'release' as const,
  approvalId: 'apr-1',
  requestDigest: DIGEST_A,
  hold: HOLD,
  requester,
  ...over,
});

describe('request', () => {
  it('Given nothing, When the gateway asks, Then approval.requested with the expiry and the masked excerpt', () => {
    const pan = luhnNumber('411111', 16);
    const events = run([], requestCommand({ context: { ...requestCommand().context, promptExcerpt: `charge ${pan} now` } }), T0);
    expect(events).toHaveLength(1);
    const e = events[0]!;
    expect(e.type).toBe('requested');
    if (e.type !== 'requested') return;
    expect(e.expiresAtMs).toBe(T0 + 15 * MIN);
    expect(e.releaseWindowMs).toBe(15 * MIN);
    expect(e.context.promptExcerpt).not.toContain(pan);
    expect(e.context.promptExcerpt).toContain(pan.slice(-4));
    expect(replay(events)?.status).toBe('pending');
  });

  it('Given an approval, When the same id is requested again, Then approval_exists', () => {
    expectRefused(history(), requestCommand(), T0 + 1, 'approval_exists');
  });

  it('refuses a malformed digest, a zero quorum and no approver groups', () => {
    expectRefused([], requestCommand({ requestDigest: 'nothex' }), T0, 'approval_invalid_command');
    expectRefused([], requestCommand({ rule: rule({ quorum: 0 }) }), T0, 'approval_invalid_command');
    expectRefused([], requestCommand({ rule: rule({ approverGroups: [] }) }), T0, 'approval_invalid_command');
  });

  it('records only the principal fields an approval needs (no token id, no expiry)', () => {
    const withToken = { ...requester, tokenId: 'jti-1', expiresAt: 123 } as typeof requester;
    const e = run([], requestCommand({ requester: withToken }), T0)[0]!;
    expect(e.type === 'requested' && Object.keys(e.requester).sort()).toEqual(['groups', 'issuer', 'kind', 'onBehalfOf', 'subject']);
  });
});

describe('quorum', () => {
  it('Given quorum 2 of 3 approvers, When the first approves, Then decided without quorum and still pending', () => {
    const events = run(history(), approve(bob), T0 + MIN);
    expect(events).toEqual([
      { type: 'decided', approvalId: 'apr-1', atMs: T0 + MIN, approver: bob, decision: 'approved', reason: 'looks fine', approvers: ['bob'], quorumMet: false },
    ]);
    expect(replay([...history(), ...events])?.status).toBe('pending');
  });

  it('Given one approval, When a second distinct approver approves, Then quorum is met and the approval is approved', () => {
    const given = history([bob]);
    const events = run(given, approve(carol), T0 + 2 * MIN);
    expect(events[0]).toMatchObject({ type: 'decided', decision: 'approved', approvers: ['bob', 'carol'], quorumMet: true });
    const state = replay([...given, ...events])!;
    expect(state.status).toBe('approved');
    expect(state.decidedAtMs).toBe(T0 + 2 * MIN);
    expect(state.releaseByMs).toBe(T0 + 2 * MIN + 15 * MIN);
  });

  it('Given quorum met, When the third approver approves, Then approval_already_decided', () => {
    expectRefused(history([bob, carol]), approve(dave), T0 + 3 * MIN, 'approval_already_decided');
  });

  it('quorum 1 approves on the first vote', () => {
    const given = history([], { rule: rule({ quorum: 1 }) });
    expect(run(given, approve(bob), T0 + 1)[0]).toMatchObject({ quorumMet: true });
  });
});

describe('who may decide', () => {
  it('Given an agent asked for alice, When alice approves, Then approval_self_approval', () => {
    expectRefused(history(), approve(alice), T0 + MIN, 'approval_self_approval');
  });

  it('Given a requester who is an approver, When the requester approves or denies, Then approval_self_approval', () => {
    const self = person('frank');
    expectRefused(history([], { requester: self }), approve(self), T0 + MIN, 'approval_self_approval');
    expectRefused(history([], { requester: self }), deny(self), T0 + MIN, 'approval_self_approval');
  });

  it('the same subject at another issuer is another person', () => {
    const other = { ...alice, issuer: 'https://other-idp.example.test' };
    expect(run(history(), approve(other), T0 + MIN)).toHaveLength(1);
  });

  it('Given a caller outside the approver groups, When they approve, Then approval_not_approver', () => {
    expectRefused(history(), approve(eve), T0 + MIN, 'approval_not_approver');
  });

  it('Given an agent in an approver group, When it approves, Then approval_not_human', () => {
    expectRefused(history(), approve({ ...bob, kind: 'agent' }), T0 + MIN, 'approval_not_human');
    expectRefused(history(), approve({ ...bob, onBehalfOf: 'carol' }), T0 + MIN, 'approval_not_human');
  });

  it('Given bob approved, When bob approves again, Then approval_duplicate_vote and no event', () => {
    expectRefused(history([bob]), approve(bob), T0 + 2 * MIN, 'approval_duplicate_vote');
  });

  it('Given bob approved, When bob denies, Then approval_duplicate_vote (one vote each)', () => {
    expectRefused(history([bob]), deny(bob), T0 + 2 * MIN, 'approval_duplicate_vote');
  });

  it('requires a reason, trimmed, and bounds its length', () => {
    expectRefused(history(), approve(bob, '   '), T0 + MIN, 'approval_reason_required');
    expectRefused(history(), deny(bob, ''), T0 + MIN, 'approval_reason_required');
    expectRefused(history(), approve(bob, 'x'.repeat(1001)), T0 + MIN, 'approval_reason_too_long');
    expect(run(history(), approve(bob, '  fine  '), T0 + MIN)[0]).toMatchObject({ reason: 'fine' });
  });

  it('masks a card number typed into a reason', () => {
    const pan = luhnNumber('550000', 16);
    const e = run(history(), approve(bob, `ok for card ${pan}`), T0 + MIN)[0]!;
    expect(e.type === 'decided' && e.reason).not.toContain(pan);
  });
});

describe('deny', () => {
  it('Given one approval of a quorum of 2, When an eligible approver denies, Then rejected with the reason', () => {
    const given = history([bob]);
    const events = run(given, deny(carol, 'bulk export of customers is not allowed'), T0 + 2 * MIN);
    expect(events[0]).toMatchObject({ type: 'decided', decision: 'rejected', approvers: ['bob'], quorumMet: false, reason: 'bulk export of customers is not allowed' });
    expect(replay([...given, ...events])?.status).toBe('rejected');
  });

  it('Given rejected, When anyone approves, denies or releases, Then refused', () => {
    const given = [...history(), ...run(history(), deny(bob), T0 + MIN)];
    expectRefused(given, approve(carol), T0 + 2 * MIN, 'approval_already_decided');
    expectRefused(given, deny(carol), T0 + 2 * MIN, 'approval_already_decided');
    expectRefused(given, release(), T0 + 2 * MIN, 'approval_rejected');
  });
});

describe('expiry', () => {
  it('Given pending, When the tick comes before the expiry, Then no event', () => {
    expect(run(history([bob]), { type: 'expire', approvalId: 'apr-1' }, T0 + 15 * MIN - 1)).toEqual([]);
  });

  it('Given pending with one approval, When the tick comes at the expiry, Then expired (pending stage)', () => {
    const given = history([bob]);
    const events = run(given, { type: 'expire', approvalId: 'apr-1' }, T0 + 15 * MIN);
    expect(events).toEqual([{ type: 'expired', approvalId: 'apr-1', atMs: T0 + 15 * MIN, stage: 'pending' }]);
    expect(replay([...given, ...events])?.status).toBe('expired');
  });

  it('Given pending past its expiry but no tick yet, When an approver decides, Then approval_expired and no event', () => {
    expectRefused(history([bob]), approve(carol), T0 + 15 * MIN, 'approval_expired');
    expectRefused(history([bob]), deny(carol), T0 + 20 * MIN, 'approval_expired');
  });

  it('Given expired, When an approver decides or the gateway releases, Then approval_expired', () => {
    const given = [...history([bob]), ...run(history([bob]), { type: 'expire', approvalId: 'apr-1' }, T0 + 16 * MIN)];
    expectRefused(given, approve(carol), T0 + 17 * MIN, 'approval_expired');
    expectRefused(given, release(), T0 + 17 * MIN, 'approval_expired');
  });

  it('Given approved but never released, When the release window passes, Then expired (unreleased stage) and release refused', () => {
    const given = history([bob, carol]); // approved at T0 + 2 min, release window 15 min
    expectRefused(given, release(), T0 + 17 * MIN, 'approval_expired');
    const events = run(given, { type: 'expire', approvalId: 'apr-1' }, T0 + 17 * MIN);
    expect(events).toEqual([{ type: 'expired', approvalId: 'apr-1', atMs: T0 + 17 * MIN, stage: 'unreleased' }]);
  });

  it('a tick for an unknown approval is approval_not_found', () => {
    expectRefused([], { type: 'expire', approvalId: 'apr-404' }, T0, 'approval_not_found');
  });
});

describe('release', () => {
  it('Given pending, When the gateway releases, Then approval_pending', () => {
    expectRefused(history([bob]), release(), T0 + 2 * MIN, 'approval_pending');
  });

  it('Given approved, When the same hold releases the same digest, Then released', () => {
    const given = history([bob, carol]);
    const events = run(given, release(), T0 + 3 * MIN);
    expect(events).toEqual([{ type: 'released', approvalId: 'apr-1', atMs: T0 + 3 * MIN, requestDigest: DIGEST_A, hold: HOLD }]);
    expect(replay([...given, ...events])?.status).toBe('released');
  });

  it('Given approved, When a different request digest is released, Then approval_digest_mismatch', () => {
    expectRefused(history([bob, carol]), release({ requestDigest: DIGEST_B }), T0 + 3 * MIN, 'approval_digest_mismatch');
  });

  it('Given released, When it is released again, Then approval_already_released', () => {
    const given = [...history([bob, carol]), ...run(history([bob, carol]), release(), T0 + 3 * MIN)];
    expectRefused(given, release(), T0 + 4 * MIN, 'approval_already_released');
  });

  it('hold mode: another hold, or the same hold id in another gateway run, cannot release it', () => {
    expectRefused(history([bob, carol]), release({ hold: { ...HOLD, holdId: 'req-2' } }), T0 + 3 * MIN, 'approval_hold_mismatch');
    expectRefused(history([bob, carol]), release({ hold: { ...HOLD, instanceId: 'run-2' } }), T0 + 3 * MIN, 'approval_hold_mismatch');
  });

  it('ask-and-retry: any gateway may release the retry, but only for the same caller and digest', () => {
    const over = { rule: rule({ mode: 'ask_and_retry' as const }) };
    const given = history([bob, carol], over);
    const otherGateway = { gatewayId: 'gateway-2', instanceId: 'run-9', holdId: 'req-77' };
    expect(run(given, release({ hold: otherGateway }), T0 + 3 * MIN)).toHaveLength(1);
    expectRefused(given, release({ hold: otherGateway, requester: { ...requester, subject: 'agent-8' } }), T0 + 3 * MIN, 'approval_requester_mismatch');
    expectRefused(given, release({ hold: otherGateway, requestDigest: DIGEST_B }), T0 + 3 * MIN, 'approval_digest_mismatch');
  });
});

describe('cancel (caller gone, gateway restarted)', () => {
  it('Given pending, When the gateway restarts and cancels, Then a later quorum cannot approve or release anything', () => {
    const given = history([bob]);
    const cancelled = run(given, { type: 'cancel', approvalId: 'apr-1', reason: 'gateway_restarted' }, T0 + 2 * MIN);
    expect(cancelled).toEqual([{ type: 'cancelled', approvalId: 'apr-1', atMs: T0 + 2 * MIN, reason: 'gateway_restarted' }]);
    const after = [...given, ...cancelled];
    expectRefused(after, approve(carol), T0 + 3 * MIN, 'approval_cancelled');
    // The restarted gateway reuses hold ids from 'req-1'; neither the old nor the new hold can be released.
    expectRefused(after, release(), T0 + 3 * MIN, 'approval_cancelled');
    expectRefused(after, release({ hold: { ...HOLD, instanceId: 'run-2' } }), T0 + 3 * MIN, 'approval_cancelled');
  });

  it('Given approved but not yet released, When the caller disconnects, Then cancelled and release refused', () => {
    const given = history([bob, carol]);
    const after = [...given, ...run(given, { type: 'cancel', approvalId: 'apr-1', reason: 'caller_disconnected' }, T0 + 3 * MIN)];
    expect(replay(after)?.cancelReason).toBe('caller_disconnected');
    expectRefused(after, release(), T0 + 3 * MIN, 'approval_cancelled');
  });

  it('Given released, When cancelled, Then approval_already_released', () => {
    const given = [...history([bob, carol]), ...run(history([bob, carol]), release(), T0 + 3 * MIN)];
    expectRefused(given, { type: 'cancel', approvalId: 'apr-1', reason: 'caller_disconnected' }, T0 + 4 * MIN, 'approval_already_released');
  });
});

describe('evolve', () => {
  it('ignores re-delivered events, so a replay with duplicates gives the same state', () => {
    const events = history([bob, carol]);
    const doubled: ApprovalEvent[] = events.flatMap((e) => [e, e]);
    expect(replay(doubled)).toEqual(replay(events));
  });

  it('ignores events for another approval and events before the request', () => {
    const events = history([bob]);
    const state = replay(events)!;
    expect(evolve(state, { type: 'cancelled', approvalId: 'apr-2', atMs: T0, reason: 'withdrawn' })).toBe(state);
    expect(evolve(undefined, { type: 'expired', approvalId: 'apr-1', atMs: T0, stage: 'pending' })).toBeUndefined();
  });

  it('decide never changes the state it is given', () => {
    const state = replay(history([bob]))!;
    const before = structuredClone(state);
    decide(state, approve(carol), T0 + 2 * MIN);
    expect(state).toEqual(before);
  });
});
