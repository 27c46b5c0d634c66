/**
 * Overlap resolution. Overlapping detections form one region (transitively); the most specific
 * detector in it names the region and decides its strategy, and the region is the union of the spans,
 * so nothing any detector found stays readable. Ties: the longer span, then the earlier one.
 * Adjacent spans (one ends where the next starts) are separate regions.
 */
import type { DlpSpan } from './types';

export interface Region {
  readonly start: number;
  readonly end: number;
  readonly winner: DlpSpan;
  /** Every span in the region, the winner included, in start order. */
  readonly members: readonly DlpSpan[];
}

export function resolveOverlaps(spans: readonly DlpSpan[], specificity: (detectorId: string) => number): Region[] {
  if (spans.length === 0) return [];
  const sorted = [...spans].sort((a, b) => a.start - b.start || b.end - a.end);
  const regions: Region[] = [];
  let members: DlpSpan[] = [sorted[0]!];
  let start = sorted[0]!.start;
  let end = sorted[0]!.end;
  const flush = (): void => {
    let w = members[0]!;
    for (const s of members) {
      const ds = specificity(s.detectorId) - specificity(w.detectorId);
      if (ds > 0 || (ds === 0 && s.end - s.start > w.end - w.start)) w = s;
    }
    regions.push({ start, end, winner: w, members });
  };
  for (let i = 1; i < sorted.length; i++) {
    const s = sorted[i]!;
    if (s.start < end) {
      members.push(s);
      if (s.end > end) end = s.end;
    } else {
      flush();
      members = [s];
      start = s.start;
      end = s.end;
    }
  }
  flush();
  return regions;
}
