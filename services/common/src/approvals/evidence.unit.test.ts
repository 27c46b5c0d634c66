import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { chainEvent, newEvent } from '../events/builder';
import { decodeEvent, encodeEvent } from '../events/codec';
import { listFixtures, sampleEvent } from '../events/fixtures';
import { luhnNumber } from '../events/testing';
import type { Actor } from '../events/types.generated';
import type { AnyAttestEvent } from '../events/types';
import { ApprovalBook } from './book';
import { APPROVAL_EVIDENCE_TYPES, fromEvidence, principalOf, toEvidence, type ApprovalEvidence } from './evidence';
import { replay, type ApprovalCommand, type ApprovalEvent, type CancelReason } from './lifecycle';
import { DIGEST_A, DIGEST_B, HOLD, MIN, T0, alice, bob, carol, dave, eve, history, person, requestCommand, requester, rule, run } from './testing';

/** Each event with the state right after it. */
function withStates(events: ApprovalEvent[]) {
  return events.map((e, i) => ({ e, state: replay(events.slice(0, i + 1))! }));
}

const SYSTEM: Actor = { subject: 'attest:approvals', issuer: 'attest', clientId: null, groups: [], kind: 'system', onBehalfOf: null, dev: false };
const EPOCH = '0196b1f2-6c1e-7a3b-9d4e-5f6a7b8c9d0e';

/**
 * What a producer does with the domain events of one book: map each to its evidence, build the
 * Avro event at the evidence's time, chain it (one producer, one epoch) and encode it.
 */
function writeLog(events: readonly ApprovalEvent[]): Buffer[] {
  const shadow = new ApprovalBook();
  const log: Buffer[] = [];
  let prevHash = Buffer.alloc(32);
  for (const e of events) {
    const state = shadow.apply(e);
    if (state === undefined) throw new Error(`event for unknown approval ${e.approvalId}`);
    const ev = toEvidence(e, state);
    const unchained = newEvent(
      ev.type,
      {
        tenantId: 'default',
        actor: ev.actor ?? SYSTEM,
        source: { address: 'internal', userAgent: null },
        target: ev.target,
        outcome: ev.outcome,
        correlation: ev.correlation,
        payload: ev.payload as never,
      },
      { producer: { id: 'approvals-test', epoch: EPOCH }, clock: { nowUs: () => ev.timeUs } },
    );
    const bytes = encodeEvent(chainEvent(unchained, { sequence: log.length + 1, prevHash }));
    prevHash = createHash('sha256').update(bytes).digest();
    log.push(bytes);
  }
  return log;
}

/** What a reader does: decode the log and fold it into a book. */
function readLog(log: readonly Buffer[], now?: () => number): ApprovalBook {
  const events = log.map((bytes) => fromEvidence(decodeEvent(bytes).event)).filter((e): e is ApprovalEvent => e !== undefined);
  return ApprovalBook.fromEvents(events, now === undefined ? {} : { now });
}

function clock(start = T0) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

const release = (over: Partial<Extract<ApprovalCommand, { type: 'release' }>> = {}): ApprovalCommand => ({
  type: 'release',
  approvalId: 'apr-1',
  requestDigest: DIGEST_A,
  hold: HOLD,
  requester,
  ...over,
});
const cancel = (reason: CancelReason): ApprovalCommand => ({ type: 'cancel', approvalId: 'apr-1', reason });
const deny = (approver = dave): ApprovalCommand => ({ type: 'deny', approvalId: 'apr-1', approver, reason: 'not for this ticket' });

