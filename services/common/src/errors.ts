/**
 * The error catalog's base type. Every error Attest raises on purpose carries a stable `code`
 * (documented in docs/errors.md) so callers can `switch (err.code)` instead of matching messages.
 * `retriable` is set at I/O boundaries: true when the same call may succeed later unchanged.
 */
export class AttestError<C extends string = string> extends Error {
  readonly code: C;
  readonly retriable: boolean;
  /** Where the problem is (a config path, a header name, a JSON pointer), when there is one. */
  readonly where: string | undefined;
  /** What the user can do about it. */
  readonly fix: string | undefined;

  constructor(
    code: C,
    message: string,
    opts: { retriable?: boolean; where?: string; fix?: string; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'AttestError';
    this.code = code;
    this.retriable = opts.retriable ?? false;
    this.where = opts.where;
    this.fix = opts.fix;
  }
}

export function isAttestError(err: unknown): err is AttestError {
  return err instanceof AttestError;
}
