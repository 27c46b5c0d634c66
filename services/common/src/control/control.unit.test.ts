import { CompactSign } from 'jose';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { InMemoryKeyStore, Keyring } from '../integrity';
import { MemoryEventLog, MemoryLogStorage } from '../log';
import { partitionForKey } from '../log/record';
import { controlKey, ControlPublisher, ControlState, ControlSubscriber, type ApprovalOutcome, type ControlMessage } from '.';

const logger = pino({ level: 'silent' });
const digest = 'a'.repeat(64);

async function keyring(): Promise<Keyring> {
  const k = await Keyring.open(new InMemoryKeyStore());
  await k.rotate();
  return k;
}

const suspend = (subject: string, atUs: number, untilUs: number | null = null): ControlMessage => ({
  type: 'identity.suspended',
  issuer: 'https://idp',
  subject,
  reason: 'risk:exfiltration',
  untilUs,
  eventId: `ev-s-${subject}-${atUs}`,
  atUs,
});
const restore = (subject: string, atUs: number): ControlMessage => ({ type: 'identity.restored', issuer: 'https://idp', subject, reason: 'admin:cleared', eventId: `ev-r-${subject}`, atUs });
const resolved = (approvalId: string, outcome: ApprovalOutcome, mode: 'hold' | 'ask_and_retry' = 'hold'): ControlMessage => ({
  type: 'approval.resolved',
  approvalId,
  outcome,
  requestDigest: digest,
  reason: outcome === 'released' ? null : 'ok',
  by: outcome === 'released' ? [] : ['alice'],
  requester: { issuer: 'https://idp', subject: 'svc' },
  mode,
  eventId: `ev-${outcome}-${approvalId}`,
  atUs: 1,
});

