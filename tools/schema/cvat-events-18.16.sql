-- CVAT's analytics table, cvat.events, made to work on ClickHouse 18.16.1 (Debian 12's
-- clickhouse-server). Same column names, same order as cvat-events.sql, so rows written
-- for one load into the other. What differs, checked on 18.16.1 itself:
--
--   * timestamp is DateTime('Etc/UTC'), not DateTime64(3, 'Etc/UTC'): 18.16 has no
--     DateTime64 ("Code: 50 ... Unknown data type family: DateTime64", HTTP 404).
--     DateTime keeps whole seconds only: milliseconds are lost. The time zone argument
--     pins text parsing and printing of this column to UTC whatever the server's zone.
--     With date_time_input_format=basic (the default) 18.16 takes 'YYYY-MM-DD hh:mm:ss',
--     'YYYY-MM-DDThh:mm:ss' and a Unix time (number or string) and rejects a fraction,
--     'Z', an offset or a bare date (Code 27 / 41); date_time_input_format=best_effort on
--     the INSERT (18.16 has that setting) takes all of those, truncating the fraction.
--
-- What 18.16 does take unchanged: CREATE DATABASE/TABLE ... IF NOT EXISTS, Nullable
-- columns in MergeTree, `Nullable(UInt64) DEFAULT NULL` (stored as
-- CAST(NULL, 'Nullable(UInt64)')), `UInt32 DEFAULT 0`, PARTITION BY toYYYYMM(timestamp),
-- ORDER BY (timestamp). It does NOT take the `NOT NULL` column modifier (syntax error,
-- Code 62), so none is written here or in cvat-events.sql.
--
-- Apply with: tools/clickhouse/apply-schema.sh http://127.0.0.1:PORT/ tools/schema/cvat-events-18.16.sql

CREATE DATABASE IF NOT EXISTS cvat;

CREATE TABLE IF NOT EXISTS cvat.events
(
    scope String,
    obj_name Nullable(String),
    obj_id Nullable(UInt64),
    obj_val Nullable(String),
    source String,
    timestamp DateTime('Etc/UTC'),
    count Nullable(UInt16),
    duration UInt32 DEFAULT 0,
    project_id Nullable(UInt64),
    task_id Nullable(UInt64),
    job_id Nullable(UInt64),
    user_id Nullable(UInt64),
    user_name Nullable(String),
    user_email Nullable(String),
    org_id Nullable(UInt64),
    org_slug Nullable(String),
    payload Nullable(String),
    access_token_id Nullable(UInt64) DEFAULT NULL
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (timestamp);
