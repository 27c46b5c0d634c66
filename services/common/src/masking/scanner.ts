/**
 * The PAN scanner core, shared by the one-shot functions and the streaming masker so that both make
 * exactly the same decisions.
 *
 * Terms
 * - digit: any Unicode decimal digit (\p{Nd}: ASCII, fullwidth, Arabic-Indic, Devanagari, astral
 *   mathematical digits, …), valued 0–9 and normalised to ASCII in everything the engine returns.
 * - gap: the characters between two digits. A gap may hold only separators — visible spaces (\p{Zs}
 *   incl. NBSP), dashes (\p{Pd}, U+2212), '.', line breaks — and invisible format characters (zero-width
 *   space/joiners, word joiner, BOM, soft hyphen, bidi marks). Tab, comma, '/', ':' and everything else
 *   end a run.
 * - group: digits joined by invisible-only gaps (what a reader sees as one contiguous number).
 * - run: groups joined by gaps of at most {@link MAX_GAP_UNITS} UTF-16 units containing at most one
 *   line break (CR LF counts once).
 *
 * Gap bound (why 4 units, one line break): real layouts put 1 ("-", " ", "."), 2 (CR LF, ". ") or 3
 * (" - ", " – ") characters between digit groups, plus an occasional zero-width character or a wrapped
 * line's indentation; wider gaps are table columns and paragraphs that join unrelated numbers, and a
 * blank line is a paragraph break, not a wrapped card number. The bound also caps how much the
 * streaming masker ever holds back.
 *
 * Which windows of a run are PAN candidates (13–19 digits, always whole groups):
 * 1. A group of more than 19 digits is never a PAN and never part of one (a contiguous long run is a
 *    bignum, a hash, a tracking or account number, not a card).
 * 2. A window covering its *whole* run (run total ≤ 19 digits) may use any *regular* grouping: a card
 *    layout (below), equal-size groups with a shorter or equal last one (one digit per line, "41 11 11
 *    …", triples), or at most two groups (one line wrap or stray separator anywhere). Invisible
 *    characters never split a group, so arbitrary zero-width splits are covered too. Irregular
 *    groupings are other numbers' formats: "303-ddddddd-ddddddd" (Amazon.de order, 3-7-7),
 *    "30-94-57 12345678" (UK sort code + account), "55 11 99128 6961" (phone without '+').
 * 3. A window that is only *part* of a longer run must look like a printed card: one contiguous group,
 *    or 4-digit groups ending with a group of 1–4 digits (4-4-4-4, 4-4-4-4-3, 4-4-4-1), or Amex 4-6-5 /
 *    Diners 4-6-4, with the same separator between all its groups; and when it has several groups, the
 *    separator before it must differ from the one inside it, unless the group before it ended a PAN
 *    (a card is set off from its neighbours; "80 443 dddd dddd dddd dddd" is a list of ports, not a card).
 *    This is the long-run rule: two phone numbers, a list of amounts or ports, an all-digit UUID
 *    (8-4-4-4-12), a matrix of numbers, or a USPS tracking number printed in fours ("9400 1000 0000 …",
 *    22 digits) join into runs of 20+ digits, and arbitrary sub-windows of them would pass Luhn + IIN by
 *    chance (~3% each). What stays detected: "dddd dddd dddd dddd 123" (CVV or expiry after a PAN),
 *    numbered lists ("1. dddd …"), one PAN per line, two PANs separated by one space, a contiguous
 *    PAN anywhere in a run. What is lost: a spaced PAN right after another number with the same
 *    separator ("qty 2 dddd dddd dddd dddd").
 * 4. Windows are chosen left to right; at each start group the longest valid window wins (over-masking
 *    a trailing CVV is safer than leaving PAN digits visible).
 * Contextual refusals:
 * - glued to an ASCII letter or '_' on either side (INV4829…, txn_…, hex/base64 tokens, 0x…): an
 *   identifier. Only ASCII: CJK text writes numbers against words ("卡号dddd…") and is still scanned;
 * - preceded by '+' and at most 15 digits: an E.164 phone number (PANs are never written with '+');
 * - a run starting with two digits glued to two capital letters at a word start (DE89 3704 …, RF18 …):
 *   an IBAN / creditor reference, none of the run is a PAN;
 * - a lone '.' is a decimal point: a window may not contain exactly one ("4.1234…" with 15 decimals is a
 *   float; dotted cards use three dots), nor start right after or end right before one ("0.4829…" with
 *   16 fraction digits: JSON floats are everywhere in API traffic).
 * Then: IIN prefix + that brand's lengths (see iin.ts; 13-digit EAN-13 barcodes are refused), and Luhn.
 */

