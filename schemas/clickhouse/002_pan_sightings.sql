-- Where a card appeared: BIN, last four and the keyed HMAC of the full PAN (PCI DSS 3.4.1,
-- 3.5.1.1), one row per PAN hit of a data.masked event. There is no full-PAN column, ever.
-- Sorted by fingerprint, so "where did this card appear?" reads one key range.
CREATE TABLE IF NOT EXISTS pan_sightings
(
    pan_hmac            FixedString(32),
    pan_hmac_key_id     LowCardinality(String),
    bin                 LowCardinality(String),
    last4               FixedString(4),
    event_id            UUID,
    event_type          LowCardinality(String),
    time                DateTime64(6, 'UTC'),
    tenant_id           LowCardinality(String),
    direction           LowCardinality(String),
    location            String,
    content_block_index Nullable(UInt32),
    char_offset         Nullable(UInt32),
    rule_id             LowCardinality(String),
    action              LowCardinality(String),
    actor_subject       String,
    actor_on_behalf_of  Nullable(String),
    session_id          String,
    request_id          String,
    ingest_time         DateTime64(6, 'UTC') DEFAULT now64(6),

    INDEX idx_event_id event_id TYPE bloom_filter(0.001) GRANULARITY 1,

    -- The insert-time dedup lookup by time window (see 001_events.sql).
    PROJECTION by_time (SELECT event_id, time ORDER BY time, event_id)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (pan_hmac, time, event_id)
TTL toDateTime(time) + INTERVAL {{retention_days}} DAY
-- Same settings as events (001_events.sql).
SETTINGS non_replicated_deduplication_window = 10000, ttl_only_drop_parts = 1,
         fsync_after_insert = 1, fsync_part_directory = 1;
