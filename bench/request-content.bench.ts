/**
 * What keeping the forwarded request body as gateway.request.received `content` (version 2) costs the
 * gateway per request, isolated from the rest of the exchange (the whole-gateway bench,
 * bench/gateway.bench.ts, cannot resolve a few µs on a shared machine):
 *   - encoding the event with content vs with content null (the encoder's PAN guard scans the string,
 *     then avsc copies it), and
 *   - the recorder's own containsPan check (requestContent in services/gateway/src/evidence.ts),
 * for Messages request bodies of 1 K, 8 K, 32 K characters and the 256 Ki cap. Medians of 7 interleaved
 * rounds; prose bodies (a digit every ~100 characters), which is the common case for the guard.
 *
 *   node --import tsx bench/request-content.bench.ts
 */
import { chainEvent, containsPan, encodeEvent, newEvent } from '../services/common/src/events';
import { SAMPLE_PARTS } from '../services/common/src/events/fixtures';

const filler = 'Here is the summary of the quarterly report you asked for, with the key figures and the 3 actions. ';
const body = (chars: number) =>
  JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 1024, messages: [{ role: 'user', content: filler.repeat(Math.ceil(chars / filler.length)).slice(0, chars) }] });
const parts = SAMPLE_PARTS['gateway.request.received'];
const event = (content: string | null) =>
  chainEvent(newEvent('gateway.request.received', { ...parts, payload: { ...parts.payload, content } }, { producer: { id: 'bench' } }), { sequence: 1, prevHash: Buffer.alloc(32) });

function perCallUs(fn: () => void, n: number): number {
  for (let i = 0; i < Math.min(n, 2_000); i++) fn();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn();
  return Number(process.hrtime.bigint() - t0) / 1_000 / n;
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

console.log('| body chars | encode, content null µs | encode, with content µs | Δ µs | recorder containsPan µs | added per request µs |');
console.log('|---:|---:|---:|---:|---:|---:|');
for (const size of [1_000, 8_000, 32_000, 256_000]) {
  const text = body(size);
  const n = size >= 100_000 ? 300 : 5_000;
  const withContent = event(text);
  const without = event(null);
  const a: number[] = [];
  const b: number[] = [];
  const g: number[] = [];
  for (let round = 0; round < 7; round++) {
    a.push(perCallUs(() => encodeEvent(without), n));
    b.push(perCallUs(() => encodeEvent(withContent), n));
    g.push(perCallUs(() => containsPan(text), n));
  }
  const [na, nb, ng] = [median(a), median(b), median(g)];
  console.log(`| ${text.length} | ${na.toFixed(1)} | ${nb.toFixed(1)} | ${(nb - na).toFixed(1)} | ${ng.toFixed(1)} | ${(nb - na + ng).toFixed(1)} |`);
}
