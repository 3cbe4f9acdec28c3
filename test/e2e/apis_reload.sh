#!/usr/bin/env bash
# A reload (POST /reload) that changes an API starts it anew with its new options: the old
# token stops working and the new one works, the reload names the API it rebuilt, the
# pipeline beside it keeps running, and an API added by a reload is served.
source "$(dirname "$0")/lib.bash"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
own=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
write() {  # $1: the token; $2: a second API on its own address, when "second"
  cat > "$WORK/p.yaml" <<YAML
data_dir: $WORK/data
api: { address: "127.0.0.1:$port" }
sources:
  activity: { type: demo, rate: 200, seed: 1 }
sinks:
  sink: { type: blackhole, inputs: [activity] }
apis:
  analytics:
    type: analytics
    endpoint: http://127.0.0.1:1   # no ClickHouse: access is checked before any query
    access: { tokens: ["$1"] }
YAML
  if [[ ${2:-} == second ]]; then
    cat >> "$WORK/p.yaml" <<YAML
  another:
    type: analytics
    address: 127.0.0.1:$own
    endpoint: http://127.0.0.1:1
    access: { tokens: ["$1"] }
YAML
  fi
}
status() {  # $1: token, $2: port
  curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $1" "http://127.0.0.1:${2:-$port}/api/requests/00000000-0000-0000-0000-000000000000"
}
write old-token
"$WEIR" run -c "$WORK/p.yaml" 2> "$WORK/weir.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
[[ $(status old-token) == 404 ]] || fail "the first token is not let in: $(status old-token)"
[[ $(status new-token) == 401 ]] || fail "an unknown token is let in"
pass "the API answers its token (404: no such export) and refuses another (401)"

write new-token second
outcome=$(curl -s -X POST "http://127.0.0.1:$port/reload")
echo "$outcome"
grep -q '"status":"reloaded"' <<< "$outcome" || fail "the reload did not apply: $outcome"
grep -q '"analytics"' <<< "$outcome" && grep -q '"another"' <<< "$outcome" || fail "the reload does not name the APIs it rebuilt"
[[ $(status new-token) == 404 ]] || fail "the new token is not let in after the reload: $(status new-token)"
[[ $(status old-token) == 401 ]] || fail "the old token still works after the reload"
pass "after the reload the new token is let in and the old one refused"
[[ $(status new-token "$own") == 404 ]] || fail "the API added on its own address is not served"
pass "an API added by the reload is served on its own address"
before=$(curl -s "http://127.0.0.1:$port/metrics" | awk -F' ' '/^weir_component_sent_events_total\{component_id="activity"/ { print $2 }')
sleep 1.5
after=$(curl -s "http://127.0.0.1:$port/metrics" | awk -F' ' '/^weir_component_sent_events_total\{component_id="activity"/ { print $2 }')
[[ -n $before && -n $after && ${after%.*} -gt ${before%.*} ]] || fail "the pipeline stopped ($before -> $after)"
pass "the pipeline beside them kept running ($before -> $after events)"

write new-token
outcome=$(curl -s -X POST "http://127.0.0.1:$port/reload")
grep -q '"status":"reloaded"' <<< "$outcome" || fail "removing an API did not reload: $outcome"
[[ $(status new-token "$own") == 000 ]] || fail "the removed API's own server still answers"
pass "an API removed by a reload stops serving"
kill -TERM $pid
wait $pid || fail "weir did not exit cleanly after the reloads"
grep -q "old-token\|new-token" "$WORK/weir.log" && fail "a token reached the log"
pass "weir exits cleanly; no token in its log"
