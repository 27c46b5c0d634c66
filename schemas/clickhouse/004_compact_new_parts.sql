-- New parts are written compact (all columns in one file) until merges grow them past 100 MiB; they
-- become wide (a file per column) from then on. A writer batch of 10-20k events is a 12-24 MB part,
-- just over ClickHouse's default 10 MiB threshold, and writing it wide costs ~110 ms of CPU per
-- insert against ~60 ms compact: measured on chdb 3.4.0 (ClickHouse 26.7), 3-8 us less engine CPU
-- per event and 1.2-1.55x the insert rate, same disk use and merge cost (docs/evidence-store.md).
-- Large merged parts, where auditor queries read almost all data, stay wide.
ALTER TABLE events MODIFY SETTING min_bytes_for_wide_part = 104857600;
ALTER TABLE pan_sightings MODIFY SETTING min_bytes_for_wide_part = 104857600;
