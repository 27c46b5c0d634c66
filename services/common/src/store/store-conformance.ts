/**
 * The evidence-store conformance suite: one set of behavioural tests every EvidenceStore adapter
 * must pass (the embedded chdb store, the ClickHouse server store, and, for what it offers, the
 * in-memory twin). Call it from an adapter's test file:
 *
 *   evidenceStoreConformance('chdb', async () => chdbUnderTest(), { sql: true });
 *
 * It promises: migrations applied once and recorded, refused when changed or unknown; retention
 * of at least 365 days unless overridden, reported as the config.changed fields and declared as
 * the tables' TTL; idempotent inserts (redelivery under the same token, after a reopen,
 * re-batched, repeats inside a batch, sightings completed, a reused token never drops other rows);
 * argument checks; bound parameters, row caps, exact 64-bit integers, streaming and early stop,
 * stable error codes; the close rules; and the evidence queries' results against an oracle
 * computed from the generated events. Adapter-specific behaviour (data directories, one engine per
 * process, HTTP, users) is tested beside each adapter.
 */
import { createHash } from 'node:crypto';
import { appendFile, copyFile, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decodeEvent } from '../events';
import { luhnNumber } from '../events/testing';
import { isStoreError } from './errors';
import { EVIDENCE_QUERIES, runEvidenceQuery, type EvidenceResult } from './evidence-queries';
import { DEFAULT_MIGRATIONS_DIR, loadMigrations } from './migrations';
import type { EvidenceStore, RetentionPolicy, Row } from './port';
import { EVENT_COLUMNS, PAN_SIGHTING_COLUMNS, type StoredEvent } from './rows';
import { cardFingerprint, generateEventList, type GeneratedEvent } from './testing';

export interface StoreOpenOptions {
  readonly retention?: RetentionPolicy;
  readonly migrationsDir?: string;
  /** false: only the engine's insert_deduplication_token guards against redelivery. */
  readonly dedupByEventId?: boolean;
}

/** One isolated store (a data directory, a database) that can be opened again after close. */
export interface StoreUnderTest {
  /** Opens the store; a later open after close() sees the same rows. Retention defaults to 365 days. */
  open(opts?: StoreOpenOptions): Promise<EvidenceStore>;
  dispose(): Promise<void>;
}

export interface StoreConformanceOptions {
  /** The store runs SQL (query, stream, DDL migrations, evidence queries). False for the in-memory twin. */
  readonly sql: boolean;
  /** The adapter honours `dedupByEventId: false`. */
  readonly engineDedupOption?: boolean;
  /** What is stored, for a store without SQL. */
  readonly inspect?: (store: EvidenceStore) => Promise<StoredCounts>;
}

export interface StoredCounts {
  readonly events: number;
  readonly uniqueEvents: number;
  readonly sightings: number;
}

const DAY_US = 86_400_000_000;
const ALL = { maxRows: 1_000_000 };

async function sqlCounts(store: EvidenceStore): Promise<StoredCounts> {
  const r = await store.query('SELECT (SELECT count() FROM events), (SELECT uniqExact(event_id) FROM events), (SELECT count() FROM pan_sightings)');
  const [events, unique, sightings] = (r.rows[0] ?? []).map(Number);
  return { events: events ?? NaN, uniqueEvents: unique ?? NaN, sightings: sightings ?? NaN };
}

const sightingsOf = (events: readonly StoredEvent[]): number => events.reduce((n, e) => n + e.panSightings.length, 0);

