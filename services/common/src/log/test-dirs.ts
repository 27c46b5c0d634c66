import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A fresh directory under the OS temp dir for one test, removed by the returned function. */
export async function freshDir(label: string): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `attest-log-${label}-`));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}
