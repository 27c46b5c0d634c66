import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Admin } from '@platformatic/kafka';
import pino, { type Logger } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { kafkaForTests, type KafkaBroker } from '../../../../test/harness/kafka';
import { FileEventLog, LogError, MemoryEventLog, MemoryLogStorage, type ConsumedRecord, type EventLog } from '.';
import { openKafkaEventLog, type KafkaEventLog, type KafkaLogOptions } from './kafka-log';
import { SpoolingEventLog, type SpoolingLogOptions } from './spooling-log';

const logger = pino({ level: 'silent' });
const enc = new TextEncoder();
const dec = new TextDecoder();
const rec = (key: string, v: string) => ({ key, value: enc.encode(v) });
const down = () => new LogError('log_unavailable', 'broker down', { retriable: true });

describe('SpoolingEventLog: spool to local disk while the shared log is down, drain in order', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  async function setup(storage = new MemoryLogStorage(2), spoolDir = mkdtempSync(join(tmpdir(), 'attest-spool-'))) {
    const primary = new MemoryEventLog({ storage });
    const spool = await FileEventLog.open({ dir: spoolDir, partitions: 2 });
    const events: string[] = [];
    const windows: Array<{ records: number }> = [];
    const log = await SpoolingEventLog.open({ primary, spool, logger, retryMs: 10, onSpooling: () => events.push('spooling'), onDrained: (w) => (events.push('drained'), windows.push(w)) });
    return { primary, log, events, windows, storage, spoolDir };
  }

  async function all(primary: MemoryEventLog): Promise<Array<[string, string]>> {
    const c = await primary.consumer(`read-${Math.random()}`, { startFrom: 'earliest' });
    const out: Array<[string, string]> = [];
    for (;;) {
      const b = await c.poll(1000, 50);
      if (b.length === 0) break;
      for (const r of b) out.push([r.key, dec.decode(r.value)]);
    }
    await c.close();
    return out;
  }

  it('keeps accepting appends during an outage and delivers them afterwards, each key in order, then appends directly again', async () => {
    const t = await setup();
    cleanup.push(() => t.log.close());
    await t.log.append([rec('s1', 'a1'), rec('s2', 'b1')]);
    t.primary.injectFailure(down());
    await t.log.append([rec('s1', 'a2')]);
    await t.log.append([rec('s2', 'b2'), rec('s1', 'a3')]);
    expect(t.log.isSpooling).toBe(true);
    expect(t.events).toEqual(['spooling']);
    t.primary.injectFailure(undefined);
    // Appended while the drain may be running: still after a3.
    await t.log.append([rec('s1', 'a4')]);
    await t.log.drained();
    await t.log.append([rec('s1', 'a5')]);
    expect(t.log.isSpooling).toBe(false);
    expect(t.events).toEqual(['spooling', 'drained']);
    expect(t.windows[0]?.records).toBeGreaterThanOrEqual(3);
    const got = await all(t.primary);
    expect(got.filter(([k]) => k === 's1').map(([, v]) => v)).toEqual(['a1', 'a2', 'a3', 'a4', 'a5']);
    expect(got.filter(([k]) => k === 's2').map(([, v]) => v)).toEqual(['b1', 'b2']);
  });

  it('a refused record is the caller\'s error, not an outage: nothing is spooled', async () => {
    const t = await setup();
    cleanup.push(() => t.log.close());
    t.primary.injectFailure(new LogError('log_record_too_large', 'too big'));
    await expect(t.log.append([rec('s', 'x')])).rejects.toMatchObject({ code: 'log_record_too_large' });
    expect(t.log.isSpooling).toBe(false);
  });

  it('what a crashed run left in the spool is drained when the log is opened again', async () => {
    const storage = new MemoryLogStorage(2);
    const spoolDir = mkdtempSync(join(tmpdir(), 'attest-spool-'));
    const first = await setup(storage, spoolDir);
    first.primary.injectFailure(down());
    await first.log.append([rec('s', 'x1'), rec('s', 'x2')]);
    await first.log.close(); // the drain never succeeded
    const second = await setup(storage, spoolDir);
    cleanup.push(() => second.log.close());
    await second.log.drained();
    expect((await all(second.primary)).map(([, v]) => v)).toEqual(['x1', 'x2']);
  });
});

/**
 * Against the real Kafka adapter (the run's shared broker, test/harness/kafka.ts), whose append()
 * refuses a call over its maxBatchBytes: the drain must send the spool in pieces it accepts. The
 * outage itself is played by a gate in front of the adapter that refuses appends with the adapter's
 * own outage error ('log_unavailable', retriable; kafka-outage.int.test.ts shows the adapter raises
 * it when its broker is down), so the broker is not stopped and the shared broker can serve.
 */
