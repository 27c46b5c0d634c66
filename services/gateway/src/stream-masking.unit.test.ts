import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { JsonFragmentMasker } from './json-fragment-masker';
import { SseMasker } from './sse-masker';
import type { LocatedHit } from './mask-json';

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

function runSse(bytes: Uint8Array[], rewrite = true): { out: string; hits: LocatedHit[] } {
  const hits: LocatedHit[] = [];
  const m = new SseMasker({ format: 'bin6-last4', rewrite, onHit: (h) => hits.push(h) });
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

  it('with rewrite off, reports hits and forwards the bytes unchanged', () => {
    const input = textStream([`x ${VISA} y`]);
    const { out, hits } = runSse([new TextEncoder().encode(input)], false);
    expect(out).toBe(input);
    expect(hits).toHaveLength(1);
  });

  it('accepts CRLF-framed events', () => {
    const input = textStream([`x ${VISA}`]).replaceAll('\n', '\r\n');
    expect(textOf(runSse([new TextEncoder().encode(input)]).out.replaceAll('\r\n', '\n'))).toBe(`x ${MASKED}`);
  });
});
