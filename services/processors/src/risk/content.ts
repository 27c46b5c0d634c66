/**
 * The text the rules may read, taken from events' already-masked content: what the caller wrote,
 * what the model answered, what tools returned, SQL. Pure and bounded: at most `maxChars`
 * characters per event are returned, whatever the content's size.
 *
 * Where the text is in the event model today:
 *   gateway.response.completed  `content`: the delivered body, a Messages API JSON object or the
 *                               SSE stream as sent. Server tool results (web fetch, web search,
 *                               MCP, code execution: block types ending in `tool_result`) arrive
 *                               here, and they are the untrusted text indirect injection hides in.
 *   db.query.executed           `statement` (masked SQL).
 *   gateway.request.received    `content` (version 2+): the forwarded request body after inline
 *                               masking, a Messages API JSON object. Prompts (text of user turns)
 *                               and client tool results (`tool_result` blocks in user turns: what
 *                               the agent's own tools fetched, the other place indirect injection
 *                               hides) are read from it. Null when the gateway did not keep it
 *                               (over 256 Ki characters, a refused request, a card number it did
 *                               not mask) and in version 1 events (decoded with the default null).
 *
 * Nothing read here is ever copied into an output event: signals name the policy phrase or marker
 * that matched, never the text around it.
 */
import type { TextSourceKind } from './policy';

export interface TextSource {
  readonly kind: TextSourceKind;
  /** What the text is, from a fixed vocabulary: a content block type, 'statement', 'body'. */
  readonly label: string;
  readonly text: string;
}

/** Keys whose values are opaque (ciphertext, signatures, base64 data), not readable text. */
const OPAQUE_KEYS = new Set(['encrypted_content', 'encrypted_index', 'signature', 'id', 'tool_use_id', 'type', 'media_type']);
const BLOCK_TYPE = /^[a-z_]{1,64}$/;

/** Lowercase, NFKC, no invisible characters, runs of whitespace as one space: what phrases are matched against. */
export function normalizeText(text: string): string {
  return text
    .normalize('NFKC')
    .toLowerCase()
    .replace(/[\u00ad\u200b-\u200f\u2060-\u2064\ufeff]/g, '')
    .replace(/\s+/g, ' ');
}

/** Every text source in `event`, at most `maxChars` characters in all. */
export function textsOfEvent(event: { readonly metadata: { readonly type: string }; readonly payload: unknown }, maxChars: number): TextSource[] {
  switch (event.metadata.type) {
    case 'gateway.response.completed': {
      const content = (event.payload as { content: string | null }).content;
      return content === null ? [] : textsOfResponseBody(content, maxChars);
    }
    case 'gateway.request.received': {
      // v1 events decode with content null; the typeof check also covers an event built by hand without it.
      const content = (event.payload as { content?: unknown }).content;
      return typeof content === 'string' ? textsOfRequestBody(content, maxChars) : [];
    }
    case 'db.query.executed': {
      const statement = (event.payload as { statement: string | null }).statement;
      return statement === null ? [] : [{ kind: 'sql', label: 'statement', text: statement.slice(0, maxChars) }];
    }
    default:
      return [];
  }
}

