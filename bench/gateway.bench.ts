/**
 * Gateway overhead (see BENCHMARKS.md, "Gateway overhead"): what Attest costs in front of the
 * Claude API, side by side with going direct, nginx as a plain reverse proxy, and
 * `@portkey-ai/gateway` 1.15.2, all in the same run on the same machine.
 *
 *   node --import tsx bench/gateway.bench.ts [--duration 5] [--runs 3] [--streams 30] [--warmup 2]
 *        [--load wrk|autocannon] [--no-portkey] [--no-nginx] [--no-profile] [--out FILE] [--keep-tmp]
 *
 * Every server is its own process, and so is the load generator (wrk, one thread; autocannon as
 * a fallback, whose latency histogram has only 1 ms resolution):
 *   - the Messages API stand-in (test/harness/anthropic-standin-main.ts), fixed JSON reply, and a
 *     second one with a fixed SSE reply whose deltas are 20 ms apart (streaming);
 *   - Attest (`node bin/attest.mjs gateway`), dev issuer on, JWT auth and masking on, logging at
 *     warn; a second Attest at logging info (to show what per-exchange log lines cost); a third
 *     Attest in front of the SSE stand-in;
 *   - nginx, one worker, keepalive upstream, access_log off (the practical floor for an L7 proxy);
 *   - portkey, `--headless`, installed on demand into bench/vendor/portkey (own package.json).
 *
 * For each path, at concurrency 1 and 16, on a realistic ~1 KB Messages request (and, for Attest,
 * the same request with a card number in it so masking has work to do): requests/s, p50/p99
 * latency, and CPU µs per request of the proxy process (utime+stime from /proc/PID/stat before
 * and after, divided by the completed requests; for nginx master + worker; for the direct path the
 * stand-in's own). Runs are interleaved round by round (all paths in one round, then the next
 * round), and medians over the rounds are reported. Then streaming: CPU per streamed response at
 * c=32 (after a warm-up), and time to first and last byte through each path, paths staggered 5 ms
 * apart in each cycle so their first bytes never overlap; the same JSON call sent alone every 100 ms
 * ("sparse"), to separate per-request cost on an idle process from streaming; idle CPU and RSS.
 * Then CPU profiles (`node --cpu-prof`) of separate Attest processes pinned to CPU 0 (stand-in and
 * wrk on CPU 1): c=16 without and with a card number, and streaming at c=32; top self-time
 * functions, self time by component, and inclusive time of Attest's functions, mapped to .ts lines.
 * Default run: about 4.5 minutes on 2 cores. Needs wrk and nginx (apt-get install wrk nginx-light).
 *
 * Writes the report to bench/results/gateway.md (anything below the NOTES marker in that file is
 * kept) and saves the .cpuprofile files next to it (gitignored). All children are stopped on exit,
 * on errors and on SIGINT/SIGTERM; every load run is bounded by --duration and a hard timeout.
 */
import { spawn, spawnSync, execFileSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// ------------------------------------------------------------------------------------------------
// Options

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
function flag(name: string): boolean {
  return argv.includes(`--${name}`);
}
function opt(name: string): string | undefined {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
}
function num(name: string, dflt: number): number {
  const v = opt(name);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got ${v}`);
  return n;
}
const KNOWN = new Set(['duration', 'runs', 'streams', 'warmup', 'load', 'out', 'no-portkey', 'no-nginx', 'no-profile', 'keep-tmp', 'help']);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i] ?? '';
  if (!a.startsWith('--') || !KNOWN.has(a.slice(2))) throw new Error(`unknown argument ${a} (see the header of bench/gateway.bench.ts)`);
  if (['duration', 'runs', 'streams', 'warmup', 'load', 'out'].includes(a.slice(2))) i++;
}
if (flag('help')) {
  process.stdout.write('node --import tsx bench/gateway.bench.ts [--duration 5] [--runs 3] [--streams 30] [--warmup 2] [--load wrk|autocannon] [--no-portkey] [--no-nginx] [--no-profile] [--out FILE] [--keep-tmp]\n');
  process.exit(0);
}
const DURATION = Math.max(1, Math.round(num('duration', 5)));
const RUNS = Math.max(1, Math.round(num('runs', 3)));
const STREAMS = Math.max(1, Math.round(num('streams', 30)));
const WARMUP = Math.max(1, Math.round(num('warmup', 2)));
const OUT = path.resolve(opt('out') ?? path.join(ROOT, 'bench/results/gateway.md'));
const CONCURRENCY = [1, 16] as const;
const SPACING_MS = 20;
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
const UPSTREAM_KEY_ENV = 'ATTEST_BENCH_UPSTREAM_KEY';
const UPSTREAM_KEY = 'sk-ant-bench-not-a-real-key';
const PORTKEY_DIR = path.join(ROOT, 'bench/vendor/portkey');
const PORTKEY_MAIN = path.join(PORTKEY_DIR, 'node_modules/@portkey-ai/gateway/build/start-server.js');
const WATCHDOG_MS = 30 * 60_000;
const LOAD_BEFORE = fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

const log = (msg: string): void => void process.stderr.write(`[gateway.bench] ${msg}\n`);

// ------------------------------------------------------------------------------------------------
// Child processes: every one is registered, and stopped on exit whatever happens.

interface Child {
  name: string;
  proc: ChildProcess;
  out: string;
  err: string;
  /** Other pids to kill at the end (nginx workers). */
  extraPids: number[];
}
const children: Child[] = [];
const commands: string[] = [];
let TMP = '';
/** Set on a signal or the watchdog: no new child is started from then on. */
let stopping = false;

const alive = (c: Child): boolean => c.proc.exitCode === null && c.proc.signalCode === null;
const display = (s: string): string => (TMP ? s.replaceAll(TMP, '$TMP') : s).replaceAll(ROOT + '/', '');

function startChild(name: string, cmd: string, args: string[], opts: SpawnOptions = {}, record = true): Child {
  if (stopping) throw new Error('stopping: no new processes');
  const out = path.join(TMP, 'logs', `${name}.out`);
  const err = path.join(TMP, 'logs', `${name}.err`);
  const outFd = fs.openSync(out, 'a');
  const errFd = fs.openSync(err, 'a');
  const proc = spawn(cmd, args, { cwd: ROOT, ...opts, stdio: ['ignore', outFd, errFd] });
  fs.closeSync(outFd);
  fs.closeSync(errFd);
  const child: Child = { name, proc, out, err, extraPids: [] };
  children.push(child);
  proc.on('error', (e) => log(`${name}: ${e.message}`));
  if (record) commands.push(display([cmd, ...args].join(' ')));
  return child;
}

function exited(c: Child): Promise<void> {
  return alive(c) ? new Promise((resolve) => c.proc.once('exit', () => resolve())) : Promise.resolve();
}

async function stopChild(c: Child, graceMs = 5000): Promise<void> {
  if (alive(c)) {
    c.proc.kill('SIGTERM');
    await Promise.race([exited(c), sleep(graceMs)]);
    if (alive(c)) {
      c.proc.kill('SIGKILL');
      await Promise.race([exited(c), sleep(2000)]);
    }
  }
  for (const pid of c.extraPids) killPid(pid, 'SIGKILL');
}

function killPid(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* already gone */
  }
}

async function stopAll(): Promise<void> {
  await Promise.all([...children].reverse().map((c) => stopChild(c)));
}

function cleanupTmp(): void {
  if (TMP && !flag('keep-tmp')) fs.rmSync(TMP, { recursive: true, force: true });
}

process.on('exit', () => {
  for (const c of children) {
    if (alive(c)) c.proc.kill('SIGKILL');
    for (const pid of c.extraPids) killPid(pid, 'SIGKILL');
  }
  cleanupTmp();
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(sig, () => {
    stopping = true;
    log(`${sig}: stopping children`);
    void stopAll().finally(() => process.exit(130));
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function tail(file: string, n = 15): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-n).join('\n');
  } catch {
    return '';
  }
}

async function waitFor<T>(what: string, c: Child | null, timeoutMs: number, probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (c && !alive(c)) throw new Error(`${c.name} exited (${c.proc.exitCode ?? c.proc.signalCode}) while waiting for ${what}:\n${tail(c.err)}\n${tail(c.out)}`);
    let v: T | undefined;
    try {
      v = await probe();
    } catch {
      v = undefined;
    }
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${c ? `:\n${tail(c.err)}` : ''}`);
    await sleep(50);
  }
}

