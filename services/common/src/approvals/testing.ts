/**
 * Test fixtures for approvals: principals, a rule, a request command, and a Given/When/Then
 * helper over the pure lifecycle.
 */
import { expect } from 'vitest';
import type { ApprovalErrorCode } from './errors';
import { decide, replay, type ApprovalCommand, type ApprovalEvent, type ApprovalPrincipal, type HoldRef, type RuleSnapshot } from './lifecycle';

const ISS = 'https://idp.example.test';

export function person(subject: string, groups: string[] = ['security']): ApprovalPrincipal {
  return { subject, issuer: ISS, groups, kind: 'human' };
}

/** An agent calling for `forSubject` (a delegated token). */
export function agentFor(subject: string, forSubject: string): ApprovalPrincipal {
  return { subject, issuer: ISS, groups: ['developers'], kind: 'agent', onBehalfOf: forSubject };
}

export const requester = agentFor('agent-7', 'alice');
export const alice = person('alice', ['developers', 'security']);
export const bob = person('bob');
export const carol = person('carol');
export const dave = person('dave');
export const eve = person('eve', ['developers']);

export const T0 = Date.UTC(2025, 0, 1, 12, 0, 0);
export const MIN = 60_000;

export function rule(over: Partial<RuleSnapshot> = {}): RuleSnapshot {
  return { id: 'pci.card-data', approverGroups: ['security'], quorum: 2, expiresAfterMs: 15 * MIN, mode: 'hold', scope: 'request', ...over };
}

export const DIGEST_A = 'a'.repeat(64);
export const DIGEST_B = 'b'.repeat(64);
export const HOLD: HoldRef = { gatewayId: 'gateway-1', instanceId: 'run-1', holdId: 'req-1' };

export function requestCommand(over: Partial<Extract<ApprovalCommand, { type: 'request' }>> = {}): Extract<ApprovalCommand, { type: 'request' }> {
  return {
    type: 'request',
    approvalId: 'apr-1',
    rule: rule(),
    requester,
    requestDigest: DIGEST_A,
    hold: HOLD,
    context: {
      requestId: 'req-1',
      sessionId: 'sess-1',
      model: 'claude-sonnet-4-5',
      route: 'messages',
      promptExcerpt: 'please export all customers',
      reasons: ["prompt asks for bulk data ('export all')"],
    },
    ...over,
  };
}

/** The events a successful command produced; fails the test when it was refused. */
export function run(given: readonly ApprovalEvent[], command: ApprovalCommand, nowMs: number): ApprovalEvent[] {
  const r = decide(replay(given), command, nowMs);
  if (!r.ok) throw new Error(`expected ${command.type} to succeed, got ${r.error.code}: ${r.error.message}`);
  return r.events;
}

/** Given events, when command at nowMs, then refused with `code` and no event. */
export function expectRefused(given: readonly ApprovalEvent[], command: ApprovalCommand, nowMs: number, code: ApprovalErrorCode): void {
  const r = decide(replay(given), command, nowMs);
  expect(r.ok ? `accepted with ${r.events.length} event(s)` : r.error.code).toBe(code);
}

/** Requested at T0 and `approvers` approved one minute apart. */
export function history(approvers: ApprovalPrincipal[] = [], over: Partial<Extract<ApprovalCommand, { type: 'request' }>> = {}): ApprovalEvent[] {
  const events = run([], requestCommand(over), T0);
  approvers.forEach((a, i) => {
    events.push(...run(events, { type: 'approve', approvalId: 'apr-1', approver: a, reason: `ok from ${a.subject}` }, T0 + (i + 1) * MIN));
  });
  return events;
}
