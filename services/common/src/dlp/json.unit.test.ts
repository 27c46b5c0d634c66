import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { closeCase, observe, type FindingSource } from './findings';
import { scanJson, type Json } from './json';
import { dlpPolicySchema, DEFAULT_DLP_POLICY } from './policy';
import { canonicalJson, deriveProvenance } from './provenance';
import type { DlpKey } from './types';

const key: DlpKey = { kid: 'k-test', secret: new Uint8Array(32).fill(3) };
const PAN = '5555555555554444';

const request: Json = {
  model: 'claude-x',
  messages: [
    { role: 'user', content: [{ type: 'text', text: `card ${PAN} please` }] },
    { role: 'assistant', content: 'ok' },
    { role: 'user', content: [{ type: 'text', text: 'cvv is below' }, { type: 'text', text: 'cvv: 123' }] },
  ],
  metadata: { 'user id': 'carol@example.org', n: 3, ok: true, none: null },
};

describe('scanJson', () => {
  it('applies the engine to every string and reports the paths that changed', () => {
    const r = scanJson(request, DEFAULT_DLP_POLICY, key);
    expect(r.changedPaths).toEqual(['$.messages[0].content[0].text', '$.messages[2].content[1].text', '$.metadata["user id"]']);
    const v = r.value as { messages: { content: { text: string }[] }[]; metadata: Record<string, Json> };
    expect(v.messages[0]!.content[0]!.text).toBe('card 555555******4444 please');
    expect(v.messages[2]!.content[1]!.text).toBe('[DROPPED:cvv]');
    expect(v.messages[2]!.content[0]!.text).toBe('cvv is below');
    expect(v.metadata['n']).toBe(3);
    expect(r.findings.find((f) => f.detectorId === 'cvv')?.location.jsonPath).toBe('$.messages[2].content[1].text');
    expect(r.applied).toEqual([
      { detectorId: 'cvv', strategy: 'drop', count: 1 },
      { detectorId: 'email', strategy: 'token', count: 1 },
      { detectorId: 'pan', strategy: 'partial', count: 1 },
    ]);
  });
  it('shares unchanged subtrees and returns the same value when nothing matched', () => {
    const clean: Json = { a: ['x', { b: 'y' }], c: 1 };
    expect(scanJson(clean, DEFAULT_DLP_POLICY).value).toBe(clean);
    const r = scanJson(request, DEFAULT_DLP_POLICY, key).value as { messages: Json[] };
    expect(r.messages[1]).toBe((request as { messages: Json[] }).messages[1]);
  });
  it('masks object keys too, and paths name the masked key, never the value', () => {
    const r = scanJson({ [PAN]: 1, [`x ${PAN}`]: 2 } as Json, DEFAULT_DLP_POLICY, key);
    expect(Object.keys(r.value as object)).toEqual(['555555******4444', 'x 555555******4444']);
    expect(JSON.stringify(r.changes)).not.toContain(PAN);
    expect(r.changes.every((c) => c.what === 'key')).toBe(true);
  });
  it("dropScope 'content' removes the whole content", () => {
    const p = dlpPolicySchema.parse({ dropScope: 'content' });
    const r = scanJson(request, p, key);
    expect(r.value).toBe('[DROPPED:cvv]');
    expect(r.changedPaths).toEqual(['$']);
  });
  it('refuses absurd nesting with a stable code', () => {
    let deep: Json = 'x';
    for (let i = 0; i < 300; i++) deep = [deep];
    expect(() => scanJson(deep, DEFAULT_DLP_POLICY)).toThrow(expect.objectContaining({ code: 'dlp_invalid_input' }));
  });
});

