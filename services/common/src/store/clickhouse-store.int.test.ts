/**
 * The ClickHouse server adapter over HTTP, against the real ClickHouse engine: a server named by
 * CLICKHOUSE_URL (with CLICKHOUSE_USER / CLICKHOUSE_PASSWORD and, for the readonly path,
 * CLICKHOUSE_READONLY_USER / CLICKHOUSE_READONLY_PASSWORD) when set, otherwise the chdb HTTP
 * harness (test/harness/chdb-http.ts) in a child process. Each test gets its own database.
 * What the harness covers and what it does not: docs/evidence-store.md, "Server adapter".
 */
import { createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import { ClickHouseLogLevel, createClient } from '@clickhouse/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startChdbHttp, type ChdbHttpProcess } from '../../../../test/harness/chdb-http';
import { ClickHouseServerStore, type ClickHouseServerStoreOptions } from './clickhouse-store';
import { isStoreError } from './errors';
import { evidenceStoreConformance } from './store-conformance';
import { generateEventList } from './testing';

interface Target {
  readonly url: string;
  readonly writer: { readonly username: string; readonly password: string };
  readonly reader: { readonly username: string; readonly password: string } | undefined;
}

let harness: ChdbHttpProcess | undefined;
let target: Target;

beforeAll(async () => {
  const url = process.env['CLICKHOUSE_URL'];
  if (url !== undefined && url !== '') {
    const ru = process.env['CLICKHOUSE_READONLY_USER'];
    target = {
      url,
      writer: { username: process.env['CLICKHOUSE_USER'] ?? 'default', password: process.env['CLICKHOUSE_PASSWORD'] ?? '' },
      reader: ru === undefined ? undefined : { username: ru, password: process.env['CLICKHOUSE_READONLY_PASSWORD'] ?? '' },
    };
  } else {
    harness = await startChdbHttp();
    target = { url: harness.url, writer: harness.writer, reader: harness.reader };
  }
});

afterAll(async () => {
  await harness?.stop();
});

const databases: string[] = [];

function optionsFor(database: string, extra: Partial<ClickHouseServerStoreOptions> = {}): ClickHouseServerStoreOptions {
  return {
    url: target.url,
    database,
    username: target.writer.username,
    password: target.writer.password,
    ...(target.reader === undefined ? {} : { readonlyUsername: target.reader.username, readonlyPassword: target.reader.password }),
    retention: { days: 365 },
    ...extra,
  };
}

async function dropDatabase(database: string): Promise<void> {
  const admin = createClient({ url: target.url, username: target.writer.username, password: target.writer.password, log: { level: ClickHouseLogLevel.OFF } });
  try {
    await admin.command({ query: `DROP DATABASE IF EXISTS \`${database}\`` });
  } finally {
    await admin.close();
  }
}

const freshDatabase = (): string => {
  const name = `attest_test_${randomBytes(6).toString('hex')}`;
  databases.push(name);
  return name;
};

evidenceStoreConformance(
  'ClickHouse server (HTTP)',
  async () => {
    const database = freshDatabase();
    return {
      open: (o = {}) =>
        ClickHouseServerStore.open(
          optionsFor(database, {
            retention: o.retention ?? { days: 365 },
            ...(o.migrationsDir === undefined ? {} : { migrationsDir: o.migrationsDir }),
            ...(o.dedupByEventId === undefined ? {} : { dedupByEventId: o.dedupByEventId }),
          }),
        ),
      dispose: () => dropDatabase(database),
    };
  },
  { sql: true, engineDedupOption: true },
);

/** A port nothing listens on. */
async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as { port: number };
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('ClickHouse server specifics', () => {
  const startUs = Date.now() * 1000 - 5 * 86_400_000_000;
  const events = generateEventList({ count: 1_200, seed: 7, startUs, spanUs: 86_400_000_000, cardRate: 0.3 }).map((g) => g.stored);

  it('a redelivered batch under the same token is dropped by the engine: the token reaches the server', async () => {
    const database = freshDatabase();
    const store = await ClickHouseServerStore.open(optionsFor(database, { dedupByEventId: false }));
    try {
      await store.migrate();
      await store.insertEvents(events.slice(0, 300), 'p2:0-299');
      await store.insertEvents(events.slice(0, 300), 'p2:0-299');
      // Under another token the engine cannot know: without the id lookup, rows are doubled.
      await store.insertEvents(events.slice(0, 300), 'p2:0-299-again');
      expect((await store.query('SELECT count(), uniqExact(event_id) FROM events')).rows).toEqual([['600', '300']]);
    } finally {
      await store.close();
      await dropDatabase(database);
    }
  });

  it('async inserts (wait_for_async_insert) store each event once across redelivery', async () => {
    const database = freshDatabase();
    const store = await ClickHouseServerStore.open(optionsFor(database, { asyncInsert: true }));
    try {
      await store.migrate();
      expect(await store.insertEvents(events.slice(0, 800), 'a:0-799')).toMatchObject({ events: 800, duplicates: 0 });
      // Visible as soon as the call resolves: the insert waited for the flush.
      expect((await store.query('SELECT count() FROM events')).rows).toEqual([['800']]);
      expect(await store.insertEvents(events.slice(400, 1_200), 'a:400-1199')).toMatchObject({ events: 800, duplicates: 400 });
      const sightings = events.reduce((n, e) => n + e.panSightings.length, 0);
      expect((await store.query('SELECT (SELECT count() FROM events), (SELECT uniqExact(event_id) FROM events), (SELECT count() FROM pan_sightings)')).rows).toEqual([
        ['1200', '1200', String(sightings)],
      ]);
    } finally {
      await store.close();
      await dropDatabase(database);
    }
  });

  it('the readonly user can read but cannot insert, drop, create or lift its readonly setting', async () => {
    if (target.reader === undefined) throw new Error('set CLICKHOUSE_READONLY_USER / CLICKHOUSE_READONLY_PASSWORD for a real server');
    const database = freshDatabase();
    const store = await ClickHouseServerStore.open(optionsFor(database));
    try {
      await store.migrate();
      await store.insertEvents(events.slice(0, 10), 't');
      for (const sql of ['INSERT INTO events SELECT * FROM events', 'DROP TABLE events', 'CREATE TABLE x (a UInt8) ENGINE = Memory', 'SELECT 1 SETTINGS readonly = 0']) {
        const err = await store.query(sql).catch((e: unknown) => e);
        expect(err, sql).toMatchObject({ code: 'store_query_failed', retriable: false, clickhouseCode: 164 });
        expect((err as { fix?: string }).fix).toMatch(/readonly/);
      }
      // The same through the client directly, as that user: the server refuses, not the adapter.
      const ro = createClient({ url: target.url, database, username: target.reader.username, password: target.reader.password, log: { level: ClickHouseLogLevel.OFF } });
      try {
        await expect(ro.command({ query: 'DROP TABLE events' })).rejects.toMatchObject({ code: '164' });
        await expect(ro.insert({ table: 'events', values: [{ event_id: '00000000-0000-0000-0000-000000000000' }], format: 'JSONEachRow' })).rejects.toMatchObject({ code: '164' });
      } finally {
        await ro.close();
      }
      expect((await store.query('SELECT count() FROM events')).rows).toEqual([['10']]);
    } finally {
      await store.close();
      await dropDatabase(database);
    }
  });

  it('without readonly credentials, reads still run with readonly=1 and cannot write', async () => {
    const database = freshDatabase();
    const store = await ClickHouseServerStore.open({ ...optionsFor(database), readonlyUsername: undefined, readonlyPassword: undefined });
    try {
      await store.migrate();
      expect(await store.query('DROP TABLE events').catch((e: unknown) => e)).toMatchObject({ code: 'store_query_failed', clickhouseCode: 164 });
      expect((await store.query("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'events'")).rows).toEqual([['1']]);
    } finally {
      await store.close();
      await dropDatabase(database);
    }
  });

  it('an unreachable server is a clear, retriable store_unavailable naming the host, never the password', async () => {
    const port = await deadPort();
    const password = `secret-${randomBytes(8).toString('hex')}`;
    const err = await ClickHouseServerStore.open({ url: `http://127.0.0.1:${port}`, database: 'attest', username: 'w', password, retention: { days: 365 } }).catch((e: unknown) => e);
    expect(isStoreError(err, 'store_unavailable')).toBe(true);
    expect(err).toMatchObject({ retriable: true, where: `http://127.0.0.1:${port}` });
    expect((err as Error).message).toMatch(/unreachable \(ECONNREFUSED\)/);
    expect((err as { fix?: string }).fix).toMatch(/running and reachable/);
    expect(JSON.stringify({ m: (err as Error).message, f: (err as { fix?: string }).fix, w: (err as { where?: string }).where })).not.toContain(password);
  });

  it('a server that goes away after open fails inserts and reads as retriable store_unavailable', async () => {
    const own = await startChdbHttp();
    let store: ClickHouseServerStore | undefined;
    try {
      store = await ClickHouseServerStore.open({ url: own.url, database: 'attest', username: own.writer.username, password: own.writer.password, retention: { days: 365 } });
      await store.migrate();
      await store.insertEvents(events.slice(0, 5), 'before');
      await own.stop();
      const ins = await store.insertEvents(events.slice(5, 10), 'after').catch((e: unknown) => e);
      expect(ins).toMatchObject({ code: 'store_unavailable', retriable: true });
      expect(await store.query('SELECT 1').catch((e: unknown) => e)).toMatchObject({ code: 'store_unavailable', retriable: true });
    } finally {
      await store?.close();
      await own.stop();
    }
  });

  it('wrong credentials are refused at open, not retriable, with the engine code and a fix', async () => {
    const err = await ClickHouseServerStore.open({ ...optionsFor('attest'), password: 'not-the-password' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'store_unavailable', retriable: false, clickhouseCode: 516 });
    expect((err as { fix?: string }).fix).toMatch(/username and password/);
    expect((err as Error).message).not.toContain('not-the-password');
  });

  it('refuses options that would leak or inject before any request', async () => {
    await expect(ClickHouseServerStore.open({ ...optionsFor('attest'), url: 'http://user:pw@127.0.0.1:1' })).rejects.toMatchObject({ code: 'store_invalid_argument', where: 'url' });
    await expect(ClickHouseServerStore.open({ ...optionsFor('attest'), database: 'x; DROP DATABASE y' })).rejects.toMatchObject({ code: 'store_invalid_argument', where: 'database' });
    await expect(ClickHouseServerStore.open({ ...optionsFor('attest'), retention: { days: 30 } })).rejects.toMatchObject({ code: 'store_retention_too_short' });
    const database = freshDatabase();
    const store = await ClickHouseServerStore.open(optionsFor(database));
    try {
      expect(() => store.stream('SELECT {a:String}', { 'a b': 'x' })).toThrow(/not an identifier/);
    } finally {
      await store.close();
    }
  });

  afterAll(async () => {
    for (const d of databases.splice(0)) await dropDatabase(d).catch(() => undefined);
  });
});
