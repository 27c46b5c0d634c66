import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PCI_10_2_2_REQUIRED_PATHS } from '../events';
import { groupDigits, luhnNumber } from '../events/testing';
import { EVIDENCE_STORE_DOC, withCurrentCatalog } from './docs';
import { brandOf, EVIDENCE_QUERIES, maskDigits, panCandidatesIn, REQUIRED_FIELD_COLUMNS, toMicros } from './evidence-queries';

describe('panCandidatesIn', () => {
  const visa = luhnNumber('411111', 16);

  it('finds Luhn-valid 13-19 digit runs, plain or grouped, and says when one sits where a JSON number would', () => {
    expect(panCandidatesIn(`card ${visa} ok`).map((c) => c.digits)).toEqual([visa]);
    expect(panCandidatesIn(`card ${groupDigits(visa, [4, 4, 4, 4], '-')}`).map((c) => c.digits)).toEqual([visa]);
    expect(panCandidatesIn(`{"t":${visa}}`)).toEqual([{ digits: visa, text: visa, numberLike: true }]);
    expect(panCandidatesIn(`"${visa}"`)[0]?.numberLike).toBe(false);
  });

  it('ignores Luhn failures, ids glued to letters, and plain runs longer than 19 digits', () => {
    const broken = `${visa.slice(0, -1)}${(Number(visa.slice(-1)) + 1) % 10}`;
    expect(panCandidatesIn(`card ${broken}`)).toEqual([]);
    expect(panCandidatesIn(`txn_${visa}`)).toEqual([]);
    expect(panCandidatesIn(`ab${visa}`)).toEqual([]);
    expect(panCandidatesIn(`${visa}ff`)).toEqual([]);
    expect(panCandidatesIn(`${visa}0000`)).toEqual([]);
  });

  it('finds a card number joined to other digits by separators', () => {
    expect(panCandidatesIn(`v1.3 ${groupDigits(visa, [4, 4, 4, 4])}`).map((c) => c.digits)).toContain(visa);
    expect(panCandidatesIn(`${visa},${visa}`).map((c) => c.digits)).toEqual([visa, visa]);
  });
});

describe('display and parsing helpers', () => {
  it('shows at most BIN and last four', () => {
    const pan = luhnNumber('550000', 16);
    expect(maskDigits(pan)).toBe(`550000******${pan.slice(-4)}`);
    expect(maskDigits(pan)).not.toContain(pan.slice(6, 12));
  });

  it('names the brand from the masking engine issuer table', () => {
    expect(brandOf(luhnNumber('411111', 16))).toBe('visa');
    expect(brandOf(luhnNumber('1767', 16))).toBeNull();
  });

  it('reads times as Date, ISO 8601 (with microseconds) or microseconds', () => {
    expect(toMicros(new Date('2026-01-01T00:00:00Z'), 'from')).toBe(1_767_225_600_000_000);
    expect(toMicros('2026-01-01T00:00:00.123456Z', 'from')).toBe(1_767_225_600_123_456);
    expect(toMicros(1_767_225_600_000_001, 'from')).toBe(1_767_225_600_000_001);
    expect(() => toMicros('yesterday', 'from')).toThrow(/ISO 8601/);
  });
});

describe('the catalog', () => {
  it('covers the requirements the events support', () => {
    const requirements = Object.values(EVIDENCE_QUERIES).flatMap((q) => q.requirement.split(', '));
    for (const r of ['10.2.1.1', '10.2.1.2', '10.2.1.3', '10.2.1.4', '10.2.1.5', '10.2.1.6', '10.2.2', '3.4.1', '10.5.1', '3.5.1.1']) expect(requirements).toContain(r);
  });

  it('maps every PCI DSS 10.2.2 required field of the event contract to a column', () => {
    expect(Object.keys(REQUIRED_FIELD_COLUMNS).sort()).toEqual([...PCI_10_2_2_REQUIRED_PATHS].sort());
  });

  it('is documented in docs/evidence-store.md exactly as the code defines it', () => {
    const doc = readFileSync(EVIDENCE_STORE_DOC, 'utf8');
    expect(withCurrentCatalog(doc), 'regenerate with: node --import tsx services/common/src/store/docs.ts').toBe(doc);
  });
});
