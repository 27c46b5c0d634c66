import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isStoreError, type StoreErrorCode } from './errors';
import { checkRetention, loadMigrations, renderMigration, retentionReport, splitStatements, sqlString } from './migrations';

function expectStoreError(fn: () => unknown, code: StoreErrorCode): void {
  try {
    fn();
  } catch (err) {
    expect(isStoreError(err, code), String(err)).toBe(true);
    return;
  }
  expect.fail(`expected ${code}`);
}

const dirs: string[] = [];
async function dirWith(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'attest-migrations-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  return dir;
}
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

describe('splitStatements', () => {
  it('splits at semicolons outside quotes and comments, and drops comment-only pieces', () => {
    const sql = `-- header; not a statement
CREATE TABLE a (x String DEFAULT 'a;b') ENGINE = Memory;
/* block; comment */ INSERT INTO a VALUES ('it\\'s; fine');
-- trailing comment;
`;
    expect(splitStatements(sql)).toEqual(["CREATE TABLE a (x String DEFAULT 'a;b') ENGINE = Memory", "INSERT INTO a VALUES ('it\\'s; fine')"]);
  });
});

describe('loadMigrations', () => {
  it('reads the repository migrations in order with checksums', () => {
    const ms = loadMigrations();
    expect(ms.map((m) => m.id)).toEqual(['001_events', '002_pan_sightings', '003_redactions', '004_compact_new_parts']);
    for (const m of ms) expect(m.checksum).toMatch(/^[0-9a-f]{64}$/);
    // Every evidence table takes its TTL from the retention policy (003 and 004 alter tables).
    for (const m of ms.filter((x) => /CREATE TABLE/.test(x.text))) expect(m.text).toContain('TTL toDateTime(time) + INTERVAL {{retention_days}} DAY');
  });
});

describe('loadMigrations refuses misnamed, duplicate-numbered and empty files', () => {
  it.each([
    [{ '1_events.sql': 'SELECT 1' }],
    [{ '001_a.sql': 'SELECT 1', '001_b.sql': 'SELECT 2' }],
    [{ '001_empty.sql': '-- nothing here\n' }],
  ])('refuses %o', async (files) => {
    const dir = await dirWith(files);
    expectStoreError(() => loadMigrations(dir), 'store_migration_invalid');
  });
});

describe('renderMigration', () => {
  it('fills {{retention_days}} and refuses unknown variables', () => {
    expect(renderMigration('TTL t + INTERVAL {{retention_days}} DAY', { retentionDays: 400 })).toBe('TTL t + INTERVAL 400 DAY');
    expectStoreError(() => renderMigration('{{retention_dayz}}', { retentionDays: 400 }), 'store_migration_invalid');
  });
});

describe('checkRetention', () => {
  it('accepts 365 days and more', () => {
    expect(checkRetention({ days: 365 })).toEqual({ days: 365, belowMinimum: false });
    expect(checkRetention({ days: 3650 })).toEqual({ days: 3650, belowMinimum: false });
  });

  it('refuses less than 365 days (PCI DSS 10.5.1) with a fix, unless overridden', () => {
    try {
      checkRetention({ days: 90 });
      expect.fail('expected a refusal');
    } catch (err) {
      expect(isStoreError(err, 'store_retention_too_short')).toBe(true);
      if (isStoreError(err)) {
        expect(err.where).toBe('retention.days');
        expect(err.fix).toMatch(/365/);
      }
    }
    expect(checkRetention({ days: 90, allowBelowMinimum: true })).toEqual({ days: 90, belowMinimum: true });
  });

  it('refuses nonsense', () => {
    for (const days of [0, -1, 1.5, Number.NaN, 100_000]) expectStoreError(() => checkRetention({ days }), 'store_invalid_argument');
  });
});

describe('retentionReport', () => {
  it('gives the config.changed fields when retention changed, with the override flag', () => {
    expect(retentionReport(400, 400, false)).toMatchObject({ changed: false, configChange: null });
    expect(retentionReport(90, 400, true).configChange).toEqual({
      objectKind: 'retention',
      what: 'retention.days',
      change: 'updated',
      oldVersion: '400',
      newVersion: '90',
      override: true,
      summary: 'evidence retention changed from 400 to 90 days (below the 365-day minimum, by explicit override)',
    });
    expect(retentionReport(365, null, false).configChange).toMatchObject({ change: 'created', oldVersion: null, newVersion: '365', override: false });
  });
});

describe('sqlString', () => {
  it('escapes quotes and backslashes', () => {
    expect(sqlString("a'b\\c")).toBe("'a\\'b\\\\c'");
  });
});
