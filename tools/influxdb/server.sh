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

START_TIMEOUT=${INFLUXDB_START_TIMEOUT:-60}
STOP_TIMEOUT=${INFLUXDB_STOP_TIMEOUT:-20}
USER_NAME=weir
USER_PASSWORD=weir-secret

say() { printf 'influxdb-server.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
usage() {
  echo "usage: $0 start|stop|restart|status DIR" >&2
  exit 2
}

now_ms() { date +%s%3N; }

# ---- the binary ---------------------------------------------------------------------------
SERVER_CMD=()
find_server() {
  if [[ -x /usr/bin/influxd ]]; then
    SERVER_CMD=(/usr/bin/influxd)
  elif command -v influxd >/dev/null 2>&1; then
    SERVER_CMD=("$(command -v influxd)")
  else
    return 1
  fi
}

install_server() {
  say "no influxd binary: installing Debian's influxdb"
  [[ $(id -u) -eq 0 ]] || die "not root: install influxdb yourself (apt-get install influxdb influxdb-client)"
  # Keep the package's postinst from starting the system-wide service (it would take 8086 and
  # 8088): Debian's policy-rc.d mechanism, only if the machine has no policy of its own,
  # removed again afterwards.
  local made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
  fi
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends influxdb influxdb-client >&2 || {
    apt-get update >&2 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends influxdb influxdb-client >&2
  } || rc=1
  [[ $made_policy -eq 1 ]] && rm -f /usr/sbin/policy-rc.d
  [[ $rc -eq 0 ]] || die "apt-get install influxdb influxdb-client failed"
  # The package may have been set up to start at boot; that service is not ours to run. Our
  # server binds neither 8086 nor 8088, so the two never collide.
}

# ---- ports --------------------------------------------------------------------------------
# Two distinct free TCP ports on 127.0.0.1, asked of the kernel (bind to port 0).
free_ports() {
  if command -v python3 >/dev/null 2>&1; then
    python3 - <<'EOF'
import socket
socks = []
for _ in range(2):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
    return
  fi
  # No python3: random ports in 20000-59999 that nothing answers on.
  local picked=() p
  while [[ ${#picked[@]} -lt 2 ]]; do
    p=$((20000 + RANDOM % 40000))
    [[ ${#picked[@]} -eq 1 && ${picked[0]} -eq $p ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then picked+=("$p"); fi
  done
  echo "${picked[*]}"
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

# ---- process ------------------------------------------------------------------------------
# The pid in DIR/pid if that process is alive and is the server of DIR's config.
running_pid() {
  local dir=$1 pid
  [[ -s $dir/pid ]] || return 1
  pid=$(<"$dir/pid")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # Guard against a recycled pid: the command line must name this DIR's config.
  if [[ -r /proc/$pid/cmdline ]]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "-config $dir/influxdb.conf" || return 1
    # A zombie or exiting process does not count.
    [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || return 1
  fi
  echo "$pid"
}

# /ping answers 204 No Content (with or without authentication on).
ping_ok() {
  [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/ping" 2>/dev/null) == 204 ]]
}

base_url() { echo "http://127.0.0.1:$(<"$1/http_port")"; }

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

# Start the server of an initialised DIR and wait for /ping. 0 ok, 1 failed, 3 port in use.
launch() {
  local dir=$1 http t0 pid
  http=$(<"$dir/http_port")
  mkdir -p "$dir/meta" "$dir/data" "$dir/wal" "$dir/log"
  rm -f "$dir/pid"
  mark_logs "$dir"   # the log is kept across starts: look only at what this one adds
  t0=$(now_ms)
  # A session of its own (no SIGINT/SIGHUP from the caller's terminal or job control), no
  # stdin, stdout/stderr into the log (so `$(server.sh start DIR)` does not wait on it), none
  # of influxd's INFLUXDB_* environment overrides. The shell writes its own pid and execs the
  # server, so DIR/pid is the server's pid. fd 9 (our lock on DIR/.lock) must not be
  # inherited, or the server would hold the lock.
  # shellcheck disable=SC2016 # expanded by the inner shell
  setsid bash -c 'for v in $(compgen -e); do [[ $v == INFLUXDB_* ]] && unset "$v"; done
    echo $$ >"$1/pid"; shift; exec "$@"' _ "$dir" \
    "${SERVER_CMD[@]}" run -config "$dir/influxdb.conf" \
    </dev/null >>"$dir/log/influxd.log" 2>&1 9>&- &
  local launcher=$!
  local deadline=$((t0 + START_TIMEOUT * 1000))
  while :; do
    if ping_ok "$http"; then
      pid=$(<"$dir/pid")
      say "started (pid $pid, http $http, rpc $(<"$dir/rpc_port"), auth $([[ $AUTH -eq 1 ]] && echo on || echo off)) in $(( $(now_ms) - t0 )) ms"
      return 0
    fi
    if [[ -s $dir/pid ]] && ! running_pid "$dir" >/dev/null; then
      wait 2>/dev/null
      if tail -c +"$LOG_FROM" "$dir/log/influxd.log" 2>/dev/null | grep -qi 'address already in use'; then
        return 3
      fi
      say "server exited during start-up"
      log_tail "$dir"
      return 1
    fi
    if (($(now_ms) > deadline)); then
      say "no answer from http://127.0.0.1:$http/ping within ${START_TIMEOUT}s"
      log_tail "$dir"
      # The pid file may not be written yet: then the launcher's pid is the one to stop.
      [[ -s $dir/pid ]] || sleep 1
      [[ -s $dir/pid ]] || echo "$launcher" >"$dir/pid"
      stop_server "$dir" >/dev/null 2>&1
      kill -KILL "$launcher" 2>/dev/null
      return 1
    fi
    sleep 0.2
  done
}

stop_server() {
  local dir=$1 pid t0
  if ! pid=$(running_pid "$dir"); then
    rm -f "$dir/pid"
    say "not running ($dir)"
    return 0
  fi
  t0=$(now_ms)
  kill -TERM "$pid" 2>/dev/null
  local deadline=$((t0 + STOP_TIMEOUT * 1000))
  while kill -0 "$pid" 2>/dev/null; do
    [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && break
    if (($(now_ms) > deadline)); then
      say "pid $pid still there after ${STOP_TIMEOUT}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null
      sleep 0.5
      break
    fi
    sleep 0.1
  done
  rm -f "$dir/pid"
  say "stopped (pid $pid) in $(( $(now_ms) - t0 )) ms"
}

# After a successful launch: the admin user, then the URL on stdout.
started() {
  local dir=$1
  ensure_user "$dir" || { stop_server "$dir"; exit 1; }
  base_url "$dir"
}

start_server() {
  local dir=$1 pid http rpc rc attempt
  if pid=$(running_pid "$dir"); then
    http=$(<"$dir/http_port")
    if ping_ok "$http"; then
      say "already running (pid $pid)"
      base_url "$dir"
      return 0
    fi
    # Still starting (another caller), or hung: give it the usual time.
    local end=$(( $(now_ms) + START_TIMEOUT * 1000 ))
    while (($(now_ms) < end)); do
      if ping_ok "$http"; then base_url "$dir"; return 0; fi
      running_pid "$dir" >/dev/null || break
      sleep 0.2
    done
    running_pid "$dir" >/dev/null && { log_tail "$dir"; die "pid $pid does not answer /ping"; }
  fi

  load_settings "$dir"
  if [[ -s $dir/influxdb.conf && -s $dir/http_port && -s $dir/rpc_port ]]; then
    # Initialised before: same ports, same data (the config is rewritten with this start's settings).
    write_config "$dir" "$(<"$dir/http_port")" "$(<"$dir/rpc_port")" || die "cannot write the config in $dir"
    launch "$dir"
    rc=$?
    if [[ $rc -eq 3 ]]; then
      log_tail "$dir"
      die "port $(<"$dir/http_port") or $(<"$dir/rpc_port") is taken by another process"
    fi
    [[ $rc -eq 0 ]] || exit 1
    started "$dir"
    return 0
  fi

  # First start: pick ports; if one is grabbed between the pick and the bind, pick again.
  for attempt in 1 2 3 4 5; do
    read -r http rpc < <(free_ports) || die "cannot pick free ports"
    [[ -n ${http:-} && -n ${rpc:-} ]] || die "cannot pick free ports"
    write_config "$dir" "$http" "$rpc" || die "cannot write the config in $dir"
    launch "$dir"
    rc=$?
    if [[ $rc -eq 0 ]]; then
      started "$dir"
      return 0
    fi
    [[ $rc -eq 3 ]] || exit 1
    say "ports $http/$rpc were taken before the server bound them (attempt $attempt); picking others"
    rm -f "$dir/http_port" "$dir/rpc_port"
  done
  log_tail "$dir"
  die "could not bind free ports after 5 attempts"
}

# ---- main ---------------------------------------------------------------------------------
[[ $# -eq 2 ]] || usage
cmd=$1
[[ -n $2 ]] || usage
case $cmd in start | stop | restart | status) ;; *) usage ;; esac

if [[ $cmd == start || $cmd == restart ]]; then
  mkdir -p "$2" || die "cannot create $2"
fi
[[ -d $2 ]] || die "no such directory: $2"
DIR=$(cd "$2" && pwd -P) || die "cannot enter $2"
case $DIR in
  /var/lib/influxdb | /var/lib/influxdb/* | /etc/influxdb | /etc/influxdb/*)
    die "refusing to use the system-wide InfluxDB directory $DIR" ;;
esac

command -v curl >/dev/null 2>&1 || die "curl is needed"

# One invocation at a time per DIR.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$DIR/.lock" || die "cannot create $DIR/.lock"
  flock -w $((START_TIMEOUT + STOP_TIMEOUT + 10)) 9 || die "another server.sh holds $DIR/.lock"
fi

case $cmd in
  start)
    find_server || { install_server; find_server; } || die "no influxd binary after installing"
    start_server "$DIR"
    ;;
  stop)
    stop_server "$DIR"
    ;;
  restart)
    find_server || { install_server; find_server; } || die "no influxd binary after installing"
    [[ -s $DIR/http_port && -s $DIR/influxdb.conf ]] || say "$DIR was never started: starting it fresh"
    stop_server "$DIR"
    start_server "$DIR"
    ;;
  status)
    if pid=$(running_pid "$DIR") && ping_ok "$(<"$DIR/http_port")"; then
      say "running (pid $pid)"
      base_url "$DIR"
    else
      say "not running ($DIR)"
      exit 1
    fi
    ;;
esac
