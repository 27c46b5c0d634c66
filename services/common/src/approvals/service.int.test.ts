import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ControlPublisher, ControlState, ControlSubscriber, type ApprovalResolution } from '../control';
import { decodeEvent, type AnyAttestEvent, type UnchainedEvent } from '../events';
import { EvidenceEmitter, memoryCheckpoints } from '../evidence/emitter';
import { InMemoryKeyStore, Keyring } from '../integrity';
import { LogError, MemoryEventLog, MemoryLogStorage } from '../log';
import { toEvidence } from './evidence';
import { decide, evolve, type ApprovalCommand, type ApprovalState } from './lifecycle';
import { MAX_EXPIRY_MS } from './rules';
import { ApprovalService } from './service';
import { alice, bob, carol, dave, DIGEST_A, eve, HOLD, MIN, requestCommand, requester, rule } from './testing';

const logger = pino({ level: 'silent' });
const CADENCE = { everyEvents: 100_000, everyMs: 3_600_000 };

/** A clock the test moves; whole milliseconds, like Date.now. */
function testClock(start = Date.now()) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms), nowUs: () => t * 1000 };
}

async function keyring(): Promise<Keyring> {
  const k = await Keyring.open(new InMemoryKeyStore());
  await k.rotate();
  return k;
}

function openEmitter(log: MemoryEventLog, keys: Keyring, producerId: string, clock?: { nowUs(): number }) {
  return EvidenceEmitter.open({
    log,
    keyring: keys,
    producerId,
    tenantId: 'acme',
    checkpoints: memoryCheckpoints(),
    logger,
    cadence: CADENCE,
    ...(clock ? { clock } : {}),
  });
}

/** Every event on the evidence log, decoded, in partition-then-offset order. */
function logEvents(log: MemoryEventLog): AnyAttestEvent[] {
  return log.storage.partitions.flat().map((r) => decodeEvent(r.value).event as AnyAttestEvent);
}

