/**
 * One string through the engine: detect → context → confidence floor → overlaps → strategies.
 */
import { AttestError } from '../errors';
import { mayContainDigit } from '../masking/scanner';
import { applyContext } from './context';
import { resolveOverlaps, type Region } from './overlap';
import { compileDlpPolicy, type CompiledDlpPolicy, type DlpPolicy } from './policy';
import { DlpScanContext } from './scan-context';
import { canonicalValue, dropped, keyedHash, render } from './strategies';
import type { DlpCategory, DlpKey, DlpSeverity, DlpSpan, DlpStrategy } from './types';

export interface DlpApplied {
  readonly detectorId: string;
  readonly strategy: DlpStrategy;
  readonly count: number;
}

/**
 * What was found and done, without the value: 'data_masked' for every region; 'data_security' as
 * well when the category is one the policy treats as data that must not be there (card data:
 * PCI DSS 12.10.7). Offsets are into the scanned string.
 */
export interface DlpFinding {
  readonly kind: 'data_masked' | 'data_security';
  readonly detectorId: string;
  readonly category: DlpCategory;
  readonly severity: DlpSeverity;
  readonly strategy: DlpStrategy;
  readonly confidence: number;
  readonly location: { readonly charOffset: number; readonly length: number; readonly jsonPath?: string };
  /** Other detectors that matched inside the same region. */
  readonly alsoMatched: readonly string[];
  /** Keyed hash of the value (HMAC-SHA-256, base64url) under `keyId`; for a PAN, the evidence panHmac. */
  readonly fingerprint?: string;
  readonly keyId?: string;
  /** For PANs: what PCI DSS 3.4.1 allows to show. */
  readonly pan?: { readonly bin: string; readonly last4: string; readonly brand: string };
}

export interface DlpResult {
  readonly text: string;
  /** Per detector and strategy, how many regions; sorted by detector id. */
  readonly applied: readonly DlpApplied[];
  readonly findings: readonly DlpFinding[];
  /** A 'drop' region was found: the string was replaced whole. */
  readonly dropped: boolean;
}

function compiled(policy: DlpPolicy | CompiledDlpPolicy): CompiledDlpPolicy {
  return 'byId' in policy ? policy : compileDlpPolicy(policy);
}

/** Regions of `text` above the confidence floors, overlaps resolved. */
export function detect(text: string, policy: DlpPolicy | CompiledDlpPolicy): Region[] {
  if (typeof text !== 'string') throw new AttestError('dlp_invalid_input', `expected a string to scan, got ${typeof text}`);
  const p = compiled(policy);
  const ctx = new DlpScanContext(text);
  const spans: DlpSpan[] = [];
  // Most strings in an event (roles, types, ids, prose) have no digit: half the detectors can skip them.
  const digits = mayContainDigit(text);
  for (const a of p.detectors) {
    if (a.detector.requires === 'digit' && !digits) continue;
    for (const s of a.detector.detect(text, ctx)) {
      applyContext(text, s, a.detector.context);
      if (s.confidence >= a.minConfidence) spans.push(s);
    }
  }
  return resolveOverlaps(spans, (id) => p.byId.get(id)?.detector.specificity ?? 0);
}

/**
 * Scans `text` and applies the policy's strategies. `key` is needed when a 'token' strategy fires, and
 * gives findings their fingerprints; without it findings carry none.
 */
export function scanAndApply(text: string, policy: DlpPolicy | CompiledDlpPolicy, key?: DlpKey): DlpResult {
  const p = compiled(policy);
  const regions = detect(text, p);
  if (regions.length === 0) return { text, applied: [], findings: [], dropped: false };

  const strategyOf = (r: Region): DlpStrategy => {
    // Sensitive authentication data anywhere in a region drops it, whoever won the overlap (3.3.1).
    if (r.members.some((m) => p.byId.get(m.detectorId)?.detector.category === 'sad')) return 'drop';
    return p.byId.get(r.winner.detectorId)?.strategy ?? 'redact';
  };
  const strategies = regions.map(strategyOf);
  const drop = strategies.includes('drop');

  let out = '';
  let pos = 0;
  const findings: DlpFinding[] = [];
  const counts = new Map<string, number>();
  regions.forEach((r, i) => {
    const a = p.byId.get(r.winner.detectorId)!;
    const d = a.detector;
    // Once anything drops the string, every region in it is gone with it.
    const strategy: DlpStrategy = drop ? 'drop' : strategies[i]!;
    if (strategy !== 'drop') {
      out += text.slice(pos, r.start) + render(strategy, d, r.winner, text, r.start, r.end, key);
      pos = r.end;
    }
    const k = `${d.id}\u0000${strategy}`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
    const base = {
      detectorId: d.id,
      category: d.category,
      severity: d.severity,
      strategy,
      confidence: Math.round(r.winner.confidence * 100) / 100,
      location: { charOffset: r.start, length: r.end - r.start },
      alsoMatched: [...new Set(r.members.map((m) => m.detectorId).filter((id) => id !== d.id))].sort(),
      ...(key === undefined ? {} : { fingerprint: keyedHash(key, d.id, canonicalValue(r.winner, text, r.start, r.end)), keyId: key.kid }),
      ...(r.winner.pan === undefined ? {} : { pan: { bin: r.winner.pan.bin, last4: r.winner.pan.last4, brand: r.winner.pan.brand } }),
    };
    findings.push({ kind: 'data_masked', ...base });
    if (r.members.some((m) => p.dataSecurityCategories.has(p.byId.get(m.detectorId)?.detector.category ?? 'custom'))) {
      findings.push({ kind: 'data_security', ...base });
    }
  });
  const applied = [...counts]
    .map(([k, count]) => {
      const [detectorId, strategy] = k.split('\u0000') as [string, DlpStrategy];
      return { detectorId, strategy, count };
    })
    .sort((a, b) => (a.detectorId < b.detectorId ? -1 : a.detectorId > b.detectorId ? 1 : 0));
  if (drop) {
    const ids = regions.filter((_, i) => strategies[i] === 'drop').map((r) => r.winner.detectorId);
    return { text: dropped(ids), applied, findings, dropped: true };
  }
  return { text: out + text.slice(pos), applied, findings, dropped: false };
}
