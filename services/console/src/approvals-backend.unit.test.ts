import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { APPROVAL_ERROR_CODES, decide, evolve, toEvidence, type ApprovalCommand } from '../../common/src/approvals';
import { ApprovalService } from '../../common/src/approvals/service';
import { requestCommand, rule } from '../../common/src/approvals/testing';
import { ControlPublisher } from '../../common/src/control';
import { decodeEvent, type AnyAttestEvent } from '../../common/src/events';
import { EvidenceEmitter, memoryCheckpoints } from '../../common/src/evidence/emitter';
import { InMemoryKeyStore, Keyring } from '../../common/src/integrity';
import { LogError, MemoryEventLog, MemoryLogStorage } from '../../common/src/log';
import { approvalsBackend, principalOfReviewer } from './approvals-backend';
import type { ReviewerIdentity } from './reviewer/backend';
import { decisionErrorStatus } from './reviewer/errors';

const logger = pino({ level: 'silent' });
const ISS = 'https://idp.example.test';

const reviewer = (subject: string, groups = ['security'], over: Partial<ReviewerIdentity> = {}): ReviewerIdentity => ({
  issuer: ISS,
  subject,
  groups,
  kind: 'human',
  channel: 'browser',
  ...over,
});
const bob = reviewer('bob');
const carol = reviewer('carol');
const dave = reviewer('dave');

