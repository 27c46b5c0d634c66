import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { JsonFragmentMasker } from './json-fragment-masker';
import { SseMasker } from './sse-masker';
import type { LocatedHit } from './mask-json';
import type { MaskingAction } from '../../common/src/config';
import { findPans, luhnValid } from '../../common/src/masking';
import { prng } from '../../common/src/store/testing';
import { NONCARD_FILE, PANS_FILE, type NonCardLine, type PanCase } from '../../../test/fixtures/masking/generate';

// Test corpus card numbers (Luhn-valid test PANs).
const VISA = '4111111111111111';
const MASKED = '411111******1111';

function splitAt(text: string, cuts: number[]): string[] {
  const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
  const parts: string[] = [];
  let prev = 0;
  for (const p of points) {
    parts.push(text.slice(prev, p));
    prev = p;
  }
  parts.push(text.slice(prev));
  return parts;
}

function runJson(parts: string[]): { out: string; hits: number } {
  const m = new JsonFragmentMasker({ format: 'bin6-last4' });
  let out = '';
  for (const p of parts) out += m.push(p);
  out += m.end();
  return { out, hits: m.hits.length };
}

describe('JsonFragmentMasker', () => {
  const doc = JSON.stringify({ card: VISA, nested: { list: [`pay ${VISA} now`, 42], n: Number(VISA) }, note: 'no digits "here"\\n' });

  it('masks card numbers in strings and bare numbers, keeping the JSON valid', () => {
    const { out, hits } = runJson([doc]);
    expect(JSON.parse(out)).toEqual({ card: MASKED, nested: { list: [`pay ${MASKED} now`, 42], n: MASKED }, note: 'no digits "here"\\n' });
    expect(hits).toBe(3);
  });

  it('gives the same result however the JSON text is split', () => {
    const expected = runJson([doc]).out;
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 12 }), (cuts) => {
        expect(runJson(splitAt(doc, cuts)).out).toBe(expected);
      }),
      { numRuns: 300 },
    );
  });

  it('sees digits written as \\u escapes, split anywhere', () => {
    const escaped = `{"c":"${VISA.split('').map((d) => `\\u003${d}`).join('')}"}`;
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 8 }), (cuts) => {
        expect(JSON.parse(runJson(splitAt(escaped, cuts)).out)).toEqual({ c: MASKED });
      }),
      { numRuns: 200 },
    );
  });

  it('passes non-card numbers and text through unchanged', () => {
    const text = JSON.stringify({ order: 1234567890123, ts: 1732526400000, phone: '+1 415 555 0100', x: -1.5e10, ok: true, none: null });
    expect(runJson([text]).out).toBe(text);
  });
});

function sse(events: Array<Record<string, unknown>>): string {
  return events.map((e) => `event: ${String(e.type)}\ndata: ${JSON.stringify(e)}\n\n`).join('');
}

function textStream(deltas: string[]): string {
  return sse([
    { type: 'message_start', message: { id: 'msg_1', type: 'message', role: 'assistant', content: [], model: 'm', usage: { input_tokens: 1, output_tokens: 1 } } },
    { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
    { type: 'ping' },
    ...deltas.map((t) => ({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: t } })),
    { type: 'content_block_stop', index: 0 },
    { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 9 } },
    { type: 'message_stop' },
  ]);
}

function runSse(bytes: Uint8Array[], mode: { rewrite: boolean } | { action: MaskingAction } = { rewrite: true }): { out: string; hits: LocatedHit[] } {
  const hits: LocatedHit[] = [];
  const m = new SseMasker({ format: 'bin6-last4', ...mode, onHit: (h) => hits.push(h) });
  let out = '';
  for (const b of bytes) out += m.push(b);
  out += m.end();
  return { out, hits };
}

function textOf(out: string): string {
  return out
    .split('\n\n')
    .filter((b) => b.includes('content_block_delta'))
    .map((b) => JSON.parse(/^data: (.*)$/m.exec(b)![1]!).delta.text as string)
    .join('');
}

