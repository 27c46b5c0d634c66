import { parseArgs } from 'node:util';
import { loadConfigFile, ConfigError, formatProblems, type LoadedConfig } from '../../common/src/config';
import type { Logger } from 'pino';
import { DevIssuer } from '../../common/src/identity';
import { createLogger } from '../../common/src/logger';
import { AttestError } from '../../common/src/errors';
import { startGateway } from '../../gateway/src/main';
import { evidenceQuery, keysExport, panLookup, sessionsShow, verify, type CliIO } from './evidence-commands';
import { startPlatform } from './platform';
import { openBackbone } from './backbone';
import { recordSpoolOutages, startConsoleRole, startProcessors, startProcessorsOps } from './roles';
import { createVerifierFromConfig } from '../../gateway/src/main';

/**
 * The `attest` command. This is the composition root: the only module that reads argv and the
 * environment, starts services and exits.
 */

const USAGE = `attest — audit and compliance evidence for AI agents

Usage:
  attest start [--config FILE]            run the whole platform in one process: gateway, processors
                                          (evidence writer, approvals, risk), console; embedded by default
  attest gateway [--config FILE]          run the gateway alone        } separate processes need
  attest processors [--config FILE]       run the processors alone     } log.kind: kafka (and
  attest console [--config FILE]          run the console alone        } store.kind: clickhouse)
  attest config check FILE                validate a config file; lists every problem, exits 1 if any
  attest dev-token --group NAME [--group NAME…] [--subject ID] [--ttl SECONDS] [--config FILE]
                                          print a token from the DEVELOPMENT issuer (must be enabled)

Auditors (through the console's evidence API; --url or $ATTEST_CONSOLE_URL, --token or $ATTEST_TOKEN):
  attest evidence query [NAME] [--from T] [--to T] [--subject S] [--session ID] [--format table|json|csv]
                                          run a documented evidence query (no NAME: list them)
  attest sessions show ID                 replay one session's events in order
  attest pan-lookup                       where did this card appear? (reads the number from stdin)
  attest verify [--from T] [--to T] [--format json]
                                          re-verify the stored evidence; exit 0 only when intact
  attest keys export                      print the evidence-signing public keys (JWKS)

The config file is --config FILE, else $ATTEST_CONFIG.`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'start':
      return runServer(rest, 'platform');
    case 'gateway':
    case 'processors':
    case 'console':
      return runServer(rest, command);
    case 'evidence':
      if (rest[0] !== 'query') return usage('attest evidence query [NAME] …');
      return evidenceQuery(rest.slice(1), cliIO());
    case 'sessions':
      if (rest[0] !== 'show') return usage('attest sessions show ID');
      return sessionsShow(rest.slice(1), cliIO());
    case 'pan-lookup':
      return panLookup(rest, cliIO());
    case 'verify':
      return verify(rest, cliIO());
    case 'keys':
      if (rest[0] !== 'export') return usage('attest keys export');
      return keysExport(rest.slice(1), cliIO());
    case 'config':
      return configCommand(rest);
    case 'dev-token':
      return devToken(rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`attest: unknown command "${command}"\n\n${USAGE}\n`);
      return 2;
  }
}

function configPath(values: { config?: string | undefined }): string {
  const file = values.config ?? process.env.ATTEST_CONFIG;
  if (!file) throw new AttestError('config_missing', 'no config file given', { fix: 'pass --config FILE or set ATTEST_CONFIG' });
  return file;
}

function cliIO(): CliIO {
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env };
}

function usage(text: string): number {
  process.stderr.write(`usage: ${text}\n`);
  return 2;
}

type Role = 'platform' | 'gateway' | 'processors' | 'console';

interface Running {
  lines: string[];
  close(): Promise<void>;
  /** Cuts remaining connections when the grace period is over. */
  cut?: () => void;
}

