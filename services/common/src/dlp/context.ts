/**
 * Context words: a match with "cvv", "ssn" or "phone" just before it is more likely what the detector
 * says; one next to "order", "invoice" or "tracking" less. Words are matched case-insensitively on
 * word boundaries, in a window before the match and half that window after it.
 */
import type { ContextWords, DlpSpan } from './types';

const DEFAULT_WINDOW = 48;
/** How far a boost or a suppress word moves the confidence. */
export const BOOST = 0.35;
export const SUPPRESS = 0.45;

const compiled = new WeakMap<readonly string[], RegExp>();

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** One regex per word list (cached by list identity): any of the words, not inside a longer word. */
export function wordsRegex(words: readonly string[]): RegExp {
  let re = compiled.get(words);
  if (re === undefined) {
    const alts = [...words].sort((a, b) => b.length - a.length).map((w) => escapeRe(w).replace(/ /g, '[\\s_-]?'));
    re = new RegExp(`(?<![A-Za-z0-9])(?:${alts.join('|')})(?![A-Za-z])`, 'i');
    compiled.set(words, re);
  }
  return re;
}

/** Whether one of `words` occurs within `windowChars` before [start, end) or half of it after. */
export function wordNear(
  text: string,
  start: number,
  end: number,
  words: readonly string[] | undefined,
  windowChars = DEFAULT_WINDOW,
): boolean {
  if (words === undefined || words.length === 0) return false;
  const re = wordsRegex(words);
  if (re.test(text.slice(Math.max(0, start - windowChars), start))) return true;
  return re.test(text.slice(end, Math.min(text.length, end + (windowChars >> 1))));
}

/** Moves a span's confidence by the detector's context words (clamped to 0..0.99). */
export function applyContext(text: string, span: DlpSpan, ctx: ContextWords | undefined): void {
  if (ctx === undefined) return;
  const w = ctx.windowChars ?? DEFAULT_WINDOW;
  let c = span.confidence;
  if (wordNear(text, span.start, span.end, ctx.boost, w)) c += BOOST;
  if (wordNear(text, span.start, span.end, ctx.suppress, w)) c -= SUPPRESS;
  span.confidence = Math.max(0, Math.min(0.99, c));
}
