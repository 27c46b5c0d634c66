import { readFileSync } from 'node:fs';
import { isAbsolute, resolve, dirname } from 'node:path';
import { LineCounter, parseDocument, isScalar, visit, type Document } from 'yaml';
import type { z } from 'zod';
import { AttestError } from '../errors';
import { configSchema, type AttestConfig } from './schema';

/** One thing wrong with a config file: where (path and line), what, and how to fix it. */
export interface ConfigProblem {
  path: string;
  line?: number;
  message: string;
  fix: string;
}

export class ConfigError extends AttestError<'config_invalid' | 'config_unreadable'> {
  readonly file: string;
  readonly problems: ConfigProblem[];
  constructor(code: 'config_invalid' | 'config_unreadable', file: string, problems: ConfigProblem[]) {
    super(code, `${file}: ${problems.length} problem(s) in the configuration\n${formatProblems(problems)}`, {
      where: file,
      fix: 'correct each listed key, then run `attest config check FILE` again',
    });
    this.name = 'ConfigError';
    this.file = file;
    this.problems = problems;
  }
}

export function formatProblems(problems: ConfigProblem[]): string {
  return problems
    .map((p) => `  - ${p.path || '(top level)'}${p.line ? ` (line ${p.line})` : ''}: ${p.message}\n    fix: ${p.fix}`)
    .join('\n');
}

export interface LoadedConfig {
  config: AttestConfig;
  file: string;
  /** Raw text as read, for the config digest recorded in evidence. */
  text: string;
}

const MAX_CONFIG_BYTES = 1024 * 1024;

/** Reads, interpolates and validates a config file. Throws ConfigError listing every problem. */
export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const abs = resolve(file);
  let text: string;
  try {
    const buf = readFileSync(abs);
    if (buf.length > MAX_CONFIG_BYTES) {
      throw new ConfigError('config_unreadable', abs, [
        { path: '', message: `file is ${buf.length} bytes, over the ${MAX_CONFIG_BYTES}-byte limit`, fix: 'a config file is small; check you named the right file' },
      ]);
    }
    text = buf.toString('utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : (err as Error).message;
    throw new ConfigError('config_unreadable', abs, [
      { path: '', message: reason, fix: 'pass an existing file with --config FILE or ATTEST_CONFIG' },
    ]);
  }
  const config = parseConfigText(text, abs, env);
  // Relative paths in the config are relative to the config file, not to the working directory.
  config.dataDir = isAbsolute(config.dataDir) ? config.dataDir : resolve(dirname(abs), config.dataDir);
  const key = config.upstream.anthropic.apiKey;
  if (key.file && !isAbsolute(key.file)) key.file = resolve(dirname(abs), key.file);
  return { config, file: abs, text };
}

/** Validates config text; `file` only names the source in errors. */
export function parseConfigText(text: string, file: string, env: NodeJS.ProcessEnv = process.env): AttestConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      'config_invalid',
      file,
      doc.errors.map((e) => ({
        path: '',
        line: lineCounter.linePos(e.pos[0]).line,
        message: `YAML syntax: ${e.message.split('\n')[0]}`,
        fix: 'fix the YAML syntax at that line (indentation, a missing colon or quote)',
      })),
    );
  }
  const envProblems = interpolateEnv(doc, env, lineCounter);
  if (envProblems.length > 0) throw new ConfigError('config_invalid', file, envProblems);

  const result = configSchema.safeParse(doc.toJS() ?? {}, { reportInput: true });
  if (!result.success) {
    throw new ConfigError('config_invalid', file, result.error.issues.map((i) => toProblem(i, doc, lineCounter)));
  }
  const crossProblems = crossCheck(result.data);
  if (crossProblems.length > 0) throw new ConfigError('config_invalid', file, crossProblems);
  return result.data;
}

const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;
const WHOLE_ENV_REF = /^\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}$/;

/**
 * Replaces `${VAR}` and `${VAR:-default}` in string values. Done on parsed scalars, never on the raw
 * text, so an environment value cannot inject YAML structure. A value that is exactly one reference is
 * re-read as a YAML scalar so `port: ${PORT:-8080}` yields a number.
 */
function interpolateEnv(doc: Document, env: NodeJS.ProcessEnv, lc: LineCounter): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  visit(doc, {
    Scalar(_key, node, path) {
      if (typeof node.value !== 'string' || !node.value.includes('${')) return;
      const original = node.value;
      const replaced = original.replace(ENV_REF, (_m, name: string, dflt: string | undefined) => {
        const v = env[name];
        if (v !== undefined && v !== '') return v;
        if (dflt !== undefined) return dflt;
        problems.push({
          path: yamlPath(path),
          line: node.range ? lc.linePos(node.range[0]).line : undefined,
          message: `environment variable ${name} is not set`,
          fix: `set ${name}, or give a default with \${${name}:-value}`,
        });
        return '';
      });
      node.value = WHOLE_ENV_REF.test(original) ? typedScalar(replaced) : replaced;
    },
  });
  return problems;
}

