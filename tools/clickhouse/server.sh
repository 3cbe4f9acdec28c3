#!/usr/bin/env bash
# A private ClickHouse server for tests and demos, kept entirely inside one directory.
#
#   tools/clickhouse/server.sh start   DIR   # create DIR if needed, start, print the HTTP port
#   tools/clickhouse/server.sh stop    DIR   # SIGTERM, then SIGKILL after CLICKHOUSE_STOP_TIMEOUT (20 s); DIR is kept
#   tools/clickhouse/server.sh restart DIR   # stop if running, start again on the same ports and data
#   tools/clickhouse/server.sh status  DIR   # exit 0 and print the HTTP port if it answers /ping
#
# What DIR holds: config.xml and users.xml (written once, on the first start), http_port and
# tcp_port (picked free on the first start, reused by every later start/restart), pid (while
# running), data/ tmp/ user_files/ format_schemas/ log/ (server.log, server.err.log, stdout.log).
#
# The server listens on 127.0.0.1 only (HTTP and native TCP, no interserver port), in UTC,
# with two users that may use every database: `default` (empty password) and `weir`
# (password `weir-secret`). It never reads /etc/clickhouse-server nor /var/lib/clickhouse and
# never touches a system-wide ClickHouse service. Running as root works (18.16 does not refuse it).
#
# Debian 12 ships ClickHouse 18.16.1 as `clickhouse-server` / `clickhouse-client`; when neither
# that nor a single `clickhouse` binary is found, the Debian packages are installed (needs root).
#
# start's last line on stdout is the HTTP port; progress goes to stderr. Exit codes: 0 ok,
# 1 failure (the server log's tail is printed on stderr), 2 usage.
# Environment: CLICKHOUSE_START_TIMEOUT (s, default 60), CLICKHOUSE_STOP_TIMEOUT (s, default 20).
set -uo pipefail

SERVER_LABEL=clickhouse-server.sh
START_TIMEOUT=${CLICKHOUSE_START_TIMEOUT:-60}
STOP_TIMEOUT=${CLICKHOUSE_STOP_TIMEOUT:-20}
DEB_PACKAGES=(clickhouse-server clickhouse-client)
SYSTEM_DIRS=(/var/lib/clickhouse /etc/clickhouse-server)
SECOND_PORT=tcp
# shellcheck source-path=SCRIPTDIR source=../lib/private-server.bash
source "$(dirname "${BASH_SOURCE[0]}")/../lib/private-server.bash"

find_server() {
  if command -v clickhouse-server >/dev/null 2>&1; then
    SERVER_CMD=("$(command -v clickhouse-server)")
  elif command -v clickhouse >/dev/null 2>&1; then
    SERVER_CMD=("$(command -v clickhouse)" server)
  else
    return 1
  fi
}

# ---- config -------------------------------------------------------------------------------
write_config() {
  local dir=$1 http=$2 tcp=$3
  cat >"$dir/config.xml.new" <<EOF
<?xml version="1.0"?>
<!-- Written by tools/clickhouse/server.sh: a private ClickHouse for tests; everything lives in $dir -->
<yandex>
    <logger>
        <level>information</level>
        <log>$dir/log/server.log</log>
        <errorlog>$dir/log/server.err.log</errorlog>
        <size>50M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>$http</http_port>
    <tcp_port>$tcp</tcp_port>
    <path>$dir/data/</path>
    <tmp_path>$dir/tmp/</tmp_path>
    <user_files_path>$dir/user_files/</user_files_path>
    <format_schema_path>$dir/format_schemas/</format_schema_path>
    <users_config>$dir/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <max_concurrent_queries>100</max_concurrent_queries>
    <mark_cache_size>268435456</mark_cache_size>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <keep_alive_timeout>3</keep_alive_timeout>
</yandex>
EOF
  cat >"$dir/users.xml.new" <<'EOF'
<?xml version="1.0"?>
<!-- Written by tools/clickhouse/server.sh. No allow_databases: both users reach every database. -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>2000000000</max_memory_usage>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
        <weir>
            <password>weir-secret</password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </weir>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
  mv -f "$dir/users.xml.new" "$dir/users.xml" &&
    mv -f "$dir/config.xml.new" "$dir/config.xml" &&
    echo "$http" >"$dir/http_port" &&
    echo "$tcp" >"$dir/tcp_port"
}

initialised() { [[ -s $1/config.xml && -s $1/users.xml && -s $1/http_port && -s $1/tcp_port ]]; }
refresh_config() { :; }  # written once, on the first start
cmdline_marker() { echo "--config-file=$1/config.xml"; }

server_args() {
  local dir=$1
  mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas" "$dir/log"
  : >"$dir/log/stdout.log"
  SERVER_ARGS=(--config-file="$dir/config.xml")
  SERVER_LOG=$dir/log/stdout.log
}

ping_ok() {
  [[ $(curl -sf --max-time 2 "http://127.0.0.1:$1/ping" 2>/dev/null) == "Ok." ]]
}

# Byte offsets (1-based) where this start's output begins in the kept logs.
LOG_FROM=1
ERR_FROM=1
mark_logs() {
  LOG_FROM=$(($(stat -c %s "$1/log/server.log" 2>/dev/null || echo 0) + 1))
  ERR_FROM=$(($(stat -c %s "$1/log/server.err.log" 2>/dev/null || echo 0) + 1))
}

# What the last start wrote to its logs, without the stack traces' frames.
log_tail() {
  local dir=$1 f from
  for f in stdout.log server.err.log server.log; do
    case $f in server.log) from=$LOG_FROM ;; server.err.log) from=$ERR_FROM ;; *) from=1 ;; esac
    [[ -s $dir/log/$f ]] || continue
    say "---- $dir/log/$f (last lines of this start)"
    tail -c +"$from" "$dir/log/$f" | grep -vE '^[0-9]+\. /|^$' | tail -n 15 >&2
  done
}

port_taken() {
  { cat "$1/log/stdout.log"; tail -c +"$ERR_FROM" "$1/log/server.err.log"; } 2>/dev/null | grep -q 'Address already in use'
}

started_detail() { echo "tcp $(<"$1/tcp_port")"; }
after_start() { :; }
print_address() { cat "$1/http_port"; }

private_server_main "$@"
