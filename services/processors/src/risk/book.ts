/**
 * The risk processor's memory: every watched identity's state, kept bounded. A thin holder around
 * the pure rules (evolve, decide): it routes each input to its identity, folds the input and the
 * built outputs, keeps a finding id → identity index, and forgets identities.
 *
 * The shell's loop, per record of the log (in log order, one at a time):
 *
 *   const events = book.handle({ kind: 'event', event }, nowUs, (o) => emitter.build(o.type, withoutTenant(o.parts)));
 *   await emitter.emit(events, key);     // durable first: suspension on the control channel too
 *   commit(position after the record);   // only then
 *
 * and `book.tick(nowUs, build)` about once a second (lapsed suspensions, quiet findings, eviction).
 * The book has already folded the outputs it returns: if they cannot be appended, retry the same
 * events (same ids), or drop the book and rebuild it (below); never decide the input again on this
 * book, or a suspension could be decided twice.
 *
 * Rebuilding after a restart: `apply` (evolve only, no decisions) the log from `now − max(window)`
 * up to the committed position, including the processor's own outputs and administrators' actions,
 * then resume `handle` from the committed position. Findings and suspensions are then as before;
 * windows are as complete as the replayed stretch.
 *
 * Bounds. An identity is forgotten when it has been idle (no traffic) for limits.idleEvictAfterMs
 * and has no open finding and no suspension; beyond limits.maxIdentities the least recently seen
 * forgettable identities go first. Identities with an open finding or a suspension are never
 * forgotten: forgetting them would re-open findings and re-suspend, breaking "once per crossing".
 * Their number is bounded in practice by findings.autoCloseAfterMs and administrators' reviews.
 * A forgotten identity that comes back starts a new learning period (new model/route signals wait).
 */
import { RiskError } from './errors';
import { decide, type DecideOptions, type RiskInput, type RiskOutput } from './decide';
import type { RiskPolicy } from './policy';
import {
  evolve,
  identityKey,
  initialIdentityState,
  payloadOf,
  principalOfLocation,
  signalOfDetector,
  trafficPrincipal,
  type IdentityState,
  type RiskEvent,
} from './state';
import type { PrincipalRef } from '../../../common/src/events/types.generated';

/** Turns a decided output into the event to append (EvidenceEmitter.build, or toEvent in tests). */
export type BuildEvent = (output: RiskOutput) => RiskEvent;

/** Entries examined per insertion when over maxIdentities, so one insertion stays O(1) amortised. */
const MAX_CAP_SCAN = 64;

export class RiskBook {
  #policy: RiskPolicy;
  readonly #opts: DecideOptions;
  /** Least recently touched first. */
  readonly #identities = new Map<string, IdentityState>();
  /** Open risk findings: finding id → identity key. */
  readonly #findingOwners = new Map<string, string>();

  constructor(policy: RiskPolicy, opts: DecideOptions = {}) {
    this.#policy = policy;
    this.#opts = opts;
  }

  get policy(): RiskPolicy {
    return this.#policy;
  }

  /** A new policy applies from the next input; windows already kept stay as they are. */
  setPolicy(policy: RiskPolicy): void {
    this.#policy = policy;
  }

  get size(): number {
    return this.#identities.size;
  }

  get(tenantId: string, principal: PrincipalRef): IdentityState | undefined {
    return this.#identities.get(identityKey(tenantId, principal));
  }

  /** The identity key an event concerns, or null when it concerns none the rules watch. */
  keyOf(event: RiskEvent): string | null {
    const tenant = event.metadata.tenantId;
    const traffic = trafficPrincipal(event);
    if (traffic !== null) return identityKey(tenant, traffic);
    const suspended = payloadOf(event, 'identity.suspended') ?? payloadOf(event, 'identity.restored') ?? payloadOf(event, 'risk.detected');
    if (suspended !== null) return identityKey(tenant, suspended.principal);
    const opened = payloadOf(event, 'finding.opened');
    if (opened !== null) {
      const principal = principalOfLocation(opened.location);
      return principal !== null && signalOfDetector(opened.detectorId) !== null ? identityKey(tenant, principal) : null;
    }
    const changed = payloadOf(event, 'finding.updated') ?? payloadOf(event, 'finding.closed');
    if (changed !== null) return this.#findingOwners.get(changed.findingId) ?? null;
    return null;
  }