describe('SseMasker', () => {
  it('masks a card number split across deltas, whatever the network chunking', () => {
    const raw = new TextEncoder().encode(textStream(['Card 41', '11 11', '11 1111 11', '11 ok']));
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 10 }), (cuts) => {
        const points = [...new Set(cuts.map((c) => c % (raw.length + 1)))].sort((a, b) => a - b);
        const chunks: Uint8Array[] = [];
        let prev = 0;
        for (const p of points) {
          chunks.push(raw.slice(prev, p));
          prev = p;
        }
        chunks.push(raw.slice(prev));
        const { out, hits } = runSse(chunks);
        expect(textOf(out)).toBe(`Card ${MASKED} ok`);
        expect(hits).toHaveLength(1);
        expect(hits[0]!.location).toBe('content[0].text');
        // Every emitted event is complete SSE with valid JSON.
        for (const block of out.split('\n\n').filter((b) => b.trim())) {
          expect(block).toMatch(/^event: \w+\ndata: /);
          expect(() => JSON.parse(/^data: (.*)$/m.exec(block)![1]!)).not.toThrow();
        }
      }),
      { numRuns: 200 },
    );
  });

  it('leaves ping, usage and stop events byte-identical', () => {
    const input = textStream([`x ${VISA} y`]);
    const { out } = runSse([new TextEncoder().encode(input)]);
    const keep = (t: string) => t.split('\n\n').filter((b) => /event: (ping|message_delta|message_stop|message_start)/.test(b));
    expect(keep(out)).toEqual(keep(input));
  });

  it('emits text before a digit run at once and holds back only the digits', () => {
    const m = new SseMasker({ format: 'bin6-last4', rewrite: true, onHit: () => {} });
    const start = m.push(new TextEncoder().encode(sse([{ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }])));
    expect(start).toContain('content_block_start');
    const out = m.push(new TextEncoder().encode(sse([{ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'hello 4111 1111' } }])));
    expect(textOf(out)).toBe('hello ');
    const out2 = m.push(new TextEncoder().encode(sse([{ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: ' world' } }])));
    expect(textOf(out2)).toBe('4111 1111 world');
  });

  it('flushes a held tail as one more delta just before content_block_stop', () => {
    const { out } = runSse([new TextEncoder().encode(textStream(['total: 12345']))]);
    const types = out.split('\n\n').filter((b) => b.trim()).map((b) => /^event: (\w+)/.exec(b)![1]);
    expect(types).toEqual(['message_start', 'content_block_start', 'ping', 'content_block_delta', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
    expect(textOf(out)).toBe('total: 12345');
  });

  it('with action allow, reports hits and forwards the bytes unchanged, at once', () => {
    const input = textStream([`x ${VISA} y`, 'split 4111 1111', ' 1111 1111 end']);
    const { out, hits } = runSse([new TextEncoder().encode(input)], { action: 'allow' });
    expect(out).toBe(input);
    expect(hits.map((h) => [h.hit.last4, h.location])).toEqual([['1111', 'content[0].text'], ['1111', 'content[0].text']]);
    // Nothing is held back: each delta goes out with the push that brings it.
    const m = new SseMasker({ format: 'bin6-last4', action: 'allow', onHit: () => {} });
    m.push(new TextEncoder().encode(sse([{ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }])));
    expect(textOf(m.push(new TextEncoder().encode(sse([{ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'pay 4111 1111' } }]))))).toBe('pay 4111 1111');
  });

  it('accepts CRLF-framed events', () => {
    const input = textStream([`x ${VISA}`]).replaceAll('\n', '\r\n');
    expect(textOf(runSse([new TextEncoder().encode(input)]).out.replaceAll('\r\n', '\n'))).toBe(`x ${MASKED}`);
  });
});

// ---------------------------------------------------------------------------------------------
// Action `block`: nothing that is or may still become a card number is ever emitted.

const enc = (s: string) => new TextEncoder().encode(s);
// Luhn-invalid neighbour of VISA: a near miss that must flow through.
const NEAR = '4111111111111112';

/** The stream as an upstream spacing its deltas sends it: one network chunk per SSE event. */
function eventChunks(stream: string): Uint8Array[] {
  return stream.split(/(?<=\n\n)/).filter(Boolean).map(enc);
}