/** Domain event sequences built with the testing helpers, one per path through the lifecycle. */
function scenarios(): Record<string, ApprovalEvent[]> {
  const then = (given: ApprovalEvent[], command: ApprovalCommand, at: number) => [...given, ...run(given, command, at)];
  const pan = luhnNumber('411111', 16);
  return {
    'requested': history(),
    'one vote of two': history([bob]),
    'approved': history([bob, carol]),
    'rejected': then(history([bob]), deny(), T0 + 2 * MIN),
    'expired pending': then(history([bob]), { type: 'expire', approvalId: 'apr-1' }, T0 + 15 * MIN),
    'expired unreleased': then(history([bob, carol]), { type: 'expire', approvalId: 'apr-1' }, T0 + 17 * MIN),
    'released (hold)': then(history([bob, carol]), release(), T0 + 3 * MIN),
    'cancelled pending (caller gone)': then(history([bob]), cancel('caller_disconnected'), T0 + 90_000),
    'cancelled approved (gateway restarted)': then(history([bob, carol]), cancel('gateway_restarted'), T0 + 3 * MIN),
    'cancelled (shutdown)': then(history(), cancel('gateway_shutdown'), T0 + 1),
    'cancelled (withdrawn)': then(history(), cancel('withdrawn'), T0 + 5),
    'released (ask and retry, own window, justification, card number in the prompt)': then(
      history([bob], {
        rule: rule({ quorum: 1, mode: 'ask_and_retry', expiresAfterMs: 4 * 60 * MIN, scope: 'export:evidence' }),
        releaseWindowMs: 5 * MIN,
        hold: { gatewayId: 'gateway-2', instanceId: 'run-9', holdId: 'req-42' },
        context: {
          ...requestCommand().context,
          promptExcerpt: `refund card ${pan} please ${'x'.repeat(600)}`,
          reasons: ['prompt mentions \'refund\'', `caller is in group 'payments'`],
          justification: `ticket INC-1 for card ${pan}`,
        },
      }),
      release({ hold: { gatewayId: 'gateway-2', instanceId: 'run-10', holdId: 'req-43' } }),
      T0 + 4 * MIN,
    ),
    'empty excerpt, no reasons, a human requester': then(
      history([bob], { requester: alice, rule: rule({ quorum: 1 }), context: { ...requestCommand().context, promptExcerpt: '', reasons: [] } }),
      release({ requester: alice }),
      T0 + 2 * MIN,
    ),
  };
}

describe('toEvidence', () => {
  it('maps requested, each vote and expiry to the Avro payloads', () => {
    const given = history([bob]);
    const events = [...given, ...run(given, { type: 'expire', approvalId: 'apr-1' }, T0 + 15 * MIN)];
    const [requested, decided, expired] = withStates(events).map(({ e, state }) => toEvidence(e, state));

    expect(requested).toEqual({
      type: 'approval.requested',
      timeUs: T0 * 1000,
      actor: { subject: 'agent-7', issuer: requester.issuer, clientId: null, groups: ['developers'], kind: 'agent', onBehalfOf: 'alice', dev: false },
      outcome: { result: 'unknown', status: null, reason: 'approval_required' },
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
        mode: 'hold',
        requestDigest: DIGEST_A,
        reasons: ["prompt asks for bulk data ('export all')"],
        excerpt: 'please export all customers',
        hold: HOLD,
        releaseWindowUs: 15 * MIN * 1000,
      },
    });
    expect(decided).toMatchObject({
      type: 'approval.decided',
      timeUs: (T0 + MIN) * 1000,
      actor: { subject: 'bob', kind: 'human' },
      outcome: { result: 'success' },
      payload: { approvalId: 'apr-1', decision: 'approved', approvers: ['bob'], quorum: 2, quorumMet: false, comment: 'ok from bob' },
    });
    expect(expired).toEqual(
      expect.objectContaining({
        type: 'approval.expired',
        actor: null,
        outcome: { result: 'failure', status: 403, reason: 'approval_expired' },
        payload: { approvalId: 'apr-1', requestedAtUs: T0 * 1000, expiresAtUs: (T0 + 15 * MIN) * 1000, approvals: 1, quorum: 2, stage: 'pending' },
      }),
    );
  });

  it('an unreleased approval expires at the end of its release window', () => {
    const given = history([bob, carol]);
    const events = [...given, ...run(given, { type: 'expire', approvalId: 'apr-1' }, T0 + 17 * MIN)];
    const last = withStates(events).at(-1)!;
    expect(toEvidence(last.e, last.state).payload).toMatchObject({ expiresAtUs: (T0 + 2 * MIN + 15 * MIN) * 1000, approvals: 2, stage: 'unreleased' });
  });

  it('maps released to approval.released, with the caller as actor', () => {
    const given = history([bob, carol]);
    const released = run(given, release(), T0 + 3 * MIN);
    const state = replay([...given, ...released])!;
    expect(toEvidence(released[0]!, state)).toMatchObject({
      type: 'approval.released',
      timeUs: (T0 + 3 * MIN) * 1000,
      actor: { subject: 'agent-7', onBehalfOf: 'alice' },
      outcome: { result: 'success' },
      payload: { approvalId: 'apr-1', requestDigest: DIGEST_A, gatewayId: HOLD.gatewayId, instanceId: HOLD.instanceId, holdId: HOLD.holdId },
    });
  });

  it('maps cancelled to approval.cancelled: the caller acts when it went away, the gateway (system) when it restarted', () => {
    for (const [reason, actor] of [
      ['caller_disconnected', 'agent-7'],
      ['withdrawn', 'agent-7'],
      ['gateway_restarted', null],
      ['gateway_shutdown', null],
    ] as const) {
      const given = history([bob]);
      const cancelled = run(given, cancel(reason), T0 + 2 * MIN);
      const ev = toEvidence(cancelled[0]!, replay([...given, ...cancelled])!);
      expect(ev).toMatchObject({ type: 'approval.cancelled', outcome: { result: 'failure', reason: 'approval_cancelled' }, payload: { approvalId: 'apr-1', reason } });
      expect(ev.actor?.subject ?? null).toBe(actor);
    }
  });

  it('builds valid events with newEvent for every event of every scenario', () => {
    const seen = new Set<string>();
    for (const events of Object.values(scenarios())) {
      for (const { e, state } of withStates(events)) {
        const ev: ApprovalEvidence = toEvidence(e, state);
        seen.add(ev.type);
      }
      expect(writeLog(events)).toHaveLength(events.length);
    }
    expect([...seen].sort()).toEqual([...APPROVAL_EVIDENCE_TYPES].sort());
  });
});

