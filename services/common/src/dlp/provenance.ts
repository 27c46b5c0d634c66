/**
 * Provenance of derived content (invariant 5). When the processor redacts more than the gateway did,
 * it writes a new `data.masked` event that names the original event (id and chain hash) and the rules
 * applied, signed by the processor's own producer key; the store keeps the redacted content and the
 * original chain still verifies, because the original event is never rewritten.
 *
 * `originalDigest` carries the original event's chain hash, not a SHA-256 of the content before this
 * pass: that content may still hold a PAN the gateway missed, and an unkeyed hash of card data can be
 * brute-forced (PCI DSS 3.5.1.1); the event hash covers ids, times and signatures as well, is already
 * public in the chain, and is what a verifier looks up.
 */
import { hash } from 'node:crypto';
import type { DataMaskedPayload, Detector as AvroDetector, Direction, MaskAction, MaskHit } from '../events/types.generated';
import type { DlpJsonResult } from './json';
import type { DlpApplied, DlpFinding } from './scan';
import type { DlpStrategy } from './types';

export interface OriginalEventRef {
  readonly eventId: string;
  /** SHA-256 of the original event's encoded bytes, as in its producer's hash chain. */
  readonly eventHash: Uint8Array;
}

export interface DerivedContent {
  /** The payload of the new `data.masked` event (the processor adds envelope, signs and appends it). */
  readonly payload: DataMaskedPayload;
  /** The rules applied, per detector and strategy. */
  readonly rules: readonly DlpApplied[];
  readonly changedPaths: readonly string[];
  /** What the store keeps instead of the original content. */
  readonly redactedContent: DlpJsonResult['value'];
}

/** JSON with object keys sorted, so equal content always has the same digest. */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
    .join(',')}}`;
}

const AVRO_DETECTORS: ReadonlySet<string> = new Set(['pan', 'track_data', 'cvv']);

/** The Avro `Detector` symbol; ids the enum does not have yet map to 'unknown' (ruleId keeps the detail). */
export function avroDetector(detectorId: string): AvroDetector {
  if (AVRO_DETECTORS.has(detectorId)) return detectorId as AvroDetector;
  return detectorId.startsWith('custom.') ? 'custom' : 'unknown';
}

export function maskAction(s: DlpStrategy): MaskAction {
  switch (s) {
    case 'redact':
    case 'partial':
      return 'masked';
    case 'token':
      return 'tokenized';
    case 'drop':
      return 'dropped';
    default: {
      const never: never = s;
      return never;
    }
  }
}

/** `content[N]` in a Messages API path is the content block index. */
function contentBlockIndex(path: string): number | null {
  const m = /\.content\[(\d+)\]/.exec(path);
  return m === null ? null : Number(m[1]);
}

export function maskHits(findings: readonly DlpFinding[], direction: Direction): MaskHit[] {
  return findings
    .filter((f) => f.kind === 'data_masked')
    .map((f) => {
      const path = f.location.jsonPath ?? '$';
      const isPan = f.pan !== undefined;
      return {
        ruleId: `dlp.${f.detectorId}`,
        detector: avroDetector(f.detectorId),
        direction,
        location: { jsonPath: path, contentBlockIndex: contentBlockIndex(path), charOffset: f.location.charOffset },
        bin: isPan ? f.pan.bin : null,
        last4: isPan ? f.pan.last4 : null,
        panHmac: isPan && f.fingerprint !== undefined ? Buffer.from(f.fingerprint, 'base64url') : null,
        panHmacKeyId: isPan && f.keyId !== undefined ? f.keyId : null,
        action: maskAction(f.strategy),
      };
    });
}

/**
 * The derived-content record for one scanned content, or null when the pass changed nothing (then no
 * event is written: the gateway's masking already covered everything).
 */
export function deriveProvenance(
  original: OriginalEventRef,
  result: DlpJsonResult,
  direction: Direction,
  /** SHA-256 of the redacted event the store keeps instead of the original (see data.masked's redactedEventDigest). */
  redactedEventDigest: Buffer | null = null,
): DerivedContent | null {
  if (result.changes.length === 0) return null;
  return {
    payload: {
      subjectEventId: original.eventId,
      originalDigest: Buffer.from(original.eventHash),
      maskedDigest: hash('sha256', canonicalJson(result.value), 'buffer'),
      redactedEventDigest,
      hits: maskHits(result.findings, direction),
    },
    rules: result.applied,
    changedPaths: result.changedPaths,
    redactedContent: result.value,
  };
}
