import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ApprovalBook } from './book';
import { isSelfApproval, type ApprovalCommand, type ApprovalEvent } from './lifecycle';
import { DIGEST_A, DIGEST_B, HOLD, MIN, T0, alice, bob, carol, dave, eve, requestCommand, requester, rule } from './testing';

function clock(start = T0) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms), set: (ms: number) => void (now = ms) };
}

const approve = (approvalId: string, approver = bob): ApprovalCommand => ({ type: 'approve', approvalId, approver, reason: 'ok' });

describe('ApprovalBook views', () => {
  it('Given approvals, When a viewer asks what is pending, Then only those they may decide, soonest expiry first', () => {
    const c = clock();
    const book = new ApprovalBook(c);
    book.executeSync(requestCommand({ approvalId: 'late', rule: rule({ expiresAfterMs: 30 * MIN }) }));
    book.executeSync(requestCommand({ approvalId: 'soon', rule: rule({ expiresAfterMs: 5 * MIN }) }));
    book.executeSync(requestCommand({ approvalId: 'other-team', rule: rule({ approverGroups: ['finance'] }) }));
    book.executeSync(approve('late', carol));

    expect(book.pendingFor(bob).map((s) => s.approvalId)).toEqual(['soon', 'late']);
    expect(book.pendingFor(carol).map((s) => s.approvalId)).toEqual(['soon']); // already voted on 'late'
    expect(book.pendingFor(alice)).toEqual([]); // the agent asked for alice: her own requests
    expect(book.pendingFor(eve)).toEqual([]); // not an approver
    c.advance(5 * MIN);
    expect(book.pendingFor(bob).map((s) => s.approvalId)).toEqual(['late']); // 'soon' expired, even before the tick
  });

  it('lists recent decisions latest first, pending ones excluded', () => {
    const c = clock();
    const book = new ApprovalBook(c);
    for (const id of ['a', 'b', 'c']) book.executeSync(requestCommand({ approvalId: id, rule: rule({ quorum: 1 }) }));
    c.advance(MIN);
    book.executeSync({ type: 'deny', approvalId: 'b', approver: bob, reason: 'no' });
    c.advance(MIN);
    book.executeSync(approve('a'));
    expect(book.recentDecisions().map((s) => [s.approvalId, s.status])).toEqual([
      ['a', 'approved'],
      ['b', 'rejected'],
    ]);
    expect(book.recentDecisions(1)).toHaveLength(1);
  });

  it('nextExpiry follows pending expiries, then release windows, and is undefined when nothing is open', () => {
    const c = clock();
    const book = new ApprovalBook(c);
    expect(book.nextExpiry()).toBeUndefined();
    book.executeSync(requestCommand({ approvalId: 'x', rule: rule({ quorum: 1, expiresAfterMs: 10 * MIN }) }));
    book.executeSync(requestCommand({ approvalId: 'y', rule: rule({ quorum: 1, expiresAfterMs: 20 * MIN }) }));
    expect(book.nextExpiry()).toBe(T0 + 10 * MIN);
    c.advance(MIN);
    book.executeSync(approve('x')); // release window = 10 min from approval
    expect(book.nextExpiry()).toBe(T0 + 11 * MIN);
    book.executeSync({ type: 'release', approvalId: 'x', requestDigest: DIGEST_A, hold: HOLD, requester });
    expect(book.nextExpiry()).toBe(T0 + 20 * MIN);
    book.executeSync({ type: 'cancel', approvalId: 'y', reason: 'caller_disconnected' });
    expect(book.nextExpiry()).toBeUndefined();
  });

  it('expireDue expires exactly the approvals that are due', async () => {
    const c = clock();
    const book = new ApprovalBook(c);
    book.executeSync(requestCommand({ approvalId: 'x', rule: rule({ expiresAfterMs: 10 * MIN }) }));
    book.executeSync(requestCommand({ approvalId: 'y', rule: rule({ expiresAfterMs: 20 * MIN }) }));
    c.set(T0 + 10 * MIN);
    const events = await book.expireDue();
    expect(events.map((e) => [e.type, e.approvalId])).toEqual([['expired', 'x']]);
    expect(book.get('y')?.status).toBe('pending');
  });

  it('prune forgets closed approvals only', () => {
    const c = clock();
    const book = new ApprovalBook(c);
    book.executeSync(requestCommand({ approvalId: 'open' }));
    book.executeSync(requestCommand({ approvalId: 'gone' }));
    book.executeSync({ type: 'cancel', approvalId: 'gone', reason: 'withdrawn' });
    expect(book.prune(T0 + 1)).toBe(1);
    expect(book.all().map((s) => s.approvalId)).toEqual(['open']);
  });
});

