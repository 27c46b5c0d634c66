import type { MaskingAction } from '../../common/src/config';
import { maskPans, StreamingPanMasker, type PanHit, type PanMaskFormat } from '../../common/src/masking';
import { JsonFragmentMasker } from './json-fragment-masker';
import { maskJson, type LocatedHit } from './mask-json';

/**
 * Masks card numbers in a Messages API SSE stream as it flows, event by event.
 *
 *   upstream bytes ─▶ split into SSE events ─▶ content_block_delta?  ─▶ per-block streaming masker
 *                                              other event types     ─▶ passed through byte for byte
 *
 * Each content block has its own masker, so a PAN split across any number of deltas of one block is
 * caught. Only the tail that could still become a PAN is held back; a delta whose text is entirely
 * held is dropped, and the held tail is emitted as one more delta just before `content_block_stop`.
 * `message_start`, `message_delta` (usage, stop reason), `message_stop`, `ping` and `error` events
 * are never rewritten. Every event emitted is complete SSE carrying valid JSON.
 *
 * What happens to text that holds a card number depends on the response masking action:
 *   mask   the PAN is replaced by its masked form in the delta that completes it;
 *   block  text is held back exactly as for `mask`, so nothing that is or may still become a PAN is
 *          sent; the event in which a PAN is found is not emitted, and from then on nothing is (the
 *          caller ends the stream with an error event: see `onHit`);
 *   allow  every event is forwarded byte for byte at once (the policy allows card data); PANs are
 *          still found and reported through `onHit`.
 */

type BlockMasker =
  | { kind: 'text'; field: 'text'; deltaType: 'text_delta'; masker: StreamingPanMasker }
  | { kind: 'thinking'; field: 'thinking'; deltaType: 'thinking_delta'; masker: StreamingPanMasker }
  | { kind: 'json'; field: 'partial_json'; deltaType: 'input_json_delta'; masker: JsonFragmentMasker };

export interface SseMaskerOptions {
  format: PanMaskFormat;
  hashPan?: (digits: string) => string;
  /**
   * Called for every PAN found, during the push()/end() that finds it (before that call returns).
   * With action `block` the caller then sends its error event instead of any more text and ends the
   * stream: the masker reports the hits of the event that stops it and scans nothing after it.
   */
  onHit: (hit: LocatedHit) => void;
  /** The response masking action (see the class comment). */
  action?: MaskingAction;
  /**
   * @deprecated Use `action`. Read only when `action` is absent: true is `mask`; false is `block`,
   * since `block` and `allow` cannot be told apart from it and forwarding a PAN is the failure that
   * must not happen. A caller whose policy is `allow` passes `action: 'allow'`.
   */
  rewrite?: boolean;
}

interface Usage {
  input_tokens?: number;
  output_tokens?: number;
  cache_read_input_tokens?: number | null;
  cache_creation_input_tokens?: number | null;
}

/** Largest single SSE event accepted from the upstream; protects memory against a broken upstream. */
const MAX_EVENT_BYTES = 8 * 1024 * 1024;

export class SseMasker {
  private readonly opts: SseMaskerOptions;
  private readonly action: MaskingAction;
  /** Rewrite PANs into their masked form (`mask`); `block` and `allow` only detect them. */
  private readonly rewrite: boolean;
  /** `block` only: a PAN was found; nothing more is emitted. */
  private stopped = false;
  private readonly blocks = new Map<number, BlockMasker>();
  private readonly decoder = new TextDecoder('utf-8');
  private buffer = '';
  /** From message_start / message_delta, for the evidence of the exchange. */
  /** `error` is the type of an `error` event the upstream sent mid-stream (e.g. overloaded_error), else null. */
  readonly summary: { stopReason: string | null; inputTokens: number; outputTokens: number; cacheRead: number | null; cacheCreation: number | null; sawUsage: boolean; error: string | null } = {
    error: null,
    stopReason: null,
    inputTokens: 0,
    outputTokens: 0,
    cacheRead: null,
    cacheCreation: null,
    sawUsage: false,
  };

  constructor(opts: SseMaskerOptions) {
    this.opts = opts;
    this.action = opts.action ?? (opts.rewrite === false ? 'block' : 'mask');
    this.rewrite = this.action === 'mask';
  }

  /** Action `block` and a card number was found: the stream must end; push() and end() return ''. */
  get blocked(): boolean {
    return this.stopped;
  }

