/**
 * Issuer identification (IIN/BIN) table and Luhn check.
 *
 * Why an IIN table: Luhn alone passes 1 in 10 random digit strings. Requiring a real network's
 * prefix *and* one of that network's card lengths keeps ≈ 29% of random 16-digit strings, ≈ 18% of
 * 19-digit ones and 3–9% of the other lengths (corpus.test.ts prints the measured rates), so random
 * numbers are flagged at 0.3–2.9% instead of 10%. More importantly it rejects every number that starts
 * with 0, 1 or 7 — which is what makes epoch timestamps (s/ms/µs/ns all start with 1 until 2033),
 * snowflake ids, zero-padded order ids and ISBN-13s (978/979) structurally safe rather than safe by
 * Luhn luck.
 *
 * Sources: the networks' published ranges as summarised in ISO/IEC 7812 listings (Wikipedia
 * "Payment card number", 2024). Deliberately left out:
 *  - UATP (prefix 1, 15 digits): collides with every epoch-ms/µs timestamp and snowflake id, and is
 *    not a PCI SSC payment brand;
 *  - GPN (50, 56, 58, 60–63) and RuPay 81/82: two-digit prefixes so broad that they would add more
 *    false positives than cards; 60 (RuPay) is kept at its single length (16);
 *  - Elo's and Hipercard's scattered BINs: they fall inside the Visa/Mastercard/Discover ranges anyway;
 *  - 14-digit Diners Carte Blanche (300–305): defunct, and UK sort code + account number ("30-94-57
 *    12345678", Lloyds) is exactly 14 digits with that prefix. 14-digit Diners (36, 38–39) stays.
 * Rules are tried in order; the first whose prefix *and* length match names the brand.
 */

export interface IinRule {
  readonly brand: string;
  /** Number of leading digits compared. */
  readonly digits: number;
  readonly lo: number;
  readonly hi: number;
  /** Allowed total PAN lengths. */
  readonly lengths: readonly number[];
}

const L16_19 = [16, 17, 18, 19] as const;

export const IIN_RULES: readonly IinRule[] = [
  // Narrow ranges that sit inside broader ones come first.
  { brand: 'verve', digits: 6, lo: 506099, hi: 506198, lengths: [16, 18, 19] },
  { brand: 'verve', digits: 6, lo: 507865, hi: 507964, lengths: [16, 18, 19] },
  { brand: 'verve', digits: 6, lo: 650002, hi: 650027, lengths: [16, 18, 19] },
  { brand: 'ukrcard', digits: 8, lo: 60400100, hi: 60420099, lengths: L16_19 },
  { brand: 'visa', digits: 1, lo: 4, hi: 4, lengths: [13, 16, 19] },
  { brand: 'mastercard', digits: 2, lo: 51, hi: 55, lengths: [16] },
  { brand: 'mastercard', digits: 4, lo: 2221, hi: 2720, lengths: [16] },
  { brand: 'mir', digits: 4, lo: 2200, hi: 2204, lengths: L16_19 },
  { brand: 'borica', digits: 4, lo: 2205, hi: 2205, lengths: [16] },
  { brand: 'amex', digits: 2, lo: 34, hi: 34, lengths: [15] },
  { brand: 'amex', digits: 2, lo: 37, hi: 37, lengths: [15] },
  { brand: 'jcb', digits: 4, lo: 3528, hi: 3589, lengths: L16_19 },
  { brand: 'diners', digits: 2, lo: 36, hi: 36, lengths: [14, 15, 16, 17, 18, 19] },
  { brand: 'diners', digits: 3, lo: 300, hi: 305, lengths: L16_19 },
  { brand: 'diners', digits: 4, lo: 3095, hi: 3095, lengths: L16_19 },
  { brand: 'diners', digits: 2, lo: 38, hi: 39, lengths: [14, 16, 17, 18, 19] },
  { brand: 'discover', digits: 4, lo: 6011, hi: 6011, lengths: L16_19 },
  { brand: 'discover', digits: 3, lo: 644, hi: 649, lengths: L16_19 },
  { brand: 'discover', digits: 2, lo: 65, hi: 65, lengths: L16_19 },
  { brand: 'maestro', digits: 4, lo: 5018, hi: 5018, lengths: [13, 14, 15, 16, 17, 18, 19] },
  { brand: 'maestro', digits: 4, lo: 5020, hi: 5020, lengths: [13, 14, 15, 16, 17, 18, 19] },
  { brand: 'maestro', digits: 4, lo: 5038, hi: 5038, lengths: [13, 14, 15, 16, 17, 18, 19] },
  { brand: 'maestro', digits: 4, lo: 5893, hi: 5893, lengths: [13, 14, 15, 16, 17, 18, 19] },
  { brand: 'maestro', digits: 4, lo: 6304, hi: 6304, lengths: [13, 14, 15, 16, 17, 18, 19] },
  { brand: 'maestro', digits: 4, lo: 6759, hi: 6759, lengths: [13, 14, 15, 16, 17, 18, 19] },
  { brand: 'maestro', digits: 4, lo: 6761, hi: 6763, lengths: [13, 14, 15, 16, 17, 18, 19] },
  { brand: 'dankort', digits: 4, lo: 5019, hi: 5019, lengths: [16] },
  { brand: 'unionpay', digits: 2, lo: 62, hi: 62, lengths: L16_19 },
  { brand: 'rupay', digits: 2, lo: 60, hi: 60, lengths: [16] },
  { brand: 'rupay', digits: 3, lo: 508, hi: 508, lengths: [16] },
  { brand: 'interpayment', digits: 3, lo: 636, hi: 636, lengths: L16_19 },
  { brand: 'instapayment', digits: 3, lo: 637, hi: 639, lengths: [16] },
  { brand: 'uzcard', digits: 4, lo: 8600, hi: 8600, lengths: [16] },
  { brand: 'napas', digits: 4, lo: 9704, hi: 9704, lengths: [16, 19] },
  { brand: 'troy', digits: 4, lo: 9792, hi: 9792, lengths: [16] },
  { brand: 'humo', digits: 4, lo: 9860, hi: 9860, lengths: [16] },
];

