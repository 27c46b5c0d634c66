-- Stored redactions (invariant 5, PCI DSS 3.3.1): the DLP stage stores a content event it redacted
-- as the redacted copy, in the original's place (same id, chain position and event_hash, the
-- original's chain hash). redacted_by names the data.masked event that attests the copy (its
-- redactedEventDigest is the SHA-256 of event_bytes); a verifier accepts the row only with it.
-- Null for every event stored as chained.
ALTER TABLE events ADD COLUMN IF NOT EXISTS redacted_by Nullable(UUID) AFTER event_bytes;
