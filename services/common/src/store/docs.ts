/**
 * Rewrites the generated evidence-query catalog in docs/evidence-store.md:
 *
 *   node --import tsx services/common/src/store/docs.ts
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { catalogMarkdown } from './evidence-queries';

export const EVIDENCE_STORE_DOC = fileURLToPath(new URL('../../../../docs/evidence-store.md', import.meta.url));
export const CATALOG_START = '<!-- generated:evidence-queries:start -->';
export const CATALOG_END = '<!-- generated:evidence-queries:end -->';

/** The document with its catalog block replaced by the current catalog. */
export function withCurrentCatalog(doc: string): string {
  const start = doc.indexOf(CATALOG_START);
  const end = doc.indexOf(CATALOG_END);
  if (start < 0 || end < start) throw new Error(`${EVIDENCE_STORE_DOC} has no ${CATALOG_START} … ${CATALOG_END} block`);
  return `${doc.slice(0, start + CATALOG_START.length)}\n${catalogMarkdown()}\n${doc.slice(end)}`;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(EVIDENCE_STORE_DOC, withCurrentCatalog(readFileSync(EVIDENCE_STORE_DOC, 'utf8')));
}
