import { describe, expect, it } from 'vitest';
import { AttestError } from '../errors';
import { findPans, luhnValid, maskedForm, maskPans, StreamingPanMasker, type PanHit } from './index';

// Public test card numbers (Luhn-valid; allowed in test files only).
const VISA = '4111111111111111';
const MC = '5555555555554444';
const AMEX = '378282246310005';

const m = (t: string): string => maskPans(t, 'bin6-last4').text;
const brands = (t: string): string[] => findPans(t).map((h) => `${h.brand}:${h.digitCount}`);

describe('luhnValid', () => {
  it('accepts valid and rejects invalid numbers', () => {
    expect(luhnValid(VISA)).toBe(true);
    expect(luhnValid(AMEX)).toBe(true);
    expect(luhnValid('4111111111111112')).toBe(false);
    expect(luhnValid('0')).toBe(true);
    expect(luhnValid('18')).toBe(true);
    expect(luhnValid('19')).toBe(false);
  });
  it('rejects empty strings and non-ASCII-digit input instead of guessing', () => {
    expect(luhnValid('')).toBe(false);
    expect(luhnValid('4111 1111 1111 1111')).toBe(false);
    expect(luhnValid('４１１１１１１１１１１１１１１１')).toBe(false);
  });
});

describe('maskedForm', () => {
  it('keeps the digit count in both formats', () => {
    expect(maskedForm('411111', '1111', 16, 'bin6-last4')).toBe('411111******1111');
    expect(maskedForm('378282', '0005', 15, 'bin6-last4')).toBe('378282*****0005');
    expect(maskedForm('422222', '2222', 13, 'bin6-last4')).toBe('422222***2222');
    expect(maskedForm('620550', '0004', 19, 'bin6-last4')).toBe('620550*********0004');
    expect(maskedForm('411111', '1111', 16, 'last4')).toBe('************1111');
    expect(maskedForm('378282', '0005', 15, 'last4')).toBe('***********0005');
  });
  it('refuses bad arguments with a stable code', () => {
    expect(() => maskedForm('41111', '1111', 16, 'last4')).toThrow(AttestError);
    expect(() => maskedForm('411111', '1111', 12, 'last4')).toThrow(/13–19/);
    expect(() => maskedForm('411111', '1111', 16, 'full' as never)).toThrow(
      expect.objectContaining({ code: 'MASK_INVALID_FORMAT' }),
    );
  });
});

describe('findPans / maskPans basics', () => {
  it('masks a plain PAN and reports BIN, last four, count, brand and offsets', () => {
    const text = `pay with ${VISA} now`;
    const r = maskPans(text, 'bin6-last4');
    expect(r.text).toBe('pay with 411111******1111 now');
    expect(r.hits).toEqual([{ start: 9, end: 25, bin: '411111', last4: '1111', digitCount: 16, brand: 'visa' }]);
    expect(maskPans(text, 'last4').text).toBe('pay with ************1111 now');
  });

  it('returns the input unchanged (same string) when there is nothing to mask', () => {
    const text = 'no cards here, order 12345';
    expect(maskPans(text, 'last4').text).toBe(text);
    expect(findPans('')).toEqual([]);
  });

  it('replaces the whole span, separators and invisible characters included', () => {
    expect(m('a 4111-1111-1111-1111 b')).toBe('a 411111******1111 b');
    expect(m('a 4111\u200b1111 1111\u00ad1111 b')).toBe('a 411111******1111 b');
  });

  it('names brands from the IIN table', () => {
    expect(brands(`${VISA} ${MC} ${AMEX}`)).toEqual(['visa:16', 'mastercard:16', 'amex:15']);
    expect(brands('6011111111111117')).toEqual(['discover:16']);
    expect(brands('3530111333300000')).toEqual(['jcb:16']);
    expect(brands('36227206271667')).toEqual(['diners:14']);
    expect(brands('6200000000000005')).toEqual(['unionpay:16']);
    expect(brands('6759649826438453')).toEqual(['maestro:16']);
    expect(brands('2223003122003222')).toEqual(['mastercard:16']);
  });

  it('finds several PANs in one text, in order', () => {
    const hits = findPans(`${VISA}, ${MC}; ${AMEX}`);
    expect(hits.map((h) => h.last4)).toEqual(['1111', '4444', '0005']);
    expect(hits.map((h) => h.start)).toEqual([0, 18, 36]);
  });
});

