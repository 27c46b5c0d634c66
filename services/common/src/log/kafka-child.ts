/**
 * A consumer in another process, for kafka-log.int.test.ts: opens the log, joins the group, reads
 * `read` records, commits the first `commit` of them, prints the values it read as one JSON line,
 * and exits (closing the log, so the group sees a clean leave).
 *
 *   node --import tsx kafka-child.ts <brokers> <topic> <group> <read> <commit>
 */
import { openKafkaEventLog } from './kafka-log';
import { positionsAfter, type ConsumedRecord } from './port';

const [brokers = '', topic = '', group = '', read = '0', commit = '0'] = process.argv.slice(2);
const log = await openKafkaEventLog({ brokers: brokers.split(','), topic, clientId: 'attest-child' });
try {
  const c = await log.consumer(group);
  const got: ConsumedRecord[] = [];
  while (got.length < Number(read)) {
    const batch = await c.poll(Number(read) - got.length, 5000);
    if (batch.length === 0) throw new Error(`child: expected ${read} records, got ${got.length}`);
    got.push(...batch);
  }
  await c.commit(positionsAfter(got.slice(0, Number(commit))));
  process.stdout.write(JSON.stringify(got.map((r) => new TextDecoder().decode(r.value))) + '\n');
} finally {
  await log.close();
}