function waitForLine(c: Child, re: RegExp, timeoutMs = 30_000): Promise<RegExpExecArray> {
  return waitFor(`${c.name} to print ${re}`, c, timeoutMs, () => re.exec(fs.readFileSync(c.out, 'utf8')) ?? undefined);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

function which(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin'])) {
    const p = path.join(dir, cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return undefined;
}

// ------------------------------------------------------------------------------------------------
// /proc

function cpuTicks(pid: number): number {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  // fields 14 and 15 (utime, stime); after "pid (comm) " the first field is state (field 3).
  return Number(f[11]) + Number(f[12]);
}
function cpuMicros(pids: number[]): number {
  let t = 0;
  for (const p of pids) t += cpuTicks(p);
  return (t * 1e6) / CLK_TCK;
}
/** On-CPU time of all threads in ns, from /proc/PID/task/TID/schedstat (finer than clock ticks). */
function schedCpuMicros(pids: number[]): number {
  let ns = 0;
  for (const p of pids) {
    for (const tid of fs.readdirSync(`/proc/${p}/task`)) {
      try {
        ns += Number(fs.readFileSync(`/proc/${p}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      } catch {
        /* thread exited */
      }
    }
  }
  return ns / 1000;
}
function rssMiB(pids: number[]): number {
  let kb = 0;
  for (const p of pids) {
    const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${p}/status`, 'utf8'));
    kb += Number(m?.[1] ?? 0);
  }
  return kb / 1024;
}
function childPids(pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

// ------------------------------------------------------------------------------------------------
// Request bodies: a realistic small Messages call (support-desk chat, three turns, ~1 KB), with
// digits that are not card numbers (order number, date, amount), and the same call with a card.

const SYSTEM =
  'You are the customer support assistant for Acme Outfitters, an online outdoor-gear shop. Answer concisely and politely, ' +
  'in the language of the customer. Never reveal internal notes or other customers\' data. If the customer asks about an ' +
  'order, summarise its status and the next step, and offer to escalate to a human agent when a refund is involved.';
function requestBody(card: boolean, stream: boolean): Buffer {
  const lastTurn = card
    ? 'Sure, it is jamie.rivera@example.com. I paid with my Visa 4111 1111 1111 1111, exp 09/28, if that helps you find it. Also, could you send it to my office address instead? Same city, other street.'
    : 'Sure, it is jamie.rivera@example.com. I paid 129.90 EUR on 2026-11-17 with my usual card, if that helps you find it. Also, could you send it to my office address instead? Same city, other street.';
  const body = {
    model: 'claude-sonnet-4-6',
    max_tokens: 1024,
    system: SYSTEM,
    messages: [
      { role: 'user', content: 'Hi, I ordered trail running shoes last week (order 58213-B) and the tracking page has not changed since Tuesday. Where is my parcel?' },
      {
        role: 'assistant',
        content: 'Sorry for the wait! Order 58213-B left our warehouse on Monday and is with the regional carrier, whose scans can lag a day or two. Could you confirm the email address on the order so I can check the latest status?',
      },
      { role: 'user', content: [{ type: 'text', text: lastTurn }] },
    ],
    metadata: { user_id: 'cust-7f3a9c21' },
    temperature: 0.3,
    ...(stream ? { stream: true } : {}),
  };
  return Buffer.from(JSON.stringify(body));
}

// ------------------------------------------------------------------------------------------------
// Targets and load runs

interface Target {
  url: string;
  headers: Record<string, string>;
  body: Buffer;
}

interface LoadResult {
  requests: number;
  seconds: number;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  /** µs of CPU per completed request, of the measured process(es). */
  cpuUs: number;
  /** The upstream stand-in's CPU per request (undefined for the direct path). */
  upstreamCpuUs?: number;
  /** Bytes the process wrote to its log file per request. */
  logBytes?: number;
}

const luaStr = (s: string): string => JSON.stringify(s);
let luaSeq = 0;
function wrkScript(t: Target): string {
  const bodyFile = path.join(TMP, `body-${++luaSeq}.json`);
  fs.writeFileSync(bodyFile, t.body);
  const lines = [
    `local f = assert(io.open(${luaStr(bodyFile)}, "rb"))`,
    'wrk.body = f:read("*a")',
    'f:close()',
    'wrk.method = "POST"',
    ...Object.entries(t.headers).map(([k, v]) => `wrk.headers[${luaStr(k)}] = ${luaStr(v)}`),
    'done = function(summary, latency, requests)',
    '  local e = summary.errors',
    '  io.write(string.format("WRKJSON {\\"requests\\":%d,\\"duration_us\\":%d,\\"connect\\":%d,\\"read\\":%d,\\"write\\":%d,\\"status\\":%d,\\"timeout\\":%d,\\"p50\\":%.1f,\\"p99\\":%.1f}\\n",',
    '    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(99)))',
    'end',
  ];
  const file = path.join(TMP, `load-${luaSeq}.lua`);
  fs.writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

/** cpu: run the load generator pinned to that CPU (taskset), for the profile run. */
type Loader = (t: Target, c: number, seconds: number, cpu?: number) => Promise<Omit<LoadResult, 'cpuUs'>>;
const TASKSET = which('taskset');
const pinned = (cpu: number | undefined, cmd: string, args: string[]): [string, string[]] =>
  cpu !== undefined && TASKSET ? [TASKSET, ['-c', String(cpu), cmd, ...args]] : [cmd, args];
const scriptCache = new Map<Target, string>();
let loadSeq = 0;

function runToEnd(name: string, cmd: string, args: string[], timeoutMs: number, recordCommand: boolean): Promise<string> {
  const c = startChild(name, cmd, args, {}, false);
  if (recordCommand) commands.push(display([cmd, ...args].join(' ')));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      c.proc.kill('SIGKILL');
      reject(new Error(`${name} did not finish in ${timeoutMs} ms`));
    }, timeoutMs);
    c.proc.once('exit', (code, sig) => {
      clearTimeout(timer);
      children.splice(children.indexOf(c), 1);
      const out = fs.readFileSync(c.out, 'utf8');
      if (code !== 0) reject(new Error(`${name} exited ${code ?? sig}: ${tail(c.err)}${out.slice(-500)}`));
      else resolve(out);
    });
  });
}

const wrkLoader = (wrk: string): Loader => {
  let recorded = 0;
  return async (t, c, seconds, cpu) => {
    let script = scriptCache.get(t);
    if (!script) scriptCache.set(t, (script = wrkScript(t)));
    const args = ['-t1', `-c${c}`, `-d${seconds}s`, '--timeout', '5s', '-s', script, t.url];
    const out = await runToEnd(`wrk-${++loadSeq}`, ...pinned(cpu, wrk, args), (seconds + 30) * 1000, recorded++ < 2);
    const m = /WRKJSON (\{.*\})/.exec(out);
    if (!m?.[1]) throw new Error(`wrk printed no result:\n${out}`);
    const r = JSON.parse(m[1]) as Record<string, number>;
    const secs = (r.duration_us ?? 0) / 1e6;
    const requests = r.requests ?? 0;
    return {
      requests,
      seconds: secs,
      rps: requests / secs,
      p50: r.p50 ?? NaN,
      p99: r.p99 ?? NaN,
      errors: (r.connect ?? 0) + (r.read ?? 0) + (r.write ?? 0) + (r.status ?? 0) + (r.timeout ?? 0),
    };
  };
};

const autocannonLoader = (): Loader => {
  let recorded = 0;
  return async (t, c, seconds, cpu) => {
    const bodyFile = path.join(TMP, `ac-body-${++loadSeq}.json`);
    fs.writeFileSync(bodyFile, t.body);
    const args = [path.join(ROOT, 'node_modules/autocannon/autocannon.js'), '-c', String(c), '-d', String(seconds), '-m', 'POST', '-i', bodyFile, '-j'];
    for (const [k, v] of Object.entries(t.headers)) args.push('-H', `${k}=${v}`);
    args.push(t.url);
    const out = await runToEnd(`autocannon-${loadSeq}`, ...pinned(cpu, process.execPath, args), (seconds + 30) * 1000, recorded++ < 2);
    const r = JSON.parse(out.slice(out.indexOf('{'))) as {
      requests: { total: number };
      latency: { p50: number; p99: number };
      duration: number;
      errors: number;
      timeouts: number;
      non2xx: number;
    };
    return {
      requests: r.requests.total,
      seconds: r.duration,
      rps: r.requests.total / r.duration,
      p50: r.latency.p50 * 1000,
      p99: r.latency.p99 * 1000,
      errors: r.errors + r.timeouts + r.non2xx,
    };
  };
};

// One request, whole body (checks that a path works) or streamed (TTFB / TTLB).
interface OneResult {
  status: number;
  body: string;
  headersMs: number;
  ttfbMs: number;
  ttlbMs: number;
  chunks: number;
}
function requestOnce(t: Target, agent: http.Agent, timeoutMs = 10_000): Promise<OneResult> {
  const u = new URL(t.url);
  return new Promise((resolve, reject) => {
    const start = performance.now();
    let headersMs = NaN;
    let ttfbMs = NaN;
    let chunks = 0;
    const parts: Buffer[] = [];
    const req = http.request(
      { agent, host: u.hostname, port: u.port, path: u.pathname + u.search, method: 'POST', headers: { ...t.headers, 'content-length': String(t.body.length) } },
      (res) => {
        headersMs = performance.now() - start;
        res.on('data', (d: Buffer) => {
          if (chunks++ === 0) ttfbMs = performance.now() - start;
          parts.push(d);
        });
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString('utf8'), headersMs, ttfbMs, ttlbMs: performance.now() - start, chunks });
        });
        res.on('error', reject);
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer from ${t.url} in ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(t.body);
  });
}

