import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeSnapshot, FileSnapshotStore, type StateSnapshot } from './snapshot-store';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function store(): FileSnapshotStore {
  const d = mkdtempSync(join(tmpdir(), 'attest-snapstore-'));
  dirs.push(d);
  return new FileSnapshotStore(join(d, 'snapshots'));
}

const snap = (over: Partial<StateSnapshot> = {}): StateSnapshot => ({
  group: 'risk',
  logId: 'file:/data/log',
  partitions: 2,
  positions: [3, 0],
  anchors: [{ offset: 2, appendTimeMs: 1_700_000_000_000, digest: 'ab'.repeat(16) }, null],
  stateVersion: 1,
  fingerprint: 'f',
  takenAtMs: 1,
  state: { identities: [{ key: 'k', n: [1, 2] }], findingOwners: [] },
  ...over,
});

describe('FileSnapshotStore', () => {
  it('round-trips a snapshot, one file per (group, log), replaced atomically with no temp file left', async () => {
    const s = store();
    expect(await s.load('risk', 'file:/data/log', 2)).toEqual({ found: false });
    await s.save(snap());
    await s.save(snap({ positions: [4, 0], anchors: [{ offset: 3, appendTimeMs: 1, digest: 'cd'.repeat(16) }, null] }));
    await s.save(snap({ group: 'dlp' }));
    expect(readdirSync(s.dir).sort()).toEqual([s.fileOf('dlp', 'file:/data/log'), s.fileOf('risk', 'file:/data/log')].map((f) => f.slice(s.dir.length + 1)).sort());
    const got = await s.load('risk', 'file:/data/log', 2);
    expect(got).toMatchObject({ found: true, snapshot: { positions: [4, 0], state: snap().state } });
    // Deterministic bytes: the same snapshot encodes the same.
    expect(encodeSnapshot(snap()).equals(encodeSnapshot(snap()))).toBe(true);
  });

  it('refuses what it cannot trust, with a reason code', async () => {
    const s = store();
    await s.save(snap());
    const file = s.fileOf('risk', 'file:/data/log');
    const good = readFileSync(file);
    const reasonOf = async (bytes: Buffer, partitions = 2) => {
      writeFileSync(file, bytes);
      const r = await s.load('risk', 'file:/data/log', partitions);
      return r.found ? 'found' : r.rejected?.reason;
    };
    expect(await reasonOf(good)).toBe('found');
    expect(await reasonOf(good, 3)).toBe('snapshot_foreign_log');
    expect(await reasonOf(Buffer.from('garbage'))).toBe('snapshot_corrupt');
    expect(await reasonOf(good.subarray(0, good.length - 1))).toBe('snapshot_corrupt');
    expect(await reasonOf(Buffer.from(good.toString('utf8').replace('"n":[1,2]', '"n":[1,3]')))).toBe('snapshot_corrupt');
    expect(await reasonOf(Buffer.from(good.toString('utf8').replace('ATTEST-SNAPSHOT 1', 'ATTEST-SNAPSHOT 2')))).toBe('snapshot_version_unknown');
    expect(await reasonOf(encodeSnapshot(snap({ logId: 'kafka:b:9092/attest.events' })))).toBe('snapshot_foreign_log');
    expect(await reasonOf(encodeSnapshot(snap({ positions: [3] })))).toBe('snapshot_corrupt');
    expect(await reasonOf(encodeSnapshot(snap({ anchors: [{ offset: 7, appendTimeMs: 1, digest: 'x' }, null] })))).toBe('snapshot_corrupt');
  });
});
