import { createHmac, randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile, link, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { AttestError } from '../errors';

/**
 * The keyed hash kept in evidence instead of a card number (PCI DSS 3.5.1.1: hashes of a PAN must be
 * keyed). An investigator who types a PAN gets the same HMAC and can find where that card appeared;
 * the store never holds the number. The key id travels with every tag so rotation keeps old tags
 * meaningful.
 */
export interface PanHmacKey {
  readonly kid: string;
  /** HMAC-SHA-256 of the ASCII digits, base64url. */
  readonly hash: (digits: string) => string;
}

interface KeyFile {
  kid: string;
  createdUs: number;
  key: string;
}

export function panHmacKeyFrom(kid: string, secret: Buffer): PanHmacKey {
  return { kid, hash: (digits) => createHmac('sha256', secret).update(digits, 'ascii').digest('base64url') };
}

/** Loads the PAN HMAC key from `dir`, creating it (mode 0600) on first use. */
export async function loadOrCreatePanHmacKey(dir: string): Promise<PanHmacKey & { created: boolean }> {
  const path = join(dir, 'pan-hmac.key.json');
  try {
    const rec = JSON.parse(await readFile(path, 'utf8')) as KeyFile;
    const secret = Buffer.from(rec.key, 'base64url');
    if (typeof rec.kid !== 'string' || secret.length < 32) throw new Error('malformed key file');
    return { ...panHmacKeyFrom(rec.kid, secret), created: false };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new AttestError('pan_hmac_key_invalid', `cannot read the PAN HMAC key ${path}: ${(err as Error).message}`, {
        fix: 'restore the key file from backup; without it, card lookups over existing evidence are impossible',
      });
    }
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const secret = randomBytes(32);
  const rec: KeyFile = { kid: `pan-hmac-${randomBytes(6).toString('hex')}`, createdUs: Date.now() * 1000, key: secret.toString('base64url') };
  // Written aside, then linked into place: two processes starting together agree on one key.
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(rec), { mode: 0o600 });
  await chmod(tmp, 0o600);
  try {
    await link(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    await unlink(tmp);
    return loadOrCreatePanHmacKey(dir);
  }
  await unlink(tmp);
  return { ...panHmacKeyFrom(rec.kid, secret), created: true };
}
