/**
 * Renderers for evidence results: a text table for a terminal, JSON for programs, CSV for
 * spreadsheets. Pure functions over columns + rows.
 */
import type { Cell, ResultColumn, Row } from './port';

export interface Renderable {
  readonly columns: readonly ResultColumn[];
  readonly rows: readonly Row[];
  readonly truncated?: boolean;
  readonly queryId?: string;
  readonly requirement?: string;
  readonly title?: string;
  readonly parameters?: Readonly<Record<string, string>>;
  readonly summary?: Readonly<Record<string, Cell>>;
}

export type RenderFormat = 'table' | 'json' | 'csv';

export function render(result: Renderable, format: RenderFormat): string {
  switch (format) {
    case 'table':
      return renderTable(result);
    case 'json':
      return renderJson(result);
    case 'csv':
      return renderCsv(result);
    default: {
      const never: never = format;
      throw new Error(`unknown format ${String(never)}`);
    }
  }
}

/** A cell as text: arrays and objects as JSON, null as empty. */
export function cellText(cell: Cell | undefined): string {
  if (cell === null || cell === undefined) return '';
  if (typeof cell === 'string') return cell;
  if (typeof cell === 'number' || typeof cell === 'boolean') return String(cell);
  return JSON.stringify(cell);
}

export interface CsvOptions {
  /**
   * Prefix text cells that a spreadsheet would run as a formula (starting with = + - @, tab or CR)
   * with a single quote (OWASP "CSV injection"). Default true: evidence is opened in Excel.
   */
  readonly guardFormulas?: boolean;
  /** Line ending; RFC 4180 says CRLF (the default). */
  readonly newline?: '\r\n' | '\n';
}

/**
 * RFC 4180 CSV with a header row: a field is quoted when it holds a comma, a double quote, CR or
 * LF (or starts or ends with a space), and double quotes inside are doubled.
 */
export function renderCsv(result: Renderable, opts: CsvOptions = {}): string {
  const nl = opts.newline ?? '\r\n';
  const guard = opts.guardFormulas ?? true;
  const lines = [result.columns.map((c) => csvField(c.name, false)).join(',')];
  for (const row of result.rows) {
    lines.push(result.columns.map((_, i) => csvField(cellText(row[i]), guard && typeof row[i] === 'string')).join(','));
  }
  return lines.join(nl) + nl;
}

export function csvField(text: string, guardFormula: boolean): string {
  let t = text;
  if (guardFormula && /^[=+\-@\t\r]/.test(t)) t = `'${t}`;
  return /[",\r\n]|^ | $/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
}

/** JSON with rows as objects keyed by column name, plus what was asked and the summary. */
export function renderJson(result: Renderable): string {
  const rows = result.rows.map((row) => Object.fromEntries(result.columns.map((c, i) => [c.name, row[i] ?? null])));
  return JSON.stringify(
    {
      ...(result.queryId === undefined ? {} : { query: result.queryId }),
      ...(result.requirement === undefined ? {} : { requirement: result.requirement }),
      ...(result.title === undefined ? {} : { title: result.title }),
      ...(result.parameters === undefined ? {} : { parameters: result.parameters }),
      columns: result.columns,
      rows,
      truncated: result.truncated ?? false,
      ...(result.summary === undefined ? {} : { summary: result.summary }),
    },
    null,
    2,
  );
}

export interface TableOptions {
  /** Longer cells are cut with an ellipsis. Default 60. */
  readonly maxCellWidth?: number;
}

/** A plain-text table: header, rule, rows; control characters shown escaped so a row stays one line. */
export function renderTable(result: Renderable, opts: TableOptions = {}): string {
  const max = opts.maxCellWidth ?? 60;
  const fit = (s: string): string => {
    const one = s.replace(/\r/g, '\\r').replace(/\n/g, '\\n').replace(/\t/g, '\\t');
    return one.length > max ? `${one.slice(0, max - 1)}…` : one;
  };
  const header = result.columns.map((c) => fit(c.name));
  const body = result.rows.map((row) => result.columns.map((_, i) => fit(cellText(row[i]))));
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  const out: string[] = [];
  if (result.title !== undefined) out.push(`${result.queryId ?? ''} ${result.title}${result.requirement === undefined ? '' : ` (PCI DSS ${result.requirement})`}`.trim());
  out.push(line(header), widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of body) out.push(line(r));
  const footer = [`${result.rows.length} row${result.rows.length === 1 ? '' : 's'}${result.truncated === true ? ' (truncated: more rows exist)' : ''}`];
  for (const [k, v] of Object.entries(result.summary ?? {})) footer.push(`${k}: ${cellText(v)}`);
  out.push(footer.join('; '));
  return out.join('\n') + '\n';
}
