// The risk policy schema lives in common (services/common/src/config/risk-policy.ts) so the one
// config schema can mount it under `risk`; the rules keep importing it from here.
export * from '../../../common/src/config/risk-policy';
