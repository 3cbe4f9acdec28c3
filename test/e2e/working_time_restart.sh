#!/usr/bin/env bash
# working_time keeps its per-user clocks across a restart: the recorded 8-user session in two
# runs on one data_dir gives the same totals, to the ms, as one run; without the saved state
# (a fresh data_dir for the second run) it does not, which shows the check can fail.
source "$(dirname "$0")/lib.bash"
LOG="${WEIR_SOURCE_DIR:-$(dirname "$0")/../..}/examples/cvat-multi-user.ndjson"
total=$(wc -l < "$LOG")
half=$((total / 2))
config() {  # data dir, output
  cat > "$WORK/p.yaml" <<YAML
data_dir: $1
sources:
  in: { type: stdin }
transforms:
  wt: { type: working_time, inputs: [in] }
sinks:
  out: { type: file, inputs: [wt], path: "$2" }
YAML
}
totals() {  # per user: the sum of the emitted working time, in ms
  python3 -c '
import collections, json, sys
t = collections.Counter()
for path in sys.argv[1:]:
    for line in open(path):
        e = json.loads(line)
        if e.get("scope") == "send:working_time" and e.get("source") == "server":
            t[e["user_id"]] += e["duration"]
print(json.dumps(sorted(t.items())))' "$@"
}
config "$WORK/one" "$WORK/whole.ndjson"
"$WEIR" run -c "$WORK/p.yaml" < "$LOG" 2>"$WORK/log" || { cat "$WORK/log"; fail "one run"; }
config "$WORK/two" "$WORK/first.ndjson"
head -n "$half" "$LOG" | "$WEIR" run -c "$WORK/p.yaml" 2>"$WORK/log" || { cat "$WORK/log"; fail "first half"; }
[[ -s "$WORK/two/state/wt.0" || -s "$WORK/two/state/wt.1" ]] || fail "no state saved"
config "$WORK/two" "$WORK/second.ndjson"
tail -n +"$((half + 1))" "$LOG" | "$WEIR" run -c "$WORK/p.yaml" 2>"$WORK/log" || { cat "$WORK/log"; fail "second half"; }
grep -q "wt: state restored" "$WORK/log" || { cat "$WORK/log"; fail "state not restored"; }
whole=$(totals "$WORK/whole.ndjson")
split=$(totals "$WORK/first.ndjson" "$WORK/second.ndjson")
[[ "$whole" == "$split" ]] || fail "totals differ after a restart: $whole vs $split"
pass "a restart keeps the totals: $whole"
config "$WORK/fresh" "$WORK/second-fresh.ndjson"
tail -n +"$((half + 1))" "$LOG" | "$WEIR" run -c "$WORK/p.yaml" 2>"$WORK/log" || fail "fresh second half"
lost=$(totals "$WORK/first.ndjson" "$WORK/second-fresh.ndjson")
[[ "$whole" != "$lost" ]] || fail "without the state the totals should differ (the check cannot fail)"
pass "without the saved state they differ: $lost"
