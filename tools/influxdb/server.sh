#!/usr/bin/env bash
# A private InfluxDB 1.x server for tests and demos, kept entirely inside one directory.
#
#   tools/influxdb/server.sh start   DIR   # create DIR if needed, start, print the base URL
#   tools/influxdb/server.sh stop    DIR   # SIGTERM, then SIGKILL after INFLUXDB_STOP_TIMEOUT (20 s); DIR is kept
#   tools/influxdb/server.sh restart DIR   # stop if running, start again on the same ports and data
#   tools/influxdb/server.sh status  DIR   # exit 0 and print the base URL if it answers /ping
#
# What DIR holds: influxdb.conf (written at every start from the settings below), http_port
# and rpc_port (picked free on the first start, reused by every later start/restart), auth and
# max_body_size (the settings of the last start), pid (while running), meta/ data/ wal/ and
# log/influxd.log (influxd's log and HTTP access log, appended to by every start).
#
# The server listens on 127.0.0.1 only: HTTP on http_port and the backup/restore RPC service
# (influxd's top-level bind-address, 8088 by default) on rpc_port; graphite, collectd, opentsdb,
# udp and ifql stay off, usage reporting is off, no _internal monitor database is written. It
# never reads /etc/influxdb nor /var/lib/influxdb, never uses port 8086 and never touches a
# system-wide InfluxDB service. An admin user `weir` (password `weir-secret`) is created on the
# first start; it only matters with authentication on (without it influxd ignores credentials).
#
# Debian 12 ships InfluxDB 1.6.7 as `influxdb` / `influxdb-client`; when no `influxd` binary is
# found, the Debian packages are installed (needs root) without starting their service.
#
# start's last line on stdout is the base URL (http://127.0.0.1:PORT); progress goes to stderr.
# Exit codes: 0 ok, 1 failure (the server log's tail is printed on stderr), 2 usage.
# Environment:
#   INFLUXDB_START_TIMEOUT (s, default 60), INFLUXDB_STOP_TIMEOUT (s, default 20);
#   INFLUXDB_AUTH=1|0           auth-enabled in [http] (default: as on the last start, first 0);
#   INFLUXDB_MAX_BODY_SIZE=N    [http] max-body-size in bytes, 0 = no limit
#                               (default: as on the last start, first 25000000, influxd's default).
# influxd itself also reads INFLUXDB_<SECTION>_<KEY> overrides from its environment; they are
# removed before it starts, so DIR/influxdb.conf is all that configures it.
set -uo pipefail

SERVER_LABEL=influxdb-server.sh
START_TIMEOUT=${INFLUXDB_START_TIMEOUT:-60}
STOP_TIMEOUT=${INFLUXDB_STOP_TIMEOUT:-20}
DEB_PACKAGES=(influxdb influxdb-client)
SYSTEM_DIRS=(/var/lib/influxdb /etc/influxdb)
SECOND_PORT=rpc
CLEAR_ENV_PREFIX=INFLUXDB_  # influxd's own overrides: DIR/influxdb.conf is all that configures it
USER_NAME=weir
USER_PASSWORD=weir-secret
# shellcheck source-path=SCRIPTDIR source=../lib/private-server.bash
source "$(dirname "${BASH_SOURCE[0]}")/../lib/private-server.bash"

find_server() {
  if [[ -x /usr/bin/influxd ]]; then
    SERVER_CMD=(/usr/bin/influxd)
  elif command -v influxd >/dev/null 2>&1; then
    SERVER_CMD=("$(command -v influxd)")
  else
    return 1
  fi
}

# ---- settings and config ------------------------------------------------------------------
# This start's settings: the environment's, else the last start's, else the defaults.
AUTH=0
MAX_BODY_SIZE=25000000
load_settings() {
  local dir=$1
  [[ -s $dir/auth ]] && AUTH=$(<"$dir/auth")
  [[ -s $dir/max_body_size ]] && MAX_BODY_SIZE=$(<"$dir/max_body_size")
  if [[ -n ${INFLUXDB_AUTH:-} ]]; then
    case ${INFLUXDB_AUTH,,} in
      1 | true | yes | on) AUTH=1 ;;
      0 | false | no | off) AUTH=0 ;;
      *) die "INFLUXDB_AUTH must be 1 or 0, not '$INFLUXDB_AUTH'" ;;
    esac
  fi
  if [[ -n ${INFLUXDB_MAX_BODY_SIZE:-} ]]; then
    [[ $INFLUXDB_MAX_BODY_SIZE =~ ^[0-9]+$ ]] ||
      die "INFLUXDB_MAX_BODY_SIZE must be a number of bytes, not '$INFLUXDB_MAX_BODY_SIZE'"
    MAX_BODY_SIZE=$INFLUXDB_MAX_BODY_SIZE
  fi
  [[ $AUTH == [01] && $MAX_BODY_SIZE =~ ^[0-9]+$ ]] || die "bad settings in $dir/auth or $dir/max_body_size"
}

