#!/usr/bin/env python3
"""A garbage flood and its neighbour: what bad input costs the good traffic beside it.

One weir runs two http_server sources into blackholes: `flood` gets 1000-line bodies of
undecodable lines (every line a dead letter in the default dead-letter file), `good` gets
1000-event NDJSON bodies. wrk posts to `good` alone, then to both at once; the good side's
events/s in the two phases, the flood's dead letters/s, weir's CPU seconds and peak RSS are
printed, medians of --runs runs. Needs wrk (apt-get install wrk).

  python3 tools/bench/dead_letter_flood.py --build build --runs 3 --seconds 5
"""
import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from sinkbench import free_port, peak_rss_kib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def lua_post(path, body_file):
    with open(path, "w") as f:
        f.write('wrk.method = "POST"\nlocal f = io.open("%s", "rb")\nwrk.body = f:read("*a")\nf:close()\n' % body_file)


def metrics(api):
    try:
        return urllib.request.urlopen("http://127.0.0.1:%d/metrics" % api, timeout=5).read().decode()
    except OSError:
        return None


def counter(text, name, component):
    m = re.search(r'^%s\{component_id="%s"[^}]*\} (\S+)' % (name, component), text, re.M)
    return float(m.group(1)) if m else 0.0


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(weir, tmp, seconds):
    good_port, flood_port, api = free_port(), free_port(), free_port()
    cfg = os.path.join(tmp, "flood.yaml")
    shutil.rmtree(os.path.join(tmp, "data"), ignore_errors=True)
    with open(cfg, "w") as f:
        f.write("data_dir: %s/data\napi: { address: \"127.0.0.1:%d\" }\nsources:\n"
                "  good: { type: http_server, address: \"127.0.0.1:%d\", decoding: { codec: ndjson } }\n"
                "  flood: { type: http_server, address: \"127.0.0.1:%d\", decoding: { codec: ndjson } }\n"
                "sinks:\n  good_out: { type: blackhole, inputs: [good] }\n  flood_out: { type: blackhole, inputs: [flood] }\n"
                % (tmp, api, good_port, flood_port))
    proc = subprocess.Popen([weir, "run", "-c", cfg, "--log-level", "error"])
    try:
        while metrics(api) is None:
            time.sleep(0.05)

        def good_events():
            return counter(metrics(api), "weir_component_sent_events_total", "good")

        def wrk(port, lua, connections):
            return subprocess.Popen(["wrk", "-t1", "-c%d" % connections, "-d%ds" % seconds, "-s", lua,
                                     "http://127.0.0.1:%d/" % port], stdout=subprocess.DEVNULL)

        before = good_events()
        wrk(good_port, os.path.join(tmp, "good.lua"), 2).wait()
        alone = (good_events() - before) / seconds

        before = good_events()
        cpu_before = cpu_seconds(proc.pid)
        flood = wrk(flood_port, os.path.join(tmp, "flood.lua"), 4)
        wrk(good_port, os.path.join(tmp, "good.lua"), 2).wait()
        flood.wait()
        text = metrics(api)
        beside = (counter(text, "weir_component_sent_events_total", "good") - before) / seconds
        dead = counter(text, "weir_component_dead_lettered_events_total", "flood") / seconds
        cpu = cpu_seconds(proc.pid) - cpu_before
        peak = peak_rss_kib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
    return alone, beside, dead, cpu, peak


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not installed (apt-get install wrk)")
    weir = os.path.join(args.build, "weir")
    with tempfile.TemporaryDirectory(prefix="weir-flood-") as tmp:
        with open(os.path.join(tmp, "good.ndjson"), "wb") as f:
            f.write(b"".join(b'{"n": %d, "scope": "create:job", "user_id": 7}\n' % i for i in range(1000)))
        with open(os.path.join(tmp, "flood.ndjson"), "wb") as f:
            f.write(b"".join(b'{"broken": %d, not json\n' % i for i in range(1000)))
        lua_post(os.path.join(tmp, "good.lua"), os.path.join(tmp, "good.ndjson"))
        lua_post(os.path.join(tmp, "flood.lua"), os.path.join(tmp, "flood.ndjson"))
        runs = [one_run(weir, tmp, args.seconds) for _ in range(args.runs)]
    med = [statistics.median(r[i] for r in runs) for i in range(5)]
    print("good neighbour alone:          %s events/s" % "{:,.0f}".format(med[0]))
    print("good neighbour beside a flood: %s events/s (%.0f%% of alone)" % ("{:,.0f}".format(med[1]), 100 * med[1] / med[0]))
    print("the flood:                     %s dead letters/s" % "{:,.0f}".format(med[2]))
    print("weir during the flood:         %.1f CPU-s in %d s, peak RSS %.1f MiB" % (med[3], args.seconds, med[4] / 1024))
    print("(medians of %d runs: %s)" % (args.runs, "; ".join("%.0f/%.0f/%.0f" % r[:3] for r in runs)))


if __name__ == "__main__":
    main()