async function startRole(what: Role, loaded: LoadedConfig, logger: Logger): Promise<Running> {
  const dev = loaded.config.identity.devIssuer;
  const devToken = (group: string | undefined) => `npm run -s attest -- dev-token --config ${loaded.file} --group ${group ?? 'NAME'}`;
  const gatewayLines = (url: string) => [
    `Attest gateway listening on ${url}`,
    `  point agents at it:  export ANTHROPIC_BASE_URL=${url}`,
    `  health:              ${url}/healthz   metrics: ${url}/metrics   evidence keys (JWKS): ${url}/.well-known/jwks.json`,
    ...(dev.enabled ? [`  dev token (DEVELOPMENT issuer is ON):  export ANTHROPIC_API_KEY=$(${devToken(Object.keys(loaded.config.groups)[0])})`] : []),
  ];
  const consoleLines = (url: string) => [
    `Evidence console (auditors) on ${url}`,
    `  export ATTEST_CONSOLE_URL=${url}`,
    ...(dev.enabled ? [`  export ATTEST_TOKEN=$(${devToken(loaded.config.console.auditorGroups[0])})`] : []),
    `  npm run -s attest -- evidence query          (list the evidence queries; then: evidence query NAME)`,
    `  npm run -s attest -- verify                  (re-verify signatures and hash chains of the stored evidence)`,
  ];
  if (what === 'platform') {
    const platform = await startPlatform(loaded, logger, process.env);
    return {
      lines: [...gatewayLines(platform.gateway.url), ...(platform.consoleUrl ? consoleLines(platform.consoleUrl) : [])],
      close: () => platform.close(),
      cut: () => platform.gateway.app.server.closeAllConnections(),
    };
  }
  const backbone = await openBackbone(loaded.config, logger, process.env, what);
  const ctx = { loaded, logger, env: process.env, backbone };
  const closeSpoolRecorder = recordSpoolOutages(ctx, what);
  try {
    if (what === 'gateway') {
      const gw = await startGateway(loaded, logger, process.env, { log: backbone.log, control: { log: backbone.controlLog, trust: backbone.trust } });
      return { lines: gatewayLines(gw.url), close: async () => (await gw.close(), await closeSpoolRecorder(), await backbone.close()), cut: () => gw.app.server.closeAllConnections() };
    }
    if (what === 'processors') {
      const p = await startProcessors(ctx);
      const ops = await startProcessorsOps(ctx, p);
      return {
        lines: [`Attest processors running (evidence writer, approvals, risk)`, `  health: ${ops.url}/healthz   metrics: ${ops.url}/metrics`],
        close: async () => (await ops.app.close(), await p.close(), await closeSpoolRecorder(), await backbone.close()),
      };
    }
    const verifier = await createVerifierFromConfig(loaded.config, logger);
    const c = await startConsoleRole(ctx, verifier);
    return { lines: consoleLines(c.url), close: async () => (await c.close(), await closeSpoolRecorder(), await backbone.close()) };
  } catch (err) {
    await backbone.close();
    throw err;
  }
}

async function runServer(args: string[], what: Role): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } }, strict: true });
  const loaded = loadConfigFile(configPath(values));
  const logger = createLogger({ level: loaded.config.logging.level, name: 'attest' });
  const running = await startRole(what, loaded, logger);
  const lines = running.lines;
  process.stdout.write(`${lines.join('\n')}\n`);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, graceMs: loaded.config.limits.shutdownGraceMs }, 'shutting down: finishing in-flight requests');
    // Streams in flight get the grace period to finish; after it, remaining connections are cut.
    const timer = setTimeout(() => running.cut?.(), loaded.config.limits.shutdownGraceMs);
    timer.unref();
    await running.close();
    clearTimeout(timer);
    logger.info('stopped');
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
  return new Promise<number>(() => {});
}

async function configCommand(args: string[]): Promise<number> {
  const [sub, file] = args;
  if (sub !== 'check' || !file) {
    process.stderr.write('usage: attest config check FILE\n');
    return 2;
  }
  try {
    loadConfigFile(file);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.file}: ${err.problems.length} problem(s)\n${formatProblems(err.problems)}\n`);
      return 1;
    }
    throw err;
  }
  process.stdout.write(`${file}: OK\n`);
  return 0;
}

async function devToken(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string', short: 'c' },
      group: { type: 'string', short: 'g', multiple: true },
      subject: { type: 'string', short: 's' },
      ttl: { type: 'string' },
    },
    strict: true,
  });
  const { config } = loadConfigFile(configPath(values));
  if (!config.identity.devIssuer.enabled) {
    throw new AttestError('dev_issuer_disabled', 'the development issuer is disabled in this config', {
      fix: 'set identity.devIssuer.enabled: true (development only), or get a token from your identity provider',
    });
  }
  const groups = values.group ?? [];
  if (groups.length === 0) throw new AttestError('group_missing', 'give at least one --group NAME', { fix: `groups in this config: ${Object.keys(config.groups).join(', ')}` });
  const ttlSec = values.ttl ? Number(values.ttl) : 3600;
  if (!Number.isInteger(ttlSec) || ttlSec <= 0 || ttlSec > 86_400) {
    throw new AttestError('bad_ttl', `--ttl must be a whole number of seconds from 1 to 86400, got "${values.ttl}"`);
  }
  const issuer = await DevIssuer.loadOrCreate(config.dataDir);
  const token = await issuer.mint({ subject: values.subject ?? `dev-${process.env.USER ?? 'user'}`, groups, audience: config.identity.devIssuer.audience, ttlSec });
  process.stdout.write(`${token}\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
    } else if (err instanceof AttestError) {
      process.stderr.write(`attest: ${err.message}${err.fix ? `\n  fix: ${err.fix}` : ''}\n`);
    } else {
      process.stderr.write(`attest: ${(err as Error).message ?? String(err)}\n`);
    }
    process.exitCode = 1;
  },
);