describe('fromEvidence', () => {
  it.each(Object.entries(scenarios()))('%s: the book rebuilt from the encoded evidence log equals the live book', (_name, events) => {
    const live = ApprovalBook.fromEvents(events);
    const log = writeLog(events);
    const decoded = log.map((bytes) => fromEvidence(decodeEvent(bytes).event));
    expect(decoded).toStrictEqual(events);
    expect(readLog(log).all()).toStrictEqual(live.all());
  });

  it('inverts toEvidence without the codec too', () => {
    for (const events of Object.values(scenarios())) {
      for (const { e, state } of withStates(events)) {
        const ev = toEvidence(e, state);
        const built = chainEvent(
          newEvent(
            ev.type,
            { tenantId: 't', actor: ev.actor ?? SYSTEM, source: { address: 'internal', userAgent: null }, target: ev.target, outcome: ev.outcome, correlation: ev.correlation, payload: ev.payload as never },
            { producer: { id: 'p' }, clock: { nowUs: () => ev.timeUs } },
          ),
          { sequence: 1, prevHash: Buffer.alloc(32) },
        );
        expect(fromEvidence(built)).toStrictEqual(e);
      }
    }
  });

  it('ignores events of other types', () => {
    for (const type of ['gateway.request.received', 'policy.decided', 'gateway.request.blocked', 'evidence.accessed'] as const) {
      expect(fromEvidence(sampleEvent(type))).toBeUndefined();
    }
  });

  it('reads every committed approval fixture, of every version', () => {
    const approvalFixtures = listFixtures().filter((f) => f.type.startsWith('approval.'));
    expect(new Set(approvalFixtures.map((f) => f.type))).toEqual(new Set(APPROVAL_EVIDENCE_TYPES));
    for (const f of approvalFixtures) {
      const e = fromEvidence(decodeEvent(f.bytes).event);
      expect(e?.type, `${f.type} v${f.version}`).toBe(f.type.slice('approval.'.length));
    }
  });

  it('a decision this reader does not know counts for nothing; a cancel reason it does not know still cancels', () => {
    const decided = sampleEvent('approval.decided');
    expect(fromEvidence({ ...decided, payload: { ...decided.payload, decision: 'unknown' } } as AnyAttestEvent)).toBeUndefined();
    const cancelled = sampleEvent('approval.cancelled');
    expect(fromEvidence({ ...cancelled, payload: { ...cancelled.payload, reason: 'unknown' } } as AnyAttestEvent)).toMatchObject({
      type: 'cancelled',
      reason: 'withdrawn',
    });
  });

  it('maps actors a principal cannot be to a non-human kind, and keeps clientId, onBehalfOf and dev', () => {
    expect(principalOf(SYSTEM)).toStrictEqual({ subject: 'attest:approvals', issuer: 'attest', groups: [], kind: 'service' });
    expect(principalOf({ ...SYSTEM, kind: 'unknown' }).kind).toBe('service');
    expect(principalOf({ ...SYSTEM, kind: 'human', clientId: 'console', onBehalfOf: 'u-1', dev: true })).toStrictEqual({
      subject: 'attest:approvals',
      issuer: 'attest',
      groups: [],
      kind: 'human',
      clientId: 'console',
      onBehalfOf: 'u-1',
      dev: true,
    });
  });

  describe('approvals requested before version 2', () => {
    const v1 = listFixtures().find((f) => f.type === 'approval.requested' && f.version === 1)!;
    const decoded = decodeEvent(v1.bytes).event as AnyAttestEvent;
    const approver = person('u-9000', ['approvers']);

    it('decode with the new fields at their defaults', () => {
      expect(decoded.payload).toMatchObject({ mode: null, requestDigest: null, reasons: [], excerpt: null, hold: null, releaseWindowUs: null });
    });

    it('are rebuilt for the record, can still be voted on and expire, but never release a request', () => {
      const requested = fromEvidence(decoded);
      expect(requested).toMatchObject({
        type: 'requested',
        requestDigest: '',
        hold: { gatewayId: '', instanceId: '', holdId: '' },
        releaseWindowMs: 0,
        rule: { mode: 'hold', quorum: 1, expiresAfterMs: ((decoded.payload as { expiresAtUs: number }).expiresAtUs - decoded.metadata.timeUs) / 1000 },
      });
      const t = decoded.metadata.timeUs / 1000;
      const c = clock(t);
      const book = ApprovalBook.fromEvents([requested!], c);
      c.advance(MIN);
      const approved = book.executeSync({ type: 'approve', approvalId: 'apr_01JAX3P4', approver, reason: 'ok' });
      expect(approved.ok && approved.state?.status).toBe('approved');
      // Whatever a gateway presents, at the moment of approval or after: refused.
      for (const dt of [0, 1, MIN]) {
        c.advance(dt);
        for (const digest of [DIGEST_A, DIGEST_B, '']) {
          for (const hold of [HOLD, { gatewayId: 'gateway-7f9c', instanceId: EPOCH, holdId: decoded.correlation.requestId }, { gatewayId: '', instanceId: '', holdId: '' }]) {
            const r = book.decide({ type: 'release', approvalId: 'apr_01JAX3P4', requestDigest: digest, hold, requester: principalOf(decoded.actor) });
            expect(r.ok).toBe(false);
          }
        }
      }
      // The expiry tick closes it as unreleased.
      expect(book.nextExpiry()).toBe(t + MIN);
    });

    it('an approval.expired without a stage reads as pending below the quorum and unreleased at it', () => {
      const expiredV1 = listFixtures().find((f) => f.type === 'approval.expired' && f.version === 1)!;
      const e = decodeEvent(expiredV1.bytes).event as AnyAttestEvent & { payload: { approvals: number; quorum: number; stage: string | null } };
      expect(e.payload.stage).toBeNull();
      expect(fromEvidence(e)).toMatchObject({ type: 'expired', stage: 'pending' });
      expect(fromEvidence({ ...e, payload: { ...e.payload, approvals: e.payload.quorum } })).toMatchObject({ type: 'expired', stage: 'unreleased' });
    });

    it('a v2 event with a malformed digest or hold, or an unknown mode, is no more releasable', () => {
      const v2 = sampleEvent('approval.requested');
      for (const payload of [
        { ...v2.payload, requestDigest: 'not-a-digest' },
        { ...v2.payload, hold: { ...v2.payload.hold!, holdId: '' } },
        { ...v2.payload, mode: 'teleport' },
      ]) {
        expect(fromEvidence({ ...v2, payload } as AnyAttestEvent)).toMatchObject({ requestDigest: '', releaseWindowMs: 0, rule: { mode: 'hold' } });
      }
      expect(fromEvidence(v2)).toMatchObject({ requestDigest: v2.payload.requestDigest, releaseWindowMs: 600_000, rule: { mode: 'hold' } });
    });
  });
});

