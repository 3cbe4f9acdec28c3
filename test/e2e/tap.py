#!/usr/bin/env python3
"""weir tap against a running weir under load (a demo source as fast as the pipeline goes,
request_id, a blackhole): the pipeline's rate with a tap running stays within a bound of its
rate without (windows interleaved, medians); a 10 s recording holds the sampled events, the
tap reports its sample sizes, and the recording replays; bad names are refused clearly."""
import json, os, shutil, statistics, subprocess, sys, tempfile, time, urllib.request

import harness
from harness import check, finish, free_port

WEIR = os.path.abspath(sys.argv[1])
WORK = tempfile.mkdtemp(prefix="weir-tap-")
API = free_port()


def received():
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % API, timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith('weir_component_received_events_total{component_id="out"'):
            return float(line.split()[-1])
    raise RuntimeError("no metric")


def rate(seconds=2.0):
    a, t0 = received(), time.time()
    time.sleep(seconds)
    return (received() - a) / (time.time() - t0)


weir = None
try:
    cfg = os.path.join(WORK, "p.yaml")
    with open(cfg, "w") as f:
        f.write('data_dir: %s/data\napi: { address: "127.0.0.1:%d" }\nsources:\n'
                '  gen: { type: demo, count: 0, rate: 0, users: 20, seed: 5, start_time: "2024-01-01T00:00:00Z" }\n'
                'transforms:\n  ids: { type: request_id, inputs: [gen] }\n'
                'sinks:\n  out: { type: blackhole, inputs: [ids] }\n' % (WORK, API))
    weir = subprocess.Popen([WEIR, "run", "-c", cfg, "--log-level", "warn"])
    check("weir is up", harness.wait_for(lambda: received() > 0, 20))
    tap_cmd = [WEIR, "tap", "--api", "127.0.0.1:%d" % API, "ids", "--limit", "2000", "--interval", "1s"]

    without, with_tap = [], []
    for _ in range(3):
        without.append(rate())
        tap = subprocess.Popen(tap_cmd + ["--output", os.devnull], stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        with_tap.append(rate())
        tap.terminate()
        tap.wait(10)
    ratio = statistics.median(with_tap) / statistics.median(without)
    print("events/s without a tap %s, with %s: ratio %.3f" % ([round(r) for r in without], [round(r) for r in with_tap], ratio))
    # The bound here is loose for a shared CI machine; the measured figure is in docs/replay.md.
    check("a running tap leaves the pipeline's rate within 15%% (%.1f%%)" % ((1 - ratio) * 100), ratio >= 0.85,
          (without, with_tap))

    recording = os.path.join(WORK, "recording.ndjson")
    t = subprocess.run(tap_cmd + ["--duration", "10s", "--output", recording], capture_output=True, text=True, timeout=60)
    lines = open(recording).read().splitlines()
    reports = [l for l in t.stderr.splitlines() if l.startswith("tap: ")]
    check("10 s recorded: 2000 events a 1 s interval, each reported with its sample size",
          t.returncode == 0 and 9 <= len(reports) <= 11 and len(lines) == 2000 * len(reports)
          and all(r.startswith("tap: 2000 of ") for r in reports), (t.returncode, len(lines), reports[:3], t.stderr[-500:]))
    parsed = [json.loads(l) for l in lines]
    check("the recording is the events, with their request ids",
          all("payload" in e and '"request":{"id":' in e["payload"] for e in parsed))

    out = os.path.join(WORK, "replayed")
    plain = os.path.join(WORK, "plain.yaml")
    with open(plain, "w") as f:
        f.write("sources:\n  in: { type: stdin }\nsinks:\n  out: { type: file, inputs: [in], path: /nonexistent/x }\n")
    r = subprocess.run([WEIR, "replay", "-c", plain, "--input", recording, "--capture", out], capture_output=True, text=True)
    replayed = open(os.path.join(out, "out.ndjson")).read().splitlines()
    check("the recording replays, event for event", r.returncode == 0 and replayed == lines, r.stdout + r.stderr)

    bad = subprocess.run([WEIR, "tap", "--api", "127.0.0.1:%d" % API, "nope"], capture_output=True, text=True, timeout=30)
    check("an unknown component is refused, by name", bad.returncode != 0 and "no component 'nope'" in bad.stderr, bad.stderr)
    sink = subprocess.run([WEIR, "tap", "--api", "127.0.0.1:%d" % API, "out"], capture_output=True, text=True, timeout=30)
    check("a sink is refused: its events leave weir", sink.returncode != 0 and "is a sink" in sink.stderr, sink.stderr)
finally:
    if weir is not None:
        weir.terminate()
        weir.wait(30)
    shutil.rmtree(WORK, ignore_errors=True)

finish("tap")
