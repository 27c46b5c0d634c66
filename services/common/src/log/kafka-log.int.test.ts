/**
 * The Kafka adapter against a real broker (the run's shared KRaft broker from
 * test/harness/kafka-global-setup.ts, or KAFKA_BROKERS): the conformance suite every EventLog adapter
 * passes, then what is Kafka's own: topic settings, partitioner compatibility, request coalescing,
 * codecs, failure behaviour, group members in other processes.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Admin, ConfigResourceTypes } from '@platformatic/kafka';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { kafkaForTests, type KafkaBroker } from '../../../../test/harness/kafka';
import { isLogError } from './errors';
import { kafkaPartitionForKey, openKafkaEventLog, type KafkaEventLog, type KafkaLogOptions } from './kafka-log';
import { ensureKafkaTopics, kafkaTopicSpecs } from './kafka-topics';
import { eventLogConformance } from './log-conformance';
import type { ConsumedRecord, LogConsumer } from './port';

let kafka: KafkaBroker;
let admin: Admin;
/** Every topic a test made, deleted after the file so a shared broker does not fill up. */
const topics = new Set<string>();

beforeAll(async () => {
  kafka = await kafkaForTests();
  admin = new Admin({ clientId: 'attest-test-admin', bootstrapBrokers: kafka.brokers });
}, 300_000);

afterAll(async () => {
  if (topics.size > 0) await admin.deleteTopics({ topics: [...topics] }).catch(() => {});
  await admin?.close();
  await kafka?.close();
}, 60_000);

const newTopic = (prefix = 'attest-test'): string => {
  const t = `${prefix}-${randomUUID()}`;
  topics.add(t);
  return t;
};

const open = (topic: string, extra: Partial<KafkaLogOptions> = {}): Promise<KafkaEventLog> =>
  openKafkaEventLog({ brokers: kafka.brokers, topic, clientId: 'attest-test', createTopic: { replicationFactor: 1 }, ...extra });

eventLogConformance('kafka', async () => {
  const topic = newTopic('attest-conf');
  return {
    open: (opts) => open(topic, { ...(opts?.partitions !== undefined ? { partitions: opts.partitions } : {}), ...(opts?.maxRecordBytes !== undefined ? { maxRecordBytes: opts.maxRecordBytes } : {}) }),
    dispose: async () => {
      await admin.deleteTopics({ topics: [topic] }).catch(() => {});
      topics.delete(topic);
    },
  };
});

const enc = new TextEncoder();
const dec = new TextDecoder();
const rec = (key: string, value: string) => ({ key, value: enc.encode(value) });
const text = (r: ConsumedRecord) => dec.decode(r.value);

async function drain(c: LogConsumer, count: number): Promise<ConsumedRecord[]> {
  const out: ConsumedRecord[] = [];
  while (out.length < count) {
    const got = await c.poll(1000, 5000);
    if (got.length === 0) throw new Error(`expected ${count} records, got ${out.length} and then nothing for 5 s`);
    out.push(...got);
  }
  return out;
}

async function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