write_config() {
  local dir=$1 http=$2 rpc=$3 auth=false
  load_settings "$dir"
  [[ $AUTH -eq 1 ]] && auth=true
  cat >"$dir/influxdb.conf.new" <<EOF
# Written by tools/influxdb/server.sh: a private InfluxDB for tests; everything lives in $dir
reporting-enabled = false
# The backup/restore RPC service (8088 by default).
bind-address = "127.0.0.1:$rpc"

[meta]
  dir = "$dir/meta"
  retention-autocreate = true
  logging-enabled = true

[data]
  dir = "$dir/data"
  wal-dir = "$dir/wal"
  index-version = "inmem"
  wal-fsync-delay = "0s"
  query-log-enabled = true

[coordinator]
  write-timeout = "10s"

[retention]
  enabled = true

[shard-precreation]
  enabled = true

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:$http"
  auth-enabled = $auth
  realm = "InfluxDB"
  log-enabled = true
  suppress-write-log = false
  write-tracing = false
  pprof-enabled = false
  https-enabled = false
  unix-socket-enabled = false
  max-body-size = $MAX_BODY_SIZE
  max-row-limit = 0
  max-connection-limit = 0

[ifql]
  enabled = false

[logging]
  format = "logfmt"
  level = "info"
  suppress-logo = true

[[graphite]]
  enabled = false

[[collectd]]
  enabled = false

[[opentsdb]]
  enabled = false

[[udp]]
  enabled = false

[continuous_queries]
  enabled = true
  log-enabled = true
EOF
  mv -f "$dir/influxdb.conf.new" "$dir/influxdb.conf" &&
    echo "$http" >"$dir/http_port" &&
    echo "$rpc" >"$dir/rpc_port" &&
    echo "$AUTH" >"$dir/auth" &&
    echo "$MAX_BODY_SIZE" >"$dir/max_body_size"
}

initialised() { [[ -s $1/influxdb.conf && -s $1/http_port && -s $1/rpc_port ]]; }
# The config is rewritten at every start, with this start's settings.
refresh_config() { write_config "$1" "$(<"$1/http_port")" "$(<"$1/rpc_port")"; }
cmdline_marker() { echo "-config $1/influxdb.conf"; }

server_args() {
  local dir=$1
  mkdir -p "$dir/meta" "$dir/data" "$dir/wal" "$dir/log"
  SERVER_ARGS=(run -config "$dir/influxdb.conf")
  SERVER_LOG=$dir/log/influxd.log
}

# /ping answers 204 No Content (with or without authentication on).
ping_ok() {
  [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/ping" 2>/dev/null) == 204 ]]
}

# Byte offset (1-based) where this start's output begins in the kept log.
LOG_FROM=1
mark_logs() {
  LOG_FROM=$(($(stat -c %s "$1/log/influxd.log" 2>/dev/null || echo 0) + 1))
}

# What the last start wrote to its log.
log_tail() {
  local dir=$1
  [[ -s $dir/log/influxd.log ]] || return 0
  say "---- $dir/log/influxd.log (last lines of this start)"
  tail -c +"$LOG_FROM" "$dir/log/influxd.log" | grep -v '^$' | tail -n 15 >&2
}

port_taken() { tail -c +"$LOG_FROM" "$1/log/influxd.log" 2>/dev/null | grep -qi 'address already in use'; }

started_detail() { echo "rpc $(<"$1/rpc_port"), auth $([[ $AUTH -eq 1 ]] && echo on || echo off)"; }

# The admin user: POST /query with CREATE USER ... WITH ALL PRIVILEGES. With authentication on
# and no admin yet, influxd accepts exactly this statement without credentials; once the user
# exists, the same statement with its own credentials succeeds again (same password, admin).
# (influxd 1.6 reads u/p from the URL or Basic auth, never from a POST form body.)
ensure_user() {
  local dir=$1 http out code
  http=$(<"$dir/http_port")
  out=$(curl -s --max-time 10 -w '\n%{http_code}' -XPOST "http://127.0.0.1:$http/query" \
    -u "$USER_NAME:$USER_PASSWORD" --data-urlencode "q=CREATE USER \"$USER_NAME\" WITH PASSWORD '$USER_PASSWORD' WITH ALL PRIVILEGES")
  code=${out##*$'\n'}
  out=${out%$'\n'*}
  if [[ $code != 200 || $out == *'"error"'* ]]; then
    say "cannot create the admin user $USER_NAME: HTTP $code $out"
    return 1
  fi
}

after_start() { ensure_user "$1"; }
print_address() { echo "http://127.0.0.1:$(<"$1/http_port")"; }

private_server_main "$@"
