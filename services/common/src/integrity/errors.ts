import { AttestError } from '../errors';

/**
 * Errors the integrity module raises on purpose. Verification problems are never thrown: they are
 * findings in a VerifyReport. These are misuse and I/O failures.
 */
export type IntegrityErrorCode =
  /** A key file is unreadable, or its kid does not match its public key's thumbprint. */
  | 'integrity_keystore_corrupt'
  /** The key store could not be read or written (disk full, permissions). */
  | 'integrity_keystore_io'
  /** No current signing key: call `Keyring.rotate()` once to create the first. */
  | 'integrity_no_signing_key'
  /** A checkpoint is not a well-formed Attest checkpoint. */
  | 'integrity_checkpoint_malformed'
  /** The events given to resume an epoch do not continue its last checkpoint. */
  | 'integrity_resume_mismatch'
  /** An event was appended to, or a checkpoint cut from, an epoch that was closed. */
  | 'integrity_epoch_closed'
  /** A parameter is out of range (cadence, sequence, hash length). */
  | 'integrity_invalid_argument';

export class IntegrityError extends AttestError<IntegrityErrorCode> {
  constructor(
    code: IntegrityErrorCode,
    message: string,
    opts: { retriable?: boolean; where?: string; fix?: string; cause?: unknown } = {},
  ) {
    super(code, message, opts);
    this.name = 'IntegrityError';
  }
}
