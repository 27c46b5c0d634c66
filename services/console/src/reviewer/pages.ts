import type { DecisionView, PendingApprovalView } from './backend';
import { MAX_REASON_CHARS } from './context';
import { Html, html, shown } from './html';

/**
 * Server-rendered pages of the reviewer console: pure functions from views to HTML strings. No
 * framework, no external assets; one inline style and one small optional script, both allowed by
 * the response's CSP nonce. Everything works without JavaScript (the script only keeps the expiry
 * countdowns current). Every value is escaped by `html`, every free text from the domain goes
 * through `shown` (PAN masking) first.
 */

export const BASE = '/reviewer';
const PROMPT_EXCERPT_CHARS = 280;

export interface Viewer {
  subject: string;
  name?: string;
}

export interface LayoutOptions {
  title: string;
  nonce: string;
  main: Html;
  /** Signed-in reviewer: shows who and a sign-out button (needs `csrf`). */
  viewer?: Viewer;
  csrf?: string;
  /** Extra head markup (the post-login hop's meta refresh). */
  head?: Html;
}

const STYLE = `
:root{color-scheme:light dark;--fg:#1b1b1b;--bg:#fff;--muted:#555;--line:#c9c9c9;--accent:#0b57d0;--bad:#a50e0e;--ok:#0b6e2f}
@media (prefers-color-scheme:dark){:root{--fg:#eee;--bg:#161616;--muted:#b5b5b5;--line:#444;--accent:#8ab4f8;--bad:#f28b82;--ok:#81c995}}
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header,main,footer{max-width:60rem;margin:0 auto;padding:1rem}
header{display:flex;flex-wrap:wrap;gap:1rem;align-items:center;justify-content:space-between;border-bottom:1px solid var(--line)}
header p{margin:0}
a{color:var(--accent)}
:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:1rem;background:var(--bg);padding:.5rem}
.visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
ul.approvals{list-style:none;padding:0}
ul.approvals>li{border:1px solid var(--line);border-radius:6px;padding:0 1rem 1rem;margin:0 0 1rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;margin:0 0 1rem}
dt{color:var(--muted)}dd{margin:0}
dd ul{margin:0;padding-left:1.2rem}
pre{white-space:pre-wrap;word-break:break-word;border-left:4px solid var(--line);padding:.5rem 1rem;margin:0 0 1rem;max-height:30rem;overflow:auto}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.4rem;border-bottom:1px solid var(--line);vertical-align:top}
label{display:block;font-weight:600}
textarea{width:100%;min-height:6rem;font:inherit;padding:.5rem}
button{font:inherit;padding:.5rem 1.2rem;margin:.5rem .5rem 0 0;cursor:pointer}
.approve{background:var(--ok);color:var(--bg);border:0}.deny{background:var(--bad);color:var(--bg);border:0}
.alert{border:2px solid var(--bad);padding:.5rem 1rem}.notice{border:2px solid var(--ok);padding:.5rem 1rem}
.muted{color:var(--muted)}
`;

// Optional: keeps "expires in …" current. Without it the server-rendered text is still right at load.
const SCRIPT = `(function(){
function f(ms){if(ms<=0)return'expired';var s=Math.floor(ms/1000),h=Math.floor(s/3600),m=Math.floor(s%3600/60);s=s%60;
return'in '+(h?h+' h '+m+' min':m?m+' min '+s+' s':s+' s');}
function tick(){var ts=document.querySelectorAll('time[data-countdown]');for(var i=0;i<ts.length;i++){var t=ts[i];t.textContent=f(Date.parse(t.getAttribute('datetime'))-Date.now());}}
setInterval(tick,1000);})();`;

export function layout(o: LayoutOptions): string {
  const signedIn =
    o.viewer === undefined
      ? ''
      : html`<p>Signed in as <strong>${o.viewer.name ?? o.viewer.subject}</strong>${o.viewer.name === undefined ? '' : html` <span class="muted">(${o.viewer.subject})</span>`}</p>
<form method="post" action="${BASE}/logout"><input type="hidden" name="csrf" value="${o.csrf ?? ''}"><button type="submit">Sign out</button></form>`;
  return `<!doctype html>${html`
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>${o.title} · Attest reviewer console</title>
${o.head}
<style nonce="${o.nonce}">${new Html(STYLE)}</style>
</head>
<body>
<a class="skip" href="#main">Skip to main content</a>
<header>
<p><a href="${BASE}">Attest approvals</a></p>
${signedIn}
</header>
<main id="main" tabindex="-1">
${o.main}
</main>
<footer><p class="muted">Card numbers are masked. Decisions are recorded as signed audit evidence.</p></footer>
<script nonce="${o.nonce}">${new Html(SCRIPT)}</script>
</body>
</html>`}`;
}

/** "in 4 min 10 s", "in 45 s", "expired": the same text the script renders. */
export function remaining(expiresAt: string, nowMs: number): string {
  const ms = Date.parse(expiresAt) - nowMs;
  if (!Number.isFinite(ms)) return 'unknown';
  if (ms <= 0) return 'expired';
  let s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  s %= 60;
  return `in ${h > 0 ? `${h} h ${m} min` : m > 0 ? `${m} min ${s} s` : `${s} s`}`;
}

const approvalHref = (id: string) => `${BASE}/approvals/${encodeURIComponent(id)}`;

function excerpt(text: string): string {
  const masked = shown(text);
  return masked.length <= PROMPT_EXCERPT_CHARS ? masked : `${masked.slice(0, PROMPT_EXCERPT_CHARS)}…`;
}

