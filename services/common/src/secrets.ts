import { readFileSync } from 'node:fs';
import { AttestError } from './errors';

export interface SecretSource {
  env?: string | undefined;
  file?: string | undefined;
}

const MAX_SECRET_BYTES = 16 * 1024;

/**
 * Reads a credential from an environment variable or a file. Errors name the source, never the value.
 */
export function readSecret(source: SecretSource, what: string, env: NodeJS.ProcessEnv = process.env): string {
  if (source.env) {
    const v = env[source.env]?.trim();
    if (!v) {
      throw new AttestError('secret_missing', `${what}: environment variable ${source.env} is not set or empty`, {
        where: source.env,
        fix: `export ${source.env}=… before starting, or point the config at a file`,
      });
    }
    return v;
  }
  if (source.file) {
    let v: string;
    try {
      const buf = readFileSync(source.file);
      if (buf.length > MAX_SECRET_BYTES) throw new Error(`larger than ${MAX_SECRET_BYTES} bytes`);
      v = buf.toString('utf8').trim();
    } catch (err) {
      throw new AttestError('secret_unreadable', `${what}: cannot read ${source.file}: ${(err as Error).message}`, {
        where: source.file,
        fix: 'check the path and that the gateway user may read it',
      });
    }
    if (!v) {
      throw new AttestError('secret_missing', `${what}: ${source.file} is empty`, { where: source.file, fix: 'write the credential into the file' });
    }
    return v;
  }
  throw new AttestError('secret_missing', `${what}: no source given`, { fix: 'give `env` or `file`' });
}
