/**
 * E-mail addresses and phone numbers. Neither has a checksum, so shape and context decide:
 * - e-mail: RFC 5321-ish local part, a dotted domain with an alphabetic TLD; image names
 *   ("icon@2x.png"), package specs ("lodash@4.17.21"), SSH/git remotes ("git@github.com:org/repo") and
 *   URL user-info ("ssh://git@host/…") are refused;
 * - phone: "+" international numbers (8–15 digits, E.164), North American numbers with valid area
 *   and exchange codes, and other national formats only with a phone word near. Dates, IP addresses,
 *   versions, amounts and ids glued to letters are refused by boundaries.
 */
import type { Detector, DlpSpan } from '../types';

const EMAIL_RE =
  /(?<![A-Za-z0-9._%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,24}))(?![A-Za-z0-9-]|\.[A-Za-z0-9])/g;
const FILE_TLDS = new Set(['png', 'jpg', 'jpeg', 'gif', 'svg', 'webp', 'ico', 'bmp', 'css', 'js', 'mjs', 'ts', 'map', 'json', 'txt', 'pdf', 'md', 'html', 'xml', 'yaml', 'yml', 'lock', 'tgz', 'zip', 'py', 'rb', 'go', 'rs']);

export const email: Detector = {
  id: 'email',
  category: 'contact',
  severity: 'low',
  specificity: 40,
  check: 'local@domain with an alphabetic TLD; file names, git remotes and URL user-info refused',
  defaultStrategy: 'token',
  context: { boost: ['email', 'e-mail', 'mail', 'contact', 'mailto'] },
  detect(text) {
    if (!text.includes('@')) return [];
    const out: DlpSpan[] = [];
    for (const m of text.matchAll(EMAIL_RE)) {
      const tld = m[2]!.toLowerCase();
      if (FILE_TLDS.has(tld)) continue;
      const end = m.index + m[0].length;
      // git@github.com:org/repo.git and ssh://git@host/…: a remote, not a mailbox.
      if (text.charCodeAt(end) === 58 /* : */ && /[A-Za-z0-9~_]/.test(text[end + 1] ?? '')) continue;
      if (text.slice(Math.max(0, m.index - 3), m.index) === '://') continue;
      // scheme://user:secret@host: the "secret@host" part is a URL's user-info, not a mailbox.
      if (text.charCodeAt(m.index - 1) === 58 && /:\/\/[^\s/@]{0,128}:$/.test(text.slice(Math.max(0, m.index - 160), m.index))) continue;
      out.push({ start: m.index, end, detectorId: 'email', confidence: 0.9, normalized: m[0].toLowerCase() });
    }
    return out;
  },
  partial(value) {
    const at = value.indexOf('@');
    return at <= 0 ? '[REDACTED:email]' : `${value[0]}***${value.slice(at)}`;
  },
};

/** "+" then 8–15 digits in groups (spaces, dots, dashes, one optional parenthesised group). */
const INTL_RE = /(?<![A-Za-z0-9+_.])\+[1-9][0-9]{0,3}(?:[ .-]?\(?[0-9]{1,5}\)?){1,6}(?![0-9A-Za-z]|[.-][0-9])/g;
/** North American: (NXX) NXX-XXXX, NXX-NXX-XXXX, NXX.NXX.XXXX, optionally 1- / +1 in front. */
const NANP_RE = /(?<![A-Za-z0-9_.+/-])(?:1[ .-])?(?:\(([2-9][0-9]{2})\) ?|([2-9][0-9]{2})([-. ]))([2-9][0-9]{2})[-. ]([0-9]{4})(?![0-9A-Za-z]|[.-][0-9])/g;
/** Other national formats: trunk 0, then 8–11 more digits in two or three groups. Needs a word. */
const NATIONAL_RE = /(?<![A-Za-z0-9_.+/-])0[1-9][0-9]{1,3}[ -]?[0-9]{3,4}[ -]?[0-9]{3,4}(?![0-9A-Za-z]|[.-/][0-9])/g;

function digitCount(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) n++;
  }
  return n;
}

export const phone: Detector = {
  id: 'phone',
  requires: 'digit',
  category: 'contact',
  severity: 'low',
  specificity: 30,
  check: 'E.164 length, NANP area/exchange codes, national formats only with a phone word',
  defaultStrategy: 'redact',
  context: {
    boost: ['phone', 'tel', 'telephone', 'call', 'mobile', 'cell', 'fax', 'whatsapp', 'sms', 'text me', 'dial', 'hotline', 'contact', 'reach'],
    suppress: ['order', 'invoice', 'ticket', 'sku', 'tracking', 'version', 'ip', 'serial', 'isbn', 'ssn', 'account', 'acct', 'ref', 'build', 'po', 'total', 'amount', 'id'],
  },
  detect(text) {
    const out: DlpSpan[] = [];
    if (text.includes('+')) {
      for (const m of text.matchAll(INTL_RE)) {
        const n = digitCount(m[0]);
        if (n < 8 || n > 15) continue;
        out.push({ start: m.index, end: m.index + m[0].length, detectorId: 'phone', confidence: 0.8 });
      }
    }
    for (const m of text.matchAll(NANP_RE)) {
      const area = m[1] ?? m[2] ?? '';
      const exchange = m[4] ?? '';
      // N11 codes (411, 911, …) are services, not areas or exchanges.
      if (area.slice(1) === '11' || exchange.slice(1) === '11') continue;
      // Same separator on both sides for the dashed/dotted form ("415-555.0132" is not a layout).
      if (m[3] !== undefined && m[0].charAt(m[0].length - 5) !== m[3]) continue;
      const confidence = m[1] !== undefined ? 0.75 : m[3] === '-' ? 0.6 : 0.5;
      out.push({ start: m.index, end: m.index + m[0].length, detectorId: 'phone', confidence });
    }
    for (const m of text.matchAll(NATIONAL_RE)) {
      const n = digitCount(m[0]);
      if (n < 10 || n > 12) continue;
      out.push({ start: m.index, end: m.index + m[0].length, detectorId: 'phone', confidence: 0.3 });
    }
    return out;
  },
  partial(value) {
    const d = value.replace(/[^0-9]/g, '');
    return `***${d.slice(-4)}`;
  },
};
