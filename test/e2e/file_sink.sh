#!/usr/bin/env bash
# The file sink: path templates by field and by event time, CSV with quoting and header.
source "$(dirname "$0")/lib.bash"

cat > "$WORK/in.ndjson" <<'NDJSON'
{"user_id": 1, "timestamp": "2024-01-01T23:59:59.999Z", "scope": "draw:object", "payload": "{\"a\": 1}"}
{"user_id": 2, "timestamp": "2024-01-02T00:00:00Z", "scope": "say \"hi\", ok", "payload": null}
{"user_id": 1, "timestamp": "2024-01-02T10:00:00+02:00", "scope": "x", "nested": {"k": [1, 2]}}
{"timestamp": "2024-01-02T10:00:00Z", "scope": "no user"}
{"user_id": "../..", "timestamp": "2024-01-03T00:00:00Z", "scope": "sneaky"}
NDJSON
cat > "$WORK/p.yaml" <<YAML
data_dir: $WORK/data
sources:
  in: { type: stdin }
sinks:
  by_user:
    type: file
    inputs: [in]
    path: "$WORK/out/user-{{ user_id }}/%Y-%m-%d.csv"
    encoding:
      codec: csv
      csv: { fields: [user_id, scope, payload, nested], header: true }
YAML
"$WEIR" run -c "$WORK/p.yaml" < "$WORK/in.ndjson" 2>"$WORK/log" || { cat "$WORK/log"; fail "exit $?"; }
diff "$WORK/out/user-1/2024-01-01.csv" - <<'CSV' || fail "user 1, Jan 1"
user_id,scope,payload,nested
1,draw:object,"{""a"": 1}",
CSV
diff "$WORK/out/user-1/2024-01-02.csv" - <<'CSV' || fail "user 1, Jan 2 (offset converted to UTC)"
user_id,scope,payload,nested
1,x,,"{""k"":[1,2]}"
CSV
diff "$WORK/out/user-2/2024-01-02.csv" - <<'CSV' || fail "user 2"
user_id,scope,payload,nested
2,"say ""hi"", ok",,
CSV
[[ -f "$WORK/out/user-.._../2024-01-03.csv" ]] || { find "$WORK/out"; fail "a field value must not climb directories"; }
grep -q '"reason":"path template field .user_id. is missing","event":{"timestamp":"2024-01-02T10:00:00Z","scope":"no user"}' \
  "$WORK/data/dead_letter.ndjson" || fail "event without the template field not dead-lettered"
pass "path templates, CSV quoting and header, dead letter for a missing field"
