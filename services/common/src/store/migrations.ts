/**
 * Numbered DDL migrations (schemas/clickhouse/NNN_name.sql) and the retention policy, shared by
 * every ClickHouse adapter: they only need an executor for statements and reads.
 *
 * A migration is applied once, in order, and recorded with the SHA-256 of its file in
 * `attest_schema_migrations`. Its file must never change afterwards: a changed file is refused
 * (store_migration_changed), because the store would no longer match what the file says. The
 * checksum covers the file as written, with `{{retention_days}}` unrendered, so changing the
 * retention policy is not a changed migration: `migrate()` applies it with ALTER ... MODIFY TTL.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StoreError } from './errors';
import { MIN_RETENTION_DAYS, type MigrationReport, type QueryParams, type RetentionPolicy, type RetentionReport, type Row } from './port';

export const DEFAULT_MIGRATIONS_DIR = fileURLToPath(new URL('../../../../schemas/clickhouse/', import.meta.url));
export const MIGRATIONS_TABLE = 'attest_schema_migrations';
/** Tables whose TTL is the evidence retention (each created with `{{retention_days}}`). */
export const RETENTION_TABLES = ['events', 'pan_sightings'] as const;
/** Retention longer than this is surely a typo (ClickHouse would accept it). */
const MAX_RETENTION_DAYS = 36_500;

export interface Migration {
  readonly version: number;
  /** File name without `.sql`, e.g. `001_events`. */
  readonly id: string;
  readonly path: string;
  readonly text: string;
  /** SHA-256 of the file text, hex. */
  readonly checksum: string;
}

/** What migrations need from an adapter: run a statement, read rows. */
export interface SqlExecutor {
  exec(sql: string): Promise<void>;
  rows(sql: string, params?: QueryParams): Promise<Row[]>;
}

const FILE_RE = /^(\d{3})_([a-z0-9_]+)\.sql$/;

/** The migrations in `dir`, in order. Refuses misnamed `.sql` files, duplicate numbers and empty files. */
export function loadMigrations(dir: string = DEFAULT_MIGRATIONS_DIR): Migration[] {
  const out: Migration[] = [];
  const seen = new Map<number, string>();
  for (const file of readdirSync(dir).sort()) {
    if (!file.endsWith('.sql')) continue;
    const m = FILE_RE.exec(file);
    if (m === null) {
      throw new StoreError('store_migration_invalid', `migration file '${file}' is not named NNN_name.sql`, {
        where: join(dir, file),
        fix: 'name it with a three-digit number and a lowercase name, e.g. 003_findings.sql',
      });
    }
    const version = Number(m[1]);
    const other = seen.get(version);
    if (other !== undefined) {
      throw new StoreError('store_migration_invalid', `migrations '${other}' and '${file}' share number ${m[1]}`, { where: join(dir, file) });
    }
    seen.set(version, file);
    const path = join(dir, file);
    const text = readFileSync(path, 'utf8');
    if (splitStatements(text).length === 0) {
      throw new StoreError('store_migration_invalid', `migration '${file}' has no statement`, { where: path });
    }
    out.push({ version, id: file.slice(0, -4), path, text, checksum: createHash('sha256').update(text).digest('hex') });
  }
  return out;
}

/** Split SQL text into statements at `;`, ignoring semicolons in quotes and comments. */
export function splitStatements(sql: string): string[] {
  const out: string[] = [];
  let start = 0;
  let i = 0;
  let meaningful = false;
  const push = (end: number): void => {
    const s = sql.slice(start, end).trim();
    if (meaningful && s !== '') out.push(s);
    meaningful = false;
  };
  while (i < sql.length) {
    const c = sql[i];
    const next = sql[i + 1];
    if (c === '-' && next === '-') {
      const nl = sql.indexOf('\n', i);
      i = nl < 0 ? sql.length : nl + 1;
    } else if (c === '/' && next === '*') {
      const close = sql.indexOf('*/', i + 2);
      i = close < 0 ? sql.length : close + 2;
    } else if (c === "'" || c === '"' || c === '`') {
      meaningful = true;
      i += 1;
      while (i < sql.length && sql[i] !== c) i += sql[i] === '\\' ? 2 : 1;
      i += 1;
    } else if (c === ';') {
      push(i);
      start = i + 1;
      i += 1;
    } else {
      if (c !== undefined && !/\s/.test(c)) meaningful = true;
      i += 1;
    }
  }
  push(sql.length);
  return out.map(stripLeadingComments).filter((s) => s !== '');
}

function stripLeadingComments(s: string): string {
  let t = s;
  for (;;) {
    t = t.trimStart();
    if (t.startsWith('--')) {
      const nl = t.indexOf('\n');
      t = nl < 0 ? '' : t.slice(nl + 1);
    } else if (t.startsWith('/*')) {
      const close = t.indexOf('*/');
      t = close < 0 ? '' : t.slice(close + 2);
    } else return t;
  }
}

/** Fill the template variables of a migration; refuses unknown ones so a typo never reaches the engine. */
export function renderMigration(text: string, vars: { readonly retentionDays: number }): string {
  return text.replace(/\{\{\s*([a-z_]+)\s*\}\}/g, (_, name: string) => {
    if (name === 'retention_days') return String(vars.retentionDays);
    throw new StoreError('store_migration_invalid', `unknown template variable {{${name}}}`, { fix: 'the only variable is {{retention_days}}' });
  });
}

/**
 * Validate a retention policy. Fewer than 365 days (PCI DSS 10.5.1) is refused unless
 * `allowBelowMinimum` is set; the caller then records the override as a `config.changed` event.
 */
