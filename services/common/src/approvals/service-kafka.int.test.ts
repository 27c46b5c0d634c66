/**
 * The approval service's catch-up on a real Kafka broker where retention has deleted every record of
 * a partition (its oldest offset equals its end): the book must still come up, since no record of
 * that partition will ever arrive to mark it read.
 */
import { randomUUID } from 'node:crypto';
import { Admin } from '@platformatic/kafka';
import pino from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { kafkaForTests, type KafkaBroker } from '../../../../test/harness/kafka';
import { ControlPublisher } from '../control';
import { EvidenceEmitter, memoryCheckpoints } from '../evidence/emitter';
import { InMemoryKeyStore, Keyring } from '../integrity';
import { MemoryEventLog } from '../log';
import { kafkaPartitionForKey, openKafkaEventLog, type KafkaEventLog } from '../log/kafka-log';
import { ApprovalService } from './service';

const logger = pino({ level: 'silent' });
let kafka: KafkaBroker;
let admin: Admin;
const topic = `attest-approvals-retention-${randomUUID()}`;

beforeAll(async () => {
  kafka = await kafkaForTests();
  admin = new Admin({ clientId: 'attest-test-admin', bootstrapBrokers: kafka.brokers });
}, 300_000);

afterAll(async () => {
  await admin?.deleteTopics({ topics: [topic] }).catch(() => {});
  await admin?.close();
  await kafka?.close();
}, 60_000);

it('catches up when retention has emptied a partition', async () => {
  const log: KafkaEventLog = await openKafkaEventLog({ brokers: kafka.brokers, topic, clientId: 'attest-test', createTopic: { replicationFactor: 1 }, partitions: 2 });
  const keys = await Keyring.open(new InMemoryKeyStore());
  await keys.rotate();
  const emitter = await EvidenceEmitter.open({ log, keyring: keys, producerId: 'approvals-t', tenantId: 'acme', checkpoints: memoryCheckpoints(), logger, cadence: { everyEvents: 100_000, everyMs: 3_600_000 } });
  const controlLog = new MemoryEventLog();
  let service: ApprovalService | undefined;
  try {
    // Records in both partitions, then every record of partition 0 deleted, as retention would.
    const keyFor = (p: number) => Array.from({ length: 100 }, (_, i) => `k${i}`).find((k) => kafkaPartitionForKey(new TextEncoder().encode(k), 2) === p)!;
    await log.append([0, 1].flatMap((p) => Array.from({ length: 3 }, (_, i) => ({ key: keyFor(p), value: new TextEncoder().encode(`not an event ${i}`) }))));
    const ends = await log.endOffsets();
    expect(ends.every((e) => e > 0)).toBe(true);
    await admin.deleteRecords({ topics: [{ name: topic, partitions: [{ partition: 0, offset: BigInt(ends[0]!) }] }] });

    const t0 = Date.now();
    service = await ApprovalService.start({ log, group: `approvals-${randomUUID()}`, emitter, publisher: new ControlPublisher(controlLog, keys), producerId: 'approvals-t', logger, pollWaitMs: 50 });
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(await service.sync(5000)).toBe(true);
  } finally {
    await service?.stop();
    await emitter.close();
    await controlLog.close();
    await log.close();
  }
}, 120_000);
