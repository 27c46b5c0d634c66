/**
 * Tamper evidence for Attest's event log: per-producer hash chains, RFC 9162 Merkle trees, signed
 * checkpoints on a cadence, and offline verification that names every altered, deleted, inserted or
 * reordered event and every silent gap. Design: docs/integrity.md.
 */
export { HASH_BYTES, ZERO_HASH, sha256, hashEquals, toBase64Url, toHex, hashFromBase64Url } from './hash';
export { IntegrityError } from './errors';
export type { IntegrityErrorCode } from './errors';
export { FileKeyStore, InMemoryKeyStore, Keyring, SIGNING_ALGORITHM, systemClock } from './keyring';
export type { AttestJwk, Clock, KeyRotation, KeyStore, SigningKey, StoredKey } from './keyring';
export { advance, eventHash, genesis, nextMetadata } from './chain';
export type { ChainMetadata, ChainState } from './chain';
export {
  EMPTY_ROOT,
  MerkleAccumulator,
  inclusionPath,
  leafHash,
  merkleRoot,
  nodeHash,
  rootFromInclusionPath,
  verifyInclusionPath,
} from './merkle';
export {
  CHECKPOINT_TYPE,
  CHECKPOINT_VERSION,
  JwksKeys,
  checkpointFieldsProblem,
  checkpointFromParts,
  checkpointHashOf,
  decodeCheckpointPayload,
  encodeCheckpointPayload,
  parseCheckpoint,
  signCheckpoint,
  verifyCheckpoint,
} from './checkpoint';
export type { CheckpointFields, CheckpointVerdict, SignedCheckpoint, UnsignedCheckpoint } from './checkpoint';
export { ProducerChain } from './producer';
export type { TailEvent } from './producer';
export { CheckpointScheduler, DEFAULT_CADENCE, checkpointDue, maxGapUsFor, realTimer } from './scheduler';
export type { Cadence, CadenceState, DueReason, Timer } from './scheduler';
export { buildInclusionProof, verifyEventInclusion, verifyProducerLog } from './verify';
export type {
  Finding,
  FindingCode,
  InclusionProof,
  InclusionVerdict,
  PendingRange,
  VerifyEvent,
  VerifyInput,
  VerifyOptions,
  VerifyReport,
} from './verify';
export { VerifyPool } from './verify-pool';