export function evidenceStoreConformance(adapter: string, create: () => Promise<StoreUnderTest>, conf: StoreConformanceOptions): void {
  const counts = conf.inspect ?? sqlCounts;

  describe(`EvidenceStore conformance: ${adapter}`, () => {
    // Recent times: the TTL counts from the wall clock, and older events could be merged away.
    const startUs = Date.now() * 1000 - 10 * DAY_US;
    let events: StoredEvent[] = [];
    beforeAll(() => {
      events = generateEventList({ count: 3_000, seed: 21, startUs, spanUs: 2 * DAY_US, cardRate: 0.3 }).map((g) => g.stored);
    });

    const cleanups: (() => Promise<void>)[] = [];
    afterEach(async () => {
      for (const c of cleanups.splice(0).reverse()) await c();
    });

    /** A fresh store; `reopen` closes the current one and opens the same data again. */
    async function setup(opts: StoreOpenOptions = {}): Promise<{ store: EvidenceStore; reopen: (o?: StoreOpenOptions) => Promise<EvidenceStore>; under: StoreUnderTest }> {
      const under = await create();
      let current: EvidenceStore | undefined;
      cleanups.push(async () => {
        await current?.close();
        await under.dispose();
      });
      current = await under.open(opts);
      return {
        store: current,
        under,
        reopen: async (o = opts) => {
          await current?.close();
          current = undefined;
          current = await under.open(o);
          return current;
        },
      };
    }

    async function copyOfMigrations(): Promise<string> {
      const dir = await mkdtemp(join(tmpdir(), 'attest-migrations-'));
      cleanups.push(() => rm(dir, { recursive: true, force: true }));
      for (const f of await readdir(DEFAULT_MIGRATIONS_DIR)) await copyFile(join(DEFAULT_MIGRATIONS_DIR, f), join(dir, f));
      return dir;
    }

    describe('migrations and retention', () => {
      it('migrates once: again, and after a reopen, nothing is applied and retention is unchanged', async () => {
        const { store, reopen } = await setup();
        const first = await store.migrate();
        expect(first.retention).toMatchObject({ days: 365, previousDays: null, changed: true, belowMinimum: false });
        expect(first.retention.configChange).toMatchObject({ objectKind: 'retention', change: 'created', newVersion: '365', override: false });
        const ids = conf.sql ? loadMigrations().map((m) => m.id) : [];
        expect(first.applied).toEqual(ids);
        const second = await store.migrate();
        expect(second).toMatchObject({ applied: [], alreadyApplied: ids });
        expect(second.retention).toMatchObject({ changed: false, configChange: null });
        const again = await (await reopen()).migrate();
        expect(again.applied).toEqual([]);
        expect(again.retention).toMatchObject({ days: 365, previousDays: 365, changed: false });
      });

      it('refuses retention below 365 days unless overridden; the override is reported', async () => {
        const under = await create();
        cleanups.push(() => under.dispose());
        const err = await under.open({ retention: { days: 180 } }).catch((e: unknown) => e);
        expect(isStoreError(err, 'store_retention_too_short')).toBe(true);
        expect((err as { fix?: string }).fix).toMatch(/365/);
        const store = await under.open({ retention: { days: 90, allowBelowMinimum: true } });
        cleanups.push(() => store.close());
        const r = await store.migrate();
        expect(r.retention).toMatchObject({ days: 90, previousDays: null, changed: true, belowMinimum: true });
        expect(r.retention.configChange).toMatchObject({ objectKind: 'retention', what: 'retention.days', change: 'created', newVersion: '90', override: true });
      });

      it('moves to a new retention on reopen and reports the change', async () => {
        const { store, reopen } = await setup({ retention: { days: 400 } });
        await store.migrate();
        const s2 = await reopen({ retention: { days: 730 } });
        const r = await s2.migrate();
        expect(r.retention).toMatchObject({ days: 730, previousDays: 400, changed: true });
        expect(r.retention.configChange).toMatchObject({ change: 'updated', oldVersion: '400', newVersion: '730', override: false });
        if (conf.sql) {
          for (const table of ['events', 'pan_sightings']) {
            expect(String((await s2.query(`SHOW CREATE TABLE ${table}`)).rows[0]?.[0])).toContain('toIntervalDay(730)');
          }
        }
      });

      if (conf.sql) {
        it('declares the TTL on every evidence table, partitioned by month, with the dedup window', async () => {
          const { store } = await setup();
          await store.migrate();
          for (const table of ['events', 'pan_sightings']) {
            const ddl = String((await store.query(`SHOW CREATE TABLE ${table}`)).rows[0]?.[0]);
            expect(Number(/TTL toDateTime\(time\) \+ toIntervalDay\((\d+)\)/.exec(ddl)?.[1])).toBe(365);
            expect(ddl).toMatch(/PARTITION BY toYYYYMM\(time\)/);
            expect(ddl).toMatch(/non_replicated_deduplication_window = [1-9]/);
          }
        });

        it('creates exactly the columns the insert path writes, with the same types', async () => {
          const { store } = await setup();
          await store.migrate();
          for (const [table, expected] of [
            ['events', EVENT_COLUMNS],
            ['pan_sightings', PAN_SIGHTING_COLUMNS],
          ] as const) {
            const described = (await store.query(`SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = {t:String} AND default_kind = '' ORDER BY position`, { t: table })).rows;
            expect(described.map(([n, t]) => [n, t])).toEqual(expected.map(([n, t]) => [n, t]));
          }
        });

        it('refuses a changed migration and a store with a migration the code lacks; applies a new one', async () => {
          const dir = await copyOfMigrations();
          const { store, reopen } = await setup({ migrationsDir: dir });
          await store.migrate();
          await writeFile(join(dir, '900_notes.sql'), 'CREATE TABLE IF NOT EXISTS notes (id UInt32, note String) ENGINE = MergeTree ORDER BY id;\n');
          expect((await store.migrate()).applied).toEqual(['900_notes']);
          expect((await store.query("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'notes'")).rows).toEqual([['1']]);
          await appendFile(join(dir, '900_notes.sql'), '\n-- an innocent-looking edit\n');
          await expect(store.migrate()).rejects.toMatchObject({ code: 'store_migration_changed' });
          await rm(join(dir, '900_notes.sql'));
          await expect((await reopen({ migrationsDir: dir })).migrate()).rejects.toMatchObject({ code: 'store_migration_unknown' });
        });
      }
    });

    describe('insertEvents', () => {
      it('stores each event once across redelivery, reopen, re-batching and repeats inside a batch', async () => {
        const { store, reopen } = await setup();
        await store.migrate();
        const sightings = sightingsOf(events);
        expect(sightings).toBeGreaterThan(0);
        expect(await store.insertEvents(events.slice(0, 2_000), 'p0:0-1999')).toEqual({ events: 2_000, duplicates: 0, sightings: sightingsOf(events.slice(0, 2_000)) });
        // The same batch again (the writer crashed before committing its log position).
        expect(await store.insertEvents(events.slice(0, 2_000), 'p0:0-1999')).toMatchObject({ duplicates: 2_000, sightings: 0 });
        // A restart, then redelivery cut differently, with a repeat inside the batch.
        const s2 = await reopen();
        const overlapping = [...events.slice(1_500, 3_000), ...events.slice(1_500, 1_510)];
        expect(await s2.insertEvents(overlapping, 'p0:1500-2999')).toMatchObject({ events: 1_500, duplicates: 500 });
        expect(await counts(s2)).toEqual({ events: events.length, uniqueEvents: events.length, sightings });
        const s3 = await reopen();
        await s3.insertEvents(events, 'everything');
        expect(await counts(s3)).toEqual({ events: events.length, uniqueEvents: events.length, sightings });
      });

      it('completes the sightings of events stored without them (a crash between the two inserts)', async () => {
        const { store } = await setup();
        await store.migrate();
        const carded = events.filter((e) => e.panSightings.length > 0).slice(0, 50);
        await store.insertEvents(
          carded.map((e) => ({ ...e, panSightings: [] })),
          'first-try',
        );
        expect((await counts(store)).sightings).toBe(0);
        expect(await store.insertEvents(carded, 'redelivery')).toMatchObject({ duplicates: 50, sightings: sightingsOf(carded) });
        expect(await counts(store)).toEqual({ events: 50, uniqueEvents: 50, sightings: sightingsOf(carded) });
      });

      it('never lets a reused token drop different rows', async () => {
        const { store } = await setup();
        await store.migrate();
        await store.insertEvents(events.slice(0, 100), 'same');
        await store.insertEvents(events.slice(100, 200), 'same');
        expect((await counts(store)).events).toBe(200);
      });

      if (conf.engineDedupOption === true) {
        it('the engine alone (insert_deduplication_token) drops a redelivered batch, also after a reopen, but not a re-batched one', async () => {
          const { store, reopen } = await setup({ dedupByEventId: false });
          await store.migrate();
          await store.insertEvents(events.slice(0, 500), 'p1:0-499');
          await store.insertEvents(events.slice(0, 500), 'p1:0-499');
          expect((await counts(store)).events).toBe(500);
          const s2 = await reopen();
          await s2.insertEvents(events.slice(0, 500), 'p1:0-499');
          expect((await counts(s2)).events).toBe(500);
          // A redelivery cut into other batches is what the id lookup is for.
          await s2.insertEvents(events.slice(250, 750), 'p1:250-749');
          expect(await counts(s2)).toMatchObject({ events: 1_000, uniqueEvents: 750 });
        });
      }

      it('refuses an empty token and a malformed row, and writes nothing for them', async () => {
        const { store } = await setup();
        await store.migrate();
        await expect(store.insertEvents(events.slice(0, 1), '')).rejects.toMatchObject({ code: 'store_invalid_argument', where: 'dedupToken' });
        const bad = { ...(events[0] as StoredEvent), eventHash: new Uint8Array(5) };
        await expect(store.insertEvents([bad], 't')).rejects.toMatchObject({ code: 'store_row_invalid', where: 'eventHash' });
        expect((await counts(store)).events).toBe(0);
        expect(await store.insertEvents([], 't')).toEqual({ events: 0, duplicates: 0, sightings: 0 });
      });

      it('refuses every call once closed; close is idempotent', async () => {
        const { store } = await setup();
        await store.migrate();
        await store.close();
        await store.close();
        await expect(store.insertEvents(events.slice(0, 1), 't')).rejects.toMatchObject({ code: 'store_closed' });
        await expect(store.migrate()).rejects.toMatchObject({ code: 'store_closed' });
        if (conf.sql) {
          await expect(store.query('SELECT 1')).rejects.toMatchObject({ code: 'store_closed' });
          expect(() => store.stream('SELECT 1')).toThrow(/closed/);
        }
      });
    });

    if (!conf.sql) return;

    describe('query and stream', () => {
      it('keeps the encoded events exactly as on the log: each decodes, hashes to its event_hash, and chains link', async () => {
        const { store } = await setup();
        await store.migrate();
        await store.insertEvents(events, 'all');
        const rows = (await store.query(
          'SELECT hex(event_bytes), hex(event_hash), hex(prev_hash), producer, producer_epoch, sequence, toString(event_id), toUnixTimestamp64Micro(time) FROM events ORDER BY producer, producer_epoch, sequence',
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

      it('binds parameters as values, never as SQL', async () => {
        const { store } = await setup();
        await store.migrate();
        const some = events.slice(0, 200);
        await store.insertEvents(some, 't');
        const hostile = "x' OR 1=1 OR session_id = '";
        expect((await store.query('SELECT count() FROM events WHERE session_id = {s:String}', { s: hostile })).rows).toEqual([['0']]);
        const sid = some[0]?.sessionId ?? '';
        expect((await store.query('SELECT count() FROM events WHERE session_id = {s:String}', { s: sid })).rows).toEqual([[String(some.filter((e) => e.sessionId === sid).length)]]);
        const types = ['auth.failed', 'policy.decided'];
        const r = await store.query('SELECT count() FROM events WHERE type IN {types:Array(String)}', { types });
        expect(Number(r.rows[0]?.[0])).toBe(some.filter((e) => types.includes(e.type)).length);
        // Text that needs escaping on every wire: tabs, newlines, quotes, backslashes, non-ASCII.
        const tricky = "a\tb\nc'd\\e\"f — ü";
        expect((await store.query('SELECT {s:String} AS s, length({s:String}) AS n', { s: tricky })).rows).toEqual([[tricky, String(Buffer.byteLength(tricky))]]);
      });

      it('caps results at maxRows and says so; columns carry ClickHouse types; 64-bit integers are exact strings', async () => {
        const { store } = await setup();
        await store.migrate();
        await store.insertEvents(events, 't');
        const r = await store.query('SELECT toString(event_id) AS id, sequence, time FROM events ORDER BY time', {}, { maxRows: 10 });
        expect(r.rows).toHaveLength(10);
        expect(r.truncated).toBe(true);
        expect(r.columns).toEqual([
          { name: 'id', type: 'String' },
          { name: 'sequence', type: 'UInt64' },
          { name: 'time', type: "DateTime64(6, 'UTC')" },
        ]);
        expect(typeof r.rows[0]?.[1]).toBe('string');
        expect((await store.query('SELECT toUInt64(18446744073709551615) AS big')).rows).toEqual([['18446744073709551615']]);
        expect((await store.query('SELECT 1 FROM events', {}, { maxRows: events.length })).truncated).toBe(false);
        expect(await store.query('SELECT 1 AS x WHERE 0')).toEqual({ columns: [{ name: 'x', type: 'UInt8' }], rows: [], truncated: false });
      });

      it('streams a large result in order, and can stop early without holding up the next query', async () => {
        const { store } = await setup();
        await store.migrate();
        const stream = store.stream('SELECT number FROM numbers(100000)');
        let n = 0;
        for await (const row of stream) {
          expect(Number(row[0])).toBe(n);
          n += 1;
        }
        expect(n).toBe(100_000);
        expect(await stream.columns).toEqual([{ name: 'number', type: 'UInt64' }]);
        const early = store.stream('SELECT number FROM numbers(100000000)');
        for await (const row of early) if (Number(row[0]) >= 5) break;
        expect((await store.query('SELECT 42 AS x')).rows).toEqual([[42]]);
      });

      it('maps engine errors to stable codes with the engine code, and never echoes a long digit run', async () => {
        const { store } = await setup();
        await store.migrate();
        expect(await store.query('SELEC 1').catch((e: unknown) => e)).toMatchObject({ code: 'store_query_failed', retriable: false, clickhouseCode: 62 });
        expect(await store.query('SELECT * FROM no_such_table').catch((e: unknown) => e)).toMatchObject({ code: 'store_query_failed', clickhouseCode: 60 });
        const digits = luhnNumber('4', 16);
        const parse = await store.query('SELECT toDate({d:String})', { d: `x${digits}` }).catch((e: unknown) => e);
        expect(isStoreError(parse)).toBe(true);
        expect(String((parse as Error).message)).not.toContain(digits);
      });
    });

    describe('evidence queries', () => {
      const nowUs = Date.now() * 1000;
      const evStart = nowUs - 120 * DAY_US;
      let under: StoreUnderTest;
      let store: EvidenceStore;
      let gen: GeneratedEvent[];
      beforeAll(async () => {
        gen = generateEventList({ count: 2_000, seed: 42, startUs: evStart, spanUs: 100 * DAY_US, cardRate: 0.3, cardPool: 20 });
        under = await create();
        store = await under.open();
        await store.migrate();
        for (let i = 0; i < gen.length; i += 700) await store.insertEvents(gen.slice(i, i + 700).map((g) => g.stored), `batch-${i}`);
      });
      afterAll(async () => {
        await store?.close();
        await under?.dispose();
      });
      const col = (r: EvidenceResult, name: string): number => r.columns.findIndex((c) => c.name === name);
      const ids = (rows: readonly Row[], i: number): string[] => rows.map((r) => String(r[i])).sort();

      it('every catalog query returns its documented columns', async () => {
        for (const [id, q] of Object.entries(EVIDENCE_QUERIES)) {
          const args = id === 'pan-lookup' ? { fingerprint: cardFingerprint(1).toString('hex') } : id === 'session-replay' ? { sessionId: gen[0]?.event.correlation.sessionId } : undefined;
          const r = await runEvidenceQuery(store, id, {}, args, { maxRows: 20 });
          expect(r.columns.map((c) => c.name), id).toEqual(q.columns.map((c) => c.name));
        }
      });

      it('10.2.1.4 returns exactly the invalid access attempts the events hold', async () => {
        const expected = gen.filter((g) => {
          const { type } = g.event.metadata;
          const p = g.event.payload as { decision?: string };
          if (type === 'auth.failed' || type === 'gateway.request.blocked') return g.event.outcome.result === 'failure';
          if (type === 'policy.decided' || type === 'db.query.executed') return p.decision === 'deny';
          return false;
        });
        expect(expected.length).toBeGreaterThan(0);
        const r = await runEvidenceQuery(store, 'pci.10.2.1.4', {}, undefined, ALL);
        expect(ids(r.rows, col(r, 'event_id'))).toEqual(expected.map((g) => g.event.metadata.eventId).sort());
      });

      it('10.2.2 finds no event missing a required field, and says how many it checked', async () => {
        const r = await runEvidenceQuery(store, 'pci.10.2.2', {}, undefined, ALL);
        expect(r.rows).toEqual([]);
        expect(r.summary).toMatchObject({ checked: String(gen.length), missing: '0' });
      });

      it('10.5.1 reads the TTL, the row count and a 90-day-old sample', async () => {
        const r = await runEvidenceQuery(store, 'pci.10.5.1', {}, undefined, { nowUs });
        const ev = r.rows.find((row) => row[0] === 'events');
        expect(ev?.[col(r, 'ttl_days')]).toBe(365);
        expect(Number(ev?.[col(r, 'rows')])).toBe(gen.length);
        const sample = gen.find((g) => g.event.metadata.eventId === ev?.[col(r, 'sample_event_id')]);
        expect(nowUs - (sample?.event.metadata.timeUs ?? nowUs)).toBeGreaterThanOrEqual(90 * DAY_US);
        expect(r.summary).toEqual({ min_ttl_days: 365, meets_365_days: true });
      });

      it('pan-lookup returns every sighting of one card and nothing for an unknown one; the PAN scan finds none', async () => {
        const fp = cardFingerprint(1);
        const expected = gen.flatMap((g) => g.stored.panSightings.filter((s) => Buffer.from(s.panHmac).equals(fp)).map((s) => `${s.eventId}|${s.location}`));
        expect(expected.length).toBeGreaterThan(0);
        const r = await runEvidenceQuery(store, 'pan-lookup', {}, { fingerprint: fp.toString('hex') }, ALL);
        expect(r.rows.map((row) => `${String(row[col(r, 'event_id')])}|${String(row[col(r, 'location')])}`).sort()).toEqual(expected.sort());
        expect((await runEvidenceQuery(store, 'pan-lookup', {}, { fingerprint: 'ab'.repeat(32) }, ALL)).rows).toEqual([]);
        const scan = await runEvidenceQuery(store, 'pci.3.4.1.pan-scan', {}, undefined, ALL);
        expect(scan.summary).toMatchObject({ pan_findings: 0 });
        expect(Number(scan.summary['rows_scanned'])).toBe(gen.length + gen.reduce((n, g) => n + g.stored.panSightings.length, 0));
      });

      it('session replay returns one session in order', async () => {
        const session = gen.find((g) => g.event.metadata.type === 'gateway.response.completed')?.event.correlation.sessionId ?? '';
        const expected = gen
          .filter((g) => g.event.correlation.sessionId === session)
          .sort((a, b) => a.event.metadata.timeUs - b.event.metadata.timeUs || a.event.metadata.producer.localeCompare(b.event.metadata.producer) || a.event.metadata.sequence - b.event.metadata.sequence)
          .map((g) => g.event.metadata.eventId);
        const r = await runEvidenceQuery(store, 'session-replay', {}, { sessionId: session }, ALL);
        expect(r.rows.map((row) => row[col(r, 'event_id')])).toEqual(expected);
      });
    });
  });
}
