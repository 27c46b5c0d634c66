/**
 * The test harness's Kafka broker (test/harness/kafka.ts) is a real, working Kafka: both Node clients
 * the Kafka adapter may use produce 1,000 messages with an idempotent acks=all producer and read
 * them back through a consumer group, exactly once each and in order per key.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Kafka, Partitioners, logLevel } from 'kafkajs';
import { Admin, Consumer, ProduceAcks, Producer, stringDeserializers, stringSerializers } from '@platformatic/kafka';
import { kafkaForTests, type KafkaBroker } from './harness/kafka';

const N = 1_000;
const KEYS = 10;
const PARTITIONS = 3;

/** Messages as sent: key k<i mod KEYS>, value "<i>". */
const messages = () => Array.from({ length: N }, (_, i) => ({ key: `k${i % KEYS}`, value: String(i) }));

/** Every message exactly once, and for each key the values in the order they were produced. */
function expectExactlyOnceInKeyOrder(received: { key: string; value: string }[]): void {
  expect(received).toHaveLength(N);
  expect(new Set(received.map((m) => m.value)).size).toBe(N);
  const byKey = new Map<string, number[]>();
  for (const m of received) byKey.set(m.key, [...(byKey.get(m.key) ?? []), Number(m.value)]);
  expect(byKey.size).toBe(KEYS);
  for (const values of byKey.values()) expect(values).toEqual([...values].sort((a, b) => a - b));
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms))),
  ]);
}

let kafka: KafkaBroker;

// The run's shared broker (test/harness/kafka-global-setup.ts); the first run on a machine also
// fetches Kafka's jars with mvn before the broker starts.
beforeAll(async () => {
  kafka = await kafkaForTests();
}, 300_000);

afterAll(async () => {
  await kafka?.close();
}, 30_000);

describe('real Kafka broker from the test harness', () => {
  it('kafkajs: idempotent acks=all producer, consumer group reads every message once', async () => {
    const topic = `t-kafkajs-${randomUUID()}`;
    const groupId = `g-kafkajs-${randomUUID()}`;
    const client = new Kafka({ clientId: 'attest-test', brokers: kafka.brokers, logLevel: logLevel.WARN });
    const admin = client.admin();
    const producer = client.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: Partitioners.DefaultPartitioner });
    const consumer = client.consumer({ groupId });
    try {
      await admin.connect();
      expect(await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS }], waitForLeaders: true })).toBe(true);

      await producer.connect();
      const all = messages();
      for (let i = 0; i < N; i += 100) {
        await producer.send({ topic, acks: -1, messages: all.slice(i, i + 100) });
      }
      const offsets = await admin.fetchTopicOffsets(topic);
      expect(offsets.reduce((s, p) => s + Number(p.high) - Number(p.low), 0)).toBe(N);

      const received: { key: string; value: string }[] = [];
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      await withTimeout(
        new Promise<void>((resolve, reject) => {
          consumer
            .run({
              eachMessage: async ({ message }) => {
                received.push({ key: message.key!.toString(), value: message.value!.toString() });
                if (received.length === N) resolve();
              },
            })
            .catch(reject);
        }),
        30_000,
        `kafkajs consumer got ${received.length}/${N}`,
      );
      expectExactlyOnceInKeyOrder(received);
    } finally {
      await consumer.disconnect().catch(() => {});
      await producer.disconnect().catch(() => {});
      await admin.disconnect().catch(() => {});
    }
  });

  it('@platformatic/kafka: idempotent acks=all producer, consumer group reads every message once', async () => {
    const topic = `t-platformatic-${randomUUID()}`;
    const groupId = `g-platformatic-${randomUUID()}`;
    const base = { clientId: 'attest-test', bootstrapBrokers: kafka.brokers };
    const admin = new Admin(base);
    const producer = new Producer({ ...base, serializers: stringSerializers, idempotent: true, acks: ProduceAcks.ALL });
    const consumer = new Consumer({ ...base, groupId, deserializers: stringDeserializers });
    try {
      await admin.createTopics({ topics: [topic], partitions: PARTITIONS, replicas: 1 });

      const all = messages();
      for (let i = 0; i < N; i += 100) {
        await producer.send({ messages: all.slice(i, i + 100).map((m) => ({ topic, ...m })) });
      }

      const received: { key: string; value: string }[] = [];
      const stream = await consumer.consume({ topics: [topic], mode: 'earliest', autocommit: true });
      try {
        await withTimeout(
          (async () => {
            for await (const m of stream) {
              received.push({ key: m.key, value: m.value });
              if (received.length === N) break;
            }
          })(),
          30_000,
          `@platformatic/kafka consumer got ${received.length}/${N}`,
        );
      } finally {
        await stream.close();
      }
      expectExactlyOnceInKeyOrder(received);
    } finally {
      await consumer.close().catch(() => {});
      await producer.close().catch(() => {});
      await admin.close().catch(() => {});
    }
  });
});
