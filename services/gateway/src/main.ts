import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { AttestConfig, LoadedConfig } from '../../common/src/config';
import { createTokenVerifier, DevIssuer, type IssuerOptions, type TokenVerifier } from '../../common/src/identity';
import type { EventLog } from '../../common/src/log';
import { readSecret } from '../../common/src/secrets';
import { openEvidence } from '../../common/src/evidence/producer';
import { buildGateway } from './app';
import { GatewayRecorder } from './evidence';
import { createHash } from 'node:crypto';
import { createGatewayMetrics } from './metrics';

const SOFTWARE_VERSION = '0.1.0';

export interface RunningGateway {
  app: FastifyInstance;
  url: string;
  close(): Promise<void>;
}

/**
 * Starts the gateway from a loaded config: reads the upstream credential, sets up token issuers
 * (the development issuer only when the config enables it), binds the port.
 */
/** The token verifier a config asks for (the development issuer only when enabled). */
export async function createVerifierFromConfig(config: AttestConfig, logger: Logger): Promise<TokenVerifier> {
  const issuers: IssuerOptions[] = config.identity.issuers.map((i) => ({
    issuer: i.issuer,
    audiences: i.audiences,
    groupsClaim: i.groupsClaim,
    ...(i.discoveryUrl ? { discoveryUrl: i.discoveryUrl } : {}),
    ...(i.jwksUri ? { jwksUri: i.jwksUri } : {}),
    ...(i.algorithms ? { algorithms: i.algorithms } : {}),
  }));
  if (config.identity.devIssuer.enabled) {
    const dev = await DevIssuer.loadOrCreate(config.dataDir);
    issuers.push(dev.issuerOptions([config.identity.devIssuer.audience]));
    logger.warn({ issuer: dev.issuer }, 'DEVELOPMENT issuer enabled: tokens from `attest dev-token` are accepted. Disable identity.devIssuer in production.');
  }
  const verifier = createTokenVerifier({
    issuers,
    clockToleranceSec: config.identity.clockToleranceSec,
    maxTokenBytes: config.limits.maxTokenBytes,
    jwksCooldownMs: config.identity.jwksCooldownMs,
    logger,
  });
  // Fetch issuer keys before taking traffic; an issuer that is down is retried on demand later.
  for (const status of await verifier.warm()) {
    if (!status.ok) logger.warn({ issuer: status.issuer, error: status.error }, 'token issuer not reachable at startup; will retry');
  }
  return verifier;
}

/**
 * Starts the gateway from a loaded config: reads the upstream credential, sets up token issuers,
 * opens its evidence producer (on `opts.log` when the platform shares one), binds the port.
 */
export async function startGateway(
  loaded: LoadedConfig,
  logger: Logger,
  env: NodeJS.ProcessEnv = process.env,
  opts: { log?: EventLog; verifier?: TokenVerifier } = {},
): Promise<RunningGateway> {
  const { config } = loaded;
  const upstreamApiKey = readSecret(config.upstream.anthropic.apiKey, 'upstream.anthropic.apiKey', env);
  const verifier = opts.verifier ?? (await createVerifierFromConfig(config, logger));
  const evidence = await openEvidence({
    dataDir: config.dataDir,
    component: 'gateway',
    tenantId: config.evidence.tenantId,
    ...(config.evidence.producerId ? { producerId: config.evidence.producerId } : {}),
    logger,
    configText: loaded.text,
    configFile: loaded.file,
    softwareVersion: SOFTWARE_VERSION,
    cadence: { everyEvents: config.evidence.checkpointEveryEvents, everyMs: config.evidence.checkpointEveryMs },
    ...(opts.log ? { log: opts.log } : {}),
  });
  const policyVersion = createHash('sha256').update(loaded.text).digest('hex').slice(0, 12);
  const recorder = new GatewayRecorder(evidence.emitter, evidence.panKey, { id: loaded.file, version: policyVersion }, new URL(config.upstream.anthropic.baseUrl).host);
  const app = await buildGateway({
    config,
    verifier,
    upstreamApiKey,
    logger,
    recorder,
    jwks: () => evidence.keyring.jwks(),
    metrics: createGatewayMetrics({ defaultMetrics: true }),
  });
  // The evidence closes after the last in-flight exchange has been recorded.
  app.addHook('onClose', async () => {
    await evidence.close('shutdown');
  });
  try {
    await app.listen({ host: config.server.host, port: config.server.port });
  } catch (err) {
    await app.close();
    throw err;
  }
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.server.port;
  const host = config.server.host.includes(':') ? `[${config.server.host}]` : config.server.host;
  return {
    app,
    url: `http://${host}:${port}`,
    close: async () => {
      await app.close();
    },
  };
}