const list = (items: string[], empty: string): Html =>
  items.length === 0 ? html`<span class="muted">${empty}</span>` : html`<ul>${items.map((i) => html`<li>${shown(i)}</li>`)}</ul>`;

function facts(a: PendingApprovalView, nowMs: number): Html {
  return html`<dl>
<dt>Caller</dt><dd>${a.requester.subject} <span class="muted">(${a.requester.kind}, ${a.requester.issuer})</span></dd>
<dt>Model</dt><dd>${a.model}</dd>
<dt>Route</dt><dd>${a.route}</dd>
<dt>Rule</dt><dd>${a.ruleId}</dd>
<dt>Reasons</dt><dd>${list(a.reasons, 'none given')}</dd>
<dt>Risk signals</dt><dd>${list(a.riskSignals, 'none')}</dd>
<dt>Requested</dt><dd>${a.requestedAt}</dd>
<dt>Expires</dt><dd><time datetime="${a.expiresAt}" data-countdown>${remaining(a.expiresAt, nowMs)}</time> <span class="muted">(${a.expiresAt})</span></dd>
<dt>Approvals</dt><dd>${a.approvals} of ${a.quorum} needed</dd>
<dt>Mode</dt><dd>${a.mode === 'hold' ? 'request held until decided' : 'caller asked to retry after approval'}</dd>
</dl>`;
}

function pendingItem(a: PendingApprovalView, nowMs: number): Html {
  const h = `approval-${a.approvalId}`;
  return html`<li><article aria-labelledby="${h}">
<h3 id="${h}">${a.ruleId}: ${a.requester.subject} → ${a.model}</h3>
${facts(a, nowMs)}
<p class="muted">Prompt (masked excerpt)</p>
<pre>${excerpt(a.maskedPrompt)}</pre>
<p><a href="${approvalHref(a.approvalId)}">Review and decide<span class="visually-hidden"> on approval ${a.approvalId}</span></a></p>
</article></li>`;
}

function decisionsTable(decisions: DecisionView[]): Html {
  if (decisions.length === 0) return html`<p>No decisions yet.</p>`;
  return html`<table>
<caption class="visually-hidden">Recent decisions, newest first</caption>
<thead><tr><th scope="col">Decided</th><th scope="col">Approval</th><th scope="col">Rule</th><th scope="col">Decision</th><th scope="col">By</th><th scope="col">Reason</th></tr></thead>
<tbody>${decisions.map(
    (d) => html`<tr><td>${d.decidedAt}</td><td>${d.approvalId}</td><td>${d.ruleId}</td><td>${d.decision}</td><td>${d.by.length === 0 ? '—' : d.by.join(', ')}</td><td>${d.reason === null ? '—' : shown(d.reason)}</td></tr>`,
  )}</tbody>
</table>`;
}

export interface PendingPageInput {
  pending: PendingApprovalView[];
  decisions: DecisionView[];
  nowMs: number;
  /** Shown after a decision was recorded (post/redirect/get). */
  notice?: string;
}

export function pendingMain(p: PendingPageInput): Html {
  return html`<h1>Approvals</h1>
${p.notice === undefined ? '' : html`<p class="notice" role="status">${p.notice}</p>`}
<section aria-labelledby="pending-h">
<h2 id="pending-h">Pending (${p.pending.length})</h2>
${p.pending.length === 0 ? html`<p>Nothing is waiting for you.</p>` : html`<ul class="approvals">${p.pending.map((a) => pendingItem(a, p.nowMs))}</ul>`}
</section>
<section aria-labelledby="decisions-h">
<h2 id="decisions-h">Recent decisions</h2>
${decisionsTable(p.decisions)}
</section>`;
}

export interface ApprovalPageInput {
  approval: PendingApprovalView;
  nowMs: number;
  csrf: string;
  /** A refusal to show above the form (role=alert). */
  error?: string;
  /** The reason the reviewer typed, kept when the form comes back with an error. */
  reason?: string;
}



export function approvalMain(p: ApprovalPageInput): Html {
  const a = p.approval;
  return html`<p><a href="${BASE}">← All pending approvals</a></p>
<h1>Approval ${a.approvalId}</h1>
${p.error === undefined ? '' : html`<div class="alert" role="alert" id="form-error"><p>${shown(p.error)}</p></div>`}
${facts(a, p.nowMs)}
<h2>Prompt (masked)</h2>
<pre>${shown(a.maskedPrompt)}</pre>
<h2 id="decide-h">Decide</h2>
<form method="post" action="${approvalHref(a.approvalId)}/decision" aria-labelledby="decide-h">
<input type="hidden" name="csrf" value="${p.csrf}">
<label for="reason">Reason (required)</label>
<textarea id="reason" name="reason" required maxlength="${MAX_REASON_CHARS}" aria-describedby="reason-hint"${p.error === undefined ? '' : html` aria-invalid="true"`}>${shown(p.reason ?? '')}</textarea>
<p id="reason-hint" class="muted">Recorded with your decision in the audit evidence. Do not paste card numbers.</p>
<button type="submit" name="decision" value="approve" class="approve">Approve</button>
<button type="submit" name="decision" value="deny" class="deny">Deny</button>
</form>`;
}

/** A page with a heading, a message and an optional link (errors, 403, signed out). */
export function messageMain(title: string, message: string, link?: { href: string; label: string }, details?: Html): Html {
  return html`<h1>${title}</h1>
<p>${message}</p>
${details}
${link === undefined ? '' : html`<p><a href="${link.href}">${link.label}</a></p>`}`;
}