describe('approvalsBackend over a real ApprovalService', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  async function setup() {
    let now = Date.UTC(2025, 0, 1, 12, 0, 0);
    const clock = { now: () => now, advance: (ms: number) => void (now += ms) };
    const log = new MemoryEventLog({ storage: new MemoryLogStorage(2) });
    const controlLog = new MemoryEventLog({ storage: new MemoryLogStorage(1) });
    cleanup.push(() => log.close(), () => controlLog.close());
    const keys = await Keyring.open(new InMemoryKeyStore());
    await keys.rotate();
    const emitter = await EvidenceEmitter.open({
      log,
      keyring: keys,
      producerId: 'console-1',
      tenantId: 'acme',
      checkpoints: memoryCheckpoints(),
      logger,
      cadence: { everyEvents: 100_000, everyMs: 3_600_000 },
      clock: { nowUs: () => now * 1000 },
    });
    cleanup.push(() => emitter.close());
    const service = await ApprovalService.start({ log, group: 'console-1', emitter, publisher: new ControlPublisher(controlLog, keys), producerId: 'console-1', logger, now: clock.now, pollWaitMs: 20 });
    cleanup.push(() => service.stop());
    const request = async (over: Partial<Extract<ApprovalCommand, { type: 'request' }>> = {}) => {
      const r = await service.execute(requestCommand(over));
      if (!r.ok) throw r.error;
    };
    return { clock, log, service, backend: approvalsBackend(service), request };
  }

  it('maps reviewer identities: a person as itself, a delegated token as the person with the bot as client', () => {
    expect(principalOfReviewer(bob)).toEqual({ subject: 'bob', issuer: ISS, groups: ['security'], kind: 'human' });
    expect(principalOfReviewer(reviewer('user:alice', ['security'], { kind: 'agent', actor: 'chat-bot', channel: 'api' }))).toEqual({
      subject: 'user:alice',
      issuer: ISS,
      groups: ['security'],
      kind: 'human',
      clientId: 'chat-bot',
    });
    expect(principalOfReviewer(reviewer('ci-bot', ['security'], { kind: 'service', channel: 'api' }))).toMatchObject({ kind: 'service' });
  });

  it('lists what the viewer may decide, oldest request first, with the view fields', async () => {
    const t = await setup();
    await t.request({ approvalId: 'late-expiry', rule: rule({ expiresAfterMs: 60 * 60_000 }) });
    t.clock.advance(1000);
    await t.request({ approvalId: 'soon-expiry', rule: rule({ expiresAfterMs: 5 * 60_000, mode: 'ask_and_retry' }) });
    const list = await t.backend.listPending(bob);
    expect(list.map((a) => a.approvalId)).toEqual(['late-expiry', 'soon-expiry']);
    expect(list[1]).toEqual({
      approvalId: 'soon-expiry',
      ruleId: 'pci.card-data',
      reasons: ["prompt asks for bulk data ('export all')"],
      requester: { issuer: ISS, subject: 'agent-7', kind: 'agent' },
      model: 'claude-sonnet-4-5',
      route: 'messages',
      maskedPrompt: 'please export all customers',
      riskSignals: [],
      requestedAt: '2025-01-01T12:00:01.000Z',
      expiresAt: '2025-01-01T12:05:01.000Z',
      quorum: 2,
      approvals: 0,
      mode: 'ask_and_retry',
    });
    // The person the requesting agent acts for, and non-approvers, see nothing.
    expect(await t.backend.listPending(reviewer('alice', ['developers', 'security']))).toEqual([]);
    expect(await t.backend.listPending(reviewer('eve', ['developers']))).toEqual([]);
    // After bob's vote, bob no longer sees it; carol sees one approval of two.
    await t.backend.decide(bob, 'late-expiry', 'approve', 'ok');
    expect((await t.backend.listPending(bob)).map((a) => a.approvalId)).toEqual(['soon-expiry']);
    expect((await t.backend.listPending(carol)).find((a) => a.approvalId === 'late-expiry')?.approvals).toBe(1);
  });

  it('shows the requester\'s risk signals when the process has the risk view', async () => {
    const t = await setup();
    await t.request({ approvalId: 'with-risk' });
    const seen: Array<{ issuer: string; subject: string }> = [];
    const backend = approvalsBackend(t.service, (r) => (seen.push(r), r.subject === 'agent-7' ? ['repeated-denials (high)'] : []));
    expect((await backend.listPending(bob)).map((a) => a.riskSignals)).toEqual([['repeated-denials (high)']]);
    expect(seen).toEqual([{ issuer: ISS, subject: 'agent-7', groups: expect.any(Array), kind: 'agent' }].map(({ issuer, subject }) => expect.objectContaining({ issuer, subject })));
  });

  it('decides through the domain and answers the state afterwards', async () => {
    const t = await setup();
    await t.request();
    expect(await t.backend.decide(bob, 'apr-1', 'approve', 'fine')).toEqual({ ok: true, state: 'pending' });
    expect(await t.backend.decide(carol, 'apr-1', 'approve', 'fine too')).toEqual({ ok: true, state: 'approved' });
    await t.request({ approvalId: 'apr-2' });
    expect(await t.backend.decide(dave, 'apr-2', 'deny', 'no')).toEqual({ ok: true, state: 'rejected' });
  });

  it('a delegated decision is recorded in the person\'s name, naming the bot', async () => {
    const t = await setup();
    await t.request({ rule: rule({ quorum: 1 }) });
    const viaBot = reviewer('carol', ['security'], { kind: 'agent', actor: 'chat-bot', channel: 'api' });
    expect(await t.backend.decide(viaBot, 'apr-1', 'approve', 'clicked in chat')).toEqual({ ok: true, state: 'approved' });
    const decided = t.log.storage.partitions
      .flat()
      .map((r) => decodeEvent(r.value).event as AnyAttestEvent)
      .find((e) => e.metadata.type === 'approval.decided');
    expect(decided?.actor).toMatchObject({ subject: 'carol', kind: 'human', clientId: 'chat-bot', onBehalfOf: null });
  });

  it('passes the domain\'s refusal codes through, with the domain\'s HTTP statuses', async () => {
    const t = await setup();
    await t.request({ rule: rule({ expiresAfterMs: 60_000 }) });
    const refusal = async (viewer: ReviewerIdentity, id: string, reason = 'because') => {
      const r = await t.backend.decide(viewer, id, 'approve', reason);
      return r.ok ? 'accepted' : r.code;
    };
    expect(await refusal(bob, 'nope')).toBe('approval_not_found');
    expect(await refusal(reviewer('alice', ['security']), 'apr-1')).toBe('approval_self_approval');
    expect(await refusal(reviewer('eve', ['developers']), 'apr-1')).toBe('approval_not_approver');
    expect(await refusal(reviewer('ci-bot', ['security'], { kind: 'service', channel: 'api' }), 'apr-1')).toBe('approval_not_human');
    expect(await refusal(bob, 'apr-1', '   ')).toBe('approval_reason_required');
    expect(await refusal(bob, 'apr-1')).toBe('accepted');
    expect(await refusal(bob, 'apr-1')).toBe('approval_duplicate_vote');
    t.clock.advance(60_000);
    expect(await refusal(carol, 'apr-1')).toBe('approval_expired');

    for (const code of Object.keys(APPROVAL_ERROR_CODES) as (keyof typeof APPROVAL_ERROR_CODES)[]) {
      expect([code, decisionErrorStatus(code)]).toEqual([code, APPROVAL_ERROR_CODES[code].status]);
    }
    // The in-memory twin's short codes keep their statuses; unknown codes are 409.
    expect([decisionErrorStatus('self_approval_forbidden'), decisionErrorStatus('already_decided'), decisionErrorStatus('quorum_rule_changed')]).toEqual([403, 409, 409]);
  });

  it('a decision that cannot be recorded throws (the console answers approvals_unavailable, retriable)', async () => {
    const t = await setup();
    await t.request();
    t.log.injectFailure(new LogError('log_unavailable', 'down', { retriable: true }));
    await expect(t.backend.decide(bob, 'apr-1', 'approve', 'ok')).rejects.toMatchObject({ code: 'approval_unavailable', retriable: true });
    // The failed append's outcome was unknown: the emitter appends it again once the log is back,
    // before the retry is decided, so bob's first decision stands and the retry is told so.
    t.log.injectFailure(undefined);
    expect(await t.backend.decide(bob, 'apr-1', 'approve', 'ok')).toMatchObject({ ok: false, code: 'approval_duplicate_vote' });
    expect(t.service.get('apr-1')?.votes).toHaveLength(1);
  });

  it('recent decisions: newest first, released as approved, cancelled and expired as expired, only for the viewer\'s groups', async () => {
    const t = await setup();
    const fleet = rule({ id: 'fleet', approverGroups: ['fleet-leads'], quorum: 1 });
    await t.request({ approvalId: 'released', rule: rule({ quorum: 1, mode: 'ask_and_retry' }) });
    await t.request({ approvalId: 'rejected' });
    await t.request({ approvalId: 'cancelled' });
    await t.request({ approvalId: 'expired', rule: rule({ expiresAfterMs: 10_000 }) });
    await t.request({ approvalId: 'other-group', rule: fleet });
    await t.request({ approvalId: 'still-pending' });

    t.clock.advance(1000);
    await t.backend.decide(bob, 'released', 'approve', 'go');
    const state = t.service.get('released')!;
    t.clock.advance(1000);
    expect(await t.service.execute({ type: 'release', approvalId: 'released', requestDigest: state.requestDigest, requester: state.requester, hold: state.hold })).toMatchObject({ ok: true });
    t.clock.advance(1000);
    await t.backend.decide(dave, 'rejected', 'deny', 'no way');
    t.clock.advance(1000);
    await t.service.execute({ type: 'cancel', approvalId: 'cancelled', reason: 'caller_disconnected' });
    t.clock.advance(10_000);
    await t.service.expireDue();
    await t.backend.decide(reviewer('frank', ['fleet-leads']), 'other-group', 'approve', 'fleet ok');

    const views = await t.backend.recentDecisions(carol, 10);
    expect(views.map((v) => [v.approvalId, v.decision, v.by, v.reason])).toEqual([
      ['expired', 'expired', [], 'not decided in time'],
      ['cancelled', 'expired', [], 'cancelled: caller_disconnected'],
      ['rejected', 'rejected', ['dave'], 'no way'],
      ['released', 'approved', ['bob'], 'go'],
    ]);
    // Dated by the decision for approved and rejected ones (release came a second later).
    expect(views.find((v) => v.approvalId === 'released')?.decidedAt).toBe('2025-01-01T12:00:01.000Z');
    expect(await t.backend.recentDecisions(carol, 2)).toHaveLength(2);
    expect((await t.backend.recentDecisions(reviewer('frank', ['fleet-leads']), 10)).map((v) => v.approvalId)).toEqual(['other-group']);
    expect(await t.backend.recentDecisions(carol, 0)).toEqual([]);
  });
});
