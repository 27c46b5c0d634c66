import { parseArgs } from 'node:util';
import { loadConfigFile, ConfigError, formatProblems } from '../../common/src/config';
import { DevIssuer } from '../../common/src/identity';
import { createLogger } from '../../common/src/logger';
import { AttestError } from '../../common/src/errors';
import { startGateway } from '../../gateway/src/main';

/**
 * The `attest` command. This is the composition root: the only module that reads argv and the
 * environment, starts services and exits.
 */

const USAGE = `attest — audit and compliance evidence for AI agents

Usage:
  attest start [--config FILE]            run the platform (the gateway) with FILE
  attest gateway [--config FILE]          run the gateway alone
  attest config check FILE                validate a config file; lists every problem, exits 1 if any
  attest dev-token --group NAME [--group NAME…] [--subject ID] [--ttl SECONDS] [--config FILE]
                                          print a token from the DEVELOPMENT issuer (must be enabled)

The config file is --config FILE, else $ATTEST_CONFIG.`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'start':
    case 'gateway':
      return runGateway(rest);
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

async function runGateway(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } }, strict: true });
  const loaded = loadConfigFile(configPath(values));
  const logger = createLogger({ level: loaded.config.logging.level, name: 'attest' });
  const gw = await startGateway(loaded, logger);
  const dev = loaded.config.identity.devIssuer;
  const lines = [
    `Attest gateway listening on ${gw.url}`,
    `  point agents at it:  export ANTHROPIC_BASE_URL=${gw.url}`,
    `  health:              ${gw.url}/healthz   metrics: ${gw.url}/metrics`,
  ];
  if (dev.enabled) {
    const groups = Object.keys(loaded.config.groups);
    lines.push(`  dev token (DEVELOPMENT issuer is ON):  export ANTHROPIC_API_KEY=$(npm run -s attest -- dev-token --config ${loaded.file} --group ${groups[0] ?? 'NAME'})`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, graceMs: loaded.config.limits.shutdownGraceMs }, 'shutting down: finishing in-flight requests');
    // Streams in flight get the grace period to finish; after it, remaining connections are cut.
    const timer = setTimeout(() => gw.app.server.closeAllConnections(), loaded.config.limits.shutdownGraceMs);
    timer.unref();
    await gw.close();
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