async function getText(url: string): Promise<string> {
  const r = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return r.text();
}

// ------------------------------------------------------------------------------------------------
// Stats and formatting

const median = (xs: number[]): number => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const pct = (xs: number[], p: number): number => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
};
const f0 = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? '–' : Math.round(x).toLocaleString('en-US'));
const f1 = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(1));
const f2 = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(2));
const f3 = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(3));
const ratio = (a: number, b: number): string => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : '–');
const signed = (x: number): string => (Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${Math.round(x)}` : '–');
function table(head: string[], rows: string[][]): string {
  return [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

// ------------------------------------------------------------------------------------------------
// CPU profile summary. tsx compiles each .ts file to one line (minifyWhitespace), so the profile's
// positions in Attest's files are (line 1, column N) of the compiled code. The profiled gateway runs
// with TMPDIR pointing at a fresh directory, so tsx's transform cache there holds exactly the
// compiled code and source map of each file it loaded; they map positions back to the .ts lines.

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
}
interface ProfileSummary {
  busyMs: number;
  idleMs: number;
  requests: number;
  self: Array<{ key: string; ms: number }>;
  components: Array<{ key: string; ms: number }>;
  attestInclusive: Array<{ key: string; ms: number }>;
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
/** Decodes a source map's mappings: per generated line, [genCol, srcIdx, srcLine, srcCol] sorted by genCol. */
function decodeMappings(mappings: string): number[][][] {
  const lines: number[][][] = [];
  let srcIdx = 0;
  let srcLine = 0;
  let srcCol = 0;
  let name = 0;
  for (const line of mappings.split(';')) {
    const segs: number[][] = [];
    let genCol = 0;
    for (const seg of line.split(',')) {
      if (!seg) continue;
      const vals: number[] = [];
      let shift = 0;
      let value = 0;
      for (const ch of seg) {
        const d = B64.indexOf(ch);
        value += (d & 31) << shift;
        if (d & 32) shift += 5;
        else {
          vals.push(value & 1 ? -(value >>> 1) : value >>> 1);
          value = 0;
          shift = 0;
        }
      }
      genCol += vals[0] ?? 0;
      if (vals.length >= 4) {
        srcIdx += vals[1]!;
        srcLine += vals[2]!;
        srcCol += vals[3]!;
        if (vals.length >= 5) name += vals[4]!;
        segs.push([genCol, srcIdx, srcLine, srcCol]);
      }
    }
    lines.push(segs);
  }
  return lines;
}

/** url of a compiled file -> lookup of (0-based line, column) to the 1-based line in its .ts source. */
function loadTsxMaps(cacheRoot: string): Map<string, (line: number, col: number) => number | undefined> {
  const out = new Map<string, (line: number, col: number) => number | undefined>();
  let dirs: string[] = [];
  try {
    dirs = fs.readdirSync(cacheRoot).filter((d) => d.startsWith('tsx-')).map((d) => path.join(cacheRoot, d));
  } catch {
    return out;
  }
  for (const dir of dirs) {
    for (const f of fs.readdirSync(dir)) {
      try {
        const entry = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as { map?: { sources?: string[]; mappings?: string } | string };
        const map = typeof entry.map === 'string' ? (JSON.parse(entry.map) as { sources?: string[]; mappings?: string }) : entry.map;
        const src = map?.sources?.[0];
        if (!map?.mappings || !src) continue;
        const url = src.startsWith('file://') ? src : `file://${path.resolve(src)}`;
        const lines = decodeMappings(map.mappings);
        out.set(url, (line, col) => {
          const segs = lines[line];
          if (!segs?.length) return undefined;
          let lo = 0;
          let hi = segs.length - 1;
          while (lo < hi) {
            const mid = (lo + hi + 1) >> 1;
            if (segs[mid]![0]! <= col) lo = mid;
            else hi = mid - 1;
          }
          return segs[lo]![0]! <= col ? segs[lo]![2]! + 1 : segs[0]![2]! + 1;
        });
      } catch {
        /* not a transform cache entry */
      }
    }
  }
  return out;
}

