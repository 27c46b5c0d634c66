/**
 * Precision and recall of the engine per detector over a labelled corpus (test/fixtures/dlp). A
 * detection counts for a label when they overlap and name the same detector; the detection is the
 * region after overlap resolution (what the redaction would act on), named by its winner.
 */
import type { CompiledDlpPolicy, DlpPolicy } from './policy';
import { detect } from './scan';

export interface LabelledCase {
  readonly id: string;
  readonly text: string;
  readonly spans: readonly { readonly detector: string; readonly value: string }[];
}

export interface DetectorScore {
  readonly detector: string;
  tp: number;
  fp: number;
  fn: number;
  /** Case ids of misses and false alarms, for a readable failure. */
  readonly errors: string[];
}

export function precision(s: DetectorScore): number {
  return s.tp + s.fp === 0 ? 1 : s.tp / (s.tp + s.fp);
}
export function recall(s: DetectorScore): number {
  return s.tp + s.fn === 0 ? 1 : s.tp / (s.tp + s.fn);
}

export function evaluate(cases: readonly LabelledCase[], policy: DlpPolicy | CompiledDlpPolicy): Map<string, DetectorScore> {
  const scores = new Map<string, DetectorScore>();
  const score = (d: string): DetectorScore => {
    let s = scores.get(d);
    if (s === undefined) scores.set(d, (s = { detector: d, tp: 0, fp: 0, fn: 0, errors: [] }));
    return s;
  };
  for (const c of cases) {
    const gold = c.spans.map((s) => {
      const start = c.text.indexOf(s.value);
      return { detector: s.detector, start, end: start + s.value.length, hit: false };
    });
    for (const r of detect(c.text, policy)) {
      const d = r.winner.detectorId;
      const g = gold.find((x) => !x.hit && x.detector === d && x.start < r.end && r.start < x.end);
      if (g !== undefined) {
        g.hit = true;
        score(d).tp++;
      } else {
        score(d).fp++;
        score(d).errors.push(`FP ${c.id}: ${JSON.stringify(c.text.slice(r.start, r.end)).slice(0, 80)}`);
      }
    }
    for (const g of gold) {
      if (g.hit) continue;
      score(g.detector).fn++;
      score(g.detector).errors.push(`FN ${c.id}: ${JSON.stringify(c.text.slice(g.start, g.end)).slice(0, 80)}`);
    }
  }
  return scores;
}
