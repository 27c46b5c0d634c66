import { describe, expect, it } from 'vitest';
import { compileDlpPolicy, DEFAULT_DLP_POLICY, dlpPolicySchema } from './policy';
import { checkCustomRegex, MAX_WAYS } from './safe-regex';
import { scanAndApply } from './scan';

describe('custom regex admission (no timeouts: bounded by construction)', () => {
  it('accepts bounded, unambiguous patterns and reports their bound', () => {
    for (const p of ['ACME-[0-9]{6,10}', '\\b[A-Z]{2}-[0-9]{4}\\b', '(?:[0-9]{1,3}\\.){3}[0-9]{1,3}', 'EMP(?<n>[0-9]{6})', 'x|y|z']) {
      const v = checkCustomRegex(p);
      expect(v.ok, `${p}: ${v.reason}`).toBe(true);
      expect(v.ways).toBeLessThanOrEqual(MAX_WAYS);
    }
  });
  it.each([
    ['(a+)+$', 'unbounded'],
    ['.*secret', 'unbounded'],
    ['[a-z]{3,}', 'unbounded'],
    ['(?:a{1,9}){1,9}', 'backtrack'],
    ['(a|a){1,40}', 'backtrack'],
    ['(x)\\1', 'backreferences'],
    ['(?=a)b', 'lookahead'],
    ['(?<!a)b', 'lookahead'],
    ['a?', 'empty string'],
    ['a{1,5000}', '1000'],
    ['x'.repeat(300), 'longer'],
    ['(', 'valid'],
  ])('refuses %s (%s) with a fix', (pattern, why) => {
    const v = checkCustomRegex(pattern);
    expect(v.ok).toBe(false);
    expect(v.reason).toContain(why);
    expect(v.fix?.length ?? 0).toBeGreaterThan(3);
  });
  it('refuses flags other than i, m, s, u', () => {
    expect(checkCustomRegex('abc', 'g').ok).toBe(false);
    expect(checkCustomRegex('abc', 'iu').ok).toBe(true);
  });
});

describe('dlpPolicySchema', () => {
  it('defaults: every built-in on, SAD dropped, PAN partial', () => {
    const c = compileDlpPolicy(DEFAULT_DLP_POLICY);
    expect(c.detectors).toHaveLength(15);
    expect(c.byId.get('cvv')?.strategy).toBe('drop');
    expect(c.byId.get('track_data')?.strategy).toBe('drop');
    expect(c.byId.get('pan')?.strategy).toBe('partial');
    expect(DEFAULT_DLP_POLICY.minConfidence).toBe(0.5);
  });
  it('refuses retaining SAD, disabling card detectors, unsafe or duplicate custom patterns, unknown keys', () => {
    const bad = [
      { detectors: { cvv: { strategy: 'redact' } } },
      { detectors: { pan: { enabled: false } } },
      { custom: [{ id: 'a', pattern: '(a+)+' }] },
      { custom: [{ id: 'a', pattern: 'A[0-9]{3}' }, { id: 'a', pattern: 'B[0-9]{3}' }] },
      { custom: [{ id: 'x', pattern: 'X[0-9]{3}', category: 'sad', strategy: 'redact' }] },
      { detectors: { nope: {} } },
      { unknownKey: true },
    ];
    for (const b of bad) {
      const r = dlpPolicySchema.safeParse(b);
      expect(r.success, JSON.stringify(b)).toBe(false);
    }
    const r = dlpPolicySchema.safeParse({ custom: [{ id: 'a', pattern: '(a+)+' }] });
    expect(r.success ? '' : r.error.issues[0]!.path.join('.')).toBe('custom.0.pattern');
    expect(r.success ? '' : r.error.issues[0]!.message).toMatch(/fix: write an explicit bound/);
  });
  it('a code-built policy with an unsafe pattern is refused at compile time with where/fix', () => {
    const p = { ...DEFAULT_DLP_POLICY, custom: [{ ...dlpPolicySchema.parse({ custom: [{ id: 'ok', pattern: 'A[0-9]{3}' }] }).custom[0]!, pattern: '(a+)+' }] };
    expect(() => compileDlpPolicy(p)).toThrow(expect.objectContaining({ code: 'dlp_pattern_unsafe', where: 'dlp.custom[0].pattern' }));
  });
  it('custom patterns run with their strategy, checksum and context words; disabled detectors do not', () => {
    const policy = dlpPolicySchema.parse({
      detectors: { email: { enabled: false }, phone: { strategy: 'partial' } },
      custom: [
        { id: 'employee', pattern: 'EMP-[0-9]{6}', strategy: 'redact' },
        { id: 'loyalty', pattern: '[0-9]{12}', checksum: 'luhn', context: { boost: ['loyalty'] }, confidence: 0.3 },
      ],
    });
    const r = scanAndApply('EMP-123456 mail a@example.com call +44 20 7946 0958 loyalty 123456789015 other 123456789016', policy);
    expect(r.text).toBe('[REDACTED:custom.employee] mail a@example.com call ***0958 loyalty [REDACTED:custom.loyalty] other 123456789016');
  });
  it('enabled: false still drops SAD and masks PANs (card data never stored)', () => {
    const off = dlpPolicySchema.parse({ enabled: false, custom: [{ id: 'e', pattern: 'EMP-[0-9]{6}' }] });
    expect(scanAndApply('EMP-123456 a@example.com 4111111111111111', off).text).toBe('EMP-123456 a@example.com 411111******1111');
    expect(scanAndApply('cvv 123', off).dropped).toBe(true);
  });
});
