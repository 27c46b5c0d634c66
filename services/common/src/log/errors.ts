import { AttestError } from '../errors';

/**
 * Stable codes for every error the event log raises on purpose. Callers `switch (err.code)`;
 * `retriable` is true only where the same call may succeed later unchanged.
 */
export type LogErrorCode =
  /** An append or commit could not be made durable (I/O error, disk full, broker down). Fail closed. */
  | 'log_unavailable'
  /** The log or consumer was closed before or during the call. */
  | 'log_closed'
  /** One encoded record exceeds the log's maximum record size. */
  | 'log_record_too_large'
  /** A malformed argument: bad group name, key or header too long, commit past what was delivered. */
  | 'log_invalid_argument'
  /** Stored data failed its checksum or framing inside the durable region: never skipped silently. */
  | 'log_corrupt'
  /** Another process (or another instance in this one) holds the log directory. */
  | 'log_locked'
  /** The directory was created with a different layout (partition count, format version). */
  | 'log_config_mismatch'
  /** The consumer group already has an open consumer on this log instance. */
  | 'log_group_busy'
  /** A committed position lies before the oldest retained record. */
  | 'log_offset_out_of_range';

export class LogError extends AttestError<LogErrorCode> {
  constructor(
    code: LogErrorCode,
    message: string,
    opts: { retriable?: boolean; where?: string; fix?: string; cause?: unknown } = {},
  ) {
    super(code, message, opts);
    this.name = 'LogError';
  }
}

export function isLogError(err: unknown): err is LogError {
  return err instanceof LogError;
}

export function closedError(what: string): LogError {
  return new LogError('log_closed', `${what} is closed`);
}
