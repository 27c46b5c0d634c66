/**
 * The bulk-extraction detector: prompts that ask for data wholesale ('export all customers',
 * 'dump the table', 'every card number'). Deliberately phrase-based and narrow: it feeds a human
 * approval, so a false positive costs an approver's minute, while a vague rule ('list all') would
 * hold half of every coding agent's traffic and train approvers to click without reading.
 */

// Word boundaries that understand Unicode letters and digits (\b is ASCII-only).
const B = '(?<![\\p{L}\\p{N}_])';
const E = '(?![\\p{L}\\p{N}_])';
const SP = '\\s+';

const SENSITIVE_NOUN =
  "(?:customers?|clients?|cardholders?|card" + SP + "numbers?|credit" + SP + "cards?|pans?|accounts?|records?|rows?|transactions?|users?'?" + SP +
  '(?:data|records|details|emails|passwords|addresses))';

const PHRASES: readonly RegExp[] = [
  // 'export all', 'dump every', 'download the entire', 'extract the whole'
  new RegExp(`${B}(?:export|dump|download|extract|exfiltrate)${SP}(?:all|every|everything|(?:the${SP})?(?:entire|whole|full))${E}`, 'iu'),
  // 'every customer', 'all card numbers', 'all of the customer records', 'all our cardholders'
  new RegExp(`${B}(?:all|every)(?:${SP}of)?(?:${SP}(?:the|our|their|your))?${SP}${SENSITIVE_NOUN}${E}`, 'iu'),
  // 'dump the table', 'dump this database', 'dump the whole db'
  new RegExp(`${B}dump(?:${SP}(?:the|a|this|that|our|entire|whole|full))*${SP}(?:tables?|databases?|db|schema|collections?)${E}`, 'iu'),
  // 'bulk export', 'mass download'
  new RegExp(`${B}(?:bulk|mass)${SP}(?:export|download|extract(?:ion)?|dump)${E}`, 'iu'),
];

/**
 * The first bulk-extraction phrase found in `text`, lower-cased with whitespace collapsed (it is
 * made only of the detector's own words, so it is safe to show in a reason), or undefined.
 */
export function detectBulkExtraction(text: string): string | undefined {
  let best: { index: number; phrase: string } | undefined;
  for (const re of PHRASES) {
    const m = re.exec(text);
    // The earliest hit in the text wins, so the reason does not depend on the table's order.
    if (m && (best === undefined || m.index < best.index)) best = { index: m.index, phrase: m[0] };
  }
  return best?.phrase.toLowerCase().replace(/\s+/gu, ' ');
}
