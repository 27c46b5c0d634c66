import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { AttestError } from '../errors';
import { buildEvent } from '../events/builder';
import {
  chainEvent,
  encodeEvent,
  systemClock,
  uuidv7,
  type AnyAttestEvent,
  type EventClock,
  type EventParts,
  type EventType,
  type UnchainedEvent,
} from '../events';
import {
  CheckpointScheduler,
  DEFAULT_CADENCE,
  ProducerChain,
  ZERO_HASH,
  eventHash,
  parseCheckpoint,
  type Cadence,
  type Keyring,
  type SignedCheckpoint,
} from '../integrity';
import { DEFAULT_MAX_RECORD_BYTES, type EventLog, type LogRecord } from '../log';

/**
 * The one way events leave a producer:
 *
 *   newEvent ──▶ chain (sequence, prevHash) ──▶ Avro single-object encoding ──▶ durable log append
 *                                                         └──▶ Merkle accumulator ──▶ signed checkpoint
 *
 * `emit` resolves only once the batch is durable, so a caller can fail closed on its rejection.
 * Checkpoints are cut on a fixed cadence (every N events or T ms, even when idle) and signed once
 * each, never per event. Every start is a new chain epoch linked to the producer's last checkpoint.
 *
 * A chain position is never given twice. An append that fails has an unknown outcome (a broker can
 * write the records and lose the acknowledgement), so its records are kept "in doubt" and appended
 * again, byte for byte, before anything new is chained: the log then holds them once or twice,
 * identical, and consumers dedupe by event id. While that re-append fails, emit refuses at once
 * without chaining anything (fail closed, no position spent), which also bounds what is held in doubt
 * to the appends that were in flight when the log went away. Rewinding the chain instead (an earlier
 * design) gave the next events the positions of records that were on the log after all: two events
 * at one position, which a verifier rightly reads as tampering.
 *
 * A checkpoint is appended only after every event it covers is durable, and is written to the
 * producer's pending file before its append and to the checkpoint file after it. A producer that
 * restarts with a pending checkpoint appends it again before anything else and links its new epoch
 * to it; so a kill between a checkpoint's append and the save of its file can no longer fork the
 * checkpoint chain (the next epoch linking to the checkpoint before it).
 */

export interface CheckpointFile {
  load(): Promise<SignedCheckpoint | undefined>;
  save(cp: SignedCheckpoint): Promise<void>;
  /** Checkpoints cut and about to be (or being) appended, with their encoded integrity.checkpoint events. */
  loadPending(): Promise<PendingCheckpoint[]>;
  savePending(pending: readonly PendingCheckpoint[]): Promise<void>;
}

export interface PendingCheckpoint {
  readonly cp: SignedCheckpoint;
  /** The encoded integrity.checkpoint event, appended again as is after a restart. */
  readonly event: Uint8Array;
}

/** Most checkpoints a pending file may hold (each is a few hundred bytes); more is a corrupt file. */
const MAX_PENDING_CHECKPOINTS = 1000;