async function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('ApprovalService (evidence log, emitter and control channel for real)', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  async function setup() {
    const clock = testClock();
    const log = new MemoryEventLog({ storage: new MemoryLogStorage(4) });
    const controlLog = new MemoryEventLog({ storage: new MemoryLogStorage(2) });
    cleanup.push(() => log.close(), () => controlLog.close());
    const keys = await keyring();
    const gateway = await openEmitter(log, keys, 'gateway-1', clock);
    const emitter = await openEmitter(log, keys, 'approvals-1', clock);
    cleanup.push(() => gateway.close(), () => emitter.close());
    const publisher = new ControlPublisher(controlLog, keys);

    // A gateway's view of the control channel.
    const control = new ControlState();
    const resolutions: ApprovalResolution[] = [];
    const sub = new ControlSubscriber({
      log: controlLog,
      group: 'gw-1',
      trust: async () => keys.jwks(),
      onMessage: (m) => {
        if (m.type === 'approval.resolved') resolutions.push(m);
        control.apply(m);
      },
      logger,
      pollWaitMs: 20,
    });
    await sub.start();
    cleanup.push(() => sub.stop());

    const requestedSeen: string[] = [];
    const startService = async (group: string) => {
      const s = await ApprovalService.start({
        log,
        group,
        emitter,
        publisher,
        producerId: 'approvals-1',
        logger,
        now: clock.now,
        onRequested: (st) => requestedSeen.push(st.approvalId),
        pollWaitMs: 20,
        publishRetryMs: 20,
      });
      cleanup.push(() => s.stop());
      return s;
    };
    const service = await startService('approvals-1');

    /** What a gateway does: decide the request itself and append approval.requested. */
    const gatewayRequests = async (over: Partial<Extract<ApprovalCommand, { type: 'request' }>> = {}) => {
      const r = decide(undefined, requestCommand(over), clock.now());
      if (!r.ok) throw r.error;
      const ev = r.events[0]!;
      await gatewayAppends(toEvidence(ev, evolve(undefined, ev)!));
    };

    /**
     * What a gateway does when it forwards the approved request: append approval.released (the
     * gateway checks the approval against its ControlState, not a book: `state` is the approval as
     * the gateway knows it). Returns the event's id.
     */
    const gatewayReleases = async (state: ApprovalState): Promise<string> => {
      const e = toEvidence({ type: 'released', approvalId: state.approvalId, atMs: clock.now(), requestDigest: state.requestDigest, hold: state.hold }, state);
      const [chained] = await gatewayAppends(e);
      return chained!.metadata.eventId;
    };

    const gatewayAppends = async (e: ReturnType<typeof toEvidence>) => {
      const built = gateway.build(e.type, {
        actor: e.actor!,
        source: { address: '10.0.0.7', userAgent: 'claude-code' },
        target: e.target,
        outcome: e.outcome,
        correlation: e.correlation,
        payload: e.payload,
      } as never);
      return gateway.emit([{ ...built, metadata: { ...built.metadata, timeUs: e.timeUs } } as UnchainedEvent], e.correlation.sessionId);
    };

    return { clock, log, controlLog, keys, service, startService, gatewayRequests, gatewayReleases, control, resolutions, requestedSeen, controlCount: async () => (await controlLog.endOffsets()).reduce((a, b) => a + b, 0) };
  }

  it('a request appended by a gateway appears pending for an eligible reviewer, and only for one', async () => {
    const t = await setup();
    await t.gatewayRequests();
    await until(() => t.service.get('apr-1') !== undefined, 'the request to be folded');
    expect(t.service.pendingFor(bob).map((s) => s.approvalId)).toEqual(['apr-1']);
    // alice: the requesting agent acts for her; eve: not an approver; the agent itself: not a person.
    expect(t.service.pendingFor(alice)).toEqual([]);
    expect(t.service.pendingFor(eve)).toEqual([]);
    expect(t.service.pendingFor(requester)).toEqual([]);
    expect(t.service.get('apr-1')).toMatchObject({ status: 'pending', requestDigest: DIGEST_A, hold: HOLD, rule: { quorum: 2, mode: 'hold' } });
    expect(t.requestedSeen).toEqual(['apr-1']);
  });

  it('two approvals of quorum 2: two approval.decided events, then one approval.resolved a gateway receives', async () => {
    const t = await setup();
    await t.gatewayRequests();
    await t.service.sync();

    const first = await t.service.execute({ type: 'approve', approvalId: 'apr-1', approver: bob, reason: 'customer confirmed' });
    expect(first).toMatchObject({ ok: true, state: { status: 'pending' } });
    expect(await t.controlCount()).toBe(0);

    t.clock.advance(1000);
    const second = await t.service.execute({ type: 'approve', approvalId: 'apr-1', approver: carol, reason: 'ticket INC-7' });
    expect(second).toMatchObject({ ok: true, state: { status: 'approved' } });

    const decided = logEvents(t.log).filter((e) => e.metadata.type === 'approval.decided');
    expect(decided.map((e) => [e.actor.subject, e.metadata.producer, (e.payload as { quorumMet: boolean }).quorumMet])).toEqual([
      ['bob', 'approvals-1', false],
      ['carol', 'approvals-1', true],
    ]);

    await until(() => t.control.resolution('apr-1') !== undefined, 'the resolution at the gateway');
    const r = t.control.resolution('apr-1')!;
    expect(r).toMatchObject({
      outcome: 'approved',
      requestDigest: DIGEST_A,
      by: ['bob', 'carol'],
      reason: 'ticket INC-7',
      requester: { issuer: requester.issuer, subject: 'agent-7' },
      mode: 'hold',
      eventId: decided[1]!.metadata.eventId,
      atUs: decided[1]!.metadata.timeUs,
    });
    expect(await t.controlCount()).toBe(1);
    expect(t.resolutions).toHaveLength(1);
  });

  it('a denial rejects at once and resolves rejected', async () => {
    const t = await setup();
    await t.gatewayRequests();
    await t.service.sync();
    const r = await t.service.execute({ type: 'deny', approvalId: 'apr-1', approver: dave, reason: 'no ticket' });
    expect(r).toMatchObject({ ok: true, state: { status: 'rejected' } });
    await until(() => t.control.resolution('apr-1') !== undefined, 'the resolution');
    expect(t.control.resolution('apr-1')).toMatchObject({ outcome: 'rejected', by: ['dave'], reason: 'no ticket' });
    // Later votes are refused with the domain's code and publish nothing.
    const late = await t.service.execute({ type: 'approve', approvalId: 'apr-1', approver: bob, reason: 'ok' });
    expect(late.ok ? 'accepted' : late.error.code).toBe('approval_already_decided');
    expect(await t.controlCount()).toBe(1);
  });

  it('expireDue records approval.expired with the system actor and resolves expired', async () => {
    const t = await setup();
    await t.gatewayRequests({ rule: rule({ expiresAfterMs: 10 * MIN }) });
    await t.service.sync();
    expect(await t.service.expireDue()).toEqual([]);
    expect(t.service.nextExpiry()).toBe(t.service.get('apr-1')!.expiresAtMs);

    t.clock.advance(10 * MIN);
    const events = await t.service.expireDue();
    expect(events).toMatchObject([{ type: 'expired', approvalId: 'apr-1', stage: 'pending' }]);
    expect(t.service.get('apr-1')).toMatchObject({ status: 'expired' });
    const expired = logEvents(t.log).filter((e) => e.metadata.type === 'approval.expired');
    expect(expired).toHaveLength(1);
    expect(expired[0]!.actor).toMatchObject({ subject: 'system:approvals-1', kind: 'system' });
    await until(() => t.control.resolution('apr-1') !== undefined, 'the resolution');
    expect(t.control.resolution('apr-1')).toMatchObject({ outcome: 'expired', by: [], eventId: expired[0]!.metadata.eventId });
    // A second tick is harmless.
    expect(await t.service.expireDue()).toEqual([]);
    expect(t.service.nextExpiry()).toBeUndefined();
  });

  it('a second instance started later rebuilds the same book from the log; re-delivered events change nothing', async () => {
    const t = await setup();
    await t.gatewayRequests();
    await t.gatewayRequests({ approvalId: 'apr-2', requestDigest: 'c'.repeat(64), hold: { ...HOLD, holdId: 'req-2' }, rule: rule({ quorum: 1, mode: 'ask_and_retry' }) });
    await t.gatewayRequests({ approvalId: 'apr-3', hold: { ...HOLD, holdId: 'req-3' }, rule: rule({ expiresAfterMs: MIN }) });
    await t.service.sync();
    await t.service.execute({ type: 'approve', approvalId: 'apr-1', approver: bob, reason: 'fine' });
    t.clock.advance(500);
    await t.service.execute({ type: 'approve', approvalId: 'apr-2', approver: carol, reason: 'fine too' });
    t.clock.advance(500);
    await t.service.execute({ type: 'release', approvalId: 'apr-2', requestDigest: 'c'.repeat(64), requester, hold: { ...HOLD, holdId: 'other' } });
    t.clock.advance(MIN);
    await t.service.expireDue();
    await t.service.execute({ type: 'cancel', approvalId: 'apr-1', reason: 'caller_disconnected' });
    expect(t.service.all().map((s) => [s.approvalId, s.status])).toEqual([
      ['apr-1', 'cancelled'],
      ['apr-2', 'released'],
      ['apr-3', 'expired'],
    ]);

    const second = await t.startService('approvals-2');
    expect(second.all()).toEqual(t.service.all());
    expect(second.all()).toStrictEqual(t.service.all());

    // At-least-once delivery: every approval record appended again.
    const again = t.log.storage.partitions.flat().filter((r) => r.headers['type']?.startsWith('approval.'));
    await t.log.append(again.map((r) => ({ key: r.key, value: r.value, headers: r.headers })));
    expect(await t.service.sync()).toBe(true);
    expect(await second.sync()).toBe(true);
    expect(second.all()).toStrictEqual(t.service.all());
    const third = await t.startService('approvals-3');
    expect(third.all()).toStrictEqual(t.service.all());
    expect(third.counts.folded).toBe(2 * (3 + 1 + 1 + 1 + 1 + 1));
  });

  it('fails closed: when the evidence cannot be appended the decision fails, the book is unchanged and nothing is published', async () => {
    const t = await setup();
    await t.gatewayRequests({ rule: rule({ quorum: 1 }) });
    await t.service.sync();
    const before = t.service.get('apr-1');

    t.log.injectFailure(new LogError('log_unavailable', 'broker down', { retriable: true }));
    const r = await t.service.execute({ type: 'approve', approvalId: 'apr-1', approver: bob, reason: 'ok' });
    expect(r.ok ? 'accepted' : [r.error.code, r.error.retriable]).toEqual(['approval_unavailable', true]);
    expect(t.service.get('apr-1')).toBe(before);
    expect(await t.service.expireDue()).toEqual([]);
    expect(await t.controlCount()).toBe(0);

    // The failed append's outcome was unknown, so the emitter appends it again once the log is
    // back, before anything new: the first decision is recorded after all (late) and its outcome
    // published; the retry is decided after it and finds the approval already approved.
    t.log.injectFailure(undefined);
    const retry = await t.service.execute({ type: 'approve', approvalId: 'apr-1', approver: bob, reason: 'ok' });
    expect(retry.ok ? 'accepted' : retry.error.code).toBe('approval_already_decided');
    expect(t.service.get('apr-1')).toMatchObject({ status: 'approved' });
    await until(() => t.control.resolution('apr-1') !== undefined, 'the resolution');
    expect(logEvents(t.log).filter((e) => e.metadata.type === 'approval.decided')).toHaveLength(1);
  });

  it('a control publish that fails after the evidence is durable is retried in the background', async () => {
    const t = await setup();
    await t.gatewayRequests({ rule: rule({ quorum: 1 }) });
    await t.service.sync();
    t.controlLog.injectFailure(new LogError('log_unavailable', 'control topic down', { retriable: true }));
    const r = await t.service.execute({ type: 'approve', approvalId: 'apr-1', approver: bob, reason: 'ok' });
    expect(r).toMatchObject({ ok: true, state: { status: 'approved' } });
    expect(t.service.counts.publishFailures).toBeGreaterThan(0);
    t.controlLog.injectFailure(undefined);
    await until(() => t.control.resolution('apr-1') !== undefined, 'the retried resolution');
    expect(t.control.resolution('apr-1')).toMatchObject({ outcome: 'approved', by: ['bob'] });
  });

  it("a gateway's approval.released: the service publishes the release marker under a key of its own, and the gateway's state says released", async () => {
    const t = await setup();
    await t.gatewayRequests({ rule: rule({ quorum: 1, mode: 'ask_and_retry' }) });
    await t.service.sync();
    const approved = await t.service.execute({ type: 'approve', approvalId: 'apr-1', approver: bob, reason: 'ticket INC-9' });
    expect(approved).toMatchObject({ ok: true, state: { status: 'approved' } });
    await until(() => t.control.resolution('apr-1')?.outcome === 'approved', 'the approval at the gateway');

    t.clock.advance(1000);
    const eventId = await t.gatewayReleases(t.service.get('apr-1')!);
    await until(() => t.control.resolution('apr-1')?.outcome === 'released', 'the release marker at the gateway');
    expect(t.service.get('apr-1')).toMatchObject({ status: 'released' });
    expect(t.control.resolution('apr-1')).toMatchObject({
      outcome: 'released',
      requestDigest: DIGEST_A,
      requester: { issuer: requester.issuer, subject: 'agent-7' },
      mode: 'ask_and_retry',
      reason: null,
      by: [],
      eventId,
      atUs: t.clock.nowUs(),
    });
    expect(t.resolutions.map((r) => r.outcome)).toEqual(['approved', 'released']);
    const keys = t.controlLog.storage.partitions.flat().map((r) => r.key);
    expect(keys.sort()).toEqual(['approval-released:apr-1', 'approval:apr-1']);

    // The same record delivered again releases nothing new, and publishes nothing.
    const again = t.log.storage.partitions.flat().filter((r) => r.headers['type'] === 'approval.released');
    await t.log.append(again.map((r) => ({ key: r.key, value: r.value, headers: r.headers })));
    expect(await t.service.sync()).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    expect(await t.controlCount()).toBe(2);
  });

  it('a held request released by its gateway gets a marker too; a release of an approval the book does not hold approved publishes nothing', async () => {
    const t = await setup();
    await t.gatewayRequests({ rule: rule({ quorum: 1 }) });
    await t.gatewayRequests({ approvalId: 'apr-2', hold: { ...HOLD, holdId: 'req-2' }, rule: rule({ quorum: 1, mode: 'ask_and_retry' }) });
    await t.service.sync();
    await t.service.execute({ type: 'approve', approvalId: 'apr-1', approver: bob, reason: 'ok' });
    await t.gatewayReleases(t.service.get('apr-1')!);
    // apr-2 is still pending in the book: a release recorded for it changes nothing.
    await t.gatewayReleases(t.service.get('apr-2')!);
    await until(() => t.control.resolution('apr-1')?.outcome === 'released', 'the hold-mode marker');
    expect(t.control.resolution('apr-1')).toMatchObject({ mode: 'hold', outcome: 'released' });
    expect(await t.service.sync()).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    expect(t.service.get('apr-2')).toMatchObject({ status: 'pending' });
    expect(t.control.resolution('apr-2')).toBeUndefined();
  });

  it('releases recorded while no service ran are published after the initial read: recent ask-and-retry ones only', async () => {
    const t = await setup();
    const retry = rule({ quorum: 1, mode: 'ask_and_retry' });
    await t.gatewayRequests({ approvalId: 'old', hold: { ...HOLD, holdId: 'req-old' }, rule: retry });
    await t.service.sync();
    await t.service.execute({ type: 'approve', approvalId: 'old', approver: bob, reason: 'ok' });
    t.clock.advance(MAX_EXPIRY_MS);
    await t.gatewayRequests({ approvalId: 'recent', hold: { ...HOLD, holdId: 'req-recent' }, rule: retry });
    await t.gatewayRequests({ approvalId: 'held', hold: { ...HOLD, holdId: 'req-held' }, rule: rule({ quorum: 1 }) });
    await t.service.sync();
    await t.service.execute({ type: 'approve', approvalId: 'recent', approver: bob, reason: 'ok' });
    await t.service.execute({ type: 'approve', approvalId: 'held', approver: bob, reason: 'ok' });
    const states = Object.fromEntries(['old', 'recent', 'held'].map((id) => [id, t.service.get(id)!]));
    await until(() => t.control.resolution('held') !== undefined && t.control.resolution('recent') !== undefined, 'the approvals');
    const before = await t.controlCount();

    // No service runs while the gateway forwards the three requests.
    await t.service.stop();
    const released: Record<string, string> = {};
    for (const id of ['old', 'recent', 'held']) released[id] = await t.gatewayReleases(states[id]!);
    await new Promise((r) => setTimeout(r, 50));
    expect(await t.controlCount()).toBe(before);

    const next = await t.startService('approvals-2');
    expect(Object.fromEntries(next.all().map((s) => [s.approvalId, s.status]))).toEqual({ old: 'released', recent: 'released', held: 'released' });
    await until(() => t.control.resolution('recent')?.outcome === 'released', 'the marker of the recent retry approval');
    expect(t.control.resolution('recent')?.eventId).toBe(released['recent']);
    expect(await next.sync()).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    // Decided longer ago than any release window: every gateway refuses it anyway (approval_expired).
    expect(t.control.resolution('old')?.outcome).toBe('approved');
    // A held request is never retried: its marker would protect nothing.
    expect(t.control.resolution('held')?.outcome).toBe('approved');
    expect(await t.controlCount()).toBe(before + 1);
  });

  it("an 'approved' whose publish is still being retried when the approval is released is dropped, not published after the marker", async () => {
    const t = await setup();
    await t.gatewayRequests({ rule: rule({ quorum: 1, mode: 'ask_and_retry' }) });
    await t.service.sync();
    t.controlLog.injectFailure(new LogError('log_unavailable', 'control topic down', { retriable: true }));
    const r = await t.service.execute({ type: 'approve', approvalId: 'apr-1', approver: bob, reason: 'ok' });
    expect(r).toMatchObject({ ok: true, state: { status: 'approved' } });
    // (Here the failed append had reached the gateway after all; it forwards the retry.)
    await t.gatewayReleases(t.service.get('apr-1')!);
    await until(() => t.service.get('apr-1')?.status === 'released', 'the release folded');
    t.controlLog.injectFailure(undefined);
    await until(() => t.control.resolution('apr-1')?.outcome === 'released', 'the marker');
    await new Promise((r) => setTimeout(r, 100));
    const records = t.controlLog.storage.partitions.flat().map((x) => x.key);
    expect(records).toEqual(['approval-released:apr-1']);
  });

  it('cancels the stale holds of an earlier gateway run, not the current run\'s nor ask-and-retry ones', async () => {
    const t = await setup();
    await t.gatewayRequests({ approvalId: 'old-hold', hold: { gatewayId: 'gateway-1', instanceId: 'run-1', holdId: 'r1' } });
    await t.gatewayRequests({ approvalId: 'old-retry', hold: { gatewayId: 'gateway-1', instanceId: 'run-1', holdId: 'r2' }, rule: rule({ mode: 'ask_and_retry' }) });
    await t.gatewayRequests({ approvalId: 'new-hold', hold: { gatewayId: 'gateway-1', instanceId: 'run-2', holdId: 'r3' } });
    await t.gatewayRequests({ approvalId: 'other-gw', hold: { gatewayId: 'gateway-2', instanceId: 'run-1', holdId: 'r4' } });
    await t.service.sync();
    const results = await t.service.cancelStaleHolds('gateway-1', 'run-2');
    expect(results.map((r) => (r.ok ? r.state?.approvalId : r.error.code))).toEqual(['old-hold']);
    expect(t.service.get('old-hold')).toMatchObject({ status: 'cancelled', cancelReason: 'gateway_restarted' });
    expect(t.service.all().filter((s) => s.status === 'pending').map((s) => s.approvalId).sort()).toEqual(['new-hold', 'old-retry', 'other-gw']);
    const cancelled = logEvents(t.log).filter((e) => e.metadata.type === 'approval.cancelled');
    expect(cancelled.map((e) => [e.actor.kind, (e.payload as { reason: string }).reason])).toEqual([['system', 'gateway_restarted']]);
    await until(() => t.control.resolution('old-hold') !== undefined, 'the resolution');
    expect(t.control.resolution('old-hold')).toMatchObject({ outcome: 'cancelled', reason: 'gateway_restarted' });
  });
});