describe('Kafka event log', () => {
  const cleanups: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  const opened = async (topic: string, extra: Partial<KafkaLogOptions> = {}) => {
    const log = await open(topic, extra);
    cleanups.push(() => log.close());
    return log;
  };

  it("partitions keys with Kafka's default partitioner (Java's murmur2 test vectors)", () => {
    // org.apache.kafka.common.utils.UtilsTest#testMurmur2, then toPositive(h) % n as Java's BuiltInPartitioner.
    const vectors: Array<[string, number]> = [
      ['21', -973932308],
      ['foobar', -790332482],
      ['a-little-bit-long-string', -985981536],
      ['a-little-bit-longer-string', -1486304829],
      ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
      ['abc', 479470107],
    ];
    for (const [key, hash] of vectors) {
      for (const n of [1, 3, 12, 100]) expect(kafkaPartitionForKey(Buffer.from(key), n)).toBe((hash & 0x7fffffff) % n);
    }
  });

  it('lands records where the key partitioner says, so other Kafka clients keyed the same way agree', async () => {
    const log = await opened(newTopic(), { partitions: 5 });
    const keys = Array.from({ length: 40 }, (_, i) => `session-${i}`);
    const results = await log.append(keys.map((k) => rec(k, k)));
    results.forEach((r, i) => expect(r.partition).toBe(kafkaPartitionForKey(Buffer.from(keys[i]!), 5)));
    const c = await log.consumer('where');
    for (const r of await drain(c, 40)) expect(r.partition).toBe(kafkaPartitionForKey(Buffer.from(r.key), 5));
  });

  it('coalesces concurrent append() calls into few produce requests, one in flight at a time', async () => {
    const log = await opened(newTopic(), { partitions: 3 });
    await log.append([rec('warm', 'up')]);
    const before = { ...log.stats };
    const results = await Promise.all(Array.from({ length: 256 }, (_, i) => log.append([rec(`s${i % 17}`, `${i}`)])));
    const requests = log.stats.produceRequests - before.produceRequests;
    expect(log.stats.appendCalls - before.appendCalls).toBe(256);
    // Calls of one tick form one request; a serialised producer never has two outstanding.
    expect(requests).toBeGreaterThanOrEqual(1);
    expect(requests).toBeLessThanOrEqual(4);
    expect(log.stats.producerResets).toBe(0);
    for (let p = 0; p < 3; p++) {
      const offsets = results.flat().filter((r) => r.partition === p).map((r) => r.offset).sort((a, b) => a - b);
      expect(offsets).toEqual(offsets.map((_, i) => offsets[0]! + i));
    }
  });

  it('round-trips records through every codec it offers', async () => {
    for (const compression of ['none', 'gzip', 'snappy', 'lz4'] as const) {
      const log = await opened(newTopic(), { partitions: 2, compression });
      const values = Array.from({ length: 50 }, (_, i) => `${compression}-${i}-${'avro-ish payload '.repeat(i % 7)}`);
      await log.append(values.map((v, i) => ({ ...rec(`k${i % 4}`, v), headers: { codec: compression } })));
      const got = await drain(await log.consumer('codec'), 50);
      expect(got.map(text).sort()).toEqual([...values].sort());
      expect(got.every((r) => r.headers.codec === compression)).toBe(true);
    }
  });

  it("refuses a topic with another partition count, and a missing topic unless asked to create it", async () => {
    const topic = newTopic();
    await (await open(topic, { partitions: 2 })).close();
    await expect(openKafkaEventLog({ brokers: kafka.brokers, topic, clientId: 'attest-test', partitions: 3 })).rejects.toMatchObject({
      code: 'log_config_mismatch',
      where: 'partitions',
    });
    const missing = `attest-missing-${randomUUID()}`;
    const err = await openKafkaEventLog({ brokers: kafka.brokers, topic: missing, clientId: 'attest-test' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'log_config_mismatch', where: 'topic' });
    expect((err as { fix: string }).fix).toContain('ensureKafkaTopics');
    // Nothing was auto-created by the failed open (the broker allows auto-creation; we never ask for it).
    expect((await admin.listTopics()).includes(missing)).toBe(false);
  });

  it('rejects quickly with retriable log_unavailable when no broker is reachable, naming the brokers', async () => {
    const port = await closedPort();
    const t0 = performance.now();
    const err = await openKafkaEventLog({ brokers: [`127.0.0.1:${port}`], topic: 'attest-nowhere', clientId: 'attest-test', retries: 2, retryDelayMs: 100 }).catch(
      (e: unknown) => e,
    );
    const ms = performance.now() - t0;
    expect(isLogError(err)).toBe(true);
    expect(err).toMatchObject({ code: 'log_unavailable', retriable: true, where: `127.0.0.1:${port}` });
    expect((err as Error).message).toMatch(/Kafka topic attest-nowhere failed: .*127\.0\.0\.1/);
    expect((err as { fix: string }).fix).toContain(`127.0.0.1:${port}`);
    expect(ms).toBeLessThan(5000);
  });

  it('refuses bad options before connecting: codec, brokers, client id, topic name', async () => {
    const base = { brokers: kafka.brokers, topic: 'attest-opts', clientId: 'attest-test' };
    await expect(openKafkaEventLog({ ...base, compression: 'zstd' as never })).rejects.toMatchObject({ code: 'log_invalid_argument', where: 'compression' });
    await expect(openKafkaEventLog({ ...base, brokers: [] })).rejects.toMatchObject({ code: 'log_invalid_argument', where: 'brokers' });
    await expect(openKafkaEventLog({ ...base, brokers: ['no-port'] })).rejects.toMatchObject({ code: 'log_invalid_argument', where: 'brokers' });
    await expect(openKafkaEventLog({ ...base, clientId: 'has space' })).rejects.toMatchObject({ code: 'log_invalid_argument', where: 'clientId' });
    await expect(openKafkaEventLog({ ...base, topic: 'a/b' })).rejects.toMatchObject({ code: 'log_invalid_argument', where: 'topic' });
    await expect(openKafkaEventLog({ ...base, maxRecordBytes: 2048, maxBatchBytes: 1024 })).rejects.toMatchObject({ code: 'log_invalid_argument', where: 'maxBatchBytes' });
  });

  it('applies backpressure: beyond maxQueuedBytes unacknowledged, append() refuses at once (retriable) and recovers', async () => {
    const log = await opened(newTopic(), { partitions: 1, maxQueuedBytes: 64 * 1024 });
    const rec = () => ({ key: 'k', value: new Uint8Array(16 * 1024) });
    const results = await Promise.allSettled(Array.from({ length: 40 }, () => log.append([rec()])));
    const refused = results.filter((r) => r.status === 'rejected');
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((r) => (r as PromiseRejectedResult).reason.code === 'log_unavailable' && (r as PromiseRejectedResult).reason.retriable === true)).toBe(true);
    const accepted = results.filter((r) => r.status === 'fulfilled').length;
    expect(accepted).toBeGreaterThan(0);
    // Once acknowledged, the queue is empty again and appends go through.
    await expect(log.append([rec()])).resolves.toHaveLength(1);
    expect(await log.endOffsets()).toEqual([accepted + 1]);
  });

  it('rejects a call over maxBatchBytes before sending anything', async () => {
    const log = await opened(newTopic(), { partitions: 1, maxRecordBytes: 64 * 1024, maxBatchBytes: 128 * 1024 });
    const big = Array.from({ length: 3 }, () => ({ key: 'k', value: new Uint8Array(60 * 1024) }));
    await expect(log.append(big)).rejects.toMatchObject({ code: 'log_record_too_large' });
    expect(await log.endOffsets()).toEqual([0]);
    expect((await log.append(big.slice(0, 2))).map((r) => r.offset)).toEqual([0, 1]);
  });

  it('resumes a group at the offset committed by a consumer in another process', async () => {
    const topic = newTopic();
    const log = await opened(topic, { partitions: 1 });
    await log.append(Array.from({ length: 10 }, (_, i) => rec('k', `${i}`)));
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./kafka-child.ts', import.meta.url)), kafka.brokers.join(','), topic, 'cross', '8', '5'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let errOut = '';
    child.stdout.on('data', (d) => (out += String(d)));
    child.stderr.on('data', (d) => (errOut += String(d)));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code, errOut).toBe(0);
    expect(JSON.parse(out)).toEqual(['0', '1', '2', '3', '4', '5', '6', '7']);
    // The child committed after record 4: 5, 6, 7 were delivered there but not committed, so they come again.
    const c = await log.consumer('cross');
    expect((await drain(c, 5)).map(text)).toEqual(['5', '6', '7', '8', '9']);
  });

  it('shares a group between two log instances: each gets its own partitions, together all records', async () => {
    const topic = newTopic();
    const fast = { consumer: { heartbeatIntervalMs: 200, sessionTimeoutMs: 6000, rebalanceTimeoutMs: 10_000 } };
    const a = await opened(topic, { partitions: 4, ...fast });
    const b = await opened(topic, fast);
    await a.append(Array.from({ length: 40 }, (_, i) => rec(`s${i}`, `${i}`)));
    const ca = await a.consumer('shared');
    const cb = await b.consumer('shared');
    // Joining b rebalanced the group; a learns of it at its next heartbeat and rejoins.
    const got = new Map<string, ConsumedRecord[]>([['a', []], ['b', []]]);
    const deadline = Date.now() + 20_000;
    while ([...got.values()].reduce((n, r) => n + new Set(r.map(text)).size, 0) < 40 || got.get('a')!.length === 0 || got.get('b')!.length === 0) {
      if (Date.now() > deadline) throw new Error(`not shared in time: a ${got.get('a')!.length}, b ${got.get('b')!.length}`);
      const [ra, rb] = await Promise.all([ca.poll(100, 300), cb.poll(100, 300)]);
      got.get('a')!.push(...ra);
      got.get('b')!.push(...rb);
    }
    const all = new Set([...got.values()].flat().map(text));
    expect(all.size).toBe(40);
    // After the rebalance settles each partition has one owner: the later records of a partition come from one member.
    const lastOwner = new Map<number, string>();
    for (const [who, rs] of got) for (const r of rs) lastOwner.set(r.partition, who);
    expect(new Set(lastOwner.values())).toEqual(new Set(['a', 'b']));
    // The broker's view: two members of the Kafka group `<topic>.shared`, disjoint partitions covering all four.
    const [group] = await admin.describeGroups({ groups: [`${topic}.shared`] }).then((m) => [...m.values()]);
    const owned = [...group!.members.values()].map((m) => [...(m.assignments?.get(topic)?.partitions ?? [])].sort());
    expect(owned).toHaveLength(2);
    expect(owned.flat().sort()).toEqual([0, 1, 2, 3]);
    expect(owned.every((ps) => ps.length > 0)).toBe(true);

    // Settled: new records reach exactly one member each, by partition.
    await a.append(Array.from({ length: 40 }, (_, i) => rec(`s${i}`, `second-${i}`)));
    const later = new Map<string, ConsumedRecord[]>([['a', []], ['b', []]]);
    const until = Date.now() + 20_000;
    while ([...later.values()].reduce((n, r) => n + r.length, 0) < 40 && Date.now() < until) {
      const [ra, rb] = await Promise.all([ca.poll(100, 300), cb.poll(100, 300)]);
      later.get('a')!.push(...ra);
      later.get('b')!.push(...rb);
    }
    const pa = new Set(later.get('a')!.map((r) => r.partition));
    const pb = new Set(later.get('b')!.map((r) => r.partition));
    expect([...later.values()].flat().map(text).sort()).toEqual(Array.from({ length: 40 }, (_, i) => `second-${i}`).sort());
    expect([...pa].filter((p) => pb.has(p))).toEqual([]);
  });

  it('fails, never skips, when a group position was deleted by retention', async () => {
    const topic = newTopic();
    const log = await opened(topic, { partitions: 1 });
    await log.append(Array.from({ length: 10 }, (_, i) => rec('k', `${i}`)));
    const c = await log.consumer('late');
    await drain(c, 10);
    await c.commit([{ partition: 0, nextOffset: 2 }]);
    await c.close();
    // What retention does to old segments, done at once: records before offset 5 are gone.
    await admin.deleteRecords({ topics: [{ name: topic, partitions: [{ partition: 0, offset: 5n }] }] });
    const again = await log.consumer('late');
    for (let i = 0; i < 2; i++) await expect(again.poll(10, 2000)).rejects.toMatchObject({ code: 'log_offset_out_of_range' });
    // A new group starts at the oldest retained record.
    expect((await drain(await log.consumer('fresh'), 5)).map(text)).toEqual(['5', '6', '7', '8', '9']);
  });

  it('closes an idle log promptly, and a consumer blocked in a long poll at once', async () => {
    const log = await opened(newTopic(), { partitions: 2 });
    const c = await log.consumer('blocked');
    const polled = c.poll(10, 120_000);
    await new Promise((r) => setTimeout(r, 100));
    const t0 = performance.now();
    await log.close();
    expect(await polled).toEqual([]);
    expect(performance.now() - t0).toBeLessThan(3000);
  });
});

