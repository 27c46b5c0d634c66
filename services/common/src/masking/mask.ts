import { AttestError } from '../errors';
import { MAX_PAN_DIGITS, MIN_PAN_DIGITS, mayContainDigit, scanPans, type PanHit, type PanScanOptions, type ScanCarry } from './scanner';

export type PanMaskFormat = 'bin6-last4' | 'last4';

const STARS: string[] = [];
for (let n = 0; n <= MAX_PAN_DIGITS; n++) STARS.push('*'.repeat(n));

function checkFormat(format: unknown): asserts format is PanMaskFormat {
  if (format !== 'bin6-last4' && format !== 'last4') {
    throw new AttestError('MASK_INVALID_FORMAT', 'unknown PAN mask format', {
      fix: "use 'bin6-last4' (PCI DSS 3.4.1 maximum) or 'last4'",
    });
  }
}

const SIX_DIGITS = /^[0-9]{6}$/;
const FOUR_DIGITS = /^[0-9]{4}$/;

/**
 * The masked text for a PAN: keeps the digit count. 'bin6-last4' → first six, '*' for the middle,
 * last four (411111******1111); 'last4' → '*' then the last four (************1111).
 */
export function maskedForm(bin: string, last4: string, digitCount: number, format: PanMaskFormat): string {
  checkFormat(format);
  if (
    !SIX_DIGITS.test(bin) ||
    !FOUR_DIGITS.test(last4) ||
    !Number.isInteger(digitCount) ||
    digitCount < MIN_PAN_DIGITS ||
    digitCount > MAX_PAN_DIGITS
  ) {
    throw new AttestError('MASK_INVALID_ARGUMENT', 'maskedForm needs a 6-digit BIN, 4 last digits and 13–19 digits');
  }
  return format === 'last4' ? STARS[digitCount - 4]! + last4 : bin + STARS[digitCount - 10]! + last4;
}

function formFor(h: PanHit, format: PanMaskFormat): string {
  return format === 'last4' ? STARS[h.digitCount - 4]! + h.last4 : h.bin + STARS[h.digitCount - 10]! + h.last4;
}

/** text[from..to) with every hit span (absolute offsets, `base` = absolute offset of text[0]) masked. */
function render(text: string, from: number, to: number, hits: readonly PanHit[], base: number, format: PanMaskFormat): string {
  if (hits.length === 0) return from === 0 && to === text.length ? text : text.slice(from, to);
  let out = '';
  let p = from;
  for (const h of hits) {
    out += text.slice(p, h.start - base) + formFor(h, format);
    p = h.end - base;
  }
  return out + text.slice(p, to);
}

function checkText(text: unknown): asserts text is string {
  if (typeof text !== 'string') {
    throw new AttestError('MASK_INVALID_INPUT', `expected a string to scan, got ${typeof text}`);
  }
}

/** All PANs in `text`, in order, non-overlapping. */
export function findPans(text: string, opts?: PanScanOptions): PanHit[] {
  checkText(text);
  const hits: PanHit[] = [];
  scanPans(text, 0, true, null, 0, opts, hits);
  return hits;
}

/** `text` with every PAN span (digits and the separators inside it) replaced by its masked form. */
export function maskPans(text: string, format: PanMaskFormat, opts?: PanScanOptions): { text: string; hits: PanHit[] } {
  checkText(text);
  checkFormat(format);
  const hits: PanHit[] = [];
  scanPans(text, 0, true, null, 0, opts, hits);
  return { text: render(text, 0, text.length, hits, 0, format), hits };
}

/**
 * Incremental masker for one text stream (e.g. one content block of an SSE response). For any split of
 * a text into chunks, the concatenation of push() results and end() equals maskPans(whole).text, and
 * `hits` equals its hits (offsets in the concatenated stream).
 *
 * Only the tail that could still become part of a PAN is held back: a trailing run of digits and
 * separators, cut further to its undecided part once the run is longer than 19 digits (so a 1 MB digit
 * string streams through, held to at most about one PAN's worth). A trailing lone high surrogate that
 * may start an astral digit is held too (one unit), so a pair split across chunks is classified whole.
 */
/** Look-behind the scanner needs before a run's first digit (IBAN check: "CC" + a boundary, ≤ 4 units). */
const CTX_UNITS = 4;

export class StreamingPanMasker {
  private readonly format: PanMaskFormat;
  private readonly opts: PanScanOptions;
  private readonly found: PanHit[] = [];
  /** Hits of the current step (reused: a stream makes thousands of steps). */
  private readonly stepHits: PanHit[] = [];
  /** Up to 4 UTF-16 units of original text just before `held`: the context a run's start is judged by. */
  private ctx = '';
  private held = '';
  /** Absolute stream offset of held[0]. */
  private heldStart = 0;
  private carry: ScanCarry | null = null;
  private done = false;

  constructor(opts: { format: PanMaskFormat } & PanScanOptions) {
    checkFormat(opts?.format);
    this.format = opts.format;
    this.opts = opts.hashPan === undefined ? {} : { hashPan: opts.hashPan };
  }

  get hits(): readonly PanHit[] {
    return this.found;
  }

  get heldBack(): number {
    return this.held.length;
  }

  push(chunk: string): string {
    if (this.done) throw new AttestError('MASK_STREAM_ENDED', 'push() after end() on a StreamingPanMasker');
    checkText(chunk);
    if (chunk.length === 0) return '';
    if (this.held.length === 0 && this.carry === null && !mayContainDigit(chunk)) {
      // Most deltas: nothing held and no digit in sight, so nothing to decide. Pass the chunk through
      // and keep the context a later run's start is judged by.
      this.ctx = chunk.length >= CTX_UNITS ? chunk.slice(-CTX_UNITS) : (this.ctx + chunk).slice(-CTX_UNITS);
      this.heldStart += chunk.length;
      return chunk;
    }
    return this.step(this.held + chunk, false);
  }

  end(): string {
    if (this.done) throw new AttestError('MASK_STREAM_ENDED', 'end() called twice on a StreamingPanMasker');
    this.done = true;
    return this.step(this.held, true);
  }

  private step(pending: string, final: boolean): string {
    const text = this.ctx + pending;
    const from = this.ctx.length;
    const base = this.heldStart - from;
    const hits = this.stepHits;
    hits.length = 0;
    const r = scanPans(text, from, final, this.carry, base, this.opts, hits);
    const out = render(text, from, r.safe, hits, base, this.format);
    for (let i = 0; i < hits.length; i++) this.found.push(hits[i]!);
    this.ctx = text.slice(Math.max(0, r.safe - CTX_UNITS), r.safe);
    this.held = text.slice(r.safe);
    this.heldStart = base + r.safe;
    this.carry = r.carry;
    return out;
  }
}
