import { randomBytes } from 'node:crypto';
import { maskPans } from '../../../common/src/masking';

/**
 * A tiny escaping template: every interpolated value is HTML-escaped unless it is already `Html`
 * (the output of another `html` template). Attribute values are always written in double quotes,
 * so escaping & < > " ' is enough for both text and attributes.
 */
export class Html {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

type Part = Html | string | number | null | undefined | false | readonly Part[];

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => ESCAPES[c] as string);

function render(part: Part): string {
  if (part === null || part === undefined || part === false) return '';
  if (part instanceof Html) return part.value;
  if (Array.isArray(part)) return (part as readonly Part[]).map(render).join('');
  return escapeHtml(String(part));
}

export function html(strings: TemplateStringsArray, ...values: Part[]): Html {
  let out = strings[0] ?? '';
  for (let i = 0; i < values.length; i++) out += render(values[i]) + (strings[i + 1] ?? '');
  return new Html(out);
}

/**
 * Text from the approval domain shown to a reviewer. The domain already masked it; masking again
 * here means a domain bug still cannot put a full card number on a reviewer's screen.
 */
export const shown = (text: string): string => maskPans(text, 'bin6-last4').text;

/** A fresh nonce per response for the inline style and script (CSP Level 2+). */
export const cspNonce = (): string => randomBytes(18).toString('base64');

/**
 * Nothing but our own inline style and script (by nonce), forms only to ourselves, no framing, no
 * network access from the page at all.
 */
export const contentSecurityPolicy = (nonce: string): string =>
  [
    "default-src 'none'",
    `style-src 'nonce-${nonce}'`,
    `script-src 'nonce-${nonce}'`,
    "img-src 'none'",
    "connect-src 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
  ].join('; ');

/** Headers on every reviewer page. */
export const pageHeaders = (nonce: string): Record<string, string> => ({
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': contentSecurityPolicy(nonce),
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  // same-origin, not no-referrer: with no-referrer Chrome sends `Origin: null` on our own form posts.
  'referrer-policy': 'same-origin',
  'cross-origin-opener-policy': 'same-origin',
});
