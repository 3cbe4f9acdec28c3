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

START_TIMEOUT=${CLICKHOUSE_START_TIMEOUT:-60}
STOP_TIMEOUT=${CLICKHOUSE_STOP_TIMEOUT:-20}

say() { printf 'clickhouse-server.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
usage() {
  echo "usage: $0 start|stop|restart|status DIR" >&2
  exit 2
}

now_ms() { date +%s%3N; }

# ---- the binary ---------------------------------------------------------------------------
SERVER_CMD=()
find_server() {
  if command -v clickhouse-server >/dev/null 2>&1; then
    SERVER_CMD=("$(command -v clickhouse-server)")
  elif command -v clickhouse >/dev/null 2>&1; then
    SERVER_CMD=("$(command -v clickhouse)" server)
  else
    return 1
  fi
}

install_server() {
  say "no clickhouse-server or clickhouse binary: installing Debian's clickhouse-server"
  [[ $(id -u) -eq 0 ]] || die "not root: install clickhouse-server yourself (apt-get install clickhouse-server)"
  # Keep the package's postinst from starting the system-wide service: Debian's policy-rc.d
  # mechanism, only if the machine has no policy of its own, removed again afterwards.
  local made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
  fi
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y clickhouse-server clickhouse-client >&2 || {
    apt-get update >&2 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y clickhouse-server clickhouse-client >&2
  } || rc=1
  [[ $made_policy -eq 1 ]] && rm -f /usr/sbin/policy-rc.d
  [[ $rc -eq 0 ]] || die "apt-get install clickhouse-server clickhouse-client failed"
  # The package may have been set up to start at boot; that service is not ours to run.
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
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "--config-file=$dir/config.xml" || return 1
    # A zombie or exiting process does not count.
    [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || return 1
  fi
  echo "$pid"
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

# Start the server of an initialised DIR and wait for /ping. 0 ok, 1 failed, 3 port in use.
launch() {
  local dir=$1 http t0 pid
  http=$(<"$dir/http_port")
  mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas" "$dir/log"
  : >"$dir/log/stdout.log"
  rm -f "$dir/pid"
  mark_logs "$dir"   # the logs are kept across starts: look only at what this one adds
  t0=$(now_ms)
  # A session of its own (no SIGINT/SIGHUP from the caller's terminal or job control), no
  # stdin, stdout/stderr into the log (so `$(server.sh start DIR)` does not wait on it).
  # The shell writes its own pid and execs the server, so DIR/pid is the server's pid.
  # fd 9 (our lock on DIR/.lock) must not be inherited, or the server would hold the lock.
  # shellcheck disable=SC2016 # expanded by the inner shell
  setsid bash -c 'echo $$ >"$1/pid"; shift; exec "$@"' _ "$dir" \
    "${SERVER_CMD[@]}" --config-file="$dir/config.xml" \
    </dev/null >>"$dir/log/stdout.log" 2>&1 9>&- &
  local launcher=$!
  local deadline=$((t0 + START_TIMEOUT * 1000))
  while :; do
    if ping_ok "$http"; then
      pid=$(<"$dir/pid")
      say "started (pid $pid, http $http, tcp $(<"$dir/tcp_port")) in $(( $(now_ms) - t0 )) ms"
      return 0
    fi
    if [[ -s $dir/pid ]] && ! running_pid "$dir" >/dev/null; then
      wait 2>/dev/null
      if { cat "$dir/log/stdout.log"; tail -c +"$ERR_FROM" "$dir/log/server.err.log"; } 2>/dev/null |
        grep -q 'Address already in use'; then
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

start_server() {
  local dir=$1 pid http tcp rc attempt
  if pid=$(running_pid "$dir"); then
    http=$(<"$dir/http_port")
    if ping_ok "$http"; then
      say "already running (pid $pid)"
      echo "$http"
      return 0
    fi
    # Still starting (another caller), or hung: give it the usual time.
    local end=$(( $(now_ms) + START_TIMEOUT * 1000 ))
    while (($(now_ms) < end)); do
      if ping_ok "$http"; then echo "$http"; return 0; fi
      running_pid "$dir" >/dev/null || break
      sleep 0.2
    done
    running_pid "$dir" >/dev/null && { log_tail "$dir"; die "pid $pid does not answer /ping"; }
  fi

  if [[ -s $dir/config.xml && -s $dir/users.xml && -s $dir/http_port && -s $dir/tcp_port ]]; then
    # Initialised before: same ports, same data.
    launch "$dir"
    rc=$?
    if [[ $rc -eq 3 ]]; then
      log_tail "$dir"
      die "port $(<"$dir/http_port") or $(<"$dir/tcp_port") is taken by another process"
    fi
    [[ $rc -eq 0 ]] || exit 1
    cat "$dir/http_port"
    return 0
  fi

  # First start: pick ports; if one is grabbed between the pick and the bind, pick again.
  for attempt in 1 2 3 4 5; do
    read -r http tcp < <(free_ports) || die "cannot pick free ports"
    [[ -n ${http:-} && -n ${tcp:-} ]] || die "cannot pick free ports"
    write_config "$dir" "$http" "$tcp" || die "cannot write the config in $dir"
    launch "$dir"
    rc=$?
    if [[ $rc -eq 0 ]]; then
      echo "$http"
      return 0
    fi
    [[ $rc -eq 3 ]] || exit 1
    say "ports $http/$tcp were taken before the server bound them (attempt $attempt); picking others"
    rm -f "$dir/http_port" "$dir/tcp_port"
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
  /var/lib/clickhouse | /var/lib/clickhouse/* | /etc/clickhouse-server | /etc/clickhouse-server/*)
    die "refusing to use the system-wide ClickHouse directory $DIR" ;;
esac

command -v curl >/dev/null 2>&1 || die "curl is needed"

# One invocation at a time per DIR.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$DIR/.lock" || die "cannot create $DIR/.lock"
  flock -w $((START_TIMEOUT + STOP_TIMEOUT + 10)) 9 || die "another server.sh holds $DIR/.lock"
fi

case $cmd in
  start)
    find_server || { install_server; find_server; } || die "no ClickHouse server binary after installing"
    start_server "$DIR"
    ;;
  stop)
    stop_server "$DIR"
    ;;
  restart)
    find_server || { install_server; find_server; } || die "no ClickHouse server binary after installing"
    [[ -s $DIR/http_port && -s $DIR/config.xml ]] || say "$DIR was never started: starting it fresh"
    stop_server "$DIR"
    start_server "$DIR"
    ;;
  status)
    if pid=$(running_pid "$DIR") && ping_ok "$(<"$DIR/http_port")"; then
      say "running (pid $pid)"
      cat "$DIR/http_port"
    else
      say "not running ($DIR)"
      exit 1
    fi
    ;;
esac
