import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { DEFAULT_RISK_POLICY, riskPolicySchema, signalSettings, SIGNAL_IDS, SIGNAL_POLICY_KEY } from './policy';

const problems = (input: unknown) => {
  const r = riskPolicySchema.safeParse(input);
  return r.success ? [] : r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
};

describe('riskPolicySchema', () => {
  it('Given an empty risk section, Then every signal, band and bound has its documented default', () => {
    const p = riskPolicySchema.parse({});
    expect(p).toEqual(DEFAULT_RISK_POLICY);
    expect(p.enabled).toBe(true);
    expect(p.signals.volume).toMatchObject({ enabled: true, windowMs: 600_000, maxRequests: 300, maxRequestsPerSession: 2_000 });
    expect(p.signals.repeatedDenials).toMatchObject({ windowMs: 300_000, threshold: 5 });
    expect(p.signals.promptInjection.markers).toContain('ignore previous instructions');
    expect(p.signals.promptInjection.sources).toEqual(['tool_result']);
    expect(p.signals.cardData.ruleIds).toEqual(['builtin.pan']);
    expect(p.scoring.severityBands).toEqual({ low: 0.2, medium: 0.4, high: 0.6, critical: 0.8 });
    expect(p.suspendAt).toEqual({ enabled: false, score: 1, signals: [], durationMs: null });
    expect(p.findings.autoCloseAfterMs).toBe(86_400_000);
    for (const id of SIGNAL_IDS) expect(signalSettings(p, id)).toBe(p.signals[SIGNAL_POLICY_KEY[id]]);
  });

  it('mounts under a config key with prefault, as the config file does', () => {
    const config = z.strictObject({ risk: riskPolicySchema.prefault({}) });
    expect(config.parse({}).risk).toEqual(DEFAULT_RISK_POLICY);
    expect(config.parse({ risk: { suspendAt: { durationMs: 900_000 } } }).risk.suspendAt.durationMs).toBe(900_000);
  });

  it('refuses unknown keys, naming the path (a misspelt threshold must not be ignored)', () => {
    expect(problems({ signals: { volume: { maxRequest: 10 } } })).toEqual([{ path: 'signals.volume', message: expect.stringContaining('maxRequest') }]);
  });

  it('refuses decreasing severity bands, an empty hour range, a weight above 1, an unknown suspending signal', () => {
    expect(problems({ scoring: { severityBands: { low: 0.5, medium: 0.4 } } })).toEqual([
      { path: 'scoring.severityBands', message: 'severity bands must not decrease: low ≤ medium ≤ high ≤ critical' },
    ]);
    expect(problems({ signals: { offHours: { hours: { agent: [{ from: 9, to: 9 }] } } } })[0]?.path).toBe('signals.offHours.hours.agent.0');
    expect(problems({ signals: { cardData: { weight: 1.5 } } })[0]?.path).toBe('signals.cardData.weight');
    expect(problems({ suspendAt: { signals: ['card_data'] } })[0]?.path).toBe('suspendAt.signals.0');
    expect(problems({ suspendAt: { score: 0 } })[0]?.path).toBe('suspendAt.score');
  });

  it('takes exfiltration hosts as host names, lower-cased; a URL is refused with a fix', () => {
    expect(riskPolicySchema.parse({ signals: { promptInjection: { exfiltrationHosts: [' Evil.Example '] } } }).signals.promptInjection.exfiltrationHosts).toEqual(['evil.example']);
    expect(problems({ signals: { promptInjection: { exfiltrationHosts: ['https://evil.example/'] } } })).toEqual([
      { path: 'signals.promptInjection.exfiltrationHosts.0', message: 'a host name or suffix, e.g. webhook.site' },
    ]);
  });
});
