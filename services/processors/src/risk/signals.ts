/**
 * The risk signals: pure functions of (identity state before the event, the event, the policy).
 * Each returns a Signal (which rule, what it weighs, why in words, which events show it) or null.
 *
 * Explanations never carry content or card data: they name counts, limits, hours, the policy
 * phrase or marker that matched, the model or route (ids, not content), never the text around a
 * match. A signal reads masked text only (content.ts); card data is judged from masking summaries.
 *
 * `evaluate` runs every enabled signal and marks which occurrences are scored: an occurrence of a
 * signal within its cooldown of the last scored one is still an occurrence (it keeps a finding from
 * closing as quiet) but adds nothing to the score and is not reported again.
 */
import type { Direction, MaskingSummary } from '../../../common/src/events/types.generated';
import { hostMatches, normalizeText, textsOfEvent, urlHosts, type TextSource } from './content';
import { SIGNAL_IDS, signalSettings, type RiskPolicy, type SignalId, type TextSourceKind } from './policy';
import {
  isDenial,
  isRequest,
  modelOf,
  payloadOf,
  routeOf,
  trafficPrincipal,
  type IdentityState,
  type KnownValue,
  type RiskEvent,
} from './state';

export interface Signal {
  readonly signalId: SignalId;
  readonly weight: number;
  /** Why, in words, without content or card data. */
  readonly explanation: string;
  /** Events that show it, the triggering event last. */
  readonly evidenceEventIds: readonly string[];
}

export interface EvaluatedSignal extends Signal {
  /** False within the signal's cooldown: an occurrence, but not scored or reported again. */
  readonly scored: boolean;
}

/** What the signals share for one event: its normalized texts, read once. */
export interface SignalInput {
  readonly state: IdentityState;
  readonly event: RiskEvent;
  readonly policy: RiskPolicy;
  texts(kinds: readonly TextSourceKind[]): readonly NormalizedText[];
}

export interface NormalizedText {
  readonly kind: TextSourceKind;
  readonly label: string;
  /** normalizeText(text). */
  readonly text: string;
}

export type SignalFn = (input: SignalInput) => Signal | null;

const seconds = (ms: number): string => `${Math.round(ms / 1000)} s`;
const quote = (s: string): string => JSON.stringify(s.length > 100 ? `${s.slice(0, 100)}…` : s);
const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

function hit(input: SignalInput, signalId: SignalId, explanation: string, evidence: readonly string[] = []): Signal {
  return {
    signalId,
    weight: signalSettings(input.policy, signalId).weight,
    explanation,
    evidenceEventIds: [...evidence, input.event.metadata.eventId],
  };
}

/** Card data found by inline masking in a prompt, a response or a statement (counts from the masking summary). */
export const cardData: SignalFn = (input) => {
  const { event: e, policy } = input;
  const cfg = policy.signals.cardData;
  const rules = new Set(cfg.ruleIds);
  const summaryHits = (masking: MaskingSummary, directions: readonly Direction[]) => {
    const wanted = directions.filter((d) => cfg.directions.includes(d));
    const n = masking.stats.filter((s) => rules.has(s.ruleId) && wanted.includes(s.direction)).reduce((sum, s) => sum + s.hits, 0);
    // A producer that reports presence without per-rule stats still counts once.
    return n === 0 && masking.cardDataPresent && masking.stats.length === 0 && wanted.length > 0 ? 1 : n;
  };
  let count = 0;
  let where = '';
  const received = payloadOf(e, 'gateway.request.received');
  const completed = payloadOf(e, 'gateway.response.completed');
  const query = payloadOf(e, 'db.query.executed');
  const blocked = payloadOf(e, 'gateway.request.blocked');
  if (received !== null) {
    count = summaryHits(received.masking, ['request']);
    where = 'the request';
  } else if (completed !== null) {
    // Only the response direction: the request's own hits were counted on gateway.request.received.
    count = summaryHits(completed.masking, ['response']);
    where = 'the response';
  } else if (query !== null) {
    count = summaryHits(query.masking, ['request', 'response']);
    where = 'a statement or its rows';
  } else if (blocked !== null && blocked.stage === 'masking' && blocked.direction === 'response' && cfg.directions.includes('response')) {
    // A response refused for card data never gets a response.completed with its summary.
    count = 1;
    where = 'a response that was blocked';
  }
  if (count < cfg.minHits) return null;
  return hit(input, 'card-data', `${plural(count, 'card-data hit')} in ${where} (${e.target.service} ${e.target.resource})`);
};

