/**
 * Masking engine throughput: MB of text scanned per CPU second (process.cpuUsage, user + system),
 * median of several runs, on three generated corpora:
 *   (a) prose and JSON with few digits (what most requests/responses are),
 *   (b) digit-dense text: order numbers, phone numbers, amounts, timestamps, ids (no cards),
 *   (c) text with many real (Luhn-valid, test) PANs in assorted layouts,
 * for findPans, maskPans, a straightforward `regex + Luhn` baseline in the same run, and the
 * streaming masker on (c) split into ~40-byte deltas.
 *
 * Corpus (b′) is an extra stress case: bare numbers separated by single spaces, so that many of them
 * join into long runs (the engine's slowest path). Each corpus is measured as one call over the whole
 * text and as ~16 KB messages (what the gateway actually passes: a body, a JSON string value). The
 * streaming masker is also run on (a). All figures of one corpus are measured interleaved.
 *
 * Run: node --import tsx bench/masking.bench.ts [--runs 7] [--mb 4] [--only abcs]
 * Results go to bench/RESULTS.md (section "## Masking engine") by hand.
 */
import os from 'node:os';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { findPans, maskPans, StreamingPanMasker } from '../services/common/src/masking/index';

const args = process.argv.slice(2);
function arg(name: string, dflt: number): number {
  const i = args.indexOf(`--${name}`);
  const v = i >= 0 ? Number(args[i + 1]) : NaN;
  return Number.isFinite(v) && v > 0 ? v : dflt;
}
const RUNS = arg('runs', 7);
/** --only ac: run only the corpora whose tag letters are listed (a, b, s for b′, c). */
const ONLY = ((): string => {
  const i = args.indexOf('--only');
  return i >= 0 ? (args[i + 1] ?? '') : 'absc';
})();
const TARGET_CHARS = Math.round(arg('mb', 4) * 1e6);

// ------------------------------------------------------------------------------------------------
// Deterministic corpora

