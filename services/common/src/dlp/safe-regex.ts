/**
 * Admission check for policy-supplied regular expressions.
 *
 * Why not a timeout: JavaScript regexes cannot be interrupted, and running each one in a worker with a
 * deadline would put a thread hop and a kill/restart path on every string the processor scans. RE2
 * would be linear-time but is a native add-on. Instead a custom pattern must belong to a subset whose
 * worst case is bounded before it ever runs:
 * - at most 256 characters; flags among i, m, s, u;
 * - no backreferences and no lookaround (they make matching non-regular or hide backtracking);
 * - bounded repetition only: `*`, `+` and `{n,}` are refused (write `{1,64}`), bounds at most 1000;
 * - the backtracking bound — the number of ways the pattern can split one stretch of input, counted
 *   as: a sequence multiplies, an alternation adds, `x{m,n}` of one character has n−m+1 ways, a
 *   repeated group of w ways has Σ w^k for k in m..n — is at most {@link MAX_WAYS}. This refuses
 *   nested quantifiers such as `(a{1,9}){1,9}` and long chains of overlapping ranges;
 * - it cannot match the empty string (it would "match" between every two characters).
 * So matching is O(input length × MAX_WAYS) in the worst case, usually linear.
 */

export const MAX_PATTERN_LENGTH = 256;
export const MAX_REPEAT = 1000;
export const MAX_WAYS = 10_000;

export interface RegexVerdict {
  readonly ok: boolean;
  /** Why it was refused and what to write instead. */
  readonly reason?: string;
  readonly fix?: string;
  /** The backtracking bound computed for an admitted pattern. */
  readonly ways?: number;
}

class Refused extends Error {
  constructor(
    readonly reason: string,
    readonly fix: string,
  ) {
    super(reason);
  }
}

interface Node {
  ways: number;
  minLen: number;
  /** A single-character atom (literal, class, escape, dot). */
  single: boolean;
}

/** Recursive-descent parse of the JS regex subset, computing ways and minimum length per node. */
class Parser {
  private i = 0;
  constructor(private readonly src: string) {}

  parse(): Node {
    const n = this.alternation();
    if (this.i < this.src.length) throw new Refused(`unbalanced ')' at ${this.i}`, 'balance the parentheses');
    return n;
  }

  private peek(): string | undefined {
    return this.src[this.i];
  }

  private alternation(): Node {
    const branches = [this.sequence()];
    while (this.peek() === '|') {
      this.i++;
      branches.push(this.sequence());
    }
    return {
      ways: branches.reduce((a, b) => a + b.ways, 0),
      minLen: Math.min(...branches.map((b) => b.minLen)),
      single: false,
    };
  }

  private sequence(): Node {
    let ways = 1;
    let minLen = 0;
    for (;;) {
      const c = this.peek();
      if (c === undefined || c === '|' || c === ')') break;
      const atom = this.quantified(this.atom());
      ways = Math.min(ways * atom.ways, Number.MAX_SAFE_INTEGER);
      minLen += atom.minLen;
    }
    return { ways, minLen, single: false };
  }

