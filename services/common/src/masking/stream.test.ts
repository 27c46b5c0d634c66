/**
 * The streaming invariant: for any split of a text into chunks, the concatenated push() outputs plus
 * end() equal maskPans(whole).text and the hits are equal — and only a possible-PAN tail is held.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NONCARD_FILE, PANS_FILE, type NonCardLine, type PanCase } from '../../../../test/fixtures/masking/generate';
import { maskPans, StreamingPanMasker, type PanMaskFormat, type PanScanOptions } from './index';

const panInputs = (JSON.parse(readFileSync(PANS_FILE, 'utf8')) as PanCase[]).map((c) => c.input);
const noncardLines = readFileSync(NONCARD_FILE, 'utf8')
  .split('\n')
  .filter((l) => l.length > 0)
  .map((l) => (JSON.parse(l) as NonCardLine).t);

function stream(
  chunks: readonly string[],
  format: PanMaskFormat,
  opts: PanScanOptions = {},
): { text: string; hits: unknown[]; maxHeld: number } {
  const m = new StreamingPanMasker({ format, ...opts });
  let text = '';
  let maxHeld = 0;
  for (const c of chunks) {
    text += m.push(c);
    maxHeld = Math.max(maxHeld, m.heldBack);
  }
  text += m.end();
  expect(m.heldBack).toBe(0);
  return { text, hits: [...m.hits], maxHeld };
}

/** Cut `text` at the given positions (any UTF-16 index, so surrogate pairs may be split). */
function split(text: string, cuts: readonly number[]): string[] {
  const pts = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
  const out: string[] = [];
  let p = 0;
  for (const c of pts) {
    out.push(text.slice(p, c));
    p = c;
  }
  out.push(text.slice(p));
  return out;
}

// Characters that matter to the scanner, weighted towards digits and separators so that random
// texts are full of runs, gaps at the bound, surrogate pairs, glue letters and near-PANs.
const ATOMS = [
  ...'0123456789'.split(''),
  '4',
  '4111',
  '5555',
  ' ',
  '-',
  '.',
  '\n',
  '\r\n',
  '\u00a0',
  '\u2013',
  '\u200b',
  '\u00ad',
  '\ufeff',
  '+',
  'A',
  'x',
  '_',
  ',',
  '\t',
  '١',
  '４',
  '𝟒',
  '𝟏',
  '😀',
  '\ud835', // lone high surrogate
  '\udfcf', // lone low surrogate
  'DE',
];
const atom = fc.constantFrom(...ATOMS);
const soup = fc.array(atom, { maxLength: 120 }).map((a) => a.join(''));
const fixturePiece = fc.oneof(fc.constantFrom(...panInputs), fc.constantFrom(...noncardLines));
const text = fc
  .array(fc.oneof({ weight: 2, arbitrary: fixturePiece }, { weight: 2, arbitrary: soup }, { weight: 1, arbitrary: fc.string() }), {
    maxLength: 6,
  })
  .map((parts) => parts.join(''));
const cuts = fc.array(fc.nat(), { maxLength: 40 });
const format = fc.constantFrom<PanMaskFormat>('bin6-last4', 'last4');
const hashPan = (d: string): string => `h${d.length}:${d.slice(-2)}`;

describe('StreamingPanMasker: any split equals the one-shot result', () => {
  it('for random texts and random cut points (incl. inside surrogate pairs)', () => {
    fc.assert(
      fc.property(text, cuts, format, (t, c, f) => {
        const whole = maskPans(t, f, { hashPan });
        const s = stream(split(t, c), f, { hashPan });
        expect(s.text).toBe(whole.text);
        expect(s.hits).toEqual(whole.hits);
      }),
      { numRuns: 1500 },
    );
  });

  it('for runs built from PANs in many layouts, glued to numbers and separators', () => {
    // Exercises what random soup rarely reaches: several PANs in one long run, PAN + CVV, lists,
    // cuts inside long runs (the carried state), decimal points and glue next to real PANs.
    const PANS = ['4111111111111111', '5555555555554444', '378282246310005', '36227206271667', '6205500000000000004', '4222222222222'];
    const SEPS = [' ', '-', '.', '\n', '\r\n', '\u00a0', ' - ', '\u200b', ''];
    const pan = fc
      .tuple(fc.constantFrom(...PANS), fc.constantFrom(...SEPS), fc.integer({ min: 1, max: 6 }))
      .map(([p, sep, g]) => (p.match(new RegExp(`.{1,${g}}`, 'g')) ?? []).join(sep));
    const bits = fc.constantFrom(...'0123456789'.split(''), '12', '1234', ' ', '-', '.', '\n', '\u200b', '+', 'A', 'DE', ',', '𝟒', '1.');
    const t = fc.array(fc.oneof(pan, bits), { maxLength: 30 }).map((a) => a.join(''));
    let hits = 0;
    fc.assert(
      fc.property(t, cuts, (tx, c) => {
        const whole = maskPans(tx, 'last4', { hashPan });
        hits += whole.hits.length;
        const s = stream(split(tx, c), 'last4', { hashPan });
        expect(s.text).toBe(whole.text);
        expect(s.hits).toEqual(whole.hits);
      }),
      { numRuns: 3000 },
    );
    expect(hits).toBeGreaterThan(100); // the generator does produce PANs
  });

  it('for one-character chunks', () => {
    fc.assert(
      fc.property(text, format, (t, f) => {
        const whole = maskPans(t, f);
        const s = stream(t.split(''), f);
        expect(s.text).toBe(whole.text);
        expect(s.hits).toEqual(whole.hits);
      }),
      { numRuns: 400 },
    );
  });

  it('for every PAN fixture split at every single position', () => {
    for (const t of panInputs.slice(0, 400)) {
      const whole = maskPans(t, 'bin6-last4');
      for (let i = 0; i <= t.length; i++) {
        const s = stream([t.slice(0, i), t.slice(i)], 'bin6-last4');
        if (s.text !== whole.text) expect({ t, i, got: s.text }).toEqual({ t, i, got: whole.text });
      }
    }
  });

  it('for long runs cut into ~40-character deltas, holding back only a bounded tail', () => {
    const long = [
      `${'1 '.repeat(5000)}4111 1111 1111 1111 ${'2 '.repeat(100)}`,
      `${'9'.repeat(20000)} 4111111111111111 ${'8'.repeat(1000)}`,
      `${'1234 '.repeat(3000)}\n4111 1111 1111 1111\n`,
      `${'4111 1111 1111 1111 '.repeat(500)}`,
      `${'4\u200b'.repeat(10000)}`,
      `DE89 ${'3704 '.repeat(2000)}`,
    ];
    for (const t of long) {
      const chunks: string[] = [];
      for (let i = 0; i < t.length; i += 40) chunks.push(t.slice(i, i + 40));
      const whole = maskPans(t, 'last4');
      const s = stream(chunks, 'last4');
      expect(s.text).toBe(whole.text);
      expect(s.hits).toEqual(whole.hits);
      // About one PAN's worth of groups plus the gap and a chunk: never the whole run.
      expect(s.maxHeld).toBeLessThan(200);
    }
  });
});