/** Numbers and booleans from the environment become typed values; anything else stays a string. */
function typedScalar(v: string): string | number | boolean {
  if (/^-?\d+(\.\d+)?$/.test(v)) return Number(v);
  if (v === 'true' || v === 'false') return v === 'true';
  return v;
}

function yamlPath(path: readonly unknown[]): string {
  const parts: string[] = [];
  for (const p of path) {
    if (p && typeof p === 'object' && 'key' in p && isScalar((p as { key: unknown }).key)) {
      parts.push(String(((p as { key: { value: unknown } }).key).value));
    }
  }
  return parts.join('.');
}

function lineOf(doc: Document, path: readonly PropertyKey[], lc: LineCounter): number | undefined {
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n) as unknown[], true) as { range?: [number, number, number] } | undefined;
    if (node && typeof node === 'object' && node.range) return lc.linePos(node.range[0]).line;
  }
  return undefined;
}

function toProblem(issue: z.core.$ZodIssue, doc: Document, lc: LineCounter): ConfigProblem {
  const path = issue.path.map(String).join('.');
  const line = lineOf(doc, issue.path, lc);
  switch (issue.code) {
    case 'unrecognized_keys':
      return {
        path,
        line: lineOf(doc, [...issue.path, issue.keys[0] ?? ''], lc),
        message: `unknown key(s): ${issue.keys.join(', ')}`,
        fix: 'remove it or correct its spelling; the README lists every key',
      };
    case 'invalid_type':
      return {
        path,
        line,
        message: issue.input === undefined ? `required (expected ${issue.expected})` : `expected ${issue.expected}`,
        fix: issue.input === undefined ? `add \`${path}\`` : `give \`${path}\` a ${issue.expected} value`,
      };
    case 'invalid_value':
      return {
        path,
        line,
        message: `must be one of: ${issue.values.map(String).join(', ')}`,
        fix: `set \`${path}\` to one of the listed values`,
      };
    case 'too_small':
    case 'too_big':
      return { path, line, message: issue.message, fix: `change \`${path}\` to a value within the limit` };
    case 'invalid_format':
      return { path, line, message: `not a valid ${issue.format}`, fix: `give \`${path}\` a valid ${issue.format}` };
    default:
      return { path, line, message: issue.message, fix: `correct \`${path}\`` };
  }
}

/** Rules that span several keys. */
function crossCheck(c: AttestConfig): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  if (c.identity.issuers.length === 0 && !c.identity.devIssuer.enabled) {
    problems.push({
      path: 'identity.issuers',
      message: 'no token issuer is configured, so no caller could authenticate',
      fix: 'add your OIDC provider under identity.issuers (or, for a trial only, set identity.devIssuer.enabled: true)',
    });
  }
  const seen = new Set<string>();
  c.identity.issuers.forEach((iss, i) => {
    if (seen.has(iss.issuer)) {
      problems.push({ path: `identity.issuers.${i}.issuer`, message: `issuer ${iss.issuer} is listed twice`, fix: 'merge the two entries (list all audiences in one)' });
    }
    seen.add(iss.issuer);
  });
  if (c.store.retentionDays < 365 && !c.store.allowRetentionBelowMinimum) {
    problems.push({
      path: 'store.retentionDays',
      message: `${c.store.retentionDays} days is below the 365 days PCI DSS 10.5.1 requires`,
      fix: 'keep at least 365, or set store.allowRetentionBelowMinimum: true (the override is recorded as evidence)',
    });
  }
  if (c.log.kind === 'kafka' && c.log.kafka === undefined) {
    problems.push({ path: 'log.kafka', message: "log.kind is 'kafka' but log.kafka is missing", fix: 'add log.kafka.brokers (host:port of your Kafka brokers)' });
  }
  if (c.log.kafka && c.log.kafka.minInsyncReplicas > c.log.kafka.replicationFactor) {
    problems.push({ path: 'log.kafka.minInsyncReplicas', message: 'min.insync.replicas above the replication factor: every write would be refused', fix: 'keep minInsyncReplicas ≤ replicationFactor (a single broker: both 1)' });
  }
  if (c.store.kind === 'clickhouse' && c.store.clickhouse === undefined) {
    problems.push({ path: 'store.clickhouse', message: "store.kind is 'clickhouse' but store.clickhouse is missing", fix: 'add store.clickhouse.url and its credentials' });
  }
  if (Object.keys(c.groups).length === 0) {
    problems.push({
      path: 'groups',
      message: 'no group is granted anything, so every caller would be refused',
      fix: 'add at least one group under `groups` with the routes and models it may use',
    });
  }
  return problems;
}
