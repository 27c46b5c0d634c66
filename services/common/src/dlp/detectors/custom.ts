/**
 * Custom patterns from the policy, admitted by safe-regex.ts. An optional checksum ('luhn' over the
 * digits, 'mod97' over an IBAN-like value) cuts false positives for formats that have one.
 */
import { luhnValid } from '../../masking/index';
import type { ContextWords, Detector, DlpCategory, DlpSeverity, DlpSpan, DlpStrategy } from '../types';
import { ibanMod97 } from './iban';

export interface CustomPatternSpec {
  readonly id: string;
  readonly pattern: string;
  readonly flags: string;
  readonly category: DlpCategory;
  readonly severity: DlpSeverity;
  readonly strategy: DlpStrategy;
  readonly confidence: number;
  readonly checksum: 'none' | 'luhn' | 'mod97';
  readonly context?: ContextWords;
}

export const CUSTOM_PREFIX = 'custom.';

function checksumOk(kind: CustomPatternSpec['checksum'], value: string): boolean {
  switch (kind) {
    case 'none':
      return true;
    case 'luhn':
      return luhnValid(value.replace(/[^0-9]/g, ''));
    case 'mod97':
      return ibanMod97(value.replace(/[\s-]/g, '').toUpperCase());
    default: {
      const never: never = kind;
      return never;
    }
  }
}

/** A detector for one admitted custom pattern (call only after checkCustomRegex accepted it). */
export function customDetector(spec: CustomPatternSpec): Detector {
  const re = new RegExp(spec.pattern, `${spec.flags}g`);
  const id = CUSTOM_PREFIX + spec.id;
  return {
    id,
    category: spec.category,
    severity: spec.severity,
    // Below every built-in: a built-in that understands the value names it better.
    specificity: 10,
    check: spec.checksum === 'none' ? 'policy pattern' : `policy pattern + ${spec.checksum}`,
    defaultStrategy: spec.strategy,
    ...(spec.context === undefined ? {} : { context: spec.context }),
    detect(text) {
      const out: DlpSpan[] = [];
      for (const m of text.matchAll(re)) {
        if (m[0].length === 0 || !checksumOk(spec.checksum, m[0])) continue;
        out.push({ start: m.index, end: m.index + m[0].length, detectorId: id, confidence: spec.confidence, normalized: m[0] });
      }
      return out;
    },
  };
}
