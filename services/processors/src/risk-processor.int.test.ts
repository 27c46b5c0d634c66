/**
 * The risk processor with real parts: an in-memory evidence log (same semantics as the embedded log),
 * real signing emitters (a "gateway" producer and the processor's own), and a separate control log
 * read by a ControlSubscriber into a ControlState, as a gateway does. Repeated denials cross the
 * suspension threshold; the identity must be suspended once, at the "gateway" within a second, and
 * stay suspended once across restarts and failures.
 */
import { mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ControlPublisher, ControlState, ControlSubscriber, type ControlMessage } from '../../common/src/control';
import { checkpointFile, EvidenceEmitter } from '../../common/src/evidence/emitter';
import { decodeEvent, type AnyAttestEvent } from '../../common/src/events';
import { SAMPLE_PARTS } from '../../common/src/events/fixtures';
import { InMemoryKeyStore, Keyring } from '../../common/src/integrity';
import { LogError, MemoryEventLog } from '../../common/src/log';
import { RiskProcessor } from './risk-processor';
import { FileSnapshotStore, type SnapshotOptions } from './snapshot-store';
import type { IdentityState } from './risk/state';
import { onlySignals } from './risk/testing';
import { capturingLogger } from './test-logger';

const logger = pino({ level: 'silent' });
const AGENT = SAMPLE_PARTS['gateway.request.blocked'].actor;
const policy = onlySignals({ repeatedDenials: { threshold: 3 } }, { suspendAt: { enabled: true, signals: ['repeated-denials'], score: null } });

interface Rig {
  log: MemoryEventLog;
  controlLog: MemoryEventLog;
  keyring: Keyring;
  gateway: EvidenceEmitter;
  state: ControlState;
  messages: { msg: ControlMessage; at: number }[];
  subscriber: ControlSubscriber;
  dir: string;
  processors: RiskProcessor[];
  emitters: EvidenceEmitter[];
}

let rig: Rig | undefined;

async function setup(): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'attest-risk-'));
  const log = new MemoryEventLog({ partitions: 4 });
  const controlLog = new MemoryEventLog({ partitions: 1 });
  const keyring = await Keyring.open(new InMemoryKeyStore());
  await keyring.rotate();
  const gateway = await EvidenceEmitter.open({ log, keyring, producerId: 'gateway-test', tenantId: 'acme', checkpoints: checkpointFile(dir, 'gateway-test'), logger });
  const state = new ControlState();
  const messages: Rig['messages'] = [];
  const subscriber = new ControlSubscriber({
    log: controlLog,
    group: 'gateway-test',
    trust: async () => keyring.jwks(),
    onMessage: (m) => {
      state.apply(m);
      messages.push({ msg: m, at: performance.now() });
    },
    logger,
    pollWaitMs: 50,
  });
  await subscriber.start();
  rig = { log, controlLog, keyring, gateway, state, messages, subscriber, dir, processors: [], emitters: [gateway] };
  return rig;
}

async function processor(r: Rig, extra: Partial<ConstructorParameters<typeof RiskProcessor>[0]> = {}): Promise<RiskProcessor> {
  const emitter = await EvidenceEmitter.open({ log: r.log, keyring: r.keyring, producerId: 'risk-test', tenantId: 'acme', checkpoints: checkpointFile(r.dir, 'risk-test'), logger });
  r.emitters.push(emitter);
  const p = new RiskProcessor({
    log: r.log,
    emitter,
    publisher: new ControlPublisher(r.controlLog, r.keyring),
    policy,
    logger,
    tickMs: 200,
    retry: { initialMs: 20, maxMs: 100 },
    ...extra,
  });
  r.processors.push(p);
  return p;
}

let n = 0;
/** A gateway refusing the agent's request (a denial), durably on the log. */
async function deny(r: Rig, session = 'sess-1', subject?: string): Promise<void> {
  n++;
  const { tenantId: _t, ...parts } = SAMPLE_PARTS['gateway.request.blocked'];
  const actor = subject === undefined ? parts.actor : { ...parts.actor, subject };
  await r.gateway.emit([r.gateway.build('gateway.request.blocked', { ...parts, actor, correlation: { sessionId: session, requestId: `req-${n}`, upstreamRequestId: null } })], session);
}

