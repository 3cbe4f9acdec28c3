#!/usr/bin/env python3
"""An independent check of the working_time transform: CVAT's algorithm written again here,
in Python, with integer nanoseconds, over a generated multi-user log (weir's demo source:
interleaved users, job switches, idle gaps, frame changes with durations). The totals per
(user, job, task, project) must equal the sum of the durations weir emits, to the ms."""
import json, os, subprocess, sys, tempfile
from datetime import datetime, timezone

WEIR = sys.argv[1]
WORK = tempfile.mkdtemp(prefix="weir-wt-")
log = os.path.join(WORK, "log.ndjson")
out = os.path.join(WORK, "out.ndjson")
with open(os.path.join(WORK, "gen.yaml"), "w") as f:
    f.write("sources:\n  gen: { type: demo, count: 50000, users: 12, seed: 99, start_time: \"2024-03-01T08:00:00Z\" }\n"
            "sinks:\n  out: { type: file, inputs: [gen], path: \"%s\" }\n" % log)
subprocess.run([WEIR, "run", "-c", os.path.join(WORK, "gen.yaml"), "--log-level", "warn"], check=True)
with open(os.path.join(WORK, "wt.yaml"), "w") as f:
    f.write("data_dir: %s/data\nsources:\n  in: { type: stdin }\n"
            "transforms:\n  wt: { type: working_time, inputs: [in] }\n"
            "sinks:\n  out: { type: file, inputs: [wt], path: \"%s\" }\n" % (WORK, out))
with open(log) as stdin:
    subprocess.run([WEIR, "run", "-c", os.path.join(WORK, "wt.yaml"), "--log-level", "warn"], stdin=stdin, check=True)


def nanos(text):
    # "2024-03-01T08:00:01.234Z": whole seconds from datetime, the fraction as an integer.
    base, frac = text.rstrip("Z").split(".")
    seconds = int(datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp())
    return seconds * 10**9 + int(frac.ljust(9, "0"))


THRESHOLD = 100 * 10**9
expected = {}
state = {}
for line in open(log):
    e = json.loads(line)
    if e.get("source") != "client" or e.get("user_id") is None or e.get("scope") == "send:working_time":
        continue
    ts = nanos(e["timestamp"])
    end = ts + (e.get("duration") or 0) * 10**6 if e["scope"] == "change:frame" else ts
    ids = (e.get("job_id"), e.get("task_id"), e.get("project_id"))
    user = e["user_id"]
    prev_end, prev_ids = state.get(user, (ts, ids))
    wt = 0
    if ts > prev_end:
        if ts - prev_end < THRESHOLD:
            wt += ts - prev_end
        prev_end = ts
    if end > prev_end:
        wt += end - prev_end
        prev_end = end
    key = (user,) + prev_ids
    expected[key] = expected.get(key, 0) + wt
    state[user] = (prev_end, ids)

got = {}
passed_through = 0
for line in open(out):
    e = json.loads(line)
    if e["scope"] == "send:working_time" and e["source"] == "server":
        key = (e["user_id"], e["job_id"], e["task_id"], e["project_id"])
        got[key] = got.get(key, 0) + e["duration"]
        assert json.loads(e["payload"])["working_time"] == e["duration"]
    else:
        passed_through += 1

expected_ms = {k: v // 10**6 for k, v in expected.items() if v // 10**6 > 0}
got = {k: v for k, v in got.items() if v > 0}
ok = got == expected_ms and passed_through == 50000
print("working_time vs an independent Python implementation: %d keys, %.1f hours in all: %s"
      % (len(expected_ms), sum(expected_ms.values()) / 3.6e6, "same to the ms" if ok else "DIFFERENT"))
if not ok:
    for k in sorted(set(got) | set(expected_ms)):
        if got.get(k) != expected_ms.get(k):
            print("  key %s: weir %s, python %s" % (k, got.get(k), expected_ms.get(k)))
print("1 passed, 0 failed" if ok else "0 passed, 1 failed")
sys.exit(0 if ok else 1)
