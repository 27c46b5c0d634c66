import { open, readFile, rename, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { LogError } from './errors';

/** fsync a directory so entries created, renamed or removed in it survive a crash. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

const ZERO_CHUNK = Buffer.alloc(1024 * 1024);

/**
 * Writes zeros over bytes [0, bytes) of a file and fdatasyncs it, so later writes inside that range
 * overwrite allocated blocks and change no file size (what makes an O_DSYNC append cheap). Real
 * zeros, not fallocate: ext4 keeps fallocated blocks as unwritten extents, and the first write into
 * one is an extent change that costs a journal commit like a growing append (measured here: CPU per
 * 3,000-byte O_DSYNC write about as high as appending). `beforeChunk` runs before each 1 MiB chunk:
 * it may wait (pacing) or throw (stop). `syncEveryBytes` fdatasyncs along the way, so the writeback
 * is spread instead of landing on the disk all at once at the end.
 */
export async function zeroFill(
  fh: FileHandle,
  bytes: number,
  opts: { beforeChunk?: (filled: number) => void | Promise<void>; syncEveryBytes?: number } = {},
): Promise<void> {
  let pos = 0;
  let unsynced = 0;
  while (pos < bytes) {
    await opts.beforeChunk?.(pos);
    const { bytesWritten } = await fh.write(ZERO_CHUNK, 0, Math.min(ZERO_CHUNK.length, bytes - pos), pos);
    if (bytesWritten === 0) throw new Error('zero-fill made no progress');
    pos += bytesWritten;
    unsynced += bytesWritten;
    if (opts.syncEveryBytes !== undefined && unsynced >= opts.syncEveryBytes && pos < bytes) {
      await fh.datasync();
      unsynced = 0;
    }
  }
  await fh.datasync();
}

/** Replaces dir/name atomically and durably: temp file, fdatasync, rename, fsync of the directory. */
export async function writeFileAtomic(dir: string, name: string, data: string): Promise<void> {
  const tmp = join(dir, `.${name}.tmp`);
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(data, 'utf8');
    await fh.datasync();
  } finally {
    await fh.close();
  }
  await rename(tmp, join(dir, name));
  await syncDir(dir);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface DirLock {
  release(): Promise<void>;
}

/**
 * A pid lock file so one process writes a log directory. A lock left by a dead process (a crash) is
 * taken over. Node has no flock(); pid reuse after a crash could make a stale lock look held, which
 * fails safe (the operator removes LOCK).
 */
export async function acquireDirLock(dir: string): Promise<DirLock> {
  const path = join(dir, 'LOCK');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(path, String(process.pid), { flag: 'wx' });
      return { release: () => unlink(path).catch(() => undefined) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10);
    if (Number.isInteger(holder) && holder > 0 && isAlive(holder)) {
      throw new LogError('log_locked', `event log ${dir} is held by process ${holder}`, {
        where: path,
        fix: holder === process.pid ? 'Close the other instance first.' : `Stop process ${holder}, or remove ${path} if it is not an Attest process.`,
      });
    }
    await unlink(path).catch(() => undefined);
  }
  throw new LogError('log_locked', `event log ${dir}: could not take ${path}`, { where: path, retriable: true });
}
