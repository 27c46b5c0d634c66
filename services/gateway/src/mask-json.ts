import { findPans, maskPans, type PanHit, type PanMaskFormat } from '../../common/src/masking';

/**
 * Masks card numbers in a parsed JSON request or response body, in place.
 *
 * Every string anywhere in the body, object keys included, is scanned (messages, system, tool results,
 * tool inputs, documents), not a list of known fields: a new content type must not become a way around masking. Skipped are
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
  const walk: Walk = { opts, scanOpts: opts.hashPan ? { hashPan: opts.hashPan } : undefined, hits: [], path: [] };
  visit(walk, root);
  return walk.hits;
}

/** Walk state; module-level functions (no per-call closures) keep the no-card path cheap. */
interface Walk {
  opts: MaskJsonOptions;
  scanOpts: { hashPan: (digits: string) => string } | undefined;
  hits: LocatedHit[];
  /** Keys and indexes down to the current value; joined into a JSON path only when a hit is found. */
  path: Array<string | number>;
}

function pathString(path: Array<string | number>): string {
  let out = '';
  for (const p of path) {
    // A key that holds a card number (kept as is when the action is allow or block) is named
    // `{key}`: locations go into evidence, which never holds a PAN. Only run when a hit is found.
    const seg = typeof p === 'string' && p.length >= MIN_PAN_KEY_CHARS && DIGIT.test(p) && findPans(p).length > 0 ? '{key}' : p;
    out += typeof seg === 'number' ? `[${seg}]` : out ? `.${seg}` : seg;
  }
  return out;
}

function scanString(w: Walk, s: string): string {
  const r = w.opts.rewrite ? maskPans(s, w.opts.format, w.scanOpts) : { text: s, hits: findPans(s, w.scanOpts) };
  if (r.hits.length > 0) {
    const location = pathString(w.path);
    for (const hit of r.hits) w.hits.push({ hit, location });
  }
  return r.text;
}

function visit(w: Walk, value: unknown): unknown {
  if (typeof value === 'string') return scanString(w, value);
  if (typeof value === 'number') {
    // Only safe integers can be read back exactly; a PAN beyond 2^53 was already altered by JSON.parse.
    if (Number.isSafeInteger(value) && Math.abs(value) >= MIN_PAN_INT) {
      const s = String(Math.abs(value));
      const masked = scanString(w, s);
      return masked === s ? value : masked;
    }
    return value;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      w.path.push(i);
      value[i] = visit(w, value[i]);
      w.path.pop();
    }
    return value;
  }
  if (value !== null && typeof value === 'object') {
    const obj = maskKeys(w, value as Record<string, unknown>);
    for (const key in obj) {
      if (!Object.hasOwn(obj, key) || isOpaque(key, obj)) continue;
      const v = obj[key];
      if (v === null || typeof v === 'boolean') continue;
      w.path.push(key);
      const out = visit(w, v);
      if (out !== v) obj[key] = out;
      w.path.pop();
    }
    return obj;
  }
  return value;
}

/**
 * Object keys are text too (tool input schemas and tool inputs have caller-chosen property names):
 * a card number there is found and, when rewriting, the key is renamed to its masked form. The
 * location names the object and `{key}`, never the key itself.
 */
function maskKeys(w: Walk, obj: Record<string, unknown>): Record<string, unknown> {
  let renamed: Map<string, string> | undefined;
  for (const key in obj) {
    if (key.length < MIN_PAN_KEY_CHARS || !Object.hasOwn(obj, key) || !DIGIT.test(key)) continue;
    w.path.push('{key}');
    const masked = scanString(w, key);
    w.path.pop();
    if (masked !== key) (renamed ??= new Map()).set(key, masked);
  }
  if (renamed === undefined || !w.opts.rewrite) return obj;
  // In place (the root object is the caller's): a renamed key moves to the end, which JSON object
  // semantics ignore.
  for (const [key, masked] of renamed) {
    const v = obj[key];
    delete obj[key];
    obj[masked] = v;
  }
  return obj;
}

/** The shortest key that can hold a PAN (13 digits); shorter keys are not scanned. */
const MIN_PAN_KEY_CHARS = 13;
const DIGIT = /\d/;