/** Rules grouped by first digit with length bitmasks, so a candidate only visits its own few rules. */
interface CompiledRule {
  brand: string;
  digits: number;
  lo: number;
  hi: number;
  lenMask: number;
}
const BY_FIRST: CompiledRule[][] = Array.from({ length: 10 }, () => []);
for (const r of IIN_RULES) {
  const first = Math.floor(r.lo / 10 ** (r.digits - 1));
  let lenMask = 0;
  for (const n of r.lengths) lenMask |= 1 << n;
  BY_FIRST[first]!.push({ brand: r.brand, digits: r.digits, lo: r.lo, hi: r.hi, lenMask });
}
/** First digits that begin no rule at all (0, 1, 7): candidates starting with them are skipped at once. */
export const NO_IIN_FIRST_DIGIT: readonly boolean[] = BY_FIRST.map((rules) => rules.length === 0);

/**
 * Brand of the `len` digit values at `d[off..]` if the prefix and length match a rule, else null.
 * 13-digit candidates that are also valid GTIN-13/EAN-13 barcodes are refused: product codes from
 * GS1 Germany/Japan (400–440, 45, 49) fill catalogues and invoices, while 13-digit Visa cards have not
 * been issued for well over a decade.
 */
export function brandOf(d: Uint8Array, off: number, len: number): string | null {
  const rules = BY_FIRST[d[off]!];
  if (rules === undefined || rules.length === 0) return null;
  // PREFIX[x] = the first x digits as a number (x ≤ 8), filled as far as the rules need.
  let have = 0;
  let prefix = 0;
  for (let i = 0; i < rules.length; i++) {
    const r = rules[i]!;
    if ((r.lenMask & (1 << len)) === 0) continue;
    while (have < r.digits) {
      prefix = prefix * 10 + d[off + have]!;
      PREFIX[++have] = prefix;
    }
    const p = PREFIX[r.digits]!;
    if (p >= r.lo && p <= r.hi) {
      if (len === 13 && gtin13Valid(d, off)) return null;
      return r.brand;
    }
  }
  return null;
}
const PREFIX = new Float64Array(9);

/** Luhn (mod 10) over `len` digit values at `d[off..]`. */
export function luhnDigits(d: Uint8Array, off: number, len: number): boolean {
  let sum = 0;
  let dbl = false;
  for (let i = off + len - 1; i >= off; i--) {
    let v = d[i]!;
    if (dbl) {
      v *= 2;
      if (v > 9) v -= 9;
    }
    sum += v;
    dbl = !dbl;
  }
  return sum % 10 === 0;
}

function gtin13Valid(d: Uint8Array, off: number): boolean {
  let sum = 0;
  for (let i = 0; i < 12; i++) sum += d[off + i]! * (i % 2 === 0 ? 1 : 3);
  return (10 - (sum % 10)) % 10 === d[off + 12];
}

/**
 * Luhn check of an ASCII digit string. Returns false for anything that is not 1+ ASCII digits
 * (no separators are stripped: callers pass normalised digits).
 */
export function luhnValid(asciiDigits: string): boolean {
  const n = asciiDigits.length;
  if (n === 0) return false;
  const d = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const v = asciiDigits.charCodeAt(i) - 48;
    if (v < 0 || v > 9) return false;
    d[i] = v;
  }
  return luhnDigits(d, 0, n);
}
