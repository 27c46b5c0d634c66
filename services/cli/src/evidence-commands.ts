import { parseArgs, type ParseArgsConfig } from 'node:util';

/**
 * The auditor's `attest` commands: thin clients of the running platform's evidence API (the
 * embedded store can be opened by one process only, so the CLI never opens it itself).
 *
 *   attest evidence query [NAME] [filters] [--format table|json|csv]   run a documented query (no NAME: list them)
 *   attest sessions show ID [--from --to] [--format …]                 replay one session
 *   attest pan-lookup [--from --to --tenant] [--format …]              card number on stdin, never in argv
 *   attest verify [--from --to] [--format json]                        exit 0 only when the evidence is intact
 *   attest keys export                                                 the evidence-signing JWKS
 *
 * Common options: --url (default $ATTEST_CONSOLE_URL, else http://127.0.0.1:8090), --token
 * (default $ATTEST_TOKEN). Each command returns its exit code and writes only to the given
 * streams, so it can be called in-process.
 *
 * Exit codes: 0 done (verify: intact); 1 verify found problems, or the session does not exist;
 * 2 usage error (bad option, unknown query, bad parameter, no token); 3 the console could not be
 * used (unreachable, token refused, not an auditor, server error).
 */

export interface CliIO {
  readonly stdout: { write(chunk: string): unknown };
  readonly stderr: { write(chunk: string): unknown };
  /** Where pan-lookup reads the card number. Default process.stdin. */
  readonly stdin?: AsyncIterable<string | Uint8Array> & { isTTY?: boolean };
  /** Default process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

export const EXIT = { ok: 0, failed: 1, usage: 2, unavailable: 3 } as const;
export const DEFAULT_CONSOLE_URL = 'http://127.0.0.1:8090';

type Options = NonNullable<ParseArgsConfig['options']>;
const CONNECTION: Options = { url: { type: 'string' }, token: { type: 'string' } };
const FILTERS: Options = {
  from: { type: 'string' },
  to: { type: 'string' },
  subject: { type: 'string' },
  session: { type: 'string' },
  tenant: { type: 'string' },
  limit: { type: 'string' },
};
const FORMAT: Options = { format: { type: 'string', short: 'f' } };
const REQUEST_TIMEOUT_MS = 300_000;

class CliFailure extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
    /** The console's error body, when the failure is its answer. */
    readonly apiError?: ApiError,
  ) {
    super(message);
  }
}

/** `attest evidence query [NAME]`: with NAME runs it; without, lists the catalog. */
export async function evidenceQuery(args: readonly string[], io: CliIO): Promise<number> {
  return run(io, async () => {
    const { values, positionals } = parse(args, { ...CONNECTION, ...FILTERS, ...FORMAT }, true);
    const format = formatOf(values, ['table', 'json', 'csv'], 'table');
    const conn = connection(values, io);
    if (positionals.length > 1) throw new CliFailure(EXIT.usage, 'give one query name');
    const name = positionals[0];
    if (name === undefined) {
      const res = await call(conn, 'GET', '/v1/evidence/queries');
      const catalog = JSON.parse(res.body) as { queries: { name: string; requirement: string; title: string; route?: string }[] };
      if (format === 'json') io.stdout.write(`${JSON.stringify(catalog, null, 2)}\n`);
      else {
        const width = Math.max(...catalog.queries.map((q) => q.name.length));
        for (const q of catalog.queries) io.stdout.write(`${q.name.padEnd(width)}  PCI DSS ${q.requirement}: ${q.title}${q.route ? ` (${q.route})` : ''}\n`);
      }
      return EXIT.ok;
    }
    const res = await call(conn, 'GET', `/v1/evidence/queries/${encodeURIComponent(name)}${queryString(values, ['from', 'to', 'subject', 'session', 'tenant', 'limit'], format)}`);
    writeBody(io, res.body);
    return EXIT.ok;
  });
}

/** `attest sessions show ID`: one session's events in order. */
export async function sessionsShow(args: readonly string[], io: CliIO): Promise<number> {
  return run(io, async () => {
    const { values, positionals } = parse(args, { ...CONNECTION, from: FILTERS.from!, to: FILTERS.to!, tenant: FILTERS.tenant!, limit: FILTERS.limit!, ...FORMAT }, true);
    const format = formatOf(values, ['table', 'json', 'csv'], 'table');
    const conn = connection(values, io);
    const id = positionals[0];
    if (id === undefined || positionals.length > 1) throw new CliFailure(EXIT.usage, 'usage: attest sessions show SESSION_ID [--from T] [--to T] [--format table|json|csv]');
    const res = await call(conn, 'GET', `/v1/sessions/${encodeURIComponent(id)}${queryString(values, ['from', 'to', 'tenant', 'limit'], format)}`);
    writeBody(io, res.body);
    return EXIT.ok;
  });
}

