#!/usr/bin/env bash
# enrich's lookup table is replaced while events flow: later events get the new values,
# none is lost, and a broken replacement keeps the old table.
source "$(dirname "$0")/lib.bash"

printf 'user_id,user_name\n1000,old-a\n1001,old-b\n' > "$WORK/users.csv"
cat > "$WORK/p.yaml" <<YAML
data_dir: $WORK/data
sources:
  gen: { type: demo, count: 3000, rate: 1500, users: 2, seed: 3 }
transforms:
  names:
    type: enrich
    inputs: [gen]
    lookup: { file: "$WORK/users.csv", key_field: user_id, fields: [user_name], reload_interval: 100ms }
sinks:
  out: { type: file, inputs: [names], path: "$WORK/out.ndjson" }
YAML
"$WEIR" run -c "$WORK/p.yaml" 2>"$WORK/log" &
pid=$!
sleep 0.6
printf 'user_id,user_name\n1000,this row is broken,extra\n' > "$WORK/broken.csv"
mv "$WORK/broken.csv" "$WORK/users.csv"        # a bad file: the old table stays
sleep 0.4
printf 'user_id,user_name\n1000,new-a\n1001,new-b\n' > "$WORK/next.csv"
mv "$WORK/next.csv" "$WORK/users.csv"          # atomic replacement
wait "$pid" || { cat "$WORK/log"; fail "weir exited $?"; }
python3 - "$WORK/out.ndjson" <<'PY' || fail "reload"
import json, sys
names = [json.loads(l)["user_name"] for l in open(sys.argv[1])]
assert len(names) == 3000, len(names)
first_new = next(i for i, n in enumerate(names) if n.startswith("new-"))
assert all(n.startswith("old-") for n in names[:first_new]), "old names after the switch"
assert all(n.startswith("new-") for n in names[first_new:]), "old names after the switch"
assert 500 < first_new < 2900, first_new
print("switched at event %d of %d" % (first_new, len(names)))
PY
grep -q "reloading the lookup table failed, keeping the old one" "$WORK/log" || { cat "$WORK/log"; fail "broken table not reported"; }
pass "lookup table reloaded under traffic; a broken file kept the old table; 3000 of 3000 events"