/** Bulk-extraction phrasing in the configured texts, or a statement that returned too many rows. */
export const bulkExtraction: SignalFn = (input) => {
  const cfg = input.policy.signals.bulkExtraction;
  const query = payloadOf(input.event, 'db.query.executed');
  if (query !== null && cfg.maxRowsReturned !== null && (query.rowsReturned ?? 0) > cfg.maxRowsReturned) {
    return hit(input, 'bulk-extraction', `a statement returned ${query.rowsReturned} rows (limit ${cfg.maxRowsReturned})`);
  }
  const phrases = compiledPhrases(cfg.phrases);
  for (const t of input.texts(cfg.sources)) {
    const found = phrases.find((p) => t.text.includes(p.normalized));
    if (found !== undefined) return hit(input, 'bulk-extraction', `${describeSource(t)} contains the bulk-extraction phrase ${quote(found.phrase)}`);
  }
  return null;
};

/** Injection markers and exfiltration links in tool output (or the configured texts). */
export const promptInjection: SignalFn = (input) => {
  const cfg = input.policy.signals.promptInjection;
  const markers = compiledPhrases(cfg.markers);
  const reasons: string[] = [];
  for (const t of input.texts(cfg.sources)) {
    for (const m of markers) if (t.text.includes(m.normalized)) reasons.push(`the marker ${quote(m.phrase)}`);
    for (const host of urlHosts(t.text)) {
      const suffix = cfg.exfiltrationHosts.find((h) => hostMatches(host, h));
      if (suffix !== undefined) reasons.push(`a link to the exfiltration host ${quote(suffix)}`);
    }
    if (reasons.length > 0) {
      const unique = [...new Set(reasons)];
      const shown = unique.slice(0, 3).join(', ') + (unique.length > 3 ? ` and ${unique.length - 3} more` : '');
      return hit(input, 'prompt-injection', `${describeSource(t)} contains ${shown}`);
    }
  }
  return null;
};

/** More requests than the limit in the sliding window, or in one session. */
export const volume: SignalFn = (input) => {
  const { state, event: e, policy } = input;
  if (!isRequest(e)) return null;
  const cfg = policy.signals.volume;
  const t = e.metadata.timeUs;
  const from = t - cfg.windowMs * 1000;
  const inWindow = state.requests.filter((r) => r > from && r <= t).length + 1;
  if (inWindow > cfg.maxRequests) {
    return hit(input, 'volume', `${inWindow} requests in ${seconds(cfg.windowMs)} (limit ${cfg.maxRequests})`);
  }
  if (cfg.maxRequestsPerSession !== null) {
    const inSession = (state.sessions.find((s) => s.sessionId === e.correlation.sessionId)?.requests ?? 0) + 1;
    if (inSession > cfg.maxRequestsPerSession) {
      return hit(input, 'volume', `${inSession} requests in one session (limit ${cfg.maxRequestsPerSession})`);
    }
  }
  return null;
};

const WEEKDAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'] as const;

/**
 * A request outside the working hours of the identity's kind (UTC). A range with `from > to` wraps
 * midnight and is judged by the day of the request's own hour: 22–6 on Monday covers Monday 22:00
 * to 23:59 and Monday 00:00 to 05:59.
 */
export const offHours: SignalFn = (input) => {
  const { event: e, policy } = input;
  if (!isRequest(e)) return null;
  const kind = e.actor.kind;
  if (kind !== 'human' && kind !== 'agent' && kind !== 'service') return null;
  const ranges = policy.signals.offHours.hours[kind];
  if (ranges === undefined) return null;
  const at = new Date(Math.floor(e.metadata.timeUs / 1000));
  const hour = at.getUTCHours();
  const day = at.getUTCDay();
  const working = ranges.some((r) => r.days.includes(day) && (r.from < r.to ? hour >= r.from && hour < r.to : hour >= r.from || hour < r.to));
  if (working) return null;
  return hit(input, 'off-hours', `${kind} request at ${String(hour).padStart(2, '0')}:00 UTC on ${WEEKDAYS[day] ?? '?'}, outside working hours`);
};

/** Refusals of the identity reaching the threshold within the window. */
export const repeatedDenials: SignalFn = (input) => {
  const { state, event: e, policy } = input;
  if (!isDenial(e)) return null;
  const cfg = policy.signals.repeatedDenials;
  const t = e.metadata.timeUs;
  const from = t - cfg.windowMs * 1000;
  const earlier = state.denials.filter((d) => d.timeUs > from && d.timeUs <= t);
  const count = earlier.length + 1;
  if (count < cfg.threshold) return null;
  return hit(input, 'repeated-denials', `${count} refusals in ${seconds(cfg.windowMs)} (threshold ${cfg.threshold})`, earlier.map((d) => d.eventId));
};