let seed = 0x5eed;
function rnd(): number {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const int = (lo: number, hi: number): number => lo + Math.floor(rnd() * (hi - lo + 1));
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
const digits = (n: number): string => {
  let s = '';
  for (let i = 0; i < n; i++) s += String(int(0, 9));
  return s;
};

const WORDS =
  'the of and to in is that for it as was with be by on not he this are or his from at which but have an they you were her she there been one all we their has would when if so no what up out who them some could more into do than then about my time only other its like also two any these may'.split(
    ' ',
  );

function sentence(): string {
  const n = int(6, 18);
  const w: string[] = [];
  for (let i = 0; i < n; i++) w.push(pick(WORDS));
  const s = w.join(' ');
  return s[0]!.toUpperCase() + s.slice(1) + '.';
}

/** Build a flat string (V8 flattens on first scan anyway; do it up front so every run sees the same). */
function flat(parts: string[]): string {
  return Buffer.from(parts.join(''), 'utf8').toString('utf8');
}

function corpusProse(): string {
  const parts: string[] = [];
  let n = 0;
  while (n < TARGET_CHARS) {
    let p: string;
    const r = rnd();
    if (r < 0.5) {
      p = `${sentence()} ${sentence()} ${sentence()}\n\n`;
    } else if (r < 0.9) {
      // An SSE-like JSON delta with prose.
      p = `data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"${sentence()} ${sentence()}"}}\n\n`;
    } else {
      p = `{"role":"user","content":"${sentence()} Chapter ${int(1, 30)}, page ${int(1, 400)}."}\n`;
    }
    parts.push(p);
    n += p.length;
  }
  return flat(parts);
}

/** A valid EAN-13 (GS1 check digit), as real barcodes are. */
function gtin13(body: string): string {
  let sum = 0;
  for (let i = 0; i < 12; i++) sum += (body.charCodeAt(i) - 48) * (i % 2 === 0 ? 1 : 3);
  return body + String((10 - (sum % 10)) % 10);
}

/** Realistic digit-dense text: log lines, JSON records, CSV rows and messages full of numbers. */
function corpusDigits(): string {
  const pad = (n: number, w: number): string => String(n).padStart(w, '0');
  const date = (): string => `${int(2019, 2030)}-${pad(int(1, 12), 2)}-${pad(int(1, 28), 2)}`;
  const time = (): string => `${pad(int(0, 23), 2)}:${pad(int(0, 59), 2)}:${pad(int(0, 59), 2)}`;
  const phone = (): string =>
    pick([
      `+1 (${int(201, 989)}) ${int(200, 999)}-${digits(4)}`,
      `+44 20 ${digits(4)} ${digits(4)}`,
      `${int(201, 989)}.${int(200, 999)}.${digits(4)}`,
      `+49 30 ${digits(8)}`,
    ]);
  const money = (): string => `$${int(1, 999)},${digits(3)}.${digits(2)}`;
  const gens: (() => string)[] = [
    () => `${date()} ${time()}.${digits(3)} INFO order=${int(1001, 9999999)} status=shipped total=${money()} items=${int(1, 9)}\n`,
    () => `{"id":${int(100000, 99999999)},"amount":${int(1, 99999999)},"qty":${int(1, 99)},"ts":${int(1_500_000_000, 1_900_000_000)}${digits(3)},"score":${rnd()}}\n`,
    () => `${int(100, 999)}-${digits(7)}-${digits(7)},${date()},${money()},${phone()},EAN ${gtin13(digits(12))}\n`,
    () => `Order #${int(1001, 9999999)} placed ${date()} by customer ${int(10000, 999999)}; call ${phone()} re: invoice INV-${pad(int(1, 999999), 6)} for ${money()}.\n`,
    () => `10.${int(0, 255)}.${int(0, 255)}.${int(0, 255)}:${int(1024, 65535)} - - [${date()} ${time()}] "GET /api/v1/orders/${int(1, 9999999)} HTTP/1.1" 200 ${int(100, 99999)} ${rnd()}\n`,
    () => `ORD-${int(2015, 2030)}-${pad(int(1, 999999), 6)} | ${int(1, 500)} x SKU ${int(10000, 999999)} @ ${money()} | tracking ${digits(int(20, 26))}\n`,
  ];
  const parts: string[] = [];
  let n = 0;
  while (n < TARGET_CHARS) {
    const p = pick(gens)();
    parts.push(p);
    n += p.length;
  }
  return flat(parts);
}

/** Stress variant: numbers only, separated by single spaces (so many join into long runs). */
function corpusDigitsStress(): string {
  const gens: (() => string)[] = [
    () => `Order #${int(1001, 9999999)} ${pick(['shipped', 'paid', 'refunded'])} `,
    () => `ORD-${int(2015, 2030)}-${String(int(1, 999999)).padStart(6, '0')} `,
    () => `${int(100, 999)}-${digits(7)}-${digits(7)} `,
    () => `+1 (${int(201, 989)}) ${int(200, 999)}-${digits(4)} `,
    () => `+44 20 ${digits(4)} ${digits(4)} `,
    () => `${int(201, 989)}.${int(200, 999)}.${digits(4)} `,
    () => `$${int(1, 999)},${digits(3)}.${digits(2)} `,
    () => `"amount": ${int(1, 99999999)}, "qty": ${int(1, 99)}, `,
    () => `"ts": ${int(1_500_000_000, 1_900_000_000)}${digits(3)}, `,
    () => `2024-${String(int(1, 12)).padStart(2, '0')}-${String(int(1, 28)).padStart(2, '0')} ${int(10, 23)}:${int(10, 59)}:${int(10, 59)} `,
    () => `${rnd()} `,
    () => `10.${int(0, 255)}.${int(0, 255)}.${int(0, 255)}:${int(1024, 65535)} `,
    () => `${digits(int(20, 30))} `,
    () => `EAN ${gtin13(digits(12))} `,
    () => `id=${digits(int(6, 12))} `,
  ];
  const parts: string[] = [];
  let n = 0;
  while (n < TARGET_CHARS) {
    const p = pick(gens)();
    parts.push(p);
    n += p.length;
    if (rnd() < 0.05) parts.push('\n');
  }
  return flat(parts);
}

function luhnComplete(body: string): string {
  for (let c = 0; c <= 9; c++) {
    const d = body + c;
    let sum = 0;
    for (let i = 0; i < d.length; i++) {
      let v = d.charCodeAt(d.length - 1 - i) - 48;
      if (i % 2 === 1) {
        v *= 2;
        if (v > 9) v -= 9;
      }
      sum += v;
    }
    if (sum % 10 === 0) return d;
  }
  throw new Error('unreachable');
}

function randomPan(): string {
  const r = rnd();
  if (r < 0.45) return luhnComplete('4' + digits(14));
  if (r < 0.75) return luhnComplete(String(int(51, 55)) + digits(13));
  if (r < 0.85) return luhnComplete(pick(['34', '37']) + digits(12));
  return luhnComplete('6011' + digits(11));
}

function formatPan(d: string): string {
  const r = rnd();
  if (r < 0.4) return d;
  const g = d.length === 15 ? [d.slice(0, 4), d.slice(4, 10), d.slice(10)] : (d.match(/.{1,4}/g) ?? []);
  if (r < 0.7) return g.join(' ');
  if (r < 0.9) return g.join('-');
  return g.join('\u00a0');
}

function corpusPans(): string {
  const parts: string[] = [];
  let n = 0;
  while (n < TARGET_CHARS) {
    const p = `${pick(['Card', 'PAN', 'Charge', 'Refund to'])} ${formatPan(randomPan())} ${pick(['approved', 'declined', 'exp 12/27'])}. ${sentence()}\n`;
    parts.push(p);
    n += p.length;
  }
  return flat(parts);
}

// ------------------------------------------------------------------------------------------------
// Baseline: the usual regex + Luhn (13–19 digits, optional single space/dash between digits).

const BASELINE_RE = /\b(?:\d[ -]?){12,18}\d\b/g;
function baselineLuhn(d: string): boolean {
  let sum = 0;
  for (let i = 0; i < d.length; i++) {
    let v = d.charCodeAt(d.length - 1 - i) - 48;
    if (i % 2 === 1) {
      v *= 2;
      if (v > 9) v -= 9;
    }
    sum += v;
  }
  return sum % 10 === 0;
}
function baselineFind(text: string): number {
  let n = 0;
  for (const m of text.matchAll(BASELINE_RE)) if (baselineLuhn(m[0].replace(/[ -]/g, ''))) n++;
  return n;
}
function baselineMask(text: string): string {
  return text.replace(BASELINE_RE, (m) => {
    const d = m.replace(/[ -]/g, '');
    return baselineLuhn(d) ? d.slice(0, 6) + '*'.repeat(d.length - 10) + d.slice(-4) : m;
  });
}

// ------------------------------------------------------------------------------------------------

function cpuMicros(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

// A full GC before each measurement so garbage from building the corpora is not billed to the engine.
v8.setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

let sink = 0;
/**
 * MB/s (UTF-8 MB of input per CPU second) for several functions over the same input, measured
 * interleaved — run r of every function before run r+1 of any — so that load from other processes on
 * a shared machine hits engine and baseline alike. Median over RUNS runs, after one warm-up each.
 */
interface Rate {
  mbps: number;
  spread: [number, number];
}
function measureSideBySide(bytes: number, fns: readonly (() => number)[]): Rate[] {
  for (const fn of fns) sink += fn();
  const rates: number[][] = fns.map(() => []);
  for (let r = 0; r < RUNS; r++) {
    fns.forEach((fn, i) => {
      gc();
      const t0 = cpuMicros();
      let reps = 0;
      let el = 0;
      // At least ~150 ms of CPU per run so timer granularity does not matter.
      do {
        sink += fn();
        reps++;
        el = cpuMicros() - t0;
      } while (el < 150_000);
      rates[i]!.push((bytes * reps) / el); // bytes per µs = MB/s
    });
  }
  return rates.map((rs) => {
    const sorted = [...rs].sort((a, b) => a - b);
    return { mbps: median(rs), spread: [sorted[0]!, sorted[sorted.length - 1]!] as [number, number] };
  });
}

/** Length of a result after forcing it flat (a rope's cost is paid when it is written out). */
function flatLen(s: string): number {
  return s.length === 0 ? 0 : s.charCodeAt(s.length >> 1) + s.length;
}

/** The text as ~`size`-character deltas, each a flat string as JSON.parse of an SSE event gives. */
function deltas(text: string, size: number): string[] {
  const out: string[] = [];
  for (let p = 0; p < text.length; p += size) out.push(Buffer.from(text.slice(p, p + size), 'utf8').toString('utf8'));
  return out;
}

function streamMask(chunks: readonly string[]): number {
  const m = new StreamingPanMasker({ format: 'bin6-last4' });
  let len = 0;
  // Each delta's output is consumed on its own (as it would be written to the client).
  for (const c of chunks) len += flatLen(m.push(c));
  len += flatLen(m.end());
  return len + m.hits.length;
}

const corpora: [string, string][] = (
  [
    ['a', '(a) prose + JSON, few digits', corpusProse],
    ['b', '(b) digit-dense, no cards', corpusDigits],
    ['s', '(b′) stress: bare numbers, space-separated', corpusDigitsStress],
    ['c', '(c) many real PANs', corpusPans],
  ] as const
)
  .filter(([tag]) => ONLY.includes(tag))
  .map(([, name, make]) => [name, make()]);

console.log(`${new Date().toISOString()} · node ${process.version} · ${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}) · ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB · load ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
console.log(`${RUNS} interleaved runs per figure, median MB/s of CPU time (UTF-8 bytes of input)\n`);
for (const [name, text] of corpora) {
  const digitsN = (text.match(/[0-9]/g) ?? []).length;
  console.log(`${name}: ${(Buffer.byteLength(text, 'utf8') / 1e6).toFixed(1)} MB, ${((100 * digitsN) / text.length).toFixed(0)}% digits`);
}
console.log('');

const fmt = (x: number): string => `${x.toFixed(0)} MB/s`;

/**
 * The corpus cut at line ends into ~16 KB messages: the size of a request body or a long reply.
 * Each is a flat copy, as strings from JSON.parse or a socket are: V8's slices of one big string
 * would add an indirection to every character read (~25% on digit-dense text).
 */
function messages(text: string, size = 16_384): string[] {
  const out: string[] = [];
  let p = 0;
  while (p < text.length) {
    let e = text.indexOf('\n', p + size);
    e = e < 0 ? text.length : e + 1;
    out.push(Buffer.from(text.slice(p, e), 'utf8').toString('utf8'));
    p = e;
  }
  return out;
}

const rows: string[] = [];
rows.push(
  '| corpus | size | PANs found: engine / baseline | call | findPans | maskPans | baseline find | baseline mask | findPans ÷ baseline | maskPans ÷ baseline |',
);
rows.push('|---|---|---|---|---|---|---|---|---|---|');
for (const [name, text] of corpora) {
  const bytes = Buffer.byteLength(text, 'utf8');
  const hits = findPans(text).length;
  const bhits = baselineFind(text);
  const msgs = messages(text);
  const each = (fn: (t: string) => number) => (): number => {
    let k = 0;
    for (const m of msgs) k += fn(m);
    return k;
  };
  const engineFind = (t: string): number => findPans(t).length;
  const engineMask = (t: string): number => flatLen(maskPans(t, 'bin6-last4').text);
  const baseMask = (t: string): number => flatLen(baselineMask(t));
  const [f, m, bf, bm, f2, m2, bf2, bm2] = measureSideBySide(bytes, [
    () => engineFind(text),
    () => engineMask(text),
    () => baselineFind(text),
    () => baseMask(text),
    each(engineFind),
    each(engineMask),
    each(baselineFind),
    each(baseMask),
  ]) as [Rate, Rate, Rate, Rate, Rate, Rate, Rate, Rate];
  const row = (label: string, a: Rate, b: Rate, c: Rate, d: Rate, first: boolean): string =>
    `| ${first ? name : ''} | ${first ? `${(bytes / 1e6).toFixed(1)} MB` : ''} | ${first ? `${hits} / ${bhits}` : ''} | ${label} | ${fmt(a.mbps)} | ${fmt(b.mbps)} | ${fmt(c.mbps)} | ${fmt(d.mbps)} | ${(a.mbps / c.mbps).toFixed(2)}× | ${(b.mbps / d.mbps).toFixed(2)}× |`;
  rows.push(row('one call', f, m, bf, bm, true));
  rows.push(row(`${msgs.length} × ~16 KB`, f2, m2, bf2, bm2, false));
  console.log(rows[rows.length - 2]);
  console.log(rows[rows.length - 1]);
  const spread = (r: Rate): string => r.spread.map((x) => x.toFixed(0)).join('–');
  console.log(
    `    min–max of runs: find ${spread(f)} / ${spread(f2)}, mask ${spread(m)} / ${spread(m2)}, baseline find ${spread(bf)} / ${spread(bf2)}, baseline mask ${spread(bm)} / ${spread(bm2)}`,
  );
}

const srows: string[] = ['| streaming masker, 40-char deltas | push calls | streaming | maskPans (same run) | streaming ÷ maskPans |', '|---|---|---|---|---|'];
for (const [name, text] of corpora.filter(([name]) => name.startsWith('(c)') || name.startsWith('(a)')).reverse()) {
  const bytes = Buffer.byteLength(text, 'utf8');
  const chunks = deltas(text, 40);
  const [st, b] = measureSideBySide(bytes, [() => streamMask(chunks), () => flatLen(maskPans(text, 'bin6-last4').text)]) as [Rate, Rate];
  srows.push(`| on ${name} | ${chunks.length} | ${fmt(st.mbps)} | ${fmt(b.mbps)} | ${(st.mbps / b.mbps).toFixed(2)}× |`);
  console.log(srows[srows.length - 1]);
}
console.log('\n' + rows.join('\n'));
console.log('\n' + srows.join('\n'));
if (sink === 42) console.log('');
