#!/usr/bin/env bash
# README's first command: weir's main job, the CVAT analytics pipeline into ClickHouse.
#
# Installs what is missing (apt-get, including Debian's clickhouse-server), builds weir,
# starts a private ClickHouse on loopback (temporary data dir, free ports) unless
# CLICKHOUSE_HOST points at one, applies CVAT's schema, runs weir with
# pipelines/cvat-analytics.yaml, posts the recorded 8-user session in examples/ the way
# CVAT's server ships events, waits until every row is in, prints the working time per user
# and job in hours (the query of CVAT's Management dashboard), and stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh
./tools/build.sh

SESSION=${SESSION:-examples/cvat-multi-user.ndjson}
work=$(mktemp -d /tmp/weir-main-job.XXXXXX)
weir_pid=""
started_clickhouse=""
cleanup() {
  [[ -n $weir_pid ]] && kill "$weir_pid" 2>/dev/null && wait "$weir_pid" 2>/dev/null || true
  [[ -n $started_clickhouse ]] && ./tools/clickhouse/server.sh stop "$work/clickhouse" >/dev/null 2>&1 || true
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

if [[ -z ${CLICKHOUSE_HOST:-} ]]; then
  echo "== starting a private ClickHouse in $work/clickhouse"
  CLICKHOUSE_PORT=$(./tools/clickhouse/server.sh start "$work/clickhouse" | tail -1)
  CLICKHOUSE_HOST=127.0.0.1
  started_clickhouse=1
fi
export CLICKHOUSE_HOST CLICKHOUSE_PORT=${CLICKHOUSE_PORT:-8123} CLICKHOUSE_DB=${CLICKHOUSE_DB:-cvat}
export CLICKHOUSE_USER=${CLICKHOUSE_USER:-default} CLICKHOUSE_PASSWORD=${CLICKHOUSE_PASSWORD:-}
url="http://$CLICKHOUSE_HOST:$CLICKHOUSE_PORT"
ch() { curl -sS --fail-with-body -u "$CLICKHOUSE_USER:$CLICKHOUSE_PASSWORD" "$url/?output_format_pretty_color=0" --data-binary "$1"; }

# DateTime64 came with ClickHouse 20.1: older servers (Debian 12 ships 18.16) get the variant.
version=$(ch "SELECT version()")
schema=tools/schema/cvat-events.sql
[[ ${version%%.*} -lt 20 ]] && schema=tools/schema/cvat-events-18.16.sql
echo "== ClickHouse $version at $url: applying $schema"
sed "s/\bcvat\./$CLICKHOUSE_DB./g; s/DATABASE IF NOT EXISTS cvat\b/DATABASE IF NOT EXISTS $CLICKHOUSE_DB/" "$schema" > "$work/schema.sql"
./tools/clickhouse/apply-schema.sh "$url" "$work/schema.sql"
before=$(ch "SELECT count() FROM $CLICKHOUSE_DB.events")

listen=$(free_port)
api=$(free_port)
echo "== weir: pipelines/cvat-analytics.yaml, intake on 127.0.0.1:$listen"
# Each user's last working-time row 1 s after their last event (the pipeline's default is
# CVAT's 90 s), so the job need not wait a minute and a half for them.
WEIR_WORKING_TIME_IDLE_AFTER=1s WEIR_DATA_DIR="$work/weir" WEIR_LISTEN="127.0.0.1:$listen" WEIR_API_ADDRESS="127.0.0.1:$api" \
  build/weir run -c pipelines/cvat-analytics.yaml 2> "$work/weir.log" &
weir_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$api/health" >/dev/null && break; sleep 0.1; done

echo "== posting $SESSION"
python3 tools/post-events.py "http://127.0.0.1:$listen/" "$SESSION"

# Every event the sink took is delivered when its sent count (rows inserted) plus its dead
# letters reach what it received, and nothing more came for 2.5 s (the last working-time
# rows come from the idle timer).
metric() { curl -sf "http://127.0.0.1:$api/metrics" | awk -v name="$1{component_id=\"events\"" 'index($0, name) == 1 { print $2 }'; }
expected=$(wc -l < "$SESSION")
settled=0
last_received=
for _ in $(seq 900); do
  received=$(metric weir_component_received_events_total)
  sent=$(metric weir_component_sent_events_total)
  dead=$(metric weir_component_dead_lettered_events_total)
  if [[ -n $received && $received -ge $expected && $((sent + dead)) -ge $received && $received == "$last_received" ]]; then
    settled=$((settled + 1))
    [[ $settled -ge 25 ]] && break
  else
    settled=0
  fi
  last_received=$received
  sleep 0.1
done
echo "   $received rows reached the sink ($expected events + the working-time rows weir computed): $sent inserted, $dead dead-lettered"
kill -TERM "$weir_pid"; wait "$weir_pid" || true; weir_pid=""

echo "== working time per user and job (hours), from ClickHouse"
ch "SELECT user_id, job_id, round(sum(visitParamExtractUInt(payload, 'working_time')) / 1000 / 3600, 3) AS hours, count() AS rows
    FROM $CLICKHOUSE_DB.events
    WHERE scope = 'send:working_time' AND visitParamHas(payload, 'working_time')
    GROUP BY user_id, job_id ORDER BY user_id, job_id FORMAT PrettyCompactMonoBlock"
echo "== working time per user (hours)"
ch "SELECT user_id, any(user_name) AS user_name, round(sum(visitParamExtractUInt(payload, 'working_time')) / 1000 / 3600, 3) AS hours,
    uniqExact(job_id) AS jobs
    FROM $CLICKHOUSE_DB.events
    WHERE scope = 'send:working_time' AND visitParamHas(payload, 'working_time')
    GROUP BY user_id ORDER BY user_id FORMAT PrettyCompactMonoBlock"
ch "SELECT count() AS rows_in_table, countIf(scope = 'send:working_time') AS working_time_rows,
    round(sumIf(visitParamExtractUInt(payload, 'working_time'), scope = 'send:working_time') / 1000 / 3600, 3) AS total_hours
    FROM $CLICKHOUSE_DB.events FORMAT PrettyCompactMonoBlock" | sed "s/^/   /"
echo "   (the table held $before rows before this run)"

# The read side (docs/analytics.md): a second weir serving only the analytics API on the
# same table, asked what README's examples ask.
api2=$(free_port)
export TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
API="http://127.0.0.1:$api2"
echo "== the analytics API: pipelines/cvat-analytics-api.yaml on $API"
WEIR_ANALYTICS_TOKEN=$TOKEN WEIR_DATA_DIR="$work/weir-api" WEIR_API_ADDRESS="127.0.0.1:$api2" \
  build/weir run -c pipelines/cvat-analytics-api.yaml 2> "$work/weir-api.log" &
weir_pid=$!
for _ in $(seq 100); do curl -sf "$API/health" >/dev/null && break; sleep 0.1; done
echo "-- CVAT's events export (newer flow), job 451"
rq=$(curl -s -H "Authorization: Bearer $TOKEN" -X POST "$API/api/events/export?job_id=451" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rq_id"])')
for _ in $(seq 100); do
  status=$(curl -s -H "Authorization: Bearer $TOKEN" "$API/api/requests/$rq" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
  [[ $status != started ]] && break
  sleep 0.1
done
curl -s -H "Authorization: Bearer $TOKEN" -o "$work/events.csv" "$API/api/events/download?rq_id=$rq"
echo "   $status: $(($(wc -l < "$work/events.csv") - 1)) events in the CSV; its first rows:"
head -3 "$work/events.csv" | cut -c1-160 | sed "s/^/   /"
echo "-- the same through the older flow (GET /api/events, then &query_id=, then &action=download)"
qid=$(curl -s -H "Authorization: Bearer $TOKEN" "$API/api/events?job_id=451" | python3 -c 'import json,sys; print(json.load(sys.stdin)["query_id"])')
for _ in $(seq 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$API/api/events?job_id=451&query_id=$qid")
  [[ $code != 202 ]] && break
  sleep 0.1
done
curl -s -H "Authorization: Bearer $TOKEN" "$API/api/events?job_id=451&query_id=$qid&action=download" | cmp -s - "$work/events.csv" \
  && echo "   $code, and the download is the same CSV" || echo "   $code, and the download DIFFERS"
echo "-- measures: active users per hour, working time per user (ms)"
curl -s -H "Authorization: Bearer $TOKEN" "$API/api/v1/analytics/query" -d '{
  "startTime": "2024-03-04T09:00:00Z", "endTime": "2024-03-04T13:00:00Z",
  "measures": [{"measureType": "activeUsers", "timeGranularity": ["hour"]},
               {"measureType": "userStatsTotalActivityTime"}]}' | python3 -c '
import json, sys
for element in json.load(sys.stdin):
    print("   %s per %s:" % (element["measureType"], element["timeGranularity"]))
    for row in element["response"]:
        print("     " + json.dumps(row))'
kill -TERM "$weir_pid"; wait "$weir_pid" || true; weir_pid=""