  private atom(): Node {
    const c = this.src[this.i++]!;
    switch (c) {
      case '(': {
        if (this.src.startsWith('?:', this.i)) this.i += 2;
        else if (/^\?<[A-Za-z_$][\w$]*>/.test(this.src.slice(this.i))) this.i = this.src.indexOf('>', this.i) + 1;
        else if (this.peek() === '?') {
          throw new Refused('lookahead and lookbehind are not allowed', 'match the context explicitly, or use policy context words');
        }
        const inner = this.alternation();
        if (this.peek() !== ')') throw new Refused("missing ')'", 'balance the parentheses');
        this.i++;
        return { ...inner, single: false };
      }
      case '[': {
        // A class: skip to its closing ']' (escapes and a leading ']' or '^' handled).
        if (this.peek() === '^') this.i++;
        if (this.peek() === ']') this.i++;
        while (this.i < this.src.length && this.src[this.i] !== ']') this.i += this.src[this.i] === '\\' ? 2 : 1;
        if (this.i >= this.src.length) throw new Refused("missing ']'", 'close the character class');
        this.i++;
        return { ways: 1, minLen: 1, single: true };
      }
      case '\\': {
        const e = this.src[this.i++];
        if (e === undefined) throw new Refused('trailing backslash', 'escape a backslash as \\\\');
        if (/[1-9]/.test(e) || e === 'k') throw new Refused('backreferences are not allowed', 'repeat the sub-pattern instead of referring back to it');
        if (e === 'b' || e === 'B') return { ways: 1, minLen: 0, single: false };
        if (e === 'p' || e === 'P') {
          const close = this.src.indexOf('}', this.i);
          if (this.peek() === '{' && close > 0) this.i = close + 1;
        } else if (e === 'u' && this.peek() === '{') {
          this.i = this.src.indexOf('}', this.i) + 1;
        } else if (e === 'u') this.i += 4;
        else if (e === 'x') this.i += 2;
        else if (e === 'c') this.i += 1;
        return { ways: 1, minLen: 1, single: true };
      }
      case '^':
      case '$':
        return { ways: 1, minLen: 0, single: false };
      case '*':
      case '+':
      case '?':
      case '{':
        if (c !== '{' || /^\{[0-9]/.test(this.src.slice(this.i - 1))) {
          throw new Refused(`nothing to repeat at ${this.i - 1}`, 'escape the quantifier character');
        }
        return { ways: 1, minLen: 1, single: true };
      default:
        return { ways: 1, minLen: 1, single: true };
    }
  }

  private quantified(atom: Node): Node {
    const c = this.peek();
    let min: number;
    let max: number;
    if (c === '*' || c === '+') {
      throw new Refused(`unbounded repetition '${c}' at ${this.i}`, `write an explicit bound, e.g. {${c === '+' ? 1 : 0},64}`);
    } else if (c === '?') {
      this.i++;
      [min, max] = [0, 1];
    } else if (c === '{') {
      const m = /^\{([0-9]{1,4})(,([0-9]{0,4}))?\}/.exec(this.src.slice(this.i));
      if (m === null) return atom; // a literal '{'
      this.i += m[0].length;
      min = Number(m[1]);
      if (m[2] === undefined) max = min;
      else if (m[3] === '') throw new Refused(`unbounded repetition '${m[0]}'`, `write an explicit upper bound, e.g. {${min},64}`);
      else max = Number(m[3]);
      if (max < min) throw new Refused(`repetition ${m[0]} has max < min`, 'swap the bounds');
      if (max > MAX_REPEAT) throw new Refused(`repetition bound ${max} > ${MAX_REPEAT}`, `use at most {${min},${MAX_REPEAT}}`);
    } else return atom;
    if (this.peek() === '?') this.i++; // lazy: same worst case
    if (this.peek() === '*' || this.peek() === '+' || this.peek() === '{' || this.peek() === '?') {
      if (this.peek() !== '{' || /^\{[0-9]/.test(this.src.slice(this.i))) {
        throw new Refused('a quantifier cannot follow a quantifier', 'combine them into one {min,max}');
      }
    }
    let ways: number;
    if (atom.single) ways = max - min + 1;
    else {
      ways = 0;
      for (let k = min; k <= max && ways < Number.MAX_SAFE_INTEGER; k++) ways += atom.ways ** k;
    }
    return { ways: Math.min(ways, Number.MAX_SAFE_INTEGER), minLen: atom.minLen * min, single: false };
  }
}

/** Decides whether `pattern` (with `flags`) may run on every string the processor scans. */
export function checkCustomRegex(pattern: string, flags = ''): RegexVerdict {
  if (pattern.length === 0) return { ok: false, reason: 'empty pattern', fix: 'write a pattern' };
  if (pattern.length > MAX_PATTERN_LENGTH) {
    return { ok: false, reason: `pattern longer than ${MAX_PATTERN_LENGTH} characters`, fix: 'split it into several custom patterns' };
  }
  if (!/^[imsu]*$/.test(flags) || new Set(flags).size !== flags.length) {
    return { ok: false, reason: `flags '${flags}' not allowed`, fix: 'use any of i, m, s, u once each (g is implied)' };
  }
  try {
    new RegExp(pattern, flags);
  } catch (err) {
    return { ok: false, reason: `not a valid regular expression: ${(err as Error).message}`, fix: 'fix the syntax' };
  }
  try {
    const n = new Parser(pattern).parse();
    if (n.minLen === 0) return { ok: false, reason: 'the pattern can match the empty string', fix: 'require at least one character' };
    if (n.ways > MAX_WAYS) {
      return {
        ok: false,
        reason: `the pattern can backtrack ${n.ways > 1e12 ? 'over 10^12' : n.ways} ways per position (limit ${MAX_WAYS})`,
        fix: 'narrow the repetition ranges, avoid repeating a group that itself repeats, or split the pattern',
      };
    }
    return { ok: true, ways: n.ways };
  } catch (err) {
    if (err instanceof Refused) return { ok: false, reason: err.reason, fix: err.fix };
    throw err;
  }
}
