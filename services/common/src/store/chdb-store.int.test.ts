/**
 * The chdb adapter against the real ClickHouse engine (in-process), a fresh data directory per
 * test: the store conformance suite (store-conformance.ts), then what only the embedded store
 * does. chdb binds one data directory per process, so every test closes its store before the next
 * opens one.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ChdbEvidenceStore, type ChdbStoreOptions } from './chdb-store';
import { RowBinaryWriter, writeEventRow } from './rowbinary';
import { isStoreError } from './errors';
import type { StoredEvent } from './rows';
import { evidenceStoreConformance } from './store-conformance';
import { freshStoreDir, generateEventList, mainThreadCpuMs, type GeneratedEvent } from './testing';

const DAY_US = 86_400_000_000;
// Recent times: the TTL is measured from the wall clock, and events older than the retention
// would be dropped by the engine's merges while a test runs.
const startUs = Date.now() * 1000 - 10 * DAY_US;

let generated: GeneratedEvent[];
let events: StoredEvent[];
beforeAll(() => {
  generated = generateEventList({ count: 3_000, seed: 21, startUs, spanUs: 2 * DAY_US, cardRate: 0.3 });
  events = generated.map((g) => g.stored);
});

let store: ChdbEvidenceStore | undefined;
const cleanups: (() => Promise<void>)[] = [];

async function openStore(label: string, opts: Partial<ChdbStoreOptions> = {}, dir?: string): Promise<{ store: ChdbEvidenceStore; dir: string }> {
  let d = dir;
  if (d === undefined) {
    const fresh = await freshStoreDir(label);
    cleanups.push(fresh.remove);
    d = fresh.dir;
  }
  store = await ChdbEvidenceStore.open({ dataDir: d, retention: { days: 365 }, ...opts });
  return { store, dir: d };
}

afterEach(async () => {
  await store?.close();
  store = undefined;
  for (const c of cleanups.splice(0)) await c();
});

async function count(s: ChdbEvidenceStore, sql: string): Promise<number> {
  const r = await s.query(sql);
  return Number(r.rows[0]?.[0]);
}

evidenceStoreConformance(
  'chdb (embedded)',
  async () => {
    const fresh = await freshStoreDir('conformance');
    return {
      open: (o = {}) => ChdbEvidenceStore.open({ dataDir: fresh.dir, retention: o.retention ?? { days: 365 }, ...(o.migrationsDir === undefined ? {} : { migrationsDir: o.migrationsDir }), ...(o.dedupByEventId === undefined ? {} : { dedupByEventId: o.dedupByEventId }) }),
      dispose: fresh.remove,
    };
  },
  { sql: true, engineDedupOption: true },
);

describe('chdb specifics', () => {
  it('refuses retention below 365 days before touching the directory', async () => {
    const fresh = await freshStoreDir('short');
    cleanups.push(fresh.remove);
    const err = await ChdbEvidenceStore.open({ dataDir: join(fresh.dir, 'store'), retention: { days: 180 } }).catch((e: unknown) => e);
    expect(isStoreError(err, 'store_retention_too_short')).toBe(true);
    expect(await readdir(fresh.dir)).toEqual([]);
  });

  it('refuses a second store in the process, and calls on a closed store', async () => {
    const { store: s } = await openStore('busy');
    const other = await freshStoreDir('busy-other');
    cleanups.push(other.remove);
    await expect(ChdbEvidenceStore.open({ dataDir: other.dir, retention: { days: 365 } })).rejects.toMatchObject({ code: 'store_busy' });
    await s.close();
    await s.close();
    await expect(s.query('SELECT 1')).rejects.toMatchObject({ code: 'store_closed' });
    expect(() => s.stream('SELECT 1')).toThrow(/closed/);
    await expect(s.insertEvents(events.slice(0, 1), 't')).rejects.toMatchObject({ code: 'store_closed' });
    // The process slot is free again.
    const next = await ChdbEvidenceStore.open({ dataDir: other.dir, retention: { days: 365 } });
    store = next;
    expect(await count(next, 'SELECT 1')).toBe(1);
  });
});

describe('rows the caller encoded (insertEvents, encoded)', () => {
  const encode = (rows: readonly StoredEvent[]) => {
    const w = new RowBinaryWriter();
    const ends = rows.map((r) => {
      writeEventRow(w, r);
      return w.length;
    });
    return { bytes: Buffer.from(w.bytes()), ends };
  };
  const snapshot = async (s: ChdbEvidenceStore): Promise<string> => {
    const r = await s.query('SELECT toString(event_id), hex(event_bytes), payload, pci_requirements, actor_groups, outcome_status FROM events ORDER BY event_id', {}, { maxRows: 10_000 });
    return JSON.stringify(r.rows);
  };

  it('stores the same rows as the store’s own encoding, and still drops events it holds when a redelivery overlaps', async () => {
    const { store: a } = await openStore('enc-own');
    await a.migrate();
    await a.insertEvents(events.slice(0, 1_000), 'b1');
    await a.insertEvents(events.slice(500, 2_000), 'b2');
    const own = await snapshot(a);
    await a.close();

    const { store: b } = await openStore('enc-caller');
    await b.migrate();
    const r1 = await b.insertEvents(events.slice(0, 1_000), 'b1', encode(events.slice(0, 1_000)));
    // Overlapping redelivery under another token: the stored half is filtered out, the rest encoded by the store.
    const r2 = await b.insertEvents(events.slice(500, 2_000), 'b2', encode(events.slice(500, 2_000)));
    expect(r1).toMatchObject({ events: 1_000, duplicates: 0 });
    expect(r2).toMatchObject({ events: 1_500, duplicates: 500 });
    // A batch with a repeat inside: the encoding no longer matches the rows, so the store encodes them.
    const repeat = [...events.slice(2_000, 2_100), events[2_000] as StoredEvent];
    expect(await b.insertEvents(repeat, 'b3', encode(repeat))).toMatchObject({ events: 100, duplicates: 0 });
    expect(await count(b, 'SELECT count() FROM events')).toBe(2_100);
    expect(await count(b, 'SELECT uniqExact(event_id) FROM events')).toBe(2_100);
    // The 2,000 events both stores hold are stored byte for byte alike.
    expect(await snapshotOf(b, own)).toBe(own);
  });
});

/** The rows of `s` whose ids are in the snapshot `own`, as a snapshot. */
async function snapshotOf(s: ChdbEvidenceStore, own: string): Promise<string> {
  const ids = new Set((JSON.parse(own) as string[][]).map((r) => r[0]));
  const r = await s.query('SELECT toString(event_id), hex(event_bytes), payload, pci_requirements, actor_groups, outcome_status FROM events ORDER BY event_id', {}, { maxRows: 10_000 });
  return JSON.stringify(r.rows.filter((row) => ids.has(String(row[0]))));
}

