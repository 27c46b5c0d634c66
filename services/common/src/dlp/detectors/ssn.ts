/**
 * US Social Security number: AAA-GG-SSSS. The SSA never issues area 000, 666 or 900–999 (those are
 * ITINs and test ranges), group 00 or serial 0000, and a few numbers were published and voided
 * (078-05-1120 from a wallet insert, 219-09-9999 from an advertisement, 123-45-6789).
 * Dashed is the usual written form (moderately likely on its own); spaced or bare nine digits are
 * any other number unless an SSN word is near.
 */
import type { Detector, DlpSpan } from '../types';

const SSN_RE = /(?<![0-9A-Za-z_-])([0-9]{3})([- ]?)([0-9]{2})\2([0-9]{4})(?![0-9A-Za-z_]|-[0-9])/g;
const VOID = new Set(['078051120', '219099999', '123456789']);

export function ssnValid(area: string, group: string, serial: string): boolean {
  const a = Number(area);
  if (a === 0 || a === 666 || a >= 900) return false;
  if (group === '00' || serial === '0000') return false;
  return !VOID.has(area + group + serial);
}

export const usSsn: Detector = {
  id: 'us_ssn',
  requires: 'digit',
  category: 'government_id',
  severity: 'high',
  specificity: 60,
  check: 'SSA area/group/serial rules, voided numbers refused',
  defaultStrategy: 'redact',
  context: {
    boost: ['ssn', 'social security', 'social security number', 'ss#', 'ss no', 'taxpayer', 'tin'],
    suppress: ['phone', 'tel', 'fax', 'order', 'invoice', 'zip', 'routing', 'tracking', 'isbn', 'ref', 'part', 'sku', 'ticket', 'serial'],
  },
  detect(text) {
    const out: DlpSpan[] = [];
    for (const m of text.matchAll(SSN_RE)) {
      const [, area, sep, group, serial] = m;
      if (area === undefined || group === undefined || serial === undefined || !ssnValid(area, group, serial)) continue;
      const confidence = sep === '-' ? 0.6 : sep === ' ' ? 0.3 : 0.2;
      out.push({ start: m.index, end: m.index + m[0].length, detectorId: 'us_ssn', confidence, normalized: area + group + serial });
    }
    return out;
  },
  partial(_value, span) {
    return `***-**-${(span.normalized ?? '').slice(-4)}`;
  },
};
