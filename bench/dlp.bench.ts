/**
 * DLP engine throughput, CPU time (process.cpuUsage, user + system), median of several interleaved
 * runs after a warm-up:
 *   (a) prose and JSON-ish text with few digits and no secrets, in ~16 KB strings (a body, a long reply);
 *   (b) secret-dense text: every line carries a card, an IBAN, a key, a JWT, an e-mail, a phone, a
 *       connection string or a PEM block (one finding per ~150 bytes), in ~16 KB strings;
 *   (c) events/s for typical event-sized content: a Messages API request of ~2–3 KB JSON (system
 *       prompt, a few turns, tool results), 1 in 10 carrying a card number or a key, through scanJson.
 * findPans alone over (a) and (b) is measured in the same runs as a reference: the DLP engine runs the
 * PAN engine plus fourteen other detectors.
 *
 * Run: node --import tsx bench/dlp.bench.ts [--runs 7] [--mb 4]
 */
import os from 'node:os';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { findPans } from '../services/common/src/masking/index';
import { compileDlpPolicy, DEFAULT_DLP_POLICY, scanAndApply, scanJson, type Json } from '../services/common/src/dlp/index';

const args = process.argv.slice(2);
function arg(name: string, dflt: number): number {
  const i = args.indexOf(`--${name}`);
  const v = i >= 0 ? Number(args[i + 1]) : NaN;
  return Number.isFinite(v) && v > 0 ? v : dflt;
}
const RUNS = arg('runs', 7);
const TARGET_CHARS = Math.round(arg('mb', 4) * 1e6);

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
const chars = (a: string, n: number): string => Array.from({ length: n }, () => a[int(0, a.length - 1)]).join('');
const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const WORDS = 'the of and to in is that for it as was with be by on not this are or from at which but have an they you were has would when if so no what up out who them some could more into do than then about time only other its like also two any these may order total version request build'.split(' ');
function sentence(): string {
  const w = Array.from({ length: int(6, 18) }, () => pick(WORDS)).join(' ');
  return w[0]!.toUpperCase() + w.slice(1) + pick(['.', '.', '?', ` (${int(1, 99)}).`, ` at ${int(10, 23)}:${int(10, 59)}.`]);
}
const flat = (s: string): string => Buffer.from(s, 'utf8').toString('utf8');

function build(line: () => string): string[] {
  const msgs: string[] = [];
  let cur = '';
  let n = 0;
  while (n < TARGET_CHARS) {
    const l = line();
    cur += l;
    n += l.length;
    if (cur.length >= 16_384) {
      msgs.push(flat(cur));
      cur = '';
    }
  }
  if (cur) msgs.push(flat(cur));
  return msgs;
}

const prose = build(() =>
  pick([
    () => `${sentence()} ${sentence()} ${sentence()}\n\n`,
    () => `{"type":"text","text":"${sentence()} ${sentence()}"}\n`,
    () => `- step ${int(1, 9)}: ${sentence()} See https://docs.example.com/guide/${int(1, 99)}.\n`,
  ])(),
);
const b64u = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
const dense = build(() =>
  pick([
    () => `card 4111 1111 1111 1111 ${sentence()}\n`,
    () => `IBAN DE89 3704 0044 0532 0130 00 for ${sentence()}\n`,
    () => `ANTHROPIC_API_KEY=sk-ant-api03-${chars(ALNUM, 93)}AA\n`,
    () => `Bearer ${b64u({ alg: 'RS256', typ: 'JWT' })}.${b64u({ sub: String(int(1, 1e6)) })}.${chars(ALNUM, 86)}\n`,
    () => `mail carol${int(1, 99)}@example.com or call +44 20 7946 ${int(1000, 9999)}\n`,
    () => `postgres://app:${chars(ALNUM, 14)}@db.internal:5432/app ${sentence()}\n`,
    () => `aws_access_key_id=AKIA${chars('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', 16)} ssn 512-44-${int(1000, 9999)}\n`,
    () => `-----BEGIN PRIVATE KEY-----\n${chars(ALNUM, 64)}\n${chars(ALNUM, 64)}\n-----END PRIVATE KEY-----\n`,
  ])(),
);

