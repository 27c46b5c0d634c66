/**
 * The producer side in one object: chain state, the Merkle accumulator of the range since the last
 * checkpoint, and cutting/signing checkpoints. The emitter pipeline owns one per producer:
 *
 *   const meta = chain.nextMetadata();            // write into the event, then encode it
 *   const { sequence, hash } = chain.append(bytes); // after encoding, before/while appending to the log
 *   if (scheduler.recordEvent() ...) → const cp = await chain.checkpoint(keyring.signingKey(), clock.nowUs());
 *   emit an integrity.checkpoint event from cp.fields + cp.signature (outside the chain: sequence 0)
 *
 * Cost per event: one SHA-256 of the bytes (the chain) plus ~2 small hashes (the tree); one
 * signature per checkpoint, never per event.
 */
import { advance, genesis, nextMetadata } from './chain';
import type { ChainMetadata, ChainState } from './chain';
import { signCheckpoint } from './checkpoint';
import type { SignedCheckpoint } from './checkpoint';
import { IntegrityError } from './errors';
import { ZERO_HASH, hashEquals } from './hash';
import type { SigningKey } from './keyring';
import { MerkleAccumulator } from './merkle';

/** An event of the current epoch after the last checkpoint, decoded by the caller, for `resume`. */
export interface TailEvent {
  readonly sequence: number;
  readonly prevHash: Uint8Array;
  readonly bytes: Uint8Array;
}

export class ProducerChain {
  private chain: ChainState;
  private readonly acc = new MerkleAccumulator();
  private rangeFirst: number;
  private windowStartUs: number;
  private prevCheckpointHash: Uint8Array;
  private closed = false;
  /** Serialises signing so each checkpoint can name its predecessor's hash. */
  private lastSigning: Promise<SignedCheckpoint | undefined>;

  private constructor(chain: ChainState, windowStartUs: number, prevCheckpointHash: Uint8Array, prev?: SignedCheckpoint) {
    this.chain = chain;
    this.rangeFirst = chain.sequence + 1;
    this.windowStartUs = windowStartUs;
    this.prevCheckpointHash = prevCheckpointHash;
    this.lastSigning = Promise.resolve(prev);
  }

  /**
   * Starts a new epoch. `previous` is the producer's last signed checkpoint (of any earlier epoch),
   * which becomes the epoch's link: the prevHash of sequence 1 and the prevCheckpointHash of the
   * epoch's first checkpoint. Omit it only for a producer that has never checkpointed.
   */
  static start(opts: { producer: string; epoch: string; startUs: number; previous?: SignedCheckpoint }): ProducerChain {
    const link = opts.previous?.hash ?? ZERO_HASH;
    if (opts.previous !== undefined && opts.previous.fields.producer !== opts.producer) {
      throw new IntegrityError('integrity_invalid_argument', 'previous checkpoint belongs to another producer');
    }
    return new ProducerChain(genesis(opts.producer, opts.epoch, link), opts.startUs, link, opts.previous);
  }

  /**
   * Continues an epoch after a restart, given the events the producer appended after its last
   * checkpoint, read back from the durable log in order. `last` is that checkpoint; for an epoch
   * that has none yet, pass `epochStart` (what `start` was given) instead. Throws
   * 'integrity_resume_mismatch' when the events do not continue it (then start a new epoch
   * instead), and 'integrity_epoch_closed' when `last` closed its epoch.
   */
  static resume(
    opts:
      | { last: SignedCheckpoint; tail?: readonly TailEvent[] }
      | {
          epochStart: { producer: string; epoch: string; startUs: number; previous?: SignedCheckpoint };
          tail?: readonly TailEvent[];
        },
  ): ProducerChain {
    let pc: ProducerChain;
    if ('last' in opts) {
      const f = opts.last.fields;
      if (f.closed) {
        throw new IntegrityError('integrity_epoch_closed', `epoch ${f.epoch} of ${f.producer} was closed`, {
          fix: 'start a new epoch with ProducerChain.start({ previous: lastCheckpoint })',
        });
      }
      const state: ChainState = { producer: f.producer, epoch: f.epoch, sequence: f.lastSequence, lastHash: f.lastHash };
      pc = new ProducerChain(state, f.toTimeUs, opts.last.hash, opts.last);
    } else {
      pc = ProducerChain.start(opts.epochStart);
    }
    for (const ev of opts.tail ?? []) {
      const expected = pc.nextMetadata();
      if (ev.sequence !== expected.sequence || !hashEquals(ev.prevHash, expected.prevHash)) {
        throw new IntegrityError(
          'integrity_resume_mismatch',
          `event ${ev.sequence} does not continue ${pc.chain.producer}/${pc.chain.epoch} at ${expected.sequence}`,
          { fix: 'start a new epoch linked to the last checkpoint' },
        );
      }
      pc.append(ev.bytes);
    }
    return pc;
  }