describe('gateway restart while a request is held', () => {
  it('Given a hold of run-1, When gateway-1 restarts as run-2 and cancels its stale holds, Then a later quorum releases nothing', async () => {
    const c = clock();
    const book = new ApprovalBook(c);
    book.executeSync(requestCommand({ approvalId: 'held', hold: HOLD }));
    book.executeSync(requestCommand({ approvalId: 'other-gw', hold: { gatewayId: 'gateway-2', instanceId: 'run-1', holdId: 'req-1' } }));
    book.executeSync(approve('held', bob));

    const stale = book.staleHolds('gateway-1', 'run-2');
    expect(stale.map((s) => s.approvalId)).toEqual(['held']); // another gateway's holds are not ours to cancel
    for (const s of stale) expect((await book.execute({ type: 'cancel', approvalId: s.approvalId, reason: 'gateway_restarted' })).ok).toBe(true);

    c.advance(MIN);
    const late = book.executeSync(approve('held', carol));
    expect(late.ok ? 'approved' : late.error.code).toBe('approval_cancelled');
    // The new run reuses the hold id 'req-1' for a different request: it cannot be released by the old approval.
    const r = book.executeSync({ type: 'release', approvalId: 'held', requestDigest: DIGEST_B, hold: { ...HOLD, instanceId: 'run-2' }, requester });
    expect(r.ok ? 'released' : r.error.code).toBe('approval_cancelled');
    expect(book.staleHolds('gateway-1', 'run-2')).toEqual([]);
  });
});

describe('execute', () => {
  it('serialises concurrent commands: two approvers at once reach the quorum, a duplicate vote is refused', async () => {
    const c = clock();
    const book = new ApprovalBook(c);
    book.executeSync(requestCommand());
    const persisted: ApprovalEvent[][] = [];
    const slowPersist = async (events: readonly ApprovalEvent[]) => {
      await new Promise((r) => setTimeout(r, 5));
      persisted.push([...events]);
    };
    const [first, second, dup] = await Promise.all([
      book.execute(approve('apr-1', bob), slowPersist),
      book.execute(approve('apr-1', carol), slowPersist),
      book.execute(approve('apr-1', bob), slowPersist),
    ]);
    expect(first.ok && first.events[0]).toMatchObject({ approvers: ['bob'], quorumMet: false });
    expect(second.ok && second.events[0]).toMatchObject({ approvers: ['bob', 'carol'], quorumMet: true });
    expect(dup.ok ? 'accepted' : dup.error.code).toBe('approval_already_decided');
    expect(persisted).toHaveLength(2);
    expect(book.get('apr-1')?.status).toBe('approved');
  });

  it('Given persistence fails, When a decision is made, Then the book is unchanged and the error is retriable', async () => {
    const book = new ApprovalBook(clock());
    book.executeSync(requestCommand());
    const before = book.get('apr-1');
    const r = await book.execute(approve('apr-1'), async () => {
      throw new Error('disk full');
    });
    expect(r.ok ? 'accepted' : [r.error.code, r.error.retriable]).toEqual(['approval_unavailable', true]);
    expect(book.get('apr-1')).toBe(before);
    // The queue keeps working after a failure.
    expect((await book.execute(approve('apr-1'))).ok).toBe(true);
  });
});

// A random workload over a small universe, so collisions (same approver, same id, late decisions) are common.
const PEOPLE = [requester, alice, bob, carol, dave, eve];
const IDS = ['apr-1', 'apr-2', 'apr-3'];
const HOLDS = [HOLD, { ...HOLD, instanceId: 'run-2' }, { gatewayId: 'gateway-2', instanceId: 'run-1', holdId: 'req-9' }];

