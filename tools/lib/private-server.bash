# shellcheck shell=bash
# What tools/clickhouse/server.sh and tools/influxdb/server.sh share: a private database
# server kept entirely inside one directory, on free loopback ports, started and stopped
# with `start|stop|restart|status DIR`. Sourced by a server script, which first sets
#   SERVER_LABEL                  how log lines begin (e.g. clickhouse-server.sh)
#   START_TIMEOUT STOP_TIMEOUT    seconds
#   DEB_PACKAGES=(...)            what to apt-get install when find_server finds nothing
#   SYSTEM_DIRS=(...)             directories DIR must never be (the system-wide server's)
#   SECOND_PORT                   name of the second port, kept in DIR/<name>_port (tcp, rpc)
# and defines
#   find_server                   set SERVER_CMD=(binary ...) or return 1
#   write_config DIR HTTP PORT2   write the config and DIR/http_port, DIR/<SECOND_PORT>_port
#   initialised DIR               whether DIR was started before (config and ports there)
#   cmdline_marker DIR            text in the server's command line that names DIR's config
#   server_args DIR               set SERVER_ARGS=(...), SERVER_LOG (its stdout/stderr) and
#                                 make the directories it needs
#   ping_ok HTTP_PORT             whether the server answers
#   mark_logs DIR / log_tail DIR  where this start's log output begins / print its last lines
#   port_taken DIR                whether this start's log says the port was in use
#   started_detail DIR            what "started (pid N, http P, ...)" adds
#   refresh_config DIR            before starting an initialised DIR (a no-op, or rewrite)
#   after_start DIR               once it answers (e.g. create a user); non-zero fails the start
#   print_address DIR             the last line of start/status on stdout
#   CLEAR_ENV_PREFIX              optional: variables with this prefix are not passed to the server
# then calls private_server_main "$@".

say() { printf '%s: %s\n' "$SERVER_LABEL" "$*" >&2; }
die() { say "$*"; exit 1; }
usage() {
  echo "usage: $0 start|stop|restart|status DIR" >&2
  exit 2
}

now_ms() { date +%s%3N; }

SERVER_CMD=()
SERVER_ARGS=()
SERVER_LOG=

install_server() {
  say "no server binary: installing Debian's ${DEB_PACKAGES[*]}"
  [[ $(id -u) -eq 0 ]] || die "not root: install it yourself (apt-get install ${DEB_PACKAGES[*]})"
  # Keep the package's postinst from starting the system-wide service: Debian's policy-rc.d
  # mechanism, only if the machine has no policy of its own, removed again afterwards.
  local made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
  fi
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${DEB_PACKAGES[@]}" >&2 || {
    apt-get update >&2 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${DEB_PACKAGES[@]}" >&2
  } || rc=1
  [[ $made_policy -eq 1 ]] && rm -f /usr/sbin/policy-rc.d
  [[ $rc -eq 0 ]] || die "apt-get install ${DEB_PACKAGES[*]} failed"
  # The package may have been set up to start at boot; that service is not ours to run, and
  # ours never uses its ports.
}