  get state(): ChainState {
    return this.chain;
  }

  /** Events appended since the last checkpoint was cut. */
  get pending(): number {
    return this.acc.size;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  nextMetadata(): ChainMetadata {
    return nextMetadata(this.chain);
  }

  /** Records the encoded event, which must carry `nextMetadata()`. */
  append(encodedBytes: Uint8Array): { sequence: number; hash: Uint8Array } {
    if (this.closed) {
      throw new IntegrityError('integrity_epoch_closed', `epoch ${this.chain.epoch} is closed`);
    }
    const { state, hash } = advance(this.chain, encodedBytes);
    this.chain = state;
    this.acc.push(hash);
    return { sequence: state.sequence, hash };
  }

  /**
   * `append` for an event whose hash (`eventHash(encodedBytes)`) the caller has already taken, e.g.
   * to write it as the next event's prevHash before either is appended: the bytes are not hashed
   * again. The same contract: the event carries `nextMetadata()`.
   */
  appendHash(hash: Uint8Array): void {
    if (this.closed) {
      throw new IntegrityError('integrity_epoch_closed', `epoch ${this.chain.epoch} is closed`);
    }
    const s = this.chain;
    this.chain = { producer: s.producer, epoch: s.epoch, sequence: s.sequence + 1, lastHash: hash };
    this.acc.push(hash);
  }

  /**
   * Cuts a checkpoint over everything appended since the last one (possibly nothing) and signs it.
   * The range, root and end time are taken synchronously, so events appended while the signature
   * is computed belong to the next checkpoint. Pass the key and time from the same tick
   * (`keyring.signingKey()`, `clock.nowUs()`). `closed: true` ends the epoch (graceful shutdown).
   */
  checkpoint(key: SigningKey, nowUs: number, opts: { closed?: boolean } = {}): Promise<SignedCheckpoint> {
    if (this.closed) {
      return Promise.reject(new IntegrityError('integrity_epoch_closed', `epoch ${this.chain.epoch} is closed`));
    }
    const toTimeUs = Math.max(nowUs, this.windowStartUs);
    const body = {
      producer: this.chain.producer,
      epoch: this.chain.epoch,
      firstSequence: this.rangeFirst,
      lastSequence: this.chain.sequence,
      fromTimeUs: this.windowStartUs,
      toTimeUs,
      lastHash: this.chain.lastHash,
      merkleRoot: this.acc.root(),
      closed: opts.closed === true,
    };
    this.acc.reset();
    this.rangeFirst = this.chain.sequence + 1;
    this.windowStartUs = toTimeUs;
    if (opts.closed === true) this.closed = true;
    const before = this.lastSigning;
    const signing = before.then((prev) =>
      signCheckpoint({ ...body, prevCheckpointHash: prev?.hash ?? this.prevCheckpointHash }, key),
    );
    // A failed signature must not wedge later checkpoints: they chain to the last one that exists
    // (the failed range then shows as a missing checkpoint, which is the truth).
    this.lastSigning = signing.catch(() => before);
    return signing;
  }
}
