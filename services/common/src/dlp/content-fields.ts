import type { Direction, EventType } from '../events';

/**
 * Where events carry content (text a caller, a model or a tool wrote): the fields the DLP processor
 * scans and whose events reach the evidence store through its content stage. One field per type.
 */
export interface ContentField {
  readonly type: EventType;
  readonly field: string;
  readonly direction: Direction;
}

/** The string content fields of the event schemas (types.generated.ts). */
export const CONTENT_FIELDS: readonly ContentField[] = [
  { type: 'gateway.request.received', field: 'content', direction: 'request' },
  { type: 'gateway.response.completed', field: 'content', direction: 'response' },
  { type: 'db.query.executed', field: 'statement', direction: 'request' },
];

export const CONTENT_BY_TYPE: ReadonlyMap<string, ContentField> = new Map(CONTENT_FIELDS.map((c) => [c.type, c]));

/** Whether `event` carries content (a non-empty content field): the DLP content stage stores it. */
export function isContentEvent(event: { readonly metadata: { readonly type: string }; readonly payload: unknown }): boolean {
  const field = CONTENT_BY_TYPE.get(event.metadata.type);
  if (field === undefined) return false;
  const text = (event.payload as Record<string, unknown>)[field.field];
  return typeof text === 'string' && text.length > 0;
}
