/**
 * In-memory twin of the evidence store, for unit tests of the evidence writer.
 *
 * Covers what the writer needs, with the same semantics as the ClickHouse adapters: `migrate()`
 * (retention policy checked and reported, including the config.changed fields), `insertEvents()`
 * (idempotent by event id, first write wins, sightings of already-stored events completed, the
 * same argument checks), `close()` and reopen over a MemoryStoreStorage (a restart), plus
 * `events()`/`sightings()` scans and failure injection. It runs no SQL: `query()` and `stream()`
 * reject with store_unsupported, because evidence queries need the real engine (test them
 * against the chdb store).
 */
import { StoreError } from './errors';
import { checkRetention, retentionReport } from './migrations';
import type { EvidenceStore, InsertReport, MigrationReport, QueryResult, RetentionPolicy, RowStream } from './port';
import type { PanSighting, StoredEvent } from './rows';

/** What survives a MemoryEvidenceStore's close: rows and the retention in force. */
export class MemoryStoreStorage {
  readonly events: StoredEvent[] = [];
  readonly sightings: PanSighting[] = [];
  readonly eventIds = new Set<string>();
  readonly sightedIds = new Set<string>();
  retentionDays: number | null = null;
  openBy: MemoryEvidenceStore | undefined;
}

export interface MemoryStoreOptions {
  readonly retention: RetentionPolicy;
  /** Reuse to "reopen" a store; a fresh one is created when absent. */
  readonly storage?: MemoryStoreStorage;
}

export class MemoryEvidenceStore implements EvidenceStore {
  readonly storage: MemoryStoreStorage;
  readonly #retention: RetentionPolicy;
  #closed = false;
  #failures: StoreError[] = [];

  constructor(opts: MemoryStoreOptions) {
    checkRetention(opts.retention);
    this.#retention = opts.retention;
    this.storage = opts.storage ?? new MemoryStoreStorage();
    if (this.storage.openBy !== undefined) throw new StoreError('store_busy', 'this storage is already open in another MemoryEvidenceStore');
    this.storage.openBy = this;
  }

  async migrate(): Promise<MigrationReport> {
    this.#checkOpen();
    const { days, belowMinimum } = checkRetention(this.#retention);
    const previous = this.storage.retentionDays;
    this.storage.retentionDays = days;
    return { applied: [], alreadyApplied: [], retention: retentionReport(days, previous, belowMinimum) };
  }

  async insertEvents(batch: readonly StoredEvent[], dedupToken: string): Promise<InsertReport> {
    this.#checkOpen();
    if (typeof dedupToken !== 'string' || dedupToken.length === 0) {
      throw new StoreError('store_invalid_argument', 'dedupToken must be a non-empty string', { where: 'dedupToken' });
    }
    const failure = this.#failures.shift();
    if (failure !== undefined) throw failure;
    for (const e of batch) {
      if (e.prevHash.length !== 32 || e.eventHash.length !== 32) {
        throw new StoreError('store_row_invalid', `event ${e.eventId}: hashes must be 32 bytes`, { where: 'eventHash' });
      }
    }
    const s = this.storage;
    const seen = new Set<string>();
    let events = 0;
    let duplicates = 0;
    let sightings = 0;
    for (const e of batch) {
      if (seen.has(e.eventId)) continue;
      seen.add(e.eventId);
      events += 1;
      if (s.eventIds.has(e.eventId)) duplicates += 1;
      else {
        s.eventIds.add(e.eventId);
        s.events.push(e);
      }
      if (e.panSightings.length > 0 && !s.sightedIds.has(e.eventId)) {
        s.sightedIds.add(e.eventId);
        s.sightings.push(...e.panSightings);
        sightings += e.panSightings.length;
      }
    }
    return { events, duplicates, sightings };
  }

  /** Every stored event in insertion order. */
  events(): readonly StoredEvent[] {
    return this.storage.events;
  }

  sightings(): readonly PanSighting[] {
    return this.storage.sightings;
  }

  /** Make the next `count` insertEvents calls fail (default: store_unavailable, retriable), before writing anything. */
  failNextInserts(count: number, error?: StoreError): void {
    for (let i = 0; i < count; i++) {
      this.#failures.push(error ?? new StoreError('store_unavailable', 'injected failure', { retriable: true }));
    }
  }

  query(): Promise<QueryResult> {
    return Promise.reject(unsupported());
  }

  stream(): RowStream {
    throw unsupported();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.storage.openBy === this) this.storage.openBy = undefined;
  }

  #checkOpen(): void {
    if (this.#closed) throw new StoreError('store_closed', 'the evidence store is closed');
  }
}

function unsupported(): StoreError {
  return new StoreError('store_unsupported', 'the in-memory evidence store runs no SQL', {
    fix: 'evidence queries need the real engine: run them against ChdbEvidenceStore',
  });
}