// A random workload over a small universe (as in book.unit.test.ts), so every path is taken often.
const PEOPLE = [requester, alice, bob, carol, dave, eve];
const IDS = ['apr-1', 'apr-2', 'apr-3'];
const HOLDS = [HOLD, { ...HOLD, instanceId: 'run-2' }, { gatewayId: 'gateway-2', instanceId: 'run-1', holdId: 'req-9' }];

function requestArb(id: string): fc.Arbitrary<ApprovalCommand> {
  return fc
    .record({
      quorum: fc.integer({ min: 1, max: 3 }),
      mode: fc.constantFrom('hold' as const, 'ask_and_retry' as const),
      minutes: fc.integer({ min: 1, max: 30 }),
      window: fc.option(fc.integer({ min: 1, max: 20 * MIN }), { nil: undefined }),
      hold: fc.constantFrom(...HOLDS),
      excerpt: fc.constantFrom('', 'please export all customers', `card ${luhnNumber('5555', 16)} declined`),
      justification: fc.constantFrom(undefined, null, 'INC-7'),
    })
    .map(({ quorum, mode, minutes, window, hold, excerpt, justification }) =>
      requestCommand({
        approvalId: id,
        rule: rule({ quorum, mode, expiresAfterMs: minutes * MIN }),
        hold,
        releaseWindowMs: window,
        context: { ...requestCommand().context, requestId: `req-${id}`, promptExcerpt: excerpt, justification },
      }),
    );
}

