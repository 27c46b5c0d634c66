/**
 * Restart time of the stateful processors (risk, DLP, approval book) with and without a state
 * snapshot, on the embedded file log.
 *
 *   node --import tsx bench/processor-restart.bench.ts [--events 1000000] [--tail 10000] [--partitions 1]
 *
 * 1. A "gateway" producer appends `events` signed events (gateway.request.received of 500 agents,
 *    every 1000th a gateway.request.blocked; one approval.requested per 10 000) to a file log
 *    (durability 'none' to build it quickly: reads are what is measured).
 * 2. The risk and DLP groups are committed at the end (as if their processors had handled it all).
 * 3. For each processor: a start with snapshots on but no snapshot (the full replay, what every
 *    restart cost before), a clean stop (writes the snapshot), `tail` more events appended and the
 *    group committed past them (a crash after a snapshot), a start from the snapshot, and a start
 *    with snapshots off. Wall time of start() (rebuild until consuming), records the replay read.
 *
 * Prints one table row per (processor, mode) and the load average before and after.
 */
import { mkdtempSync, rmSync, statSync, readdirSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { ControlPublisher } from '../services/common/src/control';
import { checkpointFile, EvidenceEmitter } from '../services/common/src/evidence/emitter';
import { panHmacKeyFrom } from '../services/common/src/evidence/pan-hmac';
import { SAMPLE_PARTS } from '../services/common/src/events/fixtures';
import type { EventType, UnchainedEvent } from '../services/common/src/events';
import { InMemoryKeyStore, Keyring } from '../services/common/src/integrity';
import { FileEventLog } from '../services/common/src/log';
import { dlpPolicySchema } from '../services/common/src/dlp/index';
import { riskPolicySchema } from '../services/common/src/config/risk-policy';
import { decide, evolve, toEvidence } from '../services/common/src/approvals';
import { requestCommand, rule } from '../services/common/src/approvals/testing';
import { RiskProcessor } from '../services/processors/src/risk-processor';
import { DlpProcessor } from '../services/processors/src/dlp-processor';
import { startApprovalService } from '../services/processors/src/approvals/snapshots';
import { FileSnapshotStore, type SnapshotOptions } from '../services/processors/src/snapshot-store';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : NaN;
  return Number.isFinite(v) && v > 0 ? v : dflt;
}
const EVENTS = arg('events', 1_000_000);
const TAIL = arg('tail', 10_000);
const PARTITIONS = arg('partitions', 1);
const logger = pino({ level: process.env['BENCH_LOG'] ?? 'silent' });
const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'attest-restart-bench-'));
  console.log(`processor restart bench: ${EVENTS} events + ${TAIL} tail, ${PARTITIONS} partition(s), ${cpus().length} cores, load ${load()}`);
  const log = await FileEventLog.open({ dir: join(dir, 'log'), partitions: PARTITIONS, durability: 'none' });
  const controlLog = await FileEventLog.open({ dir: join(dir, 'control'), durability: 'none' });
  const keyring = await Keyring.open(new InMemoryKeyStore());
  await keyring.rotate();
  const emitterOf = (id: string) => EvidenceEmitter.open({ log, keyring, producerId: id, tenantId: 'acme', checkpoints: checkpointFile(dir, id), logger });
  const gateway = await emitterOf('gateway-bench');

  let n = 0;
  const append = async (count: number) => {
    const t0 = performance.now();
    for (let i = 0; i < count; i += 1000) {
      const batch: UnchainedEvent<EventType>[] = [];
      const session = `s-${n % 256}`;
      for (let j = i; j < Math.min(count, i + 1000); j++, n++) {
        const type = n % 1000 === 999 ? 'gateway.request.blocked' : 'gateway.request.received';
        const { tenantId: _t, ...parts } = SAMPLE_PARTS[type];
        const actor = { ...parts.actor, subject: `agent:bench-${n % 500}` };
        batch.push(gateway.build(type, { ...parts, actor, correlation: { sessionId: session, requestId: `req-${n}`, upstreamRequestId: null } } as never));
        if (n % 10_000 === 5_000) {
          const r = decide(undefined, requestCommand({ approvalId: `apr-${n}`, rule: rule({ expiresAfterMs: 3_600_000 }) }), Date.now());
          if (r.ok) {
            const ev = r.events[0]!;
            const e = toEvidence(ev, evolve(undefined, ev)!);
            batch.push(gateway.build(e.type, { actor: e.actor!, source: { address: '10.0.0.7', userAgent: null }, target: e.target, outcome: e.outcome, correlation: e.correlation, payload: e.payload } as never));
          }
        }
      }
      await gateway.emit(batch, session);
    }
    return performance.now() - t0;
  };
  const genMs = await append(EVENTS);
  const total = async () => (await log.endOffsets()).reduce((a, b) => a + b, 0);
  console.log(`appended ${await total()} records in ${(genMs / 1000).toFixed(1)} s; log ${(du(join(dir, 'log')) / 1e6).toFixed(0)} MB; load ${load()}`);

  /** Commits `group` at the log's end (as if its processor had handled everything). */
  const commitAll = async (group: string) => {
    const c = await log.consumer(group, { startFrom: 'earliest' });
    for (;;) {
      const b = await c.poll(10_000, 50);
      if (b.length === 0) break;
    }
    await c.commit();
    await c.close();
  };
  await commitAll('risk');
  await commitAll('dlp');

  const rows: string[] = [];
  const row = (proc: string, mode: string, ms: number, read: number, extra = '') => {
    rows.push(`| ${proc} | ${mode} | ${(ms / 1000).toFixed(2)} s | ${read.toLocaleString('en-US')} | ${extra} | ${load()} |`);
    console.log(rows[rows.length - 1]);
  };
  const snapDir = join(dir, 'snapshots');
  const snapshots: SnapshotOptions = { store: new FileSnapshotStore(snapDir), logId: `file:${join(dir, 'log')}`, everyRecords: 10_000_000, everyMs: 3_600_000 };
  const snapSize = (group: string) => {
    try {
      return `snapshot ${(statSync(new FileSnapshotStore(snapDir).fileOf(group, snapshots.logId)).size / 1024).toFixed(0)} KB`;
    } catch {
      return 'NO SNAPSHOT WRITTEN';
    }
  };

  // ---- risk ----
  const riskEmitter = await emitterOf('risk-bench');
  const risk = (snap: boolean) =>
    new RiskProcessor({ log, emitter: riskEmitter, publisher: new ControlPublisher(controlLog, keyring), policy: riskPolicySchema.parse({}), logger, ...(snap ? { snapshots } : {}) });
  const timed = async <T>(f: () => Promise<T>): Promise<[T, number]> => {
    const t0 = performance.now();
    const v = await f();
    return [v, performance.now() - t0];
  };
  {
    const p = risk(true);
    const [, ms] = await timed(() => p.start());
    row('risk', 'no snapshot (full replay)', ms, p.stats.replayRead, `${p.stats.identities} identities`);
    const [, stopMs] = await timed(() => p.stop());
    console.log(`  risk stop with snapshot: ${stopMs.toFixed(0)} ms, ${snapSize('risk')}`);
  }
  // ---- dlp ----
  const dlpEmitter = await emitterOf('dlp-bench');
  const dlp = (snap: boolean) =>
    new DlpProcessor({ log, emitter: dlpEmitter, policy: dlpPolicySchema.parse({}), panKey: panHmacKeyFrom('bench', randomBytes(32)), logger, ...(snap ? { snapshots } : {}) });
  {
    const p = dlp(true);
    const [, ms] = await timed(() => p.start());
    row('dlp', 'no snapshot (full replay)', ms, p.stats.replayRead);
    await p.stop();
  }
  // ---- approvals ----
  const apEmitter = await emitterOf('approvals-bench');
  let g = 0;
  const approvals = (snap: boolean) =>
    startApprovalService(
      { log, group: `approvals-bench-${g++}`, emitter: apEmitter, publisher: new ControlPublisher(controlLog, keyring), producerId: 'approvals-bench', logger },
      snap ? snapshots : undefined,
      logger,
    );
  {
    const [a, ms] = await timed(() => approvals(true));
    row('approvals', 'no snapshot (full read)', ms, a.replayed, `${a.service.all().length} approvals`);
    await a.service.stop();
    await a.saveNow();
    console.log(`  approvals ${snapSize('approvals')}`);
  }

  // A tail after the snapshots, committed by the groups (a crash after the snapshot).
  await append(TAIL);
  await commitAll('risk');
  await commitAll('dlp');
  console.log(`tail of ${TAIL} appended and committed; load ${load()}`);

  for (const [name, make] of [
    ['risk', risk],
    ['dlp', dlp],
  ] as const) {
    for (const snap of [true, false]) {
      const p = make(snap);
      const [, ms] = await timed(() => p.start());
      row(name, snap ? `from snapshot + tail` : 'snapshots off (full replay)', ms, p.stats.replayRead, p.stats.fromSnapshot ? 'from snapshot' : '');
      await p.stop();
    }
  }
  for (const snap of [true, false]) {
    const [a, ms] = await timed(() => approvals(snap));
    row('approvals', snap ? 'from snapshot + tail' : 'snapshots off (full read)', ms, a.replayed, a.keeper.stats.fromSnapshot ? 'from snapshot' : '');
    await a.service.stop();
  }

  console.log('\n| processor | start | wall time of start() | records replayed | note | load (1/5/15 min) |\n|---|---|---|---|---|---|');
  for (const r of rows) console.log(r);
  for (const e of [gateway, riskEmitter, dlpEmitter, apEmitter]) await e.close();
  await log.close();
  await controlLog.close();
  rmSync(dir, { recursive: true, force: true });
}

function du(d: string): number {
  let s = 0;
  for (const e of readdirSync(d, { withFileTypes: true })) s += e.isDirectory() ? du(join(d, e.name)) : statSync(join(d, e.name)).size;
  return s;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