async function events(log: MemoryEventLog): Promise<AnyAttestEvent[]> {
  const c = await log.consumer(`read-${Math.random().toString(36).slice(2)}`, { startFrom: 'earliest' });
  const out: AnyAttestEvent[] = [];
  for (;;) {
    const batch = await c.poll(10_000, 20);
    if (batch.length === 0) break;
    for (const x of batch) out.push(decodeEvent(x.value).event as AnyAttestEvent);
  }
  await c.close();
  return out;
}

const ofType = (evs: AnyAttestEvent[], type: string) => evs.filter((e) => e.metadata.type === type);
const suspendedNow = (r: Rig) => r.state.suspension(AGENT.issuer, AGENT.subject, Date.now() * 1000);
const suspendMessages = (r: Rig) => r.messages.filter((m) => m.msg.type === 'identity.suspended');
const committed = (r: Rig, group = 'risk') => (r.log.storage.groups.get(group) ?? []).reduce((a, b) => a + b, 0);
const ends = async (r: Rig) => (await r.log.endOffsets()).reduce((a, b) => a + b, 0);

afterEach(async () => {
  const r = rig;
  rig = undefined;
  if (r === undefined) return;
  r.log.injectFailure(undefined);
  for (const p of r.processors) await p.stop();
  await r.subscriber.stop();
  for (const e of r.emitters) await e.close();
  await r.log.close();
  await r.controlLog.close();
  rmSync(r.dir, { recursive: true, force: true });
});