  /** Feeds upstream bytes; returns the text to send to the caller now (possibly empty). */
  push(chunk: Uint8Array): string {
    if (this.stopped) return '';
    this.buffer += this.decoder.decode(chunk, { stream: true });
    let out = '';
    let start = 0;
    for (;;) {
      const end = findEventEnd(this.buffer, start);
      if (end < 0) break;
      const sepLen = sepLength(this.buffer, end);
      out += this.transformEvent(this.buffer.slice(start, end), this.buffer.slice(end, end + sepLen));
      start = end + sepLen;
      if (this.stopped) {
        // Block: the event that held the PAN was not emitted, and nothing after it will be. What came
        // before it in this chunk is returned (PAN-free); the caller sends its error event instead.
        this.buffer = '';
        this.blocks.clear();
        return out;
      }
    }
    this.buffer = this.buffer.slice(start);
    if (this.buffer.length > MAX_EVENT_BYTES) {
      throw new Error(`upstream SSE event larger than ${MAX_EVENT_BYTES} bytes`);
    }
    return out;
  }

  /** Called when the upstream stream ends; returns anything still held (a truncated stream). */
  end(): string {
    if (this.stopped) return '';
    this.buffer += this.decoder.decode();
    let out = '';
    if (this.buffer.trim()) out += this.transformEvent(this.buffer, '\n\n');
    this.buffer = '';
    for (const [index, block] of this.blocks) {
      if (this.stopped) break;
      out += this.flushBlock(index, block);
    }
    this.blocks.clear();
    return out;
  }

  private transformEvent(raw: string, sep: string): string {
    // Cheap pre-check on the raw text: only content block events can carry model or tool text.
    if (!raw.includes('content_block_')) {
      if (raw.includes('message_delta') || raw.includes('message_start') || raw.includes('error')) this.readUsage(raw);
      return raw + sep;
    }
    const parsed = parseEvent(raw);
    if (!parsed) return raw + sep;
    const { event, data } = parsed;
    let payload: Record<string, unknown>;
    try {
      payload = JSON.parse(data) as Record<string, unknown>;
    } catch {
      // Not ours to fix (the SDK will report it), but it may still carry a card number: scanned as
      // plain text, masked, blocked or (allow) reported like any other.
      const r = maskPans(raw, this.opts.format, this.opts.hashPan ? { hashPan: this.opts.hashPan } : undefined);
      if (r.hits.length === 0) return raw + sep;
      if (this.stopAt(r.hits.map((hit) => ({ hit, location: 'event' })))) return '';
      return (this.rewrite ? r.text : raw) + sep;
    }
    const index = typeof payload.index === 'number' ? payload.index : -1;
    switch (payload.type) {
      case 'content_block_start':
        return this.onBlockStart(index, payload, event, raw, sep);
      case 'content_block_delta':
        return this.onDelta(index, payload, event, raw, sep);
      case 'content_block_stop': {
        const block = this.blocks.get(index);
        this.blocks.delete(index);
        const tail = block ? this.flushBlock(index, block) : '';
        return this.stopped ? '' : tail + raw + sep;
      }
      default:
        return raw + sep;
    }
  }

  /** Reads usage and stop reason; these events are forwarded untouched whatever happens here. */
  private readUsage(raw: string): void {
    const parsed = parseEvent(raw);
    if (!parsed) return;
    try {
      const p = JSON.parse(parsed.data) as { type?: string; message?: { usage?: Usage }; usage?: Usage; delta?: { stop_reason?: string | null }; error?: { type?: unknown } };
      if (p.type === 'error') {
        // The upstream ended the stream with an error (the API sends e.g. overloaded_error this way).
        this.summary.error = typeof p.error?.type === 'string' && /^[a-z_]{1,64}$/.test(p.error.type) ? p.error.type : 'error';
        return;
      }
      const usage = p.type === 'message_start' ? p.message?.usage : p.type === 'message_delta' ? p.usage : undefined;
      if (p.type === 'message_delta' && p.delta?.stop_reason !== undefined) this.summary.stopReason = p.delta.stop_reason;
      if (usage) {
        this.summary.sawUsage = true;
        if (typeof usage.input_tokens === 'number') this.summary.inputTokens = usage.input_tokens;
        if (typeof usage.output_tokens === 'number') this.summary.outputTokens = usage.output_tokens;
        if (typeof usage.cache_read_input_tokens === 'number') this.summary.cacheRead = usage.cache_read_input_tokens;
        if (typeof usage.cache_creation_input_tokens === 'number') this.summary.cacheCreation = usage.cache_creation_input_tokens;
      }
    } catch {
      // Not ours to fix; the caller's SDK will report a broken event.
    }
  }

