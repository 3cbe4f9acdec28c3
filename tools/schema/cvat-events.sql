-- CVAT's analytics table, cvat.events, for a current ClickHouse (DateTime64 needs >= 20.1).
-- Apply with: tools/clickhouse/apply-schema.sh http://HOST:8123/ tools/schema/cvat-events.sql
-- Debian 12's ClickHouse 18.16 cannot take it: use cvat-events-18.16.sql there (same
-- columns in the same order). Both statements are idempotent (IF NOT EXISTS).

CREATE DATABASE IF NOT EXISTS cvat;

CREATE TABLE IF NOT EXISTS cvat.events
(
    scope String,
    obj_name Nullable(String),
    obj_id Nullable(UInt64),
    obj_val Nullable(String),
    source String,
    timestamp DateTime64(3, 'Etc/UTC'),
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