describe('provenance (invariant 5)', () => {
  const original = { eventId: 'evt-1', eventHash: new Uint8Array(32).fill(0xab) };
  it('names the original event hash and the rules; digest is over the redacted content only', () => {
    const r = scanJson(request, DEFAULT_DLP_POLICY, key);
    const d = deriveProvenance(original, r, 'request')!;
    expect(d.payload.subjectEventId).toBe('evt-1');
    expect(Buffer.from(d.payload.originalDigest!).equals(Buffer.from(original.eventHash))).toBe(true);
    expect(d.rules).toEqual(r.applied);
    expect(d.payload.maskedDigest.equals(createHash('sha256').update(canonicalJson(r.value)).digest())).toBe(true);
    const pan = d.payload.hits.find((h) => h.ruleId === 'dlp.pan')!;
    expect(pan).toMatchObject({ detector: 'pan', bin: '555555', last4: '4444', action: 'masked', panHmacKeyId: 'k-test', direction: 'request' });
    expect(pan.location).toEqual({ jsonPath: '$.messages[0].content[0].text', contentBlockIndex: 0, charOffset: 5 });
    expect(d.payload.hits.find((h) => h.detector === 'cvv')?.action).toBe('dropped');
    expect(d.payload.hits.find((h) => h.ruleId === 'dlp.email')).toMatchObject({ detector: 'unknown', action: 'tokenized', bin: null, panHmac: null });
  });
  it('no derived event when the pass changed nothing', () => {
    expect(deriveProvenance(original, scanJson({ a: 'fine' }, DEFAULT_DLP_POLICY), 'response')).toBeNull();
  });
  it('canonical JSON sorts keys', () => {
    expect(canonicalJson({ b: 1, a: [{ d: 1, c: 2 }] })).toBe('{"a":[{"c":2,"d":1}],"b":1}');
  });
});

describe('data security finding lifecycle (12.10.7, 10.4.3)', () => {
  const src = (eventId: string, subject = 'agent-7'): FindingSource => ({ eventId, producer: 'gw-1', subject, store: 'log:attest.events' });
  const sec = (text: string) => scanJson({ t: text }, DEFAULT_DLP_POLICY, key).findings.find((f) => f.kind === 'data_security')!;

  it('opens once per card and subject, updates on new events, ignores redelivery, reopens after close', () => {
    const f = sec(`pan ${PAN}`);
    const o = observe(undefined, f, src('e1'), 1000);
    expect(o.step.type).toBe('opened');
    const opened = o.step.type === 'opened' ? o.step.payload : null;
    expect(opened).toMatchObject({ category: 'data_security', severity: 'high', detectorId: 'dlp.pan', relatedEventIds: ['e1'] });
    expect(opened?.location).toContain('$.t');
    expect(JSON.stringify(opened)).not.toContain(PAN);
    expect(opened?.description).toContain('agent-7');
    // Deterministic id: a replay of the same event after a restart finds the same case.
    expect(observe(undefined, f, src('e1'), 5).state.findingId).toBe(o.state.findingId);
    expect(observe(o.state, f, src('e1'), 2000).step.type).toBe('unchanged');
    const u = observe(o.state, sec(`again 5555 5555 5555 4444`), src('e2'), 3000);
    expect(u.step.type).toBe('updated');
    expect(u.state.occurrences).toBe(2);
    const c = closeCase(u.state, 'resolved', 'agent prompt fixed', 4000);
    expect(c.payload).toMatchObject({ findingId: o.state.findingId, resolution: 'resolved', openedAtUs: 1000, endedAtUs: 4000 });
    expect(() => closeCase(c.state, 'resolved', 'twice', 5000)).toThrow();
    const re = observe(c.state, f, src('e3'), 6000);
    expect(re.step.type).toBe('opened');
    expect(re.state.findingId).not.toBe(o.state.findingId);
  });
  it('another subject or another card is another case; SAD findings are critical', () => {
    const f = sec(`pan ${PAN}`);
    expect(observe(undefined, f, src('e1', 'agent-8'), 1).state.findingId).not.toBe(observe(undefined, f, src('e1'), 1).state.findingId);
    const sad = sec('cvv 123');
    expect(observe(undefined, sad, src('e9'), 1).step).toMatchObject({ type: 'opened', payload: { severity: 'critical' } });
  });
});
