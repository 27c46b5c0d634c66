import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
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
  parseCheckpoint,
  type Cadence,
  type Keyring,
  type SignedCheckpoint,
  type TailEvent,
} from '../integrity';
import type { EventLog, LogRecord } from '../log';

/**
 * The one way events leave a producer:
 *
 *   newEvent ──▶ chain (sequence, prevHash) ──▶ Avro single-object encoding ──▶ durable log append
 *                                                         └──▶ Merkle accumulator ──▶ signed checkpoint
 *
 * `emit` resolves only once the batch is durable, so a caller can fail closed on its rejection.
 * Checkpoints are cut on a fixed cadence (every N events or T ms, even when idle) and signed once
 * each, never per event. Every start is a new chain epoch linked to the producer's last checkpoint.
 * A failed append rewinds the chain to what is durable (the events since the last checkpoint are
 * kept for that), so the chain never claims an event that did not reach the log.
 */

export interface CheckpointFile {
  load(): Promise<SignedCheckpoint | undefined>;
  save(cp: SignedCheckpoint): Promise<void>;
}

/** The producer's last checkpoint as a compact JWS file, replaced atomically. */
export function checkpointFile(dir: string, producer: string): CheckpointFile {
  const path = join(dir, `${producer.replace(/[^A-Za-z0-9_.-]/g, '_')}.checkpoint.jws`);
  return {
    async load() {
      let text: string;
      try {
        text = await readFile(path, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw err;
      }
      return parseCheckpoint(text.trim());
    },
    async save(cp) {
      await mkdir(dir, { recursive: true });
      const tmp = `${path}.tmp`;
      await writeFile(tmp, cp.jws, { mode: 0o600 });
      await rename(tmp, path);
    },
  };
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
}

export class EvidenceEmitterError extends AttestError<'evidence_unavailable'> {}

export class EvidenceEmitter {
  private chain: ProducerChain;
  private epoch: string;
  private lastCheckpoint: SignedCheckpoint | undefined;
  private readonly epochStart: { producer: string; epoch: string; startUs: number; previous?: SignedCheckpoint };
  /** Durable events of this epoch not yet covered by a checkpoint: what a rewind replays. */
  private tail: TailEvent[] = [];
  private readonly scheduler: CheckpointScheduler;
  private readonly clock: EventClock;
  private closed = false;
  /** Set while the log refuses appends: when the outage began. */
  private pausedSinceUs: number | undefined;
  /** The epoch before this one, and whether it ended with a recorded stop (not a crash). */
  private readonly previousEpoch: { epoch: string | null; stopRecorded: boolean };
  /** What every event of this producer is built with (one object, not one per event). */
  private readonly eventDeps: { producer: { id: string; epoch: string }; clock: EventClock };

  private constructor(private readonly opts: EmitterOptions, previous: SignedCheckpoint | undefined) {
    this.clock = opts.clock ?? systemClock;
    this.lastCheckpoint = previous;
    this.epoch = uuidv7();
    this.epochStart = { producer: opts.producerId, epoch: this.epoch, startUs: this.clock.nowUs(), ...(previous ? { previous } : {}) };
    this.chain = ProducerChain.start(this.epochStart);
    this.eventDeps = { producer: { id: opts.producerId, epoch: this.epoch }, clock: this.clock };
    this.previousEpoch = { epoch: previous?.fields.epoch ?? null, stopRecorded: previous?.fields.closed ?? false };
    this.scheduler = new CheckpointScheduler({
      ...(opts.cadence ?? DEFAULT_CADENCE),
      clock: this.clock,
      onDue: () => void this.checkpoint(),
    });
  }

  /** Opens the producer: loads its last checkpoint and starts the cadence. */
  static async open(opts: EmitterOptions): Promise<EvidenceEmitter> {
    const previous = await opts.checkpoints.load();
    if (previous && previous.fields.producer !== opts.producerId) {
      throw new AttestError('evidence_checkpoint_mismatch', `checkpoint file belongs to producer ${previous.fields.producer}, not ${opts.producerId}`);
    }
    const emitter = new EvidenceEmitter(opts, previous);
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
   */
  async emit(events: readonly UnchainedEvent<EventType>[], key: string): Promise<AnyAttestEvent[]> {
    if (this.closed) throw new EvidenceEmitterError('evidence_unavailable', 'the evidence emitter is closed', { retriable: true });
    const chained: AnyAttestEvent[] = [];
    const records: LogRecord[] = [];
    const tail: TailEvent[] = [];
    // The first batch after an outage of the log starts with the evidence of the outage itself
    // (PCI DSS 10.2.1.6, 10.7.2): when logging was paused and that requests were refused meanwhile.
    const pause = this.pausedSinceUs === undefined ? undefined : this.pauseEvent(this.pausedSinceUs);
    for (const e of pause ? [pause, ...events] : events) {
      const meta = this.chain.nextMetadata();
      const ev = chainEvent(e, meta) as AnyAttestEvent;
      const bytes = encodeEvent(ev);
      this.chain.append(bytes);
      chained.push(ev);
      tail.push({ sequence: meta.sequence, prevHash: meta.prevHash, bytes });
      records.push({ key, value: bytes, headers: { type: ev.metadata.type } });
    }
    try {
      await this.opts.log.append(records);
    } catch (err) {
      this.pausedSinceUs ??= this.clock.nowUs();
      this.rewind();
      this.opts.logger.error({ code: (err as { code?: string }).code, events: events.length }, 'evidence append failed: failing closed');
      throw new EvidenceEmitterError('evidence_unavailable', 'the audit log could not durably record this request', { retriable: true, cause: err });
    }
    this.tail.push(...tail);
    for (let i = 0; i < records.length; i++) this.scheduler.recordEvent();
    if (pause) {
      this.pausedSinceUs = undefined;
      this.opts.logger.warn({ producer: this.opts.producerId }, 'evidence log reachable again: the outage is recorded as audit.stopped (paused)');
      chained.shift();
    }
    return chained;
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
   * After a failed append: rebuild the chain from the last checkpoint and the durable tail, so the
   * next event continues from the last one that is really on the log.
   */
  private rewind(): void {
    const tail = [...this.tail].sort((a, b) => a.sequence - b.sequence);
    const last = this.lastCheckpoint;
    this.chain =
      last && last.fields.epoch === this.epoch
        ? ProducerChain.resume({ last, tail })
        : ProducerChain.resume({ epochStart: this.epochStart, tail });
  }

  /** Cuts, signs and appends a checkpoint now (the scheduler calls this on the cadence). */
  async checkpoint(opts: { closed?: boolean } = {}): Promise<SignedCheckpoint | undefined> {
    const chain = this.chain;
    let cp: SignedCheckpoint;
    try {
      cp = await chain.checkpoint(this.opts.keyring.signingKey(), this.clock.nowUs(), opts);
      const f = cp.fields;
      const ev = chainEvent(
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
        // Checkpoints sit outside the chain they cover.
        { sequence: 0, prevHash: ZERO_HASH },
      ) as AnyAttestEvent;
      try {
        await this.opts.log.append([{ key: `producer:${f.producer}`, value: encodeEvent(ev), headers: { type: 'integrity.checkpoint' } }]);
      } catch (err) {
        // Cutting the checkpoint advanced the chain to it; it is not on the log, so the next one
        // must link to the last durable checkpoint, or a verifier would read this one as deleted.
        if (this.chain === chain) this.rewind();
        throw err;
      }
    } catch (err) {
      this.opts.logger.error({ code: (err as { code?: string }).code }, 'checkpoint could not be emitted; it stays due');
      this.scheduler.failed();
      return undefined;
    }
    // Durable on the log: from here on the chain continues from it, whatever the local file does.
    this.lastCheckpoint = cp;
    this.tail = this.tail.filter((t) => t.sequence > cp.fields.lastSequence);
    this.scheduler.checkpointed(cp.fields.toTimeUs);
    try {
      await this.opts.checkpoints.save(cp);
    } catch (err) {
      // The next run then links to an older checkpoint (a fork a verifier reports); say so loudly.
      this.opts.logger.error({ code: (err as { code?: string }).code }, 'checkpoint is on the log but its local copy could not be saved');
    }
    return cp;
  }

  /** Final checkpoint closing the epoch; the caller emits audit.stopped before this. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.scheduler.stop();
    await this.checkpoint({ closed: true });
    this.closed = true;
  }
}

export function systemActor(producerId: string) {
  return { subject: `system:${producerId}`, issuer: 'attest', clientId: null, groups: [], kind: 'system' as const, onBehalfOf: null, dev: false };
}