interface BlockRun {
  /** Everything push() and end() returned, including after the block (which must be nothing). */
  out: string;
  /** What each push() returned. */
  perPush: string[];
  hits: LocatedHit[];
  /** Index of the push() during which the first hit was reported; chunks.length for end(). */
  firedAt: number;
  blocked: boolean;
}

function runBlock(chunks: Uint8Array[], mode: { action: MaskingAction } | { rewrite: boolean } = { action: 'block' }): BlockRun {
  const hits: LocatedHit[] = [];
  // hashPan returning the digits: the hit then says which number was found (test only).
  const m = new SseMasker({ format: 'bin6-last4', ...mode, hashPan: (d) => d, onHit: (h) => hits.push(h) });
  const perPush: string[] = [];
  let firedAt = -1;
  chunks.forEach((c, i) => {
    perPush.push(m.push(c));
    if (hits.length > 0 && firedAt < 0) firedAt = i;
  });
  const tail = m.end();
  if (hits.length > 0 && firedAt < 0) firedAt = chunks.length;
  return { out: perPush.join('') + tail, perPush, hits, firedAt, blocked: m.blocked };
}

/** Every decimal digit of `s`, in any script (fullwidth, Arabic-Indic, math bold…), as ASCII; the rest dropped. */
function asciiDigits(s: string): string {
  let out = '';
  for (const ch of s) {
    if (!/\p{Nd}/u.test(ch)) continue;
    const cp = ch.codePointAt(0)!;
    // Unicode encodes each script's digits as contiguous runs starting at zero.
    let zero = cp;
    while (/\p{Nd}/u.test(String.fromCodePoint(zero - 1))) zero--;
    out += String((cp - zero) % 10);
  }
  return out;
}

/** Every string value of every event emitted, with \u escapes inside partial JSON decoded too. */
function emittedStrings(out: string): string {
  const values: string[] = [];
  const collect = (v: unknown): void => {
    if (typeof v === 'string') values.push(v);
    else if (Array.isArray(v)) v.forEach(collect);
    else if (v && typeof v === 'object') Object.values(v).forEach(collect);
  };
  for (const block of out.split('\n\n')) {
    const m = /^data: (.*)$/m.exec(block);
    if (m) collect(JSON.parse(m[1]!));
  }
  return values.join('\u0000').replace(/\\u([0-9a-fA-F]{4})/g, (_, h: string) => String.fromCharCode(Number.parseInt(h, 16)));
}

/** The PAN's digits appear in what was emitted, in any spelling (separators, invisibles, scripts, escapes). */
function leaks(out: string, digits: string): boolean {
  return asciiDigits(emittedStrings(out)).includes(digits) || asciiDigits(out).includes(digits);
}

const eventTypes = (out: string) => out.split('\n\n').filter((b) => b.trim()).map((b) => /^event: (\w+)/.exec(b)![1]);

/** PAN spellings from the masking evasion tests (services/common/src/masking/mask.test.ts), as functions of the digits. */
const groups4 = (d: string) => d.match(/.{1,4}/g)!;
const script = (zero: number) => (d: string) => [...d].map((c) => String.fromCodePoint(zero + Number(c))).join('');
const SPELLINGS: Array<[string, (d: string) => string]> = [
  ['plain', (d) => d],
  ['spaces', (d) => groups4(d).join(' ')],
  ['dashes', (d) => groups4(d).join('-')],
  ['en dash', (d) => groups4(d).join('\u2013')],
  ['minus sign', (d) => groups4(d).join('\u2212')],
  ['dots', (d) => groups4(d).join('.')],
  ['NBSP', (d) => groups4(d).join('\u00a0')],
  ['narrow NBSP', (d) => groups4(d).join('\u202f')],
  ['spaced dash', (d) => groups4(d).join(' - ')],
  ['LF', (d) => groups4(d).join('\n')],
  ['CRLF + indent', (d) => groups4(d).join('\r\n  ')],
  ['line break anywhere', (d) => `${d.slice(0, 7)}\n${d.slice(7)}`],
  ['ZWSP every digit', (d) => [...d].join('\u200b')],
  ['ZWNJ', (d) => [...d].join('\u200c')],
  ['word joiner', (d) => [...d].join('\u2060')],
  ['BOM', (d) => [...d].join('\ufeff')],
  ['soft hyphen', (d) => [...d].join('\u00ad')],
  ['two invisibles', (d) => [...d].join('\u200b\u200d')],
  ['space every digit', (d) => [...d].join(' ')],
  ['pairs', (d) => d.match(/.{1,2}/g)!.join(' ')],
  ['fullwidth', script(0xff10)],
  ['Arabic-Indic', script(0x0660)],
  ['Persian', script(0x06f0)],
  ['Devanagari', script(0x0966)],
  ['math bold (astral)', script(0x1d7ce)],
  ['fullwidth + ZWSP', (d) => [...script(0xff10)(d)].join('\u200b')],
];

