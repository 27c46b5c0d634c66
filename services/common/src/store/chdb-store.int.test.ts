/**
 * The chdb adapter against the real ClickHouse engine (in-process), a fresh data directory per
 * test. chdb binds one data directory per process, so every test closes its store before the next
 * opens one.
 */
import { createHash } from 'node:crypto';
import { copyFile, mkdtemp, readdir, rm, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decodeEvent } from '../events';
import { luhnNumber } from '../events/testing';
import { ChdbEvidenceStore, type ChdbStoreOptions } from './chdb-store';
import { isStoreError } from './errors';
import { DEFAULT_MIGRATIONS_DIR } from './migrations';
import { EVENT_COLUMNS, PAN_SIGHTING_COLUMNS, type StoredEvent } from './rows';
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

async function reopen(dir: string, opts: Partial<ChdbStoreOptions> = {}): Promise<ChdbEvidenceStore> {
  await store?.close();
  return (await openStore('reopen', opts, dir)).store;
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

describe('migrations', () => {
  it('applies every migration once: again, and after a reopen, nothing is applied', async () => {
    const { store: s, dir } = await openStore('migrate');
    const first = await s.migrate();
    expect(first.applied).toEqual(['001_events', '002_pan_sightings']);
    expect(first.alreadyApplied).toEqual([]);
    const second = await s.migrate();
    expect(second.applied).toEqual([]);
    expect(second.alreadyApplied).toEqual(['001_events', '002_pan_sightings']);
    const again = await (await reopen(dir)).migrate();
    expect(again.applied).toEqual([]);
    expect(await count(store as ChdbEvidenceStore, 'SELECT count() FROM attest_schema_migrations')).toBe(2);
  });

  it('declares a TTL of at least 365 days on every evidence table, as SHOW CREATE TABLE prints it', async () => {
    const { store: s } = await openStore('ttl');
    await s.migrate();
    for (const table of ['events', 'pan_sightings']) {
      const ddl = String((await s.query(`SHOW CREATE TABLE ${table}`)).rows[0]?.[0]);
      const m = /TTL toDateTime\(time\) \+ toIntervalDay\((\d+)\)/.exec(ddl);
      expect(m, ddl).not.toBeNull();
      expect(Number(m?.[1])).toBeGreaterThanOrEqual(365);
      expect(ddl).toMatch(/PARTITION BY toYYYYMM\(time\)/);
    }
  });

  it('refuses retention below 365 days before touching the directory', async () => {
    const fresh = await freshStoreDir('short');
    cleanups.push(fresh.remove);
    const err = await ChdbEvidenceStore.open({ dataDir: join(fresh.dir, 'store'), retention: { days: 180 } }).catch((e: unknown) => e);
    expect(isStoreError(err, 'store_retention_too_short')).toBe(true);
    expect(await readdir(fresh.dir)).toEqual([]);
  });

  it('with the explicit override, applies a short retention and returns the config.changed fields', async () => {
    const { store: s } = await openStore('override', { retention: { days: 90, allowBelowMinimum: true } });
    const r = await s.migrate();
    expect(r.retention).toMatchObject({ days: 90, previousDays: null, changed: true, belowMinimum: true });
    expect(r.retention.configChange).toMatchObject({ objectKind: 'retention', what: 'retention.days', change: 'created', newVersion: '90', override: true });
    expect(String((await s.query('SHOW CREATE TABLE events')).rows[0]?.[0])).toContain('toIntervalDay(90)');
  });

  it('moves every evidence table to a new retention and reports the change', async () => {
    const { store: s, dir } = await openStore('retention', { retention: { days: 400 } });
    await s.migrate();
    const r = await (await reopen(dir, { retention: { days: 730 } })).migrate();
    expect(r.retention).toMatchObject({ days: 730, previousDays: 400, changed: true });
    expect(r.retention.configChange).toMatchObject({ change: 'updated', oldVersion: '400', newVersion: '730', override: false });
    for (const table of ['events', 'pan_sightings']) {
      expect(String((await (store as ChdbEvidenceStore).query(`SHOW CREATE TABLE ${table}`)).rows[0]?.[0])).toContain('toIntervalDay(730)');
    }
  });

  it('refuses a migration that changed after it was applied, and a store with a migration the code lacks', async () => {
    const migrations = await mkdtemp(join(tmpdir(), 'attest-migrations-'));
    cleanups.push(() => rm(migrations, { recursive: true, force: true }));
    for (const f of await readdir(DEFAULT_MIGRATIONS_DIR)) await copyFile(join(DEFAULT_MIGRATIONS_DIR, f), join(migrations, f));
    const { store: s, dir } = await openStore('changed', { migrationsDir: migrations });
    await s.migrate();
    await appendFile(join(migrations, '002_pan_sightings.sql'), '\n-- an innocent-looking edit\n');
    await expect(s.migrate()).rejects.toMatchObject({ code: 'store_migration_changed' });
    await rm(join(migrations, '002_pan_sightings.sql'));
    await expect((await reopen(dir, { migrationsDir: migrations })).migrate()).rejects.toMatchObject({ code: 'store_migration_unknown' });
  });

  it('applies a new migration on top of applied ones', async () => {
    const migrations = await mkdtemp(join(tmpdir(), 'attest-migrations-'));
    cleanups.push(() => rm(migrations, { recursive: true, force: true }));
    for (const f of await readdir(DEFAULT_MIGRATIONS_DIR)) await copyFile(join(DEFAULT_MIGRATIONS_DIR, f), join(migrations, f));
    const { store: s } = await openStore('newer', { migrationsDir: migrations });
    await s.migrate();
    await writeFile(join(migrations, '003_notes.sql'), 'CREATE TABLE IF NOT EXISTS notes (id UInt32, note String) ENGINE = MergeTree ORDER BY id;\n');
    expect((await s.migrate()).applied).toEqual(['003_notes']);
    expect(await count(s, 'SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = \'notes\'')).toBe(1);
  });

  it('creates exactly the columns the insert path writes, with the same types', async () => {
    const { store: s } = await openStore('columns');
    await s.migrate();
    for (const [table, expected] of [
      ['events', EVENT_COLUMNS],
      ['pan_sightings', PAN_SIGHTING_COLUMNS],
    ] as const) {
      const described = (await s.query(`SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = {t:String} AND default_kind = '' ORDER BY position`, { t: table })).rows;
      expect(described.map(([n, t]) => [n, t])).toEqual(expected.map(([n, t]) => [n, t]));
    }
  });
});

describe('insertEvents', () => {
  it('stores each event once across redelivery, reopen, re-batching and repeats inside a batch', async () => {
    const { store: s, dir } = await openStore('dedup');
    await s.migrate();
    const sightings = events.reduce((n, e) => n + e.panSightings.length, 0);
    expect(sightings).toBeGreaterThan(0);
    expect(await s.insertEvents(events.slice(0, 2_000), 'p0:0-1999')).toEqual({
      events: 2_000,
      duplicates: 0,
      sightings: events.slice(0, 2_000).reduce((n, e) => n + e.panSightings.length, 0),
    });
    // The same batch again (the writer crashed before committing its log position).
    expect(await s.insertEvents(events.slice(0, 2_000), 'p0:0-1999')).toMatchObject({ duplicates: 2_000, sightings: 0 });
    // A restart, then redelivery with different batch boundaries and a repeat inside the batch.
    const s2 = await reopen(dir);
    const overlapping = [...events.slice(1_500, 3_000), ...events.slice(1_500, 1_510)];
    expect(await s2.insertEvents(overlapping, 'p0:1500-2999')).toMatchObject({ events: 1_500, duplicates: 500 });
    expect(await count(s2, 'SELECT count() FROM events')).toBe(events.length);
    expect(await count(s2, 'SELECT uniqExact(event_id) FROM events')).toBe(events.length);
    expect(await count(s2, 'SELECT count() FROM pan_sightings')).toBe(sightings);
    // Once more after another restart: still nothing new.
    const s3 = await reopen(dir);
    await s3.insertEvents(events, 'everything');
    expect(await count(s3, 'SELECT count() FROM events')).toBe(events.length);
    expect(await count(s3, 'SELECT count() FROM pan_sightings')).toBe(sightings);
  });

  it('completes the sightings of events that were stored without them (a crash between the two inserts)', async () => {
    const { store: s } = await openStore('sightings');
    await s.migrate();
    const carded = events.filter((e) => e.panSightings.length > 0).slice(0, 50);
    await s.insertEvents(
      carded.map((e) => ({ ...e, panSightings: [] })),
      'first-try',
    );
    expect(await count(s, 'SELECT count() FROM pan_sightings')).toBe(0);
    const r = await s.insertEvents(carded, 'redelivery');
    expect(r).toMatchObject({ duplicates: 50, sightings: carded.reduce((n, e) => n + e.panSightings.length, 0) });
    expect(await count(s, 'SELECT count() FROM events')).toBe(50);
  });

  it('the engine alone (insert_deduplication_token) drops a redelivered batch, also after a restart', async () => {
    // The id lookup off: what is left is ClickHouse's own deduplication, whose log of block ids
    // lives in the table directory (non_replicated_deduplication_window).
    const { store: s, dir } = await openStore('token', { dedupByEventId: false });
    await s.migrate();
    await s.insertEvents(events.slice(0, 500), 'p1:0-499');
    await s.insertEvents(events.slice(0, 500), 'p1:0-499');
    expect(await count(s, 'SELECT count() FROM events')).toBe(500);
    const s2 = await reopen(dir, { dedupByEventId: false });
    await s2.insertEvents(events.slice(0, 500), 'p1:0-499');
    expect(await count(s2, 'SELECT count() FROM events')).toBe(500);
    // ...but not a redelivery cut into other batches: that is what the id lookup is for.
    await s2.insertEvents(events.slice(250, 750), 'p1:250-749');
    expect(await count(s2, 'SELECT count() FROM events')).toBe(1_000);
    expect(await count(s2, 'SELECT uniqExact(event_id) FROM events')).toBe(750);
  });

  it('never lets a reused token drop different rows', async () => {
    const { store: s } = await openStore('reused');
    await s.migrate();
    await s.insertEvents(events.slice(0, 100), 'same');
    await s.insertEvents(events.slice(100, 200), 'same');
    expect(await count(s, 'SELECT count() FROM events')).toBe(200);
  });

  it('keeps the encoded events exactly as on the log: each decodes, hashes to its event_hash, and every chain links', async () => {
    const { store: s } = await openStore('bytes');
    await s.migrate();
    await s.insertEvents(events, 'all');
    const rows = (await s.query(
      "SELECT hex(event_bytes), hex(event_hash), hex(prev_hash), producer, producer_epoch, sequence, toString(event_id), toUnixTimestamp64Micro(time) FROM events ORDER BY producer, producer_epoch, sequence",
      {},
      { maxRows: 100_000 },
    )).rows;
    expect(rows).toHaveLength(events.length);
    const lastHash = new Map<string, string>();
    let linked = 0;
    for (const [bytesHex, hashHex, prevHex, producer, epoch, sequence, id, timeUs] of rows as [string, string, string, string, string, string, string, string][]) {
      const bytes = Buffer.from(bytesHex, 'hex');
      expect(createHash('sha256').update(bytes).digest('hex').toUpperCase()).toBe(hashHex);
      const decoded = decodeEvent(bytes).event;
      expect(decoded.metadata.eventId).toBe(id);
      expect(String(decoded.metadata.timeUs)).toBe(timeUs);
      if (Number(sequence) === 0) continue; // checkpoints sit outside the chain
      const key = `${producer}/${epoch}`;
      const prev = lastHash.get(key);
      if (prev !== undefined) {
        expect(prevHex).toBe(prev);
        linked += 1;
      }
      lastHash.set(key, hashHex);
    }
    expect(linked).toBeGreaterThan(events.length * 0.8);
  });

  it('refuses an empty token and a malformed row, and writes nothing for them', async () => {
    const { store: s } = await openStore('refuse');
    await s.migrate();
    await expect(s.insertEvents(events.slice(0, 1), '')).rejects.toMatchObject({ code: 'store_invalid_argument' });
    const bad = { ...(events[0] as StoredEvent), eventHash: new Uint8Array(5) };
    await expect(s.insertEvents([bad], 't')).rejects.toMatchObject({ code: 'store_row_invalid', where: 'eventHash' });
    expect(await count(s, 'SELECT count() FROM events')).toBe(0);
    expect(await s.insertEvents([], 't')).toEqual({ events: 0, duplicates: 0, sightings: 0 });
  });
});

describe('query and stream', () => {
  it('binds parameters as values, never as SQL', async () => {
    const { store: s } = await openStore('bind');
    await s.migrate();
    await s.insertEvents(events.slice(0, 200), 't');
    const hostile = "x' OR 1=1 OR session_id = '";
    expect((await s.query('SELECT count() FROM events WHERE session_id = {s:String}', { s: hostile })).rows).toEqual([['0']]);
    const sid = events[0]?.sessionId ?? '';
    const expected = events.slice(0, 200).filter((e) => e.sessionId === sid).length;
    expect((await s.query('SELECT count() FROM events WHERE session_id = {s:String}', { s: sid })).rows).toEqual([[String(expected)]]);
    const types = ['auth.failed', 'policy.decided'];
    const r = await s.query('SELECT count() FROM events WHERE type IN {types:Array(String)}', { types });
    expect(Number(r.rows[0]?.[0])).toBe(events.slice(0, 200).filter((e) => types.includes(e.type)).length);
  });

  it('caps results at maxRows and says so; columns carry ClickHouse types; 64-bit integers are exact strings', async () => {
    const { store: s } = await openStore('cap');
    await s.migrate();
    await s.insertEvents(events, 't');
    const r = await s.query('SELECT toString(event_id) AS id, sequence, time FROM events ORDER BY time', {}, { maxRows: 10 });
    expect(r.rows).toHaveLength(10);
    expect(r.truncated).toBe(true);
    expect(r.columns).toEqual([
      { name: 'id', type: 'String' },
      { name: 'sequence', type: 'UInt64' },
      { name: 'time', type: "DateTime64(6, 'UTC')" },
    ]);
    expect(typeof r.rows[0]?.[1]).toBe('string');
    const all = await s.query('SELECT 1 FROM events', {}, { maxRows: events.length });
    expect(all.truncated).toBe(false);
    const none = await s.query('SELECT 1 AS x WHERE 0');
    expect(none).toEqual({ columns: [{ name: 'x', type: 'UInt8' }], rows: [], truncated: false });
  });

  it('streams a large result chunk by chunk, in order, and can stop early', async () => {
    const { store: s } = await openStore('stream');
    await s.migrate();
    const stream = s.stream('SELECT number FROM numbers(100000)');
    let n = 0;
    let last = -1;
    for await (const row of stream) {
      const v = Number(row[0]);
      expect(v).toBe(last + 1);
      last = v;
      n += 1;
    }
    expect(n).toBe(100_000);
    expect(await stream.columns).toEqual([{ name: 'number', type: 'UInt64' }]);
    const early = s.stream('SELECT number FROM numbers(10000000)');
    for await (const row of early) if (Number(row[0]) >= 5) break;
    // Reads run on their own connections: an abandoned stream does not hold up the next query.
    expect(await count(s, 'SELECT 42')).toBe(42);
  });

  it('maps engine errors to stable codes and never echoes a long digit run', async () => {
    const { store: s } = await openStore('errors');
    await s.migrate();
    const syntax = await s.query('SELEC 1').catch((e: unknown) => e);
    expect(syntax).toMatchObject({ code: 'store_query_failed', retriable: false, clickhouseCode: 62 });
    const missing = await s.query('SELECT * FROM no_such_table').catch((e: unknown) => e);
    expect(missing).toMatchObject({ code: 'store_query_failed', clickhouseCode: 60 });
    const digits = luhnNumber('4', 16);
    const parse = await s.query('SELECT toDate({d:String})', { d: `x${digits}` }).catch((e: unknown) => e);
    expect(isStoreError(parse)).toBe(true);
    expect(String((parse as Error).message)).not.toContain(digits);
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