function novelty(
  input: SignalInput,
  signalId: 'new-model' | 'new-route',
  value: string | null,
  known: readonly KnownValue[],
  learningPeriodMs: number,
  noun: string,
): Signal | null {
  const first = input.state.firstSeenUs;
  if (value === null || first === null) return null;
  // Still learning what is usual for this identity.
  if (input.event.metadata.timeUs - first < learningPeriodMs * 1000) return null;
  if (known.some((k) => k.value === value)) return null;
  return hit(input, signalId, `first use of ${noun} ${quote(value)} by this identity after its learning period`);
}

export const newModel: SignalFn = (input) =>
  novelty(input, 'new-model', modelOf(input.event), input.state.models, input.policy.signals.newModel.learningPeriodMs, 'model');

export const newRoute: SignalFn = (input) =>
  novelty(input, 'new-route', routeOf(input.event), input.state.routes, input.policy.signals.newRoute.learningPeriodMs, 'route');

/** Every signal, by id, in evaluation (and output) order. */
export const SIGNALS: { readonly [K in SignalId]: SignalFn } = {
  'card-data': cardData,
  'bulk-extraction': bulkExtraction,
  'prompt-injection': promptInjection,
  volume,
  'off-hours': offHours,
  'repeated-denials': repeatedDenials,
  'new-model': newModel,
  'new-route': newRoute,
};

function describeSource(t: NormalizedText): string {
  switch (t.kind) {
    case 'prompt':
      return 'the prompt';
    case 'response':
      return t.label === 'text' || t.label === 'body' ? 'the response' : `the model's ${t.label} call`;
    case 'tool_result':
      return `a tool result (${t.label})`;
    case 'sql':
      return 'the statement';
  }
}

const phraseCache = new WeakMap<readonly string[], readonly { phrase: string; normalized: string }[]>();

function compiledPhrases(phrases: readonly string[]): readonly { phrase: string; normalized: string }[] {
  let compiled = phraseCache.get(phrases);
  if (compiled === undefined) {
    compiled = phrases.map((phrase) => ({ phrase, normalized: normalizeText(phrase).trim() })).filter((p) => p.normalized !== '');
    phraseCache.set(phrases, compiled);
  }
  return compiled;
}

/** The input the signal functions get: texts are extracted and normalized once, on first use. */
export function signalInput(state: IdentityState, event: RiskEvent, policy: RiskPolicy): SignalInput {
  let all: NormalizedText[] | undefined;
  return {
    state,
    event,
    policy,
    texts(kinds) {
      all ??= textsOfEvent(event, policy.limits.maxScanChars).map((s: TextSource) => ({
        kind: s.kind,
        label: s.label,
        text: normalizeText(s.text),
      }));
      return all.filter((t) => kinds.includes(t.kind));
    },
  };
}

// decide and evolve both evaluate the same (state, event): the second call reuses the first's result.
let last: { state: IdentityState; event: RiskEvent; policy: RiskPolicy; result: readonly EvaluatedSignal[] } | undefined;

/**
 * Runs every enabled signal on the identity's traffic event, in SIGNAL_IDS order, and marks which
 * occurrences are scored (outside the signal's cooldown). A redelivered event (its id among the
 * identity's recent ones) raises nothing.
 */
export function evaluate(state: IdentityState, event: RiskEvent, policy: RiskPolicy): readonly EvaluatedSignal[] {
  if (last !== undefined && last.state === state && last.event === event && last.policy === policy) return last.result;
  const result: EvaluatedSignal[] = [];
  if (policy.enabled && trafficPrincipal(event) !== null && !state.recentEventIds.includes(event.metadata.eventId)) {
    const input = signalInput(state, event, policy);
    const t = event.metadata.timeUs;
    for (const id of SIGNAL_IDS) {
      const settings = signalSettings(policy, id);
      if (!settings.enabled) continue;
      const signal = SIGNALS[id](input);
      if (signal === null) continue;
      const lastScored = state.marks.find((m) => m.signalId === id)?.lastScoredUs ?? null;
      const cooldownUs = settings.cooldownMs * 1000;
      const scored = lastScored === null || cooldownUs === 0 || t - lastScored >= cooldownUs;
      result.push({ ...signal, scored });
    }
  }
  last = { state, event, policy, result };
  return result;
}