/** Collects sources while keeping to the character budget. */
class Budget {
  readonly out: TextSource[] = [];
  #left: number;
  constructor(maxChars: number) {
    this.#left = maxChars;
  }
  get exhausted(): boolean {
    return this.#left <= 0;
  }
  add(kind: TextSourceKind, label: string, text: string): void {
    if (this.#left <= 0 || text.length === 0) return;
    const kept = text.slice(0, this.#left);
    this.#left -= kept.length;
    this.out.push({ kind, label, text: kept });
  }
}

function blockType(block: unknown): string | null {
  if (typeof block !== 'object' || block === null) return null;
  const t = (block as { type?: unknown }).type;
  return typeof t === 'string' && BLOCK_TYPE.test(t) ? t : null;
}

/** Readable strings inside a value (a tool result's nested content), depth-first, opaque keys skipped. */
function collectStrings(value: unknown, into: string[], budget: { left: number }, depth = 0): void {
  if (budget.left <= 0 || depth > 16) return;
  if (typeof value === 'string') {
    into.push(value);
    budget.left -= value.length;
  } else if (Array.isArray(value)) {
    for (const v of value) collectStrings(v, into, budget, depth + 1);
  } else if (typeof value === 'object' && value !== null) {
    // A base64 source (an image, a PDF) is bytes, not text; a text source's `data` is the page itself.
    const base64 = (value as { type?: unknown }).type === 'base64';
    for (const [k, v] of Object.entries(value)) {
      if (!OPAQUE_KEYS.has(k) && !(base64 && k === 'data')) collectStrings(v, into, budget, depth + 1);
    }
  }
}

function addBlock(b: Budget, block: unknown, roleKind: 'prompt' | 'response', maxChars: number): void {
  const type = blockType(block);
  if (type === null) return;
  const blk = block as Record<string, unknown>;
  if (type === 'text' && typeof blk['text'] === 'string') {
    b.add(roleKind, 'text', blk['text']);
  } else if (type.endsWith('tool_result')) {
    const parts: string[] = [];
    collectStrings(blk['content'], parts, { left: maxChars });
    b.add('tool_result', type, parts.join('\n'));
  } else if (roleKind === 'response' && (type === 'tool_use' || type === 'server_tool_use' || type === 'mcp_tool_use')) {
    // The model's own call (e.g. a fetch of an exfiltration URL after an injection): model output.
    b.add('response', type, JSON.stringify(blk['input'] ?? null));
  }
}

/** Texts of a Messages API response: a JSON message, an SSE stream, or (neither) the body as is. */
export function textsOfResponseBody(body: string, maxChars: number): TextSource[] {
  const b = new Budget(maxChars);
  const trimmed = body.trimStart();
  if (trimmed.startsWith('{')) {
    const parsed = parseJson(trimmed);
    const content = (parsed as { content?: unknown } | undefined)?.content;
    if (Array.isArray(content)) {
      for (const block of content) addBlock(b, block, 'response', maxChars);
      return b.out;
    }
  } else if (/^(event|data):/m.test(body.slice(0, 4096))) {
    for (const block of blocksOfSse(body, maxChars)) addBlock(b, block, 'response', maxChars);
    return b.out;
  }
  b.add('response', 'body', body);
  return b.out;
}

/**
 * The content blocks of an SSE stream, reassembled by index: `content_block_start` gives the block,
 * `text_delta` and `input_json_delta` extend it. Reading stops once `maxChars` of deltas were seen.
 */
function blocksOfSse(body: string, maxChars: number): unknown[] {
  const blocks = new Map<number, Record<string, unknown>>();
  const json = new Map<number, string>();
  let seen = 0;
  for (const line of body.split('\n')) {
    if (seen > maxChars) break;
    if (!line.startsWith('data:')) continue;
    const data = parseJson(line.slice(5).trim()) as Record<string, unknown> | undefined;
    if (data === undefined || typeof data !== 'object' || data === null) continue;
    const index = typeof data['index'] === 'number' ? data['index'] : -1;
    if (data['type'] === 'content_block_start' && typeof data['content_block'] === 'object' && data['content_block'] !== null) {
      blocks.set(index, { ...(data['content_block'] as Record<string, unknown>) });
    } else if (data['type'] === 'content_block_delta' && typeof data['delta'] === 'object' && data['delta'] !== null) {
      const delta = data['delta'] as Record<string, unknown>;
      const block = blocks.get(index);
      if (block === undefined) continue;
      if (delta['type'] === 'text_delta' && typeof delta['text'] === 'string') {
        block['text'] = String(block['text'] ?? '') + delta['text'];
        seen += delta['text'].length;
      } else if (delta['type'] === 'input_json_delta' && typeof delta['partial_json'] === 'string') {
        json.set(index, (json.get(index) ?? '') + delta['partial_json']);
        seen += delta['partial_json'].length;
      }
    }
  }
  for (const [index, partial] of json) {
    const block = blocks.get(index);
    // Masked JSON fragments always reassemble; if not, the raw text is still worth scanning.
    if (block !== undefined) block['input'] = parseJson(partial) ?? partial;
  }
  return [...blocks.entries()].sort((a, b) => a[0] - b[0]).map(([, block]) => block);
}

/** Texts of a Messages API request: user text is 'prompt', `tool_result` blocks are 'tool_result'. */
export function textsOfRequestBody(body: string, maxChars: number): TextSource[] {
  const b = new Budget(maxChars);
  const parsed = parseJson(body.trimStart());
  const messages = (parsed as { messages?: unknown } | undefined)?.messages;
  if (!Array.isArray(messages)) {
    b.add('prompt', 'body', body);
    return b.out;
  }
  for (const m of messages) {
    if (b.exhausted) break;
    if (typeof m !== 'object' || m === null || (m as { role?: unknown }).role !== 'user') continue;
    const content = (m as { content?: unknown }).content;
    if (typeof content === 'string') b.add('prompt', 'text', content);
    else if (Array.isArray(content)) for (const block of content) addBlock(b, block, 'prompt', maxChars);
  }
  return b.out;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

const URL_HOST = /https?:\/\/([^\s/?#"'<>()[\]\\]+)/g;

/** Host names of the http(s) URLs in normalized text (lowercase, without user info or port). */
export function urlHosts(normalized: string): string[] {
  const hosts: string[] = [];
  for (const m of normalized.matchAll(URL_HOST)) {
    const authority = m[1] ?? '';
    const host = authority.slice(authority.lastIndexOf('@') + 1).replace(/:\d*$/, '').replace(/\.$/, '');
    if (host !== '') hosts.push(host);
  }
  return hosts;
}

/** True when `host` is `suffix` or a subdomain of it. */
export function hostMatches(host: string, suffix: string): boolean {
  return host === suffix || host.endsWith(`.${suffix}`);
}