describe('SpoolingEventLog in front of Kafka: the drain respects the adapter\'s batch limit', () => {
  let kafka: KafkaBroker;
  let admin: Admin;
  const topics = new Set<string>();
  const cleanup: Array<() => Promise<void>> = [];

  beforeAll(async () => {
    kafka = await kafkaForTests();
    admin = new Admin({ clientId: 'attest-test-admin', bootstrapBrokers: kafka.brokers });
  }, 300_000);

  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  afterAll(async () => {
    if (topics.size > 0) await admin.deleteTopics({ topics: [...topics] }).catch(() => {});
    await admin?.close();
    await kafka?.close();
  }, 60_000);

  const newTopic = (): string => {
    const t = `attest-spool-${randomUUID()}`;
    topics.add(t);
    return t;
  };

  const openKafka = (topic: string, extra: Partial<KafkaLogOptions> = {}): Promise<KafkaEventLog> =>
    openKafkaEventLog({ brokers: kafka.brokers, topic, clientId: 'attest-test-spool', createTopic: { replicationFactor: 1 }, ...extra });

  /** The Kafka log behind a switch: while `down`, append() fails as the adapter does in an outage. */
  function gated(inner: EventLog): EventLog & { down: boolean } {
    return {
      down: false,
      partitionCount: inner.partitionCount,
      append(records) {
        if (this.down) return Promise.reject(new LogError('log_unavailable', 'appending to Kafka failed: broker down (simulated)', { retriable: true }));
        return inner.append(records);
      },
      consumer: (group, opts) => inner.consumer(group, opts),
      endOffsets: () => inner.endOffsets(),
      close: () => inner.close(),
    };
  }

  /** A value of `bytes` bytes that starts with `label` (random filler: no compression shortcut). */
  const valueOf = (label: string, bytes: number): Uint8Array => {
    const v = new Uint8Array(randomBytes(bytes));
    v.set(enc.encode(`${label}|`));
    return v;
  };
  const labelOf = (v: Uint8Array): string => dec.decode(v.subarray(0, v.indexOf(0x7c)));

  /** Every record of the topic, read by a fresh group until `count` arrived (and 1 s of nothing after). */
  async function readTopic(topic: string, count: number): Promise<ConsumedRecord[]> {
    const log = await openKafka(topic);
    try {
      const c = await log.consumer(`verify-${randomUUID()}`, { startFrom: 'earliest' });
      const out: ConsumedRecord[] = [];
      const deadline = Date.now() + 30_000;
      for (;;) {
        const got = await c.poll(1000, out.length >= count ? 1000 : 2000);
        out.push(...got);
        if (got.length === 0 && (out.length >= count || Date.now() > deadline)) break;
      }
      await c.close();
      return out;
    } finally {
      await log.close();
    }
  }

  const byKey = (records: readonly ConsumedRecord[]): Map<string, string[]> => {
    const m = new Map<string, string[]>();
    for (const r of records) m.set(r.key, [...(m.get(r.key) ?? []), labelOf(r.value)]);
    return m;
  };

  /** Rejects when `p` has not settled within `ms`: a drain that loops must fail the test, not hang it. */
  const within = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
    Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms).unref())]);

  function capturingLogger(): { logger: Logger; lines: Array<Record<string, unknown>> } {
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
    return { logger, lines };
  }

  async function spoolingOver(primary: EventLog, spoolDir: string, extra: Partial<SpoolingLogOptions> = {}) {
    const spool = await FileEventLog.open({ dir: spoolDir, partitions: primary.partitionCount });
    const windows: Array<{ records: number }> = [];
    const log = await SpoolingEventLog.open({ primary, spool, logger, retryMs: 10, onDrained: (w) => windows.push(w), ...extra });
    return { log, windows };
  }

  it('drains 40 spooled records of ~150 KB (6 MB, over the 4 MiB the adapter takes per append) once each, in order', async () => {
    const topic = newTopic();
    // 12 partitions, the configured default (log.kafka.partitions), so the spool has 12 too: one poll
    // of the spool reads up to ~1 MiB from each partition, far more than one Kafka append takes.
    const primary = gated(await openKafka(topic, { partitions: 12 }));
    const { log, windows } = await spoolingOver(primary, mkdtempSync(join(tmpdir(), 'attest-spool-')));
    cleanup.push(() => log.close());

    primary.down = true;
    const keys = Array.from({ length: 10 }, (_, i) => `session-${i}`);
    const sent = new Map<string, string[]>(keys.map((k) => [k, []]));
    for (let i = 0; i < 40; i += 2) {
      // Two records per call, as the gateway appends a request's events together.
      const batch = [i, i + 1].map((n) => ({ key: keys[n % keys.length]!, value: valueOf(`r${n}`, 150 * 1024) }));
      await log.append(batch);
      for (const r of batch) sent.get(r.key)!.push(labelOf(r.value));
    }
    expect(log.isSpooling).toBe(true);

    primary.down = false;
    await within(log.drained(), 60_000, 'drain');
    expect(log.isSpooling).toBe(false);
    expect(windows).toEqual([expect.objectContaining({ records: 40 })]);
    expect(log.stats.stalled).toBeUndefined();
    // 6 MB in pieces of at most the default 2 MiB: at least three appends.
    expect(log.stats.drainAppends).toBeGreaterThanOrEqual(3);
    expect(log.stats.drainedRecords).toBe(40);

    // A direct append again, after the spooled ones.
    await log.append([{ key: keys[0]!, value: valueOf('after', 1000) }]);
    const got = await readTopic(topic, 41);
    expect(got).toHaveLength(41);
    const expected = new Map(sent);
    expected.set(keys[0]!, [...sent.get(keys[0]!)!, 'after']);
    expect(byKey(got)).toEqual(expected);
  }, 120_000);

  it('sends smaller pieces when the primary takes less per append than the drain bound', async () => {
    const topic = newTopic();
    // The adapter takes 512 KiB per call; the drain starts at its default 2 MiB and has to learn.
    const primary = gated(await openKafka(topic, { partitions: 1, maxRecordBytes: 256 * 1024, maxBatchBytes: 512 * 1024 }));
    const { log } = await spoolingOver(primary, mkdtempSync(join(tmpdir(), 'attest-spool-')));
    cleanup.push(() => log.close());
    primary.down = true;
    for (let i = 0; i < 12; i++) await log.append([{ key: 'k', value: valueOf(`r${i}`, 150 * 1024) }]);
    primary.down = false;
    await within(log.drained(), 60_000, 'drain');
    expect(log.isSpooling).toBe(false);
    expect(log.stats.stalled).toBeUndefined();
    expect(log.stats.drainBatchSplits).toBeGreaterThanOrEqual(1);
    const got = await readTopic(topic, 12);
    expect(got.map((r) => labelOf(r.value))).toEqual(Array.from({ length: 12 }, (_, i) => `r${i}`));
  }, 120_000);

  it('a record the primary refuses for good stays in the spool: the drain stops, says where and how big, and a restart retries it', async () => {
    const topic = newTopic();
    const spoolDir = mkdtempSync(join(tmpdir(), 'attest-spool-'));
    // This Kafka log refuses any record over 64 KiB, the spool takes up to 1 MiB.
    const strict = gated(await openKafka(topic, { partitions: 1, maxRecordBytes: 64 * 1024, maxBatchBytes: 128 * 1024 }));
    const { logger: captured, lines } = capturingLogger();
    const stalls: unknown[] = [];
    const first = await spoolingOver(strict, spoolDir, { logger: captured, onDrainStalled: (s) => stalls.push(s) });
    strict.down = true;
    await first.log.append([{ key: 'k', value: valueOf('a1', 100) }]);
    await first.log.append([{ key: 'k', value: valueOf('SECRET-CONTENT', 100 * 1024) }]);
    await first.log.append([{ key: 'k', value: valueOf('a3', 100) }]);
    strict.down = false;
    await within(first.log.drained(), 30_000, 'drain');

    // Stopped, not looping: still spooling, the refused record's spool position and size are known.
    expect(first.log.isSpooling).toBe(true);
    const stall = first.log.stats.stalled;
    expect(stall).toMatchObject({ partition: expect.any(Number), offset: 1, code: 'log_record_too_large' });
    expect(stall!.bytes).toBeGreaterThan(100 * 1024);
    expect(stalls).toEqual([stall]);
    const errors = lines.filter((l) => l.level === 50);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ spoolPartition: stall!.partition, spoolOffset: 1, bytes: stall!.bytes, code: 'log_record_too_large' });
    expect(JSON.stringify(lines)).not.toContain('SECRET-CONTENT');
    // Evidence keeps being accepted, durably, behind the refused record.
    await first.log.append([{ key: 'k', value: valueOf('a4', 100) }]);
    expect(first.log.isSpooling).toBe(true);
    const before = await readTopic(topic, 1);
    expect(before.map((r) => labelOf(r.value))).toEqual(['a1']);
    await first.log.close();

    // The operator raises the limit and restarts: the spool drains from the refused record on, once each.
    const relaxed = gated(await openKafka(topic, { partitions: 1 }));
    const second = await spoolingOver(relaxed, spoolDir);
    cleanup.push(() => second.log.close());
    await within(second.log.drained(), 30_000, 'drain');
    expect(second.log.isSpooling).toBe(false);
    const after = await readTopic(topic, 4);
    expect(after.map((r) => labelOf(r.value))).toEqual(['a1', 'SECRET-CONTENT', 'a3', 'a4']);
  }, 120_000);
});