import { AttestError } from '../errors';
import * as iin from './iin';
import * as uni from './unicode';

// Module-local copies of the imported tables and constants. Under tsx and vitest, imported bindings
// are property reads through getters on a module namespace; in the per-character loops below that
// alone cost 4× the whole scan.
const CLASS: Uint8Array = uni.CLASS;
const C_CR = uni.C_CR;
const C_DOT = uni.C_DOT;
const C_GAP_MAX = uni.C_GAP_MAX;
const C_GAP_MIN = uni.C_GAP_MIN;
const C_HIGH = uni.C_HIGH;
const C_INVIS = uni.C_INVIS;
const C_LF = uni.C_LF;
const C_PLUS = uni.C_PLUS;
const C_WORD = uni.C_WORD;
const astralDigit = uni.astralDigit;
const brandOf = iin.brandOf;
const luhnDigits = iin.luhnDigits;
const NO_IIN_FIRST_DIGIT: readonly boolean[] = iin.NO_IIN_FIRST_DIGIT;

export const MIN_PAN_DIGITS = 13;
export const MAX_PAN_DIGITS = 19;
/** Widest gap (UTF-16 units of separators and invisibles) between two digits of one run. */
export const MAX_GAP_UNITS = 4;

export interface PanHit {
  /** UTF-16 offsets of the matched span (first digit to last digit) in the input or stream. */
  start: number;
  end: number;
  /** First six digits, ASCII. */
  bin: string;
  last4: string;
  digitCount: number;
  brand: string;
  /** opts.hashPan(fullDigits) when given. */
  fingerprint?: string;
}

export interface PanScanOptions {
  /** Keyed hash of the full ASCII digits (e.g. HMAC-SHA-256); its result is stored on the hit. */
  hashPan?: (digits: string) => string;
}

/**
 * When the streaming masker cuts inside a run, the held text continues that run. Its earlier groups
 * are decided and emitted; the scan resumes with one virtual, already-decided group in front.
 */
export interface ScanCarry {
  readonly ignore: boolean;
  /** Whether the last decided group ended a PAN (rule 3's list-start exception). */
  readonly prevHit: boolean;
}

export interface ScanResult {
  /** Everything before this index is decided (and may be emitted). */
  safe: number;
  carry: ScanCarry | null;
}

/**
 * Groups parsed per step of a long run (bounds memory on adversarial input like "1 1 1 …"). Must be
 * at least MAX_PAN_DIGITS + 2, so that a step (one slot goes to the carried group) always holds more
 * than a PAN's worth of digits and decides at least one group.
 */
const MAX_GROUPS = 1024;

/** Digit count that marks a group as too long to be (part of) a PAN. */
const BARRIER = MAX_PAN_DIGITS + 1;

const SKIP = uni.makeDigitSkipRegex();
const ANY_DIGIT = uni.makeDigitSkipRegex();

/** Whether `s` contains anything that may start a digit (cheap pre-check for stream chunks). */
export function mayContainDigit(s: string): boolean {
  ANY_DIGIT.lastIndex = 0;
  return ANY_DIGIT.test(s);
}