describe('control channel', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  async function setup(storage = new MemoryLogStorage(2)) {
    const log = new MemoryEventLog({ storage });
    const keys = await keyring();
    cleanup.push(() => log.close());
    return { log, keys, publisher: new ControlPublisher(log, keys) };
  }

  async function subscribe(log: MemoryEventLog, keys: Keyring, group = `gw-${Math.random()}`) {
    const state = new ControlState();
    const sub = new ControlSubscriber({ log, group, trust: async () => keys.jwks(), onMessage: (m) => state.apply(m), logger, pollWaitMs: 50 });
    await sub.start();
    cleanup.push(() => sub.stop());
    return { state, sub };
  }

  it('a subscriber that starts later has every earlier message applied before start() resolves', async () => {
    const { log, keys, publisher } = await setup();
    await publisher.publish(suspend('svc-1', 10));
    await publisher.publish(suspend('svc-2', 11));
    await publisher.publish(restore('svc-2', 12));
    const { state } = await subscribe(log, keys);
    expect(state.suspension('https://idp', 'svc-1', 100)?.reason).toBe('risk:exfiltration');
    expect(state.suspension('https://idp', 'svc-2', 100)).toBeUndefined();
  });

  it('a running subscriber applies new messages promptly', async () => {
    const { log, keys, publisher } = await setup();
    const { state } = await subscribe(log, keys);
    const t0 = performance.now();
    await publisher.publish(suspend('svc-9', 20));
    while (!state.suspension('https://idp', 'svc-9', 21)) {
      if (performance.now() - t0 > 10_000) throw new Error('not applied within 10 s');
      await new Promise((r) => setTimeout(r, 5));
    }
  });

  it('a lapsed suspension is not in force; an older restore does not lift a newer suspension', () => {
    const state = new ControlState();
    state.apply(suspend('a', 10, 50));
    expect(state.suspension('https://idp', 'a', 49)).toBeDefined();
    expect(state.suspension('https://idp', 'a', 50)).toBeUndefined();
    state.apply(suspend('b', 30));
    state.apply(restore('b', 20));
    expect(state.suspension('https://idp', 'b', 100)).toBeDefined();
  });

  it('drops messages signed by an untrusted key or not signed at all', async () => {
    const { log, keys } = await setup();
    const { state, sub } = await subscribe(log, keys);
    const intruder = await keyring();
    await new ControlPublisher(log, intruder).publish(suspend('victim', 1));
    await log.append([{ key: 'x', value: new TextEncoder().encode(JSON.stringify(resolved('ap1', 'approved'))) }]);
    // Right key, wrong typ: a JWS made for something else is not a control message.
    const k = keys.signingKey();
    const other = await new CompactSign(new TextEncoder().encode(JSON.stringify(resolved('ap2', 'approved'))))
      .setProtectedHeader({ alg: 'EdDSA', kid: k.kid })
      .sign(k.privateKey);
    await log.append([{ key: 'y', value: new TextEncoder().encode(other) }]);
    await new ControlPublisher(log, keys).publish(resolved('ap3', 'approved'));
    await expect.poll(() => sub.counts.applied + sub.counts.rejected, { timeout: 10_000 }).toBe(4);
    expect(sub.counts.rejected).toBe(3);
    expect(state.suspension('https://idp', 'victim', 2)).toBeUndefined();
    expect(state.resolution('ap1')).toBeUndefined();
    expect(state.resolution('ap2')).toBeUndefined();
    expect(state.resolution('ap3')?.outcome).toBe('approved');
  });

  it('trusts a key published after the subscriber started (refresh on unknown kid)', async () => {
    const { log, keys } = await setup();
    const later = await keyring();
    let trusted = keys.jwks().keys;
    const state = new ControlState();
    const sub = new ControlSubscriber({ log, group: 'g', trust: async () => ({ keys: trusted }), onMessage: (m) => state.apply(m), logger, pollWaitMs: 50 });
    await sub.start();
    cleanup.push(() => sub.stop());
    trusted = [...trusted, ...later.jwks().keys];
    await new ControlPublisher(log, later).publish(suspend('s', 1));
    await expect.poll(() => state.suspension('https://idp', 's', 2), { timeout: 10_000 }).toBeDefined();
  });

  it('a rejection is final (a later approval changes nothing), and waiters wake on the first resolution', async () => {
    const state = new ControlState();
    const ac = new AbortController();
    const waiting = state.waitFor('ap', ac.signal);
    expect(state.waitingCount()).toBe(1);
    state.apply(resolved('ap', 'rejected'));
    state.apply(resolved('ap', 'approved'));
    await expect(waiting).resolves.toMatchObject({ outcome: 'rejected' });
    expect(state.resolution('ap')?.outcome).toBe('rejected');
    expect(state.waitingCount()).toBe(0);
  });

  it("a final outcome replaces 'approved' (released, expired, cancelled); nothing replaces a final one", () => {
    const state = new ControlState();
    state.apply(resolved('r', 'approved', 'ask_and_retry'));
    state.apply(resolved('r', 'released', 'ask_and_retry'));
    expect(state.resolution('r')).toMatchObject({ outcome: 'released', eventId: 'ev-released-r' });
    // A re-published approval (a retried publish) does not undo the release, nor does a later expiry.
    state.apply(resolved('r', 'approved', 'ask_and_retry'));
    state.apply(resolved('r', 'expired', 'ask_and_retry'));
    expect(state.resolution('r')?.outcome).toBe('released');

    // The marker first (it has a key, and so maybe a partition, of its own): the approval after it changes nothing.
    state.apply(resolved('m', 'released', 'ask_and_retry'));
    state.apply(resolved('m', 'approved', 'ask_and_retry'));
    expect(state.resolution('m')?.outcome).toBe('released');

    for (const end of ['expired', 'cancelled'] as const) {
      state.apply(resolved(`a-${end}`, 'approved'));
      state.apply(resolved(`a-${end}`, end));
      expect(state.resolution(`a-${end}`)?.outcome).toBe(end);
    }
    state.apply(resolved('x', 'rejected'));
    state.apply(resolved('x', 'released'));
    expect(state.resolution('x')?.outcome).toBe('rejected');
  });

  it('a held request wakes on the approval; the release marker that follows disturbs no waiter', async () => {
    const state = new ControlState();
    const ac = new AbortController();
    const held = state.waitFor('h', ac.signal);
    state.apply(resolved('h', 'approved'));
    await expect(held).resolves.toMatchObject({ outcome: 'approved' });
    expect(state.waitingCount()).toBe(0);
    const other = state.waitFor('h2', ac.signal);
    state.apply(resolved('h', 'released'));
    expect(state.resolution('h')?.outcome).toBe('released');
    expect(state.waitingCount()).toBe(1);
    ac.abort('done');
    await expect(other).rejects.toBe('done');
  });

  it('a release marker is keyed apart from the approval, and a restarted subscriber rebuilds it in any order', async () => {
    expect(controlKey(resolved('k', 'approved'))).toBe('approval:k');
    expect(controlKey(resolved('k', 'released'))).toBe('approval-released:k');
    const { log, keys, publisher } = await setup(new MemoryLogStorage(3));
    const ids = ['a', 'b', 'p4', 'apr-2'];
    for (const id of ids) {
      await publisher.publish(resolved(id, 'approved', 'ask_and_retry'));
      await publisher.publish(resolved(id, 'released', 'ask_and_retry'));
      // A late duplicate of the approval, as a retried publish could append.
      await publisher.publish(resolved(id, 'approved', 'ask_and_retry'));
    }
    // The marker in a partition before its approval's for some, after it for others.
    const partition = (key: string) => partitionForKey(new TextEncoder().encode(key), 3);
    const order = ids.map((id) => Math.sign(partition(`approval-released:${id}`) - partition(`approval:${id}`)));
    expect(order).toContain(-1);
    expect(order).toContain(1);
    const { state } = await subscribe(log, keys);
    for (const id of ids) expect(state.resolution(id)?.outcome).toBe('released');
  });

  it('an aborted wait rejects and leaves nothing behind', async () => {
    const state = new ControlState();
    const ac = new AbortController();
    const waiting = state.waitFor('ap', ac.signal);
    ac.abort(new Error('caller went away'));
    await expect(waiting).rejects.toThrow('caller went away');
    expect(state.waitingCount()).toBe(0);
  });

  it('bounds the resolutions it keeps', () => {
    const state = new ControlState(3);
    for (const id of ['a', 'b', 'c', 'd']) state.apply(resolved(id, 'approved'));
    expect(state.resolution('a')).toBeUndefined();
    expect(state.resolution('d')).toBeDefined();
  });

  it('refuses to publish a malformed message', async () => {
    const { publisher } = await setup();
    await expect(publisher.publish({ ...resolved('x', 'approved'), requestDigest: 'nothex' } as ControlMessage)).rejects.toMatchObject({ code: 'control_invalid_message' });
  });
});
