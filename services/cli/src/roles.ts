import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { ApprovalService } from '../../common/src/approvals/service';
import type { LoadedConfig } from '../../common/src/config';
import { ControlPublisher, ControlState, ControlSubscriber } from '../../common/src/control';
import { openEvidence, type EvidenceRuntime, type OpenEvidenceOptions } from '../../common/src/evidence/producer';
import { systemActor } from '../../common/src/evidence/emitter';
import type { TokenVerifier } from '../../common/src/identity';
import { readSecret } from '../../common/src/secrets';
import type { AttestEvent } from '../../common/src/events';
import { toStoredEvent } from '../../common/src/store';
import { approvalsBackend, type RiskSignalsOf } from '../../console/src/approvals-backend';
import { buildConsole } from '../../console/src/app';
import { ApprovalsProcessor } from '../../processors/src/approvals/processor';
import { WebhookNotifier } from '../../processors/src/approvals/notifier';
import { EvidenceWriter, evidenceWriterProducerId } from '../../processors/src/evidence-writer';
import { RiskProcessor } from '../../processors/src/risk-processor';
import { DlpProcessor, isContentEvent } from '../../processors/src/dlp-processor';
import { startApprovalService } from '../../processors/src/approvals/snapshots';
import { FileSnapshotStore, type SnapshotOptions } from '../../processors/src/snapshot-store';
import { join } from 'node:path';
import type { Backbone } from './backbone';

/**
 * The roles Attest runs, each startable alone with the same config file (`attest gateway`,
 * `attest processors`, `attest console`) or together (`attest start`):
 *
 *   processors: evidence writer (log → store), approvals (expiry, notifications), risk
 *   console:    auditors' evidence API, identity admin API, reviewer console
 *   gateway:    services/gateway/src/main.ts
 *
 * Each component is its own evidence producer on the shared log.
 */

export interface RoleContext {
  loaded: LoadedConfig;
  logger: Logger;
  env: NodeJS.ProcessEnv;
  backbone: Backbone;
}

/** Closes registered resources in reverse order, logging (not throwing) failures. */
export class Closer {
  private readonly fns: Array<() => Promise<void>> = [];
  constructor(private readonly logger: Logger) {}
  add(fn: () => Promise<void>): void {
    this.fns.push(fn);
  }
  async close(): Promise<void> {
    for (const fn of this.fns.splice(0).reverse()) {
      try {
        await fn();
      } catch (err) {
        this.logger.error({ code: (err as { code?: string }).code }, 'error while stopping');
      }
    }
  }
}

export function producerOptions(ctx: RoleContext, component: string, producerId: string): OpenEvidenceOptions {
  const { config } = ctx.loaded;
  return {
    dataDir: config.dataDir,
    component,
    producerId,
    tenantId: config.evidence.tenantId,
    logger: ctx.logger,
    configText: ctx.loaded.text,
    configFile: ctx.loaded.file,
    softwareVersion: '0.1.0',
    cadence: { everyEvents: config.evidence.checkpointEveryEvents, everyMs: config.evidence.checkpointEveryMs },
    log: ctx.backbone.log,
  };
}

async function openProducer(ctx: RoleContext, closer: Closer, component: string, producerId: string): Promise<EvidenceRuntime> {
  const rt = await openEvidence(producerOptions(ctx, component, producerId));
  closer.add(() => rt.close('shutdown'));
  return rt;
}

export interface RunningProcessors {
  writer: EvidenceWriter;
  dlp: DlpProcessor;
  approvals: ApprovalService;
  risk: RiskProcessor;
  close(): Promise<void>;
}

/**
 * Where the processors keep state snapshots (dataDir/snapshots), and which log they are of: the
 * embedded log's directory, or the Kafka brokers and events topic. Undefined when disabled.
 */
export function processorSnapshots(config: LoadedConfig['config']): SnapshotOptions | undefined {
  const s = config.processors.snapshots;
  if (!s.enabled) return undefined;
  const logId =
    config.log.kind === 'kafka' ? `kafka:${[...config.log.kafka!.brokers].sort().join(',')}/${config.log.kafka!.topics.events}` : `file:${join(config.dataDir, 'log')}`;
  return { store: new FileSnapshotStore(join(config.dataDir, 'snapshots')), logId, everyRecords: s.everyRecords, everyMs: s.everyMs };
}

