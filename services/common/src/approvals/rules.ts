import { z } from 'zod';
import type { Principal } from '../identity/types';
import { detectBulkExtraction } from './bulk-extraction';
import { DURATION_PATTERN, parseDurationMs } from './duration';

/**
 * Approval rules: which requests a human must approve before the gateway forwards them. Mounted in
 * the config file under `approvals`.
 *
 * A rule matches a request when
 *   - every scope condition it sets holds: `callerGroups` (the caller is in at least one),
 *     `models` (globs, `*` wildcard), `routes` (gateway route names); an empty or absent list
 *     places no condition; and
 *   - at least one content trigger it sets fires: `keywords` (case-insensitive, whole words),
 *     `patterns` (regular expressions, case-insensitive), `detectors` ('pan': the request carried a
 *     card number, 'bulk_extraction': it asks for data wholesale). A rule with no content trigger
 *     matches every request in its scope (e.g. "contractors using opus need approval").
 * Rules are tried in file order and the first match wins, so put the narrow, strict rules first.
 * Matching is deterministic: the same policy and request always give the same rule and reasons.
 */

export const APPROVAL_DETECTORS = ['pan', 'bulk_extraction'] as const;
export type ApprovalDetector = (typeof APPROVAL_DETECTORS)[number];

export const APPROVAL_MODES = ['hold', 'ask_and_retry'] as const;
/**
 * hold: the gateway keeps the caller's HTTP request open until a decision or expiry.
 * ask_and_retry: the gateway answers at once with an error carrying the approval id; the caller
 * retries with the id in a header once approved, and the retry must be the approved request.
 */
export type ApprovalMode = (typeof APPROVAL_MODES)[number];

/**
 * The gateway's route names. Kept here rather than imported from config/schema.ts because that
 * module mounts this one (an import back would be a cycle); a unit test keeps the two equal.
 */
export const APPROVAL_ROUTES = ['messages', 'count_tokens', 'models'] as const;

export const MAX_PATTERN_CHARS = 256;
export const MAX_KEYWORD_CHARS = 128;
const MIN_EXPIRY_MS = 10_000;
/** A rule's longest expiry, and so the longest release window of an approval a gateway asks for. */
export const MAX_EXPIRY_MS = 7 * 86_400_000;
/** A held HTTP request longer than this outlives most clients' timeouts and proxies' idle limits. */
export const MAX_HOLD_MS = 3_600_000;

// A quantified group that itself contains a quantifier, e.g. (a+)+ or (\w*){2,}: the classic
// shape of catastrophic backtracking. A heuristic, not a proof; patterns come from the operator.
const NESTED_QUANTIFIER = /\((?:[^()\\]|\\.)*(?:[+*]|\{\d+,\d*\})(?:[^()\\]|\\.)*\)(?:[+*]|\{\d+,\d*\})/;

const pattern = z
  .string()
  .min(1)
  .max(MAX_PATTERN_CHARS, `a pattern may have at most ${MAX_PATTERN_CHARS} characters`)
  .superRefine((src, ctx) => {
    try {
      new RegExp(src, 'iu');
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `not a valid regular expression: ${(err as Error).message}` });
      return;
    }
    if (NESTED_QUANTIFIER.test(src)) {
      ctx.addIssue({
        code: 'custom',
        message: 'a quantified group containing a quantifier, e.g. (a+)+, can take exponential time; rewrite it without nesting',
      });
    }
  });

const match = z
  .strictObject({
    /** Words or phrases; case-insensitive, whole words, any run of whitespace matches a space. */
    keywords: z.array(z.string().trim().min(1).max(MAX_KEYWORD_CHARS)).max(200).default([]),
    /** Regular expressions (JavaScript syntax, compiled with flags `iu`). */
    patterns: z.array(pattern).max(50).default([]),
    detectors: z.array(z.enum(APPROVAL_DETECTORS)).default([]),
    callerGroups: z.array(z.string().min(1)).default([]),
    /** Model ids; `*` is a wildcard (e.g. `claude-opus-*`). */
    models: z.array(z.string().min(1)).default([]),
    routes: z.array(z.enum(APPROVAL_ROUTES)).default([]),
  })
  .refine(
    (m) => Object.values(m).some((list) => list.length > 0),
    'an empty match would hold every request; give at least one of keywords, patterns, detectors, callerGroups, models, routes',
  );

const rule = z
  .strictObject({
    id: z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'use 1-64 letters, digits, or . _ : -'),
    description: z.string().max(500).optional(),
    match,
    /** Groups whose members may approve or deny. */
    approverGroups: z.array(z.string().min(1)).min(1),
    /** Distinct approvers needed; one eligible denial rejects. */
    quorum: z.number().int().min(1).max(20).default(1),
    /** How long the request waits for a decision, e.g. '15m' (units s, m, h, d). */
    expiresAfter: z.string().regex(DURATION_PATTERN, "a duration such as '90s', '15m', '2h' or '1d'").default('15m'),
    mode: z.enum(APPROVAL_MODES).default('hold'),
    /** What approving releases, recorded in approval.requested. */
    scope: z.string().min(1).max(64).default('request'),
  })
  .superRefine((r, ctx) => {
    const ms = parseDurationMs(r.expiresAfter);
    if (ms === undefined) return; // the regex above already reported it
    if (ms < MIN_EXPIRY_MS || ms > MAX_EXPIRY_MS) {
      ctx.addIssue({ code: 'custom', path: ['expiresAfter'], message: 'expiry must be between 10s and 7d' });
    } else if (r.mode === 'hold' && ms > MAX_HOLD_MS) {
      ctx.addIssue({
        code: 'custom',
        path: ['expiresAfter'],
        message: "a held request can wait at most 1h; use mode 'ask_and_retry' for longer approvals",
      });
    }
  })
  .transform((r) => ({ ...r, expiresAfterMs: parseDurationMs(r.expiresAfter) ?? 0 }));

