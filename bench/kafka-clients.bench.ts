/**
 * kafkajs versus @platformatic/kafka on the same workload against the same real broker (the test
 * harness's single-node KRaft broker, or KAFKA_BROKERS): produce 50k small messages (~100 bytes,
 * 16 keys, 3 partitions) with an idempotent producer, acks=all, no compression.
 *
 * - batched: sequential send() calls of --batch messages each (the client batches per partition);
 * - concurrent: one message per send(), --inflight sends outstanding at once (the gateway's shape:
 *   one event per request), leaving batching to the client.
 *
 * Runs are interleaved (run r of every client before run r+1), each on a fresh topic; the figure is
 * the median msgs/s of --runs runs, with process CPU µs per message (client side only).
 *
 *   node --import tsx bench/kafka-clients.bench.ts [--messages 50000] [--batch 1000] [--inflight 256] [--runs 3]
 */
import { randomUUID } from 'node:crypto';
import { Kafka, Partitioners, logLevel } from 'kafkajs';
import { Admin, ProduceAcks, Producer, stringSerializers } from '@platformatic/kafka';
import { startKafka } from '../test/harness/kafka';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? dflt) : dflt;
}
const MESSAGES = Number(arg('messages', '50000'));
const BATCH = Number(arg('batch', '1000'));
const INFLIGHT = Number(arg('inflight', '256'));
const RUNS = Number(arg('runs', '3'));
const PARTITIONS = 3;
const VALUE = 'x'.repeat(100);

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

interface Result {
  perSec: number;
  cpuUsPerMsg: number;
}

type Shape = 'batched' | 'concurrent';
interface Sender {
  sendBatch(topic: string, msgs: { key: string; value: string }[]): Promise<unknown>;
  close(): Promise<void>;
}

async function drive(shape: Shape, sender: Sender, topic: string): Promise<Result> {
  const msgs = Array.from({ length: MESSAGES }, (_, i) => ({ key: `session-${i % 16}`, value: `${i}:${VALUE}` }));
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  if (shape === 'batched') {
    for (let i = 0; i < MESSAGES; i += BATCH) await sender.sendBatch(topic, msgs.slice(i, i + BATCH));
  } else {
    let next = 0;
    const worker = async () => {
      while (next < MESSAGES) {
        const m = msgs[next++]!;
        await sender.sendBatch(topic, [m]);
      }
    };
    await Promise.all(Array.from({ length: INFLIGHT }, worker));
  }
  const secs = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { perSec: MESSAGES / secs, cpuUsPerMsg: (cpu.user + cpu.system) / MESSAGES };
}

async function main(): Promise<void> {
  const broker = await startKafka();
  const kjs = new Kafka({ clientId: 'bench', brokers: broker.brokers, logLevel: logLevel.ERROR });
  const kjsAdmin = kjs.admin();
  await kjsAdmin.connect();
  const pAdmin = new Admin({ clientId: 'bench', bootstrapBrokers: broker.brokers });

  const clients: Record<string, () => Promise<Sender>> = {
    kafkajs: async () => {
      const p = kjs.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: Partitioners.DefaultPartitioner });
      await p.connect();
      return { sendBatch: (topic, messages) => p.send({ topic, acks: -1, messages }), close: () => p.disconnect() };
    },
    '@platformatic/kafka': async () => {
      const p = new Producer({ clientId: 'bench', bootstrapBrokers: broker.brokers, serializers: stringSerializers, idempotent: true, acks: ProduceAcks.ALL });
      return { sendBatch: (topic, messages) => p.send({ messages: messages.map((m) => ({ topic, ...m })) }), close: () => p.close() };
    },
  };

  const results = new Map<string, Result[]>();
  const failures = new Map<string, string>();
  try {
    for (let r = 0; r < RUNS; r++) {
      for (const shape of ['batched', 'concurrent'] as Shape[]) {
        for (const [name, make] of Object.entries(clients)) {
          const topic = `bench-${randomUUID()}`;
          await pAdmin.createTopics({ topics: [topic], partitions: PARTITIONS, replicas: 1 });
          const sender = await make();
          await sender.sendBatch(topic, [{ key: 'warm', value: 'up' }]);
          const key = `${name}\t${shape}`;
          let res: Result | undefined;
          try {
            res = await drive(shape, sender, topic);
          } catch (err) {
            // A failure is a result too (e.g. an idempotent producer that breaks its own sequence numbers).
            const e = err as Error & { errors?: { errors?: { apiId?: string }[] }[] };
            const why = e.errors?.[0]?.errors?.[0]?.apiId ?? e.message;
            failures.set(key, why);
            process.stderr.write(`run ${r + 1} ${name} ${shape}: FAILED: ${why}\n`);
          }
          await sender.close().catch(() => {});
          if (res) {
            results.set(key, [...(results.get(key) ?? []), res]);
            process.stderr.write(`run ${r + 1} ${name} ${shape}: ${Math.round(res.perSec)} msgs/s, ${res.cpuUsPerMsg.toFixed(1)} CPU µs/msg\n`);
          }
        }
      }
    }
  } finally {
    await kjsAdmin.disconnect();
    await pAdmin.close();
    await broker.close();
  }

  console.log(`\n${MESSAGES} messages of ~${VALUE.length + 6} B, idempotent, acks=all, ${PARTITIONS} partitions; batched = ${BATCH}/send, concurrent = 1/send × ${INFLIGHT} in flight; median of ${RUNS}\n`);
  console.log('| client | shape | msgs/s | client CPU µs/msg |\n|---|---|---|---|');
  for (const [key, rs] of results) {
    const [name, shape] = key.split('\t');
    console.log(`| ${name} | ${shape} | ${Math.round(median(rs.map((x) => x.perSec)))} | ${median(rs.map((x) => x.cpuUsPerMsg)).toFixed(1)} |`);
  }
  for (const [key, why] of failures) {
    const [name, shape] = key.split('\t');
    console.log(`| ${name} | ${shape} | failed in ≥ 1 run: ${why} | |`);
  }
}

await main();