describe('Kafka topics', () => {
  it('creates events, control and dead-letter topics with the documented settings, then leaves them alone', async () => {
    const suffix = randomUUID();
    const names = { events: `ev-${suffix}`, control: `ctl-${suffix}`, deadLetter: `dlq-${suffix}` };
    Object.values(names).forEach((n) => topics.add(n));
    const first = await ensureKafkaTopics({ brokers: kafka.brokers, clientId: 'attest-test', names, replicationFactor: 1, eventPartitions: 6 });
    expect(first.map((t) => [t.role, t.name, t.created, t.partitions])).toEqual([
      ['events', names.events, true, 6],
      ['control', names.control, true, 1],
      ['deadLetter', names.deadLetter, true, 3],
    ]);
    const described = await admin.describeConfigs({
      resources: Object.values(names).map((n) => ({ resourceType: ConfigResourceTypes.TOPIC, resourceName: n })),
    });
    const config = (topic: string, name: string) => described.find((d) => d.resourceName === topic)!.configs.find((c) => c.name === name)?.value;
    expect(config(names.events, 'cleanup.policy')).toBe('delete');
    expect(config(names.events, 'retention.ms')).toBe(String(30 * 24 * 3600 * 1000));
    expect(config(names.events, 'message.timestamp.type')).toBe('LogAppendTime');
    expect(config(names.events, 'unclean.leader.election.enable')).toBe('false');
    expect(config(names.events, 'min.insync.replicas')).toBe('1');
    expect(config(names.control, 'cleanup.policy')).toBe('compact');
    expect(config(names.deadLetter, 'retention.ms')).toBe(String(90 * 24 * 3600 * 1000));
    for (const n of Object.values(names)) expect(config(n, 'max.message.bytes')).toBe(String(8 * 1024 * 1024));

    // Idempotent: a second run creates nothing and finds nothing different.
    const again = await ensureKafkaTopics({ brokers: kafka.brokers, clientId: 'attest-test', names, replicationFactor: 1, eventPartitions: 6 });
    expect(again.map((t) => [t.created, t.differences])).toEqual([
      [false, []],
      [false, []],
      [false, []],
    ]);
    // A spec that differs from the live topic is reported, never applied.
    const drift = await ensureKafkaTopics({ brokers: kafka.brokers, clientId: 'attest-test', names, replicationFactor: 1, eventPartitions: 8, eventRetentionMs: 400 * 24 * 3600 * 1000 });
    expect(drift[0]!.differences).toEqual([
      { config: 'partitions', expected: '8', actual: '6' },
      { config: 'retention.ms', expected: String(400 * 24 * 3600 * 1000), actual: String(30 * 24 * 3600 * 1000) },
    ]);
  });

  it('refuses the production replication factor on a cluster too small for it, saying what to do', async () => {
    const names = { events: `ev-${randomUUID()}`, control: `ctl-${randomUUID()}`, deadLetter: `dlq-${randomUUID()}` };
    const err = await ensureKafkaTopics({ brokers: kafka.brokers, clientId: 'attest-test', names }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'log_config_mismatch', where: 'replicationFactor' });
    expect((err as Error).message).toContain('needs replication factor 3, but the cluster has 1 broker(s)');
    expect((await admin.listTopics()).includes(names.events)).toBe(false);
  });

  it('defaults to replication factor 3 with min.insync.replicas 2, and rejects an impossible pair', () => {
    const [events, control, dlq] = kafkaTopicSpecs();
    expect([events!.name, control!.name, dlq!.name]).toEqual(['attest.events', 'attest.control', 'attest.events.dead-letter']);
    for (const s of [events!, control!, dlq!]) {
      expect(s.replicationFactor).toBe(3);
      expect(s.configs['min.insync.replicas']).toBe('2');
    }
    expect(() => kafkaTopicSpecs({ replicationFactor: 2, minInsyncReplicas: 3 })).toThrow(/exceeds replicationFactor/);
    expect(() => kafkaTopicSpecs({ names: { events: 'bad/name' } })).toThrow(/topic name/);
    expect(() => kafkaTopicSpecs({ names: { control: 'attest.events' } })).toThrow(/different names/);
  });
});
