/**
 * Per-string state shared by detectors: the PAN engine runs once per string and both the PAN detector
 * and the CVV/expiry/track detectors read its result.
 */
import { findPans } from '../masking/index';
import type { PanAnchor, PanWithDigits, ScanContext } from './types';

/**
 * A PAN the gateway already masked (411111******1111 or ************1111): the processor sees content
 * after inline masking, and a CVV next to a masked PAN is still sensitive authentication data.
 */
export const MASKED_PAN_RE = /(?<![0-9*])(?:[0-9]{6}\*{3,9}[0-9]{4}|\*{9,15}[0-9]{4})(?![0-9*])/g;

export class DlpScanContext implements ScanContext {
  private pansCache: PanWithDigits[] | null = null;
  private anchorsCache: PanAnchor[] | null = null;

  constructor(private readonly text: string) {}

  pans(): readonly PanWithDigits[] {
    if (this.pansCache === null) {
      // hashPan is the engine's hook for the full digits; the identity function hands them to us.
      this.pansCache = findPans(this.text, { hashPan: (d) => d }).map((h) => ({ ...h, digits: h.fingerprint ?? '' }));
    }
    return this.pansCache;
  }

  panAnchors(): readonly PanAnchor[] {
    if (this.anchorsCache === null) {
      const a: PanAnchor[] = this.pans().map((h) => ({ start: h.start, end: h.end, amex: h.brand === 'amex' }));
      if (this.text.includes('*')) {
        for (const m of this.text.matchAll(MASKED_PAN_RE)) {
          const s = m[0];
          a.push({ start: m.index, end: m.index + s.length, amex: s.length === 15 && (s.startsWith('34') || s.startsWith('37')) });
        }
        a.sort((x, y) => x.start - y.start);
      }
      this.anchorsCache = a;
    }
    return this.anchorsCache;
  }
}
