import { describe, expect, it } from 'vitest';
import { sha256 } from '../../common/src/integrity';
import { ChainTracker, type ChainObservation, type LogCoverage } from './chain-check';

/** A real chain: each event's "bytes" are its sequence text, hashed; prevHash = previous hash. */
function chain(n: number, producer = 'gw', epoch = 'e1'): ChainObservation[] {
  const out: ChainObservation[] = [];
  let prev: Uint8Array = new Uint8Array(32);
  for (let s = 1; s <= n; s++) {
    const hash = sha256(new TextEncoder().encode(`${producer}/${epoch}/${s}`));
    out.push({ producer, epoch, sequence: s, prevHash: prev, hash, eventId: `id-${s}`, timeUs: s, appendTimeMs: 1_000 });
    prev = hash;
  }
  return out;
}

function shuffle<T>(xs: T[], seed: number): T[] {
  const a = [...xs];
  let x = seed;
  for (let i = a.length - 1; i > 0; i--) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    const j = x % (i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

const all = (throughMs: number): LogCoverage => ({ throughMs, allPartitions: true });

describe('ChainTracker', () => {
  it('accepts any arrival order of an intact chain, including after settling, with nothing left pending', () => {
    for (let seed = 1; seed <= 50; seed++) {
      const t = new ChainTracker({ reorderWindowMs: 10 });
      const issues = shuffle(chain(200), seed).flatMap((o) => t.observe(o, 0));
      expect(issues).toEqual([]);
      expect(t.pendingCount).toBe(0);
      expect(t.settle(1_000_000, all(1_000_000))).toEqual([]);
    }
  });

  it('names a prevHash that is not the previous hash, whichever side arrives first', () => {
    const c = chain(5);
    const bad = { ...c[3]!, prevHash: sha256(new Uint8Array([1])) };
    for (const order of [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [0, 3, 4, 1, 2]]) {
      const t = new ChainTracker();
      const evs = [c[0]!, c[1]!, c[2]!, bad, c[4]!];
      const issues = order.flatMap((i) => t.observe(evs[i]!, 0));
      expect(issues.map((i) => [i.code, i.sequences])).toEqual([['chain_link_mismatch', { from: 3, to: 4 }]]);
    }
  });

  it('holds a hole until every partition was read past the following event plus the window, then reports it once; a late arrival is named', () => {
    const c = chain(6); // appended at 1 000
    const t = new ChainTracker({ reorderWindowMs: 100, maxHoldMs: 10_000 });
    for (const i of [0, 1, 3, 4, 5]) expect(t.observe(c[i]!, 50)).toEqual([]);
    expect(t.pendingCount).toBe(3);
    expect(t.settle(120, undefined)).toEqual([]); // nothing known about the log
    expect(t.settle(5_000, all(1_099))).toEqual([]); // read up to just before the window ended: 3 may still come
    const issues = t.settle(5_000, all(1_100));
    expect(issues).toMatchObject([{ code: 'chain_gap', sequences: { from: 3, to: 3 }, eventIds: ['id-4'] }]);
    expect(t.pendingCount).toBe(0);
    expect(t.settle(6_000, all(6_000))).toEqual([]);
    expect(t.observe(c[2]!, 6_100)).toMatchObject([{ code: 'chain_late_event', sequences: { from: 3, to: 3 } }]);
  });

  it('under a backlog, a partition read far behind the others never turns into gaps or late events, however long it takes', () => {
    // One producer, its events alternating between two partitions; partition B is read an hour
    // (of wall-clock time) after partition A. The old wall-clock window declared every odd sequence
    // missing after maxHoldMs and then reported each as a late arrival.
    const c = chain(2_000).map((o) => ({ ...o, appendTimeMs: 1_000 + o.sequence }));
    const a = c.filter((o) => o.sequence % 2 === 0);
    const b = c.filter((o) => o.sequence % 2 === 1);
    const t = new ChainTracker({ reorderWindowMs: 2_000, maxHoldMs: 30_000 });
    const issues = [];
    let now = 0;
    let readA = 0;
    for (const o of a) {
      issues.push(...t.observe(o, (now += 10)));
      readA = o.appendTimeMs;
      // Partition B has been read up to nothing yet: coverage is B's (its first record is still ahead).
      issues.push(...t.settle(now, { throughMs: 0, allPartitions: true }));
    }
    now += 3_600_000;
    issues.push(...t.settle(now, { throughMs: 0, allPartitions: true }));
    expect(t.pendingCount).toBe(999); // all but the first of A: each waits for its predecessor from B
    for (const o of b) {
      issues.push(...t.observe(o, (now += 10)));
      issues.push(...t.settle(now, { throughMs: Math.min(readA, o.appendTimeMs), allPartitions: true }));
    }
    issues.push(...t.settle(now, all(now)));
    expect(issues).toEqual([]);
    expect(t.pendingCount).toBe(0);
  });

  it('with partitions not yet read, declares a hole the read ones passed only after maxHoldMs', () => {
    const c = chain(3); // appended at 1 000
    const t = new ChainTracker({ reorderWindowMs: 10, maxHoldMs: 1_000 });
    t.observe(c[0]!, 0);
    t.observe(c[2]!, 0);
    expect(t.settle(5_000, { throughMs: 1_009, allPartitions: false })).toEqual([]); // not passed yet
    expect(t.settle(999, { throughMs: 2_000, allPartitions: false })).toEqual([]); // passed, not held long enough
    expect(t.settle(1_000, { throughMs: 2_000, allPartitions: false })).toMatchObject([{ code: 'chain_gap', sequences: { from: 2, to: 2 } }]);
  });

  it('declares holes in order, each when coverage passes the event after it', () => {
    const c = chain(7).map((o) => ({ ...o, appendTimeMs: o.sequence * 100 }));
    const t = new ChainTracker({ reorderWindowMs: 50 });
    for (const i of [0, 2, 3, 5, 6]) t.observe(c[i]!, 0); // 2 and 5 missing
    expect(t.settle(0, all(349))).toEqual([]);
    expect(t.settle(0, all(350))).toMatchObject([{ code: 'chain_gap', sequences: { from: 2, to: 2 } }]);
    expect(t.pendingCount).toBe(2);
    expect(t.settle(0, all(650))).toMatchObject([{ code: 'chain_gap', sequences: { from: 5, to: 5 } }]);
    expect(t.pendingCount).toBe(0);
  });

  it('does not report holes whose following event predates the run (a restart resumes per-partition suffixes)', () => {
    const c = chain(4);
    const t = new ChainTracker({ reorderWindowMs: 10, reportGapsAfterAppendMs: 5_000 });
    t.observe(c[0]!, 0);
    t.observe(c[3]!, 0); // appended at 1 000 < 5 000
    expect(t.settle(100, all(10_000))).toEqual([]);
    expect(t.pendingCount).toBe(0);
  });

  it('tells a repeat (same hash) from a fork (another event at the same sequence)', () => {
    const c = chain(3);
    const t = new ChainTracker();
    for (const o of c) t.observe(o, 0);
    expect(t.observe(c[1]!, 0)).toEqual([]);
    expect(t.repeats).toBe(1);
    const other = { ...c[1]!, hash: sha256(new Uint8Array([9])), eventId: 'other' };
    expect(t.observe(other, 0)).toMatchObject([{ code: 'chain_fork', sequences: { from: 2, to: 2 }, eventIds: ['other'] }]);
  });

  it('keeps producers and epochs apart', () => {
    const t = new ChainTracker();
    const a = chain(3, 'gw', 'e1');
    const b = chain(3, 'gw', 'e2');
    const issues = [a[0], b[0], a[1], b[1], b[2], a[2]].flatMap((o) => t.observe(o!, 0));
    expect(issues).toEqual([]);
    expect(t.chainCount).toBe(2);
  });
});
