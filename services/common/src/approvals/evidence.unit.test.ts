import { describe, expect, it } from 'vitest';
import { newEvent } from '../events/builder';
import { toEvidence } from './evidence';
import { replay, type ApprovalEvent } from './lifecycle';
import { DIGEST_A, HOLD, MIN, T0, bob, carol, history, requester, run } from './testing';

/** Each event with the state right after it. */
function withStates(events: ApprovalEvent[]) {
  return events.map((e, i) => ({ e, state: replay(events.slice(0, i + 1))! }));
}

describe('toEvidence', () => {
  it('maps requested, each vote and expiry to the Avro payloads', () => {
    const given = history([bob]);
    const events = [...given, ...run(given, { type: 'expire', approvalId: 'apr-1' }, T0 + 15 * MIN)];
    const [requested, decided, expired] = withStates(events).map(({ e, state }) => toEvidence(e, state));

    expect(requested).toEqual({
      type: 'approval.requested',
      actor: { subject: 'agent-7', issuer: requester.issuer, clientId: null, groups: ['developers'], kind: 'agent', onBehalfOf: 'alice', dev: false },
      correlation: { sessionId: 'sess-1', requestId: 'req-1', upstreamRequestId: null },
      target: { protocol: 'http', service: 'anthropic', resource: 'messages', model: 'claude-sonnet-4-5' },
      payload: {
        approvalId: 'apr-1',
        scope: 'request',
        policyRuleId: 'pci.card-data',
        justification: null,
        approverGroups: ['security'],
        quorum: 2,
        expiresAtUs: (T0 + 15 * MIN) * 1000,
      },
    });
    expect(decided).toMatchObject({
      type: 'approval.decided',
      actor: { subject: 'bob', kind: 'human' },
      payload: { approvalId: 'apr-1', decision: 'approved', approvers: ['bob'], quorum: 2, quorumMet: false, comment: 'ok from bob' },
    });
    expect(expired).toEqual(
      expect.objectContaining({
        type: 'approval.expired',
        actor: null,
        payload: { approvalId: 'apr-1', requestedAtUs: T0 * 1000, expiresAtUs: (T0 + 15 * MIN) * 1000, approvals: 1, quorum: 2 },
      }),
    );
  });

  it('an unreleased approval expires at the end of its release window', () => {
    const given = history([bob, carol]);
    const events = [...given, ...run(given, { type: 'expire', approvalId: 'apr-1' }, T0 + 17 * MIN)];
    const last = withStates(events).at(-1)!;
    expect(toEvidence(last.e, last.state)?.payload).toMatchObject({ expiresAtUs: (T0 + 2 * MIN + 15 * MIN) * 1000, approvals: 2 });
  });

  it('released and cancelled have no Avro type yet', () => {
    const given = history([bob, carol]);
    const released = run(given, { type: 'release', approvalId: 'apr-1', requestDigest: DIGEST_A, hold: HOLD, requester }, T0 + 3 * MIN);
    const state = replay([...given, ...released])!;
    expect(toEvidence(released[0]!, state)).toBeUndefined();
  });

  it('builds valid events with newEvent', () => {
    const events = history([bob, carol]);
    for (const { e, state } of withStates(events)) {
      const ev = toEvidence(e, state)!;
      const built = newEvent(
        ev.type,
        {
          tenantId: 'default',
          actor: ev.actor ?? { subject: 'system:approvals', issuer: 'attest', clientId: null, groups: [], kind: 'system', onBehalfOf: null, dev: false },
          source: { address: 'internal', userAgent: null },
          target: ev.target,
          outcome: { result: 'success', status: null, reason: null },
          correlation: ev.correlation,
          payload: ev.payload as never,
        },
        { producer: { id: 'approvals-test' } },
      );
      expect(built.metadata.type).toBe(ev.type);
    }
  });
});