describe('evasions', () => {
  const cases: [string, string][] = [
    ['spaces', '4111 1111 1111 1111'],
    ['dashes', '4111-1111-1111-1111'],
    ['en dash', '4111\u20131111\u20131111\u20131111'],
    ['minus sign', '4111\u22121111\u22121111\u22121111'],
    ['dots', '4111.1111.1111.1111'],
    ['NBSP', '4111\u00a01111\u00a01111\u00a01111'],
    ['narrow NBSP', '4111\u202f1111\u202f1111\u202f1111'],
    ['spaced dash', '4111 - 1111 - 1111 - 1111'],
    ['LF', '4111\n1111\n1111\n1111'],
    ['CRLF', '4111\r\n1111\r\n1111\r\n1111'],
    ['CRLF + indent', '4111\r\n  1111\r\n  1111\r\n  1111'],
    ['line break anywhere', '4111111\n111111111'],
    ['ZWSP every digit', [...VISA].join('\u200b')],
    ['ZWNJ', [...VISA].join('\u200c')],
    ['ZWJ', [...VISA].join('\u200d')],
    ['word joiner', [...VISA].join('\u2060')],
    ['BOM', [...VISA].join('\ufeff')],
    ['soft hyphen', [...VISA].join('\u00ad')],
    ['two invisibles', [...VISA].join('\u200b\u200d')],
    ['space every digit', [...VISA].join(' ')],
    ['pairs', '41 11 11 11 11 11 11 11'],
    ['fullwidth', '４１１１１１１１１１１１１１１１'],
    ['Arabic-Indic', '٤١١١١١١١١١١١١١١١'],
    ['Persian', '۴۱۱۱۱۱۱۱۱۱۱۱۱۱۱۱'],
    ['Devanagari', '४१११११११११११११११'],
    ['math bold (astral)', '𝟒𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏'],
    ['mixed scripts', '4١۱१ １𝟏11 1111 1111'],
  ];
  for (const [name, text] of cases) {
    it(`sees through ${name}`, () => {
      const r = maskPans(`card: ${text}.`, 'bin6-last4');
      expect(r.text).toBe('card: 411111******1111.');
      expect(r.hits).toHaveLength(1);
      expect(r.hits[0]).toMatchObject({ bin: '411111', last4: '1111', digitCount: 16, brand: 'visa' });
    });
  }

  it('reports span offsets in UTF-16 units, covering astral digits whole', () => {
    const text = `x ${'𝟒𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏'} y`;
    const [hit] = findPans(text);
    expect(hit).toMatchObject({ start: 2, end: 34 });
  });

  it('scans CJK text where numbers touch the words', () => {
    expect(m(`卡号${VISA}。`)).toBe('卡号411111******1111。');
  });
});

describe('separator gap bound', () => {
  it('joins digits across at most 4 separator units and one line break', () => {
    expect(m('4111 -  1111 1111 1111')).toBe('411111******1111'); // 4-unit gap
    expect(m('4111 -   1111 1111 1111')).toBe('4111 -   1111 1111 1111'); // 5 units: two numbers
    expect(m('4111111\n\n111111111')).toBe('4111111\n\n111111111'); // blank line = paragraph break
    expect(m('4111111\t111111111')).toBe('4111111\t111111111'); // tab separates columns
  });
});

