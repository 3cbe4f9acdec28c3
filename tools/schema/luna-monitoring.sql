-- LUNA's monitoring series in ClickHouse: one table per series, each row the point's time
-- and `data`, a JSON object merging its tags and fields (LUNA's ClickHouse layout; the
-- clickhouse sink writes it with `layout: luna`). Made for ClickHouse 18.16 (Debian 12's):
-- `time` is DateTime, whole seconds (18.16 has no DateTime64); the sink sends ISO-8601 with
-- date_time_best_effort, which 18.16 takes, cutting the milliseconds (they stay in InfluxDB).
-- On a newer server DateTime64(3, 'Etc/UTC') keeps them; nothing else changes. JSONExtract*
-- needs 19.x; on 18.16 use visitParamExtractString(data, 'route').
--
-- Apply with: tools/clickhouse/apply-schema.sh http://127.0.0.1:PORT/ tools/schema/luna-monitoring.sql
-- Query e.g.: SELECT visitParamExtractString(data, 'route') AS route, count() FROM luna.requests GROUP BY route

CREATE DATABASE IF NOT EXISTS luna;

CREATE TABLE IF NOT EXISTS luna.requests
(
    time DateTime('Etc/UTC'),
    data String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(time)
ORDER BY time;

CREATE TABLE IF NOT EXISTS luna.errors
(
    time DateTime('Etc/UTC'),
    data String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(time)
ORDER BY time;
