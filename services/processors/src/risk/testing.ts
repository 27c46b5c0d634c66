/**
 * Test helpers for the risk rules: events built like real ones (from the shared sample parts,
 * through newEvent), a deterministic id generator, a policy from partial input, and a book driver.
 * Imported by *.unit.test.ts only.
 */
import { newEvent } from '../../../common/src/events/builder';
import type { EventType } from '../../../common/src/events/catalog';
import { fixtureId, SAMPLE_PARTS } from '../../../common/src/events/fixtures';
import type { UnchainedEvent } from '../../../common/src/events/types';
import type { Actor, Correlation, Outcome, PayloadMap, Target } from '../../../common/src/events/types.generated';
import { RiskBook, type BuildEvent } from './book';
import { toEvent, type RiskOutput } from './decide';
import { riskPolicySchema, type RiskPolicy, type RiskPolicyInput } from './policy';
import type { RiskEvent } from './state';

/** Tuesday 2025-11-25 10:00:00 UTC, in µs. */
export const T0 = Date.UTC(2025, 10, 25, 10, 0, 0) * 1000;
export const SEC = 1_000_000;
export const MIN = 60 * SEC;
export const HOUR = 60 * MIN;
export const DAY = 24 * HOUR;

export const IDP = 'https://idp.example.com';
export const AGENT: Actor = SAMPLE_PARTS['gateway.request.received'].actor;
export const OTHER_AGENT: Actor = { ...AGENT, subject: 'agent:claude-code:u-9000', onBehalfOf: 'u-9000' };
export const ADMIN: Actor = SAMPLE_PARTS['identity.restored'].actor;
export const PRINCIPAL = { subject: AGENT.subject, issuer: AGENT.issuer };

type DeepPartial<T> = { [K in keyof T]?: T[K] extends readonly unknown[] ? T[K] : T[K] extends object ? DeepPartial<T[K]> : T[K] };

export interface EventOptions<K extends EventType> {
  readonly at: number;
  readonly actor?: Partial<Actor>;
  readonly target?: Partial<Target>;
  readonly outcome?: Partial<Outcome>;
  readonly session?: string;
  readonly request?: string;
  readonly tenantId?: string;
  readonly payload?: DeepPartial<PayloadMap[K]> & Record<string, unknown>;
  readonly label?: string;
}

/** An event factory with its own counter: the same calls in the same order give the same events. */
export function eventFactory() {
  let n = 0;
  return function ev<K extends EventType>(type: K, o: EventOptions<K>): UnchainedEvent<K> {
    n++;
    const sample = SAMPLE_PARTS[type];
    const correlation: Correlation = {
      sessionId: o.session ?? sample.correlation.sessionId,
      requestId: o.request ?? `req_${n}`,
      upstreamRequestId: null,
    };
    const payload = { ...sample.payload, ...(o.payload ?? {}) } as PayloadMap[K];
    const label = o.label ?? `${type}#${n}`;
    return newEvent(
      type,
      {
        tenantId: o.tenantId ?? sample.tenantId,
        actor: { ...sample.actor, ...o.actor },
        source: sample.source,
        target: { ...sample.target, ...o.target },
        outcome: { ...sample.outcome, ...o.outcome },
        correlation,
        payload,
      },
      { producer: { id: 'gateway-test' }, clock: { nowUs: () => o.at }, idGen: () => fixtureId(label, o.at) },
    );
  };
}

export const NO_MASKING = { cardDataPresent: false, totalHits: 0, stats: [] } as const;

export function panMasking(direction: 'request' | 'response', hits: number) {
  return { cardDataPresent: true, totalHits: hits, stats: [{ ruleId: 'builtin.pan', direction, action: 'masked', hits }] } as const;
}

/** The default policy with `input` on top (validated like the config file). */
export function policyOf(input: RiskPolicyInput = {}): RiskPolicy {
  return riskPolicySchema.parse(input);
}

/** Everything off except the listed signals (on, no cooldown unless given), no suspension unless given. */
export function onlySignals(on: { readonly [K in keyof RiskPolicy['signals']]?: Record<string, unknown> }, rest: RiskPolicyInput = {}): RiskPolicy {
  const signals: Record<string, unknown> = {};
  for (const key of ['cardData', 'bulkExtraction', 'promptInjection', 'volume', 'offHours', 'repeatedDenials', 'newModel', 'newRoute'] as const) {
    const settings = on[key];
    signals[key] = settings === undefined ? { enabled: false } : { cooldownMs: 0, ...settings };
  }
  return policyOf({ suspendAt: { enabled: false }, ...rest, signals } as RiskPolicyInput);
}

/** Everything off except the named signal: one rule at a time. */
export function only(signal: keyof RiskPolicy['signals'], settings: Record<string, unknown> = {}, rest: RiskPolicyInput = {}): RiskPolicy {
  return onlySignals({ [signal]: settings }, rest);
}

/** Builds outputs with deterministic ids and the given time: what the shell does with its emitter. */
export function outputBuilder(clock: () => number = () => T0): BuildEvent & { readonly built: RiskEvent[] } {
  let n = 0;
  const built: RiskEvent[] = [];
  const build = (o: RiskOutput): RiskEvent => {
    n++;
    const e = toEvent(o, { producer: { id: 'risk-test' }, clock: { nowUs: clock }, idGen: () => fixtureId(`out#${n}`, clock()) });
    built.push(e);
    return e;
  };
  return Object.assign(build, { built });
}

/** Feeds events to a fresh book (each handled at its own time) and returns the book and every output. */
export function run(policy: RiskPolicy, events: readonly RiskEvent[]): { book: RiskBook; outputs: RiskEvent[] } {
  const book = new RiskBook(policy);
  const outputs: RiskEvent[] = [];
  let now = T0;
  const build = outputBuilder(() => now);
  for (const event of events) {
    now = event.metadata.timeUs;
    outputs.push(...book.handle({ kind: 'event', event }, now, build));
  }
  return { book, outputs };
}

export const typesOf = (events: readonly RiskEvent[]): string[] => events.map((e) => e.metadata.type);