describe('long runs and grouping', () => {
  it('never flags or splits a contiguous run of more than 19 digits', () => {
    expect(findPans(`9${VISA}1234`)).toEqual([]);
    expect(findPans('12345678901234567890123')).toEqual([]);
    // …but a PAN set off by a separator next to one is still found.
    expect(brands(`12345678901234567890123 ${VISA}`)).toEqual(['visa:16']);
  });

  it('finds a PAN followed by a CVV or expiry in the same run, and masks only the PAN', () => {
    expect(m('4111 1111 1111 1111 123 thanks')).toBe('411111******1111 123 thanks');
    expect(m('4111 1111 1111 1111 1227 123')).toBe('411111******1111 1227 123');
  });

  it('finds PANs in numbered lists, one per line and back to back', () => {
    expect(m(`1. 4111 1111 1111 1111\n2. 5555 5555 5555 4444`)).toBe('1. 411111******1111\n2. 555555******4444');
    expect(m(`${VISA}\n${MC}\n${AMEX}`)).toBe('411111******1111\n555555******4444\n378282*****0005');
    expect(m('4111 1111 1111 1111 5555 5555 5555 4444')).toBe('411111******1111 555555******4444');
  });

  it('does not cut card-shaped windows out of longer uniform blocks', () => {
    // USPS tracking numbers printed in fours contain 4-4-4-4 windows that can pass Luhn + IIN.
    const usps = '9400 4111 1111 1111 1111 11';
    expect(findPans(usps)).toEqual([]);
    expect(findPans('ports 80 443 4111 1111 1111 1111')).toEqual([]);
  });

  it('accepts irregular grouping only for whole runs of regular shape', () => {
    expect(m('41111 11111 11111 1')).toBe('411111******1111'); // equal groups, shorter last
    expect(m('411 1111 11111 1111')).toBe('411 1111 11111 1111'); // irregular: other numbers' format
  });

  it('decides runs of thousands of groups piecewise with the same result', () => {
    // More groups than the scanner parses per step (1024): the run is cut and carried internally.
    const ones = '1 '.repeat(3000);
    const twos = '2 '.repeat(2500);
    const text = `${ones}\n4111 1111 1111 1111\n${twos}5555555555554444 ${'3 '.repeat(1500)}end`;
    const expected = `${ones}\n411111******1111\n${twos}555555******4444 ${'3 '.repeat(1500)}end`;
    expect(m(text)).toBe(expected);
    expect(findPans(text).map((h) => h.last4)).toEqual(['1111', '4444']);
  });

  it('refuses all-digit UUIDs and two phone numbers joined into one run', () => {
    expect(findPans('41111111-1111-1111-1111-111111111111')).toEqual([]);
    expect(findPans('411-111-1111 111-111-1111')).toEqual([]);
  });
});

describe('contextual refusals', () => {
  it('treats digits glued to ASCII letters or _ as identifiers', () => {
    expect(findPans(`INV${VISA}`)).toEqual([]);
    expect(findPans(`${VISA}abc`)).toEqual([]);
    expect(findPans(`txn_${VISA}`)).toEqual([]);
    expect(findPans(`0x${VISA}`)).toEqual([]);
    // A separator in between is enough to make it a PAN again.
    expect(brands(`INV-${VISA}`)).toEqual(['visa:16']);
  });

  it('treats +digits of E.164 length as a phone number, longer ones still as PANs', () => {
    expect(findPans('+4111111111113')).toEqual([]); // 13 digits after '+'
    expect(brands(`+${VISA}`)).toEqual(['visa:16']);
  });

  it('skips IBANs and creditor references', () => {
    expect(findPans('DE89 4111 1111 1111 1111 00')).toEqual([]);
    expect(findPans('RF18 4111 1111 1111 1111')).toEqual([]);
  });

  it('treats a lone dot as a decimal point', () => {
    expect(findPans(`0.${VISA}`)).toEqual([]);
    expect(findPans(`${VISA}.25`)).toEqual([]);
    expect(findPans('4.111111111111111')).toEqual([]);
    expect(brands(`total ${VISA}. Thanks`)).toEqual(['visa:16']); // sentence end is not a decimal point
  });

  it('refuses 13-digit numbers that are valid EAN-13 barcodes', () => {
    expect(findPans('4006381333924')).toEqual([]); // a GS1 Germany EAN that is also Luhn-valid
    expect(luhnValid('4006381333924')).toBe(true);
    expect(brands('4222222222222')).toEqual(['visa:13']);
  });

  it('refuses numbers without a card-network prefix or with the wrong length for it', () => {
    expect(luhnValid('1234567812345670')).toBe(true);
    expect(findPans('1234567812345670')).toEqual([]); // 1: no network
    expect(luhnValid('41111111111111113')).toBe(true);
    expect(findPans('41111111111111113')).toEqual([]); // Visa has no 17-digit cards
    expect(findPans('1700000000123456')).toEqual([]); // epoch µs
  });
});

