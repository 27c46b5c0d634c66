import { describe, expect, it } from 'vitest';
import { inlineVerdict } from './file-log';

/** Runs the policy over a series of write times; returns the indexes of writes that backed off. */
function backOffs(times: number[], slowMs = 20): number[] {
  let avg = 0;
  const out: number[] = [];
  times.forEach((ms, i) => {
    const v = inlineVerdict(avg, ms, slowMs);
    avg = v.avgMs;
    if (v.backOff) out.push(i);
  });
  return out;
}

describe('inline write policy', () => {
  it('keeps writes inline through a lone outlier among fast writes', () => {
    const times = Array.from({ length: 1000 }, () => 0.3);
    times[500] = 28;
    times[900] = 25;
    expect(backOffs(times)).toEqual([]);
  });

  it('backs off within a few writes once writes turn slow', () => {
    const times = [...Array.from({ length: 100 }, () => 0.3), ...Array.from({ length: 10 }, () => 30)];
    expect(backOffs(times)[0]).toBe(103);
  });

  it('backs off at once on a stall of ten times the bound', () => {
    expect(backOffs([0.3, 0.3, 250])).toEqual([2]);
  });

  it('decides again on the first write after a back-off', () => {
    const after = inlineVerdict(0, 250, 20).avgMs;
    expect(inlineVerdict(after, 0.3, 20).backOff).toBe(false);
    expect(inlineVerdict(after, 30, 20).backOff).toBe(true);
  });

  it('with a 0 ms bound every write is slow', () => {
    expect(inlineVerdict(0, 0.001, 0).backOff).toBe(true);
  });
});