/** Every way of cutting `text` into 2 and 3 pieces (UTF-16 offsets, so surrogate pairs are split too). */
function* cuts(text: string): Generator<string[]> {
  for (let i = 0; i <= text.length; i++) {
    yield [text.slice(0, i), text.slice(i)];
    for (let j = i + 1; j < text.length; j += 3) yield [text.slice(0, i), text.slice(i, j), text.slice(j)];
  }
}


function randomPieces(text: string, rnd: () => number): string[] {
  const n = Math.floor(rnd() * 4); // 0 to 3 cuts
  const points = Array.from({ length: n }, () => Math.floor(rnd() * (text.length + 1))).sort((a, b) => a - b);
  const parts: string[] = [];
  let prev = 0;
  for (const p of points) {
    parts.push(text.slice(prev, p));
    prev = p;
  }
  parts.push(text.slice(prev));
  return parts.filter((p, i) => p.length > 0 || i === 0);
}

/**
 * The block-mode guarantees for one stream whose text holds at least one PAN: the text emitted is the
 * stream's text up to at most the first digit of the first PAN, the hit is reported, and the stream
 * stops there (no content_block_stop, no message_stop).
 */
function expectBlocked(run: BlockRun, full: string, label: string): void {
  const found = findPans(full, { hashPan: (d) => d });
  expect(found.length, label).toBeGreaterThan(0);
  const text = textOf(run.out);
  expect(full.startsWith(text), label).toBe(true);
  expect(text.length, label).toBeLessThanOrEqual(found[0]!.start);
  for (const f of found) expect(leaks(run.out, f.fingerprint!), label).toBe(false);
  expect(run.hits.length, label).toBeGreaterThan(0);
  expect(run.hits[0]!.hit.fingerprint, label).toBe(found[0]!.fingerprint);
  expect(run.hits[0]!.location, label).toBe('content[0].text');
  expect(run.blocked, label).toBe(true);
  expect(eventTypes(run.out), label).not.toContain('content_block_stop');
  expect(eventTypes(run.out), label).not.toContain('message_stop');
}

