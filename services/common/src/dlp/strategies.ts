/**
 * What a strategy writes in place of a region. 'drop' is not rendered here: it removes the whole
 * string (or content), which scan.ts and json.ts decide.
 */
import { createHmac } from 'node:crypto';
import { AttestError } from '../errors';
import type { Detector, DlpKey, DlpSpan, DlpStrategy } from './types';

/** Characters of the keyed hash kept in a token: 96 bits, plenty to tell values apart in one tenant. */
export const TOKEN_CHARS = 16;

export function redacted(detectorId: string): string {
  return `[REDACTED:${detectorId}]`;
}

export function dropped(detectorIds: readonly string[]): string {
  return `[DROPPED:${[...new Set(detectorIds)].sort().join(',')}]`;
}

function checkKey(key: DlpKey | undefined): asserts key is DlpKey {
  if (key === undefined || !(key.secret instanceof Uint8Array) || key.secret.length < 32 || typeof key.kid !== 'string') {
    throw new AttestError('dlp_key_invalid', 'the token strategy and fingerprints need an HMAC key of at least 32 bytes', {
      fix: 'pass the processor HMAC key (e.g. the PAN HMAC key, so card tokens match `attest pan-lookup`)',
    });
  }
}

/**
 * HMAC-SHA-256 (base64url) of a value's canonical form. For PANs it is over the bare digits, exactly
 * like the evidence `panHmac`, so with the same key an investigator's card lookup finds DLP hits too;
 * other detectors prefix their id so equal strings of different kinds do not share a fingerprint.
 */
export function keyedHash(key: DlpKey | undefined, detectorId: string, canonical: string): string {
  checkKey(key);
  const h = createHmac('sha256', key.secret);
  if (detectorId !== 'pan') h.update(`${detectorId}:`, 'utf8');
  return h.update(canonical, 'utf8').digest('base64url');
}

export function canonicalValue(span: DlpSpan, text: string, start: number, end: number): string {
  return span.normalized !== undefined && span.start === start && span.end === end ? span.normalized : text.slice(start, end);
}

/** The replacement text for region [start, end) won by `span` of `detector`. */
export function render(
  strategy: Exclude<DlpStrategy, 'drop'>,
  detector: Detector,
  span: DlpSpan,
  text: string,
  start: number,
  end: number,
  key: DlpKey | undefined,
): string {
  switch (strategy) {
    case 'redact':
      return redacted(detector.id);
    case 'partial':
      // A partial form only describes the winner's own value; a wider region is redacted whole.
      if (detector.partial === undefined || span.start !== start || span.end !== end) return redacted(detector.id);
      return detector.partial(text.slice(start, end), span);
    case 'token':
      return `[TOKEN:${detector.id}:${keyedHash(key, detector.id, canonicalValue(span, text, start, end)).slice(0, TOKEN_CHARS)}]`;
    default: {
      const never: never = strategy;
      return never;
    }
  }
}