describe('risk processor', () => {
  it('repeated denials suspend the identity once: evidence on the log, the gateway state within a second, once across a restart', async () => {
    const r = await setup();
    const p1 = await processor(r);
    await p1.start();

    await deny(r);
    await deny(r);
    await p1.idle();
    expect(suspendedNow(r)).toBeUndefined();
    expect(p1.stats.suspensions).toBe(0);

    // The crossing denial: from its durable append to the gateway's ControlState.
    const before = performance.now();
    await deny(r);
    const appended = performance.now();
    await expect.poll(() => suspendedNow(r), { timeout: 2_000, interval: 2 }).toBeDefined();
    const applied = suspendMessages(r)[0]!.at;
    const ms = applied - appended;
    console.log(`risk: crossing denial appended → ControlState suspended in ${ms.toFixed(1)} ms (${(applied - before).toFixed(1)} ms from the emit call)`);
    expect(ms).toBeLessThan(1_000);

    // More denials while suspended: no second suspension.
    await deny(r);
    await deny(r, 'sess-2');
    await p1.idle();
    let evs = await events(r.log);
    const suspended = ofType(evs, 'identity.suspended');
    expect(suspended).toHaveLength(1);
    expect(suspended[0]!.metadata.producer).toBe('risk-test');
    expect(suspended[0]!.payload).toMatchObject({ principal: { issuer: AGENT.issuer, subject: AGENT.subject }, reason: 'risk:repeated-denials' });
    expect(suspendedNow(r)).toMatchObject({ reason: 'risk:repeated-denials', eventId: suspended[0]!.metadata.eventId });
    expect(suspendMessages(r)).toHaveLength(1);
    expect(ofType(evs, 'finding.opened')).toHaveLength(1);
    expect(p1.stats).toMatchObject({ eventsSeen: 5, suspensions: 1, controlPublished: 1, undecodable: 0, failedRecords: 0 });
    expect(p1.stats.ownOutputsRead).toBe(p1.stats.outputsEmitted);
    expect(committed(r)).toBe(await ends(r));

    // Restart: a new instance on the same log rebuilds the book and does not suspend again.
    await p1.stop();
    const p2 = await processor(r);
    await p2.start();
    expect(p2.stats.rebuilds).toBe(1);
    expect(p2.book.get('acme', { issuer: AGENT.issuer, subject: AGENT.subject })?.suspension?.eventId).toBe(suspended[0]!.metadata.eventId);
    await deny(r);
    await p2.idle();
    evs = await events(r.log);
    expect(ofType(evs, 'identity.suspended')).toHaveLength(1);
    expect(suspendMessages(r)).toHaveLength(1);
    expect(p2.stats).toMatchObject({ eventsSeen: 1, suspensions: 0, controlRepublished: 0 });
  });

  it('a failure between the durable outputs and the commit: rebuilt, suspended once, the control message republished', async () => {
    const r = await setup();
    let failures = 0;
    const p: RiskProcessor = await processor(r, {
      beforeCommit: () => {
        if (p.stats.controlPublished > 0 && failures === 0) {
          failures++;
          throw new Error('crash before commit');
        }
      },
    });
    await p.start();
    for (let i = 0; i < 3; i++) await deny(r);
    await expect.poll(() => p.stats.rebuilds, { timeout: 3_000 }).toBe(2);
    await p.idle();
    const evs = await events(r.log);
    expect(ofType(evs, 'identity.suspended')).toHaveLength(1);
    expect(p.stats.controlRepublished).toBe(1);
    // Published twice, one decision: same event id.
    expect(new Set(suspendMessages(r).map((m) => m.msg.eventId)).size).toBe(1);
    await expect.poll(() => suspendMessages(r).length).toBe(2);
    expect(suspendedNow(r)).toBeDefined();
    expect(failures).toBe(1);
    expect(committed(r)).toBe(await ends(r));
  });

  it('emit failure: nothing committed, nothing published; after the log heals, the suspension lands once and is enforced', async () => {
    const r = await setup();
    for (let i = 0; i < 3; i++) await deny(r);
    const p = await processor(r);
    r.log.injectFailure(new LogError('log_unavailable', 'injected outage', { retriable: true }));
    await p.start();
    await expect.poll(() => p.stats.retries, { timeout: 3_000 }).toBeGreaterThanOrEqual(3);
    expect(committed(r)).toBe(0);
    // Its own outputs are in doubt: no rebuild reads the log until they are appended again.
    expect(p.stats.rebuilds).toBe(1);
    expect(suspendedNow(r)).toBeUndefined();
    expect(r.messages).toHaveLength(0);

    r.log.injectFailure(undefined);
    await expect.poll(() => suspendedNow(r), { timeout: 3_000 }).toBeDefined();
    await p.idle();
    const evs = await events(r.log);
    expect(ofType(evs, 'identity.suspended')).toHaveLength(1);
    expect(suspendMessages(r)).toHaveLength(1);
    expect(committed(r)).toBe(await ends(r));
  });

  it('a timed suspension lapses on the tick: identity.restored evidence and control message', async () => {
    const r = await setup();
    const timed = onlySignals({ repeatedDenials: { threshold: 3 } }, { suspendAt: { enabled: true, signals: ['repeated-denials'], score: null, durationMs: 300 } });
    const p = await processor(r, { policy: timed, tickMs: 50 });
    await p.start();
    for (let i = 0; i < 3; i++) await deny(r);
    await expect.poll(() => r.messages.map((m) => m.msg.type), { timeout: 3_000 }).toEqual(['identity.suspended', 'identity.restored']);
    await p.idle();
    const evs = await events(r.log);
    const restored = ofType(evs, 'identity.restored');
    expect(restored).toHaveLength(1);
    expect(restored[0]!.payload).toMatchObject({ automatic: true, reason: 'risk:suspension-lapsed', suspendedEventId: ofType(evs, 'identity.suspended')[0]!.metadata.eventId });
    expect(p.stats).toMatchObject({ suspensions: 1, restores: 1 });
    expect(suspendedNow(r)).toBeUndefined();
  });
});

/** Warning lines a processor logs (JSON), for the snapshot refusals. */

