import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { findPans } from '../masking';
import { fixtureId } from './fixtures';
import { containsPan, findPanCandidates, mayHoldPanFast, mayHoldPanSlow } from './pan-guard';
import { breakLuhn, groupDigits, luhnNumber } from './testing';

const visa16 = luhnNumber('4', 16, '0');
const mc16 = luhnNumber('55', 16, '5');
const amex15 = luhnNumber('37', 15, '2');

describe('containsPan', () => {
  it.each([
    ['a contiguous Visa number in a sentence', `card ${visa16} on file`],
    ['an Amex number before a full stop', `amex ${amex15}.`],
    ['grouped 4-4-4-4 with spaces', `pay with ${groupDigits(mc16, [4, 4, 4, 4])} now`],
    ['grouped 4-4-4-4 with hyphens', groupDigits(visa16, [4, 4, 4, 4], '-')],
    ['grouped 4-6-5', `(${groupDigits(amex15, [4, 6, 5])})`],
    ['a number in a JSON string', JSON.stringify({ card: visa16 })],
    ['a number deep in long content', `${'lorem ipsum 2025-11-25 '.repeat(100)}${visa16} ${'dolor '.repeat(100)}`],
  ])('finds %s', (_name, text) => {
    expect(containsPan(text)).toBe(true);
  });

  it.each([
    ['a Luhn-invalid number', `card ${breakLuhn(visa16)}`],
    ['BIN and last four', 'BIN 411111, last four 1111'],
    ['a number glued to letters', `acct${visa16}x`],
    ['12 digits', luhnNumber('4', 12)],
    ['a UUID', fixtureId('anything')],
    ['a digit run inside a hex string', `sha256:3f1c9a${visa16}ab`],
    ['a microsecond timestamp as text', '1764061200000000'],
  ])('ignores %s', (_name, text) => {
    expect(containsPan(text)).toBe(false);
  });

  it('agrees with the masking engine, so it never refuses content the engine chose to leave', () => {
    // Contexts the engine deliberately does not mask (see masking/scanner.ts); a stricter guard
    // would fail these requests closed.
    const leftAlone = [`qty 2 ${groupDigits(visa16, [4, 4, 4, 4])}`, `txn_${visa16}`, `+${luhnNumber('4', 14, '0')}`, `0.${visa16}`, '80 443 3620 8080 8443 9280'];
    for (const text of leftAlone) expect(containsPan(text)).toBe(findPans(text).length > 0);
    // Digits (ASCII, fullwidth, Arabic-Indic), separators, invisibles and word characters.
    const chars = fc.constantFrom(...'0123456789 -+._abcXYZ:\n\u00a0\u200b\u00ad\uff14\u0664'.split(''));
    fc.assert(
      fc.property(fc.array(chars, { maxLength: 60 }), fc.constantFrom('', visa16, groupDigits(mc16, [4, 4, 4, 4])), fc.array(chars, { maxLength: 20 }), (before, pan, after) => {
        const text = `${before.join('')}${pan}${after.join('')}`;
        expect(containsPan(text)).toBe(findPans(text).length > 0);
      }),
      { numRuns: 1_000 },
    );
  });

  it('finds a real card number set off by spaces or punctuation in any letter-only text', () => {
    const pan = fc.constantFrom(visa16, mc16, amex15, luhnNumber('6011', 16, '3'), luhnNumber('4', 13, '2'));
    const words = fc.stringMatching(/^[a-z ]{0,40}$/);
    const left = fc.constantFrom(' ', '\n', '"', '(', ': ');
    const right = fc.constantFrom(' ', '\n', '"', ')', ', ');
    fc.assert(
      fc.property(words, left, pan, right, words, (a, l, digits, r, b) => {
        expect(containsPan(`${a}${l}${digits}${r}${b}`)).toBe(true);
      }),
    );
  });
});

describe('mayHoldPan (the prefilter)', () => {
  it('the fast form (loop for short strings, regular expression for long ones) equals the reference loop at every length', () => {
    const chars = fc.constantFrom(...'0123456789 -+._abcXYZ:/\n\u00a0\u200b\u00ad\uff14\u0664é'.split(''));
    fc.assert(
      fc.property(fc.array(chars, { minLength: 0, maxLength: 120 }), (cs) => {
        const text = cs.join('');
        expect(mayHoldPanFast(text)).toBe(mayHoldPanSlow(text));
      }),
      { numRuns: 5_000 },
    );
  });

  it('answers a repeated long text by value, clean or not', () => {
    const clean = 'lorem ipsum 2025-11-25 dolor sit amet '.repeat(10);
    expect(containsPan(clean)).toBe(false);
    expect(containsPan(clean)).toBe(false);
    // Same characters, another string object: still clean.
    expect(containsPan(clean.slice(0, 10) + clean.slice(10))).toBe(false);
    const dirty = `${clean}${visa16}`;
    expect(containsPan(dirty)).toBe(true);
    expect(containsPan(dirty)).toBe(true);
    expect(containsPan(clean)).toBe(false);
  });
});

describe('findPanCandidates', () => {
  it('names the paths, never the digits, and skips binary fields', () => {
    const value = {
      payload: { content: `x ${visa16}`, ok: 'fine', digest: Buffer.from(visa16), list: ['a', visa16] },
      parameters: { [visa16]: 'key holds it' },
    };
    const found = findPanCandidates(value);
    expect(found).toEqual(['$.payload.content', '$.payload.list[1]', '$.parameters{key}']);
    expect(found.join('')).not.toContain(visa16);
  });
});
