import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { resolveOverlaps } from './overlap';
import { dlpPolicySchema, DEFAULT_DLP_POLICY } from './policy';
import { detect, scanAndApply } from './scan';
import { keyedHash } from './strategies';
import type { DlpKey, DlpSpan } from './types';

const key: DlpKey = { kid: 'k-test', secret: new Uint8Array(32).fill(9) };
const PAN = '4111111111111111';

describe('strategies', () => {
  it('partial PAN keeps first six and last four; redact names the detector', () => {
    expect(scanAndApply(`card ${PAN} ok`, DEFAULT_DLP_POLICY).text).toBe('card 411111******1111 ok');
    expect(scanAndApply('ssn 512-44-1234', DEFAULT_DLP_POLICY).text).toBe('ssn [REDACTED:us_ssn]');
  });
  it('token: keyed, stable per value and layout, differs per key; needs a key', () => {
    const p = dlpPolicySchema.parse({ detectors: { pan: { strategy: 'token' } } });
    const a = scanAndApply(`a ${PAN}`, p, key).text;
    const b = scanAndApply('b 4111-1111-1111-1111', p, key).text;
    expect(a.slice(2)).toBe(b.slice(2));
    expect(a).toMatch(/^a \[TOKEN:pan:[A-Za-z0-9_-]{16}\]$/);
    expect(scanAndApply(`a ${PAN}`, p, { kid: 'k2', secret: new Uint8Array(32).fill(1) }).text).not.toBe(a);
    expect(() => scanAndApply(`a ${PAN}`, p)).toThrow(expect.objectContaining({ code: 'dlp_key_invalid' }));
    expect(() => scanAndApply(`a ${PAN}`, p, { kid: 'short', secret: new Uint8Array(8) })).toThrow(expect.objectContaining({ code: 'dlp_key_invalid' }));
  });
  it('PAN fingerprints equal the evidence panHmac (HMAC-SHA-256 of the digits under the same key)', () => {
    const f = scanAndApply(`x ${PAN}`, DEFAULT_DLP_POLICY, key).findings[0]!;
    expect(f.fingerprint).toBe(createHmac('sha256', key.secret).update(PAN).digest('base64url'));
    expect(f.keyId).toBe('k-test');
    expect(keyedHash(key, 'email', 'a')).not.toBe(keyedHash(key, 'phone', 'a'));
  });
  it('drop removes the whole string; SAD is always dropped, whatever the policy says for the winner', () => {
    const r = scanAndApply(`card ${PAN} exp 12/27 cvv 123 and a@example.com`, DEFAULT_DLP_POLICY, key);
    expect(r.dropped).toBe(true);
    expect(r.text).toBe('[DROPPED:cvv]');
    expect(r.text).not.toContain('4111');
    expect(r.applied).toEqual([
      { detectorId: 'cvv', strategy: 'drop', count: 1 },
      { detectorId: 'email', strategy: 'drop', count: 1 },
      { detectorId: 'expiry', strategy: 'drop', count: 1 },
      { detectorId: 'pan', strategy: 'drop', count: 1 },
    ]);
  });
});

describe('overlap resolution', () => {
  const spec: Record<string, number> = { a: 10, b: 50, c: 50 };
  const s = (detectorId: string, start: number, end: number): DlpSpan => ({ detectorId, start, end, confidence: 1 });
  it('the most specific detector names the union; ties go to the longer span; adjacency is not overlap', () => {
    const r = resolveOverlaps([s('a', 0, 10), s('b', 5, 8), s('c', 9, 20), s('a', 20, 25)], (id) => spec[id] ?? 0);
    expect(r.map((x) => [x.start, x.end, x.winner.detectorId])).toEqual([
      [0, 20, 'c'],
      [20, 25, 'a'],
    ]);
  });
  it('track data wins over the PAN inside it; a wider region is redacted, not partially shown', () => {
    const t = '%B4111111111111111^DOE/JOHN^2512101000000?';
    const r = detect(t, DEFAULT_DLP_POLICY);
    expect(r).toHaveLength(1);
    expect(r[0]!.winner.detectorId).toBe('track_data');
    const custom = dlpPolicySchema.parse({ detectors: { pan: { strategy: 'partial' } }, custom: [{ id: 'acct', pattern: 'ACCT:[0-9]{16}' }] });
    expect(scanAndApply(`x ACCT:${PAN} y`, custom).text).toBe('x [REDACTED:pan] y');
  });
});

describe('findings', () => {
  it('data_masked for every region, data_security for card data, no values inside', () => {
    const r = scanAndApply(`card ${PAN}, mail a@example.com`, DEFAULT_DLP_POLICY, key);
    expect(r.findings.map((f) => `${f.kind}:${f.detectorId}`)).toEqual(['data_masked:pan', 'data_security:pan', 'data_masked:email']);
    const f = r.findings[1]!;
    expect(f).toMatchObject({ category: 'card', severity: 'high', strategy: 'partial', location: { charOffset: 5, length: 16 }, pan: { bin: '411111', last4: '1111', brand: 'visa' } });
    expect(JSON.stringify(r.findings)).not.toContain(PAN);
    expect(JSON.stringify(r.findings)).not.toContain('a@example.com');
  });
});

describe('properties', () => {
  const prose = fc.array(fc.constantFrom('the', 'order', 'total', 'is', '42', 'v1.2.3', 'at', '10:30', 'ok.', '\n', 'ids', '2024-01-15', '#7'), { maxLength: 30 }).map((w) => w.join(' '));
  const secret = fc.constantFrom(
    PAN,
    '5555 5555 5555 4444',
    'DE89370400440532013000',
    'AKIAIOSFODNN7EXAMPLE',
    'carol@example.org',
    '512-44-1234',
    'sk-ant-api03-aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3hJ5kL7AA',
    '+44 20 7946 0958',
  );

  it('text without anything sensitive comes back unchanged (same string)', () => {
    fc.assert(
      fc.property(prose, (t) => {
        const r = scanAndApply(t, DEFAULT_DLP_POLICY, key);
        return r.text === t && r.applied.length === 0;
      }),
      { numRuns: 300 },
    );
  });

  it('no detected value survives in the output, whatever the strategy', () => {
    // (A value next to a suppress word may not be detected at all; the property is about detections.)
    fc.assert(
      fc.property(prose, secret, prose, fc.constantFrom('redact', 'token', 'partial'), (a, s, b, strategy) => {
        const p = dlpPolicySchema.parse({ detectors: { pan: { strategy }, email: { strategy }, iban: { strategy }, phone: { strategy } } });
        const t = `${a} ${s} ${b}`;
        const regions = detect(t, p);
        const out = scanAndApply(t, p, key).text;
        return regions.every((r) => !out.includes(t.slice(r.start, r.end)));
      }),
      { numRuns: 300 },
    );
  });

  it('scanning the output again finds nothing more (idempotent)', () => {
    fc.assert(
      fc.property(prose, secret, prose, (a, s, b) => {
        const once = scanAndApply(`${a} ${s} ${b}`, DEFAULT_DLP_POLICY, key).text;
        return scanAndApply(once, DEFAULT_DLP_POLICY, key).applied.length === 0;
      }),
      { numRuns: 300 },
    );
  });

  it('random strings never throw and never grow a drop without a SAD finding', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (t) => {
        const r = scanAndApply(t, DEFAULT_DLP_POLICY, key);
        return !r.dropped || r.findings.some((f) => f.category === 'sad' || f.strategy === 'drop');
      }),
      { numRuns: 500 },
    );
  });
});