const byKey = (ids: readonly IdentityState[]) => [...ids].sort((a, b) => (a.key < b.key ? -1 : 1));

describe('risk processor state snapshots', () => {
  const snapshotsOf = (r: Rig, extra: Partial<SnapshotOptions> = {}): SnapshotOptions => ({
    store: new FileSnapshotStore(join(r.dir, 'snapshots')),
    logId: 'memory:risk-test',
    ...extra,
  });

  it('a denial window begun before the snapshot still trips after a restart from it, which replays only the records committed after it; the book equals a full replay', async () => {
    const r = await setup();
    const snapshots = snapshotsOf(r);
    const p1 = await processor(r, { snapshots });
    await p1.start();
    expect(p1.stats.fromSnapshot).toBe(false);
    await deny(r);
    await deny(r);
    await p1.idle();
    await p1.stop();
    expect(p1.stats.snapshotsSaved).toBe(1);
    const at = committed(r);

    // A run without snapshots commits more (other agents' denials): a crash after a snapshot looks like this.
    const p2 = await processor(r);
    await p2.start();
    for (let i = 0; i < 7; i++) await deny(r, `other-${i}`, `agent:other-${i}`);
    await p2.idle();
    await p2.stop();
    const later = committed(r);
    expect(later).toBeGreaterThan(at);

    const p3 = await processor(r, { snapshots });
    await p3.start();
    expect(p3.stats).toMatchObject({ fromSnapshot: true, replayRead: later - at, snapshotsRejected: 0 });
    // The third denial of the agent, two of them before the snapshot: suspended, once.
    await deny(r);
    await expect.poll(() => suspendedNow(r), { timeout: 2_000 }).toBeDefined();
    await p3.idle();
    expect(p3.stats.suspensions).toBe(1);
    const live = byKey(p3.book.toState().identities);
    await p3.stop();

    // A full replay of the same log gives the same book.
    const p4 = await processor(r);
    await p4.start();
    expect(p4.stats.fromSnapshot).toBe(false);
    expect(p4.stats.replayRead).toBe(await ends(r));
    expect(byKey(p4.book.toState().identities)).toEqual(live);
    expect(ofType(await events(r.log), 'identity.suspended')).toHaveLength(1);
  });

  it('a restart right after a clean stop reads nothing below the committed positions', async () => {
    const r = await setup();
    const snapshots = snapshotsOf(r);
    const p1 = await processor(r, { snapshots });
    await p1.start();
    for (let i = 0; i < 5; i++) await deny(r, `s-${i}`, `agent:a-${i}`);
    await p1.idle();
    await p1.stop();
    const p2 = await processor(r, { snapshots });
    await p2.start();
    expect(p2.stats).toMatchObject({ fromSnapshot: true, replayRead: 0 });
    expect(byKey(p2.book.toState().identities)).toEqual(byKey(p1.book.toState().identities));
  });

  it('takes snapshots on the record cadence', async () => {
    const r = await setup();
    const p1 = await processor(r, { snapshots: snapshotsOf(r, { everyRecords: 2 }) });
    await p1.start();
    for (let i = 0; i < 4; i++) {
      await deny(r, `s-${i}`, `agent:c-${i}`);
      await p1.idle();
    }
    await expect.poll(() => p1.stats.snapshotsSaved).toBeGreaterThanOrEqual(1);
  });

  it.each([
    ['snapshot_corrupt', (file: string) => writeFileSync(file, readFileSync(file).map((b, i, a) => (i === a.length - 3 ? b ^ 1 : b)))],
    ['snapshot_corrupt', (file: string) => writeFileSync(file, readFileSync(file).subarray(0, 100))],
    ['snapshot_version_unknown', (file: string) => writeFileSync(file, readFileSync(file).toString('utf8').replace(/^ATTEST-SNAPSHOT 1 /, 'ATTEST-SNAPSHOT 9 '))],
  ] as const)('a damaged snapshot (%s) is ignored with a warning, and the book is rebuilt by the full replay', async (reason, damage) => {
    const r = await setup();
    const snapshots = snapshotsOf(r);
    const p1 = await processor(r, { snapshots });
    await p1.start();
    await deny(r);
    await deny(r);
    await p1.idle();
    await p1.stop();
    const dir = join(r.dir, 'snapshots');
    const [file] = readdirSync(dir);
    damage(join(dir, file!));

    const { logger: warnings, lines } = capturingLogger();
    const p2 = await processor(r, { snapshots, logger: warnings });
    await p2.start();
    expect(p2.stats).toMatchObject({ fromSnapshot: false, snapshotsRejected: 1, replayRead: await ends(r) });
    expect(lines.filter((l) => l['reason'] === reason)).toHaveLength(1);
    await deny(r);
    await expect.poll(() => suspendedNow(r), { timeout: 2_000 }).toBeDefined();
  });

  it('a snapshot of another log, or taken under another policy, is refused; so is one whose anchor record differs', async () => {
    const r = await setup();
    const p1 = await processor(r, { snapshots: snapshotsOf(r, { logId: 'file:/elsewhere' }) });
    await p1.start();
    await deny(r);
    await deny(r);
    await p1.idle();
    await p1.stop();
    // Moved to where this log's snapshot would be: the file names another log inside.
    const store = new FileSnapshotStore(join(r.dir, 'snapshots'));
    renameSync(store.fileOf('risk', 'file:/elsewhere'), store.fileOf('risk', 'memory:risk-test'));
    const { logger: w1, lines: l1 } = capturingLogger();
    const p2 = await processor(r, { snapshots: snapshotsOf(r), logger: w1 });
    await p2.start();
    expect(p2.stats.fromSnapshot).toBe(false);
    expect(l1.map((l) => l['reason'])).toContain('snapshot_foreign_log');
    await p2.stop();
    // p2 saved a snapshot of this log at its stop.
    const snap = readFileSync(store.fileOf('risk', 'memory:risk-test'));

    const { logger: w2, lines: l2 } = capturingLogger();
    const other = onlySignals({ repeatedDenials: { threshold: 4 } }, { suspendAt: { enabled: true, signals: ['repeated-denials'], score: null } });
    const p3 = await processor(r, { snapshots: snapshotsOf(r), logger: w2, policy: other });
    await p3.start();
    expect(p3.stats.fromSnapshot).toBe(false);
    expect(l2.map((l) => l['reason'])).toContain('snapshot_config_changed');
    await p3.stop();

    // Same place, same positions, other records: the anchors do not match.
    const r2 = r;
    const other2 = new MemoryEventLog({ partitions: 4 });
    const k = await Keyring.open(new InMemoryKeyStore());
    await k.rotate();
    const gw = await EvidenceEmitter.open({ log: other2, keyring: k, producerId: 'gateway-x', tenantId: 'acme', checkpoints: checkpointFile(r2.dir, 'gateway-x'), logger });
    const rr = { ...r2, log: other2, gateway: gw, processors: [] as RiskProcessor[], emitters: [gw] };
    for (let i = 0; i < 30; i++) await deny(rr, `x-${i % 4}`, `agent:x-${i}`);
    // The group is committed past the snapshot on the other log too.
    const c = await other2.consumer('risk');
    for (let got = 0; got < (await other2.endOffsets()).reduce((a, b) => a + b, 0); ) got += (await c.poll(1000, 50)).length;
    await c.commit();
    await c.close();
    writeFileSync(store.fileOf('risk', 'memory:risk-test'), snap);
    const { logger: w3, lines: l3 } = capturingLogger();
    const p4 = await processor(rr, { snapshots: snapshotsOf(r), logger: w3 });
    await p4.start();
    expect(p4.stats.fromSnapshot).toBe(false);
    expect(l3.map((l) => l['reason'])).toContain('snapshot_anchor_mismatch');
    await p4.stop();
    for (const e of rr.emitters) await e.close();
    for (const e of rr.processors) await e.stop();
    await other2.close();
  });
});