function event(i: number): Json {
  const turn = (): Json => ({ role: pick(['user', 'assistant']), content: [{ type: 'text', text: `${sentence()} ${sentence()} ${sentence()}` }] });
  const messages: Json[] = Array.from({ length: int(3, 7) }, turn);
  messages.push({
    role: 'user',
    content: [
      { type: 'tool_result', tool_use_id: `toolu_${chars(ALNUM, 24)}`, content: `${sentence()} ${i % 10 === 0 ? pick(['card 5555555555554444', `key sk-ant-api03-${chars(ALNUM, 93)}AA`]) : sentence()}` },
    ],
  });
  return { model: 'claude-sonnet-4-5', max_tokens: 1024, system: `${sentence()} ${sentence()} ${sentence()} ${sentence()}`, messages, metadata: { user_id: `u-${int(1, 1e6)}` } };
}
const events: Json[] = Array.from({ length: 2000 }, (_, i) => JSON.parse(JSON.stringify(event(i))) as Json);
const eventBytes = events.reduce<number>((a, e) => a + Buffer.byteLength(JSON.stringify(e)), 0);

v8.setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const cpu = (): number => {
  const u = process.cpuUsage();
  return u.user + u.system;
};
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
let sink = 0;
/** Units per CPU second for each fn (each call processes `units`), interleaved, median of RUNS. */
function measure(units: number, fns: (() => number)[]): number[] {
  for (const f of fns) sink += f();
  const rates: number[][] = fns.map(() => []);
  for (let r = 0; r < RUNS; r++) {
    fns.forEach((f, i) => {
      gc();
      const t0 = cpu();
      let reps = 0;
      let el = 0;
      do {
        sink += f();
        reps++;
        el = cpu() - t0;
      } while (el < 200_000);
      rates[i]!.push((units * reps) / (el / 1e6));
    });
  }
  return rates.map(median);
}

const policy = compileDlpPolicy(DEFAULT_DLP_POLICY);
const key = { kid: 'bench', secret: new Uint8Array(32).fill(5) };
const bytes = (ms: string[]): number => ms.reduce((a, m) => a + Buffer.byteLength(m), 0);
const runText = (ms: string[]) => (): number => {
  let k = 0;
  for (const m of ms) k += scanAndApply(m, policy, key).text.length;
  return k;
};
const runPans = (ms: string[]) => (): number => {
  let k = 0;
  for (const m of ms) k += findPans(m).length;
  return k;
};

console.log(`${new Date().toISOString()} · node ${process.version} · ${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}) · load ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
console.log(`${RUNS} interleaved runs per figure, median, CPU time\n`);
const findingsDense = dense.reduce((a, m) => a + scanAndApply(m, policy, key).findings.filter((f) => f.kind === 'data_masked').length, 0);
const rows = ['| input | size | findings | DLP scanAndApply | findPans alone (reference) |', '|---|---|---|---|---|'];
for (const [name, ms] of [
  ['(a) prose, ~16 KB strings', prose],
  ['(b) secret-dense, ~16 KB strings', dense],
] as const) {
  const b = bytes(ms);
  const [dlp, pans] = measure(b / 1e6, [runText(ms), runPans(ms)]) as [number, number];
  const f = name.startsWith('(b)') ? findingsDense : ms.reduce((a, m) => a + scanAndApply(m, policy, key).findings.length, 0);
  rows.push(`| ${name} | ${(b / 1e6).toFixed(1)} MB | ${f} | ${dlp.toFixed(1)} MB/s | ${pans.toFixed(0)} MB/s |`);
  console.log(rows.at(-1));
}
const [eps] = measure(events.length, [
  (): number => {
    let k = 0;
    for (const e of events) k += scanJson(e, policy, key).changes.length;
    return k;
  },
]) as [number];
rows.push(`| (c) events: Messages API request JSON, avg ${(eventBytes / events.length / 1024).toFixed(1)} KB, 10% with a card or key | ${(eventBytes / 1e6).toFixed(1)} MB | — | ${eps.toFixed(0)} events/s (${((eps * eventBytes) / events.length / 1e6).toFixed(1)} MB/s) | — |`);
console.log(rows.at(-1));
console.log('\n' + rows.join('\n'));
if (sink === 42) console.log('');