describe('event loop', () => {
  it('measures how long the event loop stalls while a large insert and a heavy query run (reported, not asserted)', async () => {
    const { store: s } = await openStore('loop');
    await s.migrate();
    const big = generateEventList({ count: 20_000, seed: 5, startUs, spanUs: DAY_US }).map((g) => g.stored);
    const measure = async (label: string, fn: () => Promise<unknown>): Promise<{ maxMs: number; p99Ms: number; mainCpuMs: number; wallMs: number }> => {
      const h = monitorEventLoopDelay({ resolution: 1 });
      h.enable();
      const cpu0 = mainThreadCpuMs();
      const t0 = performance.now();
      await fn();
      const wallMs = performance.now() - t0;
      const mainCpuMs = mainThreadCpuMs() - cpu0;
      h.disable();
      const r = { maxMs: h.max / 1e6, p99Ms: h.percentile(99) / 1e6, mainCpuMs, wallMs };
      console.log(`[event loop] ${label}: wall ${wallMs.toFixed(0)} ms, main-thread CPU ${mainCpuMs.toFixed(0)} ms, loop delay p99 ${r.p99Ms.toFixed(1)} ms, max ${r.maxMs.toFixed(1)} ms`);
      expect(h.count).toBeGreaterThan(0);
      return r;
    };
    await measure('idle baseline (1 s)', () => new Promise((r) => setTimeout(r, 1_000)));
    await measure('insert 20k events', () => s.insertEvents(big, 'big'));
    await measure('heavy query (regex over every payload)', () => s.query("SELECT count() FROM events WHERE match(payload, '[0-9]{6}')"));
    await measure('engine-bound query (sipHash64 over 20M numbers)', () => s.query('SELECT max(sipHash64(number)) FROM numbers(20000000)'));
    expect(await count(s, 'SELECT count() FROM events')).toBe(20_000);
  });
});
