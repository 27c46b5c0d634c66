// The evidence store's public surface. testing.ts (synthetic evidence) is imported by tests and benchmarks only.
export type {
  Cell,
  EncodedEventRows,
  EvidenceStore,
  InsertReport,
  MigrationReport,
  QueryOptions,
  QueryParams,
  QueryParamValue,
  QueryResult,
  ResultColumn,
  RetentionConfigChange,
  RetentionPolicy,
  RetentionReport,
  Row,
  RowStream,
} from './port';
export { DEFAULT_QUERY_MAX_ROWS, MIN_RETENTION_DAYS } from './port';
export { isStoreError, StoreError, STORE_ERROR_CODES, type StoreErrorCode } from './errors';
export { EVENT_COLUMNS, PAN_SIGHTING_COLUMNS, cardDataPresent, panSightingsOf, payloadJson, toStoredEvent, type PanSighting, type StoredEvent } from './rows';
export { lazyEventOf, readStoredEvent, type FastRow } from './row-decoder';
export { RowBinaryWriter, writeEventRow } from './rowbinary';
export { checkRetention, DEFAULT_MIGRATIONS_DIR, loadMigrations, MIGRATIONS_TABLE, RETENTION_TABLES, type Migration } from './migrations';
export { ChdbEvidenceStore, type ChdbStoreOptions } from './chdb-store';
export { MemoryEvidenceStore, MemoryStoreStorage, type MemoryStoreOptions } from './memory-store';
export {
  EVIDENCE_QUERIES,
  runEvidenceQuery,
  type EvidenceColumn,
  type EvidenceFilters,
  type EvidenceQuery,
  type EvidenceResult,
  type EvidenceRunOptions,
  type PanLookupArgs,
  type SessionReplayArgs,
  type TimeInput,
} from './evidence-queries';
export { render, renderCsv, renderJson, renderTable, type CsvOptions, type RenderFormat, type Renderable, type TableOptions } from './render';
export { ClickHouseServerStore, toServerStoreError, type ClickHouseServerStoreOptions } from './clickhouse-store';