function requestArb(id: string): fc.Arbitrary<ApprovalCommand> {
  return fc
    .record({
      quorum: fc.integer({ min: 1, max: 3 }),
      mode: fc.constantFrom('hold' as const, 'ask_and_retry' as const),
      minutes: fc.integer({ min: 1, max: 30 }),
      hold: fc.constantFrom(HOLD, HOLD, ...HOLDS),
    })
    .map(({ quorum, mode, minutes, hold }) => requestCommand({ approvalId: id, rule: rule({ quorum, mode, expiresAfterMs: minutes * MIN }), hold }));
}

// Weighted towards eligible approvers and matching releases, so runs reach approved and released often.
const commandArb: fc.Arbitrary<ApprovalCommand> = fc.oneof(
  { weight: 1, arbitrary: fc.constantFrom(...IDS).chain(requestArb) },
  {
    weight: 12,
    arbitrary: fc
      .record({
        id: fc.constantFrom(...IDS),
        who: fc.constantFrom(bob, carol, dave, bob, carol, dave, ...PEOPLE),
        deny: fc.integer({ min: 0, max: 9 }).map((n) => n < 2),
        reason: fc.constantFrom('ok', 'ok', 'ok', '', 'no way'),
      })
      .map(({ id, who, deny, reason }): ApprovalCommand => ({ type: deny ? 'deny' : 'approve', approvalId: id, approver: who, reason })),
  },
  { weight: 2, arbitrary: fc.constantFrom(...IDS).map((id): ApprovalCommand => ({ type: 'expire', approvalId: id })) },
  {
    weight: 6,
    arbitrary: fc
      .record({
        id: fc.constantFrom(...IDS),
        digest: fc.constantFrom(DIGEST_A, DIGEST_A, DIGEST_B),
        hold: fc.constantFrom(HOLD, HOLD, ...HOLDS),
        who: fc.constantFrom(requester, requester, bob),
      })
      .map(({ id, digest, hold, who }): ApprovalCommand => ({ type: 'release', approvalId: id, requestDigest: digest, hold, requester: who })),
  },
  {
    weight: 1,
    arbitrary: fc
      .record({ id: fc.constantFrom(...IDS), reason: fc.constantFrom('caller_disconnected' as const, 'gateway_restarted' as const) })
      .map(({ id, reason }): ApprovalCommand => ({ type: 'cancel', approvalId: id, reason })),
  },
);

const stepArb = fc.tuple(fc.integer({ min: 0, max: 3 * MIN }), commandArb);
// Every run starts by requesting each id (most later commands then find an approval), then mixes.
const stepsArb = fc
  .tuple(fc.tuple(...IDS.map((id) => fc.tuple(fc.integer({ min: 0, max: MIN }), requestArb(id)))), fc.array(stepArb, { minLength: 5, maxLength: 60 }))
  .map(([setup, rest]) => [...setup, ...rest]);

describe('properties', () => {
  it('a book rebuilt from the events equals the live book, and the lifecycle rules hold', () => {
    fc.assert(
      fc.property(stepsArb, (steps) => {
        const c = clock();
        const live = new ApprovalBook(c);
        const log: ApprovalEvent[] = [];
        for (const [dt, command] of steps) {
          c.advance(dt);
          const r = live.executeSync(command);
          if (r.ok) log.push(...r.events);
        }
        const rebuilt = ApprovalBook.fromEvents(log, { now: c.now });
        expect(rebuilt.all()).toEqual(live.all());
        expect(rebuilt.nextExpiry()).toEqual(live.nextExpiry());

        for (const s of live.all()) {
          const yes = s.votes.filter((v) => v.decision === 'approved');
          // Nobody votes twice, nobody approves their own request, only approvers vote.
          expect(new Set(s.votes.map((v) => `${v.approver.issuer} ${v.approver.subject}`)).size).toBe(s.votes.length);
          for (const v of s.votes) {
            expect(isSelfApproval(s.requester, v.approver)).toBe(false);
            expect(v.approver.groups.some((g) => s.rule.approverGroups.includes(g))).toBe(true);
            expect(v.atMs).toBeLessThan(s.expiresAtMs);
          }
          if (s.status === 'approved' || s.status === 'released' || s.expiredStage === 'unreleased') expect(yes.length).toBe(s.rule.quorum);
          if (s.status === 'released') {
            const released = log.filter((e) => e.type === 'released' && e.approvalId === s.approvalId);
            expect(released).toHaveLength(1);
            expect(released[0]).toMatchObject({ requestDigest: s.requestDigest });
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
