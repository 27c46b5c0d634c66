import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ROUTES } from '../config/schema';
import { detectBulkExtraction } from './bulk-extraction';
import { parseDurationMs } from './duration';
import { APPROVAL_ROUTES, approvalPolicySchema, globMatches, matchApprovalRules, type ApprovalMatchRequest, type ApprovalPolicyInput } from './rules';

const policy = (input: ApprovalPolicyInput) => approvalPolicySchema.parse(input);
const req = (over: Partial<ApprovalMatchRequest> = {}): ApprovalMatchRequest => ({
  principal: { groups: ['developers'] },
  model: 'claude-sonnet-4-5',
  route: 'messages',
  promptText: 'summarise this ticket',
  panFound: false,
  ...over,
});
const issues = (input: unknown) => {
  const r = approvalPolicySchema.safeParse(input);
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
};

describe('approvalPolicySchema', () => {
  it('fills defaults and converts the expiry', () => {
    const p = policy({ rules: [{ id: 'r1', match: { keywords: ['card number'] }, approverGroups: ['security'] }] });
    expect(p.rules[0]).toMatchObject({ quorum: 1, mode: 'hold', expiresAfter: '15m', expiresAfterMs: 900_000, scope: 'request' });
    expect(p.rules[0]?.match).toEqual({ keywords: ['card number'], patterns: [], detectors: [], callerGroups: [], models: [], routes: [] });
    expect(policy({}).rules).toEqual([]);
  });

  it('refuses what would silently weaken the policy, naming the path', () => {
    expect(issues({ rules: [{ id: 'r', match: {}, approverGroups: ['s'] }] })[0]).toMatch(/^rules.0.match: an empty match/);
    expect(issues({ rules: [{ id: 'r', match: { detectors: ['luhn'] }, approverGroups: ['s'] }] })[0]).toMatch(/^rules.0.match.detectors.0/);
    expect(issues({ rules: [{ id: 'r', match: { routes: ['mesages'] }, approverGroups: ['s'] }] })[0]).toMatch(/^rules.0.match.routes.0/);
    expect(issues({ rules: [{ id: 'r', match: { models: ['*'] }, approverGroups: [] }] })[0]).toMatch(/^rules.0.approverGroups/);
    expect(issues({ rules: [{ id: 'r', match: { models: ['*'] }, approverGroups: ['s'], quorum: 0 }] })[0]).toMatch(/^rules.0.quorum/);
    expect(issues({ rules: [{ id: 'r', match: { models: ['*'] }, approverGroups: ['s'], unknownKey: 1 }] })).toHaveLength(1);
    const two = { match: { models: ['*'] }, approverGroups: ['s'] };
    expect(issues({ rules: [{ id: 'r', ...two }, { id: 'r', ...two }] })).toEqual(["rules.1.id: duplicate rule id 'r'"]);
  });

  it('validates durations and caps holds at one hour', () => {
    const base = { id: 'r', match: { models: ['*'] }, approverGroups: ['s'] };
    expect(issues({ rules: [{ ...base, expiresAfter: '15 minutes' }] })[0]).toMatch(/^rules.0.expiresAfter/);
    expect(issues({ rules: [{ ...base, expiresAfter: '5s' }] })[0]).toMatch(/between 10s and 7d/);
    expect(issues({ rules: [{ ...base, expiresAfter: '2h' }] })[0]).toMatch(/ask_and_retry/);
    expect(issues({ rules: [{ ...base, expiresAfter: '2h', mode: 'ask_and_retry' }] })).toEqual([]);
    expect(parseDurationMs('90s')).toBe(90_000);
    expect(parseDurationMs('1d')).toBe(86_400_000);
    expect(parseDurationMs('0m')).toBeUndefined();
    expect(parseDurationMs('1.5h')).toBeUndefined();
  });

  it('refuses invalid, overlong and catastrophic-backtracking patterns', () => {
    const withPattern = (p: string) => issues({ rules: [{ id: 'r', match: { patterns: [p] }, approverGroups: ['s'] }] });
    expect(withPattern('([a-z')[0]).toMatch(/not a valid regular expression/);
    expect(withPattern('a'.repeat(257))[0]).toMatch(/at most 256/);
    expect(withPattern('(a+)+$')[0]).toMatch(/exponential/);
    expect(withPattern('(\\w*){2,}')[0]).toMatch(/exponential/);
    expect(withPattern('\\bcvv\\s*\\d{3}\\b')).toEqual([]);
  });

  it('knows the same route names as the gateway config', () => {
    expect([...APPROVAL_ROUTES]).toEqual([...ROUTES]);
  });
});

