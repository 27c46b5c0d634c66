/**
 * State snapshots of the stateful processors (risk, DLP, approvals): a cache that shortens a
 * restart, never evidence. A snapshot holds a processor's book and the per-partition log positions
 * it covers; at start the processor loads it, replays only the records from those positions on, and
 * falls back to the full replay when the snapshot is missing or unusable. Correctness never depends
 * on a snapshot: every check below refuses rather than guesses, and a refused snapshot costs only
 * time. See docs/processors.md.
 *
 * The port (SnapshotStore) has one adapter here, FileSnapshotStore: one file per (processor group,
 * log identity) under the processor's data directory, replaced atomically (temp file, fdatasync,
 * rename, fsync of the directory) and guarded by a SHA-256 of its body:
 *
 *   ATTEST-SNAPSHOT 1 <sha256 of body, hex> <body bytes>\n
 *   <body: compact JSON of StateSnapshot>
 *
 * Every refusal has a stable reason code (SnapshotRejection), logged once as a warning by the caller.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';

/** Version of the file framing and of the StateSnapshot envelope. */
export const SNAPSHOT_FORMAT_VERSION = 1;
const MAGIC = 'ATTEST-SNAPSHOT';

/** What the last record a snapshot covers in a partition looked like: a foreign or rewritten log fails the match. */
export interface SnapshotAnchor {
  readonly offset: number;
  readonly appendTimeMs: number;
  /** First 16 bytes of SHA-256 of the record's value, hex. */
  readonly digest: string;
}

export interface StateSnapshot<S = unknown> {
  /** The processor's consumer group (risk, dlp, approvals). */
  readonly group: string;
  /** Which log the positions are in: the embedded log's directory, or the Kafka brokers and topic. */
  readonly logId: string;
  readonly partitions: number;
  /** The state is the book after folding exactly the records below these offsets (per partition). */
  readonly positions: readonly number[];
  /**
   * Per partition, the record at positions[p] − 1; null when positions[p] is 0 or that record was
   * never seen (all of it below the oldest retained record at the rebuild): then not checked.
   */
  readonly anchors: readonly (SnapshotAnchor | null)[];
  /** Version of `state`'s shape, owned by the processor; an unknown one is refused. */
  readonly stateVersion: number;
  /** What else the state depends on (e.g. a digest of the risk policy); a different one is refused. */
  readonly fingerprint: string;
  readonly takenAtMs: number;
  readonly state: S;
}

/** Why a stored snapshot was not used (stable codes, in the warning log line as `reason`). */
export type SnapshotRejection =
  /** Unreadable, truncated, wrong magic, checksum mismatch or malformed JSON. */
  | 'snapshot_corrupt'
  /** A file format or state version this build does not know. */
  | 'snapshot_version_unknown'
  /** Written for another group, another log (directory, topic) or another partition count. */
  | 'snapshot_foreign_log'
  /** Taken under another configuration the state depends on (e.g. the risk policy changed). */
  | 'snapshot_config_changed'
  /** Positions beyond the group's committed positions: the log was reset or the group rewound. */
  | 'snapshot_ahead_of_commit'
  /** Positions below the oldest retained records: the records after it are no longer all there. */
  | 'snapshot_below_retention'
  /** The record a position follows is not the one the snapshot saw: a different log at the same place. */
  | 'snapshot_anchor_mismatch'
  /** The state did not restore (shape check failed). */
  | 'snapshot_state_invalid';

export class SnapshotRejected extends Error {
  constructor(
    readonly reason: SnapshotRejection,
    message: string,
  ) {
    super(message);
    this.name = 'SnapshotRejected';
  }
}

export type SnapshotLoad = { readonly found: true; readonly snapshot: StateSnapshot } | { readonly found: false; readonly rejected?: SnapshotRejected };

export interface SnapshotStore {
  /** The snapshot for (group, logId): found, missing (no `rejected`), or unusable (`rejected` says why). */
  load(group: string, logId: string, partitions: number): Promise<SnapshotLoad>;
  /**
   * Replaces the snapshot for (snapshot.group, snapshot.logId) atomically and durably. Serialises
   * `snapshot` before it first yields, so the caller may go on changing its state.
   */
  save(snapshot: StateSnapshot): Promise<void>;
}

/** Largest snapshot file loaded (a risk book of 500 identities is ≈ 5 MB). */
export const MAX_SNAPSHOT_BYTES = 1024 * 1024 * 1024;

/** One file per (group, log identity) in `dir` (created when missing). */
export class FileSnapshotStore implements SnapshotStore {
  constructor(readonly dir: string) {}

  /** The file of (group, logId): the group name (log-safe characters) and a digest of the log identity. */
  fileOf(group: string, logId: string): string {
    const safe = group.replace(/[^A-Za-z0-9._-]/g, '_');
    return join(this.dir, `${safe}.${createHash('sha256').update(logId).digest('hex').slice(0, 16)}.snapshot`);
  }

  async load(group: string, logId: string, partitions: number): Promise<SnapshotLoad> {
    let bytes: Buffer;
    try {
      const size = (await stat(this.fileOf(group, logId))).size;
      // A cache file of ours, still bounded: a runaway or planted file must not exhaust the heap.
      if (size > MAX_SNAPSHOT_BYTES) return { found: false, rejected: new SnapshotRejected('snapshot_corrupt', `${this.fileOf(group, logId)} holds ${size} bytes, more than a snapshot may (${MAX_SNAPSHOT_BYTES})`) };
      bytes = await readFile(this.fileOf(group, logId));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { found: false };
      return { found: false, rejected: new SnapshotRejected('snapshot_corrupt', `cannot read ${this.fileOf(group, logId)}: ${(err as Error).message}`) };
    }
    try {
      return { found: true, snapshot: decodeSnapshot(bytes, group, logId, partitions) };
    } catch (err) {
      if (err instanceof SnapshotRejected) return { found: false, rejected: err };
      throw err;
    }
  }

