import { describe, expect, it } from 'vitest';
import type { DecisionView, PendingApprovalView } from './backend';
import { contentSecurityPolicy, escapeHtml, html, pageHeaders } from './html';
import { approvalMain, layout, pendingMain, remaining } from './pages';

const VISA = '4111111111111111';
const NOW = Date.parse('2030-01-01T12:00:00Z');

const approval = (over: Partial<PendingApprovalView> = {}): PendingApprovalView => ({
  approvalId: 'apr_1',
  ruleId: 'hold-payments',
  reasons: ['prompt mentions refunds'],
  requester: { issuer: 'https://idp.example', subject: 'agent-payments', kind: 'agent' },
  model: 'claude-sonnet-4-5',
  route: 'messages',
  maskedPrompt: 'refund 411111******1111 please',
  riskSignals: ['pan_in_prompt'],
  requestedAt: '2030-01-01T11:58:00Z',
  expiresAt: '2030-01-01T12:04:10Z',
  quorum: 2,
  approvals: 1,
  mode: 'hold',
  ...over,
});

const page = (main: ReturnType<typeof pendingMain>) => layout({ title: 'T', nonce: 'n0nce', main, viewer: { subject: 'alice' }, csrf: 'tok' });

describe('escaping', () => {
  it('escapes the five HTML metacharacters and leaves nested templates alone', () => {
    expect(escapeHtml(`<a href="x" onclick='y'>&`)).toBe('&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;');
    const inner = html`<b>${'<i>'}</b>`;
    expect(html`<p>${inner}${['<', 1, null, undefined, false]}</p>`.value).toBe('<p><b>&lt;i&gt;</b>&lt;1</p>');
  });

  it('renders hostile domain text inert in every field of the list and the detail page', () => {
    const evil = `"><script>alert(1)</script><img src=x onerror=alert(2)>`;
    const a = approval({
      approvalId: 'apr_evil',
      ruleId: evil,
      reasons: [evil],
      riskSignals: [evil],
      model: evil,
      route: evil,
      maskedPrompt: evil,
      requester: { issuer: evil, subject: evil, kind: evil },
      expiresAt: evil,
      requestedAt: evil,
    });
    const d: DecisionView = { approvalId: evil, decision: 'approved', by: [evil], reason: evil, decidedAt: evil, ruleId: evil };
    for (const out of [page(pendingMain({ pending: [a], decisions: [d], nowMs: NOW })), page(approvalMain({ approval: a, nowMs: NOW, csrf: 'tok', error: evil, reason: evil }))]) {
      expect(out).not.toContain('<script>alert');
      expect(out).not.toContain('<img');
      expect(out).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
      // Only our own two nonce'd elements are script/style.
      expect(out.match(/<script/g)).toHaveLength(1);
      expect(out).toContain('<script nonce="n0nce">');
    }
  });
});

describe('masking before rendering', () => {
  it('masks a raw card number the domain failed to mask, in prompt, reasons, signals and decision reasons', () => {
    const a = approval({ maskedPrompt: `charge ${VISA} now`, reasons: [`card ${VISA}`], riskSignals: [`pan ${VISA}`] });
    const d: DecisionView = { approvalId: 'apr_0', decision: 'rejected', by: ['bob'], reason: `saw ${VISA}`, decidedAt: '2030-01-01T11:00:00Z', ruleId: 'r' };
    const list = page(pendingMain({ pending: [a], decisions: [d], nowMs: NOW }));
    const detail = page(approvalMain({ approval: a, nowMs: NOW, csrf: 'tok', reason: `typed ${VISA}` }));
    for (const out of [list, detail]) {
      expect(out).not.toContain(VISA);
      expect(out).toContain('411111******1111');
    }
  });

  it('shows only an excerpt of a long prompt in the list, the whole (masked) prompt on the detail page', () => {
    const long = `${'a'.repeat(400)}END`;
    expect(page(pendingMain({ pending: [approval({ maskedPrompt: long })], decisions: [], nowMs: NOW }))).not.toContain('END');
    expect(page(approvalMain({ approval: approval({ maskedPrompt: long }), nowMs: NOW, csrf: 't' }))).toContain('END');
  });
});

describe('content', () => {
  it('lists caller, model, rule, reasons, risk signals, quorum and the expiry countdown as text', () => {
    const out = page(pendingMain({ pending: [approval()], decisions: [], nowMs: NOW }));
    for (const s of ['agent-payments', 'claude-sonnet-4-5', 'hold-payments', 'prompt mentions refunds', 'pan_in_prompt', '1 of 2 needed', 'in 4 min 10 s', 'href="/reviewer/approvals/apr_1"']) {
      expect(out).toContain(s);
    }
    expect(out).toContain('Pending (1)');
  });

  it('counts down in words, and says expired once past', () => {
    expect(remaining('2030-01-01T12:00:45Z', NOW)).toBe('in 45 s');
    expect(remaining('2030-01-01T14:05:00Z', NOW)).toBe('in 2 h 5 min');
    expect(remaining('2030-01-01T11:59:59Z', NOW)).toBe('expired');
    expect(remaining('not a date', NOW)).toBe('unknown');
  });

  it('has landmarks, a skip link, labelled required reason, the CSRF token and both buttons', () => {
    const out = page(approvalMain({ approval: approval(), nowMs: NOW, csrf: 'tok-123' }));
    expect(out).toMatch(/<html lang="en">/);
    expect(out).toContain('<main id="main"');
    expect(out).toContain('<header>');
    expect(out).toContain('href="#main"');
    expect(out).toContain('<label for="reason">');
    expect(out).toMatch(/<textarea id="reason" name="reason" required maxlength="1000"/);
    expect(out).toContain('<input type="hidden" name="csrf" value="tok-123">');
    expect(out).toContain('name="decision" value="approve"');
    expect(out).toContain('name="decision" value="deny"');
    expect(out).toContain('action="/reviewer/approvals/apr_1/decision"');
  });

  it('announces a form error as an alert', () => {
    expect(page(approvalMain({ approval: approval(), nowMs: NOW, csrf: 't', error: 'A reason is required' }))).toMatch(/role="alert"[^>]*><p>A reason is required/);
  });
});

describe('content security policy', () => {
  it('allows only the nonce for style and script, and no other source at all', () => {
    const csp = contentSecurityPolicy('abc');
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("style-src 'nonce-abc'");
    expect(csp).toContain("script-src 'nonce-abc'");
    expect(csp).toContain("form-action 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval|https?:/);
    expect(pageHeaders('abc')['cache-control']).toBe('no-store');
    // no-referrer would make Chrome send `Origin: null` on our own form posts, failing the origin check.
    expect(pageHeaders('abc')['referrer-policy']).toBe('same-origin');
  });
});
