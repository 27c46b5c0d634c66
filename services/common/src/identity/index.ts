export type {
  AuthFailureReason,
  IdentityLogger,
  IssuerOptions,
  IssuerStatus,
  Principal,
  PrincipalKind,
  TokenVerifier,
  TokenVerifierOptions,
} from './types';
export { AUTH_FAILURE_REASONS } from './types';
export { AuthError, isAuthError } from './errors';
export {
  createTokenVerifier,
  defaultDiscoveryUrl,
  DEFAULT_ALGORITHMS,
  extractBearerToken,
  type IdentityConfigErrorCode,
} from './verifier';
export { groupsFrom, kindFrom, readClaim } from './principal';
export {
  DEV_ISSUER_DEFAULT,
  DEV_ISSUER_KEY_FILE,
  DevIssuer,
  type DevIssuerAlg,
  type DevIssuerErrorCode,
  type DevIssuerLoadOptions,
  type DevMintOptions,
} from './dev-issuer';
