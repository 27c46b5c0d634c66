import { z } from 'zod';
import type { Severity } from '../events/types.generated';

/**
 * The risk rules' policy: which signals run, what each weighs, their thresholds, when a finding is
 * how severe, and when an identity is suspended. Mounted under `risk` in the one config file
 * (`risk: riskPolicySchema.prefault({})`). Every key has a default, so `risk: {}` is a complete,
 * conservative policy; objects are strict like the rest of the config (a misspelt threshold must
 * not be silently ignored).
 *
 * Units: durations in milliseconds (`…Ms`), weights and scores in [0, 1], hours in UTC.
 */

/** Stable signal ids: detector ids are `risk.<id>`, suspension reasons `risk:<id>`. */
export const SIGNAL_IDS = [
  'card-data',
  'bulk-extraction',
  'prompt-injection',
  'volume',
  'off-hours',
  'repeated-denials',
  'new-model',
  'new-route',
] as const;
export type SignalId = (typeof SIGNAL_IDS)[number];

/** Where text comes from, after masking: what the caller wrote, what the model answered, tool output, SQL. */
export const TEXT_SOURCES = ['prompt', 'response', 'tool_result', 'sql'] as const;
export type TextSourceKind = (typeof TEXT_SOURCES)[number];

/** The event model's severities, without 'unknown' (a reader's fallback, never assigned). */
const RISK_SEVERITIES = ['info', 'low', 'medium', 'high', 'critical'] as const satisfies readonly Severity[];

const weight = (d: number) => z.number().min(0).max(1).default(d);
const durationMs = (d: number) => z.number().int().nonnegative().default(d);
const positiveMs = (d: number) => z.number().int().positive().default(d);

/** Shared by every signal. */
const base = (w: number, cooldownMs: number) => ({
  enabled: z.boolean().default(true),
  /** What one scored occurrence adds to the identity's score. */
  weight: weight(w),
  /** After a scored occurrence, further ones of the same signal for the identity are not scored or reported for this long. */
  cooldownMs: durationMs(cooldownMs),
  /** Lowest severity a finding of this signal gets, whatever the score. */
  minSeverity: z.enum(RISK_SEVERITIES).default('info'),
});

const phrase = z.string().trim().min(3).max(200);

const hourRange = z
  .strictObject({
    /** First working hour, UTC, inclusive (0–23). */
    from: z.number().int().min(0).max(23),
    /** End hour, UTC, exclusive (1–24). `from > to` wraps past midnight (22 → 6). */
    to: z.number().int().min(1).max(24),
    /** UTC weekdays the range applies to, 0 = Sunday. Default every day. */
    days: z.array(z.number().int().min(0).max(6)).min(1).default([0, 1, 2, 3, 4, 5, 6]),
  })
  .refine((r) => r.from !== r.to, { message: '`from` and `to` are the same hour: give an hour range, or remove it' });

const DAY = 86_400_000;