describe('SseMasker, action block', () => {
  it('the reported case: a PAN alone in a delta is never sent; the hit fires on the delta that completes it', () => {
    const run = runBlock(eventChunks(textStream(['friend ', VISA, ' end'])));
    expect(textOf(run.out)).toBe('friend ');
    expect(leaks(run.out, VISA)).toBe(false);
    expect(run.hits.map((h) => [h.hit.bin, h.hit.last4, h.location])).toEqual([['411111', '1111', 'content[0].text']]);
    // Chunks: message_start, content_block_start, ping, 'friend ', VISA, ' end', … The PAN's delta
    // returns nothing (it might still grow into a longer number); ' end' completes it and is dropped.
    expect(run.perPush.slice(3, 6).map(textOf)).toEqual(['friend ', '', '']);
    expect(run.firedAt).toBe(5);
    expect(run.blocked).toBe(true);
    expect(run.perPush.slice(5).join('')).toBe('');
  });

  it('drops a delta that holds a whole PAN and the text around it', () => {
    const run = runBlock(eventChunks(textStream([`friend ${VISA} end`, ' more'])));
    expect(textOf(run.out)).toBe('');
    expect(eventTypes(run.out)).toEqual(['message_start', 'content_block_start', 'ping']);
    expect(run.hits).toHaveLength(1);
  });

  it('drops a PAN that ends the block: found when content_block_stop flushes the held tail', () => {
    const run = runBlock(eventChunks(textStream(['friend ', `card ${VISA}`])));
    expect(textOf(run.out)).toBe('friend card ');
    expect(leaks(run.out, VISA)).toBe(false);
    expect(run.hits).toHaveLength(1);
    expect(eventTypes(run.out)).not.toContain('content_block_stop');
  });

  it('reports every PAN of the event that stops the stream, then emits and scans nothing more', () => {
    const MC = '5555555555554444';
    const hits: LocatedHit[] = [];
    const m = new SseMasker({ format: 'bin6-last4', action: 'block', onHit: (h) => hits.push(h) });
    let out = m.push(enc(textStream([`a ${VISA} b ${MC} c`]).split('event: content_block_stop')[0]!));
    expect(hits.map((h) => h.hit.last4)).toEqual(['1111', '4444']);
    expect(m.blocked).toBe(true);
    out += m.push(enc(sse([{ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: `clean text, ${VISA} ` } }, { type: 'message_stop' }])));
    out += m.end();
    expect(hits).toHaveLength(2);
    expect(leaks(out, VISA)).toBe(false);
    expect(leaks(out, MC)).toBe(false);
    expect(eventTypes(out)).toEqual(['message_start', 'content_block_start', 'ping']);
  });

  for (const [name, spell] of SPELLINGS) {
    it(`never sends a PAN spelled "${name}", split into 1, 2 or 3 deltas anywhere`, () => {
      const full = `pay ${spell(VISA)} now`;
      for (const parts of [[full], ...cuts(full)]) {
        const run = runBlock(eventChunks(textStream(parts)));
        expectBlocked(run, full, `${name} ${JSON.stringify(parts)}`);
      }
    });
  }

  it('never sends a PAN whatever the network chunking of the SSE bytes', () => {
    const raw = enc(textStream(['friend ', '4111 1111', ' 1111 11', '11', ' end']));
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 10 }), (points) => {
        const chunks: Uint8Array[] = [];
        let prev = 0;
        for (const p of [...new Set(points.map((c) => c % (raw.length + 1)))].sort((a, b) => a - b)) {
          chunks.push(raw.slice(prev, p));
          prev = p;
        }
        chunks.push(raw.slice(prev));
        const run = runBlock(chunks);
        expectBlocked(run, 'friend 4111 1111 1111 1111 end', 'chunked');
        expect(textOf(run.out)).toMatch(/^(f(r(i(e(n(d( )?)?)?)?)?)?)?$/);
      }),
      { numRuns: 300 },
    );
  });

  it('blocks every case of the committed PAN evasion corpus, split at random into deltas', () => {
    const cases = JSON.parse(readFileSync(PANS_FILE, 'utf8')) as PanCase[];
    const rnd = prng(0xb10c);
    let runs = 0;
    for (const c of cases) {
      for (let k = 0; k < 3; k++) {
        const parts = k === 0 ? [c.input] : randomPieces(c.input, rnd);
        const chunks = eventChunks(textStream(parts));
        const run = runBlock(chunks);
        expectBlocked(run, c.input, `${c.id} ${c.evasion}/${c.context} ${JSON.stringify(parts)}`);
        // Up to the event that stops it, block emits exactly what mask would.
        expect(runSse(chunks).out.startsWith(run.out), c.id).toBe(true);
        runs++;
      }
    }
    expect(runs).toBeGreaterThan(3000);
  });

  it('lets a near-miss (Luhn-invalid) number through, held only until it can no longer become a PAN', () => {
    expect(luhnValid(NEAR)).toBe(false);
    const chunks = eventChunks(textStream(['ref ', NEAR, ' ok']));
    const run = runBlock(chunks);
    expect(run.hits).toEqual([]);
    expect(run.blocked).toBe(false);
    // 'ref ' at once; the 16 digits held (a 17–19 digit PAN could still start with them); released
    // with ' ok', which ends the run.
    expect(run.perPush.slice(3, 6).map(textOf)).toEqual(['ref ', '', `${NEAR} ok`]);
    expect(textOf(run.out)).toBe(`ref ${NEAR} ok`);
    expect(eventTypes(run.out)).toContain('message_stop');
    // Byte for byte what mask mode sends.
    expect(run.out).toBe(runSse(chunks).out);
  });

  it('lets a near-miss at the end of a block through with content_block_stop, as mask mode does', () => {
    const chunks = eventChunks(textStream(['ref ', NEAR]));
    const run = runBlock(chunks);
    expect(run.hits).toEqual([]);
    expect(textOf(run.out)).toBe(`ref ${NEAR}`);
    expect(run.out).toBe(runSse(chunks).out);
  });

  for (const [name, spell] of SPELLINGS) {
    it(`lets a near-miss spelled "${name}" through whole, however it is split`, () => {
      const full = `ref ${spell(NEAR)} ok`;
      expect(findPans(full)).toEqual([]);
      for (const parts of [[full], ...cuts(full)]) {
        const chunks = eventChunks(textStream(parts));
        const run = runBlock(chunks);
        expect(run.hits, JSON.stringify(parts)).toEqual([]);
        expect(textOf(run.out), JSON.stringify(parts)).toBe(full);
        expect(run.out, JSON.stringify(parts)).toBe(runSse(chunks).out);
      }
    });
  }

  it('sends text without card numbers exactly as mask mode does (non-card corpus, random deltas and chunking)', () => {
    const lines = readFileSync(NONCARD_FILE, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as NonCardLine);
    const rnd = prng(0x5afe);
    let runs = 0;
    for (let i = 0; i < lines.length; i += 10) {
      const t = lines[i]!.t;
      if (findPans(t).length > 0) continue; // the corpus's few false positives are blocked, as they should be
      const chunks = eventChunks(textStream(randomPieces(t, rnd)));
      const run = runBlock(chunks);
      expect(run.hits).toEqual([]);
      expect(run.out).toBe(runSse(chunks).out);
      expect(textOf(run.out)).toBe(t);
      runs++;
    }
    expect(runs).toBeGreaterThan(900);
  });

  it('never sends a PAN streamed in tool-use input: in a string, as a bare number, or as \\u escapes', () => {
    const escaped = [...VISA].map((d) => `\\u003${d}`).join('');
    const cases: string[][] = [
      ['{"card": "41111111', '11111111", "amo', 'unt": 12}'],
      ['{"card": "', VISA, ' and more text"}'],
      ['{"pan": 41111111', '11111111}'],
      ['{"pan": ', VISA, ', "x": 1}'],
      [`{"c": "${escaped.slice(0, 30)}`, `${escaped.slice(30)}"}`],
    ];
    for (const jsonDeltas of cases) {
      const stream = sse([
        { type: 'content_block_start', index: 0, content_block: { type: 'tool_use', id: 'toolu_1', name: 'charge', input: {} } },
        ...jsonDeltas.map((p) => ({ type: 'content_block_delta', index: 0, delta: { type: 'input_json_delta', partial_json: p } })),
        { type: 'content_block_stop', index: 0 },
        { type: 'message_stop' },
      ]);
      const run = runBlock(eventChunks(stream));
      expect(leaks(run.out, VISA), JSON.stringify(jsonDeltas)).toBe(false);
      expect(run.hits.map((h) => h.location)).toEqual(['content[0].input']);
      expect(run.blocked).toBe(true);
      expect(eventTypes(run.out)).not.toContain('content_block_stop');
    }
  });

  it('reports a PAN in a tool-input string with the fragment that completes it, not when the string closes', () => {
    const hits: LocatedHit[] = [];
    const m = new SseMasker({ format: 'bin6-last4', action: 'block', onHit: (h) => hits.push(h) });
    m.push(enc(sse([{ type: 'content_block_start', index: 0, content_block: { type: 'tool_use', id: 't', name: 'n', input: {} } }])));
    const out = m.push(enc(sse([{ type: 'content_block_delta', index: 0, delta: { type: 'input_json_delta', partial_json: `{"note": "card ${VISA} was` } }])));
    expect(hits).toHaveLength(1);
    expect(out).toBe('');
  });

  it('never sends a PAN in a thinking block, a content_block_start or a whole (citations) delta', () => {
    const streams = [
      sse([
        { type: 'content_block_start', index: 0, content_block: { type: 'thinking', thinking: '', signature: '' } },
        { type: 'content_block_delta', index: 0, delta: { type: 'thinking_delta', thinking: 'The card is 4111111' } },
        { type: 'content_block_delta', index: 0, delta: { type: 'thinking_delta', thinking: '111111111.' } },
        { type: 'content_block_stop', index: 0 },
      ]),
      sse([{ type: 'content_block_start', index: 0, content_block: { type: 'text', text: `card ${VISA}` } }, { type: 'content_block_stop', index: 0 }]),
      sse([
        { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
        { type: 'content_block_delta', index: 0, delta: { type: 'citations_delta', citation: { type: 'char_location', cited_text: `card ${VISA}`, document_index: 0, start_char_index: 0, end_char_index: 21 } } },
        { type: 'content_block_stop', index: 0 },
      ]),
    ];
    for (const s of streams) {
      const run = runBlock(eventChunks(s));
      expect(leaks(run.out, VISA), s).toBe(false);
      expect(run.hits).toHaveLength(1);
      expect(run.blocked).toBe(true);
      expect(eventTypes(run.out)).not.toContain('content_block_stop');
    }
  });

  it('a stream cut after a PAN (no content_block_stop): end() reports the hit and returns nothing', () => {
    const hits: LocatedHit[] = [];
    const m = new SseMasker({ format: 'bin6-last4', action: 'block', onHit: (h) => hits.push(h) });
    const cut = textStream(['friend ', VISA]).split('event: content_block_stop')[0]!;
    const out = m.push(enc(cut));
    expect(hits).toEqual([]);
    expect(textOf(out)).toBe('friend ');
    expect(m.end()).toBe('');
    expect(hits).toHaveLength(1);
    expect(m.blocked).toBe(true);
  });

  it('without an action, rewrite: false fails closed: it behaves as block', () => {
    const chunks = eventChunks(textStream(['friend ', VISA, ' end']));
    const legacy = runBlock(chunks, { rewrite: false });
    expect(legacy.out).toBe(runBlock(chunks).out);
    expect(leaks(legacy.out, VISA)).toBe(false);
    expect(legacy.blocked).toBe(true);
  });
});

