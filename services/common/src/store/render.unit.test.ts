import { describe, expect, it } from 'vitest';
import type { ResultColumn, Row } from './port';
import { csvField, render, renderCsv, renderJson, renderTable } from './render';

const columns: ResultColumn[] = [
  { name: 'time', type: "DateTime64(6, 'UTC')" },
  { name: 'who', type: 'String' },
  { name: 'n', type: 'UInt64' },
  { name: 'tags', type: 'Array(String)' },
];
const rows: Row[] = [
  ['2026-01-01 00:00:00.000000', 'plain', '1', ['a', 'b']],
  ['2026-01-01 00:00:01.000000', 'has, comma', '2', []],
  ['2026-01-01 00:00:02.000000', 'say "hi"', null, null],
  ['2026-01-01 00:00:03.000000', 'two\nlines', '4', ['x"y']],
  ['2026-01-01 00:00:04.000000', '=HYPERLINK("http://evil")', '5', []],
  ['2026-01-01 00:00:05.000000', ' padded', '6', []],
];

/** A small RFC 4180 reader, to check that what we write reads back to the same cells. */
function parseCsv(text: string): string[][] {
  const out: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\r' && text[i + 1] === '\n') {
      row.push(field);
      out.push(row);
      row = [];
      field = '';
      i++;
    } else field += c;
  }
  return out;
}

describe('renderCsv', () => {
  it('writes RFC 4180: header, CRLF, quotes around commas, quotes, newlines and edge spaces, doubled inner quotes', () => {
    const csv = renderCsv({ columns, rows });
    expect(csv.split('\r\n')[0]).toBe('time,who,n,tags');
    expect(csv).toContain('"has, comma"');
    expect(csv).toContain('"say ""hi"""');
    expect(csv).toContain('"two\nlines"');
    expect(csv).toContain('" padded"');
    expect(csv.endsWith('\r\n')).toBe(true);
    const back = parseCsv(csv);
    expect(back).toHaveLength(rows.length + 1);
    expect(back[2]?.[1]).toBe('has, comma');
    expect(back[3]?.[1]).toBe('say "hi"');
    expect(back[3]?.[2]).toBe('');
    expect(back[4]?.[1]).toBe('two\nlines');
    expect(back[4]?.[3]).toBe('["x\\"y"]');
    expect(back[1]?.[3]).toBe('["a","b"]');
  });

  it('defuses spreadsheet formulas in text cells unless told not to', () => {
    expect(parseCsv(renderCsv({ columns, rows }))[5]?.[1]).toBe(`'=HYPERLINK("http://evil")`);
    expect(parseCsv(renderCsv({ columns, rows }, { guardFormulas: false }))[5]?.[1]).toBe('=HYPERLINK("http://evil")');
    expect(csvField('-1', true)).toBe("'-1");
    expect(csvField('@cmd', false)).toBe('@cmd');
  });
});

describe('renderJson', () => {
  it('keys rows by column name and carries query, parameters, truncation and summary', () => {
    const json = JSON.parse(
      renderJson({ columns, rows: rows.slice(0, 1), truncated: true, queryId: 'pci.10.2.2', requirement: '10.2.2', title: 't', parameters: { from: 'x' }, summary: { missing: 0 } }),
    ) as Record<string, unknown>;
    expect(json).toEqual({
      query: 'pci.10.2.2',
      requirement: '10.2.2',
      title: 't',
      parameters: { from: 'x' },
      columns,
      rows: [{ time: '2026-01-01 00:00:00.000000', who: 'plain', n: '1', tags: ['a', 'b'] }],
      truncated: true,
      summary: { missing: 0 },
    });
  });
});

describe('renderTable', () => {
  it('aligns columns, keeps each row on one line, cuts long cells and reports the count', () => {
    const text = renderTable({ columns, rows, summary: { missing: 0 } }, { maxCellWidth: 12 });
    const lines = text.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^time\s+who\s+n\s+tags$/);
    expect(lines).toHaveLength(2 + rows.length + 1);
    expect(text).toContain('two\\nlines');
    expect(text).toContain('2026-01-01 …');
    expect(lines.at(-1)).toBe('6 rows; missing: 0');
    expect(render({ columns, rows: [] }, 'table')).toContain('0 rows');
  });
});