export const riskPolicySchema = z.strictObject({
  /** Master switch: off, no signal fires and nothing is suspended, restored or closed automatically; administrators' commands still work. */
  enabled: z.boolean().default(true),
  signals: z
    .strictObject({
      /** Card data (PANs, sensitive authentication data) found by inline masking in prompts, responses or SQL. */
      cardData: z
        .strictObject({
          ...base(0.3, 300_000),
          /** Masking rules that count as card data. */
          ruleIds: z.array(z.string().min(1)).min(1).default(['builtin.pan']),
          directions: z.array(z.enum(['request', 'response'])).min(1).default(['request', 'response']),
          /** Hits in one message before the signal fires. */
          minHits: z.number().int().positive().default(1),
        })
        .prefault({}),
      /** Phrasing that asks for everything at once, or a statement that returned very many rows. */
      bulkExtraction: z
        .strictObject({
          ...base(0.4, 60_000),
          /** Matched case-insensitively, ignoring spacing and invisible characters. */
          phrases: z
            .array(phrase)
            .default([
              'dump all',
              'dump the entire',
              'export all',
              'export every',
              'list all card',
              'list every customer',
              'all customer records',
              'entire database',
              'every row',
              'all rows from',
              'without limit',
              'bypass pagination',
            ]),
          sources: z.array(z.enum(TEXT_SOURCES)).min(1).default(['prompt']),
          /** A statement returning more rows than this fires the signal; null: off. */
          maxRowsReturned: z.number().int().positive().nullable().default(10_000),
        })
        .prefault({}),
      /** Instructions aimed at the model inside tool output (indirect prompt injection), and exfiltration links. */
      promptInjection: z
        .strictObject({
          ...base(0.5, 0),
          markers: z
            .array(phrase)
            .default([
              'ignore previous instructions',
              'ignore all previous instructions',
              'ignore the above',
              'disregard previous instructions',
              'disregard your instructions',
              'forget your instructions',
              'you are now',
              'new instructions:',
              'system prompt',
              'reveal your prompt',
              'do not tell the user',
              '</tool_result>',
              '<|im_start|>',
            ]),
          /** A URL in the text whose host is, or ends with, one of these is an exfiltration link. */
          exfiltrationHosts: z
            .array(z.string().trim().toLowerCase().regex(/^[a-z0-9.-]+$/, 'a host name or suffix, e.g. webhook.site'))
            .default(['webhook.site', 'requestbin.net', 'pipedream.net', 'ngrok.io', 'ngrok-free.app', 'interact.sh', 'oast.fun', 'burpcollaborator.net']),
          sources: z.array(z.enum(TEXT_SOURCES)).min(1).default(['tool_result']),
        })
        .prefault({}),
      /** More requests than usual from one identity (in a sliding window) or in one session. */
      volume: z
        .strictObject({
          ...base(0.3, 600_000),
          windowMs: positiveMs(600_000),
          /** Requests (gateway requests and SQL statements) per window before the signal fires. */
          maxRequests: z.number().int().positive().max(10_000).default(300),
          /** Requests in one session before the signal fires; null: off. */
          maxRequestsPerSession: z.number().int().positive().nullable().default(2_000),
        })
        .prefault({}),
      /** Requests outside working hours for the identity's kind. A kind without ranges may work any hour. */
      offHours: z
        .strictObject({
          ...base(0.15, 3_600_000),
          hours: z
            .strictObject({
              human: z.array(hourRange).optional(),
              agent: z.array(hourRange).optional(),
              service: z.array(hourRange).optional(),
            })
            .default({}),
        })
        .prefault({}),
      /** Repeated refusals: blocked requests, denied statements, failed logins of a known identity. */
      repeatedDenials: z
        .strictObject({
          ...base(0.4, 300_000),
          windowMs: positiveMs(300_000),
          threshold: z.number().int().min(2).max(1_000).default(5),
        })
        .prefault({}),
      /** A model the identity never used before, once its learning period is over. */
      newModel: z
        .strictObject({
          ...base(0.2, 0),
          learningPeriodMs: durationMs(7 * DAY),
          /** Models remembered per identity (least recently used forgotten first). */
          maxKnown: z.number().int().positive().max(1_024).default(32),
        })
        .prefault({}),
      /** A route (HTTP route or database) the identity never used before, once its learning period is over. */
      newRoute: z
        .strictObject({
          ...base(0.2, 0),
          learningPeriodMs: durationMs(7 * DAY),
          maxKnown: z.number().int().positive().max(1_024).default(32),
        })
        .prefault({}),
    })
    .prefault({}),
  scoring: z
    .strictObject({
      /** The identity's score is the sum of the weights of its scored occurrences in this window, capped at 1. */
      windowMs: positiveMs(3_600_000),
      /** Score from which a finding has this severity; below `low` it is 'info'. */
      severityBands: z
        .strictObject({ low: weight(0.2), medium: weight(0.4), high: weight(0.6), critical: weight(0.8) })
        .prefault({})
        .refine((b) => b.low <= b.medium && b.medium <= b.high && b.high <= b.critical, {
          message: 'severity bands must not decrease: low ≤ medium ≤ high ≤ critical',
        }),
    })
    .prefault({}),
  /** When an identity is suspended: once per crossing, never again while suspended. */
  suspendAt: z
    .strictObject({
      // Off unless configured: an automatic suspension stops a production agent, so the operator
      // opts in once the signals' findings have been tuned on their own traffic.
      enabled: z.boolean().default(false),
      /** Identity score at or above which it is suspended; null: score alone never suspends. */
      score: z.number().gt(0).max(1).nullable().default(1),
      /** Signals that suspend on their own, at their first scored occurrence. */
      signals: z.array(z.enum(SIGNAL_IDS)).default([]),
      /** How long a suspension lasts by itself; null: until an administrator restores the identity. */
      durationMs: z.number().int().positive().nullable().default(null),
    })
    .prefault({}),
  findings: z
    .strictObject({
      /** An open finding with no new occurrence for this long is closed automatically; null: only by an administrator. */
      autoCloseAfterMs: z.number().int().positive().nullable().default(DAY),
    })
    .prefault({}),
  /** Memory bounds (see state.ts, "Bounds"). */
  limits: z
    .strictObject({
      /** An identity with nothing open and no event for this long is forgotten (it then learns models and routes anew). */
      idleEvictAfterMs: positiveMs(7 * DAY),
      /** Identities kept; beyond it the least recently seen forgettable ones go first. */
      maxIdentities: z.number().int().positive().default(10_000),
      maxSessionsPerIdentity: z.number().int().positive().max(10_000).default(32),
      /** A session with no event for this long no longer counts as live. */
      sessionIdleMs: positiveMs(3_600_000),
      /** Scored occurrences kept per identity (most recent). */
      maxScoredHits: z.number().int().positive().max(10_000).default(64),
      /** Characters of one event's text scanned for phrases and markers. */
      maxScanChars: z.number().int().positive().default(262_144),
    })
    .prefault({}),
});

export type RiskPolicy = z.infer<typeof riskPolicySchema>;
export type RiskPolicyInput = z.input<typeof riskPolicySchema>;

/** The complete default policy (what `risk: {}` means). */
export const DEFAULT_RISK_POLICY: RiskPolicy = riskPolicySchema.parse({});

/** Policy key of each signal. */
export const SIGNAL_POLICY_KEY = {
  'card-data': 'cardData',
  'bulk-extraction': 'bulkExtraction',
  'prompt-injection': 'promptInjection',
  volume: 'volume',
  'off-hours': 'offHours',
  'repeated-denials': 'repeatedDenials',
  'new-model': 'newModel',
  'new-route': 'newRoute',
} as const satisfies { readonly [K in SignalId]: keyof RiskPolicy['signals'] };

export interface SignalSettings {
  readonly enabled: boolean;
  readonly weight: number;
  readonly cooldownMs: number;
  readonly minSeverity: RiskSeverity;
}
export type RiskSeverity = (typeof RISK_SEVERITIES)[number];

export function signalSettings(policy: RiskPolicy, id: SignalId): SignalSettings {
  return policy.signals[SIGNAL_POLICY_KEY[id]];
}

export function isSignalId(value: string): value is SignalId {
  return (SIGNAL_IDS as readonly string[]).includes(value);
}
