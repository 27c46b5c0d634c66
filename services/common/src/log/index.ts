// The event log's public surface. log-conformance.ts is imported by adapter tests only (it needs vitest).
export type { AppendResult, ConsumedRecord, ConsumerOptions, ConsumerPosition, EventLog, LogConsumer, LogRecord } from './port';
export { positionsAfter } from './port';
export { isLogError, LogError, type LogErrorCode } from './errors';
export {
  DEFAULT_MAX_BATCH_BYTES,
  DEFAULT_PARTITIONS,
  DEFAULT_RETENTION_MIN_AGE_MS,
  DEFAULT_SEGMENT_BYTES,
  FileEventLog,
  type FileLogOptions,
  type FileLogStats,
  type RecoveryReport,
} from './file-log';
export { MemoryEventLog, MemoryLogStorage, type MemoryLogOptions } from './memory-log';
export { DEFAULT_MAX_RECORD_BYTES } from './record';
