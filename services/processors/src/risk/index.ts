// The risk rules: signals, per-identity state (evolve), decisions (decide), and the bounded book
// the processor shell drives. Pure: no clock, no I/O. See decide.ts and book.ts for the loop.
export {
  DEFAULT_RISK_POLICY,
  SIGNAL_IDS,
  SIGNAL_POLICY_KEY,
  TEXT_SOURCES,
  isSignalId,
  riskPolicySchema,
  signalSettings,
  type RiskPolicy,
  type RiskPolicyInput,
  type RiskSeverity,
  type SignalId,
  type SignalSettings,
  type TextSourceKind,
} from './policy';
export { RISK_ERROR_CODES, RiskError, isRiskError, type RiskErrorCode } from './errors';
export { normalizeText, textsOfEvent, textsOfRequestBody, textsOfResponseBody, type TextSource } from './content';
export { SIGNALS, evaluate, type EvaluatedSignal, type Signal, type SignalFn, type SignalInput } from './signals';
export {
  TRAFFIC_TYPES,
  evolve,
  findingLocation,
  identityKey,
  initialIdentityState,
  isDenial,
  isRequest,
  liveSessions,
  principalOfLocation,
  scoreOf,
  trafficPrincipal,
  type IdentityState,
  type OpenFinding,
  type RiskEvent,
  type ScoredHit,
  type SessionState,
  type SignalMark,
  type Suspension,
} from './state';
export {
  RISK_ACTOR,
  RISK_OUTPUT_TYPES,
  decide,
  explainScore,
  findingIdOf,
  identityTarget,
  severityOf,
  toEvent,
  type DecideOptions,
  type RiskInput,
  type RiskOutput,
  type RiskOutputType,
} from './decide';
export { RiskBook, type BuildEvent } from './book';
export { controlMessageOf } from './control';
