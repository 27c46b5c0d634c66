-- Evidence events: one row per event, the envelope flattened to typed columns, the payload as
-- JSON text and the encoded event exactly as on the log (docs/evidence-store.md, "Tables").
-- {{retention_days}} is filled in from the retention policy (>= 365 unless overridden) when this
-- migration first runs; later retention changes are ALTER ... MODIFY TTL, made by migrate().
CREATE TABLE IF NOT EXISTS events
(
    event_id            UUID,
    type                LowCardinality(String),
    code                LowCardinality(String),
    schema_version      UInt16,
    time                DateTime64(6, 'UTC'),
    producer            LowCardinality(String),
    producer_epoch      Nullable(String),
    sequence            UInt64,
    prev_hash           FixedString(32),
    event_hash          FixedString(32),
    tenant_id           LowCardinality(String),
    pci_requirements    Array(LowCardinality(String)),
    actor_subject       String,
    actor_issuer        LowCardinality(String),
    actor_client_id     LowCardinality(Nullable(String)),
    actor_groups        Array(LowCardinality(String)),
    actor_kind          LowCardinality(String),
    actor_on_behalf_of  Nullable(String),
    actor_dev           Bool,
    source_address      String,
    source_user_agent   LowCardinality(Nullable(String)),
    target_protocol     LowCardinality(String),
    target_service      LowCardinality(String),
    target_resource     String,
    target_model        LowCardinality(Nullable(String)),
    outcome_result      LowCardinality(String),
    outcome_status      Nullable(Int32),
    outcome_reason      LowCardinality(Nullable(String)),
    session_id          String,
    request_id          String,
    upstream_request_id Nullable(String),
    card_data_present   Bool,
    payload             String CODEC(ZSTD(1)),
    event_bytes         String CODEC(ZSTD(1)),
    ingest_time         DateTime64(6, 'UTC') DEFAULT now64(6),

    -- Point lookups that are not a prefix of the sort key: one session (replay), one request,
    -- one event id (dedup on insert, evidence links), one person.
    INDEX idx_session_id session_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_request_id request_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_event_id event_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_actor_subject actor_subject TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_on_behalf_of actor_on_behalf_of TYPE bloom_filter(0.01) GRANULARITY 1,
    -- Events arrive nearly in time order, so granules have tight time ranges.
    INDEX idx_time time TYPE minmax GRANULARITY 1,

    -- The insert-time dedup lookup ("which of these ids, in this time window, are stored?") reads
    -- only the window, however many events a day holds: the main key is bucketed by day.
    PROJECTION by_time (SELECT event_id, time ORDER BY time, event_id)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(time)
-- Auditor queries filter a time range, then event types, then a person: the day bucket keeps a
-- long range cheap for a single type or actor; event_id last makes the key unique.
ORDER BY (tenant_id, toStartOfDay(time), type, actor_subject, time, event_id)
TTL toDateTime(time) + INTERVAL {{retention_days}} DAY
-- Deduplication of redelivered batches by insert_deduplication_token; the log of recent block ids
-- is kept on disk (deduplication_logs/), so it survives a restart. ttl_only_drop_parts: retention
-- drops whole parts, never rewrites evidence, and never keeps less than the TTL. fsync: an insert
-- that returned survives a power loss too, because the writer then commits its log position.
SETTINGS non_replicated_deduplication_window = 10000, ttl_only_drop_parts = 1,
         fsync_after_insert = 1, fsync_part_directory = 1;
