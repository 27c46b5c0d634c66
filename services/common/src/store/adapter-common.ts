import { StoreError } from './errors';
import { DEFAULT_QUERY_MAX_ROWS, type QueryOptions, type QueryResult, type Row, type RowStream } from './port';
import type { StoredEvent } from './rows';

/**
 * What both ClickHouse adapters (embedded chdb and server) do the same way before and after the
 * engine: check an insert batch, and collect a bounded query result from a row stream.
 */

/**
 * The batch to insert, or an error: the token must be given, and repeats of one event within a
 * batch (a redelivery spliced into it) keep the first. Ids compare in lowercase, as the engine
 * prints UUIDs.
 */
export function uniqueBatch(batch: readonly StoredEvent[], dedupToken: string): StoredEvent[] | StoreError {
  if (typeof dedupToken !== 'string' || dedupToken.length === 0) {
    return new StoreError('store_invalid_argument', 'dedupToken must be a non-empty string', { where: 'dedupToken' });
  }
  const seen = new Set<string>();
  const unique: StoredEvent[] = [];
  for (const e of batch) {
    const id = e.eventId.toLowerCase();
    if (seen.has(id)) continue;
    seen.add(id);
    unique.push(e);
  }
  return unique;
}

export function checkMaxRows(opts: QueryOptions): number {
  const maxRows = opts.maxRows ?? DEFAULT_QUERY_MAX_ROWS;
  if (!Number.isSafeInteger(maxRows) || maxRows < 0) {
    throw new StoreError('store_invalid_argument', `maxRows must be a non-negative integer, got ${String(maxRows)}`, { where: 'maxRows' });
  }
  return maxRows;
}

/** Reads up to `maxRows` rows, then cancels the stream; `truncated` says whether more were there. */
export async function collectRows(stream: RowStream, maxRows: number): Promise<QueryResult> {
  const rows: Row[] = [];
  let truncated = false;
  try {
    for await (const row of stream) {
      if (rows.length === maxRows) {
        truncated = true;
        break;
      }
      rows.push(row);
    }
  } finally {
    stream.cancel();
  }
  return { columns: await stream.columns, rows, truncated };
}