export function checkRetention(policy: RetentionPolicy): { readonly days: number; readonly belowMinimum: boolean } {
  const { days } = policy;
  if (!Number.isSafeInteger(days) || days < 1 || days > MAX_RETENTION_DAYS) {
    throw new StoreError('store_invalid_argument', `retention must be a whole number of days between 1 and ${MAX_RETENTION_DAYS}, got ${String(days)}`, {
      where: 'retention.days',
    });
  }
  const belowMinimum = days < MIN_RETENTION_DAYS;
  if (belowMinimum && policy.allowBelowMinimum !== true) {
    throw new StoreError(
      'store_retention_too_short',
      `retention of ${days} days is below the ${MIN_RETENTION_DAYS} days PCI DSS 10.5.1 requires (12 months of audit history)`,
      {
        where: 'retention.days',
        fix: `set retention.days to ${MIN_RETENTION_DAYS} or more; to go below it anyway set the explicit override, which is recorded as a config.changed event with override: true`,
      },
    );
  }
  return { days, belowMinimum };
}

/** A ClickHouse string literal (single quotes, backslash escapes) for values Attest itself generates. */
export function sqlString(s: string): string {
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

const TTL_RE = /TTL\s+toDateTime\(time\)\s*\+\s*toIntervalDay\((\d+)\)/;

/** The retention days in a table's DDL as ClickHouse prints it (`TTL toDateTime(time) + toIntervalDay(N)`), or null. */
export function parseTtlDays(ddl: string): number | null {
  const m = TTL_RE.exec(ddl);
  return m === null ? null : Number(m[1]);
}

/** The retention (TTL days) a table's DDL declares, or null when the table does not exist or has no TTL. */
export async function tableRetentionDays(exec: SqlExecutor, table: string): Promise<number | null> {
  const rows = await exec.rows(
    'SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = {table:String}',
    { table },
  );
  const ddl = rows[0]?.[0];
  return typeof ddl === 'string' ? parseTtlDays(ddl) : null;
}

/**
 * Apply every migration not yet recorded, in order, then bring each evidence table's TTL to the
 * policy. See the module comment for the rules.
 */
export async function runMigrations(exec: SqlExecutor, migrations: readonly Migration[], retention: RetentionPolicy): Promise<MigrationReport> {
  const { days, belowMinimum } = checkRetention(retention);
  await exec.exec(
    `CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (version UInt32, name String, checksum String, applied_at DateTime64(6, 'UTC')) ENGINE = MergeTree ORDER BY version`,
  );
  const recorded = new Map<number, { name: string; checksum: string }>();
  for (const row of await exec.rows(`SELECT version, name, checksum FROM ${MIGRATIONS_TABLE} ORDER BY version`)) {
    const [version, name, checksum] = row;
    recorded.set(Number(version), { name: String(name), checksum: String(checksum) });
  }
  const known = new Set(migrations.map((m) => m.version));
  for (const [version, r] of recorded) {
    if (!known.has(version)) {
      throw new StoreError('store_migration_unknown', `the store has migration ${r.name}, which this version of Attest does not know`, {
        fix: 'run the Attest version that created this store, or a newer one',
      });
    }
  }
  const previousDays = await tableRetentionDays(exec, 'events');
  const applied: string[] = [];
  const alreadyApplied: string[] = [];
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    const r = recorded.get(m.version);
    if (r !== undefined) {
      if (r.checksum !== m.checksum || r.name !== m.id) {
        throw new StoreError('store_migration_changed', `migration ${m.id} changed after it was applied (recorded ${r.name} sha256 ${r.checksum.slice(0, 12)}…, file sha256 ${m.checksum.slice(0, 12)}…)`, {
          where: m.path,
          fix: 'restore the applied file from version control and put the change in a new, higher-numbered migration',
        });
      }
      alreadyApplied.push(m.id);
      continue;
    }
    // DDL is not transactional: every statement is written to be re-runnable (IF NOT EXISTS), so a
    // crash before the record below only means the statements run again next time.
    for (const statement of splitStatements(renderMigration(m.text, { retentionDays: days }))) await exec.exec(statement);
    await exec.exec(
      `INSERT INTO ${MIGRATIONS_TABLE} (version, name, checksum, applied_at) VALUES (${m.version}, ${sqlString(m.id)}, ${sqlString(m.checksum)}, now64(6))`,
    );
    applied.push(m.id);
  }
  for (const table of RETENTION_TABLES) {
    const current = await tableRetentionDays(exec, table);
    if (current !== null && current !== days) {
      await exec.exec(`ALTER TABLE ${table} MODIFY TTL toDateTime(time) + INTERVAL ${days} DAY`);
    }
  }
  return { applied, alreadyApplied, retention: retentionReport(days, previousDays, belowMinimum) };
}

export function retentionReport(days: number, previousDays: number | null, belowMinimum: boolean): RetentionReport {
  const changed = previousDays !== days;
  return {
    days,
    previousDays,
    changed,
    belowMinimum,
    configChange: changed
      ? {
          objectKind: 'retention',
          what: 'retention.days',
          change: previousDays === null ? 'created' : 'updated',
          oldVersion: previousDays === null ? null : String(previousDays),
          newVersion: String(days),
          override: belowMinimum,
          summary:
            previousDays === null
              ? `evidence retention set to ${days} days${belowMinimum ? ` (below the ${MIN_RETENTION_DAYS}-day minimum, by explicit override)` : ''}`
              : `evidence retention changed from ${previousDays} to ${days} days${belowMinimum ? ` (below the ${MIN_RETENTION_DAYS}-day minimum, by explicit override)` : ''}`,
        }
      : null,
  };
}