/** Per-run working storage, reused across runs; pooled so a re-entrant hashPan cannot clobber it. */
class Scratch {
  gStart = new Int32Array(64);
  gEnd = new Int32Array(64);
  gLen = new Int32Array(64);
  gDecBefore = new Uint8Array(64);
  /** Digit values of the window being checked (decoded from the text on demand). */
  dig = new Uint8Array(MAX_PAN_DIGITS + 1);
  // Parse results of the current run.
  k = 0;
  total = 0;
  startable = false;
  /** parseRun stopped at MAX_GROUPS, not at the end of the text. */
  limited = false;
  ended = false;
  gluedAfter = false;
  /** Index just past the run's last digit. */
  runEnd = 0;

  growGroups(): void {
    const n = this.gStart.length * 2;
    const g = (a: Int32Array<ArrayBuffer>): Int32Array<ArrayBuffer> => {
      const b = new Int32Array(n);
      b.set(a);
      return b;
    };
    this.gStart = g(this.gStart);
    this.gEnd = g(this.gEnd);
    this.gLen = g(this.gLen);
    const d = new Uint8Array(n);
    d.set(this.gDecBefore);
    this.gDecBefore = d;
  }
}

let pooled: Scratch | null = new Scratch();

function isHigh(c: number): boolean {
  return c >= 0xd800 && c <= 0xdbff;
}
function isLow(c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff;
}

/** Is the character just before index `i` an ASCII letter or '_'? */
function wordBefore(text: string, i: number): boolean {
  return i > 0 && CLASS[text.charCodeAt(i - 1)] === C_WORD;
}

function isUpperAscii(c: number): boolean {
  return c >= 0x41 && c <= 0x5a;
}

/** Digit value at `q` (BMP or astral) or -1; -2 when `q` is a lone high surrogate at the end. */
function digitAt(text: string, q: number, n: number): number {
  const c = text.charCodeAt(q);
  const cls = CLASS[c]!;
  if (cls <= 9) return cls;
  if (isHigh(c)) {
    if (q + 1 >= n) return -2;
    const lo = text.charCodeAt(q + 1);
    if (!isLow(lo)) return -1;
    return astralDigit(((c - 0xd800) << 10) + (lo - 0xdc00) + 0x10000);
  }
  return -1;
}

/**
 * Parses the run whose first digit is at `p` (or, with a carry, the continuation of a cut run starting
 * at `p`; `total` then counts only the digits after the cut) into the scratch groups. Returns false
 * when the text ends before the run can be known to have ended and more text may follow (`final`
 * false). Also notes whether any group could start a window at all (sc.startable: at most 19 digits,
 * a first digit some IIN starts with, not right after a decimal point), so that timestamps starting
 * with 1, "0.4829…" floats and long digit strings skip evaluation. It is only a necessary condition
 * of evaluateRun's start rules, so skipping on it never changes a result.
 */
