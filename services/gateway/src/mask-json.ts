import { findPans, maskPans, type PanHit, type PanMaskFormat } from '../../common/src/masking';

/**
 * Masks card numbers in a parsed JSON request or response body, in place.
 *
 * Every string anywhere in the body is scanned (messages, system, tool results, tool inputs, documents),
 * not a list of known fields: a new content type must not become a way around masking. Skipped are
 * only opaque blobs whose alteration would break the exchange and that carry no readable text: thinking
 * block signatures and base64/encrypted `data`. Integers that look like a PAN (13–19 digits) are
 * replaced by the masked string, since a masked PAN cannot be a JSON number.
 */

export type Direction = 'request' | 'response';

export interface LocatedHit {
  hit: PanHit;
  /** JSON path of the value, e.g. `messages[0].content[1].text`. */
  location: string;
}

export interface MaskJsonOptions {
  format: PanMaskFormat;
  hashPan?: (digits: string) => string;
  /** When false, only detect (for the `block` and `allow` actions); the body is left unchanged. */
  rewrite: boolean;
}

const MIN_PAN_INT = 1e12;

function isOpaque(key: string, parent: Record<string, unknown>): boolean {
  if (key === 'signature') return true;
  if (key === 'data') return parent.type === 'base64' || parent.type === 'redacted_thinking';
  return false;
}

export function maskJson(root: unknown, opts: MaskJsonOptions): LocatedHit[] {
  const hits: LocatedHit[] = [];
  const scanOpts = opts.hashPan ? { hashPan: opts.hashPan } : undefined;

  const scanString = (s: string, path: string): string => {
    if (opts.rewrite) {
      const r = maskPans(s, opts.format, scanOpts);
      for (const hit of r.hits) hits.push({ hit, location: path });
      return r.text;
    }
    for (const hit of findPans(s, scanOpts)) hits.push({ hit, location: path });
    return s;
  };

  const visit = (value: unknown, path: string): unknown => {
    if (typeof value === 'string') return scanString(value, path);
    if (typeof value === 'number') {
      // Only safe integers can be read back exactly; a PAN beyond 2^53 was already altered by JSON.parse.
      if (Number.isSafeInteger(value) && Math.abs(value) >= MIN_PAN_INT) {
        const s = String(Math.abs(value));
        const masked = scanString(s, path);
        return masked === s ? value : masked;
      }
      return value;
    }
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) value[i] = visit(value[i], `${path}[${i}]`);
      return value;
    }
    if (value !== null && typeof value === 'object') {
      const obj = value as Record<string, unknown>;
      for (const key of Object.keys(obj)) {
        if (isOpaque(key, obj)) continue;
        obj[key] = visit(obj[key], path ? `${path}.${key}` : key);
      }
      return value;
    }
    return value;
  };

  visit(root, '');
  return hits;
}
