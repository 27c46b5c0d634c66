export { configSchema, MASKING_ACTIONS, ROUTES, ALLOWED_JWT_ALGS } from './schema';
export type { AttestConfig, GroupConfig, IssuerConfig, MaskingAction, RouteName } from './schema';
export { loadConfigFile, parseConfigText, formatProblems, ConfigError } from './load';
export type { ConfigProblem, LoadedConfig } from './load';
