import { StreamingPanMasker, findPans, maskedForm, type PanHit, type PanMaskFormat } from '../../common/src/masking';

/**
 * Masks PANs in a JSON text that arrives in fragments (the `partial_json` of `input_json_delta`
 * events, i.e. a tool call's input streamed by the model).
 *
 * Raw-text masking is not enough here: inside a JSON string a digit may be written as `\u0034`, and a
 * PAN may be a bare JSON number where `411111******1111` would be invalid JSON. So this tracks the JSON
 * lexical state: string contents are decoded, streamed through a StreamingPanMasker and re-escaped;
 * an integer token that is a PAN is emitted as a masked *string*. Everything else passes through at
 * once. The concatenated output is always valid JSON when the input was.
 */
export class JsonFragmentMasker {
  private readonly format: PanMaskFormat;
  private readonly scanOpts: { hashPan?: (digits: string) => string };
  private inString = false;
  /** Pending escape sequence inside a string (`\` or `\uXX…`), kept until complete. */
  private escape = '';
  /** High surrogate decoded from a `\uD8xx` escape, waiting for its pair. */
  private pendingHigh = '';
  private number = '';
  private strMasker: StreamingPanMasker | null = null;
  /** How many of the current string masker's hits are already in `hits`. */
  private strHitsTaken = 0;
  /**
   * PANs found so far, in order. A hit inside a string is added by the push() that completes it (not
   * when the string closes), so a caller that must not forward a card number at all (action `block`)
   * learns of it before it sends the fragment that holds it.
   */
  readonly hits: PanHit[] = [];

  constructor(opts: { format: PanMaskFormat; hashPan?: (digits: string) => string }) {
    this.format = opts.format;
    this.scanOpts = opts.hashPan ? { hashPan: opts.hashPan } : {};
  }

  push(fragment: string): string {
    let out = '';
    let plain = '';
    const flushPlain = () => {
      if (plain) {
        out += escapeJsonString(this.strMasker!.push(plain));
        this.collectHits();
        plain = '';
      }
    };
    for (let i = 0; i < fragment.length; i++) {
      const ch = fragment[i]!;
      if (this.inString) {
        if (this.escape) {
          this.escape += ch;
          const decoded = decodeEscape(this.escape);
          if (decoded === undefined) continue; // incomplete
          this.escape = '';
          if (decoded.length === 1 && isHighSurrogate(decoded)) {
            this.pendingHigh = decoded;
            continue;
          }
          plain += this.pendingHigh + decoded;
          this.pendingHigh = '';
          continue;
        }
        if (ch === '\\') {
          this.escape = '\\';
          continue;
        }
        if (ch === '"') {
          plain += this.pendingHigh;
          this.pendingHigh = '';
          flushPlain();
          out += escapeJsonString(this.strMasker!.end()) + '"';
          this.collectHits();
          this.strMasker = null;
          this.inString = false;
          continue;
        }
        plain += ch;
        continue;
      }
      // Outside strings.
      if (isNumberChar(ch) && (this.number || ch === '-' || (ch >= '0' && ch <= '9'))) {
        this.number += ch;
        continue;
      }
      if (this.number) {
        out += this.finishNumber();
      }
      if (ch === '"') {
        this.inString = true;
        this.strMasker = new StreamingPanMasker({ format: this.format, ...this.scanOpts });
        this.strHitsTaken = 0;
        out += '"';
        continue;
      }
      out += ch;
    }
    if (this.inString) flushPlain();
    return out;
  }

  /** Flushes whatever is held (only possible for malformed or truncated input). */
  end(): string {
    let out = '';
    if (this.number) out += this.finishNumber();
    if (this.inString && this.strMasker) {
      out += escapeJsonString(this.strMasker.end());
      this.collectHits();
      this.strMasker = null;
    }
    return out;
  }

  private finishNumber(): string {
    const token = this.number;
    this.number = '';
    if (/^-?\d{13,19}$/.test(token)) {
      const digits = token.replace('-', '');
      const found = findPans(digits, this.scanOpts);
      const hit = found[0];
      if (hit && hit.start === 0 && hit.end === digits.length) {
        this.hits.push(hit);
        return JSON.stringify(maskedForm(hit.bin, hit.last4, hit.digitCount, this.format));
      }
    }
    return token;
  }

  /** Moves the current string's new hits into `hits`. */
  private collectHits(): void {
    if (!this.strMasker) return;
    const all = this.strMasker.hits;
    for (let i = this.strHitsTaken; i < all.length; i++) this.hits.push(all[i]!);
    this.strHitsTaken = all.length;
  }
}

function isNumberChar(ch: string): boolean {
  return (ch >= '0' && ch <= '9') || ch === '-' || ch === '+' || ch === '.' || ch === 'e' || ch === 'E';
}

function isHighSurrogate(s: string): boolean {
  const c = s.charCodeAt(0);
  return c >= 0xd800 && c <= 0xdbff;
}

const SIMPLE_ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

/** Decodes a complete escape (`\n`, `\u0034`); undefined while incomplete. */
function decodeEscape(esc: string): string | undefined {
  const kind = esc[1];
  if (kind === undefined) return undefined;
  if (kind !== 'u') return SIMPLE_ESCAPES[kind] ?? kind;
  if (esc.length < 6) return undefined;
  const code = Number.parseInt(esc.slice(2, 6), 16);
  return Number.isNaN(code) ? esc : String.fromCharCode(code);
}

/** JSON string-content escaping (without the surrounding quotes). */
function escapeJsonString(s: string): string {
  if (!s) return s;
  const q = JSON.stringify(s);
  return q.slice(1, -1);
}