function shortUrl(url: string): string {
  let u = url.replace(/^file:\/\//, '');
  if (u.startsWith(ROOT + '/')) u = u.slice(ROOT.length + 1);
  const nm = u.lastIndexOf('node_modules/');
  if (nm >= 0) u = u.slice(nm);
  return u;
}
function component(cf: ProfileNode['callFrame']): string {
  const url = cf.url;
  if (!url) return cf.functionName.startsWith('(') ? cf.functionName : '(V8 builtins / native code: JSON, RegExp, Buffer, syscalls…)';
  if (url.startsWith('node:')) {
    const m = /^node:(?:internal\/)?([^/]+)/.exec(url);
    return `node core: ${m?.[1] ?? url}`;
  }
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return `npm: ${rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  const s = shortUrl(url);
  return s.startsWith('services/') ? `attest: ${s}` : s;
}

/**
 * Self time per function and component, and inclusive time of Attest's own functions, over the
 * samples taken between fromUs and toUs (process.hrtime in µs: the same monotonic clock as V8's).
 */
function summariseProfile(file: string, requests: number, fromUs: number, toUs: number, maps: ReturnType<typeof loadTsxMaps>): ProfileSummary {
  const prof = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of prof.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const keys = new Map<number, string>();
  const keyOf = (n: ProfileNode): string => {
    let k = keys.get(n.id);
    if (k === undefined) {
      const cf = n.callFrame;
      const name = cf.functionName || '(anonymous)';
      if (!cf.url) k = name;
      else {
        const line = maps.get(cf.url)?.(cf.lineNumber, cf.columnNumber) ?? cf.lineNumber + 1;
        k = `${name} ${shortUrl(cf.url)}:${line}`;
      }
      keys.set(n.id, k);
    }
    return k;
  };
  const self = new Map<string, number>();
  const comp = new Map<string, number>();
  const incl = new Map<string, number>();
  let busy = 0;
  let idle = 0;
  const deltas = prof.timeDeltas;
  let t = prof.startTime;
  for (let i = 0; i < prof.samples.length; i++) {
    t += deltas[i] ?? 0;
    if (t < fromUs || t > toUs) continue;
    const node = byId.get(prof.samples[i]!);
    if (!node) continue;
    const dt = (deltas[i + 1] ?? deltas[i] ?? 0) / 1000; // ms
    if (node.callFrame.functionName === '(idle)') {
      idle += dt;
      continue;
    }
    busy += dt;
    const k = keyOf(node);
    self.set(k, (self.get(k) ?? 0) + dt);
    const c = component(node.callFrame);
    comp.set(c, (comp.get(c) ?? 0) + dt);
    // Inclusive time of Attest's own functions (each counted once per sample).
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const n = byId.get(id);
      if (!n || !n.callFrame.url.includes('/services/')) continue;
      const key = keyOf(n);
      if (seen.has(key)) continue;
      seen.add(key);
      incl.set(key, (incl.get(key) ?? 0) + dt);
    }
  }
  const top = (m: Map<string, number>, n: number) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([key, ms]) => ({ key, ms }));
  return { busyMs: busy, idleMs: idle, requests, self: top(self, 25), components: top(comp, 16), attestInclusive: top(incl, 20) };
}

// ------------------------------------------------------------------------------------------------
// Setup of the paths

interface PathDef {
  key: string;
  label: string;
  target: Target;
  /** Pids whose CPU is "the proxy's". */
  pids: () => number[];
  /** Stand-in pid when the path is a proxy in front of it. */
  upstreamPid?: number;
  /** File the process logs into (to count log bytes per request). */
  logFile?: string;
  failed?: string;
}

/** Each gateway process holds its own event log, so each gets its own data directory. */
function attestDataDir(name: string): string {
  return path.join(TMP, `data-${name}`);
}

/** Shares the development issuer key of `from` (where dev-token minted the token) with `name`. */
function shareDevKey(from: string, name: string): void {
  const dst = attestDataDir(name);
  fs.mkdirSync(dst, { recursive: true });
  const key = path.join(dst, 'dev-issuer.jwk.json');
  fs.copyFileSync(path.join(attestDataDir(from), 'dev-issuer.jwk.json'), key);
  fs.chmodSync(key, 0o600);
}

function attestYaml(upstream: string, level: string, name: string): string {
  return [
    '# Attest gateway config for bench/gateway.bench.ts',
    'server:',
    '  host: 127.0.0.1',
    '  port: 0',
    'limits:',
    '  shutdownGraceMs: 2000',
    'upstream:',
    '  anthropic:',
    `    baseUrl: ${upstream}`,
    '    apiKey:',
    `      env: ${UPSTREAM_KEY_ENV}`,
    'identity:',
    '  devIssuer:',
    '    enabled: true',
    'masking:',
    '  format: bin6-last4',
    '  request: mask',
    '  response: mask',
    'groups:',
    '  bench:',
    '    routes: [messages, count_tokens, models]',
    '    models: ["claude-*"]',
    '    maxTokens: 8192',
    '    streaming: true',
    `dataDir: ${attestDataDir(name)}`,
    'logging:',
    `  level: ${level}`,
    '',
  ].join('\n');
}

function nginxConf(jsonUp: string, sseUp: string, jsonPort: number, ssePort: number): string {
  const hp = (u: string) => new URL(u).host;
  return `# nginx as a plain reverse proxy for bench/gateway.bench.ts
${process.getuid?.() === 0 ? 'user root;\n' : ''}worker_processes 1;
daemon off;
pid ${TMP}/nginx.pid;
error_log ${TMP}/logs/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${TMP}/nginx-tmp/body;
  proxy_temp_path ${TMP}/nginx-tmp/proxy;
  fastcgi_temp_path ${TMP}/nginx-tmp/fastcgi;
  uwsgi_temp_path ${TMP}/nginx-tmp/uwsgi;
  scgi_temp_path ${TMP}/nginx-tmp/scgi;
  upstream standin_json { server ${hp(jsonUp)}; keepalive 64; }
  upstream standin_sse { server ${hp(sseUp)}; keepalive 16; }
  server {
    listen 127.0.0.1:${jsonPort};
    location / { proxy_pass http://standin_json; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
  server {
    listen 127.0.0.1:${ssePort};
    location / { proxy_pass http://standin_sse; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
  }
}
`;
}

async function startStandin(name: string, reply: 'fixed-json' | 'fixed-sse', spacing?: number, cpu?: number): Promise<{ child: Child; url: string }> {
  const args = ['--import', 'tsx', 'test/harness/anthropic-standin-main.ts', '--port', '0', '--reply', reply];
  if (spacing !== undefined) args.push('--spacing-ms', String(spacing));
  const child = startChild(name, ...pinned(cpu, process.execPath, args));
  const m = await waitForLine(child, /\{"url":"([^"]+)"\}/);
  return { child, url: m[1]! };
}

async function startAttest(name: string, config: string, extraNodeArgs: string[] = [], extraEnv: Record<string, string> = {}, cpu?: number): Promise<{ child: Child; url: string }> {
  const child = startChild(name, ...pinned(cpu, process.execPath, [...extraNodeArgs, 'bin/attest.mjs', 'gateway', '--config', config]), {
    env: { ...process.env, [UPSTREAM_KEY_ENV]: UPSTREAM_KEY, ...extraEnv },
  });
  const m = await waitForLine(child, /Attest gateway listening on (http:\/\/\S+)/);
  return { child, url: m[1]! };
}

async function ensurePortkey(): Promise<string | undefined> {
  if (fs.existsSync(PORTKEY_MAIN)) return undefined;
  log('installing @portkey-ai/gateway into bench/vendor/portkey (npm install)…');
  try {
    await runToEnd('npm-install-portkey', 'npm', ['install', '--prefix', PORTKEY_DIR, '--no-audit', '--no-fund'], 300_000, true);
  } catch (e) {
    return `npm install --prefix bench/vendor/portkey failed: ${(e as Error).message.slice(0, 400)}`;
  }
  return fs.existsSync(PORTKEY_MAIN) ? undefined : `installed, but ${display(PORTKEY_MAIN)} is missing`;
}

// ------------------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'attest-gw-bench-'));
  fs.mkdirSync(path.join(TMP, 'logs'));
  fs.mkdirSync(path.join(TMP, 'data'));
  for (const d of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) fs.mkdirSync(path.join(TMP, 'nginx-tmp', d), { recursive: true });
  const t0 = Date.now();
  const notes: string[] = [];

  const wrkBin = which('wrk');
  const loadKind = opt('load') ?? (wrkBin ? 'wrk' : 'autocannon');
  if (loadKind === 'wrk' && !wrkBin) throw new Error('wrk is not installed (apt-get install wrk), or run with --load autocannon');
  if (loadKind !== 'wrk' && loadKind !== 'autocannon') throw new Error(`--load must be wrk or autocannon, not ${loadKind}`);
  const load: Loader = loadKind === 'wrk' ? wrkLoader(wrkBin!) : autocannonLoader();
  if (loadKind === 'autocannon') notes.push('Load generator: autocannon (wrk not found). Its latency histogram has 1 ms resolution, so p50/p99 below are coarse.');

  // Upstream stand-ins.
  log('starting stand-ins…');
  const [sJson, sSse] = await Promise.all([startStandin('standin-json', 'fixed-json'), startStandin('standin-sse', 'fixed-sse', SPACING_MS)]);

  // Attest configs and a development token (the dev issuer key is created once in dataDir).
  const cfgWarn = path.join(TMP, 'attest-warn.yaml');
  const cfgInfo = path.join(TMP, 'attest-info.yaml');
  const cfgSse = path.join(TMP, 'attest-sse.yaml');
  fs.writeFileSync(cfgWarn, attestYaml(sJson.url, 'warn', 'warn'));
  fs.writeFileSync(cfgInfo, attestYaml(sJson.url, 'info', 'info'));
  fs.writeFileSync(cfgSse, attestYaml(sSse.url, 'warn', 'sse'));
  const tokenOut = await runToEnd('dev-token', process.execPath, ['bin/attest.mjs', 'dev-token', '--config', cfgWarn, '--group', 'bench'], 60_000, true);
  for (const name of ['info', 'sse', 'prof', 'prof-sse']) shareDevKey('warn', name);
  const token = tokenOut.trim().split('\n').pop()!.trim();
  if (!/^[\w-]+\.[\w-]+\.[\w-]+$/.test(token)) throw new Error(`dev-token printed no JWT: ${tokenOut.slice(0, 200)}`);

  log('starting Attest gateways, nginx, portkey…');
  const nginxBin = flag('no-nginx') ? undefined : which('nginx');
  const [aWarn, aInfo, aSse] = await Promise.all([startAttest('attest-warn', cfgWarn), startAttest('attest-info', cfgInfo), startAttest('attest-sse', cfgSse)]);

  let nginx: { child: Child; json: string; sse: string } | undefined;
  let nginxWhy: string | undefined = flag('no-nginx') ? 'skipped (--no-nginx)' : nginxBin ? undefined : 'nginx is not installed (apt-get install nginx-light)';
  let nginxConfText = '';
  if (nginxBin) {
    try {
      const [pj, ps] = [await freePort(), await freePort()];
      const conf = path.join(TMP, 'nginx.conf');
      nginxConfText = nginxConf(sJson.url, sSse.url, pj, ps);
      fs.writeFileSync(conf, nginxConfText);
      const child = startChild('nginx', nginxBin, ['-p', TMP, '-c', conf, '-e', path.join(TMP, 'logs/nginx-error.log')]);
      const json = `http://127.0.0.1:${pj}`;
      await waitFor('nginx to answer', child, 10_000, async () => ((await getText(`${json}/`)) !== undefined ? true : undefined));
      child.extraPids = await waitFor('nginx worker', child, 5000, () => {
        const w = childPids(child.proc.pid!);
        return w.length > 0 ? w : undefined;
      });
      nginx = { child, json, sse: `http://127.0.0.1:${ps}` };
    } catch (e) {
      nginxWhy = `nginx failed to start: ${(e as Error).message.slice(0, 300)}`;
    }
  }

  let portkey: { child: Child; url: string; version: string } | undefined;
  let portkeyWhy: string | undefined = flag('no-portkey') ? 'skipped (--no-portkey)' : await ensurePortkey();
  if (!portkeyWhy) {
    try {
      const port = await freePort();
      const child = startChild('portkey', process.execPath, [PORTKEY_MAIN, `--port=${port}`, '--headless'], { cwd: PORTKEY_DIR });
      const url = `http://127.0.0.1:${port}`;
      await waitFor('portkey to answer', child, 20_000, async () => ((await getText(`${url}/`)).includes('AI Gateway') ? true : undefined));
      const version = (JSON.parse(fs.readFileSync(path.join(PORTKEY_DIR, 'node_modules/@portkey-ai/gateway/package.json'), 'utf8')) as { version: string }).version;
      portkey = { child, url, version };
    } catch (e) {
      portkeyWhy = `portkey failed to start: ${(e as Error).message.slice(0, 300)}`;
    }
  }

  // ---- the paths ----
  const body = requestBody(false, false);
  const cardBody = requestBody(true, false);
  const base = { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' };
  const callerKey = { 'x-api-key': 'sk-ant-caller-key-direct' };
  const attestAuth = { 'x-api-key': token };
  const portkeyHeaders = (up: string) => ({ ...base, 'x-api-key': UPSTREAM_KEY, 'x-portkey-provider': 'anthropic', 'x-portkey-custom-host': `${up}/v1` });
  const pid = (c: Child) => c.proc.pid!;

  const paths: PathDef[] = [
    { key: 'direct', label: 'direct to the stand-in', target: { url: `${sJson.url}/v1/messages`, headers: { ...base, ...callerKey }, body }, pids: () => [pid(sJson.child)] },
  ];
  if (nginx) {
    const n = nginx;
    paths.push({ key: 'nginx', label: 'nginx reverse proxy', target: { url: `${n.json}/v1/messages`, headers: { ...base, ...callerKey }, body }, pids: () => [pid(n.child), ...n.child.extraPids], upstreamPid: pid(sJson.child) });
  }
  if (portkey) {
    const p = portkey;
    paths.push({ key: 'portkey', label: `portkey ${p.version} (headless)`, target: { url: `${p.url}/v1/messages`, headers: portkeyHeaders(sJson.url), body }, pids: () => [pid(p.child)], upstreamPid: pid(sJson.child) });
  }
  paths.push(
    { key: 'attest', label: 'Attest (auth + masking, log warn)', target: { url: `${aWarn.url}/v1/messages`, headers: { ...base, ...attestAuth }, body }, pids: () => [pid(aWarn.child)], upstreamPid: pid(sJson.child) },
    { key: 'attest-card', label: 'Attest, body with a card number', target: { url: `${aWarn.url}/v1/messages`, headers: { ...base, ...attestAuth }, body: cardBody }, pids: () => [pid(aWarn.child)], upstreamPid: pid(sJson.child) },
    { key: 'attest-info', label: 'Attest, log level info', target: { url: `${aInfo.url}/v1/messages`, headers: { ...base, ...attestAuth }, body }, pids: () => [pid(aInfo.child)], upstreamPid: pid(sJson.child), logFile: aInfo.child.out },
  );

  // ---- check every path answers 200 with the stand-in's message ----
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  let replyBytes = 0;
  for (const p of paths) {
    try {
      const r = await requestOnce(p.target, agent);
      if (p.key === 'direct') replyBytes = Buffer.byteLength(r.body);
      if (r.status !== 200 || !r.body.includes('quick brown fox')) throw new Error(`status ${r.status}: ${r.body.slice(0, 300)}`);
    } catch (e) {
      p.failed = `check request failed: ${(e as Error).message}`;
      log(`${p.key}: ${p.failed}`);
    }
  }
  const maskHits = async (): Promise<number> => {
    const text = await getText(`${aWarn.url}/metrics`);
    const m = /^attest_masking_hits_total\{[^}]*direction="request"[^}]*\}\s+(\d+)/m.exec(text);
    return Number(m?.[1] ?? 0);
  };
  // Idle cost: CPU used by each process over a few seconds with no traffic.
  const IDLE_S = 3;
  const idleProcs: Array<[string, number[]]> = [['stand-in (JSON)', [pid(sJson.child)]], ['Attest (warn)', [pid(aWarn.child)]]];
  if (nginx) idleProcs.push(['nginx (master + worker)', [pid(nginx.child), ...nginx.child.extraPids]]);
  if (portkey) idleProcs.push(['portkey', [pid(portkey.child)]]);
  await sleep(2000); // let start-up JIT and GC work settle
  const idle0 = idleProcs.map(([, p]) => schedCpuMicros(p));
  await sleep(IDLE_S * 1000);
  const idleCpu = idleProcs.map(([k, p], i) => [k, (schedCpuMicros(p) - idle0[i]!) / 1000 / IDLE_S] as [string, number]);
  const hitsBefore = await maskHits();
  let cardRequests = 0;
  let cardRuns = 0;

  // ---- runs: warm up, then rounds with every path at every concurrency ----
  const results = new Map<string, LoadResult[]>();
  const rk = (key: string, c: number) => `${key}@${c}`;
  const measure = async (p: PathDef, c: number, seconds: number): Promise<LoadResult> => {
    const pids = p.pids();
    const logBefore = p.logFile ? fs.statSync(p.logFile).size : 0;
    const cpu0 = cpuMicros(pids);
    const up0 = p.upstreamPid ? cpuMicros([p.upstreamPid]) : 0;
    const r = await load(p.target, c, seconds);
    const cpu1 = cpuMicros(pids);
    const up1 = p.upstreamPid ? cpuMicros([p.upstreamPid]) : 0;
    if (p.key === 'attest-card') {
      cardRequests += r.requests;
      cardRuns++;
    }
    const n = Math.max(1, r.requests);
    return {
      ...r,
      cpuUs: (cpu1 - cpu0) / n,
      ...(p.upstreamPid ? { upstreamCpuUs: (up1 - up0) / n } : {}),
      ...(p.logFile ? { logBytes: (fs.statSync(p.logFile).size - logBefore) / n } : {}),
    };
  };

  log(`warm-up: ${WARMUP} s at c=16 per path`);
  for (const p of paths.filter((q) => !q.failed)) {
    try {
      await measure(p, 16, WARMUP);
    } catch (e) {
      p.failed = `warm-up failed: ${(e as Error).message.slice(0, 300)}`;
    }
  }
  for (let round = 1; round <= RUNS; round++) {
    for (const c of CONCURRENCY) {
      for (const p of paths) {
        if (p.failed) continue;
        log(`round ${round}/${RUNS}: ${p.key} c=${c}`);
        try {
          const r = await measure(p, c, DURATION);
          if (r.errors > 0) log(`${p.key} c=${c}: ${r.errors} errors (non-2xx, resets or timeouts)`);
          const list = results.get(rk(p.key, c)) ?? [];
          list.push(r);
          results.set(rk(p.key, c), list);
        } catch (e) {
          if (stopping) throw e;
          p.failed = `run failed: ${(e as Error).message.slice(0, 300)}`;
          log(`${p.key}: ${p.failed}`);
        }
      }
    }
  }
  const hitsAfter = await maskHits();

  // ---- streaming: TTFB / TTLB ----
  log(`streaming: ${STREAMS} cycles, paths staggered 5 ms apart`);
  const sBody = requestBody(false, true);
  interface StreamPath {
    key: string;
    label: string;
    target: Target;
    pids: number[];
    failed?: string;
    /** From a c=32 run after warm-up: streams completed, CPU µs per stream of the proxy and of the stand-in. */
    warm?: { streams: number; cpuUs: number; upUs: number; errors: number };
  }
  const ssePid = pid(sSse.child);
  const streamPaths: StreamPath[] = [
    { key: 'direct', label: 'direct to the stand-in', target: { url: `${sSse.url}/v1/messages`, headers: { ...base, ...callerKey }, body: sBody }, pids: [ssePid] },
  ];
  if (nginx) streamPaths.push({ key: 'nginx', label: 'nginx (proxy_buffering off)', target: { url: `${nginx.sse}/v1/messages`, headers: { ...base, ...callerKey }, body: sBody }, pids: [pid(nginx.child), ...nginx.child.extraPids] });
  if (portkey) streamPaths.push({ key: 'portkey', label: `portkey ${portkey.version}`, target: { url: `${portkey.url}/v1/messages`, headers: portkeyHeaders(sSse.url), body: sBody }, pids: [pid(portkey.child)] });
  streamPaths.push({ key: 'attest', label: 'Attest', target: { url: `${aSse.url}/v1/messages`, headers: { ...base, ...attestAuth }, body: sBody }, pids: [pid(aSse.child)] });
  const streamRes = new Map<string, OneResult[]>();
  const sAgents = new Map(streamPaths.map((p) => [p.key, new http.Agent({ keepAlive: true, maxSockets: 1 })]));
  const WARM_CYCLES = 3;
  // Warm each path's streaming code (JIT) first: a few hundred streams at c=32. Cold, Attest's
  // per-delta path runs in V8's interpreter and the first byte takes milliseconds longer.
  // A second run, once warm, gives CPU per streamed response.
  for (const p of streamPaths) {
    try {
      await load(p.target, 32, WARMUP);
      const cpu0 = cpuMicros(p.pids);
      const up0 = cpuMicros([ssePid]);
      const r = await load(p.target, 32, WARMUP + 1);
      const n = Math.max(1, r.requests);
      p.warm = { streams: r.requests, cpuUs: (cpuMicros(p.pids) - cpu0) / n, upUs: (cpuMicros([ssePid]) - up0) / n, errors: r.errors };
    } catch (e) {
      p.failed = `streaming warm-up failed: ${(e as Error).message.slice(0, 200)}`;
    }
  }
  const ttfbMetric = async (): Promise<{ sum: number; count: number }> => {
    const text = await getText(`${aSse.url}/metrics`);
    const sum = /^attest_gateway_time_to_first_byte_seconds_sum\{[^}]*stream="true"[^}]*\}\s+(\S+)/m.exec(text);
    const count = /^attest_gateway_time_to_first_byte_seconds_count\{[^}]*stream="true"[^}]*\}\s+(\S+)/m.exec(text);
    return { sum: Number(sum?.[1] ?? 0), count: Number(count?.[1] ?? 0) };
  };
  const ttfb0 = await ttfbMetric();
  for (let cycle = 0; cycle < STREAMS + WARM_CYCLES; cycle++) {
    await Promise.all(
      streamPaths.map(async (p, k) => {
        if (p.failed) return;
        await sleep(k * 5);
        try {
          const r = await requestOnce(p.target, sAgents.get(p.key)!);
          if (r.status !== 200 || !r.body.includes('event: message_stop')) throw new Error(`status ${r.status}: ${r.body.slice(0, 300)}`);
          if (cycle >= WARM_CYCLES) streamRes.set(p.key, [...(streamRes.get(p.key) ?? []), r]);
        } catch (e) {
          p.failed = (e as Error).message.slice(0, 300);
          log(`stream ${p.key}: ${p.failed}`);
        }
      }),
    );
  }
  for (const a of sAgents.values()) a.destroy();
  agent.destroy();
  const ttfb1 = await ttfbMetric();
  const internalTtfbMs = ttfb1.count > ttfb0.count ? ((ttfb1.sum - ttfb0.sum) * 1000) / (ttfb1.count - ttfb0.count) : NaN;

  // ---- sparse non-streaming requests: the same JSON call with a pause before each one, so every
  // process in the path is idle when it arrives (as in the streaming TTFB test, unlike the c=1 runs).
  const SPARSE_GAP_MS = 100;
  const SPARSE_N = Math.max(5, Math.round(STREAMS * 0.7));
  log(`sparse requests: ${SPARSE_N} per path, ${SPARSE_GAP_MS} ms apart`);
  const sparsePaths = paths.filter((p) => !p.failed && p.key !== 'attest-card' && p.key !== 'attest-info');
  const sparse = new Map<string, number[]>();
  const spAgents = new Map(sparsePaths.map((p) => [p.key, new http.Agent({ keepAlive: true, maxSockets: 1 })]));
  for (let i = 0; i < SPARSE_N + 2; i++) {
    for (const p of sparsePaths) {
      await sleep(SPARSE_GAP_MS);
      try {
        const r = await requestOnce(p.target, spAgents.get(p.key)!);
        if (r.status === 200 && i >= 2) sparse.set(p.key, [...(sparse.get(p.key) ?? []), r.ttlbMs]);
      } catch {
        /* counted as missing */
      }
    }
  }
  for (const a of spAgents.values()) a.destroy();

  // Memory after load.
  const rss: Array<[string, number]> = [['stand-in (JSON)', rssMiB([pid(sJson.child)])], ['Attest (warn)', rssMiB([pid(aWarn.child)])], ['Attest (info)', rssMiB([pid(aInfo.child)])]];
  if (nginx) rss.push(['nginx (master + worker)', rssMiB([pid(nginx.child), ...nginx.child.extraPids])]);
  if (portkey) rss.push(['portkey', rssMiB([pid(portkey.child)])]);

  // ---- CPU profiles of Attest under c=16 load, in separate processes (profiling costs nothing above).
  // V8 samples the main thread by wall-clock time, so time the gateway spends descheduled would be
  // charged to whatever was on its stack (typically `writev`, right after waking the peer). With 2+
  // cores the profiled gateway gets CPU 0 to itself, and its own stand-in and the load generator
  // share CPU 1, so the profile is close to on-CPU time.
  const profiles: Array<{ label: string; summary: ProfileSummary; file: string; cpuUs: number; rps: number; c: number; unit: string }> = [];
  let profileWhy: string | undefined = flag('no-profile') ? 'skipped (--no-profile)' : undefined;
  const pin = TASKSET && os.cpus().length >= 2;
  if (!profileWhy) {
    await stopAll();
    const profDir = path.join(path.dirname(OUT), 'profiles');
    fs.mkdirSync(profDir, { recursive: true });
    try {
      const [upJson, upSse] = await Promise.all([
        startStandin('profile-standin-json', 'fixed-json', undefined, pin ? 1 : undefined),
        startStandin('profile-standin-sse', 'fixed-sse', SPACING_MS, pin ? 1 : undefined),
      ]);
      const cfgProf = path.join(TMP, 'attest-profile.yaml');
      const cfgProfSse = path.join(TMP, 'attest-profile-sse.yaml');
      fs.writeFileSync(cfgProf, attestYaml(upJson.url, 'warn', 'prof'));
      fs.writeFileSync(cfgProfSse, attestYaml(upSse.url, 'warn', 'prof-sse'));
      for (const [label, b, name, cfg, c, unit] of [
        ['non-streaming, c=16, no card number', body, 'attest-c16-nocard', cfgProf, 16, 'request'],
        ['non-streaming, c=16, card number in the body', cardBody, 'attest-c16-card', cfgProf, 16, 'request'],
        [`streaming, c=32, deltas ${SPACING_MS} ms apart, no card number`, sBody, 'attest-c32-stream', cfgProfSse, 32, 'stream'],
      ] as const) {
        const dir = path.join(TMP, `prof-${name}`);
        const cache = path.join(TMP, `tsx-cache-${name}`);
        fs.mkdirSync(dir);
        fs.mkdirSync(cache);
        log(`profiling Attest (${label})…`);
        const g = await startAttest(`profile-${name}`, cfg, ['--cpu-prof', `--cpu-prof-dir=${dir}`], { TMPDIR: cache }, pin ? 0 : undefined);
        const target: Target = { url: `${g.url}/v1/messages`, headers: { ...base, ...attestAuth }, body: b };
        await load(target, c, WARMUP, pin ? 1 : undefined);
        const cpu0 = cpuMicros([pid(g.child)]);
        const fromUs = Number(process.hrtime.bigint() / 1000n);
        const r = await load(target, c, DURATION, pin ? 1 : undefined);
        const toUs = Number(process.hrtime.bigint() / 1000n);
        const cpuUs = (cpuMicros([pid(g.child)]) - cpu0) / Math.max(1, r.requests);
        await stopChild(g.child, 10_000);
        // CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile: thread 0 is the main thread (1 is tsx's loader thread).
        const f = fs.readdirSync(dir).find((x) => /\.\d+\.0\.\d+\.cpuprofile$/.test(x)) ?? fs.readdirSync(dir).find((x) => x.endsWith('.cpuprofile'));
        if (!f) throw new Error('the gateway wrote no .cpuprofile on exit');
        const dest = path.join(profDir, `${name}.cpuprofile`);
        fs.copyFileSync(path.join(dir, f), dest);
        profiles.push({ label, summary: summariseProfile(dest, r.requests, fromUs, toUs, loadTsxMaps(cache)), file: dest, cpuUs, rps: r.rps, c, unit });
      }
    } catch (e) {
      profileWhy = `profiling failed: ${(e as Error).message.slice(0, 300)}`;
      log(profileWhy);
    }
  }

  await stopAll();

  // ---------------------------------------------------------------------------------------------
  // Report

  const agg = (key: string, c: number) => {
    const l = results.get(rk(key, c)) ?? [];
    return {
      n: l.length,
      rps: median(l.map((r) => r.rps)),
      p50: median(l.map((r) => r.p50)),
      p99: median(l.map((r) => r.p99)),
      cpu: median(l.map((r) => r.cpuUs)),
      up: median(l.map((r) => r.upstreamCpuUs ?? NaN)),
      errors: l.reduce((s, r) => s + r.errors, 0),
      requests: l.reduce((s, r) => s + r.requests, 0),
      logBytes: median(l.map((r) => r.logBytes ?? NaN)),
    };
  };
  const live = paths.filter((p) => results.has(rk(p.key, 1)) || results.has(rk(p.key, 16)));
  const out: string[] = [];
  const sh = (cmd: string, args: string[]): string => {
    const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
    return `${r.stdout ?? ''}${r.stderr ?? ''}`.replace(/^\n+/, '').trimEnd();
  };
  const cpuModel = /model name\s*:\s*(.+)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '?';
  out.push('# Gateway overhead', '');
  out.push(`Written by \`bench/gateway.bench.ts\`; the lead merges it into bench/RESULTS.md. Method: /work/shared/BENCHMARKS.md, "Gateway overhead".`, '');
  out.push('## Run', '');
  out.push(`- date: \`${sh('date', ['-u'])}\``);
  out.push(`- machine: \`nproc\` = ${sh('nproc', [])}, CPU ${cpuModel}, load average (1/5/15 min) at the start ${LOAD_BEFORE}, at the end ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')} (a shared machine: other people's builds and tests run on it at the same time, which mostly shows in p99)`);
  out.push('- `free -g`:', '', '```', sh('free', ['-g']), '```', '');
  out.push(`- node ${process.version}; load generator: ${loadKind === 'wrk' ? `${sh(wrkBin!, ['-v']).split('\n')[0]} (one thread)` : 'autocannon 9'}; ${nginxBin ? sh(nginxBin, ['-v']) : 'nginx: none'}; ${portkey ? `@portkey-ai/gateway ${portkey.version}` : 'portkey: none'}`);
  out.push(`- command: \`node --import tsx bench/gateway.bench.ts${argv.length ? ' ' + argv.join(' ') : ''}\` — ${DURATION} s per measurement, ${RUNS} interleaved rounds (medians reported), ${WARMUP} s warm-up per path at c=16; whole run ${Math.round((Date.now() - t0) / 1000)} s`);
  out.push(`- request bodies: ${body.length} bytes (no card number; has an order number, a date and an amount), ${cardBody.length} bytes with a Visa test PAN (masked by Attest). Reply: the stand-in's fixed ${replyBytes}-byte JSON message (no card number).`);
  out.push(`- CPU per request: (utime + stime) of the proxy process(es) from /proc/PID/stat before and after each measurement, divided by the requests completed (CLK_TCK ${CLK_TCK}). Direct: the stand-in's own CPU. nginx: master + its one worker.`);
  out.push('');

  for (const c of CONCURRENCY) {
    out.push(`## Non-streaming, concurrency ${c}`, '');
    out.push(
      table(
        ['path', 'req/s', 'p50 µs', 'p99 µs', 'proxy CPU µs/req', 'stand-in CPU µs/req', 'runs', 'errors'],
        live.map((p) => {
          const a = agg(p.key, c);
          return [p.label, f0(a.rps), f0(a.p50), f0(a.p99), f1(a.cpu), p.key === 'direct' ? `(${f1(a.cpu)})` : f1(a.up), String(a.n), String(a.errors)];
        }),
      ),
      '',
    );
  }

  out.push('## Ratios (medians, same run)', '');
  const ratioRows: string[][] = [];
  for (const key of ['attest', 'attest-card']) {
    if (!results.has(rk(key, 1)) && !results.has(rk(key, 16))) continue;
    for (const refKey of ['direct', 'nginx', 'portkey']) {
      if (!results.has(rk(refKey, 1)) && !results.has(rk(refKey, 16))) continue;
      for (const c of CONCURRENCY) {
        const a = agg(key, c);
        const r = agg(refKey, c);
        ratioRows.push([
          `${key} vs ${refKey}`,
          String(c),
          ratio(a.rps, r.rps),
          `${ratio(a.p50, r.p50)} (${signed(a.p50 - r.p50)} µs)`,
          `${ratio(a.p99, r.p99)} (${signed(a.p99 - r.p99)} µs)`,
          refKey === 'direct' ? `${ratio(a.cpu, r.cpu)} (vs the stand-in)` : ratio(a.cpu, r.cpu),
        ]);
      }
    }
  }
  out.push(table(['comparison', 'c', 'req/s', 'p50', 'p99', 'CPU µs/req'], ratioRows), '');

  // Targets.
  out.push('## Targets', '');
  const check = (ok: boolean | undefined) => (ok === undefined ? 'n/a' : ok ? '**met**' : '**not met**');
  const tRows: string[][] = [];
  for (const key of ['attest', 'attest-card']) {
    for (const c of CONCURRENCY) {
      const a = agg(key, c);
      if (a.n === 0) continue;
      tRows.push([`CPU ≤ 120 µs/request (${key}, c=${c})`, `${f1(a.cpu)} µs`, check(Number.isFinite(a.cpu) ? a.cpu <= 120 : undefined)]);
    }
  }
  for (const key of ['attest', 'attest-card']) {
    const a = agg(key, 1);
    const d = agg('direct', 1);
    if (a.n && d.n) tRows.push([`p50 added latency at c=1 ≤ +100 µs (${key})`, `${signed(a.p50 - d.p50)} µs (${f0(a.p50)} vs ${f0(d.p50)})`, check(a.p50 - d.p50 <= 100)]);
  }
  for (const key of ['attest', 'attest-card']) {
    const a = agg(key, 16);
    const d = agg('direct', 16);
    if (a.n && d.n) tRows.push([`p99 at c=16 ≤ 1.5× direct (${key})`, `${ratio(a.p99, d.p99)} (${f0(a.p99)} vs ${f0(d.p99)} µs)`, check(a.p99 <= 1.5 * d.p99)]);
  }
  out.push(table(['target', 'measured', ''], tRows), '');
  out.push('BENCHMARKS.md states the CPU target as ≤ 150 µs/request; the issue tightened it to ≤ 120 µs, which is what is checked here.', '');

  // Logging.
  {
    const rows: string[][] = [];
    for (const c of CONCURRENCY) {
      const w = agg('attest', c);
      const i = agg('attest-info', c);
      if (!w.n || !i.n) continue;
      rows.push([String(c), f1(w.cpu), f1(i.cpu), signed(i.cpu - w.cpu), f0(w.p50), f0(i.p50), ratio(i.rps, w.rps), f0(i.logBytes)]);
    }
    if (rows.length) {
      out.push('## Logging level: warn vs info', '');
      out.push('`info` writes one `exchange` line per request (pino, synchronous write to the process\'s stdout, here a file).', '');
      out.push(table(['c', 'CPU µs/req warn', 'CPU µs/req info', 'Δ CPU µs', 'p50 µs warn', 'p50 µs info', 'req/s info/warn', 'log bytes/req'], rows), '');
    }
  }

  // Masking proof.
  {
    const delta = hitsAfter - hitsBefore;
    out.push('## Masking did run', '');
    out.push(
      `\`attest_masking_hits_total{direction="request"}\` on the gateway (which served both the card and the no-card bodies) rose by ${delta.toLocaleString('en-US')} over the load runs, while ${cardRequests.toLocaleString('en-US')} card-number requests completed in ${cardRuns} runs (up to 16 more per run may have been in flight when the load generator stopped): ${delta >= cardRequests && delta <= cardRequests + 16 * cardRuns ? 'consistent — every card request was masked once and no no-card request was' : 'INCONSISTENT — check'}.`,
      '',
    );
  }

  // Streaming.
  out.push(`## Streaming (stand-in deltas ${SPACING_MS} ms apart), ${STREAMS} requests per path`, '');
  out.push('Time from sending the request to the first body byte (TTFB), to the last byte (TTLB), and the number of `data` chunks the client received; medians. Each cycle starts the paths 5 ms apart so their first bytes never coincide. A proxy that buffered would show a TTFB near the TTLB and few chunks.', '');
  {
    const d = streamRes.get('direct') ?? [];
    const dT = median(d.map((r) => r.ttfbMs));
    const dL = median(d.map((r) => r.ttlbMs));
    out.push(
      table(
        ['path', 'n', 'TTFB ms p50', 'TTFB ms p90', 'Δ TTFB vs direct ms', 'TTLB ms p50', 'Δ TTLB vs direct ms', 'chunks p50'],
        streamPaths.map((p) => {
          const l = streamRes.get(p.key) ?? [];
          const t = median(l.map((r) => r.ttfbMs));
          const L = median(l.map((r) => r.ttlbMs));
          return [p.label + (p.failed ? ` (failed: ${p.failed})` : ''), String(l.length), f3(t), f3(pct(l.map((r) => r.ttfbMs), 90)), p.key === 'direct' ? '' : f3(t - dT), f1(L), p.key === 'direct' ? '' : f2(L - dL), f0(median(l.map((r) => r.chunks)))];
        }),
      ),
      '',
    );
    out.push(`CPU per streamed response (${SPACING_MS} ms-spaced deltas, ${f0(median((streamRes.get('direct') ?? []).map((r) => r.chunks)))} chunks), measured over ${WARMUP + 1} s at c=32 after a ${WARMUP} s warm-up at c=32, before the TTFB measurements:`, '');
    out.push(
      table(
        ['path', 'streams', 'proxy CPU µs/stream', 'stand-in CPU µs/stream', 'errors'],
        streamPaths.filter((p) => p.warm).map((p) => [p.label, f0(p.warm!.streams), f0(p.warm!.cpuUs), p.key === 'direct' ? `(${f0(p.warm!.cpuUs)})` : f0(p.warm!.upUs), String(p.warm!.errors)]),
      ),
      '',
    );
    const a = streamRes.get('attest') ?? [];
    const aT = median(a.map((r) => r.ttfbMs));
    if (a.length && d.length) {
      out.push(`Target: Attest TTFB within 1 ms of direct: ${f3(aT - dT)} ms → ${check(aT - dT <= 1)}. Attest's own \`attest_gateway_time_to_first_byte_seconds\` (request received → first byte written) averaged ${f3(internalTtfbMs)} ms over these requests.`, '');
    }
  }

  // Sparse requests.
  {
    const d = median(sparse.get('direct') ?? []);
    out.push(`## Sparse non-streaming requests (one every ${SPARSE_GAP_MS} ms per path)`, '');
    out.push(
      'The same JSON call, sent alone after a pause, so the processes on the path are idle (as in the streaming TTFB test). Latency from request sent to response complete; medians. Compare with p50 at c=1 above, where requests follow each other back to back.',
      '',
    );
    out.push(
      table(
        ['path', 'n', 'latency ms p50', 'Δ vs direct ms', 'p50 at c=1 (back to back) ms'],
        sparsePaths.map((p) => {
          const l = sparse.get(p.key) ?? [];
          return [p.label, String(l.length), f3(median(l)), p.key === 'direct' ? '' : f3(median(l) - d), f3(agg(p.key, 1).p50 / 1000)];
        }),
      ),
      '',
    );
  }

  // Memory.
  out.push('## Memory after the runs (RSS) and idle CPU', '');
  out.push(`Idle CPU: CPU time of all threads over ${IDLE_S} s with no traffic, after start-up (ms of CPU per second, from /proc/PID/task/*/schedstat).`, '');
  out.push(table(['process', 'RSS MiB', 'idle CPU ms/s'], rss.map(([k, v]) => [k, f0(v), f1(idleCpu.find(([n]) => n === k)?.[1])])), '');

  // Profiles.
  out.push('## CPU profiles of Attest under load', '');
  out.push(
    'How to read: V8 samples the main thread (1 ms interval) by wall-clock time. `writev` is the socket write, and on loopback it includes the kernel delivering the bytes to the receiving socket (and waking the receiver); `(garbage collector)` is GC on the main thread only (concurrent marking threads are not in the profile but are in the process CPU above). "µs/req" = sample time / requests served in the window.',
    '',
  );
  if (profiles.length === 0) out.push(`No profile: ${profileWhy ?? 'unknown reason'}.`, '');
  for (const p of profiles) {
    const s = p.summary;
    const perReq = (ms: number) => (ms * 1000) / Math.max(1, s.requests);
    out.push(`### ${p.label}`, '');
    out.push(
      `\`${pin ? 'taskset -c 0 ' : ''}node --cpu-prof bin/attest.mjs gateway …\` (a separate gateway process${pin ? ' on CPU 0; its stand-in and wrk on CPU 1' : ''}), ${WARMUP} s warm-up, then ${DURATION} s at c=${p.c}: ${s.requests.toLocaleString('en-US')} ${p.unit}s, ${f0(p.rps)}/s, process CPU ${f1(p.cpuUs)} µs per ${p.unit} (profiler overhead included). Only the samples of those ${DURATION} s are counted: main thread busy ${f0(s.busyMs)} ms (${f1(perReq(s.busyMs))} µs per ${p.unit}), idle ${f0(s.idleMs)} ms. Lines are .ts source lines (mapped through tsx's source maps). Profile: \`${display(p.file)}\` (Chrome DevTools or speedscope; gitignored).`,
      '',
    );
    out.push('Top self time (functions):', '');
    const u = p.unit === 'stream' ? 'µs/stream' : 'µs/req';
    const clip = (k: string) => (k.length > 110 ? `${k.slice(0, 107)}…` : k);
    out.push(table(['function', 'self ms', '% of busy', u], s.self.map((x) => [`\`${clip(x.key)}\``, f0(x.ms), f1((100 * x.ms) / s.busyMs), f2(perReq(x.ms))])), '');
    out.push('Self time by component:', '');
    out.push(table(['component', 'self ms', '% of busy', u], s.components.map((x) => [x.key, f0(x.ms), f1((100 * x.ms) / s.busyMs), f2(perReq(x.ms))])), '');
    out.push("Attest's own functions, inclusive time (self + callees; `(anonymous)` are closures, named by their .ts line):", '');
    out.push(table(['function', 'total ms', '% of busy', u], s.attestInclusive.map((x) => [`\`${clip(x.key)}\``, f0(x.ms), f1((100 * x.ms) / s.busyMs), f2(perReq(x.ms))])), '');
  }

  // What could not run.
  const problems: string[] = [];
  if (nginxWhy) problems.push(`nginx: ${nginxWhy}`);
  if (portkeyWhy) problems.push(`portkey: ${portkeyWhy}`);
  for (const p of paths) if (p.failed) problems.push(`${p.key}: ${p.failed}`);
  for (const p of streamPaths) if (p.failed) problems.push(`streaming ${p.key}: ${p.failed}`);
  if (profileWhy && profiles.length === 0) problems.push(`profile: ${profileWhy}`);
  out.push('## Problems in this run', '', problems.length ? problems.map((x) => `- ${x}`).join('\n') : 'None.', '');
  if (notes.length) out.push(...notes.map((n) => `- ${n}`), '');

  out.push('## Exact commands', '', '`$TMP` is the run\'s temporary directory. Ports are picked at run time.', '', '```');
  out.push(...commands, '```', '');
  out.push('<details><summary>Attest config (attest-warn.yaml; attest-info.yaml differs only in logging.level, attest-sse.yaml in upstream.anthropic.baseUrl)</summary>', '', '```yaml', display(fs.readFileSync(cfgWarn, 'utf8')).trimEnd(), '```', '', '</details>', '');
  if (nginxConfText) out.push('<details><summary>nginx.conf</summary>', '', '```nginx', display(nginxConfText).trimEnd(), '```', '', '</details>', '');
  if (portkey) out.push(`portkey requests carry \`x-portkey-provider: anthropic\` and \`x-portkey-custom-host: <stand-in>/v1\` and the upstream key as \`x-api-key\`; versions pinned by bench/vendor/portkey/package.json (hono 4.9.7, @hono/node-server 1.13.5, @hono/node-ws 1.2.0 through \`overrides\`).`, '');

  const MARK = '<!-- NOTES: everything below this line is kept when bench/gateway.bench.ts rewrites this file -->';
  let kept = `${MARK}\n`;
  if (fs.existsSync(OUT)) {
    const prev = fs.readFileSync(OUT, 'utf8');
    const i = prev.indexOf(MARK);
    if (i >= 0) kept = prev.slice(i);
  }
  const report = `${out.join('\n')}\n${kept}`;
  fs.mkdirSync(path.dirname(OUT), { recursive: true });
  fs.writeFileSync(OUT, report);
  process.stdout.write(out.join('\n') + '\n');
  log(`report written to ${display(OUT)}`);
}

const watchdog = setTimeout(() => {
  stopping = true;
  log(`watchdog: still running after ${WATCHDOG_MS / 60_000} min, stopping`);
  void stopAll().finally(() => process.exit(3));
}, WATCHDOG_MS);
watchdog.unref();

main().then(
  () => {
    if (stopping) return;
    clearTimeout(watchdog);
    process.exit(0);
  },
  (err: unknown) => {
    if (stopping) return; // the signal handler or the watchdog is already stopping everything
    log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    void stopAll().finally(() => process.exit(1));
  },
);
