/**
 * Last line of defence for invariant 2 (no raw PAN at rest): the encoder refuses any event with a
 * string the masking engine would mask. The gateway's inline masking is the real control; this only
 * catches a producer that forgot to mask a field, before the bytes exist.
 *
 * It asks the masking engine itself (services/common/src/masking) rather than keeping its own
 * notion of a PAN: a stricter guard would refuse events whose content the engine deliberately left
 * alone (a list of ports, "qty 2 4111 …", an E.164 number), failing requests closed for nothing; a
 * looser one would let through what the engine would have caught.
 */
import { findPans } from '../masking';

/**
 * A necessary condition for any engine hit, checked first because almost no event string meets it:
 * 13 digits in one run, where a run is ended by an ASCII letter or by more than 4 characters
 * without a digit (the engine's runs allow only separators and invisible characters, in gaps of at
 * most 4 UTF-16 units). Non-ASCII characters count as digits, so Unicode digits and separators can
 * only make it say yes. Ids, UUIDs, URLs and ordinary prose fail it without reaching the engine.
 */
function mayHoldPan(text: string): boolean {
  // Short strings (ids, names, addresses: most of an event's strings) go through the loop: a
  // RegExp call costs ≈ 150 ns on a digit-dense 36-character id, the loop ≈ 50 ns. Long ones
  // (content) through the native expression. Both compute the same condition.
  return text.length <= SHORT_STRING ? mayHoldPanSlow(text) : MAY_HOLD_PAN.test(text);
}

/** Up to this length `mayHoldPan` uses the loop (measured crossover on ids vs prose). */
const SHORT_STRING = 48;

/**
 * The same condition as one regular expression, which V8 runs as native code (≈ 1 GB/s on prose,
 * several times the JavaScript loop `mayHoldPanSlow` it replaces; the two agreed on 300k random
 * strings of digits, separators, letters and non-ASCII characters when this was written):
 * a counted character (ASCII digit or any non-ASCII UTF-16 unit), then 12 more, each after at most
 * 4 characters that are neither letters nor counted. The classes are disjoint, so there is no
 * backtracking blow-up.
 */
const MAY_HOLD_PAN = /[0-9\u0080-\uffff](?:[^A-Za-z0-9\u0080-\uffff]{0,4}[0-9\u0080-\uffff]){12}/;

/** The reference loop for `mayHoldPan` (kept for the equivalence test). */
export function mayHoldPanSlow(text: string): boolean {
  let digits = 0;
  let gap = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if ((c >= 48 && c <= 57) || c >= 0x80) {
      if (++digits >= 13) return true;
      gap = 0;
    } else if ((c >= 65 && c <= 90) || (c >= 97 && c <= 122)) {
      digits = 0;
      gap = 0;
    } else if (digits > 0 && ++gap > 4) {
      digits = 0;
      gap = 0;
    }
  }
  return false;
}

/** Exported for the equivalence test: the fast necessary condition. */
export const mayHoldPanFast = mayHoldPan;

/** True when the masking engine finds a PAN in `text`. */
export function containsPan(text: string): boolean {
  if (text.length < 13) return false;
  // The same long text is often asked about several times in a row (a request body: its evidence
  // digest, its kept content, the encoder's guard of that content). The answer depends only on the
  // characters, so the last long text found clean is remembered (one slot, compared by value).
  if (text.length > SHORT_STRING && text === lastCleanLong) return false;
  const found = mayHoldPan(text) && findPans(text).length > 0;
  if (!found && text.length > SHORT_STRING) lastCleanLong = text;
  return found;
}

/** The last string longer than SHORT_STRING that `containsPan` found clean. */
let lastCleanLong: string | undefined;

/**
 * Paths of the strings in `value` that contain a PAN (never the strings themselves, so the path can
 * go into an error message and a log safely). Buffers are binary (digests, HMACs, signatures) and
 * skipped; map keys are checked too.
 */
export function findPanCandidates(value: unknown, path = '$'): string[] {
  const found: string[] = [];
  // Path segments are kept on a stack and only formatted on a hit: this runs on every encode.
  const segments: (string | number)[] = [];
  const here = (suffix = ''): string => path + segments.map((k) => (typeof k === 'number' ? `[${k}]` : `.${k}`)).join('') + suffix;
  const walk = (v: unknown): void => {
    if (typeof v === 'string') {
      if (containsPan(v)) found.push(here());
    } else if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        segments.push(i);
        walk(v[i]);
        segments.pop();
      }
    } else if (typeof v === 'object' && v !== null && !Buffer.isBuffer(v)) {
      const keys = Object.keys(v);
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i] as string;
        if (containsPan(key)) found.push(here('{key}'));
        segments.push(key);
        walk((v as Record<string, unknown>)[key]);
        segments.pop();
      }
    }
  };
  walk(value);
  return found;
}

/** The parts of avsc's types the scanner compiler looks at. */
interface TypeView {
  readonly typeName: string;
  readonly name?: string | undefined;
  readonly fields?: readonly { readonly name: string; readonly type: TypeView }[];
  readonly itemsType?: TypeView;
  readonly valuesType?: TypeView;
  readonly types?: readonly TypeView[];
}

type Scan = (value: unknown, path: (string | number)[], found: string[]) => void;

function formatPath(path: readonly (string | number)[]): string {
  return path.map((k) => (typeof k === 'number' ? `[${k}]` : `.${k}`)).join('').replace(/^\./, '');
}

