import { spawn, type ChildProcess } from 'node:child_process';

/** A child process whose output is collected, with helpers to wait for a line and to stop it. */
export interface Proc {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export function startProcess(command: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; detached?: boolean } = {}): Proc {
  const child = spawn(command, args, {
    cwd: opts.cwd ?? process.cwd(),
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: opts.detached ?? false,
  });
  let out = '';
  let err = '';
  const waiters = new Set<() => void>();
  child.stdout!.on('data', (d) => {
    out += String(d);
    for (const w of waiters) w();
  });
  child.stderr!.on('data', (d) => {
    err += String(d);
  });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor(re, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = re.exec(out);
          if (m) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve(m);
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out waiting for ${re} from ${command} ${args.join(' ')}\nstdout: ${out}\nstderr: ${err}`));
        }, timeoutMs);
        waiters.add(check);
        void exited.then(() => {
          if (waiters.has(check)) {
            waiters.delete(check);
            clearTimeout(timer);
            reject(new Error(`${command} exited before printing ${re}\nstdout: ${out}\nstderr: ${err}`));
          }
        });
        check();
      });
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) {
        if (opts.detached && child.pid) process.kill(-child.pid, signal);
        else child.kill(signal);
      }
      return exited;
    },
  };
}

/** Runs a command to completion and returns its output and exit code. */
export function run(command: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = startProcess(command, args, opts);
    const timer = setTimeout(() => {
      p.child.kill('SIGKILL');
      reject(new Error(`${command} ${args.join(' ')} timed out\nstdout: ${p.stdout()}\nstderr: ${p.stderr()}`));
    }, opts.timeoutMs ?? 60_000);
    void p.exited.then((code) => {
      clearTimeout(timer);
      resolve({ code, stdout: p.stdout(), stderr: p.stderr() });
    });
  });
}
