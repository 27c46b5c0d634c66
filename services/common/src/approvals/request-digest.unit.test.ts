import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_CANONICAL_DEPTH, canonicalJson, isRequestDigest, requestDigest } from './request-digest';

const body = { model: 'claude-sonnet-4-5', max_tokens: 256, messages: [{ role: 'user', content: 'summarise ticket 42' }] };
const base = { method: 'POST', route: 'messages', model: 'claude-sonnet-4-5', body };

/** Shuffle object keys recursively (a client re-serialising the same request). */
function reorder(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(reorder);
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).reverse().map(([k, x]) => [k, reorder(x)]));
  }
  return v;
}

describe('canonicalJson', () => {
  it('sorts keys by UTF-16 code units and drops whitespace', () => {
    expect(canonicalJson({ b: 1, a: [true, null, 'x'], A: { z: 0, é: 1, '\u{1F600}': 2, '\uFFFF': 3 } })).toBe(
      '{"A":{"z":0,"é":1,"\u{1F600}":2,"\uFFFF":3},"a":[true,null,"x"],"b":1}',
    );
  });

  it('writes numbers as JSON does (JCS), -0 as 0', () => {
    expect(canonicalJson([1.5, 1e21, -0, 0.1 + 0.2])).toBe('[1.5,1e+21,0,0.30000000000000004]');
  });

  it('leaves out undefined properties, and refuses what JSON cannot carry', () => {
    expect(canonicalJson({ a: undefined, b: 1 })).toBe('{"b":1}');
    const codeOf = (v: unknown) => {
      try {
        canonicalJson(v);
        return 'accepted';
      } catch (err) {
        return (err as { code: string }).code;
      }
    };
    expect(codeOf(Number.NaN)).toBe('approval_digest_invalid');
    expect(codeOf(10n)).toBe('approval_digest_invalid');
    expect(codeOf([undefined])).toBe('approval_digest_invalid');
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(codeOf(cyclic)).toBe('approval_digest_invalid');
    let deep: unknown = 1;
    for (let i = 0; i < MAX_CANONICAL_DEPTH + 1; i++) deep = [deep];
    expect(codeOf(deep)).toBe('approval_digest_invalid');
  });

  it('a shared (non-cyclic) sub-object is fine', () => {
    const shared = { x: 1 };
    expect(canonicalJson({ a: shared, b: shared })).toBe('{"a":{"x":1},"b":{"x":1}}');
  });

  it('round-trips: canonical text parses back to the same value, and is a fixed point', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const text = canonicalJson(v);
        expect(canonicalJson(JSON.parse(text))).toBe(text);
        expect(canonicalJson(reorder(JSON.parse(text)))).toBe(text);
      }),
    );
  });
});

describe('requestDigest', () => {
  it('is SHA-256 over a domain-separated canonical form', () => {
    const d = requestDigest(base);
    expect(isRequestDigest(d)).toBe(true);
    const expected = createHash('sha256')
      .update('attest.approval.request.v1\n' + canonicalJson({ method: 'POST', route: 'messages', model: base.model, body }))
      .digest('hex');
    expect(d).toBe(expected);
  });

  it('ignores key order, whitespace and method case', () => {
    const reparsed = JSON.parse(JSON.stringify(reorder(body), null, 2));
    expect(requestDigest({ ...base, method: 'post', body: reparsed })).toBe(requestDigest(base));
  });

  it('changes with any part of the request', () => {
    const d = requestDigest(base);
    expect(requestDigest({ ...base, method: 'PUT' })).not.toBe(d);
    expect(requestDigest({ ...base, route: 'count_tokens' })).not.toBe(d);
    expect(requestDigest({ ...base, model: 'claude-opus-4-1' })).not.toBe(d);
    expect(requestDigest({ ...base, body: { ...body, messages: [{ role: 'user', content: 'export all customers' }] } })).not.toBe(d);
    expect(requestDigest({ ...base, body: { ...body, max_tokens: 257 } })).not.toBe(d);
  });

  it('with a key, is a keyed digest that differs per key', () => {
    const k1 = requestDigest(base, { hmacKey: Buffer.alloc(32, 1) });
    expect(isRequestDigest(k1)).toBe(true);
    expect(k1).not.toBe(requestDigest(base));
    expect(k1).not.toBe(requestDigest(base, { hmacKey: Buffer.alloc(32, 2) }));
  });
});
