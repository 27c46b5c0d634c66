import { AttestError } from '../errors';

/**
 * Stable codes of every error the evidence store raises on purpose (documented in
 * docs/evidence-store.md, "Errors"). Callers `switch (err.code)`; messages may change, codes never do.
 */
export const STORE_ERROR_CODES = [
  /** The engine could not be reached or failed while running a statement that may succeed later. */
  'store_unavailable',
  /** The store (or its worker) was closed before or during the call. */
  'store_closed',
  /** Another store already holds this process's engine (chdb binds one data directory per process). */
  'store_busy',
  /** A statement was refused by the engine: bad SQL, unknown column, type mismatch. Not retriable. */
  'store_query_failed',
  /** A malformed argument: bad parameter name or value, empty dedup token, an unknown evidence query. */
  'store_invalid_argument',
  /** Retention below 365 days (PCI DSS 10.5.1) without the explicit override. */
  'store_retention_too_short',
  /** An already-applied migration's file changed since it was applied. */
  'store_migration_changed',
  /** The store records a migration this code does not have (the store is newer than the code). */
  'store_migration_unknown',
  /** A migration file is misnamed, numbered twice, or empty. */
  'store_migration_invalid',
  /** A row handed to insertEvents breaks the table's rules (e.g. a hash that is not 32 bytes). */
  'store_row_invalid',
  /** The adapter does not offer this call (the in-memory twin runs no SQL). */
  'store_unsupported',
] as const;

export type StoreErrorCode = (typeof STORE_ERROR_CODES)[number];

export class StoreError extends AttestError<StoreErrorCode> {
  /** ClickHouse's own error code, when the engine raised one (e.g. 62 for a syntax error). */
  readonly clickhouseCode: number | undefined;

  constructor(
    code: StoreErrorCode,
    message: string,
    opts: { retriable?: boolean; where?: string; fix?: string; cause?: unknown; clickhouseCode?: number } = {},
  ) {
    super(code, message, opts);
    this.name = 'StoreError';
    this.clickhouseCode = opts.clickhouseCode;
  }
}

export function isStoreError(err: unknown, code?: StoreErrorCode): err is StoreError {
  return err instanceof StoreError && (code === undefined || err.code === code);
}
