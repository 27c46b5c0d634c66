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

/** `attest verify`: exit 0 only when every stored event verifies against the signed checkpoints. */
export async function verify(args: readonly string[], io: CliIO): Promise<number> {
  return run(io, async () => {
    const { values } = parse(args, { ...CONNECTION, from: FILTERS.from!, to: FILTERS.to!, ...FORMAT }, false);
    const format = formatOf(values, ['text', 'json'], 'text');
    const conn = connection(values, io);
    const res = await call(conn, 'GET', `/v1/verify${queryString(values, ['from', 'to'], undefined)}`);
    const report = JSON.parse(res.body) as VerifyAnswer;
    if (format === 'json') io.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else io.stdout.write(verifySummary(report));
    return report.ok ? EXIT.ok : EXIT.failed;
  });
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
  stats: { events: number; checkpoints: number; trustedCheckpoints: number; producers: number; epochs: number; attestedEvents: number; pendingEvents: number };
}

/** The human summary: a verdict, the counts, then one line per finding naming its events. */
export function verifySummary(r: VerifyAnswer): string {
  const s = r.stats;
  const lines = [
    r.ok ? 'Evidence intact.' : `Evidence NOT intact: ${r.findings.length} finding${r.findings.length === 1 ? '' : 's'}.`,
    `  window:      ${r.window.from} .. ${r.window.to}`,
    `  events:      ${s.events} (${s.attestedEvents} attested by signed checkpoints, ${s.pendingEvents} pending the next checkpoint)`,
    `  checkpoints: ${s.checkpoints} (${s.trustedCheckpoints} validly signed); producers: ${s.producers}; epochs: ${s.epochs}`,
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
  if (res.status === 400 || res.status === 413) throw new CliFailure(EXIT.usage, `${message}${e?.parameter ? ` [parameter: ${e.parameter}]` : ''} (${code})`);
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
