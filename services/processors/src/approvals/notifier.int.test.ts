import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { luhnNumber } from '../../../common/src/events/testing';
import {
  backoffDelayMs,
  buildSlackMessage,
  parseRetryAfterMs,
  WebhookNotifier,
  type ApprovalNotice,
  type NotifyResult,
  type WebhookNotifierOptions,
} from './notifier';

/** What the stand-in webhook does with the n-th request. */
type Step = { status: number; headers?: Record<string, string> } | 'destroy' | 'hang';

interface Hook {
  url: string;
  received: { body: string; atMs: number; contentType: string | undefined }[];
  close(): Promise<void>;
}

const servers: Server[] = [];
const notifiers: WebhookNotifier[] = [];

afterEach(async () => {
  await Promise.all(notifiers.splice(0).map((n) => n.close()));
  await Promise.all(
    servers.splice(0).map(
      (s) =>
        new Promise<void>((resolve) => {
          s.closeAllConnections();
          s.close(() => resolve());
        }),
    ),
  );
});

/** A real HTTP server on a free loopback port that plays `steps` in order, the last one repeating. */
async function webhook(steps: Step[]): Promise<Hook> {
  const received: Hook['received'] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ body: Buffer.concat(chunks).toString('utf8'), atMs: Date.now(), contentType: req.headers['content-type'] });
      const step = steps[Math.min(received.length - 1, steps.length - 1)]!;
      if (step === 'destroy') return void req.socket.destroy();
      if (step === 'hang') return; // never answers; the notifier's timeout must fire
      res.writeHead(step.status, { 'content-type': 'text/plain', ...step.headers });
      res.end(step.status < 300 ? 'ok' : 'no');
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    // The path stands for a Slack webhook's secret token.
    url: `http://127.0.0.1:${port}/services/T000/B000/secret-token-xyz`,
    received,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const pan = luhnNumber('411111', 16);

const notice: ApprovalNotice = {
  approvalId: 'apr-01J9',
  ruleId: 'pci.bulk-export',
  mode: 'hold',
  caller: { subject: 'agent-7', onBehalfOf: 'alice', kind: 'agent' },
  model: 'claude-sonnet-4-5',
  route: 'messages',
  // Supposed to arrive masked; this one does not, to prove the notifier masks again.
  promptExcerpt: `Export all customers, starting with card ${pan}`,
  reasons: ["prompt asks for bulk data ('export all')"],
  quorum: 2,
  approverGroups: ['security'],
  expiresAtMs: Date.UTC(2025, 0, 1, 12, 15),
};

function notifier(url: string, over: Partial<WebhookNotifierOptions> = {}): WebhookNotifier {
  const n = new WebhookNotifier({ url, consoleUrl: 'https://attest.example.test/', baseDelayMs: 20, maxDelayMs: 200, timeoutMs: 2000, random: () => 0.5, ...over });
  notifiers.push(n);
  return n;
}