export const approvalPolicySchema = z
  .strictObject({
    rules: z.array(rule).max(500).default([]),
  })
  .superRefine((p, ctx) => {
    const seen = new Set<string>();
    p.rules.forEach((r, i) => {
      if (seen.has(r.id)) ctx.addIssue({ code: 'custom', path: ['rules', i, 'id'], message: `duplicate rule id '${r.id}'` });
      seen.add(r.id);
    });
  });

export type ApprovalPolicy = z.infer<typeof approvalPolicySchema>;
/** The policy as written in the config file (before defaults and the expiry transform). */
export type ApprovalPolicyInput = z.input<typeof approvalPolicySchema>;
export type ApprovalRule = ApprovalPolicy['rules'][number];

/** What the gateway knows about a request when it asks whether it needs approval. */
export interface ApprovalMatchRequest {
  readonly principal: Pick<Principal, 'groups'>;
  readonly model: string;
  readonly route: string;
  /** The prompt text after PAN masking: never raw card data. */
  readonly promptText: string;
  /** True when masking found a card number in the request. */
  readonly panFound: boolean;
}

export interface ApprovalMatch {
  readonly rule: ApprovalRule;
  /**
   * Why, for the approver and the caller: the triggers that fired, or the scope when the rule has
   * no trigger. Built from the policy's own words and the detectors' names, never from prompt text.
   */
  readonly reasons: string[];
}

/** `*` matches any run of characters (including none); everything else literally. */
export function globMatches(glob: string, value: string): boolean {
  const re = new RegExp(`^${glob.split('*').map(escapeRegExp).join('.*')}$`, 's');
  return re.test(value);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

interface CompiledRule {
  readonly rule: ApprovalRule;
  readonly keywords: readonly { word: string; re: RegExp }[];
  readonly patterns: readonly RegExp[];
}

function keywordRegExp(word: string): RegExp {
  const body = word.split(/\s+/u).map(escapeRegExp).join('\\s+');
  return new RegExp(`(?<![\\p{L}\\p{N}_])${body}(?![\\p{L}\\p{N}_])`, 'iu');
}

// Compiled once per policy object: the gateway asks for every request.
const compiled = new WeakMap<ApprovalPolicy, readonly CompiledRule[]>();

function compile(policy: ApprovalPolicy): readonly CompiledRule[] {
  let rules = compiled.get(policy);
  if (rules === undefined) {
    rules = policy.rules.map((rule) => ({
      rule,
      keywords: rule.match.keywords.map((word) => ({ word, re: keywordRegExp(word) })),
      patterns: rule.match.patterns.map((src) => new RegExp(src, 'iu')),
    }));
    compiled.set(policy, rules);
  }
  return rules;
}

/** The first rule (in file order) that matches the request, with its reasons; undefined if none. */
export function matchApprovalRules(policy: ApprovalPolicy, request: ApprovalMatchRequest): ApprovalMatch | undefined {
  for (const c of compile(policy)) {
    const reasons = matchRule(c, request);
    if (reasons !== undefined) return { rule: c.rule, reasons };
  }
  return undefined;
}

function matchRule(c: CompiledRule, req: ApprovalMatchRequest): string[] | undefined {
  const m = c.rule.match;
  const scope: string[] = [];
  if (m.callerGroups.length > 0) {
    const group = m.callerGroups.find((g) => req.principal.groups.includes(g));
    if (group === undefined) return undefined;
    scope.push(`caller is in group '${group}'`);
  }
  if (m.models.length > 0) {
    const glob = m.models.find((g) => globMatches(g, req.model));
    if (glob === undefined) return undefined;
    scope.push(`model '${req.model}' matches '${glob}'`);
  }
  if (m.routes.length > 0) {
    if (!(m.routes as readonly string[]).includes(req.route)) return undefined;
    scope.push(`route '${req.route}'`);
  }

  const hasTriggers = m.keywords.length + m.patterns.length + m.detectors.length > 0;
  if (!hasTriggers) return scope;

  const fired: string[] = [];
  for (const k of c.keywords) if (k.re.test(req.promptText)) fired.push(`prompt mentions '${k.word}'`);
  // Patterns are named by position: the matched text may itself be sensitive.
  c.patterns.forEach((re, i) => {
    if (re.test(req.promptText)) fired.push(`prompt matches pattern #${i + 1} of rule '${c.rule.id}'`);
  });
  for (const d of m.detectors) {
    if (d === 'pan') {
      if (req.panFound) fired.push('request contains a card number (PAN)');
    } else {
      const phrase = detectBulkExtraction(req.promptText);
      if (phrase !== undefined) fired.push(`prompt asks for bulk data ('${phrase}')`);
    }
  }
  return fired.length > 0 ? fired : undefined;
}
