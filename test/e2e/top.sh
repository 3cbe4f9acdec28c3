#!/usr/bin/env bash
# `weir top` in a terminal (tmux): against a weir running a paced demo pipeline, the table
# appears with its components, their rates are above zero and change from one refresh to
# the next, a key re-sorts it, and q quits.
set -euo pipefail
weir=$(realpath "$1")
work=$(mktemp -d /tmp/weir-top.XXXXXX)
session="weir-top-$$"
cleanup() {
  tmux kill-session -t "$session" 2>/dev/null || true
  [[ -n ${pid:-} ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
passed=0; failed=0
check() { if eval "$2"; then echo "ok: $1"; passed=$((passed + 1)); else echo "FAIL: $1"; failed=$((failed + 1)); fi; }

api=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/p.yaml" <<YAML
data_dir: $work/data
api: { address: "127.0.0.1:$api" }
sources:
  activity: { type: demo, rate: 2000, seed: 1 }
transforms:
  wt: { type: working_time, inputs: [activity], idle_after: 1s }
sinks:
  sink: { type: blackhole, inputs: [wt] }
YAML
"$weir" run -c "$work/p.yaml" 2> "$work/weir.log" &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$api/health" >/dev/null && break; sleep 0.1; done

# (remain-on-exit off: the session ends with weir top)
tmux new-session -d -s "$session" -x 160 -y 30 "$weir top --api 127.0.0.1:$api --interval 1s"
screen() { tmux capture-pane -p -t "$session"; }
rate_of() { screen | awk -v c="$1" '$1 == c { print $4 }'; }
for _ in $(seq 50); do [[ -n $(rate_of activity) && $(rate_of activity) != 0 ]] && break; sleep 0.2; done
first=$(screen)
echo "$first" | head -8
check "the table names every component with kind and type" \
  'grep -qE "^activity +source +demo" <<< "$first" && grep -qE "^wt +transform +working_time" <<< "$first" && grep -qE "^sink +sink +blackhole" <<< "$first"'
r1=$(rate_of activity)
check "the source's rate is above zero ($r1/s)" '[[ -n $r1 && $r1 != 0 ]]'
t1=$(screen | awk '$1 == "activity" { print $6 }')
for _ in $(seq 50); do t2=$(screen | awk '$1 == "activity" { print $6 }'); [[ -n $t2 && $t2 != "$t1" ]] && break; sleep 0.2; done
check "the totals move between refreshes ($t1 -> $t2)" '[[ -n $t1 && -n $t2 && $t1 != "$t2" ]]'
check "the buffer column shows the sink's capacity" 'screen | grep -E "^sink " | grep -qE "/4.1k"'
# Waits up to 15 s for a condition (a refresh is an interval plus a scrape; the machine may be busy).
eventually() { for _ in $(seq 75); do eval "$1" && return 0; sleep 0.2; done; return 1; }
tmux send-keys -t "$session" e
check "a key re-sorts it (e: by errors)" 'eventually "screen | grep -q \"sorted by errors\""'
tmux send-keys -t "$session" q
check "q quits" 'eventually "! tmux has-session -t \"$session\" 2>/dev/null"'
echo "weir top | head ends when head has its lines:"
check "its reader gone, weir top ends" 'timeout 20 bash -c "\"$weir\" top --api 127.0.0.1:$api --interval 200ms | head -3 >/dev/null"'
echo "weir top checks: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
