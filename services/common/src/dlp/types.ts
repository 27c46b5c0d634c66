import type { PanHit } from '../masking/index';

/**
 * Shared vocabulary of the DLP engine. Everything here is data: detectors return spans, the engine
 * resolves them and applies strategies, nothing performs I/O.
 */

/** Kinds of data, used by policy (which findings to raise) and by reports. */
export const DLP_CATEGORIES = ['card', 'sad', 'bank', 'government_id', 'contact', 'secret', 'custom'] as const;
export type DlpCategory = (typeof DLP_CATEGORIES)[number];

/** Same symbols as the Avro `Severity` enum, so findings map onto events without translation. */
export const DLP_SEVERITIES = ['info', 'low', 'medium', 'high', 'critical'] as const;
export type DlpSeverity = (typeof DLP_SEVERITIES)[number];

/**
 * - redact: `[REDACTED:<detector>]`;
 * - partial: a detector-specific masked form (first six / last four for PANs);
 * - token: `[TOKEN:<detector>:<keyed hash>]`, the same value always gives the same token under one key;
 * - drop: the whole string (field) is removed, or the whole event content when policy says so.
 */
export const DLP_STRATEGIES = ['redact', 'partial', 'token', 'drop'] as const;
export type DlpStrategy = (typeof DLP_STRATEGIES)[number];

/** One detection, in UTF-16 offsets of the scanned string. */
export interface DlpSpan {
  readonly start: number;
  readonly end: number;
  readonly detectorId: string;
  /** 0..1; detectors set a base value, context words move it. */
  confidence: number;
  /**
   * Canonical form of the value (ASCII digits of a PAN, IBAN without spaces, lower-cased e-mail), so
   * that tokens and fingerprints do not depend on layout. In memory only: never copied into findings.
   */
  readonly normalized?: string;
  /** PAN metadata when the detector has it (allowed in evidence: PCI DSS 3.4.1). */
  readonly pan?: { readonly bin: string; readonly last4: string; readonly digitCount: number; readonly brand: string };
}

/** Words near a match that make it more or less likely to be what the detector says. */
export interface ContextWords {
  readonly boost?: readonly string[];
  readonly suppress?: readonly string[];
  /** Characters before the match searched for words (after the match: half as many). */
  readonly windowChars?: number;
}

export interface Detector {
  readonly id: string;
  readonly category: DlpCategory;
  readonly severity: DlpSeverity;
  /**
   * Overlap rank: when two detections overlap, the higher one names the whole region. Structure
   * with a checksum or an unambiguous envelope (track data, PEM block, JWT) ranks above bare
   * formats (phone, e-mail), which rank above custom patterns.
   */
  readonly specificity: number;
  /** What validates a candidate beyond its shape, for documentation and reports. */
  readonly check: string;
  readonly context?: ContextWords;
  /** 'digit': cannot match a string without a (Unicode) decimal digit, so the scan skips it there. */
  readonly requires?: 'digit';
  /** Default strategy when the policy does not name one. */
  readonly defaultStrategy: DlpStrategy;
  detect(text: string, ctx: ScanContext): DlpSpan[];
  /** The 'partial' form of a value; detectors without one fall back to redact. */
  partial?(value: string, span: DlpSpan): string;
}

/** A PAN hit with its ASCII digits (kept in memory for tokens; never put in a finding). */
export interface PanWithDigits extends PanHit {
  readonly digits: string;
}

export interface PanAnchor {
  readonly start: number;
  readonly end: number;
  /** Amex cards have a 4-digit card code (CID); others 3. */
  readonly amex: boolean;
}

/** Per-string scan state shared by detectors (computed lazily, at most once per string). */
export interface ScanContext {
  /** Clear PANs found by the PAN engine. */
  pans(): readonly PanWithDigits[];
  /** Spans of card numbers, clear or already masked (411111******1111), for CVV/expiry proximity. */
  panAnchors(): readonly PanAnchor[];
}

/** Key for tokens and fingerprints: HMAC-SHA-256; pass the PAN HMAC key to make PAN tokens lookup-compatible. */
export interface DlpKey {
  readonly kid: string;
  readonly secret: Uint8Array;
}
