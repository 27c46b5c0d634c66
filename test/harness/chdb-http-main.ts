/**
 * Runs the ClickHouse HTTP harness (chdb-http-server.ts) as its own process: chdb allows one
 * engine per process, so a test that needs the "server" and an embedded store, or two servers,
 * runs each server as a child.
 *
 *   node --import tsx test/harness/chdb-http-main.ts --data-dir DIR [--port 0]
 *        [--users '[{"name":"default","password":"…"},{"name":"auditor","password":"…","readonly":true}]']
 *
 * Prints one JSON line `{"url": "http://127.0.0.1:PORT", "version": "…"}` on stdout once
 * listening; closes the engine and exits on SIGTERM/SIGINT.
 */
import { startChdbHttpServer, type ChdbHttpUser } from './chdb-http-server';

function parseArgs(argv: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const eq = a.indexOf('=');
    if (eq > 0) out.set(a.slice(2, eq), a.slice(eq + 1));
    else {
      const v = argv[i + 1];
      if (v === undefined) throw new Error(`${a} needs a value`);
      out.set(a.slice(2), v);
      i++;
    }
  }
  return out;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  for (const k of args.keys()) if (!['data-dir', 'port', 'users', 'host'].includes(k)) throw new Error(`unknown option --${k}`);
  const dataDir = args.get('data-dir');
  if (dataDir === undefined) throw new Error('--data-dir is required');
  const port = Number(args.get('port') ?? '0');
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad --port ${args.get('port')}`);
  const users = JSON.parse(args.get('users') ?? '[{"name":"default","password":""}]') as ChdbHttpUser[];
  const server = await startChdbHttpServer({ dataDir, users, port, host: args.get('host') ?? '127.0.0.1' });
  process.stdout.write(`${JSON.stringify({ url: server.url, version: server.version })}\n`);
  const stop = (): void => {
    server.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
