/**
 * The engine over a JSON value (an event's request/response content): every string value and object
 * key goes through scanAndApply; the result is a new value (unchanged subtrees are shared) and the
 * JSON paths that changed, for the provenance record and for the location of each finding.
 */
import { AttestError } from '../errors';
import { compileDlpPolicy, type CompiledDlpPolicy, type DlpPolicy } from './policy';
import { scanAndApply, type DlpApplied, type DlpFinding } from './scan';
import { dropped } from './strategies';
import type { DlpKey, DlpStrategy } from './types';

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export interface JsonChange {
  /** '$.messages[2].content[0].text'; for a renamed key, the member's path under its new (masked) key. */
  readonly path: string;
  readonly what: 'value' | 'key';
}

export interface DlpJsonResult {
  readonly value: Json;
  readonly changes: readonly JsonChange[];
  /** Paths of `changes`, de-duplicated, in document order. */
  readonly changedPaths: readonly string[];
  readonly applied: readonly DlpApplied[];
  /** Findings with `location.jsonPath` set. */
  readonly findings: readonly DlpFinding[];
  readonly dropped: boolean;
}

/** Deeper than any real message; a guard against stack exhaustion on hostile input. */
export const MAX_DEPTH = 256;
const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

export function childPath(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`;
  return IDENT.test(key) ? `${parent}.${key}` : `${parent}[${JSON.stringify(key)}]`;
}

export function scanJson(value: Json, policy: DlpPolicy | CompiledDlpPolicy, key?: DlpKey, rootPath = '$'): DlpJsonResult {
  const p: CompiledDlpPolicy = 'byId' in policy ? policy : compileDlpPolicy(policy);
  const changes: JsonChange[] = [];
  const findings: DlpFinding[] = [];
  const counts = new Map<string, number>();
  const droppedIds: string[] = [];
  let anyDrop = false;

  /** `what` = 'key': `path` is the object's path (the member's own path would name the value). */
  const scanString = (s: string, path: string, what: 'value' | 'key'): string => {
    const r = scanAndApply(s, p, key);
    if (r.findings.length === 0) return s;
    for (const f of r.findings) findings.push({ ...f, location: { ...f.location, jsonPath: path } });
    for (const a of r.applied) {
      const k = `${a.detectorId}\u0000${a.strategy}`;
      counts.set(k, (counts.get(k) ?? 0) + a.count);
      if (a.strategy === 'drop') droppedIds.push(a.detectorId);
    }
    if (r.dropped) anyDrop = true;
    if (r.text !== s && what === 'value') changes.push({ path, what });
    return r.text;
  };

  const walk = (v: Json, path: string, depth: number): Json => {
    if (depth > MAX_DEPTH) throw new AttestError('dlp_invalid_input', `JSON nested deeper than ${MAX_DEPTH}`, { where: path });
    if (typeof v === 'string') return scanString(v, path, 'value');
    if (v === null || typeof v !== 'object') return v;
    if (Array.isArray(v)) {
      let out: Json[] | null = null;
      for (let i = 0; i < v.length; i++) {
        const c = walk(v[i]!, childPath(path, i), depth + 1);
        if (c !== v[i] && out === null) out = v.slice(0, i);
        if (out !== null) out.push(c);
      }
      return out ?? v;
    }
    let changed = false;
    const out: { [k: string]: Json } = {};
    for (const [k, c] of Object.entries(v)) {
      // Paths name the member by its masked key: a path must never carry the value it reports.
      let nk = scanString(k, path, 'key');
      // Two keys masked to the same text must not overwrite each other.
      for (let n = 2; nk !== k && Object.hasOwn(out, nk); n++) nk = `${nk.replace(/#\d+$/, '')}#${n}`;
      const cp = childPath(path, nk);
      if (nk !== k) changes.push({ path: cp, what: 'key' });
      const nc = walk(c, cp, depth + 1);
      if (nk !== k || nc !== c) changed = true;
      out[nk] = nc;
    }
    return changed ? out : v;
  };

  let result = walk(value, rootPath, 0);
  if (anyDrop && p.dropScope === 'content') {
    result = dropped(droppedIds);
    changes.length = 0;
    changes.push({ path: rootPath, what: 'value' });
  }
  const applied = [...counts]
    .map(([k, count]) => {
      const [detectorId, strategy] = k.split('\u0000') as [string, DlpStrategy];
      return { detectorId, strategy, count };
    })
    .sort((a, b) => (a.detectorId < b.detectorId ? -1 : a.detectorId > b.detectorId ? 1 : a.strategy < b.strategy ? -1 : 1));
  return { value: result, changes, changedPaths: [...new Set(changes.map((c) => c.path))], applied, findings, dropped: anyDrop };
}