/**
 * `attest pan-lookup`: where did this card appear? The number is read from stdin (never from
 * argv: it would land in shell history and the process table), sent once to the console, and never
 * printed; the answer shows BIN and last four only.
 */
export async function panLookup(args: readonly string[], io: CliIO): Promise<number> {
  return run(io, async () => {
    let parsed;
    try {
      parsed = parseArgs({ args: [...args], options: { ...CONNECTION, from: FILTERS.from!, to: FILTERS.to!, tenant: FILTERS.tenant!, limit: FILTERS.limit!, ...FORMAT }, strict: true, allowPositionals: true });
    } catch {
      // parseArgs would quote the offending argument, which may be the card number.
      throw new CliFailure(EXIT.usage, 'usage: attest pan-lookup [--from T] [--to T] [--tenant ID] [--format table|json|csv] < card-number (options: --url, --token)');
    }
    if (parsed.positionals.length > 0) {
      throw new CliFailure(EXIT.usage, 'the card number is read from stdin, never from the command line (it would stay in your shell history): echo it into `attest pan-lookup`, or type it after running the command');
    }
    const values = parsed.values;
    const format = formatOf(values, ['table', 'json', 'csv'], 'table');
    const conn = connection(values, io);
    const stdin = io.stdin ?? (process.stdin as CliIO['stdin'] & object);
    if (stdin.isTTY === true) io.stderr.write('card number (then Enter, Ctrl-D): ');
    let text = '';
    for await (const chunk of stdin) {
      text += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      if (text.length > 256) throw new CliFailure(EXIT.usage, 'stdin holds more than one card number: give exactly one');
    }
    const pan = text.trim();
    if (pan.length === 0) throw new CliFailure(EXIT.usage, 'no card number on stdin');
    const res = await call(conn, 'POST', `/v1/evidence/pan-lookup${queryString(values, ['from', 'to', 'tenant', 'limit'], format)}`, { pan });
    writeBody(io, res.body);
    return EXIT.ok;
  });
}

/**
 * `attest verify`: exit 0 only when every stored event verifies against the signed checkpoints.
 * One verification holds its window in the console's memory, so the console refuses a window of
 * too many events (verify_window_too_large, with the count and the stored time span); the command
 * then splits the window into time slices small enough and verifies them one by one.
 */
export async function verify(args: readonly string[], io: CliIO): Promise<number> {
  return run(io, async () => {
    const { values } = parse(args, { ...CONNECTION, from: FILTERS.from!, to: FILTERS.to!, ...FORMAT }, false);
    const format = formatOf(values, ['text', 'json'], 'text');
    const conn = connection(values, io);
    const from = typeof values.from === 'string' ? values.from : undefined;
    const to = typeof values.to === 'string' ? values.to : undefined;
    const reports: VerifyAnswer[] = [];
    await verifyWindow(conn, from, to, reports, io);
    const report = reports.length === 1 ? reports[0]! : mergeReports(reports);
    if (format === 'json') io.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else io.stdout.write(verifySummary(report));
    return report.ok ? EXIT.ok : EXIT.failed;
  });
}

/** Slices are made this much smaller than the console's limit, since events are not spread evenly in time. */
const SLICE_HEADROOM = 0.8;

async function verifyWindow(conn: Connection, from: string | undefined, to: string | undefined, out: VerifyAnswer[], io: CliIO): Promise<void> {
  const q = new URLSearchParams();
  if (from !== undefined) q.set('from', from);
  if (to !== undefined) q.set('to', to);
  let res: { body: string };
  try {
    res = await call(conn, 'GET', `/v1/verify${q.size > 0 ? `?${q.toString()}` : ''}`);
  } catch (err) {
    const e = err instanceof CliFailure ? err.apiError : undefined;
    if (e?.code !== 'verify_window_too_large') throw err;
    const events = Number(e.events);
    const max = Number(e.max);
    const fromUs = Number(e.fromUs);
    const toUs = Number(e.toUs);
    if (!(events > 0 && max > 0 && Number.isSafeInteger(fromUs) && Number.isSafeInteger(toUs))) throw err;
    const slices = Math.ceil(events / (max * SLICE_HEADROOM));
    const widthUs = Math.floor((toUs - fromUs + 1) / slices);
    // A single microsecond holding more events than the console reads at once cannot be split.
    if (widthUs < 1) throw err;
    io.stderr.write(`attest: the window holds ${events} events, more than the console verifies at once (${max}): verifying it in ${slices} slices\n`);
    for (let i = 0; i < slices; i++) {
      const a = fromUs + i * widthUs;
      // Slices are given in microseconds since the epoch (which the console takes as a time); the
      // last one keeps the caller's end (none: the console's "stored through" default).
      await verifyWindow(conn, String(a), i === slices - 1 ? to : String(a + widthUs - 1), out, io);
    }
    return;
  }
  out.push(JSON.parse(res.body) as VerifyAnswer);
}

