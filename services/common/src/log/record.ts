import { LogError } from './errors';
import type { LogRecord } from './port';

/** Fixed bytes of a record frame around key, headers and value (see frame.ts). */
export const RECORD_FIXED_BYTES = 4 + 4 + 8 + 8 + 2 + 2 + 4;
export const MAX_FIELD_BYTES = 0xffff;
export const DEFAULT_MAX_RECORD_BYTES = 1024 * 1024;

const GROUP_NAME = /^[A-Za-z0-9._-]{1,128}$/;

/** Key and header strings encoded once, reused by the frame encoder. */
export interface MeasuredRecord {
  readonly record: LogRecord;
  readonly key: Buffer;
  readonly headers: ReadonlyArray<readonly [Buffer, Buffer]>;
  /** Encoded frame size in bytes. */
  readonly frameBytes: number;
}

/**
 * Validates one record and computes its encoded size. Both adapters use it so their limits agree.
 * Throws LogError('log_record_too_large' | 'log_invalid_argument').
 */
export function measureRecord(record: LogRecord, index: number, maxRecordBytes: number): MeasuredRecord {
  const where = `records[${index}]`;
  if (record === null || typeof record !== 'object') {
    throw new LogError('log_invalid_argument', `${where} is not a record object`, { where });
  }
  if (typeof record.key !== 'string') {
    throw new LogError('log_invalid_argument', `${where}.key must be a string`, { where: `${where}.key` });
  }
  if (!(record.value instanceof Uint8Array)) {
    throw new LogError('log_invalid_argument', `${where}.value must be a Uint8Array`, { where: `${where}.value` });
  }
  const key = Buffer.from(record.key, 'utf8');
  if (key.length > MAX_FIELD_BYTES) {
    throw new LogError('log_invalid_argument', `${where}.key is ${key.length} bytes; the limit is ${MAX_FIELD_BYTES}`, {
      where: `${where}.key`,
    });
  }
  let size = RECORD_FIXED_BYTES + key.length + record.value.length;
  const headers: Array<readonly [Buffer, Buffer]> = [];
  if (record.headers !== undefined) {
    if (record.headers === null || typeof record.headers !== 'object') {
      throw new LogError('log_invalid_argument', `${where}.headers must be an object of strings`, {
        where: `${where}.headers`,
      });
    }
    for (const [name, value] of Object.entries(record.headers)) {
      if (typeof value !== 'string') {
        throw new LogError('log_invalid_argument', `${where}.headers.${name} must be a string`, {
          where: `${where}.headers.${name}`,
        });
      }
      const n = Buffer.from(name, 'utf8');
      const v = Buffer.from(value, 'utf8');
      if (n.length > MAX_FIELD_BYTES || v.length > MAX_FIELD_BYTES) {
        throw new LogError('log_invalid_argument', `${where}.headers.${name} exceeds ${MAX_FIELD_BYTES} bytes`, {
          where: `${where}.headers.${name}`,
        });
      }
      headers.push([n, v]);
      size += 4 + n.length + v.length;
    }
    if (headers.length > MAX_FIELD_BYTES) {
      throw new LogError('log_invalid_argument', `${where} has more than ${MAX_FIELD_BYTES} headers`, {
        where: `${where}.headers`,
      });
    }
  }
  if (size > maxRecordBytes) {
    throw new LogError(
      'log_record_too_large',
      `${where} encodes to ${size} bytes; the log's maximum record size is ${maxRecordBytes}`,
      { where, fix: 'Split the event, or raise maxRecordBytes for this log.' },
    );
  }
  return { record, key, headers, frameBytes: size };
}

export function measureRecords(records: readonly LogRecord[], maxRecordBytes: number): MeasuredRecord[] {
  if (!Array.isArray(records)) throw new LogError('log_invalid_argument', 'append() takes an array of records');
  return records.map((r, i) => measureRecord(r, i, maxRecordBytes));
}

/**
 * FNV-1a over the key's UTF-8 bytes. Persisted data depends on it (a key's partition must not move),
 * so it never changes for an existing log format.
 */
export function partitionForKey(key: Uint8Array, partitionCount: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key[i]!;
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % partitionCount;
}

export function checkGroupName(group: string): void {
  if (typeof group !== 'string' || !GROUP_NAME.test(group)) {
    throw new LogError('log_invalid_argument', `consumer group name ${JSON.stringify(group)} is invalid`, {
      where: 'group',
      fix: 'Use 1-128 characters from A-Z a-z 0-9 . _ -',
    });
  }
}

export function checkPollArgs(maxRecords: number, maxWaitMs: number): void {
  if (!Number.isSafeInteger(maxRecords) || maxRecords < 1) {
    throw new LogError('log_invalid_argument', `maxRecords must be a positive integer, got ${maxRecords}`);
  }
  if (!Number.isFinite(maxWaitMs) || maxWaitMs < 0) {
    throw new LogError('log_invalid_argument', `maxWaitMs must be a non-negative number, got ${maxWaitMs}`);
  }
}

/**
 * Validates commit positions against what the consumer delivered and what the group last committed,
 * returning the new committed positions. Shared so every adapter enforces the same rules.
 */
export function nextCommitted(
  group: string,
  committed: readonly number[],
  delivered: readonly number[],
  positions: readonly { partition: number; nextOffset: number }[] | undefined,
): number[] {
  if (positions === undefined) return delivered.map((d, p) => Math.max(d, committed[p] ?? 0));
  const out = [...committed];
  for (const pos of positions) {
    const { partition: p, nextOffset } = pos;
    if (!Number.isInteger(p) || p < 0 || p >= committed.length) {
      throw new LogError('log_invalid_argument', `group ${group}: no partition ${p}`);
    }
    if (!Number.isSafeInteger(nextOffset)) {
      throw new LogError('log_invalid_argument', `group ${group}: nextOffset ${nextOffset} is not an integer`);
    }
    const d = delivered[p] ?? 0;
    const c = committed[p] ?? 0;
    if (nextOffset > d) {
      throw new LogError(
        'log_invalid_argument',
        `group ${group}: cannot commit partition ${p} at ${nextOffset}, only up to ${d} was delivered`,
      );
    }
    if (nextOffset < c) {
      throw new LogError(
        'log_invalid_argument',
        `group ${group}: cannot commit partition ${p} back to ${nextOffset}, already committed ${c}`,
      );
    }
    out[p] = nextOffset;
  }
  return out;
}