describe('raw digits never leave the engine', () => {
  it('returns only BIN, last four and the caller’s fingerprint', () => {
    const seen: string[] = [];
    const [hit] = findPans(`card ${VISA}`, {
      hashPan: (d) => {
        seen.push(d);
        return `fp:${d.length}`;
      },
    });
    expect(seen).toEqual([VISA]);
    expect(hit).toEqual({ start: 5, end: 21, bin: '411111', last4: '1111', digitCount: 16, brand: 'visa', fingerprint: 'fp:16' });
    expect(JSON.stringify(hit)).not.toContain(VISA);
  });

  it('hashes the normalised ASCII digits whatever the script and separators', () => {
    const seen: string[] = [];
    findPans('٤١١١-١١١١-١١١١-١١١١', { hashPan: (d) => (seen.push(d), 'x') });
    expect(seen).toEqual([VISA]);
  });

  it('wraps a failing hasher without echoing its message (which could contain the PAN)', () => {
    let err: unknown;
    try {
      findPans(`card ${VISA}`, {
        hashPan: (d) => {
          throw new Error(`cannot hash ${d}`);
        },
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AttestError);
    expect((err as AttestError).code).toBe('MASK_HASH_FAILED');
    expect(String((err as Error).message)).not.toContain(VISA);
    expect((err as Error).cause).toBeUndefined();
    expect(JSON.stringify(err)).not.toContain(VISA);
  });

  it('refuses a hasher that does not return a string', () => {
    expect(() => findPans(VISA, { hashPan: () => 42 as unknown as string })).toThrow(
      expect.objectContaining({ code: 'MASK_HASH_FAILED' }),
    );
  });

  it('rejects non-string input with a stable code', () => {
    expect(() => findPans(42 as unknown as string)).toThrow(expect.objectContaining({ code: 'MASK_INVALID_INPUT' }));
  });
});

describe('re-entrancy', () => {
  it('survives a hasher that itself scans text', () => {
    const inner: PanHit[][] = [];
    const hits = findPans(`${VISA} and ${MC} and ${AMEX}`, {
      hashPan: (d) => {
        inner.push(findPans(`nested ${MC} ${VISA}`));
        return d.slice(-2);
      },
    });
    expect(hits.map((h) => [h.last4, h.fingerprint])).toEqual([
      ['1111', '11'],
      ['4444', '44'],
      ['0005', '05'],
    ]);
    expect(inner).toHaveLength(3);
    for (const r of inner) expect(r.map((h) => h.last4)).toEqual(['4444', '1111']);
  });

  it('keeps streaming maskers independent of each other', () => {
    const a = new StreamingPanMasker({ format: 'last4' });
    const b = new StreamingPanMasker({ format: 'bin6-last4' });
    let outA = a.push('card 4111 1111');
    let outB = b.push('card 5555 5555');
    outA += a.push(' 1111 1111 end');
    outB += b.push(' 5555 4444 end');
    outA += a.end();
    outB += b.end();
    expect(outA).toBe('card ************1111 end');
    expect(outB).toBe('card 555555******4444 end');
  });
});