  async save(snapshot: StateSnapshot): Promise<void> {
    // Encoded before the first await: the caller's state may change once this yields.
    const data = encodeSnapshot(snapshot);
    await mkdir(this.dir, { recursive: true });
    const path = this.fileOf(snapshot.group, snapshot.logId);
    const tmp = `${path}.tmp`;
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(data);
      await fh.datasync();
    } catch (err) {
      await fh.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
    await fh.close();
    await rename(tmp, path);
    const d = await open(this.dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  }
}

/** The file's bytes: header line with the body's SHA-256 and length, then the body. */
export function encodeSnapshot(s: StateSnapshot): Buffer {
  const body = Buffer.from(
    JSON.stringify({
      formatVersion: SNAPSHOT_FORMAT_VERSION,
      group: s.group,
      logId: s.logId,
      partitions: s.partitions,
      positions: s.positions,
      anchors: s.anchors,
      stateVersion: s.stateVersion,
      fingerprint: s.fingerprint,
      takenAtMs: s.takenAtMs,
      state: s.state,
    }),
    'utf8',
  );
  const header = Buffer.from(`${MAGIC} ${SNAPSHOT_FORMAT_VERSION} ${createHash('sha256').update(body).digest('hex')} ${body.length}\n`, 'ascii');
  return Buffer.concat([header, body]);
}

/** Parses and checks a snapshot file for (group, logId, partitions); throws SnapshotRejected. */
export function decodeSnapshot(bytes: Buffer, group: string, logId: string, partitions: number): StateSnapshot {
  const nl = bytes.indexOf(0x0a);
  const header = nl < 0 || nl > 200 ? [] : bytes.subarray(0, nl).toString('ascii').split(' ');
  if (header.length !== 4 || header[0] !== MAGIC) throw new SnapshotRejected('snapshot_corrupt', 'not a snapshot file (bad header)');
  if (header[1] !== String(SNAPSHOT_FORMAT_VERSION)) throw new SnapshotRejected('snapshot_version_unknown', `snapshot file format ${header[1]}, this build reads ${SNAPSHOT_FORMAT_VERSION}`);
  const body = bytes.subarray(nl + 1);
  if (String(body.length) !== header[3]) throw new SnapshotRejected('snapshot_corrupt', `snapshot body is ${body.length} bytes, header says ${header[3]} (truncated?)`);
  if (createHash('sha256').update(body).digest('hex') !== header[2]) throw new SnapshotRejected('snapshot_corrupt', 'snapshot checksum mismatch');
  let s: Record<string, unknown>;
  try {
    s = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new SnapshotRejected('snapshot_corrupt', `snapshot body is not JSON: ${(err as Error).message}`);
  }
  if (s === null || typeof s !== 'object' || s['formatVersion'] !== SNAPSHOT_FORMAT_VERSION) throw new SnapshotRejected('snapshot_version_unknown', 'unknown snapshot envelope version');
  if (s['group'] !== group || s['logId'] !== logId) {
    throw new SnapshotRejected('snapshot_foreign_log', `snapshot is of group ${String(s['group'])} on log ${String(s['logId'])}, not ${group} on ${logId}`);
  }
  if (s['partitions'] !== partitions) throw new SnapshotRejected('snapshot_foreign_log', `snapshot is of a log with ${String(s['partitions'])} partitions, this one has ${partitions}`);
  const positions = s['positions'];
  const anchors = s['anchors'];
  if (
    !Array.isArray(positions) ||
    positions.length !== partitions ||
    !positions.every((o) => Number.isSafeInteger(o) && (o as number) >= 0) ||
    !Array.isArray(anchors) ||
    anchors.length !== partitions ||
    !anchors.every((a, p) => a === null || (isAnchor(a) && a.offset === (positions[p] as number) - 1)) ||
    typeof s['stateVersion'] !== 'number' ||
    typeof s['fingerprint'] !== 'string' ||
    typeof s['takenAtMs'] !== 'number' ||
    !('state' in s)
  ) {
    throw new SnapshotRejected('snapshot_corrupt', 'snapshot envelope is malformed');
  }
  return s as unknown as StateSnapshot;
}

function isAnchor(a: unknown): a is SnapshotAnchor {
  const x = a as SnapshotAnchor;
  return typeof x === 'object' && x !== null && Number.isSafeInteger(x.offset) && typeof x.appendTimeMs === 'number' && typeof x.digest === 'string';
}

/** The anchor of a record (the last one a snapshot covers in its partition). */
export function anchorOf(r: { readonly offset: number; readonly appendTimeMs: number; readonly value: Uint8Array }): SnapshotAnchor {
  return { offset: r.offset, appendTimeMs: r.appendTimeMs, digest: createHash('sha256').update(r.value).digest('hex').slice(0, 32) };
}

/** When to take a snapshot, beyond the one at a clean stop. */
export interface SnapshotCadence {
  /** After this many records committed since the last snapshot. Default 100 000. */
  readonly everyRecords?: number;
  /** After this long since the last snapshot (checked at each commit). Default 60 000 ms. */
  readonly everyMs?: number;
}

export const DEFAULT_SNAPSHOT_EVERY_RECORDS = 100_000;
export const DEFAULT_SNAPSHOT_EVERY_MS = 60_000;

/** What a processor needs to take and use snapshots (all three processors take the same options). */
export interface SnapshotOptions extends SnapshotCadence {
  readonly store: SnapshotStore;
  /** Identity of the log the processor reads: e.g. `file:<log dir>` or `kafka:<brokers>/<topic>`. */
  readonly logId: string;
}
