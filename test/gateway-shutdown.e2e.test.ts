import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { DevIssuer } from '../services/common/src/identity';
import { startAnthropicStandin, type AnthropicStandin } from './harness/anthropic-standin';
import { startProcess, type Proc } from './support/processes';

/** Graceful shutdown of a real gateway process: SIGTERM lets an in-flight stream finish. */

let standin: AnthropicStandin | undefined;
let gateway: Proc | undefined;

afterAll(async () => {
  await gateway?.stop('SIGKILL');
  await standin?.close();
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
