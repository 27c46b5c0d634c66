import type { Logger } from 'pino';
import type { ApprovalService } from '../../common/src/approvals/service';
import type { LoadedConfig } from '../../common/src/config';
import type { EventLog } from '../../common/src/log';
import { createVerifierFromConfig, startGateway, type RunningGateway } from '../../gateway/src/main';
import type { EvidenceWriter } from '../../processors/src/evidence-writer';
import type { EvidenceStore } from '../../common/src/store';
import { openBackbone } from './backbone';
import { Closer, recordSpoolOutages, startConsoleRole, startProcessors, type RoleContext } from './roles';

/**
 * The whole platform in one process (`attest start`), on the backbone the config names (embedded
 * by default):
 *
 *   gateway ──▶ evidence log ──▶ processors (evidence writer → store; approvals; risk)
 *      ▲                                 │ control log (suspensions, approval outcomes)
 *      └─────────────────────────────────┘
 *   auditors, admins, reviewers ──▶ console (evidence API, identity admin, reviewer console) ──▶ store
 */

export interface RunningPlatform {
  gateway: RunningGateway;
  /** The evidence log every component appends to. */
  log: EventLog;
  /** The approval book (console decisions, expiry, notifications). */
  approvals: ApprovalService;
  consoleUrl: string | undefined;
  writer: EvidenceWriter;
  /** The evidence store (opened once, shared by the roles). */
  store(): Promise<EvidenceStore>;
  close(): Promise<void>;
}

export async function startPlatform(loaded: LoadedConfig, logger: Logger, env: NodeJS.ProcessEnv): Promise<RunningPlatform> {
  const { config } = loaded;
  const backbone = await openBackbone(config, logger, env);
  const closer = new Closer(logger);
  closer.add(() => backbone.close());
  try {
    const ctx: RoleContext = { loaded, logger, env, backbone };
    closer.add(recordSpoolOutages(ctx, 'platform'));
    const processors = await startProcessors(ctx);
    closer.add(() => processors.close());
    const verifier = await createVerifierFromConfig(config, logger);
    const gateway = await startGateway(loaded, logger, env, { log: backbone.log, verifier, control: { log: backbone.controlLog, trust: backbone.trust } });
    closer.add(() => gateway.close());
    let consoleUrl: string | undefined;
    if (config.console.enabled) {
      const consoleRole = await startConsoleRole(ctx, verifier, { approvals: processors.approvals, risk: processors.risk });
      closer.add(() => consoleRole.close());
      consoleUrl = consoleRole.url;
    }
    return {
      gateway,
      consoleUrl,
      writer: processors.writer,
      store: () => backbone.store(),
      log: backbone.log,
      approvals: processors.approvals,
      close: () => closer.close(),
    };
  } catch (err) {
    await closer.close();
    throw err;
  }
}