function parseRun(
  text: string,
  p: number,
  final: boolean,
  sc: Scratch,
  carry: ScanCarry | null,
  firstDigit: number,
): boolean {
  const n = text.length;
  let gStart = sc.gStart;
  let gEnd = sc.gEnd;
  let gLen = sc.gLen;
  let gDec = sc.gDecBefore;
  let k = 1;
  let total = 0;
  // Virtual group 0 (carry) stands for the decided group before the cut: never part of a window here.
  let curLen = carry === null ? 0 : BARRIER;
  let curOk = carry === null && !NO_IIN_FIRST_DIGIT[firstDigit]!;
  let startable = false;
  gStart[0] = p;
  gEnd[0] = p;
  gDec[0] = 0;
  let q = p;
  let gluedAfter = false;
  let ended = true;
  let limited = false;
  for (;;) {
    // Digits (BMP fast path).
    let c = 0;
    let cls = 0;
    while (q < n) {
      c = text.charCodeAt(q);
      cls = CLASS[c]!;
      if (cls > 9) break;
      curLen++;
      q++;
    }
    if (q >= n) {
      ended = final;
      break;
    }
    if (cls === C_HIGH) {
      // Astral digit (e.g. U+1D7CE), or the end of the run.
      if (q + 1 >= n) {
        ended = final;
        break;
      }
      const lo = text.charCodeAt(q + 1);
      if (!isLow(lo)) break;
      if (astralDigit(((c - 0xd800) << 10) + (lo - 0xdc00) + 0x10000) < 0) break;
      curLen++;
      q += 2;
      continue;
    }
    if (cls < C_GAP_MIN || cls > C_GAP_MAX) {
      gluedAfter = cls === C_WORD;
      break;
    }
    // A gap: measure it, then see whether a digit follows.
    let g = q;
    let units = 0;
    let visible = 0;
    let dots = 0;
    let lines = 0;
    let prevCR = false;
    while (g < n && units <= MAX_GAP_UNITS) {
      const k2 = CLASS[text.charCodeAt(g)]!;
      if (k2 < C_GAP_MIN || k2 > C_GAP_MAX) break;
      units++;
      if (k2 !== C_INVIS) {
        visible++;
        if (k2 === C_DOT) dots++;
        else if (k2 === C_CR) lines++;
        else if (k2 === C_LF && !prevCR) lines++;
      }
      prevCR = k2 === C_CR;
      g++;
    }
    if (units > MAX_GAP_UNITS || lines > 1) break;
    if (g >= n) {
      ended = final;
      break;
    }
    let nv = CLASS[text.charCodeAt(g)]!;
    if (nv > 9) {
      if (nv !== C_HIGH) break;
      nv = digitAt(text, g, n);
      if (nv === -2) {
        ended = final;
        break;
      }
      if (nv < 0) break;
    }
    if (visible > 0) {
      if (k >= MAX_GROUPS) {
        // Bound the work arrays: stop here as if the text ended; the caller decides what it can,
        // cuts, and resumes with a carry exactly as the streaming masker does between chunks.
        limited = true;
        ended = false;
        break;
      }
      // Close the current group, open the next.
      if (curOk && curLen <= MAX_PAN_DIGITS) startable = true;
      gEnd[k - 1] = q;
      gLen[k - 1] = curLen;
      total += k > 1 || carry === null ? curLen : 0;
      if (k >= gStart.length) {
        sc.growGroups();
        gStart = sc.gStart;
        gEnd = sc.gEnd;
        gLen = sc.gLen;
        gDec = sc.gDecBefore;
      }
      const decimal = visible === 1 && dots === 1;
      gStart[k] = g;
      gDec[k] = decimal ? 1 : 0;
      k++;
      curLen = 0;
      curOk = !decimal && !NO_IIN_FIRST_DIGIT[nv]!;
    }
    q = g;
  }
  if (curOk && curLen <= MAX_PAN_DIGITS) startable = true;
  total += k > 1 || carry === null ? curLen : 0;
  // Every exit leaves q just past the last digit (a gap is only consumed once a digit follows it).
  gEnd[k - 1] = q;
  gLen[k - 1] = curLen;
  sc.k = k;
  sc.total = total;
  sc.startable = startable;
  sc.limited = limited;
  sc.ended = ended;
  sc.gluedAfter = ended && gluedAfter;
  sc.runEnd = q;
  return ended;
}

/** Printed-card layouts (rule 3). */
function cardLayout(len: Int32Array, i: number, j: number): boolean {
  if (i === j) return true;
  if (j === i + 2 && len[i] === 4 && len[i + 1] === 6 && (len[j] === 5 || len[j] === 4)) return true;
  for (let g = i; g < j; g++) if (len[g] !== 4) return false;
  const last = len[j]!;
  return last >= 1 && last <= 4;
}

/** Regular groupings allowed for a whole-run window (rule 2). */
function regularGrouping(len: Int32Array, k: number): boolean {
  if (k <= 2 || cardLayout(len, 0, k - 1)) return true;
  const g = len[0]!;
  for (let x = 1; x < k - 1; x++) if (len[x] !== g) return false;
  return len[k - 1]! <= g;
}

