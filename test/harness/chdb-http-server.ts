/**
 * A ClickHouse HTTP interface in front of the real ClickHouse engine (chdb, in this process), for
 * testing the server adapter (services/common/src/store/clickhouse-store.ts) where no ClickHouse
 * server can be had. Every answer, every error code and every error text is the engine's own:
 * this module only speaks the wire protocol around it. What it covers and what it does not:
 * docs/evidence-store.md, "Server adapter".
 *
 *   client                         harness (this file)                        engine (chdb)
 *     │ POST /?query_id&database&      │                                          │
 *     │  param_x&setting=v             │ auth (Basic / X-ClickHouse-User / user=) │
 *     │  [query=INSERT … FORMAT F]     │ new connection ───────────────────────▶ │
 *     │ body: SQL | data | multipart   │ USE db; SET param_x = '…'                │
 *     │ ─────────────────────────────▶ │ SET <user profile>; SET readonly = 1     │
 *     │                                │ SET <URL settings>   (engine checks)     │
 *     │                                │ statement (INSERT data: FROM INFILE) ──▶ │
 *     │ ◀── 200 + result chunks ────── │ ◀── chunks / Code: N. DB::Exception … ── │
 *     │ or 4xx/5xx + X-ClickHouse-     │ close connection                         │
 *     │    Exception-Code + text       │                                          │
 *
 * Each request runs on its own engine connection, as a real server gives each query its own
 * context: the URL's settings are applied with SET, so the engine accepts or refuses them exactly
 * as it would for a server user (a readonly user cannot change settings, cannot write).
 */
import { randomUUID } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { createGunzip, createGzip } from 'node:zlib';
import { Session } from 'chdb';

export interface ChdbHttpUser {
  readonly name: string;
  readonly password: string;
  /** A readonly=1 profile: reads only, no setting changes (as `<readonly>1</readonly>` in users.xml). */
  readonly readonly?: boolean;
}

export interface ChdbHttpOptions {
  readonly dataDir: string;
  readonly users: readonly ChdbHttpUser[];
  readonly host?: string;
  readonly port?: number;
  /** Requests running on the engine at once; more wait. Default 8. */
  readonly maxConcurrent?: number;
}

export interface ChdbHttpServer {
  readonly url: string;
  readonly version: string;
  close(): Promise<void>;
}

/**
 * Settings every user's profile starts from: what a ClickHouse server answers by default where
 * clickhouse-local (chdb) defaults differ. A server prints 64-bit integers in JSON as strings.
 */
const SERVER_PROFILE: Readonly<Record<string, string>> = { output_format_json_quote_64bit_integers: '1' };

/** URL parameters that are part of the HTTP interface, not settings. */
const HTTP_PARAMS = new Set(['query', 'query_id', 'database', 'default_format', 'user', 'password', 'session_id', 'session_timeout', 'session_check', 'role', 'quota_key', 'compress', 'decompress', 'buffer_size', 'wait_end_of_query']);
/** Settings the HTTP handler itself consumes (the engine knows them, and ignores them locally). */
const HANDLER_SETTINGS = new Set(['enable_http_compression', 'http_zlib_compression_level', 'send_progress_in_http_headers', 'http_headers_progress_interval_ms', 'cancel_http_readonly_queries_on_client_close']);

const NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const INSERT_DATA_RE = /^\s*INSERT\s+INTO\s+([\s\S]+?)\s+FORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$/i;

/** ClickHouse error code → HTTP status, as the server's HTTP handler maps them (the subset that occurs here). */
function httpStatusOf(code: number): number {
  switch (code) {
    case 192: // UNKNOWN_USER
    case 193: // WRONG_PASSWORD
    case 194: // REQUIRED_PASSWORD
    case 516: // AUTHENTICATION_FAILED
      return 401;
    case 164: // READONLY
    case 497: // ACCESS_DENIED
      return 403;
    case 60: // UNKNOWN_TABLE
    case 81: // UNKNOWN_DATABASE
    case 46: // UNKNOWN_FUNCTION
    case 47: // UNKNOWN_IDENTIFIER
    case 115: // UNKNOWN_SETTING
    case 456: // UNKNOWN_QUERY_PARAMETER
      return 404;
    case 62: // SYNTAX_ERROR
    case 27: // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    case 36: // BAD_ARGUMENTS
    case 53: // TYPE_MISMATCH
    case 43: // ILLEGAL_TYPE_OF_ARGUMENT
    case 457: // BAD_QUERY_PARAMETER
    case 26: // CANNOT_PARSE_QUOTED_STRING
    case 6: // CANNOT_PARSE_TEXT
    case 38: // CANNOT_PARSE_DATE
    case 41: // CANNOT_PARSE_DATETIME
    case 69: // ARGUMENT_OUT_OF_BOUND
    case 395: // FUNCTION_THROW_IF_VALUE_IS_NON_ZERO
      return 400;
    case 159: // TIMEOUT_EXCEEDED
      return 500;
    default:
      return 500;
  }
}

