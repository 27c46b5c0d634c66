/**
 * The event-log conformance suite: one set of behavioural tests every EventLog adapter must pass (the
 * embedded file log, the in-memory twin, and later Kafka). Call it from an adapter's test file:
 *
 *   eventLogConformance('file log', async () => fileLogUnderTest());
 *
 * It promises: durable append results (one per record, dense per-partition offsets, key → partition
 * stable and ordered), exact round trip of key/value/headers, consumer groups that deliver each record
 * once per consumer in per-partition order, wake promptly on new records, commit durably, and
 * redeliver uncommitted records after a restart (at-least-once), plus the validation and close rules.
 * Adapter-specific behaviour (files, retention, locking, crashes) is tested beside each adapter.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { isLogError } from './errors';
import { positionsAfter, type ConsumedRecord, type EventLog, type LogConsumer, type LogRecord } from './port';

export interface LogOpenOptions {
  readonly partitions?: number;
  readonly maxRecordBytes?: number;
}

/** One isolated log (a temp directory, a fresh topic) that can be opened again after close. */
export interface LogUnderTest {
  /** Opens the log; a later open after close() sees the same records and commits. */
  open(opts?: LogOpenOptions): Promise<EventLog>;
  dispose(): Promise<void>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const rec = (key: string, value: string, headers?: Record<string, string>): LogRecord =>
  headers === undefined ? { key, value: enc.encode(value) } : { key, value: enc.encode(value), headers };
const text = (r: ConsumedRecord): string => dec.decode(r.value);

/** Polls until `count` records arrived, failing rather than hanging when they do not. */
async function drain(c: LogConsumer, count: number, batch = 1000): Promise<ConsumedRecord[]> {
  const out: ConsumedRecord[] = [];
  while (out.length < count) {
    const got = await c.poll(batch, 2000);
    if (got.length === 0) throw new Error(`expected ${count} records, got ${out.length} and then nothing for 2 s`);
    out.push(...got);
  }
  return out;
}

async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isLogError(err), `expected a LogError ${code}, got ${String(err)}`).toBe(true);
  expect((err as { code: string }).code).toBe(code);
}