/** Evidence writer, approvals processor and risk processor. */
export async function startProcessors(ctx: RoleContext): Promise<RunningProcessors> {
  const { config } = ctx.loaded;
  const { logger, backbone } = ctx;
  const closer = new Closer(logger);
  const snapshots = processorSnapshots(config);
  try {
    const store = await backbone.store();
    const writerRt = await openProducer(ctx, closer, 'evidence-writer', evidenceWriterProducerId());
    const migration = await store.migrate();
    if (migration.retention.configChange) {
      const c = migration.retention.configChange;
      await writerRt.emitter.emit(
        [
          writerRt.emitter.build('config.changed', {
            actor: systemActor(evidenceWriterProducerId()),
            source: { address: 'local', userAgent: null },
            target: { protocol: 'clickhouse', service: 'evidence-store', resource: 'retention', model: null },
            outcome: { result: 'success', status: null, reason: null },
            correlation: { sessionId: 'producer:evidence-writer', requestId: `retention:${Date.now()}`, upstreamRequestId: null },
            payload: { ...c, oldDigest: null, newDigest: null },
          }),
        ],
        'producer:evidence-writer',
      );
    }
    // Content events (request and response bodies, SQL) reach the store only through the DLP
    // content stage below, redacted where the DLP engine redacts (PCI DSS 3.3.1, invariant 5).
    const writer = new EvidenceWriter({ log: backbone.log, store, emitter: writerRt.emitter, logger, jwks: () => writerRt.keyring.jwks(), leftToContentStage: isContentEvent });
    await writer.start();
    closer.add(() => writer.stop());

    // Approvals: a book folded from the evidence log; expiries and notifications.
    const approvalsProducer = `approvals-${hostname()}`;
    const approvalsRt = await openProducer(ctx, closer, 'approvals', approvalsProducer);
    const notify = config.approvals.notify;
    const notifier = notify.webhook
      ? new WebhookNotifier({
          url: readSecret(notify.webhook, 'approvals.notify.webhook', ctx.env),
          logger,
          // Notifications link to the reviewer pages: `${consoleUrl}/approvals/<id>`.
          consoleUrl: `${(notify.consoleUrl ?? config.console.reviewer?.publicUrl ?? `http://${config.console.host}:${config.console.port}`).replace(/\/$/, '')}/reviewer`,
        })
      : undefined;
    const startApprovals = async (): Promise<ApprovalService> => {
      const started = await startApprovalService(
        {
          log: backbone.log,
          group: `approvals-${randomUUID()}`,
          emitter: approvalsRt.emitter,
          publisher: new ControlPublisher(backbone.controlLog, approvalsRt.keyring),
          producerId: approvalsProducer,
          logger,
        },
        snapshots,
        logger,
      );
      const approvals = started.service;
      // Closed in reverse: the service stops first, then its book is saved.
      closer.add(() => started.saveNow());
      closer.add(() => approvals.stop());
      const approvalsProcessor = await ApprovalsProcessor.start({ service: approvals, logger, ...(notifier ? { notifier } : {}) });
      closer.add(() => approvalsProcessor.stop());
      return approvals;
    };

    // Risk: signals and findings per identity; suspensions go to every gateway on the control log.
    const riskRt = await openProducer(ctx, closer, 'risk', `risk-${hostname()}`);
    const risk = new RiskProcessor({ log: backbone.log, emitter: riskRt.emitter, publisher: new ControlPublisher(backbone.controlLog, riskRt.keyring), policy: config.risk, logger, ...(snapshots ? { snapshots } : {}) });

    // DLP beyond PAN: derived data.masked (provenance), data security findings, and the content
    // stage of the store (the redacted copy where it redacted, attested by its data.masked).
    const dlpRt = await openProducer(ctx, closer, 'dlp', `dlp-${hostname()}`);
    const dlp = new DlpProcessor({
      log: backbone.log,
      emitter: dlpRt.emitter,
      policy: config.dlp,
      panKey: dlpRt.panKey,
      logger,
      ...(snapshots ? { snapshots } : {}),
      storeContent: async (rows, token) => {
        await store.insertEvents(rows.map((r) => toStoredEvent(r.event as unknown as AttestEvent, r.bytes, r.hash, r.redactedBy)), token);
      },
    });

    // The approval book, the risk book and the DLP book are each rebuilt from the log on a consumer
    // of their own: read at the same time, a restart takes the longest of them, not their sum.
    // Settled together, so a failure of one closes all that started.
    const [approvalsStarted, riskStarted, dlpStarted] = await Promise.allSettled([
      startApprovals(),
      risk.start().then(() => closer.add(() => risk.stop())),
      dlp.start().then(() => closer.add(() => dlp.stop())),
    ]);
    for (const s of [approvalsStarted, riskStarted, dlpStarted]) if (s.status === 'rejected') throw s.reason;
    const approvals = (approvalsStarted as PromiseFulfilledResult<ApprovalService>).value;
    return { writer, dlp, approvals, risk, close: () => closer.close() };
  } catch (err) {
    await closer.close();
    throw err;
  }
}

