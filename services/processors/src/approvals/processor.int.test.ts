import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { decide, evolve, toEvidence, type ApprovalCommand } from '../../../common/src/approvals';
import { ApprovalService } from '../../../common/src/approvals/service';
import { requestCommand, rule } from '../../../common/src/approvals/testing';
import { ControlPublisher, ControlState, ControlSubscriber } from '../../../common/src/control';
import { decodeEvent, type AnyAttestEvent, type UnchainedEvent } from '../../../common/src/events';
import { EvidenceEmitter, memoryCheckpoints, systemActor } from '../../../common/src/evidence/emitter';
import { InMemoryKeyStore, Keyring } from '../../../common/src/integrity';
import { LogError, MemoryEventLog, MemoryLogStorage } from '../../../common/src/log';
import { WebhookNotifier } from './notifier';
import { ApprovalsProcessor } from './processor';

const logger = pino({ level: 'silent' });
const CADENCE = { everyEvents: 100_000, everyMs: 3_600_000 };

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('ApprovalsProcessor (real log, emitters, service, control channel and webhook)', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  async function setup() {
    const log = new MemoryEventLog({ storage: new MemoryLogStorage(4) });
    const controlLog = new MemoryEventLog({ storage: new MemoryLogStorage(2) });
    cleanup.push(() => log.close(), () => controlLog.close());
    const keys = await Keyring.open(new InMemoryKeyStore());
    await keys.rotate();
    const open = async (producerId: string) => {
      const e = await EvidenceEmitter.open({
        log,
        keyring: keys,
        producerId,
        tenantId: 'acme',
        checkpoints: memoryCheckpoints(),
        logger,
        cadence: CADENCE,
      });
      cleanup.push(() => e.close());
      return e;
    };
    const emitter = await open('approvals-1');
    const publisher = new ControlPublisher(controlLog, keys);
    const service = await ApprovalService.start({ log, group: 'approvals-svc-1', emitter, publisher, producerId: 'approvals-1', logger, pollWaitMs: 20 });
    cleanup.push(() => service.stop());

    const control = new ControlState();
    const sub = new ControlSubscriber({ log: controlLog, group: 'gw', trust: async () => keys.jwks(), onMessage: (m) => control.apply(m), logger, pollWaitMs: 20 });
    await sub.start();
    cleanup.push(() => sub.stop());

    // The webhook: a real HTTP server counting POSTs per approval.
    const posts: string[] = [];
    const server: Server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const text = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { text: string }).text;
        posts.push(/approvals\/([^\s]+)/.exec(text)?.[1] ?? '?');
        res.writeHead(200).end('ok');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
    const notifier = new WebhookNotifier({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook/secret`, consoleUrl: 'https://console.test', maxAttempts: 1 });
    cleanup.push(() => notifier.close());

    const startProcessor = async (group = 'approvals-processor') => {
      const p = await ApprovalsProcessor.start({ service, notifier, logger, tickMs: 50, group, pollWaitMs: 20 });
      cleanup.push(() => p.stop());
      return p;
    };

    /** A gateway run: its own emitter (producer id + a new epoch), audit.started first. */
    const gatewayRun = async (producerId = 'gateway-1') => {
      const gw = await open(producerId);
      const start = gw.build('audit.started', {
        actor: systemActor(producerId),
        source: { address: 'local', userAgent: null },
        target: { protocol: 'internal', service: 'attest', resource: 'component/gateway', model: null },
        outcome: { result: 'success', status: null, reason: null },
        correlation: { sessionId: `producer:${producerId}`, requestId: `start:${gw.producer.epoch}`, upstreamRequestId: null },
        payload: { component: 'gateway', softwareVersion: 'test', configDigest: null, previousEpoch: null, previousStopRecorded: true },
      });
      await gw.emit([start], `producer:${producerId}`);
      const request = async (over: Partial<Extract<ApprovalCommand, { type: 'request' }>>) => {
        const r = decide(undefined, requestCommand({ hold: { gatewayId: producerId, instanceId: gw.producer.epoch, holdId: over.approvalId ?? 'h' }, ...over }), Date.now());
        if (!r.ok) throw r.error;
        const ev = r.events[0]!;
        const e = toEvidence(ev, evolve(undefined, ev)!);
        const built = gw.build(e.type, { actor: e.actor!, source: { address: '10.0.0.7', userAgent: null }, target: e.target, outcome: e.outcome, correlation: e.correlation, payload: e.payload } as never);
        await gw.emit([{ ...built, metadata: { ...built.metadata, timeUs: e.timeUs } } as UnchainedEvent], e.correlation.sessionId);
      };
      return { epoch: gw.producer.epoch, request };
    };

    const logEvents = () => log.storage.partitions.flat().map((r) => decodeEvent(r.value).event as AnyAttestEvent);
    return { log, service, control, posts, startProcessor, gatewayRun, logEvents };
  }

  it('expires on time by its own timer, re-armed when a new approval arrives, without polling', async () => {
    const t = await setup();
    const p = await t.startProcessor();
    const gw = await t.gatewayRun();
    await gw.request({ approvalId: 'short', rule: rule({ expiresAfterMs: 300 }) });
    await until(() => t.control.resolution('short') !== undefined && p.counts.expired === 1, 'the expiry resolution');
    expect(t.control.resolution('short')).toMatchObject({ outcome: 'expired' });
    expect(t.service.get('short')).toMatchObject({ status: 'expired', expiredStage: 'pending' });
    expect(t.logEvents().filter((e) => e.metadata.type === 'approval.expired')).toHaveLength(1);
    // One timer run did it (no tick every few ms while waiting; a second only if a timer fired early).
    expect(p.counts.expiryRuns).toBeLessThanOrEqual(2);
    expect(p.counts.expired).toBe(1);

    // An approved approval unused past its release window expires too (stage 'unreleased').
    await gw.request({ approvalId: 'window', rule: rule({ quorum: 1, expiresAfterMs: 60_000 }), releaseWindowMs: 300 });
    await t.service.sync();
    const bob = { subject: 'bob', issuer: 'https://idp.example.test', groups: ['security'], kind: 'human' as const };
    await t.service.execute({ type: 'approve', approvalId: 'window', approver: bob, reason: 'ok' });
    await until(() => t.service.get('window')?.status === 'expired' && p.counts.expired === 2, 'the unreleased expiry');
    expect(t.service.get('window')).toMatchObject({ expiredStage: 'unreleased' });
    expect(p.counts.expiryRuns).toBeLessThanOrEqual(4);
  });

  it('retries an expiry whose evidence cannot be written every tickMs, not in a busy loop', async () => {
    const t = await setup();
    const p = await t.startProcessor();
    const gw = await t.gatewayRun();
    await gw.request({ approvalId: 'stuck', rule: rule({ expiresAfterMs: 100 }) });
    await t.service.sync();
    t.log.injectFailure(new LogError('log_unavailable', 'disk full', { retriable: true }));
    await pause(400);
    // ~300 ms of failing at tickMs = 50: a handful of runs, not thousands.
    expect(p.counts.expiryRuns).toBeGreaterThanOrEqual(2);
    expect(p.counts.expiryRuns).toBeLessThanOrEqual(10);
    expect(t.service.get('stuck')).toMatchObject({ status: 'pending' });
    expect(t.control.resolution('stuck')).toBeUndefined();
    t.log.injectFailure(undefined);
    await until(() => t.control.resolution('stuck') !== undefined, 'the expiry once the log heals');
    expect(t.control.resolution('stuck')).toMatchObject({ outcome: 'expired' });
  });

  it('notifies approvers once per approval, also across a restart, and not for closed approvals', async () => {
    const t = await setup();
    const gw = await t.gatewayRun();
    // Requested and denied before the processor ever ran: nobody is paged for it.
    await gw.request({ approvalId: 'closed-before' });
    await t.service.sync();
    await t.service.execute({ type: 'deny', approvalId: 'closed-before', approver: { subject: 'dave', issuer: 'https://idp.example.test', groups: ['security'], kind: 'human' }, reason: 'no' });
    await gw.request({ approvalId: 'open-before' });

    const p1 = await t.startProcessor();
    await until(() => t.posts.length >= 1, 'the first notification');
    await gw.request({ approvalId: 'a1' });
    await until(() => t.posts.length >= 2, 'the second notification');
    await pause(100);
    expect(t.posts.sort()).toEqual(['a1', 'open-before']);
    expect(p1.counts.notified).toBe(2);
    await p1.stop();

    // Restart with the same group: what was notified is not notified again.
    const p2 = await t.startProcessor();
    await gw.request({ approvalId: 'a2' });
    await until(() => t.posts.length >= 3, 'the notification after the restart');
    await pause(100);
    expect(t.posts.sort()).toEqual(['a1', 'a2', 'open-before']);
    expect(p2.counts.notified).toBe(1);
  });

  it('cancels the holds of an earlier run when a gateway starts a new epoch, and only those', async () => {
    const t = await setup();
    const p = await t.startProcessor();
    const run1 = await t.gatewayRun('gateway-1');
    await run1.request({ approvalId: 'held-1' });
    await run1.request({ approvalId: 'retry-1', rule: rule({ mode: 'ask_and_retry' }) });
    const other = await t.gatewayRun('gateway-2');
    await other.request({ approvalId: 'held-other' });
    await until(() => t.service.get('held-other') !== undefined, 'the requests');

    await pause(5);
    const run2 = await t.gatewayRun('gateway-1');
    expect(run2.epoch).not.toBe(run1.epoch);
    await until(() => t.control.resolution('held-1') !== undefined, 'the cancellation');
    expect(t.control.resolution('held-1')).toMatchObject({ outcome: 'cancelled', reason: 'gateway_restarted' });
    await run2.request({ approvalId: 'held-2' });
    await t.service.sync();
    expect(t.service.all().map((s) => [s.approvalId, s.status])).toEqual([
      ['held-1', 'cancelled'],
      ['retry-1', 'pending'],
      ['held-other', 'pending'],
      ['held-2', 'pending'],
    ]);
    expect(p.counts.holdsCancelled).toBe(1);

    // A processor reading the log from its start (a new group) sees run 1's start again: it must
    // not cancel run 2's hold.
    const fresh = await t.startProcessor('approvals-processor-2');
    await pause(200);
    expect(fresh.counts.holdsCancelled).toBe(0);
    expect(t.service.get('held-2')).toMatchObject({ status: 'pending' });
    expect(t.logEvents().filter((e) => e.metadata.type === 'approval.cancelled')).toHaveLength(1);
  });
});
