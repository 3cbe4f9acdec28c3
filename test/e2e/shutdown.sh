#!/usr/bin/env bash
# SIGTERM and SIGINT drain: sources stop, the sink flushes, weir exits 0 well inside the
# deadline, and every event it generated is in the file. stdin EOF ends a pipeline by itself.
source "$(dirname "$0")/lib.bash"

for sig in TERM INT; do
  cat > "$WORK/p.yaml" <<YAML
data_dir: $WORK/data
sources:
  gen: { type: demo, count: 0, rate: 20000 }
sinks:
  out: { type: file, inputs: [gen], path: "$WORK/$sig.ndjson" }
YAML
  "$WEIR" run -c "$WORK/p.yaml" 2>"$WORK/log" &
  pid=$!
  sleep 1
  start=$(date +%s%N)
  kill -"$sig" "$pid"
  set +e
  wait "$pid"
  rc=$?
  set -e
  elapsed_ms=$((($(date +%s%N) - start) / 1000000))
  [[ $rc -eq 0 ]] || { cat "$WORK/log"; fail "SIG$sig: exit $rc"; }
  ((elapsed_ms < 5000)) || fail "SIG$sig: drain took ${elapsed_ms}ms"
  sent=$(sed -nE 's/.* gen: ([0-9]+) events in .*/\1/p' "$WORK/log")
  lines=$(wc -l < "$WORK/$sig.ndjson")
  [[ -n $sent && $sent -gt 0 && $sent -eq $lines ]] || { cat "$WORK/log"; fail "SIG$sig: generated $sent, file has $lines"; }
  grep -q "received SIG$sig" "$WORK/log" || fail "SIG$sig not logged"
  pass "SIG$sig drained $lines events in ${elapsed_ms}ms, exit 0"
done

# A slow producer: weir waits for EOF, then exits 0 by itself with everything written.
cat > "$WORK/p.yaml" <<YAML
data_dir: $WORK/data
sources:
  in: { type: stdin, decoding: { codec: text } }
sinks:
  out: { type: file, inputs: [in], path: "$WORK/slow.ndjson" }
YAML
(echo "first"; sleep 0.5; printf 'second\nno newline at end') | timeout 10 "$WEIR" run -c "$WORK/p.yaml" 2>"$WORK/log" ||
  { cat "$WORK/log"; fail "stdin pipeline did not exit 0 at EOF"; }
diff <(printf '%s\n' '{"message":"first"}' '{"message":"second"}' '{"message":"no newline at end"}') "$WORK/slow.ndjson" ||
  fail "text lines differ"
pass "stdin EOF ends the pipeline; the unterminated last line is kept"

# Empty stdin (CI has none): exits 0 at once.
timeout 10 "$WEIR" run -c "$WORK/p.yaml" </dev/null 2>"$WORK/log" || { cat "$WORK/log"; fail "empty stdin"; }
pass "empty stdin exits 0"

# A sink that cannot finish (stdout is a pipe nobody reads): the drain deadline ends it,
# with exit 1 and the busy component named.
mkfifo "$WORK/stuck"
exec 3<>"$WORK/stuck"   # held open for reading, never read: writes block once it is full
cat > "$WORK/p.yaml" <<YAML
data_dir: $WORK/data
shutdown_timeout: 1s
sources:
  gen: { type: demo, count: 0, rate: 0 }
sinks:
  out: { type: console, inputs: [gen] }
YAML
"$WEIR" run -c "$WORK/p.yaml" >"$WORK/stuck" 2>"$WORK/log" &
pid=$!
sleep 0.5
start=$(date +%s%N)
kill -TERM "$pid"
set +e
wait "$pid"
rc=$?
set -e
exec 3>&-
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
[[ $rc -eq 1 ]] || { cat "$WORK/log"; fail "stuck drain exited $rc"; }
((elapsed_ms >= 900 && elapsed_ms < 4000)) || fail "stuck drain took ${elapsed_ms}ms, deadline 1s"
grep -q "drain deadline passed; still busy: out" "$WORK/log" || { cat "$WORK/log"; fail "busy component not named"; }
pass "a sink that cannot drain is cut off at shutdown_timeout (${elapsed_ms}ms), exit 1"

# `weir run ... | head`: once the reader is gone the console sink stops the pipeline.
cat > "$WORK/p.yaml" <<YAML
data_dir: $WORK/data
sources:
  gen: { type: demo, count: 0, rate: 0 }
sinks:
  out: { type: console, inputs: [gen] }
YAML
start=$(date +%s%N)
set +e
timeout 20 "$WEIR" run -c "$WORK/p.yaml" 2>"$WORK/log" | head -3 >"$WORK/head.out"
rc=${PIPESTATUS[0]}
set -e
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
[[ $rc -eq 1 ]] || { tail "$WORK/log"; fail "weir | head exited $rc (124 means it never stopped)"; }
[[ $(wc -l < "$WORK/head.out") -eq 3 ]] || fail "head got no lines"
grep -q "output closed (EPIPE): stopping the pipeline" "$WORK/log" || { tail "$WORK/log"; fail "EPIPE not reported"; }
pass "weir | head stops in ${elapsed_ms}ms once the pipe closes"

# stdin as a TCP socket (inetd/systemd socket activation): read as a stream, and SIGTERM
# stops it even though the peer never closes.
python3 - "$WEIR" "$WORK" <<'PY' || fail "socket stdin"
import os, signal, socket, subprocess, sys, time
weir, work = sys.argv[1], sys.argv[2]
with open(work + "/sock.yaml", "w") as f:
    f.write("data_dir: %s/data\nsources:\n  in: { type: stdin }\nsinks:\n  out: { type: file, inputs: [in], path: %s/sock.ndjson }\n" % (work, work))
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(1)
client = socket.create_connection(server.getsockname())
conn, _ = server.accept()
proc = subprocess.Popen([weir, "run", "-c", work + "/sock.yaml"], stdin=conn.fileno(), stderr=subprocess.PIPE)
conn.close()
client.sendall(b'{"n":1}\n{"n":2}\n')
deadline = time.time() + 10
while time.time() < deadline:
    if os.path.exists(work + "/sock.ndjson") and open(work + "/sock.ndjson").read().count("\n") == 2:
        break
    time.sleep(0.05)
proc.send_signal(signal.SIGTERM)
try:
    rc = proc.wait(timeout=10)
except subprocess.TimeoutExpired:
    proc.kill()
    sys.exit("weir did not stop with stdin on an idle socket")
err = proc.stderr.read().decode()
assert rc == 0, (rc, err)
assert open(work + "/sock.ndjson").read() == '{"n":1}\n{"n":2}\n'
client.close()
PY
pass "stdin on a TCP socket is read as a stream and stops on SIGTERM"