# Two distinct free TCP ports on 127.0.0.1, below the kernel's ephemeral range
# (net.ipv4.ip_local_port_range): the kernel gives those to no bind(0) and to no outgoing
# connection, so a server started again on its ports (restart, or stop then start) finds them
# free while other tests pick ports and connect. Asked of the kernel when there is no room.
free_ports() {
  if command -v python3 >/dev/null 2>&1; then
    python3 - <<'EOF'
import random, socket
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    low = 32768
rng = random.SystemRandom()
socks = []
for _ in range(200 if low > 11000 else 0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", rng.randrange(10000, low)))
    except OSError:  # taken (or the same as the first)
        s.close()
        continue
    socks.append(s)
    if len(socks) == 2:
        break
while len(socks) < 2:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
    return
  fi
  # No python3: random ports in 10000-31999 (below the usual ephemeral range) that nothing answers on.
  local picked=() p
  while [[ ${#picked[@]} -lt 2 ]]; do
    p=$((10000 + RANDOM % 22000))
    [[ ${#picked[@]} -eq 1 && ${picked[0]} -eq $p ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then picked+=("$p"); fi
  done
  echo "${picked[*]}"
}

# The pid in DIR/pid if that process is alive and is the server of DIR's config.
running_pid() {
  local dir=$1 pid
  [[ -s $dir/pid ]] || return 1
  pid=$(<"$dir/pid")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # Guard against a recycled pid: the command line must name this DIR's config. While a
  # process is inside execve, its /proc/PID/cmdline reads empty (the new image's arguments
  # are not mapped yet), and the launcher execs the server right after writing DIR/pid:
  # an empty command line is read again, not taken for another process.
  if [[ -r /proc/$pid/cmdline ]]; then
    local cmdline="" tries
    for tries in 1 2 3 4 5 6 7 8 9 10; do
      cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)
      [[ -n $cmdline ]] && break
      sleep 0.1
    done
    [[ $cmdline == *"$(cmdline_marker "$dir")"* ]] || return 1
    # A zombie or exiting process does not count.
    [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || return 1
  fi
  echo "$pid"
}

# Whether PID is a live process (a zombie, exited but not yet waited for, is not).
process_alive() {
  kill -0 "$1" 2>/dev/null && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]
}

# Start the server of an initialised DIR and wait for it to answer. 0 ok, 1 failed, 3 port in use.
launch() {
  local dir=$1 http t0 pid
  http=$(<"$dir/http_port")
  server_args "$dir"
  rm -f "$dir/pid"
  mark_logs "$dir"   # the logs are kept across starts: look only at what this one adds
  t0=$(now_ms)
  # A session of its own (no SIGINT/SIGHUP from the caller's terminal or job control), no
  # stdin, stdout/stderr into the log (so `$(server.sh start DIR)` does not wait on it),
  # without the variables of CLEAR_ENV_PREFIX. The shell writes its own pid and execs the
  # server, so DIR/pid is the server's pid. fd 9 (our lock on DIR/.lock) must not be
  # inherited, or the server would hold the lock.
  # shellcheck disable=SC2016 # expanded by the inner shell
  setsid bash -c 'if [[ -n $2 ]]; then for v in $(compgen -e); do [[ $v == "$2"* ]] && unset "$v"; done; fi
    echo $$ >"$1/pid"; shift 2; exec "$@"' _ "$dir" "${CLEAR_ENV_PREFIX:-}" \
    "${SERVER_CMD[@]}" "${SERVER_ARGS[@]}" \
    </dev/null >>"$SERVER_LOG" 2>&1 9>&- &
  local launcher=$!
  local deadline=$((t0 + START_TIMEOUT * 1000))
  while :; do
    if ping_ok "$http"; then
      pid=$(<"$dir/pid")
      say "started (pid $pid, http $http, $(started_detail "$dir")) in $(( $(now_ms) - t0 )) ms"
      return 0
    fi
    # Exited: the launcher (our child, a zombie until waited for; it execs the server, so
    # it is the server unless setsid had to fork) is gone and DIR/pid names no live server.
    # Only the launcher is waited for: a bare `wait` would wait for the server, forever.
    if ! process_alive "$launcher" && ! running_pid "$dir" >/dev/null; then
      wait "$launcher" 2>/dev/null
      port_taken "$dir" && return 3
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

# A launch that answered: after_start, then the address.
launched() {
  local dir=$1
  after_start "$dir" || { stop_server "$dir"; exit 1; }
  print_address "$dir"
}

start_server() {
  local dir=$1 pid http port2 rc attempt
  if pid=$(running_pid "$dir"); then
    http=$(<"$dir/http_port")
    if ping_ok "$http"; then
      say "already running (pid $pid)"
      print_address "$dir"
      return 0
    fi
    # Still starting (another caller), or hung: give it the usual time.
    local end=$(( $(now_ms) + START_TIMEOUT * 1000 ))
    while (($(now_ms) < end)); do
      if ping_ok "$http"; then print_address "$dir"; return 0; fi
      running_pid "$dir" >/dev/null || break
      sleep 0.2
    done
    running_pid "$dir" >/dev/null && { log_tail "$dir"; die "pid $pid does not answer /ping"; }
  fi

  if initialised "$dir"; then
    # Initialised before: same ports, same data.
    refresh_config "$dir" || die "cannot write the config in $dir"
    launch "$dir"
    rc=$?
    if [[ $rc -eq 3 ]]; then
      log_tail "$dir"
      die "port $(<"$dir/http_port") or $(<"$dir/${SECOND_PORT}_port") is taken by another process"
    fi
    [[ $rc -eq 0 ]] || exit 1
    launched "$dir"
    return 0
  fi

  # First start: pick ports; if one is grabbed between the pick and the bind, pick again.
  for attempt in 1 2 3 4 5; do
    read -r http port2 < <(free_ports) || die "cannot pick free ports"
    [[ -n ${http:-} && -n ${port2:-} ]] || die "cannot pick free ports"
    write_config "$dir" "$http" "$port2" || die "cannot write the config in $dir"
    launch "$dir"
    rc=$?
    if [[ $rc -eq 0 ]]; then
      launched "$dir"
      return 0
    fi
    [[ $rc -eq 3 ]] || exit 1
    say "ports $http/$port2 were taken before the server bound them (attempt $attempt); picking others"
    rm -f "$dir/http_port" "$dir/${SECOND_PORT}_port"
  done
  log_tail "$dir"
  die "could not bind free ports after 5 attempts"
}

private_server_main() {
  [[ $# -eq 2 ]] || usage
  local cmd=$1 system
  [[ -n $2 ]] || usage
  case $cmd in start | stop | restart | status) ;; *) usage ;; esac

  if [[ $cmd == start || $cmd == restart ]]; then
    mkdir -p "$2" || die "cannot create $2"
  fi
  [[ -d $2 ]] || die "no such directory: $2"
  DIR=$(cd "$2" && pwd -P) || die "cannot enter $2"
  for system in "${SYSTEM_DIRS[@]}"; do
    [[ $DIR == "$system" || $DIR == "$system"/* ]] && die "refusing to use the system-wide server's directory $DIR"
  done

  command -v curl >/dev/null 2>&1 || die "curl is needed"

  # One invocation at a time per DIR.
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$DIR/.lock" || die "cannot create $DIR/.lock"
    flock -w $((START_TIMEOUT + STOP_TIMEOUT + 10)) 9 || die "another server.sh holds $DIR/.lock"
  fi

  case $cmd in
    start)
      find_server || { install_server; find_server; } || die "no server binary after installing"
      start_server "$DIR"
      ;;
    stop)
      stop_server "$DIR"
      ;;
    restart)
      find_server || { install_server; find_server; } || die "no server binary after installing"
      initialised "$DIR" || say "$DIR was never started: starting it fresh"
      stop_server "$DIR"
      start_server "$DIR"
      ;;
    status)
      local pid
      if pid=$(running_pid "$DIR") && ping_ok "$(<"$DIR/http_port")"; then
        say "running (pid $pid)"
        print_address "$DIR"
      else
        say "not running ($DIR)"
        exit 1
      fi
      ;;
  esac
}
