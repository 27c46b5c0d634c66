/**
 * IBAN (ISO 13616): country code, two check digits, a BBAN of the country's fixed length; the check
 * is ISO 7064 MOD 97-10 (the rearranged number mod 97 equals 1). Written contiguous or in groups of
 * four. Upper case only: that is how IBANs are printed and pasted, and lower-case letter+digit runs
 * are too common in identifiers.
 */
import type { Detector, DlpSpan } from '../types';

/** Total IBAN length per country (SWIFT IBAN registry). */
export const IBAN_LENGTHS: Readonly<Record<string, number>> = {
  AD: 24, AE: 23, AL: 28, AT: 20, AZ: 28, BA: 20, BE: 16, BG: 22, BH: 22, BI: 27, BR: 29, BY: 28, CH: 21,
  CR: 22, CY: 28, CZ: 24, DE: 22, DJ: 27, DK: 18, DO: 28, EE: 20, EG: 29, ES: 24, FI: 18, FK: 18, FO: 18,
  FR: 27, GB: 22, GE: 22, GI: 23, GL: 18, GR: 27, GT: 28, HR: 21, HU: 28, IE: 22, IL: 23, IQ: 23, IS: 26,
  IT: 27, JO: 30, KW: 30, KZ: 20, LB: 28, LC: 32, LI: 21, LT: 20, LU: 20, LV: 21, LY: 25, MC: 27, MD: 24,
  ME: 22, MK: 19, MN: 20, MR: 27, MT: 31, MU: 30, NI: 28, NL: 18, NO: 15, OM: 23, PK: 24, PL: 28, PS: 29,
  PT: 25, QA: 29, RO: 24, RS: 22, RU: 33, SA: 24, SC: 31, SD: 18, SE: 24, SI: 19, SK: 24, SM: 27, SO: 23,
  ST: 25, SV: 28, TL: 23, TN: 24, TR: 26, UA: 29, VA: 22, VG: 24, XK: 20, YE: 30,
};

/** ISO 7064 MOD 97-10 over an upper-case alphanumeric IBAN without spaces. */
export function ibanMod97(iban: string): boolean {
  if (!/^[A-Z]{2}[0-9]{2}[A-Z0-9]+$/.test(iban)) return false;
  const r = iban.slice(4) + iban.slice(0, 4);
  let rem = 0;
  for (let i = 0; i < r.length; i++) {
    const c = r.charCodeAt(i);
    // Letters count as two digits (A=10 … Z=35).
    if (c >= 65) rem = (rem * 100 + (c - 55)) % 97;
    else rem = (rem * 10 + (c - 48)) % 97;
  }
  return rem === 1;
}

const CANDIDATE = /(?<![A-Za-z0-9])([A-Z]{2})([0-9]{2}) ?[A-Z0-9]/g;

function isAlnumUpper(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90);
}
function isWordChar(c: number): boolean {
  return isAlnumUpper(c) || (c >= 97 && c <= 122) || c === 95;
}

export const iban: Detector = {
  id: 'iban',
  requires: 'digit',
  category: 'bank',
  severity: 'medium',
  specificity: 85,
  check: 'country length table + ISO 7064 MOD 97-10',
  defaultStrategy: 'partial',
  context: { boost: ['iban', 'bank', 'account', 'transfer', 'sepa', 'bic', 'swift'] },
  detect(text) {
    const out: DlpSpan[] = [];
    for (const m of text.matchAll(CANDIDATE)) {
      const len = IBAN_LENGTHS[m[1]!];
      if (len === undefined) continue;
      // Collect `len` characters, allowing one space between them (groups of four, as printed).
      let p = m.index;
      let got = '';
      let spaced = false;
      while (got.length < len && p < text.length) {
        const c = text.charCodeAt(p);
        if (isAlnumUpper(c)) {
          got += text[p];
          p++;
        } else if (c === 32 && got.length > 0 && p + 1 < text.length && isAlnumUpper(text.charCodeAt(p + 1))) {
          spaced = true;
          p++;
        } else break;
      }
      if (got.length !== len) continue;
      // The IBAN must end there: not run on into more letters or digits.
      if (p < text.length && isWordChar(text.charCodeAt(p))) continue;
      if (spaced && !groupedInFours(text.slice(m.index, p))) continue;
      if (!ibanMod97(got)) continue;
      out.push({ start: m.index, end: p, detectorId: 'iban', confidence: 0.95, normalized: got });
    }
    return out;
  },
  partial(_value, span) {
    const n = span.normalized ?? '';
    return n.length < 8 ? '[REDACTED:iban]' : n.slice(0, 4) + '*'.repeat(n.length - 8) + n.slice(-4);
  },
};

/** "DE89 3704 0044 0532 0130 00": every group but the last has four characters. */
function groupedInFours(s: string): boolean {
  const g = s.split(' ');
  return g.every((x, i) => (i === g.length - 1 ? x.length >= 1 && x.length <= 4 : x.length === 4));
}