export function eventLogConformance(adapter: string, create: () => Promise<LogUnderTest>): void {
  describe(`EventLog conformance: ${adapter}`, () => {
    const cleanups: Array<() => Promise<void>> = [];
    afterEach(async () => {
      for (const c of cleanups.splice(0).reverse()) await c();
    });

    async function setup(opts?: LogOpenOptions): Promise<{ log: EventLog; reopen: () => Promise<EventLog>; under: LogUnderTest }> {
      const under = await create();
      const opened: EventLog[] = [];
      cleanups.push(async () => {
        for (const l of opened) await l.close();
        await under.dispose();
      });
      const openLog = async (): Promise<EventLog> => {
        const l = await under.open(opts);
        opened.push(l);
        return l;
      };
      const log = await openLog();
      return {
        log,
        under,
        reopen: async () => {
          await log.close();
          for (const l of opened) await l.close();
          return openLog();
        },
      };
    }

    it('resolves one result per record, in input order, with dense offsets per partition from 0', async () => {
      const { log } = await setup({ partitions: 3 });
      const keys = Array.from({ length: 30 }, (_, i) => `session-${i % 7}`);
      const results = await log.append(keys.map((k, i) => rec(k, `v${i}`)));
      expect(results).toHaveLength(keys.length);
      const perPartition = new Map<number, number[]>();
      results.forEach((r) => {
        expect(r.partition).toBeGreaterThanOrEqual(0);
        expect(r.partition).toBeLessThan(log.partitionCount);
        perPartition.set(r.partition, [...(perPartition.get(r.partition) ?? []), r.offset]);
      });
      for (const offsets of perPartition.values()) expect(offsets).toEqual(offsets.map((_, i) => i));
      expect(log.partitionCount).toBe(3);
    });

    it('sends equal keys to one partition and keeps their order across calls', async () => {
      const { log } = await setup({ partitions: 4 });
      const seen = new Map<string, Set<number>>();
      const lastOffset = new Map<string, number>();
      for (let call = 0; call < 10; call++) {
        const records = Array.from({ length: 12 }, (_, i) => rec(`k${i % 5}`, `${call}-${i}`));
        const results = await log.append(records);
        results.forEach((r, i) => {
          const key = records[i]!.key;
          seen.set(key, (seen.get(key) ?? new Set()).add(r.partition));
          expect(r.offset).toBeGreaterThan(lastOffset.get(`${r.partition}`) ?? -1);
          lastOffset.set(`${r.partition}`, r.offset);
        });
      }
      for (const parts of seen.values()) expect(parts.size).toBe(1);
      // Five keys over four partitions: at least two partitions must be used.
      expect(new Set([...seen.values()].map((s) => [...s][0])).size).toBeGreaterThan(1);
    });

    it('resolves append([]) to []', async () => {
      const { log } = await setup();
      expect(await log.append([])).toEqual([]);
      expect((await log.endOffsets()).every((o) => o === 0)).toBe(true);
    });

    it('round-trips key, value bytes and headers, with the append time from the log clock', async () => {
      const { log } = await setup();
      const binary = new Uint8Array([0, 255, 1, 254, 10, 13, 0]);
      const before = Date.now();
      await log.append([
        { key: 'sess-ü-🔑', value: binary, headers: { 'content-type': 'avro/binary', 'x-ünïcödé': '値' } },
        { key: '', value: new Uint8Array(0) },
      ]);
      const after = Date.now();
      const c = await log.consumer('roundtrip');
      const got = await drain(c, 2);
      const a = got.find((r) => r.key === 'sess-ü-🔑')!;
      const b = got.find((r) => r.key === '')!;
      expect(Array.from(a.value)).toEqual(Array.from(binary));
      expect(a.headers).toEqual({ 'content-type': 'avro/binary', 'x-ünïcödé': '値' });
      expect(b.value.length).toBe(0);
      expect(b.headers).toEqual({});
      for (const r of got) {
        expect(r.appendTimeMs).toBeGreaterThanOrEqual(before);
        expect(r.appendTimeMs).toBeLessThanOrEqual(after);
      }
    });

    it('stores a copy: changing the value buffer after append() does not change the record', async () => {
      const { log } = await setup();
      const value = enc.encode('original');
      const pending = log.append([{ key: 'k', value }]);
      value.fill(0x58);
      await pending;
      const c = await log.consumer('copy');
      const [r] = await drain(c, 1);
      expect(text(r!)).toBe('original');
    });

    it('delivers every record exactly once to a consumer, in offset order per partition', async () => {
      const { log } = await setup({ partitions: 4 });
      const sent: string[] = [];
      for (let call = 0; call < 20; call++) {
        const records = Array.from({ length: 25 }, (_, i) => rec(`s${(call * 25 + i) % 13}`, `m${call * 25 + i}`));
        sent.push(...records.map((r) => dec.decode(r.value)));
        await log.append(records);
      }
      const c = await log.consumer('once');
      const got = await drain(c, sent.length, 37);
      expect(got.map(text).sort()).toEqual([...sent].sort());
      for (let p = 0; p < log.partitionCount; p++) {
        const offsets = got.filter((r) => r.partition === p).map((r) => r.offset);
        expect(offsets).toEqual(offsets.map((_, i) => i));
      }
      expect(await c.poll(10, 0)).toEqual([]);
    });

    it('returns at most maxRecords per poll', async () => {
      const { log } = await setup();
      await log.append(Array.from({ length: 50 }, (_, i) => rec('one-key', `${i}`)));
      const c = await log.consumer('max');
      const first = await c.poll(7, 1000);
      expect(first.map(text)).toEqual(['0', '1', '2', '3', '4', '5', '6']);
      const second = await c.poll(1, 1000);
      expect(second.map(text)).toEqual(['7']);
    });

    it('returns [] when nothing arrives within maxWaitMs, and at once for maxWaitMs 0', async () => {
      const { log } = await setup();
      const c = await log.consumer('idle');
      expect(await c.poll(10, 0)).toEqual([]);
      expect(await c.poll(10, 30)).toEqual([]);
    });

    it('wakes a waiting poll as soon as a record is appended (the wait is far longer than the test timeout)', async () => {
      const { log } = await setup();
      const c = await log.consumer('wake');
      const polled = c.poll(100, 120_000);
      setTimeout(() => void log.append([rec('late', 'hello')]), 30);
      const got = await polled;
      expect(got.map(text)).toEqual(['hello']);
    });

    it('resolves a pending poll with [] when its consumer closes', async () => {
      const { log } = await setup();
      const c = await log.consumer('closing');
      const polled = c.poll(10, 120_000);
      await new Promise((r) => setTimeout(r, 20));
      await c.close();
      expect(await polled).toEqual([]);
      await expectCode(c.poll(1, 0), 'log_closed');
    });

    it('redelivers records delivered but not committed to the next consumer of the group (at-least-once)', async () => {
      const { log } = await setup();
      await log.append(Array.from({ length: 10 }, (_, i) => rec('k', `${i}`)));
      const c1 = await log.consumer('alo');
      const first = await drain(c1, 10);
      await c1.commit(positionsAfter(first.slice(0, 4)));
      await c1.close();
      const c2 = await log.consumer('alo');
      const again = await drain(c2, 6);
      expect(again.map(text)).toEqual(['4', '5', '6', '7', '8', '9']);
    });

    it('commit() without arguments commits everything delivered', async () => {
      const { log } = await setup({ partitions: 2 });
      await log.append(Array.from({ length: 20 }, (_, i) => rec(`k${i}`, `${i}`)));
      const c1 = await log.consumer('all');
      await drain(c1, 20);
      await c1.commit();
      await c1.close();
      const c2 = await log.consumer('all');
      expect(await c2.poll(100, 50)).toEqual([]);
      await log.append([rec('k1', 'next')]);
      expect((await drain(c2, 1)).map(text)).toEqual(['next']);
    });

    it('keeps records and committed positions across close and reopen', async () => {
      const { log, reopen } = await setup({ partitions: 2 });
      const first = await log.append(Array.from({ length: 12 }, (_, i) => rec(`k${i % 3}`, `a${i}`)));
      const c = await log.consumer('durable');
      const got = await drain(c, 12);
      // A prefix of what was delivered is a prefix of each partition, so it is exactly what gets committed.
      await c.commit(positionsAfter(got.slice(0, 5)));
      const log2 = await reopen();
      expect(await log2.endOffsets()).toEqual(endFrom(first, 2));
      const more = await log2.append([rec('k0', 'b0')]);
      expect(more[0]!.offset).toBe(first.filter((r) => r.partition === more[0]!.partition).length);
      const c2 = await log2.consumer('durable');
      const redelivered = await drain(c2, 8);
      expect(redelivered.map(text).sort()).toEqual([...got.slice(5).map(text), 'b0'].sort());
      expect(await c2.poll(10, 30)).toEqual([]);
    });

    it('keeps consumer groups independent', async () => {
      const { log } = await setup();
      await log.append(Array.from({ length: 5 }, (_, i) => rec('k', `${i}`)));
      const a = await log.consumer('group-a');
      await drain(a, 5);
      await a.commit();
      const b = await log.consumer('group-b');
      expect((await drain(b, 5)).map(text)).toEqual(['0', '1', '2', '3', '4']);
    });

    it("starts a new group at the end with startFrom 'latest', and ignores startFrom once committed", async () => {
      const { log } = await setup();
      await log.append([rec('k', 'old')]);
      const c = await log.consumer('tail', { startFrom: 'latest' });
      expect(await c.poll(10, 30)).toEqual([]);
      await log.append([rec('k', 'new')]);
      expect((await drain(c, 1)).map(text)).toEqual(['new']);
      await c.close();
      await log.append([rec('k', 'newer')]);
      // Positions were fixed when the group joined; 'latest' does not skip ahead on rejoin.
      const again = await log.consumer('tail', { startFrom: 'latest' });
      expect((await drain(again, 2)).map(text)).toEqual(['new', 'newer']);
      await again.commit();
      await again.close();
      const earliest = await log.consumer('tail', { startFrom: 'earliest' });
      expect(await earliest.poll(10, 30)).toEqual([]);
    });

    it('starts a new group at the given offsets with startAt, refuses offsets outside the log, and ignores startAt once committed', async () => {
      const { log } = await setup({ partitions: 2 });
      const results = await log.append(Array.from({ length: 10 }, (_, i) => rec(`s${i % 3}`, `${i}`)));
      const ends = await log.endOffsets();
      const from = ends.map((e) => Math.min(e, 2));
      const c = await log.consumer('resume', { startAt: from });
      const got = await drain(c, ends.reduce((a, e, p) => a + e - from[p]!, 0));
      expect(got.every((r) => r.offset >= from[r.partition]!)).toBe(true);
      expect(got.length).toBe(results.filter((r) => r.offset >= from[r.partition]!).length);
      await c.commit();
      await c.close();
      const again = await log.consumer('resume', { startAt: ends.map(() => 0) });
      expect(await again.poll(10, 30)).toEqual([]);
      await again.close();
      await expectCode(log.consumer('beyond', { startAt: ends.map((e) => e + 1) }), 'log_offset_out_of_range');
      await expectCode(log.consumer('short', { startAt: [0] }), 'log_invalid_argument');
      // A refused start joins nothing: the group can still start elsewhere.
      const at0 = await log.consumer('beyond', { startAt: ends.map(() => 0) });
      expect((await drain(at0, 10)).length).toBe(10);
    });

    it('refuses to commit past what was delivered or back before the last commit', async () => {
      const { log } = await setup({ partitions: 1 });
      await log.append(Array.from({ length: 5 }, (_, i) => rec('k', `${i}`)));
      const c = await log.consumer('strict');
      await drain(c, 3, 3);
      await expectCode(c.commit([{ partition: 0, nextOffset: 4 }]), 'log_invalid_argument');
      await c.commit([{ partition: 0, nextOffset: 3 }]);
      await expectCode(c.commit([{ partition: 0, nextOffset: 1 }]), 'log_invalid_argument');
      await expectCode(c.commit([{ partition: 5, nextOffset: 0 }]), 'log_invalid_argument');
    });

    it('rejects a whole call containing a too-large record, appending none of it', async () => {
      const { log } = await setup({ maxRecordBytes: 4096 });
      await expectCode(log.append([rec('k', 'fine'), { key: 'k', value: new Uint8Array(5000) }]), 'log_record_too_large');
      expect((await log.endOffsets()).reduce((a, b) => a + b, 0)).toBe(0);
      await log.append([{ key: 'k', value: new Uint8Array(3000) }]);
      expect((await log.endOffsets()).reduce((a, b) => a + b, 0)).toBe(1);
    });

    it('rejects malformed records, group names and poll arguments with log_invalid_argument', async () => {
      const { log } = await setup();
      await expectCode(log.append([{ key: 'k', value: 'text' as unknown as Uint8Array }]), 'log_invalid_argument');
      await expectCode(log.append([{ key: 7 as unknown as string, value: new Uint8Array(1) }]), 'log_invalid_argument');
      await expectCode(log.append([{ key: 'k', value: new Uint8Array(1), headers: { h: 1 as unknown as string } }]), 'log_invalid_argument');
      await expectCode(log.consumer('no/slashes'), 'log_invalid_argument');
      await expectCode(log.consumer(''), 'log_invalid_argument');
      const c = await log.consumer('args');
      await expectCode(c.poll(0, 0), 'log_invalid_argument');
      await expectCode(c.poll(1, -1), 'log_invalid_argument');
    });

    it('finishes appends issued before close(), then rejects with log_closed; close is idempotent', async () => {
      const { log, under } = await setup({ partitions: 2 });
      const pending = Array.from({ length: 50 }, (_, i) => log.append([rec(`k${i}`, `${i}`)]));
      await log.close();
      const results = await Promise.all(pending);
      expect(results).toHaveLength(50);
      await log.close();
      await expectCode(log.append([rec('k', 'x')]), 'log_closed');
      await expectCode(log.consumer('after'), 'log_closed');
      const log2 = await under.open({ partitions: 2 });
      cleanups.push(() => log2.close());
      expect((await log2.endOffsets()).reduce((a, b) => a + b, 0)).toBe(50);
    });

    it('counts only appended records in endOffsets', async () => {
      const { log } = await setup({ partitions: 2 });
      expect(await log.endOffsets()).toEqual([0, 0]);
      const results = await log.append(Array.from({ length: 9 }, (_, i) => rec(`k${i}`, 'v')));
      expect(await log.endOffsets()).toEqual(endFrom(results, 2));
    });

    it('gives concurrent callers distinct, dense offsets', async () => {
      const { log } = await setup({ partitions: 3 });
      const results = (await Promise.all(Array.from({ length: 300 }, (_, i) => log.append([rec(`s${i % 11}`, `${i}`)])))).flat();
      for (let p = 0; p < 3; p++) {
        const offsets = results.filter((r) => r.partition === p).map((r) => r.offset).sort((a, b) => a - b);
        expect(offsets).toEqual(offsets.map((_, i) => i));
      }
      const c = await log.consumer('concurrent');
      const got = await drain(c, 300);
      expect(new Set(got.map(text)).size).toBe(300);
    });

    it('property: any sequence of appends is consumed as the same per-key sequences', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.array(fc.record({ key: fc.constantFrom('a', 'b', 'c', 'd', 'é'), value: fc.uint8Array({ maxLength: 64 }) }), { maxLength: 8 }), {
            minLength: 1,
            maxLength: 12,
          }),
          fc.integer({ min: 1, max: 4 }),
          fc.integer({ min: 1, max: 9 }),
          async (calls, partitions, pollSize) => {
            const under = await create();
            const log = await under.open({ partitions });
            try {
              for (const call of calls) await log.append(call);
              const sent = calls.flat();
              const c = await log.consumer('prop');
              const got = await drain(c, sent.length, pollSize);
              expect(await c.poll(1, 0)).toEqual([]);
              for (const key of new Set(sent.map((r) => r.key))) {
                const want = sent.filter((r) => r.key === key).map((r) => Array.from(r.value));
                expect(got.filter((r) => r.key === key).map((r) => Array.from(r.value))).toEqual(want);
              }
            } finally {
              await log.close();
              await under.dispose();
            }
          },
        ),
        { numRuns: 25 },
      );
    });
  });
}

function endFrom(results: readonly { partition: number; offset: number }[], partitions: number): number[] {
  const end = Array.from({ length: partitions }, () => 0);
  for (const r of results) end[r.partition] = Math.max(end[r.partition]!, r.offset + 1);
  return end;
}
