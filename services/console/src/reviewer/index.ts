export type { DecideResult, DecisionView, PendingApprovalView, ReviewerBackend, ReviewerDecision, ReviewerIdentity } from './backend';
export type { ReviewerDeps, ReviewerLogger, ReviewerOidcOptions } from './context';
export { DECISION_ERROR_STATUS, REVIEWER_ERROR_CODES, ReviewerConfigError, ReviewerError, type ReviewerErrorCode } from './errors';
export { registerReviewer, type RegisterReviewerOptions } from './register';
export type { RelyingParty, SignedInUser } from './oidc-login';
