import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { AttestConfig, LoadedConfig } from '../../common/src/config';
import { createTokenVerifier, DevIssuer, type IssuerOptions, type TokenVerifier } from '../../common/src/identity';
import type { EventLog } from '../../common/src/log';
import { readSecret } from '../../common/src/secrets';
import { openEvidence } from '../../common/src/evidence/producer';
import { buildGateway, EXCHANGE_SETTLE_MS, InFlightExchanges } from './app';
import { GatewayRecorder } from './evidence';
import { createHash, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { ControlState, ControlSubscriber, trustKeyDirectory, type TrustSource } from '../../common/src/control';
import { FileEventLog } from '../../common/src/log';
import { SpoolingEventLog } from '../../common/src/log/spooling-log';
import { createGatewayMetrics, registerSpoolMetrics } from './metrics';

const SOFTWARE_VERSION = '0.1.0';

export interface RunningGateway {
  app: FastifyInstance;
  url: string;
  /** What the gateway knows from the control channel (suspensions, approval outcomes). */
  control: ControlState;
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
  opts: { log?: EventLog; verifier?: TokenVerifier; control?: { log: EventLog; trust: TrustSource } } = {},
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
  // The control channel is read to its end before the port opens: a gateway that has not yet
  // learnt every suspension in force must not take traffic.
  const controlLog = opts.control?.log ?? (await FileEventLog.open({ dir: join(config.dataDir, 'control') }));
  const control = new ControlState();
  const subscriber = new ControlSubscriber({
    log: controlLog,
    group: `gateway-${randomUUID()}`,
    trust: opts.control?.trust ?? trustKeyDirectory(join(config.dataDir, 'keys', 'signing')),
    onMessage: (m) => control.apply(m),
    logger,
  });
  try {
    await subscriber.start();
  } catch (err) {
    if (!opts.control) await controlLog.close();
    await evidence.close('failure');
    throw err;
  }
  const policyVersion = createHash('sha256').update(loaded.text).digest('hex').slice(0, 12);
  const recorder = new GatewayRecorder(evidence.emitter, evidence.panKey, { id: loaded.file, version: policyVersion }, new URL(config.upstream.anthropic.baseUrl).host);
  const exchanges = new InFlightExchanges();
  const metrics = createGatewayMetrics({ defaultMetrics: true });
  if (opts.log instanceof SpoolingEventLog) registerSpoolMetrics(metrics.registry, opts.log);
  const app = await buildGateway({
    exchanges,
    config,
    verifier,
    upstreamApiKey,
    logger,
    recorder,
    jwks: () => evidence.keyring.jwks(),
    control,
    holder: () => ({ gatewayId: evidence.emitter.producer.id, instanceId: evidence.emitter.producer.epoch }),
    // A derived key, not the PAN key itself: approval digests of bodies that may hold raw PANs.
    digestKey: Buffer.from(evidence.panKey.hash('attest.approval.request-digest.v1'), 'base64url'),
    metrics,
  });
  // The evidence closes after the last in-flight exchange has been recorded, including exchanges
  // whose connection the shutdown grace cut (onClose hooks run last-registered first, so this one
  // runs before the gateway's own and waits here).
  app.addHook('onClose', async () => {
    if (!(await exchanges.settled(EXCHANGE_SETTLE_MS))) {
      logger.error({ running: exchanges.size }, `exchanges still running ${EXCHANGE_SETTLE_MS} ms after the server closed: closing the evidence without their completion`);
    }
    await subscriber.stop();
    if (!opts.control) await controlLog.close();
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
    control,
    close: async () => {
      await app.close();
    },
  };
}
