import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { DevIssuer } from '../services/common/src/identity';
import { ChdbEvidenceStore } from '../services/common/src/store';
import { startAnthropicStandin, type AnthropicStandin } from './harness/anthropic-standin';
import { startProcess, type Proc } from './support/processes';

/**
 * Invariant 1 under a crash: the platform is killed with SIGKILL during sustained load, then started
 * again. Every request that got a successful response has its events in the store exactly once.
 */

let standin: AnthropicStandin | undefined;
const procs: Proc[] = [];

afterAll(async () => {
  for (const p of procs) await p.stop('SIGKILL');
  await standin?.close();
});

it('loses no acknowledged exchange and duplicates none across a SIGKILL', async () => {
  standin = await startAnthropicStandin();
  const dir = mkdtempSync(join(tmpdir(), 'attest-crash-'));
  const cfg = join(dir, 'attest.yaml');
  writeFileSync(
    cfg,
    `server: { port: 0 }\nconsole: { port: 0 }\nupstream: { anthropic: { baseUrl: "${standin.url}", apiKey: { env: UPSTREAM_KEY } } }\n` +
      `identity: { devIssuer: { enabled: true } }\ngroups: { developers: {} }\ndataDir: ${dir}\nlogging: { level: warn }\n` +
      `evidence: { checkpointEveryMs: 500 }\n`,
  );
  const start = async () => {
    const p = startProcess('node', ['bin/attest.mjs', 'start', '--config', cfg], { env: { UPSTREAM_KEY: 'k' } });
    procs.push(p);
    return { p, url: (await p.waitFor(/listening on (http:\/\/\S+)/))[1]! };
  };
  const first = await start();
  const token = await (await DevIssuer.loadOrCreate(dir)).mint({ subject: 'crash-test', groups: ['developers'], audience: 'attest-dev', ttlSec: 600 });

  const acknowledged: string[] = [];
  let stop = false;
  const worker = async () => {
    while (!stop) {
      try {
        const res = await fetch(`${first.url}/v1/messages`, {
          method: 'POST',
          headers: { 'x-api-key': token, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
          body: JSON.stringify({ model: 'claude-sonnet-5-5', max_tokens: 10, messages: [{ role: 'user', content: 'card 4111 1111 1111 1111' }] }),
        });
        const id = res.headers.get('x-attest-request-id');
        await res.text();
        if (res.status === 200 && id) acknowledged.push(id);
      } catch {
        // The process was killed mid-request: that request was never acknowledged.
      }
    }
  };
  const workers = Array.from({ length: 8 }, worker);
  while (acknowledged.length < 150) await new Promise((r) => setTimeout(r, 20));
  first.p.child.kill('SIGKILL');
  await first.p.exited;
  stop = true;
  await Promise.all(workers);
  expect(acknowledged.length).toBeGreaterThanOrEqual(150);

  // Restart: the evidence writer resumes from its committed offsets and drains the log. It runs
  // asynchronously, so give it a few short runs (each resumes where the last committed) rather than
  // one fixed wait.
  const query = `SELECT request_id, countIf(type = 'gateway.response.completed') AS completed, countIf(type = 'gateway.request.forwarded') AS forwarded, count() - uniqExact(event_id) AS dup
       FROM events WHERE request_id IN {ids:Array(String)} GROUP BY request_id`;
  let byId = new Map<string, number[]>();
  let duplicatesOverall = -1;
  for (let attempt = 0; attempt < 6; attempt++) {
    const again = await start();
    await new Promise((r) => setTimeout(r, 2000));
    again.p.child.kill('SIGTERM');
    expect(await again.p.exited).toBe(0);
    const store = await ChdbEvidenceStore.open({ dataDir: join(dir, 'store'), retention: { days: 365 } });
    try {
      const rows = await store.query(query, { ids: acknowledged }, { maxRows: 100_000 });
      byId = new Map(rows.rows.map((r) => [String(r[0]), r.slice(1).map(Number)]));
      duplicatesOverall = Number((await store.query('SELECT count() - uniqExact(event_id) FROM events')).rows[0]![0]);
    } finally {
      await store.close();
    }
    if (acknowledged.every((id) => byId.has(id))) break;
  }
  expect(acknowledged.filter((id) => !byId.has(id))).toEqual([]);
  for (const [id, [completed, forwarded, dup]] of byId) {
    expect({ id, completed, forwarded, dup }).toEqual({ id, completed: 1, forwarded: 1, dup: 0 });
  }
  expect(duplicatesOverall).toBe(0);
  // Several restarts later, only the services' own groups hold positions in the logs: no rebuild
  // reader or per-instance group was left behind to pin the log's retention for good.
  for (const log of ['log', 'control']) {
    const groups = readdirSync(join(dir, log, 'groups')).map((f) => f.replace(/\.json$/, ''));
    expect(groups.filter((g) => /[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}|\.replay\./.test(g)), `${log}: ${groups.join(', ')}`).toEqual([]);
  }
}, 120_000);