class WireError extends Error {
  constructor(
    readonly code: number,
    readonly text: string,
  ) {
    super(text);
  }
}

/** The engine's error in ClickHouse's wire form: `Code: N. DB::Exception: … (NAME) (version V)`. */
function wireErrorOf(err: unknown, version: string): WireError {
  if (err instanceof WireError) return err;
  const raw = err instanceof Error ? err.message : String(err);
  const e = err as { clickhouseCode?: unknown };
  const m = /Code: (\d+)\. DB::Exception: /.exec(raw);
  const code = typeof e.clickhouseCode === 'number' ? e.clickhouseCode : m !== null ? Number(m[1]) : 1001;
  // chdb nests the engine's text; a server sends it once, from the first "Code:".
  const body = m !== null ? raw.slice(m.index) : `Code: ${code}. DB::Exception: ${raw}. (STD_EXCEPTION)`;
  return new WireError(code, `${body.trimEnd()}${body.includes('(version ') ? '' : ` (version ${version})`}\n`);
}

function authFailed(user: string, version: string): WireError {
  return new WireError(516, `Code: 516. DB::Exception: ${user}: Authentication failed: password is incorrect, or there is no user with such name. (AUTHENTICATION_FAILED) (version ${version})\n`);
}

/** A ClickHouse string literal; the engine parses it, so any byte sequence round-trips. */
function literal(s: string): string {
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const enc = String(req.headers['content-encoding'] ?? '').toLowerCase();
  const source = enc === 'gzip' ? req.pipe(createGunzip()) : req;
  const chunks: Buffer[] = [];
  for await (const c of source) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** multipart/form-data fields (the client sends `query` and `param_*` this way when they are long). */
function parseMultipart(body: Buffer, contentType: string): Map<string, string> {
  const m = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType);
  const boundary = m?.[1] ?? m?.[2];
  if (boundary === undefined) throw new WireError(36, `Code: 36. DB::Exception: multipart/form-data without a boundary. (BAD_ARGUMENTS)\n`);
  const out = new Map<string, string>();
  const text = body.toString('utf8');
  for (const part of text.split(`--${boundary}`)) {
    if (part === '' || part.startsWith('--')) continue;
    const headerEnd = part.indexOf('\r\n\r\n');
    if (headerEnd < 0) continue;
    const name = /name="([^"]*)"/.exec(part.slice(0, headerEnd))?.[1];
    if (name === undefined) continue;
    if (/filename=/.test(part.slice(0, headerEnd))) {
      throw new WireError(48, `Code: 48. DB::Exception: the test harness does not take external tables (file parts). (NOT_IMPLEMENTED)\n`);
    }
    // Each part ends with the CRLF that precedes the next boundary.
    out.set(name, part.slice(headerEnd + 4, part.endsWith('\r\n') ? -2 : undefined));
  }
  return out;
}

/** The output format: the query's own FORMAT clause, else the request's default. */
function formatOf(sql: string, fallback: string): string {
  return /\bFORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$/i.exec(sql)?.[1] ?? fallback;
}

