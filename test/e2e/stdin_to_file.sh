#!/usr/bin/env bash
# 100k events through `cat | weir run` (stdin -> file), compared event by event; then the
# same stream with malformed lines mixed in: they are dead-lettered with their line
# numbers and every good neighbour arrives.
source "$(dirname "$0")/lib.bash"

python3 - "$WORK/in.ndjson" <<'PY'
import json, random, sys
random.seed(42)
scopes = ["change:frame", "draw:object", "zoom:image", "save:job", "click:element"]
words = ["plain", "quote\"d", "back\\slash", "new\nline", "tab\t", "żółć", "日本語", "emoji 🎉", "\u0001ctl", "/slash"]
with open(sys.argv[1], "w", encoding="utf-8") as out:
    for i in range(100000):
        e = {
            "scope": random.choice(scopes), "n": i, "source": "client",
            "timestamp": "2024-01-01T12:%02d:%02d.%03dZ" % (i // 60000 % 60, i // 1000 % 60, i % 1000),
            "user_id": random.randint(1, 50), "job_id": random.choice([None, random.randint(1, 10**6)]),
            "big": random.choice([2**63 - 1, -2**63, 2**64 - 1, 0]),
            "ratio": random.choice([0.1, 1.5, -0.0, 1e300, 5e-324, random.random()]),
            "ok": random.choice([True, False]),
            "payload": json.dumps({"frame": i, "w": random.choice(words)}),
            "text": random.choice(words),
            "nested": {"a": [1, {"b": None}, [], {}], "s": random.choice(words)},
        }
        out.write(json.dumps(e, ensure_ascii=random.random() < 0.5) + "\n")
PY

write_stdin_to_file_config

cat "$WORK/in.ndjson" | "$WEIR" run -c "$WORK/p.yaml" 2>"$WORK/log" || { cat "$WORK/log"; fail "weir exited $?"; }
python3 - "$WORK/in.ndjson" "$WORK/out.ndjson" <<'PY' || fail "output differs from input"
import json, math, sys
a = open(sys.argv[1], encoding="utf-8").read().splitlines()
b = open(sys.argv[2], encoding="utf-8").read().splitlines()
assert len(a) == 100000 and len(b) == 100000, (len(a), len(b))
def same(x, y):
    if type(x) != type(y): return False
    if isinstance(x, float): return math.copysign(1, x) == math.copysign(1, y) and x == y
    if isinstance(x, dict): return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
    if isinstance(x, list): return len(x) == len(y) and all(same(p, q) for p, q in zip(x, y))
    return x == y
for i, (x, y) in enumerate(zip(a, b)):
    if not same(json.loads(x), json.loads(y)):
        sys.exit("event %d differs:\n%s\n%s" % (i, x, y))
PY
[[ ! -e "$WORK/data/dead_letter.ndjson" ]] || fail "dead letters written for good input"
pass "100000 events round-tripped through stdin -> file"

# Malformed lines in the middle of good ones.
python3 - "$WORK/in.ndjson" "$WORK/mixed.ndjson" <<'PY'
import sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()[:1000]
bad = {10: '{"broken": ', 500: 'not json at all', 501: '[1,2,3]', 998: '{"a":1}}'}
out = []
for i, line in enumerate(lines):
    if i in bad: out.append(bad[i])
    out.append(line)
open(sys.argv[2], "w", encoding="utf-8").write("\n".join(out) + "\n")
PY
rm -f "$WORK/out.ndjson"
"$WEIR" run -c "$WORK/p.yaml" < "$WORK/mixed.ndjson" 2>"$WORK/log" || { cat "$WORK/log"; fail "weir exited $? on bad lines"; }
[[ $(wc -l < "$WORK/out.ndjson") -eq 1000 ]] || fail "expected the 1000 good events, got $(wc -l < "$WORK/out.ndjson")"
python3 - "$WORK/data/dead_letter.ndjson" <<'PY' || fail "dead letters wrong"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
assert [r["line"] for r in rows] == [11, 502, 504, 1002], [r["line"] for r in rows]
assert rows[0]["raw"] == '{"broken": ' and rows[0]["component"] == "in" and rows[0]["component_type"] == "stdin"
assert rows[0]["reason"].startswith("invalid JSON"), rows[0]["reason"]
assert rows[2]["reason"] == "expected a JSON object, got array", rows[2]["reason"]
PY
grep -q "in: 1000 events in .*, 4 dead-lettered" "$WORK/log" || { cat "$WORK/log"; fail "summary does not count the dead letters"; }
pass "4 malformed lines dead-lettered with line numbers, 1000 neighbours delivered"
