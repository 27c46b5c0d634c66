/**
 * The evidence writer against a scripted log (what each poll returns is fixed by the test) and the
 * in-memory store: the delivery order of a Kafka consumer under a backlog, with an injected clock.
 * The real components end to end are in test/evidence-writer.int.test.ts.
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { EvidenceEmitter } from '../../common/src/evidence/emitter';
import { chainEvent, decodeEvent, encodeEvent, newEvent, type EventType, type UnchainedEvent } from '../../common/src/events';
import { SAMPLE_PARTS } from '../../common/src/events/fixtures';
import { sha256 } from '../../common/src/integrity';
import type { ConsumedRecord, ConsumerPosition, EventLog, LogConsumer } from '../../common/src/log';
import { MemoryEvidenceStore } from '../../common/src/store';
import { EvidenceWriter } from './evidence-writer';

const EPOCH = '019b76da-a800-7000-8000-0000000000aa';
const TYPES: EventType[] = ['gateway.request.received', 'policy.decided', 'gateway.request.forwarded', 'gateway.response.completed'];

/** One producer's intact chain of `n` encoded events. */
function chainBytes(n: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let prev: Uint8Array = new Uint8Array(32);
  for (let s = 1; s <= n; s++) {
    const type = TYPES[s % TYPES.length]!;
    const bytes = encodeEvent(chainEvent(newEvent(type, SAMPLE_PARTS[type], { producer: { id: 'gw-backlog', epoch: EPOCH } }), { sequence: s, prevHash: prev }));
    out.push(bytes);
    prev = sha256(bytes);
  }
  return out;
}

/** A log whose consumer returns the scripted polls in order, then [] (caught up). */
function scriptedLog(partitions: ConsumedRecord[][], polls: ConsumedRecord[][], onPoll: () => void): EventLog {
  let next = 0;
  const consumer: LogConsumer = {
    group: 'evidence-writer',
    async poll() {
      onPoll();
      return polls[next++] ?? [];
    },
    async commit(_positions?: readonly ConsumerPosition[]) {},
    async close() {},
  };
  return {
    partitionCount: partitions.length,
    append: () => Promise.reject(new Error('not in this test')),
    consumer: async () => consumer,
    endOffsets: async () => partitions.map((p) => p.length),
    close: async () => {},
  };
}

/** Counts the findings the writer emits, by detector. */
function findingSink(): { emitter: EvidenceEmitter; byDetector: Map<string, number> } {
  const byDetector = new Map<string, number>();
  const emitter = {
    producer: { id: 'evidence-writer-test', epoch: 'e' },
    build: (_type: string, parts: { payload: { detectorId: string } }) => parts,
    emit: async (events: readonly UnchainedEvent<'finding.opened'>[]) => {
      for (const e of events as unknown as { payload: { detectorId: string } }[]) byDetector.set(e.payload.detectorId, (byDetector.get(e.payload.detectorId) ?? 0) + 1);
      return [];
    },
  } as unknown as EvidenceEmitter;
  return { emitter, byDetector };
}

