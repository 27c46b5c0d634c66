/**
 * The Kafka adapter through a broker outage, on a broker of its own (the shared one cannot be
 * stopped): appends and polls fail fast with retriable 'log_unavailable' while it is down (the
 * gateway fails closed on that), and after a restart every acknowledged record is where append()
 * said, and the consumer group carries on from its commit. A separate file so it runs beside the
 * other Kafka tests instead of after them: it pays for two broker starts.
 */
import { describe, expect, it } from 'vitest';
import { startKafka } from '../../../../test/harness/kafka';
import { isLogError } from './errors';
import { openKafkaEventLog, type KafkaEventLog } from './kafka-log';
import type { ConsumedRecord, LogConsumer } from './port';

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

describe('Kafka event log through a broker outage', () => {
  it('fails appends and polls fast with log_unavailable while the broker is down, then recovers with every acknowledged record in place', async () => {
    const broker = await startKafka({ dedicated: true });
    const opts = { brokers: broker.brokers, topic: 'outage', clientId: 'attest-outage', createTopic: { replicationFactor: 1 }, partitions: 2, appendTimeoutMs: 4000, retries: 2, retryDelayMs: 200 } as const;
    let log: KafkaEventLog | undefined;
    try {
      log = await openKafkaEventLog(opts);
      const acked = new Map<string, { partition: number; offset: number }>();
      const appendOne = async (v: string) => {
        const [r] = await log!.append([rec(`s${v.length % 3}`, v)]);
        acked.set(v, r!);
      };
      for (let i = 0; i < 20; i++) await appendOne(`before-${i}`);
      const c = await log.consumer('audit');
      expect((await drain(c, 20)).length).toBe(20);
      await c.commit();

      await broker.stop!();
      let t0 = performance.now();
      const err = await log.append([rec('k', 'during')]).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'log_unavailable', retriable: true });
      expect(performance.now() - t0).toBeLessThan(5000);
      t0 = performance.now();
      await expect(c.poll(10, 20_000)).rejects.toMatchObject({ code: 'log_unavailable' });
      expect(performance.now() - t0).toBeLessThan(10_000);
      expect(log.stats.producerResets).toBeGreaterThanOrEqual(1);

      await broker.start!();
      // Callers retry a retriable failure; once the broker is back, appends succeed again.
      const deadline = Date.now() + 60_000;
      for (;;) {
        try {
          await appendOne('after-0');
          break;
        } catch (e) {
          if (!isLogError(e) || e.code !== 'log_unavailable' || Date.now() > deadline) throw e;
          await new Promise((r) => setTimeout(r, 500));
        }
      }
      for (let i = 1; i < 10; i++) await appendOne(`after-${i}`);

      // Every acknowledged record sits at the position append() reported; the consumer, after the
      // outage, continues past its commit (rejoining the group if it had to).
      const reader = await log.consumer('verify');
      const all = await drain(reader, 30);
      const at = new Map(all.map((r) => [`${r.partition}:${r.offset}`, text(r)]));
      for (const [v, pos] of acked) expect(at.get(`${pos.partition}:${pos.offset}`)).toBe(v);
      let resumed: ConsumedRecord[] = [];
      const until = Date.now() + 30_000;
      while (resumed.length < 10 && Date.now() < until) {
        resumed = resumed.concat(await c.poll(100, 2000).catch(() => []));
      }
      expect(resumed.map(text).filter((v) => v.startsWith('after-')).sort()).toEqual(Array.from({ length: 10 }, (_, i) => `after-${i}`).sort());
      expect(resumed.some((r) => text(r).startsWith('before-'))).toBe(false);
    } finally {
      await log?.close();
      await broker.close();
    }
  }, 180_000);
});
