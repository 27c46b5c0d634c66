/**
 * Approvals: which requests a human must approve (rules), the digest that binds an approval to one
 * request, the approval lifecycle as pure decide/evolve functions, the in-memory book, and the
 * mapping to the evidence log's approval events.
 */
export {
  APPROVAL_DETECTORS,
  APPROVAL_MODES,
  APPROVAL_ROUTES,
  MAX_EXPIRY_MS,
  MAX_HOLD_MS,
  MAX_KEYWORD_CHARS,
  MAX_PATTERN_CHARS,
  approvalPolicySchema,
  globMatches,
  matchApprovalRules,
  type ApprovalDetector,
  type ApprovalMatch,
  type ApprovalMatchRequest,
  type ApprovalMode,
  type ApprovalPolicy,
  type ApprovalPolicyInput,
  type ApprovalRule,
} from './rules';
export { detectBulkExtraction } from './bulk-extraction';
export { parseDurationMs } from './duration';
export { MAX_CANONICAL_DEPTH, canonicalJson, isRequestDigest, requestDigest, type DigestableRequest } from './request-digest';
export { APPROVAL_ERROR_CODES, ApprovalError, type ApprovalErrorCode } from './errors';
export {
  CANCEL_REASONS,
  MAX_EXCERPT_CHARS,
  MAX_REASON_CHARS,
  approvalPrincipal,
  decide,
  dueAtMs,
  eligibility,
  evolve,
  isOpen,
  isSelfApproval,
  replay,
  samePrincipal,
  type ApprovalCommand,
  type ApprovalContext,
  type ApprovalEvent,
  type ApprovalPrincipal,
  type ApprovalState,
  type ApprovalStatus,
  type CancelReason,
  type DecideResult,
  type HoldRef,
  type RuleSnapshot,
  type Vote,
} from './lifecycle';
export { ApprovalBook, type ApprovalBookOptions, type ExecuteResult, type PersistEvents } from './book';
export {
  APPROVAL_EVIDENCE_TYPES,
  UNRELEASABLE_DIGEST,
  UNRELEASABLE_HOLD,
  actorOf,
  fromEvidence,
  principalOf,
  toEvidence,
  type ApprovalEvidence,
  type ApprovalEvidenceType,
} from './evidence';
export { APPROVAL_ID_HEADER, approvalAnswer, type ApprovalAnswer, type ApprovalAnswerCode } from './answers';
export { ApprovalService, type ApprovalServiceOptions, type ApprovalListener, type ExecuteOptions } from './service';