describe('StreamingPanMasker: what is held back', () => {
  it('holds nothing after a chunk that ends in a letter', () => {
    const m = new StreamingPanMasker({ format: 'last4' });
    expect(m.push('card 4111 1111 1111 1111 ok')).toBe('card ************1111 ok');
    expect(m.heldBack).toBe(0);
    expect(m.push('order 12345 shipped')).toBe('order 12345 shipped');
    expect(m.heldBack).toBe(0);
  });

  it('emits text before a digit run at once and holds only the run', () => {
    const m = new StreamingPanMasker({ format: 'bin6-last4' });
    expect(m.push('Your card is 4111 11')).toBe('Your card is ');
    expect(m.heldBack).toBe('4111 11'.length);
    expect(m.push('11 1111 ')).toBe('');
    expect(m.heldBack).toBe('4111 1111 1111 '.length);
    expect(m.push('1111 and more')).toBe('411111******1111 and more');
    expect(m.heldBack).toBe(0);
    expect(m.end()).toBe('');
  });

  it('holds a trailing gap (more digits may follow) and releases it when the run ends', () => {
    const m = new StreamingPanMasker({ format: 'last4' });
    expect(m.push('call 555 ')).toBe('call ');
    expect(m.heldBack).toBe(4);
    expect(m.push('x')).toBe('555 x');
    expect(m.heldBack).toBe(0);
  });

  it('holds a trailing lone high surrogate (one unit) until its pair arrives', () => {
    const m = new StreamingPanMasker({ format: 'last4' });
    const bold4 = '𝟒';
    expect(m.push(`hi ${bold4[0]}`)).toBe('hi ');
    expect(m.heldBack).toBe(1);
    expect(m.push(`${bold4[1]}111111111111111 done`)).toBe('************1111 done');
  });

  it('flushes the held tail at end(), masked if it completes a PAN', () => {
    const a = new StreamingPanMasker({ format: 'bin6-last4' });
    expect(a.push('pan 4111 1111 1111 1111')).toBe('pan ');
    expect(a.end()).toBe('411111******1111');
    expect(a.hits).toHaveLength(1);
    const b = new StreamingPanMasker({ format: 'bin6-last4' });
    expect(b.push('qty 12')).toBe('qty ');
    expect(b.end()).toBe('12');
    expect(b.hits).toHaveLength(0);
  });

  it('reports hit offsets in the concatenated stream', () => {
    const m = new StreamingPanMasker({ format: 'last4' });
    m.push('0123456789 abc ');
    m.push('5555 5555 ');
    m.push('5555 4444!');
    m.end();
    expect(m.hits.map((h) => [h.start, h.end])).toEqual([[15, 34]]);
  });

  it('refuses use after end() and bad formats with stable codes', () => {
    const m = new StreamingPanMasker({ format: 'last4' });
    m.end();
    expect(() => m.push('x')).toThrow(expect.objectContaining({ code: 'MASK_STREAM_ENDED' }));
    expect(() => m.end()).toThrow(expect.objectContaining({ code: 'MASK_STREAM_ENDED' }));
    expect(() => new StreamingPanMasker({ format: 'nope' as never })).toThrow(
      expect.objectContaining({ code: 'MASK_INVALID_FORMAT' }),
    );
  });

  it('treats empty chunks as no-ops', () => {
    const m = new StreamingPanMasker({ format: 'last4' });
    expect(m.push('')).toBe('');
    expect(m.push('4111111111111111')).toBe('');
    expect(m.push('')).toBe('');
    expect(m.end()).toBe('************1111');
  });
});
