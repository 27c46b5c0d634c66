/**
 * Character classes for the PAN scanner, built once at module load from the runtime's own Unicode
 * data (V8/ICU `\p{Nd}`, `\p{Zs}`, `\p{Pd}`), so a newer Node with new digit blocks is covered automatically.
 *
 * One lookup table over all BMP code units keeps the per-character work inside digit runs to a single
 * typed-array read; astral digits (e.g. U+1D7CE MATHEMATICAL BOLD DIGIT ZERO) go through a small
 * range list because they are rare.
 */

/** Class codes stored in {@link CLASS}. 0–9 are digit values, so `cls <= 9` means "is a digit". */
export const C_SPACE = 10; // visible spaces (\p{Zs}: space, NBSP, narrow NBSP, ideographic space, …)
export const C_DASH = 11; // hyphen-minus, \p{Pd} dashes, U+2212 minus
export const C_DOT = 12; // full stop, fullwidth full stop
export const C_LF = 13; // line feed and other single-unit line breaks (U+0085, U+2028, U+2029, VT, FF)
export const C_CR = 14; // carriage return: separate so that CR LF counts as one line break
export const C_INVIS = 15; // zero-width and other invisible format characters (transparent inside a group)
export const C_HIGH = 16; // high surrogate: the pair must be decoded to classify it
export const C_WORD = 17; // ASCII letters and '_' (a digit run glued to one is part of an identifier)
export const C_PLUS = 18; // '+' and fullwidth plus (E.164 phone prefix)
export const C_OTHER = 19;

/** Separator/invisible classes are the contiguous range C_SPACE..C_INVIS. */
export const C_GAP_MIN = C_SPACE;
export const C_GAP_MAX = C_INVIS;

/**
 * Invisible characters an evader (or a word processor) puts between digits: zero-width space/joiners,
 * word joiner, BOM/ZWNBSP, soft hyphen, bidi marks and isolates (common around Arabic-Indic digits),
 * Mongolian vowel separator, invisible math operators.
 */
const INVISIBLES: readonly (readonly [number, number])[] = [
  [0x00ad, 0x00ad],
  [0x061c, 0x061c],
  [0x180e, 0x180e],
  [0x200b, 0x200f],
  [0x202a, 0x202e],
  [0x2060, 0x2064],
  [0x2066, 0x2069],
  [0xfeff, 0xfeff],
];

export const CLASS: Uint8Array = new Uint8Array(0x10000).fill(C_OTHER);

/** Astral decimal-digit blocks: [first code point of a block of ten, …]. */
const astralDigitZeros: number[] = [];

/** Every run of \p{Nd} code points as [start, length]; Unicode assigns them in blocks of ten (0..9). */
function ndRuns(): [number, number][] {
  let s = '';
  for (let cp = 0x30; cp <= 0x1ffff; cp++) {
    if (cp >= 0xd800 && cp <= 0xdfff) continue; // lone surrogates would pair up in the string
    s += String.fromCodePoint(cp);
  }
  const runs: [number, number][] = [];
  for (const m of s.matchAll(/\p{Nd}+/gu)) {
    const first = m[0].codePointAt(0);
    if (first === undefined) continue;
    runs.push([first, Array.from(m[0]).length]);
  }
  return runs;
}

/** Sets `cls` for every BMP code unit matching `re` (a `/…+/gu` pattern); one regex pass, not 65k tests. */
function markBmp(bmp: string, re: RegExp, cls: number): void {
  for (const m of bmp.matchAll(re)) {
    for (let i = 0; i < m[0].length; i++) CLASS[m[0].charCodeAt(i)] = cls;
  }
}

const skipClassParts: string[] = [];
const highSurrogates = new Set<number>();

function hex4(n: number): string {
  return '\\u' + n.toString(16).padStart(4, '0');
}

{
  let bmp = '';
  for (let cp = 0; cp < 0xd800; cp++) bmp += String.fromCharCode(cp);
  for (let cp = 0xe000; cp <= 0xffff; cp++) bmp += String.fromCharCode(cp);
  markBmp(bmp, /\p{Zs}+/gu, C_SPACE);
  markBmp(bmp, /\p{Pd}+/gu, C_DASH);
}
// Only ASCII letters glue: identifiers, hex and base64 tokens are ASCII, while CJK and Thai text put
// numbers right next to words ("卡号dddd…") and must still be scanned.
for (let cp = 0x41; cp <= 0x5a; cp++) CLASS[cp] = C_WORD;
for (let cp = 0x61; cp <= 0x7a; cp++) CLASS[cp] = C_WORD;
CLASS[0x5f] = C_WORD; // '_' as in txn_4829…, FOO_BAR
CLASS[0x2212] = C_DASH; // minus sign
for (let cp = 0xd800; cp <= 0xdbff; cp++) CLASS[cp] = C_HIGH;
for (const [start, len] of ndRuns()) {
  // Unicode stability policy: Nd characters come in contiguous, ascending 0..9 blocks. A run of
  // another length would be a data surprise; skip it rather than assign wrong values.
  if (len % 10 !== 0) continue;
  for (let z = start; z < start + len; z += 10) {
    if (z < 0x10000) {
      for (let v = 0; v < 10; v++) CLASS[z + v] = v;
      skipClassParts.push(`${hex4(z)}-${hex4(z + 9)}`);
    } else {
      astralDigitZeros.push(z);
      const hiA = 0xd800 + ((z - 0x10000) >> 10);
      const hiB = 0xd800 + ((z + 9 - 0x10000) >> 10);
      highSurrogates.add(hiA).add(hiB);
    }
  }
}

CLASS[0x2e] = C_DOT;
CLASS[0xff0e] = C_DOT;
CLASS[0x0a] = C_LF;
CLASS[0x0b] = C_LF;
CLASS[0x0c] = C_LF;
CLASS[0x85] = C_LF;
CLASS[0x2028] = C_LF;
CLASS[0x2029] = C_LF;
CLASS[0x0d] = C_CR;
CLASS[0x2b] = C_PLUS;
CLASS[0xff0b] = C_PLUS;
for (const [a, b] of INVISIBLES) for (let cp = a; cp <= b; cp++) CLASS[cp] = C_INVIS;
// Tab is deliberately not a separator: TSV columns of numbers would otherwise merge into one run.

/** Digit value of an astral code point, or -1. */
export function astralDigit(cp: number): number {
  for (let i = 0; i < astralDigitZeros.length; i++) {
    const z = astralDigitZeros[i]!;
    if (cp >= z && cp <= z + 9) return cp - z;
  }
  return -1;
}

/**
 * Finds the next code unit that can start a digit: an ASCII or BMP \p{Nd} digit, or the high
 * surrogate of an astral digit block (confirmed by the caller). Not a `u` regex: V8 scans a plain
 * character class over one-byte strings at > 1 GB/s, which is what keeps ordinary prose fast.
 */
export function makeDigitSkipRegex(): RegExp {
  const his = [...highSurrogates].sort((a, b) => a - b).map(hex4);
  return new RegExp(`[${skipClassParts.join('')}${his.join('')}]`, 'g');
}
