import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { LoadedConfig } from '../../common/src/config';
import { openEvidence, type EvidenceRuntime } from '../../common/src/evidence/producer';
import { FileEventLog } from '../../common/src/log';
import { ControlPublisher, ControlState, ControlSubscriber, trustKeyDirectory } from '../../common/src/control';
import { randomUUID } from 'node:crypto';
import { ApprovalService } from '../../common/src/approvals/service';
import { readSecret } from '../../common/src/secrets';
import { approvalsBackend } from '../../console/src/approvals-backend';
import { ApprovalsProcessor } from '../../processors/src/approvals/processor';
import { WebhookNotifier } from '../../processors/src/approvals/notifier';
import { RiskProcessor } from '../../processors/src/risk-processor';
import { ChdbEvidenceStore } from '../../common/src/store';
import { buildConsole } from '../../console/src/app';
import { createVerifierFromConfig, startGateway, type RunningGateway } from '../../gateway/src/main';
import { EvidenceWriter, evidenceWriterProducerId } from '../../processors/src/evidence-writer';

/**
 * The embedded platform in one process (`attest start`):
 *
 *   gateway ──▶ durable log (dataDir/log) ──▶ evidence writer ──▶ ClickHouse in-process (dataDir/store)
 *                                                                   ▲
 *   auditors ─────────────────────────────── console (evidence API) ┘
 *
 * One log and one store, shared; each component is its own evidence producer on the shared log.
 */

export interface RunningPlatform {
  gateway: RunningGateway;
  /** The evidence log every component appends to. */
  log: FileEventLog;
  /** The approval book (console decisions, expiry, notifications). */
  approvals: ApprovalService;
  /** The control channel: signed decisions every gateway enforces. */
  control: { log: FileEventLog; publisher: ControlPublisher };
  consoleUrl: string | undefined;
  writer: EvidenceWriter;
  close(): Promise<void>;
}

type ReviewerConfig = NonNullable<LoadedConfig['config']['console']['reviewer']>;