/** Are the gaps before groups a and b (both ≥ 1) the same characters? */
function gapEq(text: string, sc: Scratch, a: number, b: number): boolean {
  const s1 = sc.gEnd[a - 1]!;
  const s2 = sc.gEnd[b - 1]!;
  const n = sc.gStart[a]! - s1;
  if (sc.gStart[b]! - s2 !== n) return false;
  for (let x = 0; x < n; x++) if (text.charCodeAt(s1 + x) !== text.charCodeAt(s2 + x)) return false;
  return true;
}

// Candidate window ends for one start group (at most 19 groups of one digit).
const candEnd = new Int32Array(MAX_PAN_DIGITS + 1);
const candSum = new Int32Array(MAX_PAN_DIGITS + 1);
const candDec = new Int32Array(MAX_PAN_DIGITS + 1);

/**
 * Context of the run being decided (module-level, not an object per run: digit-dense text has a
 * long number every few dozen characters). Set by the caller right before decide().
 */
/** Non-null when this run continues a run cut by the streaming masker (group 0 is virtual). */
let runCarry: ScanCarry | null = null;
/** IBAN-like run: nothing in it is a PAN. */
let runIgnore = false;
/** The run's first digit follows an ASCII letter or '_'. */
let runGluedBefore = false;
/** The run's first digit follows '+'. */
let runPlusBefore = false;

interface Evaluation {
  /** First group whose decision is not final yet (k when everything is decided). */
  upTo: number;
  /** Index of the last group that ended a PAN, or -1. */
  lastHitEnd: number;
}
const evaluation: Evaluation = { upTo: 0, lastHitEnd: -1 };

/**
 * Writes the digit values of groups i..j into sc.dig (at most 19: callers pass candidate windows).
 * The parse only records where groups are; digits are read back for the few windows checked.
 */
function decodeDigits(text: string, sc: Scratch, i: number, j: number): void {
  const dig = sc.dig;
  let nd = 0;
  for (let g = i; g <= j; g++) {
    const end = sc.gEnd[g]!;
    for (let q = sc.gStart[g]!; q < end; q++) {
      const c = text.charCodeAt(q);
      const cls = CLASS[c]!;
      if (cls <= 9) {
        dig[nd++] = cls;
      } else if (cls === C_HIGH) {
        const v = astralDigit(((c - 0xd800) << 10) + (text.charCodeAt(q + 1) - 0xdc00) + 0x10000);
        if (v >= 0) dig[nd++] = v;
        q++;
      }
      // anything else inside a group is an invisible character
    }
  }
}

