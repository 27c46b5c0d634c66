/**
 * Tells approvers that an approval is waiting: one POST of a Slack-compatible JSON body (`text` for
 * notifications and clients without blocks, `blocks` for the message) to a webhook URL.
 *
 *   notify(notice) ──POST──▶ webhook ── 2xx ──▶ delivered
 *                              │── 5xx / 429 / network / timeout ──▶ wait (backoff + jitter,
 *                              │                                      or Retry-After) ──▶ POST again
 *                              └── other 4xx ──▶ rejected (a bad URL or body does not heal by retrying)
 *
 * A notification is a courtesy, never a gate: `notify` never throws, the approval stands whether or
 * not anyone was told, and the console lists it either way. The webhook URL is a secret (Slack
 * puts the token in the path): it is never logged or put in a result.
 *
 * The prompt excerpt reaches us already PAN-masked; it is masked again here (defence in depth)
 * before it is cut, because a cut can split a card number into digits no scanner recognises.
 */
import { setTimeout as sleepTimer } from 'node:timers/promises';
import { Agent, request, type Dispatcher } from 'undici';
import type { ApprovalMode, ApprovalState } from '../../../common/src/approvals';
import { maskPans, type PanMaskFormat } from '../../../common/src/masking';

export interface ApprovalNotice {
  readonly approvalId: string;
  readonly ruleId: string;
  readonly mode: ApprovalMode;
  readonly caller: { readonly subject: string; readonly onBehalfOf?: string | undefined; readonly kind?: string | undefined };
  readonly model: string;
  readonly route: string;
  /** The prompt after PAN masking. */
  readonly promptExcerpt: string;
  readonly reasons: readonly string[];
  readonly quorum: number;
  readonly approverGroups: readonly string[];
  readonly expiresAtMs: number;
  readonly justification?: string | null | undefined;
}

/** The notice for an approval in the book (after its `requested` event). */
export function noticeFromState(s: ApprovalState): ApprovalNotice {
  return {
    approvalId: s.approvalId,
    ruleId: s.rule.id,
    mode: s.rule.mode,
    caller: { subject: s.requester.subject, onBehalfOf: s.requester.onBehalfOf, kind: s.requester.kind },
    model: s.context.model,
    route: s.context.route,
    promptExcerpt: s.context.promptExcerpt,
    reasons: s.context.reasons,
    quorum: s.rule.quorum,
    approverGroups: s.rule.approverGroups,
    expiresAtMs: s.expiresAtMs,
    justification: s.context.justification,
  };
}

// ---------------------------------------------------------------------------------------------
// The message

export interface SlackText {
  readonly type: 'mrkdwn' | 'plain_text';
  readonly text: string;
}
export type SlackBlock =
  | { readonly type: 'header'; readonly text: SlackText }
  | { readonly type: 'section'; readonly text?: SlackText; readonly fields?: readonly SlackText[] }
  | { readonly type: 'actions'; readonly elements: readonly { type: 'button'; text: SlackText; url: string; action_id: string }[] }
  | { readonly type: 'context'; readonly elements: readonly SlackText[] };

export interface SlackMessage {
  readonly text: string;
  readonly blocks: readonly SlackBlock[];
}

export interface MessageOptions {
  /** Base URL of the approvals console; the message links to `${consoleUrl}/approvals/${id}`. */
  readonly consoleUrl: string;
  /** Characters of prompt shown. Default 300. */
  readonly excerptChars?: number;
  /** Default 'last4': the least a person deciding needs to see. */
  readonly maskFormat?: PanMaskFormat;
}

// Slack's limits: section text 3000 characters, a field 2000, at most 10 fields.
const SECTION_MAX = 3000;
const FIELD_MAX = 2000;