function reviewerDeps(r: ReviewerConfig, approvals: ApprovalService, env: NodeJS.ProcessEnv) {
  const publicUrl = r.publicUrl.replace(/\/$/, '');
  return {
    backend: approvalsBackend(approvals),
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

export async function startPlatform(loaded: LoadedConfig, logger: Logger, env: NodeJS.ProcessEnv): Promise<RunningPlatform> {
  const { config } = loaded;
  const cadence = { everyEvents: config.evidence.checkpointEveryEvents, everyMs: config.evidence.checkpointEveryMs };
  const log = await FileEventLog.open({ dir: join(config.dataDir, 'log') });
  const opened: Array<() => Promise<void>> = [async () => log.close()];
  // The control log sits beside the evidence log: in embedded mode it is the control "topic".
  const controlLog = await FileEventLog.open({ dir: join(config.dataDir, 'control') });
  opened.push(() => controlLog.close());
  const trust = trustKeyDirectory(join(config.dataDir, 'keys', 'signing'));
  const closeAll = async () => {
    for (const close of opened.reverse()) {
      try {
        await close();
      } catch (err) {
        logger.error({ code: (err as { code?: string }).code }, 'error while stopping');
      }
    }
  };
  try {
    const store = await ChdbEvidenceStore.open({
      dataDir: join(config.dataDir, 'store'),
      retention: { days: config.store.retentionDays, allowBelowMinimum: config.store.allowRetentionBelowMinimum },
    });
    opened.push(() => store.close());
    const producerOf = (component: string) => ({
      dataDir: config.dataDir,
      component,
      tenantId: config.evidence.tenantId,
      logger,
      configText: loaded.text,
      configFile: loaded.file,
      softwareVersion: '0.1.0',
      cadence,
      log,
    });

    const writerRt: EvidenceRuntime = await openEvidence({ ...producerOf('evidence-writer'), producerId: evidenceWriterProducerId() });
    opened.push(() => writerRt.close('shutdown'));
    const migration = await store.migrate();
    if (migration.retention.configChange) {
      const c = migration.retention.configChange;
      await writerRt.emitter.emit(
        [
          writerRt.emitter.build('config.changed', {
            actor: { subject: `system:${evidenceWriterProducerId()}`, issuer: 'attest', clientId: null, groups: [], kind: 'system', onBehalfOf: null, dev: false },
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
    const writer = new EvidenceWriter({ log, store, emitter: writerRt.emitter, logger, jwks: () => writerRt.keyring.jwks() });
    await writer.start();
    opened.push(() => writer.stop());

    const verifier = await createVerifierFromConfig(config, logger);
    const gateway = await startGateway(loaded, logger, env, { log, verifier, control: { log: controlLog, trust } });
    const publisher = new ControlPublisher(controlLog, writerRt.keyring);

    // Approvals: one book, folded from the evidence log, for the reviewer console's decisions and
    // the processor's expiries and notifications.
    const approvalsProducer = `approvals-${hostname()}`;
    const approvalsRt = await openEvidence({ ...producerOf('approvals'), producerId: approvalsProducer });
    opened.push(() => approvalsRt.close('shutdown'));
    const approvals = await ApprovalService.start({
      log,
      group: `approvals-${randomUUID()}`,
      emitter: approvalsRt.emitter,
      publisher: new ControlPublisher(controlLog, approvalsRt.keyring),
      producerId: approvalsProducer,
      logger,
    });
    opened.push(() => approvals.stop());
    const notify = config.approvals.notify;
    const notifier = notify.webhook
      ? new WebhookNotifier({
          url: readSecret(notify.webhook, 'approvals.notify.webhook', env),
          logger,
          // Notifications link to the reviewer pages: `${consoleUrl}/approvals/<id>`.
          consoleUrl: `${(notify.consoleUrl ?? config.console.reviewer?.publicUrl ?? `http://${config.console.host}:${config.console.port}`).replace(/\/$/, '')}/reviewer`,
        })
      : undefined;
    const approvalsProcessor = await ApprovalsProcessor.start({ service: approvals, logger, ...(notifier ? { notifier } : {}) });
    opened.push(() => approvalsProcessor.stop());

    // Risk: signals and findings per identity; suspensions go to every gateway on the control log.
    const riskRt = await openEvidence({ ...producerOf('risk'), producerId: `risk-${hostname()}` });
    opened.push(() => riskRt.close('shutdown'));
    const risk = new RiskProcessor({ log, emitter: riskRt.emitter, publisher: new ControlPublisher(controlLog, riskRt.keyring), policy: config.risk, logger });
    await risk.start();
    opened.push(() => risk.stop());
    opened.push(() => gateway.close());

    let consoleUrl: string | undefined;
    if (config.console.enabled) {
      const consoleRt = await openEvidence({ ...producerOf('console'), producerId: `console-${hostname()}` });
      opened.push(() => consoleRt.close('shutdown'));
      const consoleControl = new ControlState();
      const consoleSubscriber = new ControlSubscriber({ log: controlLog, group: `console-${randomUUID()}`, trust, onMessage: (m) => consoleControl.apply(m), logger });
      await consoleSubscriber.start();
      opened.push(() => consoleSubscriber.stop());
      const consoleApp = await buildConsole({
        store,
        verifier,
        auditorGroups: config.console.auditorGroups,
        emitter: consoleRt.emitter,
        jwks: () => consoleRt.keyring.jwks(),
        panKey: consoleRt.panKey,
        logger,
        cadence,
        maxRows: config.console.maxRows,
        identityAdmin: { adminGroups: config.console.adminGroups, publisher: new ControlPublisher(controlLog, consoleRt.keyring), control: consoleControl },
        ...(config.console.reviewer ? { reviewer: reviewerDeps(config.console.reviewer, approvals, env) } : {}),
      });
      opened.push(() => consoleApp.close());
      await consoleApp.listen({ host: config.console.host, port: config.console.port });
      const addr = consoleApp.server.address();
      const port = typeof addr === 'object' && addr ? addr.port : config.console.port;
      consoleUrl = `http://${config.console.host.includes(':') ? `[${config.console.host}]` : config.console.host}:${port}`;
    }
    return { gateway, consoleUrl, writer, log, approvals, control: { log: controlLog, publisher }, close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
