#!/usr/bin/env bash
# A sharded ClickHouse on loopback for tests and demos: N private servers (server.sh), one
# shard each, that know each other as the cluster `weir` (remote_servers), with CVAT's
# schema as a local table on every shard and a Distributed table over them. No ZooKeeper:
# plain MergeTree shards, as ClickHouse 18.16 allows without one.
#
#   tools/clickhouse/cluster.sh start N DIR   # DIR/1 .. DIR/N; prints each shard's HTTP port, in shard order
#   tools/clickhouse/cluster.sh stop DIR      # stops every shard (their data is kept)
#   tools/clickhouse/cluster.sh ports DIR     # the HTTP ports again
#
# On every shard: cvat.events_local (tools/schema/cvat-events-18.16.sql's columns, MergeTree)
# and cvat.events = Distributed(weir, cvat, events_local, SHARDING_KEY), where SHARDING_KEY
# is $CLUSTER_SHARDING_KEY or cityHash64(assumeNotNull(user_id)) (18.16 refuses a Nullable
# sharding expression). Writers that shard themselves (weir's `shard` transform) insert
# into each shard's events_local; readers query cvat.events on any shard.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
say() { printf 'cluster.sh: %s\n' "$*" >&2; }
usage() { echo "usage: $0 start N DIR | stop DIR | ports DIR" >&2; exit 2; }

ports() {
  local dir=$1 n=1
  while [[ -d $dir/$n ]]; do
    cat "$dir/$n/http_port"
    n=$((n + 1))
  done
}

query() {  # PORT SQL: the answer's text; fails with ClickHouse's error on stderr
  curl -sS --fail-with-body --max-time 30 "http://127.0.0.1:$1/" --data-binary "$2"
}

start() {
  local n=$1 dir=$2 i
  [[ $n =~ ^[0-9]+$ && $n -ge 1 ]] || usage
  mkdir -p "$dir" || exit 1
  for ((i = 1; i <= n; i++)); do
    bash "$here/server.sh" start "$dir/$i" >/dev/null || { say "shard $i did not start"; exit 1; }
  done
  # remote_servers: every shard's native port. ClickHouse reads config.d/ beside config.xml
  # and reloads remote_servers while running; restart anyway, so the cluster is there at once.
  local shards=""
  for ((i = 1; i <= n; i++)); do
    shards+="<shard><replica><host>127.0.0.1</host><port>$(<"$dir/$i/tcp_port")</port></replica></shard>"
  done
  for ((i = 1; i <= n; i++)); do
    mkdir -p "$dir/$i/config.d"
    printf '<?xml version="1.0"?>\n<!-- Written by tools/clickhouse/cluster.sh -->\n<yandex><remote_servers><weir>%s</weir></remote_servers></yandex>\n' \
      "$shards" >"$dir/$i/config.d/cluster.xml"
    bash "$here/server.sh" restart "$dir/$i" >/dev/null || { say "shard $i did not restart"; exit 1; }
  done
  local key=${CLUSTER_SHARDING_KEY:-cityHash64(assumeNotNull(user_id))}
  local local_schema
  local_schema=$(sed 's/cvat\.events$/cvat.events_local/; s/cvat\.events\b/cvat.events_local/' "$here/../schema/cvat-events-18.16.sql" | grep -v '^--')
  for ((i = 1; i <= n; i++)); do
    local port
    port=$(<"$dir/$i/http_port")
    local tries=0
    until [[ $(query "$port" "SELECT count() FROM system.clusters WHERE cluster = 'weir'" 2>/dev/null) == "$n" ]]; do
      tries=$((tries + 1))
      ((tries > 100)) && { say "shard $i does not see the cluster"; exit 1; }
      sleep 0.2
    done
    printf '%s\n' "$local_schema" >"$dir/$i/schema.sql"
    printf 'CREATE TABLE IF NOT EXISTS cvat.events AS cvat.events_local ENGINE = Distributed(weir, cvat, events_local, %s);\n' \
      "$key" >>"$dir/$i/schema.sql"
    bash "$here/apply-schema.sh" "http://127.0.0.1:$port/" "$dir/$i/schema.sql" 2>/dev/null ||
      { say "the schema did not apply on shard $i"; bash "$here/apply-schema.sh" "http://127.0.0.1:$port/" "$dir/$i/schema.sql"; exit 1; }
  done
  ports "$dir"
}

stop() {
  local dir=$1 n=1 failed=0
  while [[ -d $dir/$n ]]; do
    bash "$here/server.sh" stop "$dir/$n" >/dev/null || failed=1
    n=$((n + 1))
  done
  return $failed
}

case ${1:-} in
  start) [[ $# -eq 3 ]] || usage; start "$2" "$3" ;;
  stop) [[ $# -eq 2 ]] || usage; stop "$2" ;;
  ports) [[ $# -eq 2 ]] || usage; ports "$2" ;;
  *) usage ;;
esac