/**
 * Several slices' reports as one: findings and pending ranges once each, counts summed (producers
 * and epochs: the most any slice saw). A checkpoint straddling two slices is verified whole in
 * both, so its events count twice.
 */
function mergeReports(reports: readonly VerifyAnswer[]): VerifyAnswer {
  const findings = new Map<string, VerifyAnswer['findings'][number]>();
  const pending = new Map<string, VerifyAnswer['pending'][number]>();
  const stats = { events: 0, checkpoints: 0, trustedCheckpoints: 0, producers: 0, epochs: 0, attestedEvents: 0, pendingEvents: 0, redactedEvents: 0 };
  for (const r of reports) {
    for (const f of r.findings) findings.set(JSON.stringify([f.code, f.producer, f.epoch, f.sequences, f.eventIds]), f);
    for (const p of r.pending) pending.set(JSON.stringify(p), p);
    for (const k of Object.keys(stats) as (keyof typeof stats)[]) {
      const v = r.stats[k] ?? 0;
      stats[k] = k === 'producers' || k === 'epochs' ? Math.max(stats[k], v) : stats[k] + v;
    }
  }
  const first = reports[0]!;
  const last = reports[reports.length - 1]!;
  return {
    ok: reports.every((r) => r.ok) && findings.size === 0,
    window: { ...last.window, from: first.window.from },
    findings: [...findings.values()],
    pending: [...pending.values()],
    stats,
    slices: reports.map((r) => r.window),
  };
}

/** `attest keys export`: the public keys that verify evidence offline (JWKS). */
export async function keysExport(args: readonly string[], io: CliIO): Promise<number> {
  return run(io, async () => {
    const { values } = parse(args, CONNECTION, false);
    const conn = connection(values, io);
    const res = await call(conn, 'GET', '/.well-known/jwks.json');
    io.stdout.write(`${JSON.stringify(JSON.parse(res.body), null, 2)}\n`);
    return EXIT.ok;
  });
}

// ---------------------------------------------------------------------------------------------

interface VerifyAnswer {
  ok: boolean;
  window: { from: string; to: string };
  findings: { code: string; producer: string; epoch: string | null; sequences: { from: number; to: number } | null; eventIds: string[]; detail: string }[];
  pending: { producer: string; epoch: string; from: number; to: number; count: number }[];
  stats: { events: number; checkpoints: number; trustedCheckpoints: number; producers: number; epochs: number; attestedEvents: number; pendingEvents: number; redactedEvents?: number };
  /** Present when the window was verified in slices: each slice's window. */
  slices?: { from: string; to: string }[];
}

/** The human summary: a verdict, the counts, then one line per finding naming its events. */
export function verifySummary(r: VerifyAnswer): string {
  const s = r.stats;
  const lines = [
    r.ok ? 'Evidence intact.' : `Evidence NOT intact: ${r.findings.length} finding${r.findings.length === 1 ? '' : 's'}.`,
    `  window:      ${r.window.from} .. ${r.window.to}`,
    `  events:      ${s.events} (${s.attestedEvents} attested by signed checkpoints, ${s.pendingEvents} pending the next checkpoint)`,
    `  checkpoints: ${s.checkpoints} (${s.trustedCheckpoints} validly signed); producers: ${s.producers}; epochs: ${s.epochs}`,
    ...(r.slices === undefined ? [] : [`  slices:      ${r.slices.length} (counts summed over slices; a checkpoint straddling two slices is verified in both)`]),
  ];
  for (const f of r.findings) {
    const seq = f.sequences === null ? '' : f.sequences.from === f.sequences.to ? ` sequence ${f.sequences.from}` : ` sequences ${f.sequences.from}-${f.sequences.to}`;
    const ids = f.eventIds.length === 0 ? '' : ` event${f.eventIds.length === 1 ? '' : 's'} ${f.eventIds.join(', ')}`;
    lines.push(`  ${f.code.toUpperCase()} ${f.producer}${f.epoch === null ? '' : ` epoch ${f.epoch}`}${seq}${ids}: ${f.detail}`);
  }
  return `${lines.join('\n')}\n`;
}

interface Connection {
  url: string;
  token: string;
}

