/**
 * Held requests (issue #5): how long from an approver's decision to the held request reaching the
 * model, and what 1,000 requests held at once cost while they wait.
 *
 *   node --expose-gc --import tsx bench/approvals.bench.ts [--n 200] [--held 1000] [--window 10]
 *        [--settle 5] [--gap 20] [--no-stream]
 *
 * Wired like test/gateway-approvals.e2e.test.ts, in this process: buildGateway with a real evidence
 * producer (openEvidence: FileEventLog with fsync, signing keyring), a MemoryEventLog control log
 * read by a ControlSubscriber into a ControlState (default pollWaitMs, 500, as the gateway's main.ts
 * uses; the long-poll wakes on append), a ControlPublisher signing with the evidence keyring (as the
 * approvals processor and console do), the Anthropic stand-in as upstream (record: false), and one
 * approvals rule (mode: hold, expiresAfter 30m) matching the keywords "export all customers".
 * Resolutions are published as 'approval.resolved' control messages carrying the approval id and
 * request digest read back from approval.requested on the evidence log.
 *
 * 1. Decision → forward: --n held requests, one at a time. For each: send it, wait until its
 *    approval.requested is on the evidence log and the gateway waits on it (ControlState
 *    waitingCount), idle --gap ms, then time from just before publisher.publish() to the moment the
 *    stand-in has the forwarded request (its reply callback, performance.now(), same process).
 *    Split into decision → ControlState.apply (sign, append, subscriber wake, JWS verify) and
 *    apply → forward (approval.released evidence durably written, fsync, then the upstream call).
 * 2. --held requests held at once, sent by a child process (this file with --role client, undici
 *    Pool with one connection per request) so this process's CPU is the gateway's (plus the idle
 *    stand-in, control subscriber and evidence log). process.cpuUsage() and
 *    performance.eventLoopUtilization() over a --window s idle window with none held, then over
 *    the same window with all held, each after gc and --settle s of quiet; the CPU is also split
 *    by thread (/proc/self/task/<tid>/schedstat: main thread vs V8 workers vs libuv pool); RSS (after
 *    gc) per held request; then every approval is
 *    published at once and the time until all callers have their responses is taken. Non-streaming
 *    holds at keepAliveMs 60000 (they write nothing while held; the setting only applies to
 *    streams), then streaming holds (stream: true) at keepAliveMs 15000 to show the keep-alive cost.
 *
 * Prints markdown tables on stdout (progress on stderr); writes no results file.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const argv = process.argv.slice(2);
function opt(name: string): string | undefined {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
}
function num(name: string, dflt: number): number {
  const v = opt(name);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a non-negative number, got ${v}`);
  return n;
}
const KNOWN = new Set(['n', 'held', 'window', 'gap', 'settle', 'no-stream', 'role', 'help']);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i] ?? '';
  if (!a.startsWith('--') || !KNOWN.has(a.slice(2))) throw new Error(`unknown argument ${a} (see the header of bench/approvals.bench.ts)`);
  if (['n', 'held', 'window', 'gap', 'settle', 'role'].includes(a.slice(2))) i++;
}

const abs = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const loadavg = (): string => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

/** On-CPU ns of this process's threads, grouped: main thread, V8 workers (GC, compiler), libuv pool, other. */
function threadCpuNs(): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const ns = Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      const comm = readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim();
      const group = Number(tid) === process.pid ? 'main' : /^V8 /.test(comm) ? 'v8-workers' : /^libuv/.test(comm) ? 'libuv-pool' : 'other';
      out.set(group, (out.get(group) ?? 0) + ns);
    } catch {
      /* thread gone */
    }
  }
  return out;
}
const THREAD_GROUPS = ['main', 'v8-workers', 'libuv-pool', 'other'] as const;

// ------------------------------------------------------------------------------------------------
// Client role: a child process that opens held requests and reports when each completes.

type ToClient = { cmd: 'open'; url: string; token: string; n: number; stream: boolean; prefix: string } | { cmd: 'stats' } | { cmd: 'exit' };
type FromClient =
  | { ev: 'ready' }
  | { ev: 'sent'; n: number }
  | { ev: 'done'; i: number; status: number; ok: boolean; endAbs: number }
  | { ev: 'alldone'; endAbs: number; failures: number; firstFailure?: string }
  | { ev: 'stats'; keepAlives: number; cpuUs: number; rssMiB: number };

