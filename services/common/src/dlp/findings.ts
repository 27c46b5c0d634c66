/**
 * Data security findings (PCI DSS 12.10.7: card data found where it should not be; 10.4.3: exceptions
 * are addressed). Pure: the processor feeds observations in and appends the payloads that come out
 * as finding.opened / finding.updated / finding.closed events.
 *
 * One finding per (detector, value fingerprint, source subject): the same card pasted fifty times by
 * one agent is one case with fifty occurrences, not fifty alerts. Its id is derived from that key, so
 * a redelivered event (the log is at-least-once) updates the same finding instead of opening another.
 */
import { hash } from 'node:crypto';
import type { FindingClosedPayload, FindingOpenedPayload, FindingResolution, FindingUpdatedPayload } from '../events/types.generated';
import type { DlpFinding } from './scan';

/** Where the content came from: the event that carried it and who produced/caused it. */
export interface FindingSource {
  readonly eventId: string;
  readonly producer: string;
  /** The principal whose content it was (actor subject), when known. */
  readonly subject: string | null;
  /** Where the data sits, e.g. 'log:attest.events' or 'store:events.content'. */
  readonly store: string;
}

export interface DataSecurityCase {
  readonly findingId: string;
  readonly status: 'open' | 'closed';
  readonly openedAtUs: number;
  readonly occurrences: number;
  /** Most recent related events first seen, capped at {@link MAX_RELATED}. */
  readonly relatedEventIds: readonly string[];
  /** Reopened after a close: a new finding id generation. */
  readonly generation: number;
}

export const MAX_RELATED = 100;

export function findingKey(f: DlpFinding, src: FindingSource): string {
  // Without a key the value has no fingerprint; fall back to the place, which is still one case.
  const what = f.fingerprint ?? `${src.eventId}|${f.location.jsonPath ?? '$'}|${f.location.charOffset}`;
  return `${f.detectorId}|${what}|${src.subject ?? '-'}`;
}

export function findingId(key: string, generation = 0): string {
  return `dlp-${hash('sha256', `${key}#${generation}`, 'base64url').slice(0, 22)}`;
}

function locationOf(f: DlpFinding, src: FindingSource): string {
  return `${src.store} event ${src.eventId} ${f.location.jsonPath ?? '$'} @${f.location.charOffset}`;
}

export type FindingStep =
  | { readonly type: 'opened'; readonly payload: FindingOpenedPayload }
  | { readonly type: 'updated'; readonly payload: FindingUpdatedPayload }
  | { readonly type: 'unchanged' };

/** Records one data_security finding of a scan against the current case for its key (or none). */
export function observe(
  state: DataSecurityCase | undefined,
  f: DlpFinding,
  src: FindingSource,
  nowUs: number,
): { state: DataSecurityCase; step: FindingStep } {
  if (f.kind !== 'data_security') throw new TypeError('observe() takes data_security findings');
  const key = findingKey(f, src);
  if (state === undefined || state.status === 'closed') {
    const generation = state === undefined ? 0 : state.generation + 1;
    const id = findingId(key, generation);
    const pan = f.pan === undefined ? '' : ` (${f.pan.brand} ${f.pan.bin}…${f.pan.last4})`;
    return {
      state: { findingId: id, status: 'open', openedAtUs: nowUs, occurrences: 1, relatedEventIds: [src.eventId], generation },
      step: {
        type: 'opened',
        payload: {
          findingId: id,
          category: 'data_security',
          severity: f.severity,
          title: `${f.category === 'sad' ? 'Sensitive authentication data' : 'Card data'} found in ${src.store}: ${f.detectorId}${pan}`,
          description: `The DLP processor found ${f.detectorId} in content from ${src.subject ?? 'an unknown principal'} (producer ${src.producer}) at ${locationOf(f, src)}; action: ${f.strategy}. Content is not included.`,
          detectorId: `dlp.${f.detectorId}`,
          relatedEventIds: [src.eventId],
          location: locationOf(f, src),
          startedAtUs: null,
        },
      },
    };
  }
  if (state.relatedEventIds.includes(src.eventId)) return { state, step: { type: 'unchanged' } };
  const related = [src.eventId, ...state.relatedEventIds].slice(0, MAX_RELATED);
  const next: DataSecurityCase = { ...state, occurrences: state.occurrences + 1, relatedEventIds: related };
  return {
    state: next,
    step: {
      type: 'updated',
      payload: {
        findingId: state.findingId,
        status: 'open',
        severity: null,
        assignee: null,
        note: `seen again (${next.occurrences} occurrences) at ${locationOf(f, src)}`,
        relatedEventIds: [src.eventId],
      },
    },
  };
}

/** Closes a case (a person decided: resolved, false positive, …). */
export function closeCase(
  state: DataSecurityCase,
  resolution: FindingResolution,
  reason: string,
  nowUs: number,
): { state: DataSecurityCase; payload: FindingClosedPayload } {
  if (state.status === 'closed') throw new TypeError(`finding ${state.findingId} is already closed`);
  return {
    state: { ...state, status: 'closed' },
    payload: { findingId: state.findingId, resolution, reason, openedAtUs: state.openedAtUs, endedAtUs: nowUs },
  };
}
