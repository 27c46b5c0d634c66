import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { approvalPolicySchema, MAX_EXPIRY_MS } from '../../common/src/approvals';
import { ControlPublisher, ControlState, ControlSubscriber, type ApprovalOutcome, type ControlMessage } from '../../common/src/control';
import type { Principal } from '../../common/src/identity';
import { InMemoryKeyStore, Keyring } from '../../common/src/integrity';
import { MemoryEventLog, MemoryLogStorage } from '../../common/src/log';
import { ApprovalGate } from './approval-gate';

/**
 * The gateway's ask-and-retry check over the control channel for real (log twin, signed messages,
 * subscriber): an approval releases one retry, also across a gateway restart, where only the
 * control channel remembers.
 */

const logger = pino({ level: 'silent' });
const ISS = 'https://idp.example.test';
const DIGEST = 'a'.repeat(64);
const policy = approvalPolicySchema.parse({ rules: [{ id: 'customer-lookup', match: { keywords: ['customer record'] }, approverGroups: ['secops'], mode: 'ask_and_retry' }] });
const caller: Principal = { subject: 'agent-7', issuer: ISS, groups: ['developers'], kind: 'agent', expiresAt: 2e9 };

const resolution = (approvalId: string, outcome: ApprovalOutcome, over: Partial<Extract<ControlMessage, { type: 'approval.resolved' }>> = {}): ControlMessage => ({
  type: 'approval.resolved',
  approvalId,
  outcome,
  requestDigest: DIGEST,
  reason: outcome === 'approved' ? 'ticket CS-12' : null,
  by: outcome === 'approved' ? ['alice'] : [],
  requester: { issuer: ISS, subject: 'agent-7' },
  mode: 'ask_and_retry',
  eventId: `ev-${outcome}-${approvalId}`,
  atUs: Date.now() * 1000,
  ...over,
});

describe('ApprovalGate.checkRetry', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  async function channel() {
    const log = new MemoryEventLog({ storage: new MemoryLogStorage(3) });
    const keys = await Keyring.open(new InMemoryKeyStore());
    await keys.rotate();
    cleanup.push(() => log.close());
    /** A gateway (re)started now: its ControlState rebuilt from the control log, a fresh gate. */
    const gateway = async () => {
      const state = new ControlState();
      const sub = new ControlSubscriber({ log, group: `gw-${Math.random()}`, trust: async () => keys.jwks(), onMessage: (m) => state.apply(m), logger, pollWaitMs: 20 });
      await sub.start();
      cleanup.push(() => sub.stop());
      return { state, gate: new ApprovalGate(policy, state) };
    };
    return { publisher: new ControlPublisher(log, keys), gateway };
  }

  it('a restarted gateway refuses an approval the processor has marked released (approval_already_released)', async () => {
    const { publisher, gateway } = await channel();
    await publisher.publish(resolution('apr_1', 'approved'));
    const first = await gateway();
    expect(first.gate.checkRetry('apr_1', DIGEST, caller)).toMatchObject({ ok: true });
    // Before the marker: this gateway's own memory refuses a second use.
    expect(first.gate.checkRetry('apr_1', DIGEST, caller)).toMatchObject({ ok: false, code: 'approval_already_released' });

    // The approvals processor folds the gateway's approval.released and publishes the marker.
    await publisher.publish(resolution('apr_1', 'released'));
    await expect.poll(() => first.state.resolution('apr_1')?.outcome, { timeout: 5000 }).toBe('released');

    const restarted = await gateway();
    expect(restarted.state.resolution('apr_1')?.outcome).toBe('released');
    expect(restarted.gate.checkRetry('apr_1', DIGEST, caller)).toMatchObject({ ok: false, code: 'approval_already_released' });
    // Also when an 'approved' was published again after the marker (a retried publish).
    await publisher.publish(resolution('apr_1', 'approved'));
    const again = await gateway();
    expect(again.gate.checkRetry('apr_1', DIGEST, caller)).toMatchObject({ ok: false, code: 'approval_already_released' });
  });

  it('the marker is checked before the caller and the digest; a held approval stays a mode mismatch', async () => {
    const { publisher, gateway } = await channel();
    await publisher.publish(resolution('apr_r', 'approved'));
    await publisher.publish(resolution('apr_r', 'released'));
    await publisher.publish(resolution('apr_h', 'approved', { mode: 'hold' }));
    await publisher.publish(resolution('apr_h', 'released', { mode: 'hold' }));
    const { gate } = await gateway();
    expect(gate.checkRetry('apr_r', 'b'.repeat(64), { ...caller, subject: 'agent-8' })).toMatchObject({ ok: false, code: 'approval_already_released' });
    expect(gate.checkRetry('apr_h', DIGEST, caller)).toMatchObject({ ok: false, code: 'approval_mode_mismatch' });
  });

  it('an approval not used within the longest release window is refused as expired, even without the expiry message', () => {
    const state = new ControlState();
    const now = Date.now();
    state.apply(resolution('apr_old', 'approved', { atUs: (now - MAX_EXPIRY_MS) * 1000 }));
    state.apply(resolution('apr_new', 'approved', { atUs: (now - MAX_EXPIRY_MS + 60_000) * 1000 }));
    const gate = new ApprovalGate(policy, state, () => now);
    expect(gate.checkRetry('apr_old', DIGEST, caller)).toMatchObject({ ok: false, code: 'approval_expired' });
    expect(gate.checkRetry('apr_new', DIGEST, caller)).toMatchObject({ ok: true });
  });

  it("an approved retry whose approval's release window ended is refused: the processor's 'expired' replaces 'approved'", () => {
    const state = new ControlState();
    const gate = new ApprovalGate(policy, state);
    state.apply(resolution('apr_x', 'approved'));
    state.apply(resolution('apr_x', 'expired', { reason: 'approved but not used within the release window' }));
    expect(gate.checkRetry('apr_x', DIGEST, caller)).toMatchObject({ ok: false, code: 'approval_expired' });
  });

  it('retryNotForwarded: a retry whose admission could not be recorded leaves the approval usable once more', () => {
    const state = new ControlState();
    state.apply(resolution('apr_2', 'approved'));
    const gate = new ApprovalGate(policy, state);
    expect(gate.checkRetry('apr_2', DIGEST, caller)).toMatchObject({ ok: true });
    gate.retryNotForwarded('apr_2');
    expect(gate.checkRetry('apr_2', DIGEST, caller)).toMatchObject({ ok: true });
    expect(gate.checkRetry('apr_2', DIGEST, caller)).toMatchObject({ ok: false, code: 'approval_already_released' });
    // Once the marker says released, nothing makes it usable again.
    state.apply(resolution('apr_2', 'released'));
    gate.retryNotForwarded('apr_2');
    expect(gate.checkRetry('apr_2', DIGEST, caller)).toMatchObject({ ok: false, code: 'approval_already_released' });
  });
});