/** Slack mrkdwn control characters; escaping them also defuses `<!channel>` and `<url|label>` in input. */
export function escapeMrkdwn(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Cut to at most `max` code points (never half a surrogate pair), marking the cut. */
function cutCodePoints(text: string, max: number): string {
  const points = Array.from(text);
  return points.length <= max ? text : points.slice(0, Math.max(0, max - 1)).join('') + '…';
}

export function approvalUrl(consoleUrl: string, approvalId: string): string {
  return `${consoleUrl.replace(/\/+$/, '')}/approvals/${encodeURIComponent(approvalId)}`;
}

export function buildSlackMessage(n: ApprovalNotice, opts: MessageOptions): SlackMessage {
  const format = opts.maskFormat ?? 'last4';
  const safe = (s: string) => escapeMrkdwn(maskPans(s, format).text);
  const field = (label: string, value: string): SlackText => ({ type: 'mrkdwn', text: cutCodePoints(`*${label}*\n${value}`, FIELD_MAX) });
  const url = approvalUrl(opts.consoleUrl, n.approvalId);
  const expires = new Date(n.expiresAtMs).toISOString().replace(/\.\d{3}Z$/, 'Z');
  const caller = n.caller.onBehalfOf ? `${n.caller.subject} (for ${n.caller.onBehalfOf})` : n.caller.subject;
  // Mask the whole excerpt first, then cut; a backtick run cannot close the code block early.
  const excerpt = cutCodePoints(maskPans(n.promptExcerpt, format).text, opts.excerptChars ?? 300).replace(/```/g, '`\u200b``');
  const reasons = n.reasons.length > 0 ? n.reasons.map((r) => `• ${safe(r)}`).join('\n') : '• required by the policy';

  const blocks: SlackBlock[] = [
    { type: 'header', text: { type: 'plain_text', text: 'Approval needed' } },
    { type: 'section', text: { type: 'mrkdwn', text: cutCodePoints(`*Why*\n${reasons}`, SECTION_MAX) } },
    {
      type: 'section',
      fields: [
        field('Approval', `\`${safe(n.approvalId)}\``),
        field('Rule', safe(n.ruleId)),
        field('Caller', safe(caller)),
        field('Model', safe(n.model)),
        field('Approvals needed', `${n.quorum} from ${n.approverGroups.map(safe).join(', ')}`),
        field('Expires', `${expires}${n.mode === 'hold' ? ' (request held open)' : ' (caller retries once approved)'}`),
      ],
    },
    { type: 'section', text: { type: 'mrkdwn', text: cutCodePoints(`*Prompt (card numbers masked)*\n\`\`\`${escapeMrkdwn(excerpt) || ' '}\`\`\``, SECTION_MAX) } },
  ];
  if (n.justification) {
    blocks.push({ type: 'section', text: { type: 'mrkdwn', text: cutCodePoints(`*Caller's justification*\n${safe(n.justification)}`, SECTION_MAX) } });
  }
  blocks.push(
    { type: 'actions', elements: [{ type: 'button', text: { type: 'plain_text', text: 'Review in console' }, url, action_id: 'attest_open_approval' }] },
    { type: 'context', elements: [{ type: 'mrkdwn', text: `<${url}|Open approval ${escapeMrkdwn(encodeURIComponent(n.approvalId))}> · decide in the console; Slack cannot approve` }] },
  );
  return {
    text: cutCodePoints(`Approval needed (${safe(n.ruleId)}): ${safe(caller)} → ${safe(n.model)}, expires ${expires}. ${url}`, SECTION_MAX),
    blocks,
  };
}

// ---------------------------------------------------------------------------------------------
// Delivery

export interface BackoffOptions {
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
}

/** "Full jitter": uniform in [0, min(max, base·2^(attempt−1))], attempt counting from 1. */
export function backoffDelayMs(attempt: number, o: BackoffOptions, random: () => number = Math.random): number {
  const ceiling = Math.min(o.maxDelayMs, o.baseDelayMs * 2 ** Math.max(0, attempt - 1));
  return Math.floor(random() * ceiling);
}

/** Retry-After as delta-seconds or an HTTP-date (RFC 9110 §10.2.3), in ms from now; undefined if absent or unreadable. */
export function parseRetryAfterMs(value: string | string[] | undefined, nowMs: number): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined) return undefined;
  const t = v.trim();
  if (/^\d+$/.test(t)) return Number(t) * 1000;
  const at = Date.parse(t);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

export type NotifyOutcome =
  /** 2xx. */
  | 'delivered'
  /** A 4xx other than 429: retrying would not help (wrong URL, revoked webhook, bad body). */
  | 'rejected'
  /** Every attempt failed. */
  | 'exhausted'
  /** The server asked to wait longer than `maxRetryAfterMs`. */
  | 'retry_after_too_long'
  /** close() was called while retrying. */
  | 'closed';

export interface NotifyAttempt {
  readonly attempt: number;
  /** HTTP status; null when no response (network error, timeout). */
  readonly status: number | null;
  /** 'timeout', a network error code such as 'ECONNREFUSED', or null. Never the URL. */
  readonly error: string | null;
  readonly durationMs: number;
  /** The wait before the next attempt; null after the last. */
  readonly waitMs: number | null;
}

export interface NotifyResult {
  readonly approvalId: string;
  readonly ok: boolean;
  readonly outcome: NotifyOutcome;
  readonly attempts: readonly NotifyAttempt[];
  /** Status of the last response, if any. */
  readonly status: number | null;
  readonly totalMs: number;
}

export interface NotifierStats {
  delivered: number;
  failed: number;
  attempts: number;
  retries: number;
  inFlight: number;
}

export interface NotifierLogger {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export interface WebhookNotifierOptions extends MessageOptions {
  /** The webhook URL (a secret). */
  readonly url: string;
  /** Attempts in all, first included. Default 5. */
  readonly maxAttempts?: number;
  /** Per attempt, connection to response body. Default 5000. */
  readonly timeoutMs?: number;
  /** Default 500. */
  readonly baseDelayMs?: number;
  /** Backoff ceiling. Default 30000. */
  readonly maxDelayMs?: number;
  /** A Retry-After longer than this ends the retries. Default 60000. */
  readonly maxRetryAfterMs?: number;
  /** Extra request headers (e.g. an Authorization header for a non-Slack receiver). */
  readonly headers?: Readonly<Record<string, string>>;
  /** Called with every result (metrics). Exceptions from it are swallowed. */
  readonly onResult?: (result: NotifyResult) => void;
  readonly logger?: NotifierLogger;
  /** Injection points for tests. */
  readonly random?: () => number;
  readonly now?: () => number;
  /** Default: a dedicated undici Agent, closed by close(). */
  readonly dispatcher?: Dispatcher;
}

/** What one POST came to. */
type AttemptOutcome =
  | { readonly delivered: true; readonly status: number }
  | { readonly delivered: false; readonly status: number | null; readonly error: string | null; readonly retryAfterMs: number | undefined };

export class WebhookNotifier {
  readonly stats: NotifierStats = { delivered: 0, failed: 0, attempts: 0, retries: 0, inFlight: 0 };
  private readonly opts: WebhookNotifierOptions;
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private readonly closing = new AbortController();
  private readonly pending = new Set<Promise<NotifyResult>>();

  constructor(opts: WebhookNotifierOptions) {
    const url = new URL(opts.url); // throws at construction on a malformed URL: a config error, not a notify-time one
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new TypeError('the webhook URL must be http(s)');
    this.opts = opts;
    this.ownsDispatcher = opts.dispatcher === undefined;
    this.dispatcher = opts.dispatcher ?? new Agent({ connections: 8 });
  }

  /** Sends the notice; resolves when delivered or given up. Never rejects. */
  notify(notice: ApprovalNotice): Promise<NotifyResult> {
    const p = this.deliver(notice).catch((err: unknown): NotifyResult => {
      // Unreachable by design (deliver catches per attempt); kept so the promise can never reject.
      this.opts.logger?.warn({ approvalId: notice.approvalId, err: errorCode(err) }, 'approval notification failed unexpectedly');
      return { approvalId: notice.approvalId, ok: false, outcome: 'exhausted', attempts: [], status: null, totalMs: 0 };
    });
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
    return p;
  }

  /** Stops retries (their results say 'closed'), waits for them, and closes the connection pool. */
  async close(): Promise<void> {
    this.closing.abort();
    await Promise.allSettled([...this.pending]);
    if (this.ownsDispatcher) await this.dispatcher.close().catch(() => undefined);
  }

  private async deliver(notice: ApprovalNotice): Promise<NotifyResult> {
    const now = this.opts.now ?? Date.now;
    const started = now();
    const maxAttempts = Math.max(1, this.opts.maxAttempts ?? 5);
    const body = JSON.stringify(buildSlackMessage(notice, this.opts));
    const attempts: NotifyAttempt[] = [];
    this.stats.inFlight++;
    const finish = (outcome: NotifyOutcome, status: number | null): NotifyResult => {
      this.stats.inFlight--;
      if (outcome === 'delivered') this.stats.delivered++;
      else this.stats.failed++;
      const result: NotifyResult = { approvalId: notice.approvalId, ok: outcome === 'delivered', outcome, attempts, status, totalMs: now() - started };
      const log = { approvalId: notice.approvalId, outcome, attempts: attempts.length, status };
      if (result.ok) this.opts.logger?.info(log, 'approval notification delivered');
      else this.opts.logger?.warn(log, 'approval notification not delivered');
      try {
        this.opts.onResult?.(result);
      } catch {
        // A metrics hook must not break delivery.
      }
      return result;
    };

    for (let attempt = 1; ; attempt++) {
      if (this.closing.signal.aborted) return finish('closed', attempts.at(-1)?.status ?? null);
      this.stats.attempts++;
      if (attempt > 1) this.stats.retries++;
      const t0 = now();
      const failure = await this.post(body);
      const durationMs = now() - t0;
      if (failure.delivered) {
        attempts.push({ attempt, status: failure.status, error: null, durationMs, waitMs: null });
        return finish('delivered', failure.status);
      }
      if (this.closing.signal.aborted) {
        attempts.push({ attempt, status: failure.status, error: failure.error, durationMs, waitMs: null });
        return finish('closed', failure.status);
      }
      const retriable = failure.status === null || failure.status === 429 || failure.status >= 500;
      const base = { attempt, status: failure.status, error: failure.error, durationMs };
      if (!retriable) {
        attempts.push({ ...base, waitMs: null });
        return finish('rejected', failure.status);
      }
      if (attempt >= maxAttempts) {
        attempts.push({ ...base, waitMs: null });
        return finish('exhausted', failure.status);
      }
      if (failure.retryAfterMs !== undefined && failure.retryAfterMs > (this.opts.maxRetryAfterMs ?? 60_000)) {
        attempts.push({ ...base, waitMs: null });
        return finish('retry_after_too_long', failure.status);
      }
      const backoff = backoffDelayMs(attempt, { baseDelayMs: this.opts.baseDelayMs ?? 500, maxDelayMs: this.opts.maxDelayMs ?? 30_000 }, this.opts.random);
      // Retry-After is the server's floor; jitter still spreads clients that got the same answer.
      const waitMs = Math.max(backoff, failure.retryAfterMs ?? 0);
      attempts.push({ ...base, waitMs });
      try {
        await sleepTimer(waitMs, undefined, { signal: this.closing.signal });
      } catch {
        return finish('closed', failure.status);
      }
    }
  }

  /** One POST; never throws. */
  private async post(body: string): Promise<AttemptOutcome> {
    const timeoutMs = this.opts.timeoutMs ?? 5000;
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = AbortSignal.any([timeout, this.closing.signal]);
    try {
      const res = await request(this.opts.url, {
        method: 'POST',
        headers: { ...this.opts.headers, 'content-type': 'application/json; charset=utf-8' },
        body,
        signal,
        dispatcher: this.dispatcher,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      // Drain the body so the connection can be reused; its content is not needed, and a failure
      // to read it does not undo the status (a 2xx was delivered).
      await res.body.dump({ limit: 64 * 1024, signal }).catch(() => undefined);
      if (res.statusCode >= 200 && res.statusCode < 300) return { delivered: true, status: res.statusCode };
      const retryAfterMs = parseRetryAfterMs(res.headers['retry-after'], (this.opts.now ?? Date.now)());
      return { delivered: false, status: res.statusCode, error: null, retryAfterMs };
    } catch (err) {
      const error = timeout.aborted ? 'timeout' : this.closing.signal.aborted ? 'closed' : errorCode(err);
      return { delivered: false, status: null, error, retryAfterMs: undefined };
    }
  }
}

/** A short, URL-free description of a network error. */
function errorCode(err: unknown): string {
  if (err !== null && typeof err === 'object') {
    const e = err as { code?: unknown; cause?: { code?: unknown }; name?: unknown };
    if (typeof e.code === 'string') return e.code;
    if (typeof e.cause?.code === 'string') return e.cause.code;
    if (typeof e.name === 'string') return e.name;
  }
  return 'unknown';
}