  private onBlockStart(index: number, payload: Record<string, unknown>, event: string, raw: string, sep: string): string {
    const block = payload.content_block as Record<string, unknown> | undefined;
    const scan = { format: this.opts.format, ...(this.opts.hashPan ? { hashPan: this.opts.hashPan } : {}) };
    switch (block?.type) {
      case 'text':
        this.blocks.set(index, { kind: 'text', field: 'text', deltaType: 'text_delta', masker: new StreamingPanMasker(scan) });
        break;
      case 'thinking':
        this.blocks.set(index, { kind: 'thinking', field: 'thinking', deltaType: 'thinking_delta', masker: new StreamingPanMasker(scan) });
        break;
      case 'tool_use':
      case 'server_tool_use':
        this.blocks.set(index, { kind: 'json', field: 'partial_json', deltaType: 'input_json_delta', masker: new JsonFragmentMasker(scan) });
        break;
      default:
        break;
    }
    // The start event normally carries empty text/input; mask whatever it carries all the same.
    const hits = maskJson(block, { ...scan, rewrite: this.rewrite });
    if (hits.length === 0) return raw + sep;
    if (this.stopAt(hits.map((h) => ({ hit: h.hit, location: `content[${index}].${h.location}` })))) return '';
    return this.rewrite ? formatEvent(event, payload, sep) : raw + sep;
  }

  private onDelta(index: number, payload: Record<string, unknown>, event: string, raw: string, sep: string): string {
    const delta = payload.delta as Record<string, unknown> | undefined;
    const block = this.blocks.get(index);
    if (!delta) return raw + sep;
    if (block && delta.type === block.deltaType && typeof delta[block.field] === 'string') {
      const input = delta[block.field] as string;
      const before = block.masker.hits.length;
      const output = block.masker.push(input);
      // Block: the delta that completes a PAN is not emitted (its text may hold the PAN's digits).
      if (this.reportHits(index, block, before)) return '';
      // Allow: the bytes as received, at once (the masker above only finds the PANs).
      if (this.action === 'allow' || output === input) return raw + sep;
      // Mask and block: only the part that can no longer become a PAN goes out now.
      if (output === '') return ''; // all of it may still become a PAN: held until the next delta
      delta[block.field] = output;
      return formatEvent(event, payload, sep);
    }
    if (delta.type === 'signature_delta') return raw + sep;
    // Other deltas (citations and future types) arrive whole: mask them as complete values.
    const hits = maskJson(delta, { format: this.opts.format, ...(this.opts.hashPan ? { hashPan: this.opts.hashPan } : {}), rewrite: this.rewrite });
    if (hits.length === 0) return raw + sep;
    if (this.stopAt(hits.map((h) => ({ hit: h.hit, location: `content[${index}].delta.${h.location}` })))) return '';
    return this.rewrite ? formatEvent(event, payload, sep) : raw + sep;
  }

  /** Reports the block's hits found since `before`; true when the stream stops on them (block). */
  private reportHits(index: number, block: BlockMasker, before: number): boolean {
    const all: readonly PanHit[] = block.masker.hits;
    if (all.length === before) return false;
    const location = `content[${index}].${block.kind === 'json' ? 'input' : block.field}`;
    const found: LocatedHit[] = [];
    for (let i = before; i < all.length; i++) found.push({ hit: all[i]!, location });
    return this.stopAt(found);
  }

  /**
   * Reports hits. With action `block` the stream stops there: true is returned, so the event that
   * holds them is dropped, and nothing more is scanned or emitted.
   */
  private stopAt(hits: LocatedHit[]): boolean {
    for (const h of hits) this.opts.onHit(h);
    if (this.action !== 'block') return false;
    this.stopped = true;
    return true;
  }

  private flushBlock(index: number, block: BlockMasker): string {
    const before = block.masker.hits.length;
    const tail = block.masker.end();
    if (this.reportHits(index, block, before)) return '';
    // Allow: the held text went out raw with its delta; the masker only kept it to scan it.
    if (!tail || this.action === 'allow') return '';
    const payload = { type: 'content_block_delta', index, delta: { type: block.deltaType, [block.field]: tail } };
    return formatEvent('content_block_delta', payload, '\n\n');
  }
}

function findEventEnd(buf: string, from: number): number {
  // Events end with a blank line; the API sends "\n\n", the SSE spec also allows "\r\n\r\n".
  const lf = buf.indexOf('\n\n', from);
  const crlf = buf.indexOf('\r\n\r\n', from);
  if (lf < 0) return crlf;
  if (crlf < 0) return lf;
  return Math.min(lf, crlf);
}

function sepLength(buf: string, at: number): number {
  return buf.startsWith('\r\n\r\n', at) ? 4 : 2;
}

function parseEvent(raw: string): { event: string; data: string } | undefined {
  let event = 'message';
  const data: string[] = [];
  for (const line of raw.split(/\r?\n/)) {
    if (line.startsWith('event:')) event = line.slice(6).trim();
    else if (line.startsWith('data:')) data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
  }
  if (data.length === 0) return undefined;
  return { event, data: data.join('\n') };
}

function formatEvent(event: string, payload: unknown, sep: string): string {
  return `event: ${event}\ndata: ${JSON.stringify(payload)}${sep}`;
}