describe('SseMasker, action allow', () => {
  it('forwards PANs as received, split or whole, and reports every one of them', () => {
    const MC = '5555555555554444';
    const stream = textStream(['friend ', VISA, ' and 5555 5555', ' 5555 4444', ' end']);
    const run = runBlock(eventChunks(stream), { action: 'allow' });
    expect(run.out).toBe(stream);
    expect(run.hits.map((h) => h.hit.fingerprint)).toEqual([VISA, MC]);
    expect(run.blocked).toBe(false);
    // Each delta goes out with the push that brings it: nothing is held.
    expect(run.perPush.slice(3, 8).map(textOf)).toEqual(['friend ', VISA, ' and 5555 5555', ' 5555 4444', ' end']);
  });

  it('reports a PAN that ends the block, found when content_block_stop is seen', () => {
    const run = runBlock(eventChunks(textStream(['card ', VISA])), { action: 'allow' });
    expect(run.hits).toHaveLength(1);
    expect(textOf(run.out)).toBe(`card ${VISA}`);
  });
});

describe('SseMasker, a content event whose JSON does not parse', () => {
  // Forwarded as it came (the SDK reports it), but never with a card number in it.
  const broken = `event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"card ${VISA}"\n\n`;
  const enc = (s: string) => new TextEncoder().encode(s);

  it('mask: the number is masked in the raw text', () => {
    const run = runSse([enc(broken)], { action: 'mask' });
    expect(run.out).not.toContain(VISA);
    expect(run.out).toContain('411111******1111');
    expect(run.hits.map((h) => h.location)).toEqual(['event']);
  });

  it('block: the event is not sent and the stream stops', () => {
    const run = runSse([enc(broken), enc('event: ping\ndata: {"type":"ping"}\n\n')], { action: 'block' });
    expect(run.out).toBe('');
    expect(run.hits).toHaveLength(1);
  });

  it('allow: forwarded as is, and the hit is reported', () => {
    const run = runSse([enc(broken)], { action: 'allow' });
    expect(run.out).toBe(broken);
    expect(run.hits).toHaveLength(1);
  });
});