/** Chooses the PAN windows of the parsed run and appends hits; result in `evaluation`. */
function evaluateRun(
  text: string,
  sc: Scratch,
  base: number,
  opts: PanScanOptions | undefined,
  hits: PanHit[],
): void {
  const k = sc.k;
  const carry = runCarry;
  const gluedBefore = runGluedBefore;
  const plusBefore = runPlusBefore;
  const first = carry === null ? 0 : 1;
  let lastHitEnd = carry !== null && carry.prevHit ? 0 : -1;
  evaluation.lastHitEnd = lastHitEnd;
  if (runIgnore) {
    evaluation.upTo = k;
    return;
  }
  const ended = sc.ended;
  // While a run has at most 19 digits it may still be one whole-run PAN: decide nothing yet.
  if (!ended && carry === null && sc.total <= MAX_PAN_DIGITS) {
    evaluation.upTo = 0;
    return;
  }
  const gLen = sc.gLen;
  const gDec = sc.gDecBefore;
  const dig = sc.dig;
  const gStart = sc.gStart;
  // Digits from group i to the end; only needed to know what is decidable in an unfinished run.
  let remaining = 0;
  if (!ended) for (let x = first; x < k; x++) remaining += gLen[x]!;
  let i = first;
  while (i < k) {
    const li = gLen[i]!;
    if (li > MAX_PAN_DIGITS) {
      remaining -= li;
      i++;
      continue;
    }
    // Every window starting here must be able to see its full candidate set (rule 3 needs the
    // groups up to 19 digits ahead to be complete) before it is decided.
    if (!ended && remaining <= MAX_PAN_DIGITS) {
      evaluation.upTo = i;
      evaluation.lastHitEnd = lastHitEnd;
      return;
    }
    let found = -1;
    let foundSum = 0;
    const startOk =
      !NO_IIN_FIRST_DIGIT[digitAt(text, gStart[i]!, text.length)]! &&
      !(i === 0 && gluedBefore) &&
      !(i > 0 && gDec[i] === 1);
    if (startOk) {
      let nc = 0;
      let sum = 0;
      let dec = 0;
      for (let j = i; j < k; j++) {
        const lj = gLen[j]!;
        if (j > i && gDec[j] === 1) dec++;
        sum += lj;
        if (sum > MAX_PAN_DIGITS) break;
        if (sum >= MIN_PAN_DIGITS) {
          candEnd[nc] = j;
          candSum[nc] = sum;
          candDec[nc] = dec;
          nc++;
        }
      }
      let decoded = false;
      for (let c = nc - 1; c >= 0; c--) {
        const j = candEnd[c]!;
        const s = candSum[c]!;
        if (i === 0 && j === k - 1 && ended && carry === null) {
          if (!regularGrouping(gLen, k)) continue;
        } else {
          if (!cardLayout(gLen, i, j)) continue;
          if (j > i) {
            let uniform = true;
            for (let g = i + 2; g <= j && uniform; g++) uniform = gapEq(text, sc, i + 1, g);
            if (!uniform) continue;
            if (i > 0 && lastHitEnd !== i - 1 && gapEq(text, sc, i, i + 1)) continue;
          }
        }
        if (candDec[c] === 1) continue;
        if (j < k - 1 && gDec[j + 1] === 1) continue;
        if (j === k - 1 && sc.gluedAfter) continue;
        if (i === 0 && plusBefore && s <= 15) continue;
        // Structure passed: now read the digits (once per start group, longest candidate).
        if (!decoded) {
          decodeDigits(text, sc, i, candEnd[nc - 1]!);
          decoded = true;
        }
        const brand = brandOf(dig, 0, s);
        if (brand === null || !luhnDigits(dig, 0, s)) continue;
        hits.push(makeHit(sc, i, j, s, brand, base, opts));
        found = j;
        foundSum = s;
        break;
      }
    }
    if (found >= 0) {
      remaining -= foundSum;
      lastHitEnd = found;
      i = found + 1;
    } else {
      remaining -= li;
      i++;
    }
  }
  evaluation.upTo = k;
  evaluation.lastHitEnd = lastHitEnd;
}

// BIN and last-four strings are shared between hits instead of allocated per hit: real traffic sees
// few distinct BINs, and fewer live allocations per hit is most of what a PAN-dense text costs.
const last4Cache: (string | undefined)[] = new Array<string | undefined>(10000);
function last4String(d: Uint8Array, e: number): string {
  const v = d[e - 4]! * 1000 + d[e - 3]! * 100 + d[e - 2]! * 10 + d[e - 1]!;
  let s = last4Cache[v];
  if (s === undefined) {
    s = String.fromCharCode(48 + d[e - 4]!, 48 + d[e - 3]!, 48 + d[e - 2]!, 48 + d[e - 1]!);
    last4Cache[v] = s;
  }
  return s;
}
const BIN_SLOTS = 4096;
const binKeys = new Int32Array(BIN_SLOTS).fill(-1);
const binVals: string[] = new Array<string>(BIN_SLOTS).fill('');
function binString(d: Uint8Array): string {
  const v = d[0]! * 100000 + d[1]! * 10000 + d[2]! * 1000 + d[3]! * 100 + d[4]! * 10 + d[5]!;
  const slot = Math.imul(v, 0x9e3779b1) >>> 20; // Fibonacci hash to 12 bits
  if (binKeys[slot] === v) return binVals[slot]!;
  const s = String.fromCharCode(48 + d[0]!, 48 + d[1]!, 48 + d[2]!, 48 + d[3]!, 48 + d[4]!, 48 + d[5]!);
  binKeys[slot] = v;
  binVals[slot] = s;
  return s;
}

