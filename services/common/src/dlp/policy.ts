/**
 * The `dlp` section of the policy: which detectors run, how sure they must be, what each does to a
 * hit, and custom patterns. The lead mounts `dlpPolicySchema` in the config schema; `compileDlpPolicy`
 * turns a parsed section into the detector list the engine runs (cached per policy object).
 */
import { z } from 'zod';
import { AttestError } from '../errors';
import {
  BUILTIN_DETECTOR_IDS,
  BUILTIN_DETECTORS,
  customDetector,
  MANDATORY_DETECTORS,
  SAD_DETECTORS,
  type BuiltinDetectorId,
} from './detectors/index';
import { checkCustomRegex, MAX_PATTERN_LENGTH } from './safe-regex';
import { DLP_CATEGORIES, DLP_SEVERITIES, DLP_STRATEGIES, type Detector, type DlpCategory, type DlpStrategy } from './types';

const detectorSettings = z.strictObject({
  /** pan, track_data and cvv cannot be switched off (no card data at rest, invariant 2). */
  enabled: z.boolean().optional(),
  strategy: z.enum(DLP_STRATEGIES).optional(),
  /** Overrides the section's minConfidence for this detector. */
  minConfidence: z.number().min(0).max(1).optional(),
});

const words = z.array(z.string().min(1).max(64)).max(64);

const customPattern = z
  .strictObject({
    /** Becomes detector id `custom.<id>` (in findings and `[REDACTED:custom.<id>]`). */
    id: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'lower-case letters, digits, _ and -, at most 63'),
    /** A JavaScript regex in the bounded subset described in safe-regex.ts (no `*`/`+`, no lookaround). */
    pattern: z.string().min(1).max(MAX_PATTERN_LENGTH),
    flags: z.string().default(''),
    category: z.enum(DLP_CATEGORIES).default('custom'),
    severity: z.enum(DLP_SEVERITIES).default('medium'),
    strategy: z.enum(DLP_STRATEGIES).default('redact'),
    confidence: z.number().min(0).max(1).default(0.9),
    checksum: z.enum(['none', 'luhn', 'mod97']).default('none'),
    context: z.strictObject({ boost: words.default([]), suppress: words.default([]) }).optional(),
  })
  .superRefine((p, ctx) => {
    const v = checkCustomRegex(p.pattern, p.flags);
    if (!v.ok) ctx.addIssue({ code: 'custom', path: ['pattern'], message: `${v.reason ?? 'refused'}; fix: ${v.fix ?? ''}` });
    if (p.category === 'sad' && p.strategy !== 'drop') {
      ctx.addIssue({ code: 'custom', path: ['strategy'], message: "sensitive authentication data must be dropped (PCI DSS 3.3.1); fix: strategy: drop" });
    }
  });

export const dlpPolicySchema = z
  .strictObject({
    /** false: only pan, track_data and cvv run (card data must never be stored). */
    enabled: z.boolean().default(true),
    /** Hits below this confidence are ignored (0.5: context words decide the unsure formats). */
    minConfidence: z.number().min(0).max(1).default(0.5),
    /** Per built-in detector overrides; unnamed detectors use their defaults. */
    detectors: z.partialRecord(z.enum(BUILTIN_DETECTOR_IDS), detectorSettings).default({}),
    custom: z.array(customPattern).max(64).default([]),
    /** What 'drop' removes: the string holding the hit ('field') or the event's whole content ('content'). */
    dropScope: z.enum(['field', 'content']).default('field'),
    /** Categories whose presence is a data security finding (PCI DSS 12.10.7), besides 'data masked'. */
    dataSecurityCategories: z.array(z.enum(DLP_CATEGORIES)).default(['card', 'sad', 'secret']),
  })
  .superRefine((p, ctx) => {
    for (const id of MANDATORY_DETECTORS) {
      if (p.detectors[id]?.enabled === false) {
        ctx.addIssue({ code: 'custom', path: ['detectors', id, 'enabled'], message: `${id} cannot be disabled: no card data may be stored (PCI DSS 3.3.1, 3.5.1); fix: remove enabled: false` });
      }
    }
    for (const id of SAD_DETECTORS) {
      const s = p.detectors[id]?.strategy;
      if (s !== undefined && s !== 'drop') {
        ctx.addIssue({ code: 'custom', path: ['detectors', id, 'strategy'], message: `${id} is sensitive authentication data and is always dropped (PCI DSS 3.3.1); fix: strategy: drop, or remove the line` });
      }
    }
    const seen = new Set<string>();
    p.custom.forEach((c, i) => {
      if (seen.has(c.id)) ctx.addIssue({ code: 'custom', path: ['custom', i, 'id'], message: `duplicate custom pattern id '${c.id}'; fix: rename one` });
      seen.add(c.id);
    });
  });