  /** Fold an event without deciding anything: rebuilding after a restart, or outputs read back. */
  apply(event: RiskEvent): void {
    const key = this.keyOf(event);
    if (key === null) return;
    const before = this.#identities.get(key) ?? this.#fresh(event);
    if (before === undefined) return;
    this.#store(key, this.#fold(before, event));
  }

  /**
   * Decide one input, fold it and the built outputs, and return the built events in order.
   * Throws RiskError when an administrator's command is refused (nothing is folded then).
   */
  handle(input: RiskInput, nowUs: number, build: BuildEvent): RiskEvent[] {
    switch (input.kind) {
      case 'tick':
        return this.tick(nowUs, build);
      case 'event': {
        const key = this.keyOf(input.event);
        if (key === null) return [];
        const before = this.#identities.get(key) ?? this.#fresh(input.event);
        if (before === undefined) return [];
        const outputs = decide(before, input, this.#policy, nowUs, this.#opts);
        return this.#commit(key, this.#fold(before, input.event), outputs, build);
      }
      case 'restore': {
        const key = identityKey(input.tenantId, input.principal);
        const before = this.#identities.get(key) ?? initialIdentityState(input.tenantId, input.principal);
        return this.#commit(key, before, decide(before, input, this.#policy, nowUs, this.#opts), build);
      }
      case 'close-finding': {
        const key = this.#findingOwners.get(input.findingId);
        const before = key === undefined ? undefined : this.#identities.get(key);
        if (key === undefined || before === undefined || before.tenantId !== input.tenantId) {
          throw new RiskError('risk_finding_not_open', `finding ${input.findingId} is not open`, {
            where: 'findingId',
            fix: 'list the open findings; a closed finding stays closed',
          });
        }
        return this.#commit(key, before, decide(before, input, this.#policy, nowUs, this.#opts), build);
      }
      default: {
        const never: never = input;
        return never;
      }
    }
  }

  /** Time passes: lapse timed suspensions, close quiet findings, forget idle identities. */
  tick(nowUs: number, build: BuildEvent): RiskEvent[] {
    const events: RiskEvent[] = [];
    for (const [key, state] of [...this.#identities]) {
      if (state.suspension === null && state.findings.length === 0) continue;
      const outputs = decide(state, { kind: 'tick' }, this.#policy, nowUs, this.#opts);
      if (outputs.length > 0) events.push(...this.#commit(key, state, outputs, build));
    }
    this.evictIdle(nowUs);
    return events;
  }

  /** Forgets identities idle since before `nowUs − limits.idleEvictAfterMs` with nothing open. Returns how many. */
  evictIdle(nowUs: number): number {
    const before = nowUs - this.#policy.limits.idleEvictAfterMs * 1000;
    let evicted = 0;
    for (const [key, s] of [...this.#identities]) {
      if (forgettable(s) && (s.lastSeenUs === null || s.lastSeenUs <= before)) {
        this.#identities.delete(key);
        evicted++;
      }
    }
    return evicted;
  }

  /** Every identity's state, least recently touched first, and the finding index: for tests and diagnostics. */
  snapshot(): { readonly identities: readonly IdentityState[]; readonly findingOwners: readonly (readonly [string, string])[] } {
    return { identities: [...this.#identities.values()], findingOwners: [...this.#findingOwners].sort((a, b) => a[0].localeCompare(b[0])) };
  }

  /**
   * The whole book as plain data for a state snapshot: identities least recently touched first (the
   * order eviction uses), and the finding index. States are immutable, so the result stays as it is
   * while the book goes on.
   */
  toState(): RiskBookState {
    return { identities: [...this.#identities.values()], findingOwners: [...this.#findingOwners] };
  }

  /** A book from `toState()` output (a snapshot); throws a TypeError when it is malformed. */
  static fromState(policy: RiskPolicy, state: unknown, opts: DecideOptions = {}): RiskBook {
    const bad = (why: string): never => {
      throw new TypeError(`risk book state is malformed: ${why}`);
    };
    const s = state as Partial<RiskBookState> | null;
    if (s === null || typeof s !== 'object' || !Array.isArray(s.identities) || !Array.isArray(s.findingOwners)) return bad('not a risk book');
    const book = new RiskBook(policy, opts);
    for (const i of s.identities as unknown[]) {
      if (!isIdentityState(i)) return bad('an identity state has the wrong shape');
      if (i.key !== identityKey(i.tenantId, i.principal)) return bad(`identity key ${JSON.stringify(i.key)} does not match its principal`);
      book.#identities.set(i.key, i);
    }
    for (const e of s.findingOwners as unknown[]) {
      if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string' || typeof e[1] !== 'string') return bad('a finding index entry has the wrong shape');
      if (!book.#identities.has(e[1])) return bad(`finding ${e[0]} belongs to an unknown identity`);
      book.#findingOwners.set(e[0], e[1]);
    }
    return book;
  }

  /** A new identity's state, for the inputs that may create one. */
  #fresh(event: RiskEvent): IdentityState | undefined {
    const tenant = event.metadata.tenantId;
    const traffic = trafficPrincipal(event);
    if (traffic !== null) return initialIdentityState(tenant, traffic);
    const suspended = payloadOf(event, 'identity.suspended');
    if (suspended !== null) return initialIdentityState(tenant, suspended.principal);
    const opened = payloadOf(event, 'finding.opened');
    const principal = opened === null ? null : principalOfLocation(opened.location);
    return principal === null ? undefined : initialIdentityState(tenant, principal);
  }

  #fold(state: IdentityState, event: RiskEvent): IdentityState {
    const next = evolve(state, event, this.#policy);
    if (next.findings !== state.findings) {
      for (const f of state.findings) if (!next.findings.includes(f)) this.#findingOwners.delete(f.findingId);
      for (const f of next.findings) this.#findingOwners.set(f.findingId, next.key);
    }
    return next;
  }

  /** Folds the built outputs and stores the state (touching it, as `apply` of the same events would). */
  #commit(key: string, state: IdentityState, outputs: readonly RiskOutput[], build: BuildEvent): RiskEvent[] {
    const events = outputs.map(build);
    let s = state;
    for (const e of events) s = this.#fold(s, e);
    this.#store(key, s);
    return events;
  }

  #store(key: string, state: IdentityState): void {
    const isNew = !this.#identities.delete(key);
    this.#identities.set(key, state);
    if (isNew && this.#identities.size > this.#policy.limits.maxIdentities) this.#enforceCap(key);
  }

  /** Drops the least recently touched forgettable identities until within maxIdentities (scan bounded). */
  #enforceCap(keep: string): void {
    let excess = this.#identities.size - this.#policy.limits.maxIdentities;
    let scanned = 0;
    for (const [key, s] of this.#identities) {
      if (excess <= 0 || scanned++ >= MAX_CAP_SCAN) break;
      if (key !== keep && forgettable(s)) {
        this.#identities.delete(key);
        excess--;
      }
    }
  }
}

/** Version of RiskBookState's shape (IdentityState included): bump it with any change to either. */
export const RISK_BOOK_STATE_VERSION = 1;

export interface RiskBookState {
  readonly identities: readonly IdentityState[];
  readonly findingOwners: readonly (readonly [string, string])[];
}

const ARRAY_FIELDS = ['requests', 'denials', 'sessions', 'models', 'routes', 'marks', 'hits', 'findings', 'liftedSuspensions', 'recentEventIds'] as const;

function isIdentityState(x: unknown): x is IdentityState {
  const s = x as Record<string, unknown> | null;
  if (s === null || typeof s !== 'object') return false;
  const p = s['principal'] as Record<string, unknown> | null;
  const nullableNumber = (v: unknown) => v === null || typeof v === 'number';
  return (
    typeof s['key'] === 'string' &&
    typeof s['tenantId'] === 'string' &&
    p !== null &&
    typeof p === 'object' &&
    typeof p['subject'] === 'string' &&
    typeof p['issuer'] === 'string' &&
    (s['kind'] === null || typeof s['kind'] === 'string') &&
    nullableNumber(s['firstSeenUs']) &&
    nullableNumber(s['lastSeenUs']) &&
    ARRAY_FIELDS.every((f) => Array.isArray(s[f])) &&
    (s['suspension'] === null || (typeof s['suspension'] === 'object' && typeof (s['suspension'] as Record<string, unknown>)['eventId'] === 'string'))
  );
}

function forgettable(s: IdentityState): boolean {
  return s.suspension === null && s.findings.length === 0;
}
