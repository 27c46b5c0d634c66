/**
 * Approval book snapshots with real parts: the in-memory log (embedded-log semantics), real signing
 * emitters, the real ApprovalService and the file snapshot store in a temp directory. A pending
 * approval requested before the snapshot must still be decidable after a restart that read only the
 * records after it; a damaged or foreign snapshot must be refused with a warning and the book read
 * from the oldest record.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { decide, evolve, toEvidence } from '../../../common/src/approvals';
import type { ApprovalServiceOptions } from '../../../common/src/approvals/service';
import { bob, carol, requestCommand, rule } from '../../../common/src/approvals/testing';
import { ControlPublisher } from '../../../common/src/control';
import type { UnchainedEvent } from '../../../common/src/events';
import { EvidenceEmitter, memoryCheckpoints } from '../../../common/src/evidence/emitter';
import { InMemoryKeyStore, Keyring } from '../../../common/src/integrity';
import { MemoryEventLog, MemoryLogStorage } from '../../../common/src/log';
import { FileSnapshotStore, type SnapshotOptions } from '../snapshot-store';
import { startApprovalService, type SnapshottedApprovals } from './snapshots';
import { capturingLogger } from '../test-logger';

const silent = pino({ level: 'silent' });
const CADENCE = { everyEvents: 100_000, everyMs: 3_600_000 };


describe('approval book snapshots', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  async function setup(storage = new MemoryLogStorage(4)) {
    const dir = mkdtempSync(join(tmpdir(), 'attest-approvals-snap-'));
    cleanup.push(async () => rmSync(dir, { recursive: true, force: true }));
    const log = new MemoryEventLog({ storage });
    const controlLog = new MemoryEventLog({ storage: new MemoryLogStorage(1) });
    cleanup.push(() => log.close(), () => controlLog.close());
    const keys = await Keyring.open(new InMemoryKeyStore());
    await keys.rotate();
    const open = async (producerId: string) => {
      const e = await EvidenceEmitter.open({ log, keyring: keys, producerId, tenantId: 'acme', checkpoints: memoryCheckpoints(), logger: silent, cadence: CADENCE });
      cleanup.push(() => e.close());
      return e;
    };
    const emitter = await open('approvals-1');
    const gw = await open('gateway-1');
    const publisher = new ControlPublisher(controlLog, keys);
    const snapshots: SnapshotOptions = { store: new FileSnapshotStore(join(dir, 'snapshots')), logId: 'memory:approvals-test' };
    let n = 0;
    const start = async (opts: { snapshots?: SnapshotOptions; logger?: pino.Logger } = {}): Promise<SnapshottedApprovals> => {
      n++;
      const o: ApprovalServiceOptions = { log, group: `approvals-svc-${n}`, emitter, publisher, producerId: 'approvals-1', logger: opts.logger ?? silent, pollWaitMs: 20 };
      const s = await startApprovalService(o, opts.snapshots, opts.logger ?? silent);
      cleanup.push(() => s.service.stop());
      return s;
    };
    /** A gateway's approval request, durably on the log. */
    const request = async (approvalId: string) => {
      const r = decide(undefined, requestCommand({ approvalId, rule: rule({ quorum: 1, expiresAfterMs: 3_600_000 }), hold: { gatewayId: 'gateway-1', instanceId: gw.producer.epoch, holdId: approvalId } }), Date.now());
      if (!r.ok) throw r.error;
      const ev = r.events[0]!;
      const e = toEvidence(ev, evolve(undefined, ev)!);
      const built = gw.build(e.type, { actor: e.actor!, source: { address: '10.0.0.7', userAgent: null }, target: e.target, outcome: e.outcome, correlation: e.correlation, payload: e.payload } as never);
      await gw.emit([{ ...built, metadata: { ...built.metadata, timeUs: e.timeUs } } as UnchainedEvent], e.correlation.sessionId);
    };
    const total = async () => (await log.endOffsets()).reduce((a, b) => a + b, 0);
    return { dir, log, snapshots, start, request, total };
  }

  it('a pending approval requested before the snapshot is decidable after a restart that reads only the records after it; the book equals a full read', async () => {
    const t = await setup();
    const s1 = await t.start({ snapshots: t.snapshots });
    expect(s1.keeper.stats.fromSnapshot).toBe(false);
    await t.request('before-1');
    await t.request('before-2');
    expect(await s1.service.sync()).toBe(true);
    await s1.service.stop();
    await s1.saveNow();
    expect(s1.keeper.stats.snapshotsSaved).toBe(1);
    const at = await t.total();

    await t.request('after-1');
    await t.request('after-2');
    const s2 = await t.start({ snapshots: t.snapshots });
    expect(s2.keeper.stats.fromSnapshot).toBe(true);
    expect(s2.replayed).toBe((await t.total()) - at);
    expect(s2.service.get('before-1')).toMatchObject({ status: 'pending' });
    expect(s2.service.get('after-2')).toMatchObject({ status: 'pending' });
    const decided = await s2.service.execute({ type: 'approve', approvalId: 'before-1', approver: bob, reason: 'ok' });
    expect(decided).toMatchObject({ ok: true, state: { status: 'approved' } });
    expect(await s2.service.sync()).toBe(true);

    const full = await t.start();
    expect(full.replayed).toBe(await t.total());
    expect(full.service.all()).toEqual(s2.service.all());
    // Decided once: a second approver finds it already decided in the rebuilt book too.
    expect(await full.service.execute({ type: 'approve', approvalId: 'before-1', approver: carol, reason: 'late' })).toMatchObject({ ok: false });
  });

  it('keeps snapshots on the record cadence while following the log', async () => {
    const t = await setup();
    const s1 = await t.start({ snapshots: { ...t.snapshots, everyRecords: 1 } });
    await t.request('c-1');
    await t.request('c-2');
    await expect.poll(() => s1.keeper.stats.snapshotsSaved).toBeGreaterThanOrEqual(1);
  });

  it.each([
    ['snapshot_corrupt', (b: Buffer) => b.subarray(0, b.length - 5)],
    ['snapshot_state_invalid', (b: Buffer) => rewrite(b, (body) => ({ ...body, state: [{ approvalId: 7 }] }))],
    ['snapshot_foreign_log', (b: Buffer) => rewrite(b, (body) => ({ ...body, partitions: 2 }))],
    ['snapshot_ahead_of_commit', (b: Buffer) => rewrite(b, (body) => ({ ...body, positions: (body['positions'] as number[]).map((o) => o + 100), anchors: (body['anchors'] as unknown[]).map(() => null) }))],
    ['snapshot_anchor_mismatch', (b: Buffer) => rewrite(b, (body) => ({ ...body, anchors: (body['anchors'] as ({ digest: string } | null)[]).map((a) => (a === null ? null : { ...a, digest: '0'.repeat(32) })) }))],
  ] as const)('a refused snapshot (%s) is logged once and the book is read from the oldest record', async (reason, damage) => {
    const t = await setup();
    const s1 = await t.start({ snapshots: t.snapshots });
    await t.request('x-1');
    await t.request('x-2');
    expect(await s1.service.sync()).toBe(true);
    await s1.service.stop();
    await s1.saveNow();
    const dir = join(t.dir, 'snapshots');
    const file = join(dir, readdirSync(dir)[0]!);
    writeFileSync(file, damage(readFileSync(file)));
    const { logger, lines } = capturingLogger();
    const s2 = await t.start({ snapshots: t.snapshots, logger });
    expect(s2.keeper.stats).toMatchObject({ fromSnapshot: false, snapshotsRejected: 1 });
    expect(lines.map((l) => l['reason'])).toEqual([reason]);
    expect(s2.replayed).toBe(await t.total());
    expect(s2.service.get('x-1')).toMatchObject({ status: 'pending' });
    expect(await s2.service.execute({ type: 'approve', approvalId: 'x-2', approver: bob, reason: 'ok' })).toMatchObject({ ok: true });
  });
});

/** Re-encodes a snapshot file with a changed body (valid checksum): a well-formed file with wrong content. */
function rewrite(file: Buffer, change: (body: Record<string, unknown>) => Record<string, unknown>): Buffer {
  const nl = file.indexOf(0x0a);
  const body = Buffer.from(JSON.stringify(change(JSON.parse(file.subarray(nl + 1).toString('utf8')) as Record<string, unknown>)));
  return Buffer.concat([Buffer.from(`ATTEST-SNAPSHOT 1 ${createHash('sha256').update(body).digest('hex')} ${body.length}\n`), body]);
}
