import type { JSONWebKeySet } from 'jose';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { verifyEncodedEvents } from '../services/common/src/evidence/verify-events';
import { DevIssuer } from '../services/common/src/identity';
import { FileEventLog } from '../services/common/src/log';
import { startAnthropicStandin, type AnthropicStandin } from './harness/anthropic-standin';
import { startProcess, type Proc } from './support/processes';
import { readLogRecords } from './support/log-records';

/** Graceful shutdown of a real gateway process: SIGTERM lets an in-flight stream finish. */

let standin: AnthropicStandin | undefined;
let gateway: Proc | undefined;
const cleanups: (() => Promise<unknown>)[] = [];

afterAll(async () => {
  await gateway?.stop('SIGKILL');
  await standin?.close();
  for (const c of cleanups) await c();
});

it('finishes an in-flight stream after SIGTERM, refuses new connections, and exits 0', async () => {
  standin = await startAnthropicStandin({ deltaSpacingMs: 40 });
  const words = Array.from({ length: 20 }, (_, i) => `word${i} `);
  standin.reply({ kind: 'message', content: [{ type: 'text', text: words.join(''), deltas: words }] });
  const dir = mkdtempSync(join(tmpdir(), 'attest-shutdown-'));
  const cfg = join(dir, 'attest.yaml');
  writeFileSync(
    cfg,
    `server: { port: 0 }\nupstream: { anthropic: { baseUrl: "${standin.url}", apiKey: { env: UPSTREAM_KEY } } }\n` +
      `identity: { devIssuer: { enabled: true } }\ngroups: { developers: {} }\ndataDir: ${dir}\nlimits: { shutdownGraceMs: 10000 }\n`,
  );
  gateway = startProcess('node', ['bin/attest.mjs', 'gateway', '--config', cfg], { env: { UPSTREAM_KEY: 'k' } });
  const url = (await gateway.waitFor(/listening on (http:\/\/\S+)/))[1]!;
  const token = await (await DevIssuer.loadOrCreate(dir)).mint({ subject: 'shutdown-test', groups: ['developers'], audience: 'attest-dev', ttlSec: 60 });

  const res = await fetch(`${url}/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': token, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
    body: JSON.stringify({ model: 'claude-sonnet-5-5', max_tokens: 100, stream: true, messages: [{ role: 'user', content: 'x' }] }),
  });
  expect(res.status).toBe(200);
  const reader = res.body!.getReader();
  const first = await reader.read();
  expect(first.done).toBe(false);

  gateway.child.kill('SIGTERM');
  let text = new TextDecoder().decode(first.value);
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  expect(text).toContain('event: message_stop');
  const streamed = text
    .split('\n\n')
    .filter((b) => b.includes('"text_delta"'))
    .map((b) => JSON.parse(b.slice(b.indexOf('data: ') + 6)).delta.text as string)
    .join('');
  expect(streamed).toBe(words.join(''));
  expect(await gateway.exited).toBe(0);
  await expect(fetch(`${url}/healthz`)).rejects.toThrow();
});

it('records the completion of a stream cut when the grace period ends, before the evidence closes', async () => {
  // 30 deltas 200 ms apart (6 s) against a 300 ms grace: the stream is cut mid-way.
  const slow = await startAnthropicStandin({ deltaSpacingMs: 200 });
  cleanups.push(() => slow.close());
  const words = Array.from({ length: 30 }, (_, i) => `w${i} `);
  slow.reply({ kind: 'message', content: [{ type: 'text', text: words.join(''), deltas: words }] });
  const dir = mkdtempSync(join(tmpdir(), 'attest-shutdown-cut-'));
  const cfg = join(dir, 'attest.yaml');
  writeFileSync(
    cfg,
    `server: { port: 0 }\nupstream: { anthropic: { baseUrl: "${slow.url}", apiKey: { env: UPSTREAM_KEY } } }\n` +
      `identity: { devIssuer: { enabled: true } }\ngroups: { developers: {} }\ndataDir: ${dir}\nlimits: { shutdownGraceMs: 300 }\n`,
  );
  const gw = startProcess('node', ['bin/attest.mjs', 'gateway', '--config', cfg], { env: { UPSTREAM_KEY: 'k' } });
  cleanups.push(() => gw.stop('SIGKILL'));
  const url = (await gw.waitFor(/listening on (http:\/\/\S+)/))[1]!;
  const jwks = (await (await fetch(`${url}/.well-known/jwks.json`)).json()) as JSONWebKeySet;
  const token = await (await DevIssuer.loadOrCreate(dir)).mint({ subject: 'shutdown-cut', groups: ['developers'], audience: 'attest-dev', ttlSec: 60 });
  const res = await fetch(`${url}/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': token, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
    body: JSON.stringify({ model: 'claude-sonnet-5-5', max_tokens: 100, stream: true, messages: [{ role: 'user', content: 'x' }] }),
  });
  expect(res.status).toBe(200);
  const requestId = res.headers.get('x-attest-request-id')!;
  const reader = res.body!.getReader();
  expect((await reader.read()).done).toBe(false);

  gw.child.kill('SIGTERM');
  let text = '';
  const read = (async () => {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      text += new TextDecoder().decode(value);
    }
  })();
  await read.catch(() => undefined); // the cut may surface as a reset
  expect(text).not.toContain('event: message_stop');
  expect(await gw.exited).toBe(0);
  expect(gw.stdout() + gw.stderr()).not.toContain('evidence not recorded');

  // The log holds the cut exchange's completion, inside the epoch's final checkpoint.
  const log = await FileEventLog.open({ dir: join(dir, 'log') });
  const records = await readLogRecords(log);
  await log.close();
  const report = await verifyEncodedEvents(records, jwks, { cadence: { everyEvents: 10_000, everyMs: 60_000 } });
  expect(report.findings).toEqual([]);
  const completed = report.decoded.filter((e) => e.metadata.type === 'gateway.response.completed' && e.correlation.requestId === requestId);
  expect(completed).toHaveLength(1);
  expect(completed[0]!.payload).toMatchObject({ aborted: true });
  expect(completed[0]!.outcome).toMatchObject({ result: 'failure', reason: 'gateway_shutdown' });
  expect(report.decoded.at(-1)?.metadata.type).toBe('integrity.checkpoint');
});