describe('evidence writer chain check under a backlog', () => {
  it('a partition read far behind the others raises no gap or late-event finding (it used to raise one per held event)', async () => {
    // One producer's 4 000 events alternate between two partitions, appended 1 ms apart from 5 s
    // after the writer started. The writer is behind: the consumer hands out partition 0 in polls of
    // 50 (with a few records of partition 1 first, as a Kafka fetch covers every partition), then
    // the rest of partition 1. Each poll takes 1 s of the writer's clock, so partition 1's records
    // arrive 40 s (of wall clock) after their neighbours in partition 0: longer than maxHoldMs.
    const bytes = chainBytes(4_000);
    const partitions: ConsumedRecord[][] = [[], []];
    bytes.forEach((value, i) => {
      const p = i % 2;
      partitions[p]!.push({ key: `s${p}`, value, headers: {}, partition: p, offset: partitions[p]!.length, appendTimeMs: 5_000 + i });
    });
    const [p0, p1] = partitions as [ConsumedRecord[], ConsumedRecord[]];
    const polls: ConsumedRecord[][] = [[...p1.slice(0, 10), ...p0.slice(0, 50)]];
    for (let at = 50; at < p0.length; at += 50) polls.push(p0.slice(at, at + 50));
    for (let at = 10; at < p1.length; at += 50) polls.push(p1.slice(at, at + 50));

    let clock = 0;
    const log = scriptedLog(partitions, polls, () => (clock += 1_000));
    const store = new MemoryEvidenceStore({ retention: { days: 365 } });
    await store.migrate();
    const { emitter, byDetector } = findingSink();
    const writer = new EvidenceWriter({ log, store, emitter, logger: pino({ level: 'silent' }), now: () => clock, reorderWindowMs: 2_000, maxHoldMs: 30_000 });
    await writer.start();
    await writer.idle();
    await writer.stop();

    expect(writer.stats.lastError).toBeUndefined();
    expect(writer.stats.eventsWritten).toBe(4_000);
    expect(Object.fromEntries(byDetector)).toEqual({});
    expect(writer.stats.findingsEmitted).toBe(0);
    expect(writer.stats.chainPending).toBe(0);
    await store.close();
  });

  it('a real hole is still declared once every partition has been read past it', async () => {
    const bytes = chainBytes(40);
    const partitions: ConsumedRecord[][] = [[], []];
    bytes.forEach((value, i) => {
      if (i + 1 === 17) return; // sequence 17 never reaches the log
      const p = i % 2;
      partitions[p]!.push({ key: `s${p}`, value, headers: {}, partition: p, offset: partitions[p]!.length, appendTimeMs: 5_000 + i });
    });
    let clock = 0;
    const log = scriptedLog(partitions, [partitions[0]!, partitions[1]!], () => (clock += 1_000));
    const store = new MemoryEvidenceStore({ retention: { days: 365 } });
    await store.migrate();
    const { emitter, byDetector } = findingSink();
    const writer = new EvidenceWriter({ log, store, emitter, logger: pino({ level: 'silent' }), now: () => clock, reorderWindowMs: 2_000 });
    await writer.start();
    await writer.idle();
    await writer.stop();

    expect(Object.fromEntries(byDetector)).toEqual({ 'evidence-writer.chain_gap': 1 });
    expect(writer.stats.eventsWritten).toBe(39);
    await store.close();
  });

  it('a record stamped before it became readable (fsync, replication) does not turn into a gap and a late event', async () => {
    // Sequence 2 is stamped with the same append time as 1 and 3 but becomes readable (is counted
    // in the end offsets) only four polls later, as a slow fsync of its partition would make it.
    // Each poll takes 40 ms of the writer's clock against a 50 ms reorder window: judged from the
    // end offsets' read time alone, the hole would be declared while the record is on its way.
    const [b1, b2, b3] = chainBytes(3) as [Uint8Array, Uint8Array, Uint8Array];
    const rec = (value: Uint8Array, partition: number, offset: number): ConsumedRecord => ({ key: `s${partition}`, value, headers: {}, partition, offset, appendTimeMs: 10_000 });
    const p0 = [rec(b1, 0, 0), rec(b3, 0, 1)];
    const p1 = [rec(b2, 1, 0)];
    let clock = 10_000; // the moment the three were appended
    let polls = 0;
    const visible = (): number[] => [p0.length, polls >= 5 ? 1 : 0];
    const consumer: LogConsumer = {
      group: 'evidence-writer',
      async poll() {
        polls++;
        clock += 40;
        if (polls === 1) return p0;
        if (polls === 5) return p1;
        return [];
      },
      async commit() {},
      async close() {},
    };
    const log: EventLog = {
      partitionCount: 2,
      append: () => Promise.reject(new Error('not in this test')),
      consumer: async () => consumer,
      endOffsets: async () => visible(),
      close: async () => {},
    };
    const store = new MemoryEvidenceStore({ retention: { days: 365 } });
    await store.migrate();
    const { emitter, byDetector } = findingSink();
    const writer = new EvidenceWriter({ log, store, emitter, logger: pino({ level: 'silent' }), now: () => clock, reorderWindowMs: 50 });
    await writer.start();
    await writer.idle();
    await writer.stop();

    expect(Object.fromEntries(byDetector)).toEqual({});
    expect(writer.stats.eventsWritten).toBe(3);
    await store.close();
  });
});

describe('evidence writer rows', () => {
  it('hands leftToContentStage the event as the codec decodes it (read lazily), stores the rest, and chain-checks all', async () => {
    const bytes = chainBytes(24);
    const partition: ConsumedRecord[] = bytes.map((value, i) => ({ key: 's', value, headers: {}, partition: 0, offset: i, appendTimeMs: 5_000 + i }));
    let clock = 0;
    const log = scriptedLog([partition], [partition.slice(0, 10), partition.slice(10)], () => (clock += 1_000));
    const store = new MemoryEvidenceStore({ retention: { days: 365 } });
    await store.migrate();
    const { emitter, byDetector } = findingSink();
    const seen: { type: string; event: unknown }[] = [];
    const writer = new EvidenceWriter({
      log, store, emitter, logger: pino({ level: 'silent' }), now: () => clock, reorderWindowMs: 50, maxBatchRecords: 1_000,
      leftToContentStage: (e) => {
        seen.push({ type: e.metadata.type, event: { metadata: e.metadata, actor: e.actor, source: e.source, target: e.target, outcome: e.outcome, correlation: e.correlation, payload: e.payload } });
        return e.metadata.type === 'gateway.response.completed';
      },
    });
    await writer.start();
    await writer.idle();
    await writer.stop();

    expect(writer.stats.lastError).toBeUndefined();
    expect(seen.map((s) => s.type)).toEqual(bytes.map((b) => decodeEvent(b).type));
    seen.forEach((s, i) => expect(s.event).toEqual({ ...decodeEvent(bytes[i] as Uint8Array).event }));
    // One in four is a response (left to the content stage); the other 18 are stored.
    expect(writer.stats.eventsWritten).toBe(18);
    expect(store.storage.events.map((r) => r.type).filter((t) => t === 'gateway.response.completed')).toEqual([]);
    expect(store.storage.events).toHaveLength(18);
    expect(Object.fromEntries(byDetector)).toEqual({});
    await store.close();
  });
});
