/**
 * The Kafka EventLog adapter (services/common/src/log/kafka-log.ts) against a real broker (the test
 * harness's single-node KRaft broker, or KAFKA_BROKERS):
 *
 * - sequential: one append() of one record at a time, awaited (a single gateway request's path);
 * - concurrent: --inflight callers, one record per append() (the gateway under load), which the
 *   adapter coalesces into one produce request at a time;
 * - end to end: --messages records appended concurrently while a consumer group polls them, timed
 *   from the first append to the last record consumed;
 * per codec (none, gzip, snappy, lz4), with bytes on the broker per record.
 *
 * Records are the golden Avro fixtures of every event type (schemas/fixtures, 333-649 bytes) with 112
 * random bytes in front of each, standing in for what differs between real events (event id,
 * previous hash, Ed25519 signature), so codecs see realistic, not repeated, data. Keys: 1000
 * sessions, 6 partitions, acks=all, idempotent. Runs are interleaved over codecs; the figure is the
 * median of --runs runs, each on a fresh topic.
 *
 *   node --import tsx bench/kafka-log.bench.ts [--messages 30000] [--sequential 2000] [--inflight 256] [--runs 3] [--codecs none,gzip,snappy,lz4]
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Admin } from '@platformatic/kafka';
import { openKafkaEventLog, type KafkaCompression, type KafkaEventLog } from '../services/common/src/log/kafka-log';
import type { LogRecord } from '../services/common/src/log/port';
import { startKafka } from '../test/harness/kafka';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? dflt) : dflt;
}
const MESSAGES = Number(arg('messages', '30000'));
const SEQUENTIAL = Number(arg('sequential', '2000'));
const INFLIGHT = Number(arg('inflight', '256'));
const RUNS = Number(arg('runs', '3'));
const CODECS = arg('codecs', 'none,gzip,snappy,lz4').split(',') as KafkaCompression[];
const PARTITIONS = 6;

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))] ?? 0;
};

async function fixtures(): Promise<Buffer[]> {
  const root = join(import.meta.dirname, '..', 'schemas', 'fixtures');
  const out: Buffer[] = [];
  for (const f of await readdir(root, { recursive: true })) if (f.endsWith('.bin')) out.push(await readFile(join(root, f)));
  if (out.length === 0) throw new Error(`no fixtures under ${root}`);
  return out;
}

function records(n: number, pool: Buffer[]): LogRecord[] {
  return Array.from({ length: n }, (_, i) => ({
    key: `session-${i % 1000}`,
    value: Buffer.concat([randomBytes(112), pool[i % pool.length]!]),
    headers: { 'content-type': 'application/vnd.attest.event+avro' },
  }));
}

interface Row {
  seqPerSec: number;
  seqP50Ms: number;
  seqP99Ms: number;
  concPerSec: number;
  recordsPerRequest: number;
  cpuUsPerRecord: number;
  e2ePerSec: number;
  bytesPerRecord: number;
}

async function one(brokers: string[], admin: Admin, compression: KafkaCompression, pool: Buffer[]): Promise<Row> {
  const topic = `bench-kafka-log-${randomUUID()}`;
  const log: KafkaEventLog = await openKafkaEventLog({ brokers, topic, clientId: 'bench', partitions: PARTITIONS, compression, createTopic: { replicationFactor: 1 } });
  try {
    await log.append(records(1, pool));

    const seq = records(SEQUENTIAL, pool);
    const lat: number[] = [];
    let t0 = performance.now();
    for (const r of seq) {
      const s = performance.now();
      await log.append([r]);
      lat.push(performance.now() - s);
    }
    const seqPerSec = SEQUENTIAL / ((performance.now() - t0) / 1000);

    const conc = records(MESSAGES, pool);
    const before = { ...log.stats };
    const cpu0 = process.cpuUsage();
    t0 = performance.now();
    let next = 0;
    const worker = async () => {
      while (next < conc.length) await log.append([conc[next++]!]);
    };
    await Promise.all(Array.from({ length: INFLIGHT }, worker));
    const concPerSec = MESSAGES / ((performance.now() - t0) / 1000);
    const cpu = process.cpuUsage(cpu0);
    const requests = log.stats.produceRequests - before.produceRequests;

    // End to end on a fresh group: appends and polls run together.
    const e2e = records(MESSAGES, pool);
    const c = await log.consumer(`e2e-${randomUUID()}`, { startFrom: 'latest' });
    t0 = performance.now();
    next = 0;
    const producing = Promise.all(
      Array.from({ length: INFLIGHT }, async () => {
        while (next < e2e.length) await log.append([e2e[next++]!]);
      }),
    );
    let consumed = 0;
    while (consumed < MESSAGES) {
      const got = await c.poll(5000, 10_000);
      if (got.length === 0) throw new Error(`consumer stalled at ${consumed}/${MESSAGES}`);
      consumed += got.length;
    }
    await producing;
    const e2ePerSec = MESSAGES / ((performance.now() - t0) / 1000);
    await c.close();

    const dirs = await admin.describeLogDirs({ topics: [{ name: topic, partitions: Array.from({ length: PARTITIONS }, (_, p) => p) }] });
    let bytes = 0n;
    for (const b of dirs) for (const r of b.results) for (const t of r.topics) if (t.name === topic) for (const p of t.partitions) bytes += p.partitionSize;
    const total = 1 + SEQUENTIAL + 2 * MESSAGES;
    return {
      seqPerSec,
      seqP50Ms: pct(lat, 0.5),
      seqP99Ms: pct(lat, 0.99),
      concPerSec,
      recordsPerRequest: MESSAGES / requests,
      cpuUsPerRecord: (cpu.user + cpu.system) / MESSAGES,
      e2ePerSec,
      bytesPerRecord: Number(bytes) / total,
    };
  } finally {
    await log.close();
    await admin.deleteTopics({ topics: [topic] }).catch(() => {});
  }
}

async function main(): Promise<void> {
  const pool = await fixtures();
  const broker = await startKafka();
  const admin = new Admin({ clientId: 'bench', bootstrapBrokers: broker.brokers });
  const rows = new Map<KafkaCompression, Row[]>();
  try {
    for (let r = 0; r < RUNS; r++) {
      for (const codec of CODECS) {
        const row = await one(broker.brokers, admin, codec, pool);
        rows.set(codec, [...(rows.get(codec) ?? []), row]);
        process.stderr.write(
          `run ${r + 1} ${codec}: seq ${Math.round(row.seqPerSec)}/s (p50 ${row.seqP50Ms.toFixed(2)} ms), ${INFLIGHT} in flight ${Math.round(row.concPerSec)}/s ` +
            `(${row.recordsPerRequest.toFixed(0)} rec/request, ${row.cpuUsPerRecord.toFixed(1)} CPU µs/rec), e2e ${Math.round(row.e2ePerSec)}/s, ${row.bytesPerRecord.toFixed(0)} B/rec on broker\n`,
        );
      }
    }
  } finally {
    await admin.close();
    await broker.close();
  }
  const avg = pool.reduce((a, b) => a + b.length, 0) / pool.length + 112;
  console.log(
    `\nKafka EventLog adapter: records ≈ ${avg.toFixed(0)} B (Avro fixtures + 112 random B), ${PARTITIONS} partitions, acks=all, idempotent; ` +
      `sequential = ${SEQUENTIAL} awaited appends; concurrent and e2e = ${MESSAGES} single-record appends, ${INFLIGHT} in flight; median of ${RUNS}; ${cpus().length} cores\n`,
  );
  console.log('| codec | sequential appends/s | p50 / p99 ms | concurrent appends/s | records per request | client CPU µs/rec | e2e produce→consume rec/s | broker B/rec |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const [codec, rs] of rows) {
    const m = (f: (r: Row) => number) => median(rs.map(f));
    console.log(
      `| ${codec} | ${Math.round(m((r) => r.seqPerSec))} | ${m((r) => r.seqP50Ms).toFixed(2)} / ${m((r) => r.seqP99Ms).toFixed(2)} | ${Math.round(m((r) => r.concPerSec))} | ` +
        `${m((r) => r.recordsPerRequest).toFixed(0)} | ${m((r) => r.cpuUsPerRecord).toFixed(1)} | ${Math.round(m((r) => r.e2ePerSec))} | ${m((r) => r.bytesPerRecord).toFixed(0)} |`,
    );
  }
}

await main();
