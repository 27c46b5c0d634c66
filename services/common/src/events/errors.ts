import { AttestError } from '../errors';

/**
 * Stable codes of the event contract's errors (documented in docs/events.md, "Errors").
 * Callers `switch (err.code)`; messages may change, codes never do.
 */
export const EVENT_ERROR_CODES = [
  /** Bytes do not start with the Avro single-object marker 0xC3 0x01. */
  'event_bad_magic',
  /** Bytes end before the header or the body is complete. */
  'event_truncated',
  /** The writer-schema fingerprint in the header is not in the registry. */
  'event_unknown_fingerprint',
  /** The body does not decode under the schema its header names, or claims another type or version. */
  'event_schema_mismatch',
  /** A writer schema cannot be resolved into the current reader schema. */
  'event_schema_incompatible',
  /** The event type is not in the catalog. */
  'event_unknown_type',
  /** The event value does not conform to its schema, or lacks a field PCI DSS 10.2.2 requires. */
  'event_invalid',
  /** A string in the event looks like a full card number (Luhn-valid): refused so no PAN is ever stored. */
  'event_pan_detected',
  /** The schema files cannot be loaded: missing, malformed, or drifted from their committed lock. */
  'event_schema_load',
] as const;

export type EventErrorCode = (typeof EVENT_ERROR_CODES)[number];

export class EventError extends AttestError<EventErrorCode> {
  constructor(
    code: EventErrorCode,
    message: string,
    opts: { where?: string; fix?: string; cause?: unknown } = {},
  ) {
    // Nothing in the codec is I/O: retrying the same bytes or value gives the same answer.
    super(code, message, { ...opts, retriable: false });
    this.name = 'EventError';
  }
}

export function isEventError(err: unknown, code?: EventErrorCode): err is EventError {
  return err instanceof EventError && (code === undefined || err.code === code);
}
