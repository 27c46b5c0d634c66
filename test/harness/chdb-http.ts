/**
 * Starts the ClickHouse HTTP harness (chdb-http-server.ts) in a child process for a test or a
 * benchmark, with its own data directory, a read-write user and a readonly user. Where
 * `CLICKHOUSE_URL` is set, tests use that real server instead (see clickhouse-store.int.test.ts).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChdbHttpUser } from './chdb-http-server';

export interface ChdbHttpProcess {
  readonly url: string;
  /** The engine's version (`SELECT version()`). */
  readonly version: string;
  readonly dataDir: string;
  readonly writer: { readonly username: string; readonly password: string };
  readonly reader: { readonly username: string; readonly password: string };
  readonly pid: number;
  /** SIGTERM, wait for exit, remove the data directory (unless it was given). */
  stop(): Promise<void>;
}

const MAIN = fileURLToPath(new URL('./chdb-http-main.ts', import.meta.url));

export async function startChdbHttp(opts: { readonly dataDir?: string; readonly startTimeoutMs?: number } = {}): Promise<ChdbHttpProcess> {
  const ownDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'attest-chdb-http-')));
  const writer = { username: 'attest_writer', password: randomBytes(12).toString('hex') };
  const reader = { username: 'attest_auditor', password: randomBytes(12).toString('hex') };
  const users: ChdbHttpUser[] = [
    { name: writer.username, password: writer.password },
    { name: reader.username, password: reader.password, readonly: true },
  ];
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, '--data-dir', dataDir, '--port', '0', '--users', JSON.stringify(users)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString('utf8')).slice(-4000);
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const ready = await new Promise<{ url: string; version: string }>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`chdb-http harness did not start within ${opts.startTimeoutMs ?? 30_000} ms: ${stderr}`)), opts.startTimeoutMs ?? 30_000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString('utf8');
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        resolve(JSON.parse(out.slice(0, nl)) as { url: string; version: string });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`chdb-http harness exited with ${String(code)} before listening: ${stderr}`));
    });
  });
  return {
    ...ready,
    dataDir,
    writer,
    reader,
    pid: child.pid ?? -1,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
      if (ownDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}