/** Health and metrics of `attest processors` run alone (the gateway and console serve their own). */
export async function startProcessorsOps(ctx: RoleContext, p: RunningProcessors): Promise<{ url: string; app: FastifyInstance }> {
  const { processors } = ctx.loaded.config;
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  new Gauge({ name: 'attest_risk_identities', help: 'Identities the risk processor tracks.', registers: [registry], collect() { this.set(p.risk.stats.identities); } });
  new Gauge({ name: 'attest_risk_suspensions', help: 'Suspensions decided by this risk processor since start.', registers: [registry], collect() { this.set(p.risk.stats.suspensions); } });
  new Gauge({ name: 'attest_approvals_pending', help: 'Approvals waiting for a decision.', registers: [registry], collect() { this.set(p.approvals.pending().length); } });
  const app = Fastify({ logger: false });
  let closing = false;
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => (closing ? reply.code(503).send({ status: 'shutting_down' }) : { status: 'ready' }));
  app.get('/metrics', async (_req, reply) => reply.header('content-type', registry.contentType).send(await registry.metrics()));
  app.addHook('preClose', async () => {
    closing = true;
  });
  await app.listen({ host: processors.host, port: processors.port });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : processors.port;
  return { url: `http://${processors.host.includes(':') ? `[${processors.host}]` : processors.host}:${port}`, app };
}

export interface RunningConsole {
  url: string;
  close(): Promise<void>;
}

/**
 * The console: evidence API, identity admin API and, when configured, the reviewer console. Its
 * reviewer decisions go through `approvals` when given (the platform shares the processors' book),
 * else through a book of its own folded from the same log.
 */
export async function startConsoleRole(ctx: RoleContext, verifier: TokenVerifier, shared?: { approvals: ApprovalService; risk?: RiskProcessor }): Promise<RunningConsole> {
  const { config } = ctx.loaded;
  const { logger, backbone, env } = ctx;
  const closer = new Closer(logger);
  try {
    const store = await backbone.store();
    const producerId = `console-${hostname()}`;
    const consoleRt = await openProducer(ctx, closer, 'console', producerId);
    const control = new ControlState();
    const subscriber = new ControlSubscriber({ log: backbone.controlLog, group: `console-${randomUUID()}`, trust: backbone.trust, onMessage: (m) => control.apply(m), logger });
    await subscriber.start();
    closer.add(() => subscriber.stop());
    let approvals = shared?.approvals;
    if (!approvals && config.console.reviewer) {
      approvals = await ApprovalService.start({
        log: backbone.log,
        group: `console-approvals-${randomUUID()}`,
        emitter: consoleRt.emitter,
        publisher: new ControlPublisher(backbone.controlLog, consoleRt.keyring),
        producerId,
        logger,
      });
      closer.add(() => approvals!.stop());
    }
    const app = await buildConsole({
      store,
      verifier,
      auditorGroups: config.console.auditorGroups,
      emitter: consoleRt.emitter,
      jwks: () => consoleRt.keyring.jwks(),
      panKey: consoleRt.panKey,
      logger,
      cadence: { everyEvents: config.evidence.checkpointEveryEvents, everyMs: config.evidence.checkpointEveryMs },
      maxRows: config.console.maxRows,
      identityAdmin: { adminGroups: config.console.adminGroups, publisher: new ControlPublisher(backbone.controlLog, consoleRt.keyring), control },
      ...(config.console.reviewer && approvals ? { reviewer: reviewerDeps(config.console.reviewer, approvals, env, shared?.risk ? riskSignals(shared.risk, config.evidence.tenantId) : undefined) } : {}),
    });
    closer.add(() => app.close());
    await app.listen({ host: config.console.host, port: config.console.port });
    const addr = app.server.address();
    const port = typeof addr === 'object' && addr ? addr.port : config.console.port;
    return { url: `http://${config.console.host.includes(':') ? `[${config.console.host}]` : config.console.host}:${port}`, close: () => closer.close() };
  } catch (err) {
    await closer.close();
    throw err;
  }
}