/** The producer's last checkpoint as a compact JWS file, and its pending ones as JSON; both replaced atomically. */
export function checkpointFile(dir: string, producer: string): CheckpointFile {
  const base = join(dir, producer.replace(/[^A-Za-z0-9_.-]/g, '_'));
  const path = `${base}.checkpoint.jws`;
  const pendingPath = `${base}.checkpoint.pending.json`;
  const readOptional = async (file: string): Promise<string | undefined> => {
    try {
      return await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  };
  return {
    async load() {
      const text = await readOptional(path);
      return text === undefined ? undefined : parseCheckpoint(text.trim());
    },
    async save(cp) {
      await writeDurably(dir, path, cp.jws);
    },
    async loadPending() {
      const text = await readOptional(pendingPath);
      if (text === undefined) return [];
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      if (!Array.isArray(parsed) || parsed.length > MAX_PENDING_CHECKPOINTS) {
        throw new AttestError('evidence_checkpoint_file_invalid', `${pendingPath} is not a list of pending checkpoints`, {
          fix: 'restore the file from a backup; deleting it makes the next epoch link to the last saved checkpoint, which a verifier may report as a fork',
        });
      }
      return parsed.map((p: { jws?: unknown; event?: unknown }) => {
        if (typeof p?.jws !== 'string' || typeof p.event !== 'string') {
          throw new AttestError('evidence_checkpoint_file_invalid', `${pendingPath} holds an entry without jws and event`);
        }
        return { cp: parseCheckpoint(p.jws), event: new Uint8Array(Buffer.from(p.event, 'base64')) };
      });
    },
    async savePending(pending) {
      if (pending.length === 0) {
        await rm(pendingPath, { force: true });
        return;
      }
      await writeDurably(dir, pendingPath, JSON.stringify(pending.map((p) => ({ jws: p.cp.jws, event: Buffer.from(p.event).toString('base64') }))));
    },
  };
}

/** A CheckpointFile kept in memory: for tests and producers whose epochs need not outlive the process. */
export function memoryCheckpoints(): CheckpointFile {
  let saved: SignedCheckpoint | undefined;
  let pending: readonly PendingCheckpoint[] = [];
  return {
    load: async () => saved,
    save: async (cp) => {
      saved = cp;
    },
    loadPending: async () => [...pending],
    savePending: async (p) => {
      pending = [...p];
    },
  };
}

/** Write to a temporary file, fsync, rename: the file is the old or the new content, even after a power loss. */
async function writeDurably(dir: string, path: string, text: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}

export interface EmitterOptions {
  log: EventLog;
  keyring: Keyring;
  producerId: string;
  tenantId: string;
  checkpoints: CheckpointFile;
  logger: Logger;
  cadence?: Cadence;
  clock?: EventClock;
  /** Largest encoded event accepted (default: the logs' default record limit). Checked before chaining. */
  maxEventBytes?: number;
}

export interface EmitOptions {
  /**
   * Called when the events of an emit that rejected reach the log after all (the append is retried
   * until it does, see the header): the caller can then carry out what the evidence records (e.g.
   * publish the control message of a suspension), since the log now says it happened.
   */
  onLateConfirm?: (events: AnyAttestEvent[]) => void;
}

export class EvidenceEmitterError extends AttestError<'evidence_unavailable' | 'evidence_event_too_large'> {}

export class EvidenceEmitter {
  private readonly chain: ProducerChain;
  private readonly epoch: string;
  private readonly scheduler: CheckpointScheduler;
  private readonly clock: EventClock;
  private readonly maxEventBytes: number;
  private closed = false;
  /** Set while the log refuses appends: when the outage began. */
  private pausedSinceUs: number | undefined;
  /** The epoch before this one, and whether it ended with a recorded stop (not a crash). */
  private readonly previousEpoch: { epoch: string | null; stopRecorded: boolean };
  /** What every event of this producer is built with (one object, not one per event). */
  private readonly eventDeps: { producer: { id: string; epoch: string }; clock: EventClock };
  /**
   * Appends whose outcome is unknown, each kept as the batch it was (so each fits the log's limit
   * on one append call, as it did the first time), in the order they failed: appended again, one
   * batch per call, before anything new.
   */
  private inDoubt: LogRecord[][] = [];
  /** What to tell callers whose emit failed once their batch is confirmed after all. */
  private readonly late = new Map<LogRecord[], () => void>();
  /** Appends of chained events not settled yet (each settles after its failure, if any, is in `inDoubt`). */
  private readonly inFlight = new Set<Promise<void>>();
  /** Checkpoints cut, signed and not yet confirmed on the log (mirrored in the pending file). */
  private pending: PendingCheckpoint[];
  private flushing: Promise<void> | undefined;
  private draining: Promise<SignedCheckpoint | undefined> | undefined;

  private constructor(
    private readonly opts: EmitterOptions,
    previous: SignedCheckpoint | undefined,
    pending: PendingCheckpoint[],
  ) {
    this.clock = opts.clock ?? systemClock;
    this.maxEventBytes = opts.maxEventBytes ?? DEFAULT_MAX_RECORD_BYTES;
    this.epoch = uuidv7();
    this.pending = pending;
    // Checkpoints left pending by the last run are appended again before anything of this epoch.
    this.inDoubt = pending.length > 0 ? [pending.map((p) => checkpointRecord(p))] : [];
    this.chain = ProducerChain.start({ producer: opts.producerId, epoch: this.epoch, startUs: this.clock.nowUs(), ...(previous ? { previous } : {}) });
    this.eventDeps = { producer: { id: opts.producerId, epoch: this.epoch }, clock: this.clock };
    this.previousEpoch = { epoch: previous?.fields.epoch ?? null, stopRecorded: previous?.fields.closed ?? false };
    this.scheduler = new CheckpointScheduler({
      ...(opts.cadence ?? DEFAULT_CADENCE),
      clock: this.clock,
      onDue: () => void this.checkpoint(),
    });
  }

  /** Opens the producer: loads its last checkpoint (a pending one wins) and starts the cadence. */
  static async open(opts: EmitterOptions): Promise<EvidenceEmitter> {
    const saved = await opts.checkpoints.load();
    const pending = await opts.checkpoints.loadPending();
    for (const cp of [saved, ...pending.map((p) => p.cp)]) {
      if (cp && cp.fields.producer !== opts.producerId) {
        throw new AttestError('evidence_checkpoint_mismatch', `checkpoint file belongs to producer ${cp.fields.producer}, not ${opts.producerId}`);
      }
    }
    const emitter = new EvidenceEmitter(opts, pending.at(-1)?.cp ?? saved, pending);
    emitter.scheduler.start();
    return emitter;
  }

  get producer(): { id: string; epoch: string } {
    return { id: this.opts.producerId, epoch: this.epoch };
  }

  get previous(): { epoch: string | null; stopRecorded: boolean } {
    return this.previousEpoch;
  }

  /** Builds an event of this producer (metadata filled, not yet chained). */
  build<K extends EventType>(type: K, parts: Omit<EventParts<K>, 'tenantId'>): UnchainedEvent<K> {
    return buildEvent(type, this.opts.tenantId, parts, this.eventDeps);
  }

  /**
   * Chains, encodes and durably appends the events, in order, as one log batch under `key`
   * (the session id, so a session stays ordered). Rejects with `evidence_unavailable` when the log
   * does not confirm durability; the caller must then refuse the access it was about to grant.
   * An event that cannot be encoded (the encoder's EventError, e.g. event_pan_detected) or exceeds
   * maxEventBytes (evidence_event_too_large) rejects the whole batch with that error, before any of
   * it is chained or appended.
   */
  async emit(events: readonly UnchainedEvent<EventType>[], key: string, opts: EmitOptions = {}): Promise<AnyAttestEvent[]> {
    if (this.closed) throw new EvidenceEmitterError('evidence_unavailable', 'the evidence emitter is closed', { retriable: true });
    if (this.inDoubt.length > 0) await this.flushInDoubt();
    const chained: AnyAttestEvent[] = [];
    const records: LogRecord[] = [];
    // The first batch after an outage of the log starts with the evidence of the outage itself
    // (PCI DSS 10.2.1.6, 10.7.2): when logging was paused and that requests were refused meanwhile.
    const pause = this.pausedSinceUs === undefined ? undefined : this.pauseEvent(this.pausedSinceUs);
    const batch = pause ? [pause, ...events] : events;
    // A batch takes its chain positions all together or not at all. Every event is encoded first,
    // with the positions it will take (the sequences after the chain's, each prevHash the hash of
    // the event before it); the chain moves only once all are encoded. An event the encoder refuses
    // (a card number, a schema mismatch) or that is too large for the log therefore leaves the
    // chain, its Merkle range and the checkpoint cadence as they were, and the error goes to the
    // caller unchanged: no position of the batch is spent on an event that never reaches the log,
    // which a verifier would report as deleted. Nothing between here and the append below awaits,
    // so no other emit can chain in between.
    const first = this.chain.nextMetadata();
    const hashes: Uint8Array[] = [];
    let prevHash = first.prevHash;
    for (let i = 0; i < batch.length; i++) {
      const ev = chainEvent(batch[i]!, { sequence: first.sequence + i, prevHash }) as AnyAttestEvent;
      const bytes = encodeEvent(ev);
      if (bytes.length > this.maxEventBytes) {
        throw new EvidenceEmitterError('evidence_event_too_large', `a ${ev.metadata.type} event of ${bytes.length} bytes exceeds the ${this.maxEventBytes}-byte limit of the evidence log`, {
          fix: 'lower the content kept in events or raise the log record limit (and maxEventBytes with it)',
        });
      }
      // Hashed once: the next event's prevHash now, the chain and the Merkle range at the commit.
      prevHash = eventHash(bytes);
      hashes.push(prevHash);
      chained.push(ev);
      records.push({ key, value: bytes, headers: { type: ev.metadata.type } });
    }
    // Commit (synchronous; throws only on the first event, for a closed epoch, before moving anything).
    for (let i = 0; i < hashes.length; i++) this.chain.appendHash(hashes[i]!);
    try {
      await this.append(records);
    } catch (err) {
      if (opts.onLateConfirm && this.inDoubt.includes(records)) {
        const confirmed = pause ? chained.slice(1) : chained;
        this.late.set(records, () => opts.onLateConfirm!(confirmed));
      }
      this.opts.logger.error({ code: (err as { code?: string }).code, events: events.length }, 'evidence append failed: failing closed');
      throw new EvidenceEmitterError('evidence_unavailable', 'the audit log could not durably record this request', { retriable: true, cause: err });
    }
    for (let i = 0; i < records.length; i++) this.scheduler.recordEvent();
    if (pause) {
      this.pausedSinceUs = undefined;
      this.opts.logger.warn({ producer: this.opts.producerId }, 'evidence log reachable again: the outage is recorded as audit.stopped (paused)');
      chained.shift();
    }
    return chained;
  }

  /**
   * Appends chained records. Started synchronously, so a checkpoint cut after this call waits for it
   * (`inFlight`). A retriable failure has an unknown outcome: the records go in doubt. A validation
   * failure means nothing was written: those positions stay empty, which a verifier reports as
   * missing events (the truth: they were chained and never recorded).
   */
  private append(records: LogRecord[]): Promise<void> {
    const settled = this.opts.log.append(records).then(
      () => undefined,
      (err: unknown) => {
        if ((err as { retriable?: boolean }).retriable !== false) {
          this.pausedSinceUs ??= this.clock.nowUs();
          this.inDoubt.push(records);
        } else this.opts.logger.error({ code: (err as { code?: string }).code, records: records.length }, 'the evidence log refused records as invalid: their chain positions stay empty');
        throw err;
      },
    );
    const tracked = settled.catch(() => undefined);
    this.inFlight.add(tracked);
    void tracked.then(() => this.inFlight.delete(tracked));
    return settled;
  }

  /**
   * Resolves once nothing this producer chained is in doubt any more: earlier failed appends are
   * appended again now. Rejects with evidence_unavailable while the log refuses. A service that
   * decides from what the log holds (approvals, processors) calls this before reading it, so an
   * earlier decision whose append failed and that lands late is seen before deciding again.
   */
  async settle(): Promise<void> {
    await Promise.all([...this.inFlight]);
    if (this.inDoubt.length > 0) await this.flushInDoubt();
  }

  /**
   * Appends the batches in doubt again, in order, one append call each (one flush at a time); rejects
   * with evidence_unavailable while the log refuses, keeping what is still in doubt.
   */
  private async flushInDoubt(): Promise<void> {
    this.flushing ??= (async () => {
      while (this.inDoubt.length > 0) {
        const batch = this.inDoubt[0]!;
        try {
          await this.opts.log.append(batch);
        } catch (err) {
          this.pausedSinceUs ??= this.clock.nowUs();
          throw new EvidenceEmitterError('evidence_unavailable', 'the audit log is unavailable: records of an earlier append are not yet confirmed', { retriable: true, cause: err });
        }
        this.inDoubt.shift();
        const tell = this.late.get(batch);
        if (tell !== undefined) {
          this.late.delete(batch);
          try {
            tell();
          } catch (err) {
            this.opts.logger.error({ err: (err as Error).message }, 'evidence confirmed late: the caller\'s follow-up failed');
          }
        }
        await this.confirmed(batch);
      }
    })().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  /** Pending checkpoints among records now confirmed durable: saved as the last checkpoint, removed from the pending file. */
  private async confirmed(records: readonly LogRecord[]): Promise<void> {
    const done = new Set(records);
    const landed = this.pending.filter((p) => [...done].some((r) => r.value === p.event));
    if (landed.length === 0) return;
    this.pending = this.pending.filter((p) => !landed.includes(p));
    const last = landed.at(-1)!;
    try {
      await this.opts.checkpoints.save(last.cp);
      await this.opts.checkpoints.savePending(this.pending);
    } catch (err) {
      // The pending file still names it, and the next run appends it again: harmless, just said.
      this.opts.logger.error({ code: (err as { code?: string }).code }, 'checkpoint is on the log but its local files could not be updated');
    }
  }

  /** audit.stopped (paused) for an outage of the log that began at `sinceUs` and ends now. */
  private pauseEvent(sinceUs: number): UnchainedEvent<'audit.stopped'> {
    const nowUs = this.clock.nowUs();
    const iso = (us: number) => new Date(us / 1000).toISOString();
    return this.build('audit.stopped', {
      actor: systemActor(this.opts.producerId),
      source: { address: 'local', userAgent: null },
      target: { protocol: 'internal', service: 'attest', resource: `producer/${this.opts.producerId}`, model: null },
      outcome: { result: 'failure', status: null, reason: 'event_log_unavailable' },
      correlation: { sessionId: `producer:${this.opts.producerId}`, requestId: `paused:${sinceUs}`, upstreamRequestId: null },
      payload: {
        component: this.opts.producerId,
        reason: 'paused',
        detail: `the event log refused appends from ${iso(sinceUs)} to ${iso(nowUs)}; every access needing evidence in that window was refused (fail closed)`,
        resumeExpected: true,
      },
    });
  }

  /**
   * Cuts, signs and appends a checkpoint now (the scheduler calls this on the cadence). Resolves to
   * the checkpoint once it is durable, or undefined when it (or an earlier one) is not confirmed yet;
   * it then stays pending and goes to the log before any later one.
   */
  async checkpoint(opts: { closed?: boolean } = {}): Promise<SignedCheckpoint | undefined> {
    // While earlier checkpoints are unconfirmed, a scheduled tick only retries them: cutting more
    // would pile up empty checkpoints through an outage.
    if (this.pending.length > 0 && (await this.drain()) === undefined && !opts.closed) {
      this.scheduler.failed();
      return undefined;
    }
    let cp: SignedCheckpoint;
    try {
      cp = await this.chain.checkpoint(this.opts.keyring.signingKey(), this.clock.nowUs(), opts);
    } catch (err) {
      this.opts.logger.error({ code: (err as { code?: string }).code }, 'checkpoint could not be signed; it stays due');
      this.scheduler.failed();
      return undefined;
    }
    this.pending.push({ cp, event: encodeEvent(this.checkpointEvent(cp)) });
    const last = await this.drain();
    if (last === undefined) {
      this.scheduler.failed();
      return undefined;
    }
    this.scheduler.checkpointed(last.fields.toTimeUs);
    return last;
  }

  /**
   * Appends the pending checkpoints in order, each only after every event it covers is durable
   * (appends in flight settled, records in doubt re-appended). One drain at a time.
   */
  private drain(): Promise<SignedCheckpoint | undefined> {
    this.draining ??= (async () => {
      try {
        while (this.pending.length > 0) {
          const batch = this.pending.slice();
          await Promise.all([...this.inFlight]);
          // The pending file first: a kill after the append must not leave the next run linking
          // to the checkpoint before these.
          await this.opts.checkpoints.savePending(this.pending);
          // Records in doubt (events, and checkpoints of a failed drain) go first, in an append of
          // their own, so a checkpoint never reaches the log in the same request as events it covers.
          if (this.inDoubt.length > 0) await this.flushInDoubt();
          const fresh = batch.filter((p) => this.pending.includes(p)).map((p) => checkpointRecord(p));
          if (fresh.length > 0) this.inDoubt.push(fresh);
          if (this.inDoubt.length > 0) await this.flushInDoubt();
          if (this.pending.length === 0) return batch.at(-1)!.cp;
        }
        return undefined;
      } catch (err) {
        this.opts.logger.error({ code: (err as { code?: string }).code }, 'checkpoint could not be emitted; it stays pending and due');
        return undefined;
      }
    })().finally(() => {
      this.draining = undefined;
    });
    return this.draining;
  }

  /** The integrity.checkpoint event for `cp` (outside the chain it covers: sequence 0). */
  private checkpointEvent(cp: SignedCheckpoint): AnyAttestEvent {
    const f = cp.fields;
    return chainEvent(
      this.build('integrity.checkpoint', {
        actor: systemActor(this.opts.producerId),
        source: { address: 'local', userAgent: null },
        target: { protocol: 'internal', service: 'attest', resource: `producer/${f.producer}`, model: null },
        outcome: { result: 'success', status: null, reason: null },
        correlation: { sessionId: `producer:${f.producer}`, requestId: `checkpoint:${f.epoch}:${f.lastSequence}`, upstreamRequestId: null },
        payload: {
          producer: f.producer,
          epoch: f.epoch,
          firstSequence: f.firstSequence,
          lastSequence: f.lastSequence,
          count: f.count,
          fromTimeUs: f.fromTimeUs,
          toTimeUs: f.toTimeUs,
          lastHash: Buffer.from(f.lastHash),
          merkleRoot: Buffer.from(f.merkleRoot),
          prevCheckpointHash: Buffer.from(f.prevCheckpointHash),
          closed: f.closed,
          keyId: f.keyId,
          formatVersion: 1,
          signature: Buffer.from(cp.signature),
        },
      }),
      { sequence: 0, prevHash: ZERO_HASH },
    ) as AnyAttestEvent;
  }

  /** Final checkpoint closing the epoch; the caller emits audit.stopped before this. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.scheduler.stop();
    await this.checkpoint({ closed: true });
    this.closed = true;
  }
}

function checkpointRecord(p: PendingCheckpoint): LogRecord {
  return { key: `producer:${p.cp.fields.producer}`, value: p.event, headers: { type: 'integrity.checkpoint' } };
}

export function systemActor(producerId: string) {
  return { subject: `system:${producerId}`, issuer: 'attest', clientId: null, groups: [], kind: 'system' as const, onBehalfOf: null, dev: false };
}
