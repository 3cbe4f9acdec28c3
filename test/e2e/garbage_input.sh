#!/usr/bin/env bash
# Random bytes and truncated JSON on stdin: weir neither crashes nor loses anything. Every
# non-blank line is either delivered or dead-lettered, and the counts add up.
source "$(dirname "$0")/lib.bash"

python3 - "$WORK/in.bin" <<'PY'
import json, random, sys
random.seed(7)
good = json.dumps({"scope": "draw:object", "user_id": 1, "s": "żółć \"q\""})
lines = []
for i in range(20000):
    r = random.random()
    if r < 0.4:
        lines.append(good.encode())
    elif r < 0.6:
        lines.append(good[: random.randint(0, len(good) - 1)].encode())          # truncated
    elif r < 0.8:
        lines.append(bytes(random.randrange(256) for _ in range(random.randint(1, 200))).replace(b"\n", b" "))
    elif r < 0.9:
        lines.append(random.choice([b"null", b"42", b'"str"', b"[{}]", b"{}", b"{\"a\":1e999}", b"{\"a\":\"\\ud800\"}"]))
    else:
        lines.append(b"{\"deep\":" + b"[" * 3000 + b"]" * 3000 + b"}")          # very deep
open(sys.argv[1], "wb").write(b"\n".join(lines) + b"\n")
PY
write_stdin_to_file_config
"$WEIR" run -c "$WORK/p.yaml" < "$WORK/in.bin" 2>"$WORK/log" || { tail "$WORK/log"; fail "weir exited $? on garbage"; }
python3 - "$WORK/in.bin" "$WORK/out.ndjson" "$WORK/data/dead_letter.ndjson" <<'PY' || fail "counts do not add up"
import json, sys
lines = open(sys.argv[1], "rb").read().split(b"\n")[:-1]
nonblank = [l for l in lines if l.strip(b" \t\r")]
out = open(sys.argv[2], encoding="utf-8").read().splitlines()
dead = [json.loads(l) for l in open(sys.argv[3], encoding="utf-8")]
for l in out: json.loads(l)   # everything written is valid JSON
assert len(out) + len(dead) == len(nonblank), (len(out), len(dead), len(nonblank))
assert all(d["line"] >= 1 and d["reason"] for d in dead)
print("delivered %d, dead-lettered %d of %d lines" % (len(out), len(dead), len(nonblank)))
PY
pass "garbage input: every line delivered or dead-lettered, no crash"