function parse(args: readonly string[], options: Options, allowPositionals: boolean) {
  try {
    return parseArgs({ args: [...args], options, strict: true, allowPositionals });
  } catch (err) {
    throw new CliFailure(EXIT.usage, `${(err as Error).message} (options: ${Object.keys(options).map((o) => `--${o}`).join(' ')})`);
  }
}

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

function formatOf<F extends string>(values: Values, allowed: readonly F[], dflt: F): F {
  const f = values.format;
  if (f === undefined) return dflt;
  if (typeof f !== 'string' || !(allowed as readonly string[]).includes(f)) throw new CliFailure(EXIT.usage, `--format must be one of ${allowed.join(', ')}`);
  return f as F;
}

function connection(values: Values, io: CliIO): Connection {
  const env = io.env ?? process.env;
  const url = (typeof values.url === 'string' ? values.url : undefined) ?? env.ATTEST_CONSOLE_URL ?? DEFAULT_CONSOLE_URL;
  try {
    const u = new URL(url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http');
  } catch {
    throw new CliFailure(EXIT.usage, `--url must be an http(s) URL of the Attest console, got "${url}"`);
  }
  const token = (typeof values.token === 'string' ? values.token : undefined) ?? env.ATTEST_TOKEN;
  if (token === undefined || token.trim() === '') {
    throw new CliFailure(EXIT.usage, 'no token: pass --token TOKEN or set $ATTEST_TOKEN to an OIDC access token of an auditor (development: `attest dev-token --group auditors`)');
  }
  return { url: url.replace(/\/+$/, ''), token: token.trim() };
}

function queryString(values: Values, names: readonly string[], format: string | undefined): string {
  const q = new URLSearchParams();
  for (const n of names) {
    const v = values[n];
    if (typeof v === 'string') q.set(n, v);
  }
  if (format !== undefined) q.set('format', format);
  const s = q.toString();
  return s === '' ? '' : `?${s}`;
}

interface ApiError {
  code: string;
  message: string;
  parameter?: string;
  known?: string[];
  [detail: string]: unknown;
}

async function call(conn: Connection, method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; body: string }> {
  let res: Response;
  try {
    res = await fetch(`${conn.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${conn.token}`, accept: 'application/json, text/csv, text/plain', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const why = (err as Error).name === 'TimeoutError' ? `no answer within ${REQUEST_TIMEOUT_MS / 1000} s` : (cause?.code ?? cause?.message ?? (err as Error).message);
    throw new CliFailure(EXIT.unavailable, `cannot reach the Attest console at ${conn.url} (${why}): is the platform running (\`attest start\`)? Point --url or $ATTEST_CONSOLE_URL at it`);
  }
  const text = await res.text();
  if (res.ok) return { status: res.status, body: text };
  let e: ApiError | undefined;
  try {
    e = (JSON.parse(text) as { error?: ApiError }).error;
  } catch {
    e = undefined;
  }
  const code = e?.code ?? res.headers.get('x-attest-error') ?? `http_${res.status}`;
  const message = e?.message ?? `HTTP ${res.status}`;
  if (res.status === 401) {
    throw new CliFailure(EXIT.unavailable, `the console refused the token (${code}): ${message}\n  fix: get a fresh access token from your identity provider and pass it with --token or $ATTEST_TOKEN`);
  }
  if (res.status === 403) throw new CliFailure(EXIT.unavailable, `not allowed (${code}): ${message}`);
  if (code === 'unknown_query') {
    const known = e?.known ?? [];
    throw new CliFailure(EXIT.usage, `unknown evidence query: ${message.split(';')[0]?.replace(/^unknown evidence query /, '') ?? ''}\nknown queries:\n${known.map((k) => `  ${k}`).join('\n')}\n(\`attest evidence query\` lists them with their PCI DSS requirements)`);
  }
  if (code === 'session_not_found') throw new CliFailure(EXIT.failed, message);
  if (res.status === 400 || res.status === 413) throw new CliFailure(EXIT.usage, `${message}${e?.parameter ? ` [parameter: ${e.parameter}]` : ''} (${code})`, e);
  throw new CliFailure(EXIT.unavailable, `the console answered ${res.status} (${code}): ${message}`);
}

function writeBody(io: CliIO, body: string): void {
  io.stdout.write(body.endsWith('\n') ? body : `${body}\n`);
}

async function run(io: CliIO, fn: () => Promise<number>): Promise<number> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof CliFailure) {
      io.stderr.write(`attest: ${err.message}\n`);
      return err.exitCode;
    }
    io.stderr.write(`attest: ${(err as Error).message ?? String(err)}\n`);
    return EXIT.unavailable;
  }
}