describe('matchApprovalRules', () => {
  const p = policy({
    rules: [
      { id: 'pan', match: { detectors: ['pan'] }, approverGroups: ['security'], quorum: 2 },
      { id: 'bulk', match: { detectors: ['bulk_extraction'], keywords: ['card number', 'customer list'] }, approverGroups: ['security'] },
      { id: 'secret', match: { patterns: ['\\bproject\\s+(?:atlas|zephyr)\\b'] }, approverGroups: ['legal'], mode: 'ask_and_retry', expiresAfter: '1d' },
      { id: 'contractor-opus', match: { callerGroups: ['contractors'], models: ['claude-opus-*'], routes: ['messages'] }, approverGroups: ['leads'] },
      { id: 'scoped-keyword', match: { callerGroups: ['interns'], keywords: ['production'] }, approverGroups: ['leads'] },
    ],
  });

  it('Given no trigger, Then no rule', () => {
    expect(matchApprovalRules(p, req())).toBeUndefined();
  });

  it('matches keywords case-insensitively on word boundaries, whitespace-tolerant', () => {
    expect(matchApprovalRules(p, req({ promptText: 'What is my CARD\n  NUMBER?' }))).toMatchObject({ rule: { id: 'bulk' }, reasons: ["prompt mentions 'card number'"] });
    expect(matchApprovalRules(p, req({ promptText: 'the postcard numbers are in' }))).toBeUndefined();
    expect(matchApprovalRules(p, req({ promptText: 'card numbering scheme' }))).toBeUndefined();
    expect(matchApprovalRules(p, req({ promptText: 'the Kundenliste, not the customer-list' }))).toBeUndefined();
  });

  it('matches patterns case-insensitively and names them by position, not by the matched text', () => {
    const m = matchApprovalRules(p, req({ promptText: 'status of Project  ATLAS?' }));
    expect(m).toMatchObject({ rule: { id: 'secret', mode: 'ask_and_retry' }, reasons: ["prompt matches pattern #1 of rule 'secret'"] });
    expect(m?.reasons.join()).not.toMatch(/atlas/i);
  });

  it('fires the pan detector on panFound, and the first matching rule wins', () => {
    const m = matchApprovalRules(p, req({ panFound: true, promptText: 'export all card numbers: 411111******1111' }));
    expect(m).toMatchObject({ rule: { id: 'pan', quorum: 2 }, reasons: ['request contains a card number (PAN)'] });
  });

  it('lists every trigger of the matching rule, in a stable order', () => {
    const m = matchApprovalRules(p, req({ promptText: 'Please export all of the customer list with each card number' }));
    expect(m?.rule.id).toBe('bulk');
    expect(m?.reasons).toEqual(["prompt mentions 'card number'", "prompt mentions 'customer list'", "prompt asks for bulk data ('export all')"]);
  });

  it('a scope-only rule matches every request in scope and gives the scope as its reasons', () => {
    const contractor = { principal: { groups: ['contractors'] } };
    expect(matchApprovalRules(p, req({ ...contractor, model: 'claude-opus-4-1' }))).toMatchObject({
      rule: { id: 'contractor-opus' },
      reasons: ["caller is in group 'contractors'", "model 'claude-opus-4-1' matches 'claude-opus-*'", "route 'messages'"],
    });
    expect(matchApprovalRules(p, req({ ...contractor, model: 'claude-sonnet-4-5' }))).toBeUndefined();
    expect(matchApprovalRules(p, req({ ...contractor, model: 'claude-opus-4-1', route: 'count_tokens' }))).toBeUndefined();
  });

  it('scope conditions restrict triggers: a keyword rule for interns ignores everyone else', () => {
    expect(matchApprovalRules(p, req({ promptText: 'deploy to production' }))).toBeUndefined();
    expect(matchApprovalRules(p, req({ principal: { groups: ['interns'] }, promptText: 'deploy to production' }))?.rule.id).toBe('scoped-keyword');
  });

  it('is deterministic and does not carry regex state between calls', () => {
    const r = req({ promptText: 'project zephyr' });
    const first = matchApprovalRules(p, r);
    for (let i = 0; i < 5; i++) expect(matchApprovalRules(p, r)).toEqual(first);
  });

  it('a keyword matches in any case when it stands as a word, and never inside a longer word', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z]{2,12}( [a-z]{2,12})?$/), fc.boolean(), (word, upper) => {
        const kp = policy({ rules: [{ id: 'k', match: { keywords: [word] }, approverGroups: ['s'] }] });
        const shown = upper ? word.toUpperCase() : word;
        expect(matchApprovalRules(kp, req({ promptText: `before ${shown}, after` }))?.rule.id).toBe('k');
        expect(matchApprovalRules(kp, req({ promptText: `before x${shown}y after` }))).toBeUndefined();
      }),
    );
  });

  it('globs match whole model ids', () => {
    expect(globMatches('claude-*', 'claude-x')).toBe(true);
    expect(globMatches('claude-*-latest', 'claude-sonnet-latest')).toBe(true);
    expect(globMatches('claude-*-latest', 'claude-sonnet-4')).toBe(false);
    expect(globMatches('claude-opus-4', 'claude-opus-4-1')).toBe(false);
    expect(globMatches('claude.opus', 'claudeXopus')).toBe(false);
  });
});

describe('bulk-extraction detector', () => {
  it.each([
    ['Export all customers to CSV', 'export all'],
    ['can you dump the table for me', 'dump the table'],
    ['list every customer with their address', 'every customer'],
    ['give me all card numbers', 'all card numbers'],
    ['send all of the cardholders', 'all of the cardholders'],
    ['download the entire thing', 'download the entire'],
    ['please do a bulk export', 'bulk export'],
    ['Dump this database now', 'dump this database'],
  ])('flags %j', (text, phrase) => {
    expect(detectBulkExtraction(text)).toBe(phrase);
  });

  it.each([
    'list all files in src/',
    'fix all the failing tests',
    'for each customer, compute the total',
    'a dumpling recipe',
    'the export function is broken',
    'exporter allows streaming',
  ])('leaves %j alone', (text) => {
    expect(detectBulkExtraction(text)).toBeUndefined();
  });

  it('stays linear on adversarial input (1 MB in well under a second)', () => {
    const inputs = ['all '.repeat(250_000), 'dump ' + 'the '.repeat(250_000) + 'x', 'every' + ' '.repeat(1_000_000) + 'x', 'export\t'.repeat(140_000)];
    for (const text of inputs) {
      const t0 = performance.now();
      detectBulkExtraction(text);
      expect(performance.now() - t0).toBeLessThan(1000);
    }
  });

  it('reports the earliest phrase in the text', () => {
    expect(detectBulkExtraction('every customer, then export all')).toBe('every customer');
  });
});