function makeHit(
  sc: Scratch,
  i: number,
  j: number,
  s: number,
  brand: string,
  base: number,
  opts: PanScanOptions | undefined,
): PanHit {
  const d = sc.dig;
  const bin = binString(d);
  const last4 = last4String(d, s);
  const hit: PanHit = {
    start: base + sc.gStart[i]!,
    end: base + sc.gEnd[j]!,
    bin,
    last4,
    digitCount: s,
    brand,
  };
  const hashPan = opts?.hashPan;
  if (hashPan !== undefined) {
    let full = '';
    for (let x = 0; x < s; x++) full += String.fromCharCode(48 + d[x]!);
    let fp: unknown;
    try {
      fp = hashPan(full);
    } catch (err) {
      // The hasher's own message could echo its input; keep only its type, never the cause itself.
      const kind = err instanceof Error ? err.name : typeof err;
      throw new AttestError('MASK_HASH_FAILED', `hashPan threw (${kind}); the PAN was not hashed`, {
        fix: 'make hashPan total over 13–19 ASCII digit strings (e.g. an HMAC with a loaded key)',
      });
    }
    if (typeof fp !== 'string') {
      throw new AttestError('MASK_HASH_FAILED', `hashPan returned ${typeof fp}, expected a string`, {
        fix: 'return the fingerprint as a string (hex or base64url)',
      });
    }
    hit.fingerprint = fp;
  }
  return hit;
}

/**
 * Scans `text` from `from`, appending hits (offsets + `base`). With `final` false, stops at the first
 * undecidable run and returns where it starts (or where a cut inside a long run falls, with a carry).
 * Text before `from` is only looked at as context (the character(s) before a run).
 */
export function scanPans(
  text: string,
  from: number,
  final: boolean,
  carry: ScanCarry | null,
  base: number,
  opts: PanScanOptions | undefined,
  hits: PanHit[],
): ScanResult {
  const sc = pooled ?? new Scratch();
  pooled = null;
  try {
    return scanWith(sc, text, from, final, carry, base, opts, hits);
  } finally {
    pooled = sc;
  }
}