type ReviewerConfig = NonNullable<LoadedConfig['config']['console']['reviewer']>;

/** The requester's open risk findings, from the risk processor running in this process. */
function riskSignals(risk: RiskProcessor, tenantId: string): RiskSignalsOf {
  return (requester) => (risk.book.get(tenantId, requester)?.findings ?? []).map((f) => `${f.signalId} (${f.severity})`);
}

function reviewerDeps(r: ReviewerConfig, approvals: ApprovalService, env: NodeJS.ProcessEnv, risk?: RiskSignalsOf) {
  const publicUrl = r.publicUrl.replace(/\/$/, '');
  return {
    backend: approvalsBackend(approvals, risk),
    oidc: {
      issuer: r.issuer,
      clientId: r.clientId,
      ...(r.clientSecret ? { clientSecret: readSecret(r.clientSecret, 'console.reviewer.clientSecret', env) } : {}),
      redirectUri: `${publicUrl}/reviewer/callback`,
      scopes: r.scopes,
      groupsClaim: r.groupsClaim,
    },
    reviewerGroups: r.reviewerGroups,
    sessionKey: readSecret(r.sessionKey, 'console.reviewer.sessionKey', env),
    publicUrl,
    sessionTtlSec: r.sessionTtlSec,
  };
}

/**
 * Records each Kafka outage that was bridged by the local spool (log.kafka.onUnavailable: spool) as
 * audit.stopped (paused), from a small producer of its own: the window, and how many records were
 * delivered late. Returns the closer of that producer.
 */
export function recordSpoolOutages(ctx: RoleContext, role: string): () => Promise<void> {
  let rt: Promise<EvidenceRuntime> | undefined;
  const producerId = `spool-${role}-${hostname()}`;
  ctx.backbone.onSpoolDrained = (w) => {
    rt ??= openEvidence({ ...producerOptions(ctx, 'spool', producerId) });
    void rt
      .then(async ({ emitter }) => {
        const iso = (us: number) => new Date(us / 1000).toISOString();
        const e = emitter.build('audit.stopped', {
          actor: systemActor(producerId),
          source: { address: 'local', userAgent: null },
          target: { protocol: 'kafka', service: 'attest', resource: `role/${role}`, model: null },
          outcome: { result: 'failure', status: null, reason: 'event_log_unavailable' },
          correlation: { sessionId: `producer:${producerId}`, requestId: `spooled:${w.fromUs}`, upstreamRequestId: null },
          payload: {
            component: role,
            reason: 'paused',
            detail: `Kafka was unreachable from ${iso(w.fromUs)} to ${iso(w.toUs)}; ${w.records} evidence records were spooled to local disk and delivered late, in order`,
            resumeExpected: true,
          },
        });
        await emitter.emit([e], e.correlation.sessionId);
      })
      .catch((err: unknown) => ctx.logger.error({ code: (err as { code?: string }).code }, 'the spooled outage could not be recorded'));
  };
  return async () => {
    if (rt) await (await rt).close('shutdown');
  };
}