export type DlpPolicyInput = z.input<typeof dlpPolicySchema>;
export type DlpPolicy = z.output<typeof dlpPolicySchema>;

/** The section's defaults (what an absent `dlp:` key means). */
export const DEFAULT_DLP_POLICY: DlpPolicy = dlpPolicySchema.parse({});

export interface ActiveDetector {
  readonly detector: Detector;
  readonly strategy: DlpStrategy;
  readonly minConfidence: number;
}

export interface CompiledDlpPolicy {
  readonly enabled: boolean;
  readonly detectors: readonly ActiveDetector[];
  readonly byId: ReadonlyMap<string, ActiveDetector>;
  readonly dropScope: 'field' | 'content';
  readonly dataSecurityCategories: ReadonlySet<DlpCategory>;
}

const cache = new WeakMap<DlpPolicy, CompiledDlpPolicy>();

/**
 * The runnable form of a parsed policy. Re-checks what the schema checks so that a policy built in
 * code (not parsed) cannot smuggle in an unsafe pattern or a retained SAD.
 */
export function compileDlpPolicy(policy: DlpPolicy): CompiledDlpPolicy {
  const hit = cache.get(policy);
  if (hit !== undefined) return hit;
  const list: ActiveDetector[] = [];
  for (const id of BUILTIN_DETECTOR_IDS) {
    const d = BUILTIN_DETECTORS[id];
    const o = policy.detectors[id];
    const mandatory = MANDATORY_DETECTORS.includes(id);
    // A disabled section still keeps card data out of the store: only the mandatory detectors run.
    if ((o?.enabled === false || !policy.enabled) && !mandatory) continue;
    const strategy = SAD_DETECTORS.includes(id) ? 'drop' : (o?.strategy ?? d.defaultStrategy);
    list.push({ detector: d, strategy, minConfidence: o?.minConfidence ?? policy.minConfidence });
  }
  (policy.enabled ? policy.custom : []).forEach((c, i) => {
    const v = checkCustomRegex(c.pattern, c.flags);
    if (!v.ok) {
      throw new AttestError('dlp_pattern_unsafe', `custom pattern '${c.id}' refused: ${v.reason ?? ''}`, {
        where: `dlp.custom[${i}].pattern`,
        ...(v.fix === undefined ? {} : { fix: v.fix }),
      });
    }
    const strategy = c.category === 'sad' ? 'drop' : c.strategy;
    list.push({ detector: customDetector({ ...c, strategy }), strategy, minConfidence: policy.minConfidence });
  });
  const compiled: CompiledDlpPolicy = {
    enabled: policy.enabled,
    detectors: list,
    byId: new Map(list.map((a) => [a.detector.id, a])),
    dropScope: policy.dropScope,
    dataSecurityCategories: new Set(policy.dataSecurityCategories),
  };
  cache.set(policy, compiled);
  return compiled;
}

export function isBuiltinDetectorId(id: string): id is BuiltinDetectorId {
  return (BUILTIN_DETECTOR_IDS as readonly string[]).includes(id);
}