describe('WebhookNotifier against a real HTTP server', () => {
  it('Given a webhook that fails twice, When notified, Then it retries with backoff and delivers the Slack body once accepted', async () => {
    const hook = await webhook([{ status: 503 }, { status: 500 }, { status: 200 }]);
    const results: NotifyResult[] = [];
    const n = notifier(hook.url, { onResult: (r) => results.push(r) });

    const r = await n.notify(notice);

    expect(r).toMatchObject({ ok: true, outcome: 'delivered', status: 200, approvalId: 'apr-01J9' });
    expect(r.attempts.map((a) => a.status)).toEqual([503, 500, 200]);
    // Full jitter with random 0.5: half of 20 ms, then half of 40 ms.
    expect(r.attempts.map((a) => a.waitMs)).toEqual([10, 20, null]);
    expect(hook.received).toHaveLength(3);
    expect(hook.received[2]!.atMs - hook.received[1]!.atMs).toBeGreaterThanOrEqual(15);
    expect(hook.received[0]!.contentType).toMatch(/^application\/json/);
    expect(new Set(hook.received.map((x) => x.body)).size).toBe(1);
    expect(results).toEqual([r]);
    expect(n.stats).toEqual({ delivered: 1, failed: 0, attempts: 3, retries: 2, inFlight: 0 });

    const body = JSON.parse(hook.received[0]!.body) as { text: string; blocks: { type: string; text?: { text: string }; fields?: { text: string }[] }[] };
    expect(body.text).toContain('https://attest.example.test/approvals/apr-01J9');
    expect(body.blocks.map((b) => b.type)).toEqual(['header', 'section', 'section', 'section', 'actions', 'context']);
    const fields = body.blocks[2]!.fields!.map((f) => f.text);
    expect(fields).toEqual([
      '*Approval*\n`apr-01J9`',
      '*Rule*\npci.bulk-export',
      '*Caller*\nagent-7 (for alice)',
      '*Model*\nclaude-sonnet-4-5',
      '*Approvals needed*\n2 from security',
      '*Expires*\n2025-01-01T12:15:00Z (request held open)',
    ]);
    expect(body.blocks[3]!.text!.text).toContain('Export all customers, starting with card ************' + pan.slice(-4));
    expect(hook.received[0]!.body).not.toContain(pan);
  });

  it('Given 429 with Retry-After: 1, When notified, Then it waits at least that long before retrying', async () => {
    const hook = await webhook([{ status: 429, headers: { 'retry-after': '1' } }, { status: 204 }]);
    const r = await notifier(hook.url).notify(notice);
    expect(r).toMatchObject({ ok: true, status: 204 });
    expect(r.attempts[0]).toMatchObject({ status: 429, waitMs: 1000 });
    expect(hook.received[1]!.atMs - hook.received[0]!.atMs).toBeGreaterThanOrEqual(950);
  });

  it('Given a Retry-After beyond the limit, Then it gives up at once rather than ignore it', async () => {
    const hook = await webhook([{ status: 503, headers: { 'retry-after': '3600' } }, { status: 200 }]);
    const r = await notifier(hook.url).notify(notice);
    expect(r).toMatchObject({ ok: false, outcome: 'retry_after_too_long', status: 503 });
    expect(hook.received).toHaveLength(1);
  });

  it('Given a 4xx other than 429, Then no retry: the webhook is wrong, not busy', async () => {
    const hook = await webhook([{ status: 404 }, { status: 200 }]);
    const n = notifier(hook.url);
    const r = await n.notify(notice);
    expect(r).toMatchObject({ ok: false, outcome: 'rejected', status: 404 });
    expect(hook.received).toHaveLength(1);
    expect(n.stats).toMatchObject({ delivered: 0, failed: 1, attempts: 1, retries: 0 });
  });

  it('Given a webhook that always fails, Then it stops after maxAttempts without throwing', async () => {
    const hook = await webhook([{ status: 502 }]);
    const r = await notifier(hook.url, { maxAttempts: 3 }).notify(notice);
    expect(r).toMatchObject({ ok: false, outcome: 'exhausted', status: 502 });
    expect(r.attempts).toHaveLength(3);
    expect(hook.received).toHaveLength(3);
  });

  it('Given the connection is cut mid-request, Then it is a network error and is retried', async () => {
    const hook = await webhook(['destroy', { status: 200 }]);
    const r = await notifier(hook.url).notify(notice);
    expect(r.ok).toBe(true);
    expect(r.attempts[0]).toMatchObject({ status: null });
    expect(r.attempts[0]!.error).toMatch(/^[A-Z_a-z]+$/);
  });

  it('Given a webhook that never answers, Then the attempt times out and the next one delivers', async () => {
    const hook = await webhook(['hang', { status: 200 }]);
    const r = await notifier(hook.url, { timeoutMs: 300 }).notify(notice);
    expect(r.ok).toBe(true);
    expect(r.attempts[0]).toMatchObject({ status: null, error: 'timeout' });
    expect(r.attempts[0]!.durationMs).toBeGreaterThanOrEqual(250);
  });

  it('Given nothing listens, Then it resolves with a failure naming the error, never the URL', async () => {
    const hook = await webhook([{ status: 200 }]);
    await hook.close(); // the port is now closed
    const r = await notifier(hook.url, { maxAttempts: 2 }).notify(notice);
    expect(r).toMatchObject({ ok: false, outcome: 'exhausted', status: null });
    expect(r.attempts[0]!.error).toBe('ECONNREFUSED');
    expect(JSON.stringify(r)).not.toContain('secret-token');
  });

  it('Given retries in progress, When closed, Then notify resolves as closed promptly', async () => {
    const hook = await webhook([{ status: 503 }]);
    const n = notifier(hook.url, { baseDelayMs: 10_000, maxDelayMs: 10_000, maxAttempts: 10 });
    const pending = n.notify(notice);
    while (hook.received.length === 0) await new Promise((r) => setTimeout(r, 5));
    const t0 = Date.now();
    await n.close();
    const r = await pending;
    expect(r).toMatchObject({ ok: false, outcome: 'closed' });
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('a throwing onResult hook does not break delivery', async () => {
    const hook = await webhook([{ status: 200 }]);
    const r = await notifier(hook.url, {
      onResult: () => {
        throw new Error('metrics down');
      },
    }).notify(notice);
    expect(r.ok).toBe(true);
  });
});

describe('message and retry arithmetic', () => {
  it('escapes Slack control sequences so a prompt cannot ping a channel or fake a link', () => {
    const msg = buildSlackMessage(
      { ...notice, promptExcerpt: 'hi <!channel> see <https://evil.example|docs> ``` done', caller: { subject: 'x<!here>' } },
      { consoleUrl: 'https://c.example' },
    );
    const all = JSON.stringify(msg);
    expect(all).not.toContain('<!channel>');
    expect(all).not.toContain('<!here>');
    expect(all).not.toContain('<https://evil');
    expect(all).toContain('&lt;!channel&gt;');
    const prompt = (msg.blocks[3] as { text: { text: string } }).text.text;
    expect(prompt.match(/```/g)).toHaveLength(2); // the prompt's own fence was defused
  });

  it('cuts the excerpt after masking and links with an encoded id', () => {
    const msg = buildSlackMessage({ ...notice, approvalId: 'a/b c', promptExcerpt: `${'x'.repeat(20)} ${pan}` }, { consoleUrl: 'https://c.example/', excerptChars: 30 });
    const all = JSON.stringify(msg);
    expect(all).not.toContain(pan.slice(0, 6)); // cut first, the first digits would leak unrecognised
    expect(all).toContain('https://c.example/approvals/a%2Fb%20c');
  });

  it('backoff is full jitter under an exponential ceiling', () => {
    const o = { baseDelayMs: 100, maxDelayMs: 1000 };
    expect(backoffDelayMs(1, o, () => 0.999)).toBe(99);
    expect(backoffDelayMs(3, o, () => 0.999)).toBe(399);
    expect(backoffDelayMs(10, o, () => 0.999)).toBe(999);
    expect(backoffDelayMs(4, o, () => 0)).toBe(0);
  });

  it('reads Retry-After as seconds or an HTTP date', () => {
    const now = Date.UTC(2025, 0, 1, 0, 0, 0);
    expect(parseRetryAfterMs('7', now)).toBe(7000);
    expect(parseRetryAfterMs('Wed, 01 Jan 2025 00:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfterMs('Tue, 31 Dec 2024 00:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfterMs('soon', now)).toBeUndefined();
    expect(parseRetryAfterMs(undefined, now)).toBeUndefined();
  });
});