/**
 * A PAN scanner for values of one Avro type: visits only the string fields (and map keys) the
 * type can encode, skipping numbers, enums and binary, so the per-event cost is the strings alone.
 * Same findings as `findPanCandidates` on what gets encoded; paths are 'payload.content' style.
 */
export function compilePanScanner(avroType: unknown): (value: unknown) => string[] {
  const byName = new Map<string, Scan | undefined>();
  const build = (t: TypeView): Scan | undefined => {
    switch (t.typeName) {
      case 'string':
        return (v, path, found) => {
          if (typeof v === 'string' && containsPan(v)) found.push(formatPath(path));
        };
      case 'record':
      case 'error': {
        if (t.name !== undefined && byName.has(t.name)) return byName.get(t.name);
        let self: Scan | undefined;
        // Registered before the fields are built, so a recursive record refers to itself.
        if (t.name !== undefined) byName.set(t.name, (v, p, f) => self?.(v, p, f));
        const parts: [string, Scan][] = [];
        for (const field of t.fields ?? []) {
          const scan = build(field.type);
          if (scan !== undefined) parts.push([field.name, scan]);
        }
        self =
          parts.length === 0
            ? undefined
            : (v, path, found) => {
                if (typeof v !== 'object' || v === null) return;
                for (const [name, scan] of parts) {
                  path.push(name);
                  scan((v as Record<string, unknown>)[name], path, found);
                  path.pop();
                }
              };
        if (t.name !== undefined) byName.set(t.name, self);
        return self;
      }
      case 'array': {
        const item = t.itemsType === undefined ? undefined : build(t.itemsType);
        if (item === undefined) return undefined;
        return (v, path, found) => {
          if (!Array.isArray(v)) return;
          for (let i = 0; i < v.length; i++) {
            path.push(i);
            item(v[i], path, found);
            path.pop();
          }
        };
      }
      case 'map': {
        const values = t.valuesType === undefined ? undefined : build(t.valuesType);
        return (v, path, found) => {
          if (typeof v !== 'object' || v === null) return;
          for (const key of Object.keys(v)) {
            if (containsPan(key)) found.push(`${formatPath(path)}{key}`);
            if (values === undefined) continue;
            path.push(key);
            values((v as Record<string, unknown>)[key], path, found);
            path.pop();
          }
        };
      }
      default: {
        if (!t.typeName.startsWith('union')) return undefined; // numbers, booleans, enums, bytes, fixed
        const branches = (t.types ?? []).map(build).filter((s): s is Scan => s !== undefined);
        if (branches.length === 0) return undefined;
        // Each branch checks the value's shape itself, so trying all of them is safe.
        return (v, path, found) => {
          for (const branch of branches) branch(v, path, found);
        };
      }
    }
  };
  const root = build(avroType as TypeView);
  const any = compileAnyPan(avroType as TypeView);
  return (value) => {
    const found: string[] = [];
    // The fast pass decides; paths are collected (a second walk) only for an event being refused.
    if (any !== undefined && any(value)) root?.(value, [], found);
    return found;
  };
}

type Any = (value: unknown) => boolean;

/**
 * Whether any string the type encodes (or map key) contains a PAN: the same visit as the scanner
 * above, without keeping paths, as flat loops over precomputed field lists.
 */
function compileAnyPan(rootType: TypeView): Any | undefined {
  const byName = new Map<string, Any | undefined>();
  const build = (t: TypeView): Any | undefined => {
    switch (t.typeName) {
      case 'string':
        return (v) => typeof v === 'string' && containsPan(v);
      case 'record':
      case 'error': {
        if (t.name !== undefined && byName.has(t.name)) return byName.get(t.name);
        let self: Any | undefined;
        if (t.name !== undefined) byName.set(t.name, (v) => self !== undefined && self(v));
        const names: string[] = [];
        const scans: Any[] = [];
        for (const field of t.fields ?? []) {
          const scan = build(field.type);
          if (scan !== undefined) {
            names.push(field.name);
            scans.push(scan);
          }
        }
        const n = names.length;
        self =
          n === 0
            ? undefined
            : (v) => {
                if (typeof v !== 'object' || v === null) return false;
                for (let i = 0; i < n; i++) if (scans[i]!((v as Record<string, unknown>)[names[i]!])) return true;
                return false;
              };
        if (t.name !== undefined) byName.set(t.name, self);
        return self;
      }
      case 'array': {
        const item = t.itemsType === undefined ? undefined : build(t.itemsType);
        if (item === undefined) return undefined;
        return (v) => {
          if (!Array.isArray(v)) return false;
          for (let i = 0; i < v.length; i++) if (item(v[i])) return true;
          return false;
        };
      }
      case 'map': {
        const values = t.valuesType === undefined ? undefined : build(t.valuesType);
        return (v) => {
          if (typeof v !== 'object' || v === null) return false;
          for (const key of Object.keys(v)) {
            if (containsPan(key)) return true;
            if (values !== undefined && values((v as Record<string, unknown>)[key])) return true;
          }
          return false;
        };
      }
      default: {
        if (!t.typeName.startsWith('union')) return undefined;
        const branches = (t.types ?? []).map(build).filter((s): s is Any => s !== undefined);
        if (branches.length === 0) return undefined;
        if (branches.length === 1) return branches[0];
        return (v) => {
          for (const branch of branches) if (branch(v)) return true;
          return false;
        };
      }
    }
  };
  return build(rootType);
}
