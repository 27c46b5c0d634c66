import { createHash, createHmac } from 'node:crypto';
import { AttestError } from '../errors';

/**
 * The digest that ties an approval to one request: an ask-and-retry retry is released only when its
 * digest equals the approved one, so an approval for "summarise ticket 42" cannot be spent on
 * "export every customer". The body is canonicalised first (keys sorted, no insignificant
 * whitespace), so a client re-serialising the same request differently still matches.
 *
 * Compute it over the body as forwarded, i.e. after request masking: an unkeyed SHA-256 of text that
 * may hold a raw PAN can be brute-forced (PCI DSS 3.5.1.1). When the body can hold raw card data
 * (masking action 'allow'), pass `hmacKey` (e.g. the PAN HMAC key) for a keyed digest.
 */

export interface DigestableRequest {
  /** HTTP method, compared case-insensitively. */
  readonly method: string;
  /** The gateway's route name (e.g. 'messages'), not the raw path. */
  readonly route: string;
  readonly model: string;
  /** The parsed JSON body. */
  readonly body: unknown;
}

/** Nesting deeper than this is refused rather than risking the stack; real requests are shallow. */
export const MAX_CANONICAL_DEPTH = 256;

/** Domain separation: a request digest never equals a digest of anything else Attest hashes. */
const DOMAIN = 'attest.approval.request.v1\n';

export type DigestError = AttestError<'approval_digest_invalid'>;

/**
 * Canonical JSON in the manner of RFC 8785 (JCS): object keys sorted by UTF-16 code units, no
 * whitespace, numbers and strings as ECMAScript's JSON.stringify writes them (which is what JCS
 * specifies). Properties whose value is undefined are left out, as JSON.stringify does. Throws
 * approval_digest_invalid for values JSON cannot carry (non-finite numbers, bigint, functions,
 * undefined in an array, cycles) or nesting beyond MAX_CANONICAL_DEPTH.
 */
export function canonicalJson(value: unknown): string {
  return write(value, 0, new Set());
}

function invalid(message: string): DigestError {
  return new AttestError('approval_digest_invalid', message, { fix: 'digest only parsed JSON request bodies' });
}

function write(value: unknown, depth: number, stack: Set<object>): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'string':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw invalid(`a non-finite number (${value}) has no JSON form`);
      return JSON.stringify(value); // -0 becomes 0, as in JCS
    case 'object':
      break;
    default:
      throw invalid(`a ${typeof value} has no JSON form`);
  }
  if (depth >= MAX_CANONICAL_DEPTH) throw invalid(`nesting deeper than ${MAX_CANONICAL_DEPTH}`);
  const obj = value as object;
  if (stack.has(obj)) throw invalid('a cyclic structure has no JSON form');
  stack.add(obj);
  let out: string;
  if (Array.isArray(obj)) {
    out = '[' + obj.map((v: unknown) => {
      if (v === undefined) throw invalid('undefined inside an array has no JSON form');
      return write(v, depth + 1, stack);
    }).join(',') + ']';
  } else {
    const rec = obj as Record<string, unknown>;
    // Default sort compares UTF-16 code units, which is JCS's order.
    const keys = Object.keys(rec).filter((k) => rec[k] !== undefined).sort();
    out = '{' + keys.map((k) => JSON.stringify(k) + ':' + write(rec[k], depth + 1, stack)).join(',') + '}';
  }
  stack.delete(obj);
  return out;
}

/** Hex SHA-256 (or HMAC-SHA-256 with `hmacKey`) of the canonical request. */
export function requestDigest(req: DigestableRequest, opts: { hmacKey?: Uint8Array } = {}): string {
  const text = DOMAIN + canonicalJson({ method: req.method.toUpperCase(), route: req.route, model: req.model, body: req.body });
  const h = opts.hmacKey === undefined ? createHash('sha256') : createHmac('sha256', opts.hmacKey);
  return h.update(text, 'utf8').digest('hex');
}

const HEX64 = /^[0-9a-f]{64}$/;

export function isRequestDigest(value: unknown): value is string {
  return typeof value === 'string' && HEX64.test(value);
}
