/**
 * The ClickHouse HTTP harness speaks the wire the way @clickhouse/client expects, and every answer
 * comes from the engine: auth, errors in ClickHouse's format (also in the middle of a stream),
 * bound parameters in the URL and in a multipart body, inserts with rows in the body, gzip.
 */
import { randomBytes } from 'node:crypto';
import { ClickHouseLogLevel, createClient, type ClickHouseClient } from '@clickhouse/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startChdbHttp, type ChdbHttpProcess } from './chdb-http';

let h: ChdbHttpProcess;
let writer: ClickHouseClient;
beforeAll(async () => {
  h = await startChdbHttp();
  writer = createClient({ url: h.url, username: h.writer.username, password: h.writer.password, log: { level: ClickHouseLogLevel.OFF } });
});
afterAll(async () => {
  await writer?.close();
  await h?.stop();
});

describe('chdb HTTP harness', () => {
  it('answers /ping, and says which engine answers', async () => {
    const res = await fetch(`${h.url}/ping`);
    expect(await res.text()).toBe('Ok.\n');
    const r = await writer.query({ query: 'SELECT version() AS v', format: 'JSONEachRow' });
    expect(await r.json()).toEqual([{ v: h.version }]);
  });

  it('refuses a wrong password with 401, code 516 and the server error format', async () => {
    const res = await fetch(`${h.url}/?query=SELECT%201`, { headers: { 'X-ClickHouse-User': h.writer.username, 'X-ClickHouse-Key': 'wrong' } });
    expect(res.status).toBe(401);
    expect(res.headers.get('x-clickhouse-exception-code')).toBe('516');
    expect(await res.text()).toMatch(/^Code: 516\. DB::Exception: .*\(AUTHENTICATION_FAILED\) \(version \d+\.\d+/);
    const ok = await fetch(`${h.url}/?query=SELECT%201&user=${h.reader.username}&password=${h.reader.password}`);
    expect(await ok.text()).toBe('1\n');
  });

  it('passes engine errors through with their code, before and in the middle of a stream', async () => {
    await expect(writer.query({ query: 'SELECT * FROM nowhere', format: 'JSONEachRow' })).rejects.toMatchObject({ code: '60', type: 'UNKNOWN_TABLE' });
    const rs = await writer.query({ query: 'SELECT throwIf(number = 300000) AS x FROM numbers(400000)', format: 'JSONEachRow' });
    const read = async (): Promise<number> => {
      let n = 0;
      for await (const rows of rs.stream()) n += rows.length;
      return n;
    };
    await expect(read()).rejects.toMatchObject({ code: '395' });
  });

  it('binds parameters from the URL and, when long, from a multipart body', async () => {
    const short = await writer.query({ query: 'SELECT {s:String} AS s, {a:Array(String)} AS a', query_params: { s: "it's\ta\\b", a: ["x'y", 'z'] }, format: 'JSONEachRow' });
    expect(await short.json()).toEqual([{ s: "it's\ta\\b", a: ["x'y", 'z'] }]);
    const many = Array.from({ length: 3_000 }, (_, i) => `v${i}`);
    const mp = createClient({ url: h.url, username: h.writer.username, password: h.writer.password, use_multipart_params_auto: true, log: { level: ClickHouseLogLevel.OFF } });
    try {
      const r = await mp.query({ query: 'SELECT length({a:Array(String)}) AS n, {a:Array(String)}[3000] AS last', query_params: { a: many }, format: 'JSONEachRow' });
      // UInt64 comes quoted, as a server prints 64-bit integers in JSON.
      expect(await r.json()).toEqual([{ n: '3000', last: 'v2999' }]);
    } finally {
      await mp.close();
    }
  });

  it('inserts rows from the body in the requested format, with settings from the URL, gzip in both directions', async () => {
    const db = `h_${randomBytes(4).toString('hex')}`;
    await writer.command({ query: `CREATE DATABASE ${db}` });
    const c = createClient({ url: h.url, database: db, username: h.writer.username, password: h.writer.password, compression: { request: true, response: true }, log: { level: ClickHouseLogLevel.OFF } });
    try {
      await c.command({ query: 'CREATE TABLE t (a UInt32, s String) ENGINE = MergeTree ORDER BY a SETTINGS non_replicated_deduplication_window = 100' });
      const rows = [{ a: 1, s: 'x' }, { a: 2, s: 'y' }];
      await c.insert({ table: 't', values: rows, format: 'JSONEachRow', clickhouse_settings: { insert_deduplication_token: 'tok' } });
      await c.insert({ table: 't', values: rows, format: 'JSONEachRow', clickhouse_settings: { insert_deduplication_token: 'tok' } });
      const r = await c.query({ query: 'SELECT a, s FROM t ORDER BY a', format: 'JSONEachRow' });
      expect(await r.json()).toEqual(rows);
      await expect(c.insert({ table: 't', values: rows, format: 'JSONEachRow', clickhouse_settings: { no_such_setting: 1 } as never })).rejects.toMatchObject({ code: '115' });
    } finally {
      await c.close();
      await writer.command({ query: `DROP DATABASE ${db}` });
    }
  });
});