function scanWith(
  sc: Scratch,
  text: string,
  from: number,
  final: boolean,
  carry: ScanCarry | null,
  base: number,
  opts: PanScanOptions | undefined,
  hits: PanHit[],
): ScanResult {
  const n = text.length;
  let pos = from;
  let cont = carry;
  while (cont !== null) {
    const done = parseRun(text, pos, final, sc, cont, 0);
    runCarry = cont;
    runIgnore = cont.ignore;
    runGluedBefore = false;
    runPlusBefore = false;
    const r = decide(text, sc, base, opts, hits, done, pos);
    if (r === null) {
      pos = sc.runEnd;
      cont = null;
    } else if (sc.limited) {
      pos = advance(pos, r);
      cont = r.carry;
    } else {
      return r;
    }
  }
  for (;;) {
    // Next digit-like code unit. Digit-dense text has a number every few characters, where a short
    // table-driven loop beats a regex call; past that, the regex skips prose at > 1 GB/s.
    let p = -1;
    const lim = pos + 12 < n ? pos + 12 : n;
    let q = pos;
    for (; q < lim; q++) {
      const cls = CLASS[text.charCodeAt(q)]!;
      if (cls <= 9 || cls === C_HIGH) {
        p = q;
        break;
      }
    }
    if (p < 0) {
      if (q >= n) break;
      SKIP.lastIndex = q;
      if (!SKIP.test(text)) break;
      p = SKIP.lastIndex - 1;
    }
    let first = CLASS[text.charCodeAt(p)]!;
    if (first > 9) {
      first = digitAt(text, p, n); // a high surrogate: an astral digit or not
      if (first === -2) {
        if (!final) return { safe: p, carry: null };
        break;
      }
      if (first < 0) {
        pos = p + 1;
        continue;
      }
    }
    // Fast path for the commonest number: a few BMP digits that end at a non-separator, or at one
    // separator followed by a non-separator ("16:37", "order 42 shipped"). Same outcome as parseRun.
    if (first === CLASS[text.charCodeAt(p)]) {
      let e = p + 1;
      while (e < n && CLASS[text.charCodeAt(e)]! <= 9) e++;
      if (e - p < MIN_PAN_DIGITS && e + 1 < n) {
        const k1 = CLASS[text.charCodeAt(e)]!;
        if (k1 > C_HIGH || (k1 >= C_GAP_MIN && k1 <= C_GAP_MAX && CLASS[text.charCodeAt(e + 1)]! > C_HIGH)) {
          pos = e;
          continue;
        }
      }
    }
    const done = parseRun(text, p, final, sc, null, first);
    if (done && (sc.total < MIN_PAN_DIGITS || !sc.startable)) {
      pos = sc.runEnd; // most numbers cannot hold a PAN: nothing to decide
      continue;
    }
    const before = p > 0 ? text.charCodeAt(p - 1) : 0;
    runCarry = null;
    // IBAN / creditor reference: CC + two check digits at a word start, then more digit groups.
    runIgnore =
      sc.gLen[0] === 2 &&
      sc.k > 1 &&
      p >= 2 &&
      isUpperAscii(before) &&
      isUpperAscii(text.charCodeAt(p - 2)) &&
      !wordBefore(text, p - 2) &&
      !(p >= 3 && CLASS[text.charCodeAt(p - 3)]! <= 9);
    runGluedBefore = wordBefore(text, p);
    runPlusBefore = p > 0 && CLASS[before] === C_PLUS;
    let r = decide(text, sc, base, opts, hits, done, p);
    // A run longer than MAX_GROUPS groups is decided piecewise, through the same cut-and-carry path
    // the streaming masker uses between chunks.
    while (r !== null && sc.limited) {
      const c = r.carry!;
      pos = advance(pos, r);
      const d = parseRun(text, pos, final, sc, c, 0);
      runCarry = c;
      runIgnore = c.ignore;
      runGluedBefore = false;
      runPlusBefore = false;
      r = decide(text, sc, base, opts, hits, d, pos);
    }
    if (r !== null) return r;
    pos = sc.runEnd;
  }
  // A trailing lone high surrogate that may start an astral digit was held above (digitAt → -2);
  // any other can be emitted: it is neither a digit, a separator nor glue.
  return { safe: n, carry: null };
}

/** The cut a bounded step of a long run produced; it must move forward (a hang is worse than an error). */
function advance(pos: number, r: ScanResult): number {
  if (r.safe <= pos || r.carry === null) {
    throw new AttestError('MASK_INTERNAL', 'PAN scanner made no progress on a long digit run', {
      fix: 'report this as a bug in services/common/src/masking (MAX_GROUPS must exceed MAX_PAN_DIGITS + 1)',
    });
  }
  return r.safe;
}

/** Evaluates a parsed run; returns a ScanResult when the scan must stop here (streaming). */
function decide(
  text: string,
  sc: Scratch,
  base: number,
  opts: PanScanOptions | undefined,
  hits: PanHit[],
  done: boolean,
  runStart: number,
): ScanResult | null {
  const ignore = runIgnore;
  evaluateRun(text, sc, base, opts, hits);
  if (done) return null;
  const upTo = evaluation.upTo;
  // Unfinished run: everything before the first undecided group is final. Cut just after the last
  // digit of the group before it, so the held text starts with the gap (or digits continuing a
  // long group) and resumes as a continuation carrying what rule 3 needs to know about that group.
  if (upTo === 0) return { safe: runStart, carry: null };
  return {
    safe: sc.gEnd[upTo - 1]!,
    carry: { ignore, prevHit: evaluation.lastHitEnd === upTo - 1 },
  };
}