const commandArb: fc.Arbitrary<ApprovalCommand> = fc.oneof(
  { weight: 1, arbitrary: fc.constantFrom(...IDS).chain(requestArb) },
  {
    weight: 12,
    arbitrary: fc
      .record({ id: fc.constantFrom(...IDS), who: fc.constantFrom(bob, carol, dave, ...PEOPLE), deny: fc.integer({ min: 0, max: 9 }).map((n) => n < 2) })
      .map(({ id, who, deny }): ApprovalCommand => ({ type: deny ? 'deny' : 'approve', approvalId: id, approver: who, reason: deny ? 'no' : 'ok' })),
  },
  { weight: 2, arbitrary: fc.constantFrom(...IDS).map((id): ApprovalCommand => ({ type: 'expire', approvalId: id })) },
  {
    weight: 6,
    arbitrary: fc
      .record({ id: fc.constantFrom(...IDS), digest: fc.constantFrom(DIGEST_A, DIGEST_A, DIGEST_B), hold: fc.constantFrom(HOLD, ...HOLDS), who: fc.constantFrom(requester, bob) })
      .map(({ id, digest, hold, who }): ApprovalCommand => ({ type: 'release', approvalId: id, requestDigest: digest, hold, requester: who })),
  },
  {
    weight: 1,
    arbitrary: fc
      .record({ id: fc.constantFrom(...IDS), reason: fc.constantFrom('caller_disconnected' as const, 'gateway_restarted' as const, 'gateway_shutdown' as const, 'withdrawn' as const) })
      .map(({ id, reason }): ApprovalCommand => ({ type: 'cancel', approvalId: id, reason })),
  },
);

const stepsArb = fc
  .tuple(
    fc.tuple(...IDS.map((id) => fc.tuple(fc.integer({ min: 0, max: MIN }), requestArb(id)))),
    fc.array(fc.tuple(fc.integer({ min: 0, max: 3 * MIN }), commandArb), { minLength: 5, maxLength: 40 }),
  )
  .map(([setup, rest]) => [...setup, ...rest]);

describe('properties', () => {
  it('a book rebuilt from the encoded, chained, decoded evidence log equals the live book', () => {
    fc.assert(
      fc.property(stepsArb, (steps) => {
        const c = clock();
        const live = new ApprovalBook(c);
        const events: ApprovalEvent[] = [];
        for (const [dt, command] of steps) {
          c.advance(dt);
          const r = live.executeSync(command);
          if (r.ok) events.push(...r.events);
        }
        const rebuilt = readLog(writeLog(events), c.now);
        expect(rebuilt.all()).toStrictEqual(live.all());
        expect(rebuilt.nextExpiry()).toEqual(live.nextExpiry());
      }),
      { numRuns: 150 },
    );
  });
});