export async function startChdbHttpServer(opts: ChdbHttpOptions): Promise<ChdbHttpServer> {
  const dataDir = resolve(opts.dataDir);
  await mkdir(dataDir, { recursive: true });
  const spool = join(dataDir, 'harness-insert-data');
  await rm(spool, { recursive: true, force: true });
  await mkdir(spool, { recursive: true });
  // The first connection binds the data directory for the process; it stays open so the
  // per-request connections share one engine.
  const anchor = new Session(dataDir);
  const version = (await anchor.queryAsync('SELECT version()', { format: 'TabSeparated' })).text().trim();
  const users = new Map(opts.users.map((u) => [u.name, u]));
  const maxConcurrent = opts.maxConcurrent ?? 8;
  let running = 0;
  const waiting: (() => void)[] = [];
  let fileCounter = 0;
  const sockets = new Set<import('node:net').Socket>();

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://harness');
    if (url.pathname === '/ping' || (url.pathname === '/' && req.method === 'GET' && !url.searchParams.has('query'))) {
      res.writeHead(200, { 'Content-Type': 'text/plain; charset=UTF-8' }).end('Ok.\n');
      return;
    }
    if (url.pathname !== '/') {
      res.writeHead(404).end(`There is no handle ${url.pathname}\n`);
      return;
    }
    const queryId = url.searchParams.get('query_id') ?? randomUUID();
    const format = url.searchParams.get('default_format') ?? 'TabSeparated';
    let session: Session | undefined;
    let dataFile: string | undefined;
    let native: { cancel(): void } | undefined;
    const abandon = (): void => native?.cancel();
    res.once('close', abandon);
    try {
      const user = authenticate(req, url);
      const body = await readBody(req);
      const params = new Map<string, string>();
      for (const [k, v] of url.searchParams) params.set(k, v);
      const contentType = String(req.headers['content-type'] ?? '');
      const multipart = contentType.toLowerCase().startsWith('multipart/form-data');
      if (multipart) for (const [k, v] of parseMultipart(body, contentType)) params.set(k, v);
      const urlQuery = params.get('query');
      let sql: string;
      if (multipart) {
        sql = urlQuery ?? '';
      } else if (urlQuery !== undefined && body.length > 0) {
        const m = INSERT_DATA_RE.exec(urlQuery);
        if (m !== null) {
          // INSERT … FORMAT F with the rows in the body: the engine reads them from a file.
          dataFile = join(spool, `${process.pid}-${++fileCounter}.data`);
          await writeFile(dataFile, body);
          const target = m[1] as string;
          const settingsAt = target.search(/\sSETTINGS\s/i);
          const table = settingsAt < 0 ? target : target.slice(0, settingsAt);
          const settings = settingsAt < 0 ? '' : ` ${target.slice(settingsAt + 1)}`;
          sql = `INSERT INTO ${table} FROM INFILE ${literal(dataFile)}${settings} FORMAT ${m[2] as string}`;
        } else {
          // The server's rule: the query is the `query` parameter followed by the body.
          sql = `${urlQuery}\n${body.toString('utf8')}`;
        }
      } else {
        sql = urlQuery ?? body.toString('utf8');
      }
      if (sql.trim() === '') throw new WireError(62, `Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR) (version ${version})\n`);

      while (running >= maxConcurrent) await new Promise<void>((r) => waiting.push(r));
      running += 1;
      try {
        session = new Session(dataDir);
        const setup: string[] = [];
        const database = params.get('database');
        if (database !== undefined && database !== '') {
          if (!NAME_RE.test(database)) throw new WireError(81, `Code: 81. DB::Exception: Database ${database} does not exist. (UNKNOWN_DATABASE) (version ${version})\n`);
          setup.push(`USE \`${database}\``);
        }
        for (const [k, v] of params) {
          if (k.startsWith('param_') && NAME_RE.test(k)) setup.push(`SET ${k} = ${literal(v)}`);
        }
        for (const [k, v] of Object.entries(SERVER_PROFILE)) setup.push(`SET ${k} = ${literal(v)}`);
        // GET requests are readonly=2 on a server; a readonly user is readonly=1 whatever it asks.
        if (user.readonly === true) setup.push(`SET readonly = '1'`);
        else if (req.method === 'GET') setup.push(`SET readonly = '2'`);
        for (const [k, v] of params) {
          if (HTTP_PARAMS.has(k) || k.startsWith('param_') || HANDLER_SETTINGS.has(k)) continue;
          if (!NAME_RE.test(k)) continue;
          setup.push(`SET ${k} = ${literal(v)}`);
        }
        for (const s of setup) await session.queryAsync(s, { format: 'TabSeparated' });

        const gzip = params.get('enable_http_compression') === '1' && /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
        const headers: Record<string, string> = {
          'Content-Type': 'text/plain; charset=UTF-8',
          'X-ClickHouse-Query-Id': queryId,
          'X-ClickHouse-Format': format,
          'X-ClickHouse-Timezone': 'UTC',
          'X-ClickHouse-Server-Display-Name': 'chdb-http-harness',
          ...(gzip ? { 'Content-Encoding': 'gzip' } : {}),
        };
        let stream: ReturnType<Session['queryStream']> | undefined;
        try {
          stream = session.queryStream(sql, { format });
        } catch (err) {
          const e = err as { clickhouseCode?: unknown; message?: unknown };
          if (e.clickhouseCode !== 36 || !String(e.message).includes('Streaming query is not supported')) throw err;
        }
        if (stream === undefined) {
          // DDL, INSERT, SHOW…: the engine runs them in one piece.
          const t0 = process.hrtime.bigint();
          const r = await session.queryAsync(sql, { format });
          const bytes = Buffer.from(r.bytes());
          headers['X-ClickHouse-Summary'] = JSON.stringify({
            read_rows: String(r.rowsRead),
            read_bytes: String(r.bytesRead),
            elapsed_ns: String(process.hrtime.bigint() - t0),
          });
          res.writeHead(200, headers);
          if (gzip) {
            const z = createGzip();
            z.pipe(res);
            z.end(bytes);
          } else res.end(bytes);
          return;
        }
        native = stream;
        // Rows stream as the engine produces them; an error after the first bytes is written in
        // the stream as a server ≥ 25.11 does (the client reads it with the exception tag).
        const tag = randomUUID().replace(/-/g, '').slice(0, 16);
        headers['X-ClickHouse-Exception-Tag'] = tag;
        headers['X-ClickHouse-Summary'] = JSON.stringify({ read_rows: '0', read_bytes: '0' });
        const out = gzip ? createGzip() : undefined;
        out?.pipe(res);
        const write = (b: Uint8Array): void => {
          if (out !== undefined) out.write(b);
          else res.write(b);
        };
        let started = false;
        // chdb repeats a *WithNames[AndTypes] header in every chunk; a server sends it once.
        const headerLines = /WithNamesAndTypes$/i.test(formatOf(sql, format)) ? 2 : /WithNames$/i.test(formatOf(sql, format)) ? 1 : 0;
        let header: Buffer | undefined;
        const withoutRepeatedHeader = (b: Buffer): Buffer => {
          if (headerLines === 0) return b;
          let end = 0;
          for (let i = 0; i < headerLines; i++) {
            const nl = b.indexOf(0x0a, end);
            if (nl < 0) return b;
            end = nl + 1;
          }
          if (header === undefined) {
            header = Buffer.from(b.subarray(0, end));
            return b;
          }
          return b.subarray(0, end).equals(header) ? b.subarray(end) : b;
        };
        try {
          for await (const chunk of stream) {
            if (!started) {
              res.writeHead(200, headers);
              started = true;
            }
            if (res.destroyed) break;
            write(withoutRepeatedHeader(Buffer.from(chunk.raw())));
          }
          if (!started) res.writeHead(200, headers);
        } catch (err) {
          if (!started) throw err;
          const text = wireErrorOf(err, version).text.trimEnd();
          write(Buffer.from(`\r\n__exception__\r\n${tag}\r\n${text}\n${Buffer.byteLength(text) + 1} ${tag}\r\n__exception__\r\n`));
        }
        if (out !== undefined) out.end();
        else res.end();
      } finally {
        running -= 1;
        waiting.shift()?.();
      }
    } catch (err) {
      const w = wireErrorOf(err, version);
      if (!res.headersSent) {
        res.writeHead(httpStatusOf(w.code), {
          'Content-Type': 'text/plain; charset=UTF-8',
          'X-ClickHouse-Query-Id': queryId,
          'X-ClickHouse-Exception-Code': String(w.code),
        });
      }
      res.end(w.text);
    } finally {
      res.off('close', abandon);
      session?.close();
      if (dataFile !== undefined) await rm(dataFile, { force: true }).catch(() => undefined);
    }
  };

  function authenticate(req: IncomingMessage, url: URL): ChdbHttpUser {
    let name = 'default';
    let password = '';
    const basic = /^Basic\s+(.+)$/i.exec(String(req.headers.authorization ?? ''));
    if (basic !== null) {
      const decoded = Buffer.from(basic[1] as string, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      name = colon < 0 ? decoded : decoded.slice(0, colon);
      password = colon < 0 ? '' : decoded.slice(colon + 1);
    } else if (req.headers['x-clickhouse-user'] !== undefined) {
      name = String(req.headers['x-clickhouse-user']);
      password = String(req.headers['x-clickhouse-key'] ?? '');
    } else if (url.searchParams.has('user')) {
      name = url.searchParams.get('user') ?? '';
      password = url.searchParams.get('password') ?? '';
    }
    const user = users.get(name);
    if (user === undefined || user.password !== password) throw authFailed(name, version);
    return user;
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500);
      res.end(String(err));
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((r, j) => {
    server.once('error', j);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => r());
  });
  const addr = server.address() as AddressInfo;
  return {
    url: `http://${opts.host ?? '127.0.0.1'}:${addr.port}`,
    version,
    close: async () => {
      const closed = new Promise<void>((r) => server.close(() => r()));
      for (const s of sockets) s.destroy();
      await closed;
      anchor.close();
    },
  };
}
