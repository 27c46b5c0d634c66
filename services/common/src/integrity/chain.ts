/**
 * The per-producer hash chain, as pure functions.
 *
 * Before encoding an event, its producer writes `nextMetadata(state)` (sequence, prevHash) into the
 * event's metadata; after encoding, `advance(state, bytes)` moves the chain on. Sequences start at
 * 1 in every epoch; sequence 0 is never a chain position (checkpoint events, which are outside the
 * chain, use it). The chain's starting link (the prevHash of sequence 1) is the hash of the
 * producer's last signed checkpoint, or 32 zero bytes for a producer that has never checkpointed,
 * so a new epoch is anchored to what was last attested (docs/integrity.md, "Epochs").
 */
import { HASH_BYTES, ZERO_HASH, sha256 } from './hash';

export interface ChainState {
  readonly producer: string;
  /** Id of this run of the producer (e.g. a UUIDv7 taken at start). */
  readonly epoch: string;
  /** Sequence of the last event appended in this epoch; 0 before the first. */
  readonly sequence: number;
  /** Hash of the last event appended, or the epoch's starting link before the first. */
  readonly lastHash: Uint8Array;
}

export interface ChainMetadata {
  readonly sequence: number;
  readonly prevHash: Uint8Array;
}

/** State at the start of an epoch. `link` is the previous checkpoint's hash (default: zero hash). */
export function genesis(producer: string, epoch: string, link: Uint8Array = ZERO_HASH): ChainState {
  if (link.length !== HASH_BYTES) throw new RangeError('chain link must be a 32-byte SHA-256');
  return { producer, epoch, sequence: 0, lastHash: link.slice() };
}

/** What to write into the next event's metadata. */
export function nextMetadata(state: ChainState): ChainMetadata {
  return { sequence: state.sequence + 1, prevHash: state.lastHash };
}

/** SHA-256 of an encoded event: its identity in the chain and in checkpoints. */
export function eventHash(encodedBytes: Uint8Array): Uint8Array {
  return sha256(encodedBytes);
}

/**
 * The state after appending `encodedBytes`, which must be the event encoded with
 * `nextMetadata(state)` in it (the bytes are opaque here, so that is the caller's contract).
 */
export function advance(state: ChainState, encodedBytes: Uint8Array): { state: ChainState; hash: Uint8Array } {
  const hash = sha256(encodedBytes);
  // Explicit fields, not a spread: one state per event, and a spread of a fresh object is V8's slow path.
  return { state: { producer: state.producer, epoch: state.epoch, sequence: state.sequence + 1, lastHash: hash }, hash };
}