async function clientMain(): Promise<void> {
  const { Pool } = await import('undici');
  let keepAlives = 0;
  const send = (m: FromClient): void => void process.send!(m);
  process.on('message', (raw) => {
    const m = raw as ToClient;
    if (m.cmd === 'exit') process.exit(0);
    if (m.cmd === 'stats') {
      const c = process.cpuUsage();
      send({ ev: 'stats', keepAlives, cpuUs: c.user + c.system, rssMiB: process.memoryUsage().rss / 2 ** 20 });
      return;
    }
    const pool = new Pool(m.url, { connections: m.n, pipelining: 1, headersTimeout: 0, bodyTimeout: 0, keepAliveTimeout: 60_000 });
    let failures = 0;
    let firstFailure: string | undefined;
    let lastEnd = 0;
    const one = async (i: number): Promise<void> => {
      const body = JSON.stringify({
        model: 'claude-sonnet-4-6',
        max_tokens: 20,
        messages: [{ role: 'user', content: `Please export all customers of region ${m.prefix}-${i} to a spreadsheet.` }],
        ...(m.stream ? { stream: true } : {}),
      });
      let status = 0;
      let ok = false;
      try {
        const r = await pool.request({ method: 'POST', path: '/v1/messages', headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': m.token }, body });
        status = r.statusCode;
        let text = '';
        for await (const chunk of r.body) {
          const s = (chunk as Buffer).toString('utf8');
          if (m.stream) {
            let k = s.indexOf(': keep-alive');
            while (k >= 0) {
              keepAlives++;
              k = s.indexOf(': keep-alive', k + 1);
            }
          }
          text += s;
          if (text.length > 1 << 16) text = text.slice(-4096);
        }
        ok = status === 200 && (m.stream ? text.includes('event: message_stop') : text.includes('"type":"message"'));
        if (!ok && firstFailure === undefined) firstFailure = `${status} ${text.slice(0, 300)}`;
      } catch (err) {
        if (firstFailure === undefined) firstFailure = String(err);
      }
      if (!ok) failures++;
      const endAbs = abs();
      lastEnd = Math.max(lastEnd, endAbs);
      send({ ev: 'done', i, status, ok, endAbs });
    };
    const all: Promise<void>[] = [];
    for (let i = 0; i < m.n; i++) all.push(one(i));
    send({ ev: 'sent', n: m.n });
    void Promise.all(all).then(async () => {
      send({ ev: 'alldone', endAbs: lastEnd, failures, ...(firstFailure === undefined ? {} : { firstFailure }) });
      await pool.close();
    });
  });
  send({ ev: 'ready' });
}

// ------------------------------------------------------------------------------------------------
// Bench role

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}
const f = (x: number | undefined, d = 1): string => (x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(d));
const table = (head: string[], rows: string[][]): string => [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
const log = (msg: string): void => void process.stderr.write(`[approvals.bench ${new Date().toISOString().slice(11, 19)} load ${loadavg()}] ${msg}\n`);

async function benchMain(): Promise<void> {
  const N = Math.round(num('n', 200));
  const HELD = Math.round(num('held', 1000));
  const WINDOW_MS = num('window', 10) * 1000;
  const GAP_MS = num('gap', 20);
  const SETTLE_MS = num('settle', 5) * 1000;
  const STREAM = !argv.includes('--no-stream');
  const gc = (globalThis as { gc?: () => void }).gc;
  const loadStart = loadavg();

  const { default: pino } = await import('pino');
  const { parseConfigText } = await import('../services/common/src/config');
  const { ControlPublisher, ControlState, ControlSubscriber } = await import('../services/common/src/control');
  const { openEvidence } = await import('../services/common/src/evidence/producer');
  const { decodeEvent } = await import('../services/common/src/events');
  const { createTokenVerifier, DevIssuer } = await import('../services/common/src/identity');
  const { MemoryEventLog } = await import('../services/common/src/log');
  const { buildGateway } = await import('../services/gateway/src/app');
  const { GatewayRecorder } = await import('../services/gateway/src/evidence');
  const { startAnthropicStandin } = await import('../test/harness/anthropic-standin');
  type ControlMessage = import('../services/common/src/control').ControlMessage;

  const logger = pino({ level: 'silent' });
  const dir = mkdtempSync(join(os.tmpdir(), 'attest-approvals-bench-'));
  const standin = await startAnthropicStandin({ record: false });
  /** marker → performance.now() when the stand-in had the forwarded request. */
  const forwardedAt = new Map<string, number>();
  const MARKER = /region ((?:lat|held|stream)[0-9a-z]*-[0-9]+)/;
  standin.reply((req) => {
    const t = performance.now();
    const text = JSON.stringify(req.body?.messages ?? '');
    const m = MARKER.exec(text);
    if (m) forwardedAt.set(m[1]!, t);
    return { kind: 'message', content: [{ type: 'text', text: 'Done.' }], usage: { input_tokens: 30, output_tokens: 2 } };
  });

  const CADENCE = { everyEvents: 1000, everyMs: 60_000 };
  const evidence = await openEvidence({ dataDir: dir, component: 'gateway', producerId: 'gateway-approvals-bench', tenantId: 'acme', logger, configText: 'x', configFile: 'approvals.yaml', softwareVersion: 'bench', cadence: CADENCE });
  const dev = await DevIssuer.loadOrCreate(dir);
  const controlLog = new MemoryEventLog({ partitions: 2 });
  const control = new ControlState();
  const appliedAt = new Map<string, number>();
  const subscriber = new ControlSubscriber({
    log: controlLog,
    group: 'gw',
    trust: async () => evidence.keyring.jwks(),
    onMessage: (m) => {
      control.apply(m);
      if (m.type === 'approval.resolved') appliedAt.set(m.approvalId, performance.now());
    },
    logger,
  });
  await subscriber.start();
  const publisher = new ControlPublisher(controlLog, evidence.keyring);
  const token = await dev.mint({ subject: 'agent-7', groups: ['developers'], audience: 'attest-dev', ttlSec: 3600 });
  const durability = (evidence.log as { durability?: string }).durability ?? 'unknown';

  const config = (keepAliveMs: number) =>
    parseConfigText(
      `
upstream: { anthropic: { baseUrl: "${standin.url}", apiKey: { env: K } } }
identity: { devIssuer: { enabled: true } }
groups:
  developers: { models: ["claude-*"] }
approvals:
  keepAliveMs: ${keepAliveMs}
  rules:
    - id: bulk-export
      match: { keywords: ["export all customers"] }
      approverGroups: [secops]
      expiresAfter: 30m
      mode: hold
`,
      'approvals.yaml',
      { K: 'x' },
    );
  const startGateway = async (keepAliveMs: number) => {
    const app = await buildGateway({
      config: config(keepAliveMs),
      verifier: createTokenVerifier({ issuers: [dev.issuerOptions(['attest-dev'])] }),
      upstreamApiKey: 'k',
      logger,
      recorder: new GatewayRecorder(evidence.emitter, evidence.panKey, { id: 'approvals.yaml', version: 'bench' }, 'standin'),
      control,
      holder: () => ({ gatewayId: evidence.emitter.producer.id, instanceId: evidence.emitter.producer.epoch }),
      digestKey: Buffer.alloc(32, 7),
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const addr = app.server.address();
    return { app, url: `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}` };
  };

  // The approvals processor's view: approval.requested events read back from the evidence log.
  const requested = new Map<string, { approvalId: string; requestDigest: string }>();
  const tail = await evidence.log.consumer('bench-tail', { startFrom: 'earliest' });
  const drainTail = async (waitMs: number): Promise<void> => {
    const batch = await tail.poll(5000, waitMs);
    for (const r of batch) {
      const d = decodeEvent(r.value);
      if (d.type !== 'approval.requested') continue;
      const p = (d.event as { payload: { approvalId: string; requestDigest: string | null; excerpt: string | null } }).payload;
      const m = MARKER.exec(p.excerpt ?? '');
      if (m && p.requestDigest) requested.set(m[1]!, { approvalId: p.approvalId, requestDigest: p.requestDigest });
    }
  };
  const waitUntil = async (what: string, timeoutMs: number, cond: () => boolean, tailWaitMs = 1): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await drainTail(tailWaitMs);
      if (!cond()) await sleep(1);
    }
  };
  const resolution = (r: { approvalId: string; requestDigest: string }): ControlMessage => ({
    type: 'approval.resolved',
    approvalId: r.approvalId,
    outcome: 'approved',
    requestDigest: r.requestDigest,
    reason: 'ok',
    by: ['alice'],
    requester: { issuer: dev.issuer, subject: 'agent-7' },
    mode: 'hold',
    eventId: `ev-${r.approvalId}`,
    atUs: Date.now() * 1000,
  });

  let client: ChildProcess | undefined;
  const cleanup = () => {
    if (client && client.exitCode === null) client.kill('SIGKILL');
  };
  process.on('exit', () => {
    cleanup();
    rmSync(dir, { recursive: true, force: true });
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));

  const out: string[] = [];
  out.push(`# Approvals: decision → forward, and held requests at rest`, '');
  out.push(`Node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), shared with other work. Load average at start: ${loadStart}. Evidence log: FileEventLog, durability ${durability}, in ${os.tmpdir()}. Control log: MemoryEventLog (2 partitions), ControlSubscriber pollWaitMs 500 (default).`, '');

  // ---------------------------------------------------------------------------------------------
  // 1. Decision → forward latency
  {
    const { app, url } = await startGateway(60_000);
    const one = async (marker: string, measure: boolean) => {
      const call = fetch(`${url}/v1/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': token },
        body: JSON.stringify({ model: 'claude-sonnet-4-6', max_tokens: 20, messages: [{ role: 'user', content: `Please export all customers of region ${marker} to a spreadsheet.` }] }),
      }).then(async (r) => ({ status: r.status, text: await r.text(), at: performance.now() }));
      await waitUntil(`approval.requested for ${marker}`, 20_000, () => requested.has(marker) && control.waitingCount() >= 1);
      if (GAP_MS > 0) await sleep(GAP_MS);
      const r = requested.get(marker)!;
      const t0 = performance.now();
      await publisher.publish(resolution(r));
      const tPub = performance.now();
      const res = await call;
      if (res.status !== 200) throw new Error(`held request ${marker} answered ${res.status}: ${res.text.slice(0, 300)}`);
      const tFwd = forwardedAt.get(marker);
      const tApp = appliedAt.get(r.approvalId);
      if (tFwd === undefined || tApp === undefined) throw new Error(`no forward/apply timestamp for ${marker}`);
      return measure ? { total: tFwd - t0, publish: tPub - t0, apply: tApp - t0, release: tFwd - tApp, response: res.at - t0 } : undefined;
    };
    log(`phase 1: ${Math.min(20, N)} warm-up + ${N} sequential held requests, gap ${GAP_MS} ms`);
    for (let i = 0; i < Math.min(20, N); i++) await one(`latw-${i}`, false);
    const loadBefore = loadavg();
    const samples: NonNullable<Awaited<ReturnType<typeof one>>>[] = [];
    const t = performance.now();
    for (let i = 0; i < N; i++) samples.push((await one(`lat-${i}`, true))!);
    const wall = (performance.now() - t) / 1000;
    const loadAfter = loadavg();
    await app.close();
    const row = (name: string, xs: number[]) => [name, f(pct(xs, 50), 2), f(pct(xs, 90), 2), f(pct(xs, 99), 2), f(Math.max(...xs), 2)];
    out.push(`## 1. Decision → held request forwarded (${N} requests, one at a time)`, '');
    out.push(
      `Each request is held, its approval.requested is on the evidence log and the gateway waits on it; after ${GAP_MS} ms idle the resolution is published; the clock stops when the stand-in has the forwarded request. ${N} requests in ${f(wall, 1)} s after ${Math.min(20, N)} warm-up requests. Load average before/after: ${loadBefore} / ${loadAfter}.`,
      '',
    );
    out.push(
      table(
        ['interval', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms'],
        [
          row('**decision → forwarded to upstream**', samples.map((s) => s.total)),
          row('  of which: publish (sign JWS + append to control log)', samples.map((s) => s.publish)),
          row('  of which: decision → ControlState.apply (subscriber wake + verify)', samples.map((s) => s.apply)),
          row('  of which: apply → forwarded (approval.released evidence, fsync; upstream request)', samples.map((s) => s.release)),
          row('decision → caller has the full response', samples.map((s) => s.response)),
        ],
      ),
      '',
    );
  }

  // ---------------------------------------------------------------------------------------------
  // 2. Many held at once
  client = fork(fileURLToPath(import.meta.url), ['--role', 'client'], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const handlers = new Set<(m: FromClient) => void>();
  client.on('message', (m) => {
    for (const h of [...handlers]) h(m as FromClient);
  });
  const nextMsg = <K extends FromClient['ev']>(ev: K, timeoutMs: number): Promise<Extract<FromClient, { ev: K }>> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        handlers.delete(h);
        reject(new Error(`client: no ${ev} within ${timeoutMs} ms`));
      }, timeoutMs);
      const h = (m: FromClient) => {
        if (m.ev !== ev) return;
        clearTimeout(timer);
        handlers.delete(h);
        resolve(m as Extract<FromClient, { ev: K }>);
      };
      handlers.add(h);
    });
  await nextMsg('ready', 30_000);
  const clientStats = async () => {
    const p = nextMsg('stats', 10_000);
    client!.send({ cmd: 'stats' } satisfies ToClient);
    return p;
  };

  interface Window {
    cpuMs: number;
    userMs: number;
    sysMs: number;
    elu: number;
    seconds: number;
    load: string;
    /** ms on CPU per thread group over the window. */
    threads: Map<string, number>;
  }
  const measureWindow = async (): Promise<Window> => {
    const th0 = threadCpuNs();
    const e0 = performance.eventLoopUtilization();
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await sleep(WINDOW_MS);
    const c = process.cpuUsage(c0);
    const e = performance.eventLoopUtilization(e0);
    const seconds = (performance.now() - t0) / 1000;
    const th1 = threadCpuNs();
    const threads = new Map<string, number>();
    for (const [k, v] of th1) threads.set(k, (v - (th0.get(k) ?? 0)) / 1e6);
    return { threads, cpuMs: (c.user + c.system) / 1000, userMs: c.user / 1000, sysMs: c.system / 1000, elu: e.utilization, seconds, load: loadavg() };
  };
  const settledRss = async () => {
    gc?.();
    await sleep(500);
    gc?.();
    await sleep(500);
    return { rss: process.memoryUsage().rss, heap: process.memoryUsage().heapUsed };
  };

  interface Variant {
    name: string;
    stream: boolean;
    keepAliveMs: number;
    idle: Window;
    held: Window;
    rssPerHeldKiB: number;
    heapPerHeldKiB: number;
    openS: number;
    keepAlivesInWindow: number;
    clientCpuMsInWindow: number;
    releaseMs: number;
    releasePublishMs: number;
    releaseFwd: number[];
    releaseCpuMs: number;
    releaseSyncs: number;
    openCpuMs: number;
    openSyncs: number;
    failures: number;
    firstFailure?: string;
    loadRelease: string;
  }
  const variants: Variant[] = [];
  const plan = [
    { name: 'non-streaming', stream: false, keepAliveMs: 60_000, prefix: 'held' },
    ...(STREAM ? [{ name: 'streaming (stream: true)', stream: true, keepAliveMs: 15_000, prefix: 'stream' }] : []),
  ];
  for (const v of plan) {
    const { app, url } = await startGateway(v.keepAliveMs);
    log(`phase 2, ${v.name}: warm-up`);
    // Warm the path (and the stream path) with a few held requests released at once.
    {
      const w = `${v.prefix}w`;
      const done = nextMsg('alldone', 60_000);
      client.send({ cmd: 'open', url, token, n: 10, stream: v.stream, prefix: w } satisfies ToClient);
      await waitUntil('warm-up holds', 30_000, () => [...Array(10).keys()].every((i) => requested.has(`${w}-${i}`)) && control.waitingCount() === 10);
      for (let i = 0; i < 10; i++) await publisher.publish(resolution(requested.get(`${w}-${i}`)!));
      const r = await done;
      if (r.failures) throw new Error(`warm-up failed: ${r.firstFailure}`);
    }
    await drainTail(1);
    const before = await settledRss();
    await sleep(SETTLE_MS);
    log(`phase 2, ${v.name}: idle window (${WINDOW_MS / 1000} s, none held)`);
    const idle = await measureWindow();
    log(`phase 2, ${v.name}: opening ${HELD} held requests`);
    const doneAll = nextMsg('alldone', 600_000);
    const syncs = (): number => (evidence.log as unknown as { stats?: { syncs: number } }).stats?.syncs ?? NaN;
    const openC0 = process.cpuUsage();
    const openS0 = syncs();
    const tOpen = performance.now();
    client.send({ cmd: 'open', url, token, n: HELD, stream: v.stream, prefix: v.prefix } satisfies ToClient);
    const markers = [...Array(HELD).keys()].map((i) => `${v.prefix}-${i}`);
    await waitUntil(`${HELD} holds`, 300_000, () => control.waitingCount() === HELD && markers.every((m) => requested.has(m)), 20);
    const openS = (performance.now() - tOpen) / 1000;
    const openCpu = process.cpuUsage(openC0);
    const openSyncs = syncs() - openS0;
    // Nothing may have reached the model while held.
    if (markers.some((m) => forwardedAt.has(m))) throw new Error('a held request reached the upstream before its approval');
    const after = await settledRss();
    await sleep(SETTLE_MS);
    log(`phase 2, ${v.name}: held window (${WINDOW_MS / 1000} s, ${HELD} held; opened in ${f(openS, 2)} s)`);
    const s0 = await clientStats();
    const held = await measureWindow();
    const s1 = await clientStats();
    if (control.waitingCount() !== HELD) throw new Error(`only ${control.waitingCount()} of ${HELD} still held after the window`);
    log(`phase 2, ${v.name}: releasing ${HELD}`);
    const loadRelease = loadavg();
    const pubAt = new Map<string, number>();
    const relC0 = process.cpuUsage();
    const relS0 = syncs();
    const tR = performance.now();
    const tRabs = abs();
    await Promise.all(
      markers.map((m) => {
        pubAt.set(m, performance.now());
        return publisher.publish(resolution(requested.get(m)!));
      }),
    );
    const releasePublishMs = performance.now() - tR;
    const r = await doneAll;
    const relCpu = process.cpuUsage(relC0);
    const releaseSyncs = syncs() - relS0;
    const releaseMs = r.endAbs - tRabs;
    const releaseFwd = markers.map((m) => (forwardedAt.get(m) ?? NaN) - tR);
    await app.close();
    variants.push({
      name: v.name,
      stream: v.stream,
      keepAliveMs: v.keepAliveMs,
      idle,
      held,
      rssPerHeldKiB: (after.rss - before.rss) / 1024 / HELD,
      heapPerHeldKiB: (after.heap - before.heap) / 1024 / HELD,
      openS,
      keepAlivesInWindow: s1.keepAlives - s0.keepAlives,
      clientCpuMsInWindow: (s1.cpuUs - s0.cpuUs) / 1000,
      releaseMs,
      releasePublishMs,
      releaseFwd,
      releaseCpuMs: (relCpu.user + relCpu.system) / 1000,
      releaseSyncs,
      openCpuMs: (openCpu.user + openCpu.system) / 1000,
      openSyncs,
      failures: r.failures,
      ...(r.firstFailure === undefined ? {} : { firstFailure: r.firstFailure }),
      loadRelease,
    });
    log(`phase 2, ${v.name}: all ${HELD} completed ${f(releaseMs, 0)} ms after the first publish (${r.failures} failures)`);
  }
  client.send({ cmd: 'exit' } satisfies ToClient);

  out.push(`## 2. ${HELD} requests held at once`, '');
  out.push(
    `A child process holds ${HELD} requests open (undici Pool, one connection each); this process runs the gateway, the stand-in, the control subscriber and the evidence log, so its CPU is theirs. CPU = process.cpuUsage() (user + system, all threads), ELU = performance.eventLoopUtilization() of the main thread, each over ${WINDOW_MS / 1000} s with nothing held and then with all ${HELD} held (after a warm-up of 10 held requests; each window starts after two forced GCs and ${SETTLE_MS / 1000} s of quiet). RSS/heap per held request: difference after gc (--expose-gc ${gc ? 'on' : 'OFF: figures include garbage'}) with all held vs none, divided by ${HELD}.`,
    '',
  );
  const ms = (w: Window): number => w.cpuMs / w.seconds; // ms of CPU per second
  out.push(
    table(
      ['holds', 'keepAliveMs', 'CPU ms/s, none held', 'CPU ms/s, all held', 'Δ CPU ms/s', 'Δ CPU µs/s per held', 'ELU none', 'ELU held', 'keep-alives sent in window', 'RSS KiB/held', 'heap KiB/held', 'time to hold all s', 'load (idle / held window)'],
      variants.map((v) => [
        v.name,
        String(v.keepAliveMs),
        f(ms(v.idle), 3),
        f(ms(v.held), 3),
        f(ms(v.held) - ms(v.idle), 3),
        f(((ms(v.held) - ms(v.idle)) * 1000) / HELD, 2),
        f(v.idle.elu * 100, 3) + ' %',
        f(v.held.elu * 100, 3) + ' %',
        v.stream ? String(v.keepAlivesInWindow) : '0 (none sent)',
        f(v.rssPerHeldKiB, 1),
        f(v.heapPerHeldKiB, 1),
        f(v.openS, 2),
        `${v.idle.load} / ${v.held.load}`,
      ]),
    ),
    '',
  );
  out.push(`CPU detail (ms over the window, user + system): ${variants.map((v) => `${v.name}: none held ${f(v.idle.userMs, 1)} + ${f(v.idle.sysMs, 1)}, all held ${f(v.held.userMs, 1)} + ${f(v.held.sysMs, 1)}; client process ${f(v.clientCpuMsInWindow, 1)} ms in the held window`).join('; ')}.`, '');
  out.push('CPU by thread (ms over the window, from /proc/self/task/*/schedstat; main = the event loop):', '');
  out.push(
    table(
      ['holds', 'window', ...THREAD_GROUPS],
      variants.flatMap((v) => [
        [v.name, 'none held', ...THREAD_GROUPS.map((g) => f(v.idle.threads.get(g) ?? 0, 1))],
        [v.name, `${HELD} held`, ...THREAD_GROUPS.map((g) => f(v.held.threads.get(g) ?? 0, 1))],
      ]),
    ),
    '',
  );
  out.push(
    `Getting them held: ${variants.map((v) => `${v.name}: ${HELD} held in ${f(v.openS, 2)} s, gateway-process CPU ${f(v.openCpuMs, 0)} ms (${f((v.openCpuMs * 1000) / HELD, 0)} µs per held request), ${v.openSyncs} evidence fsyncs`).join('; ')}. Each hold durably records policy.decided and approval.requested before it waits.`,
    '',
  );
  out.push(`### Releasing all ${HELD} at once`, '');
  out.push(`All ${HELD} resolutions are published back to back (Promise.all over publisher.publish); times from the first publish.`, '');
  out.push(
    table(
      ['holds', 'publishing all ms', 'forwarded p50 ms', 'forwarded p99 ms', 'last forwarded ms', 'all callers answered ms', 'CPU ms (µs/request)', 'evidence fsyncs', 'failures', 'load'],
      variants.map((v) => [v.name, f(v.releasePublishMs, 0), f(pct(v.releaseFwd, 50), 0), f(pct(v.releaseFwd, 99), 0), f(Math.max(...v.releaseFwd), 0), f(v.releaseMs, 0), `${f(v.releaseCpuMs, 0)} (${f((v.releaseCpuMs * 1000) / HELD, 0)})`, String(v.releaseSyncs), String(v.failures) + (v.firstFailure ? ` (${v.firstFailure.slice(0, 120)})` : ''), v.loadRelease]),
    ),
    '',
  );
  out.push(`Load average at end: ${loadavg()}.`, '');

  await subscriber.stop();
  await controlLog.close();
  await tail.close();
  await evidence.close('shutdown');
  await standin.close();
  process.stdout.write(out.join('\n') + '\n');
}

if (opt('role') === 'client') {
  void clientMain();
} else {
  benchMain().then(
    () => process.exit(0),
    (err: unknown) => {
      log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      process.exit(1);
    },
  );
}
