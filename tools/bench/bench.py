#!/usr/bin/env python3
"""weir's throughput benchmark.

Generates a 1M-event CVAT-like NDJSON file (with weir's own demo source), then measures,
pinned to one CPU core, with several runs each and the median reported:
  parse limit   simdjson alone over the file (weir-parse-limit: parse_many, full parse)
  decode        stdin -> blackhole                     (read, frame, decode into events)
  decode+encode stdin -> file /dev/null, JSON lines    (read, decode, encode, write)
and prints events/s, MiB/s, peak RSS and each rate as a share of the parse limit.
Peak RSS is also measured on a 3x larger input piped in, to show memory stays flat.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_measured(argv, stdin_path=None, stdin_repeat=1, cpu=None):
    """Runs argv, returns (seconds, peak RSS in KiB, stdout)."""
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu)] + argv
    start = time.perf_counter()
    if stdin_repeat == 1:
        stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
        proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        feeder = None
    else:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        feeder = proc.stdin
    if feeder:
        with open(stdin_path, "rb") as f:
            data = f.read()
        for _ in range(stdin_repeat):
            feeder.write(data)
        feeder.close()
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit("command failed: %s\n%s" % (" ".join(argv), err.decode(errors="replace")))
    return seconds, usage.ru_maxrss, out


def generate(weir, path, events):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as cfg:
        cfg.write(
            "sources:\n  gen: { type: demo, count: %d, seed: 11, users: 50, start_time: \"2024-01-01T08:00:00Z\" }\n"
            "sinks:\n  out: { type: file, inputs: [gen], path: \"%s\" }\n" % (events, path))
    subprocess.run([weir, "run", "-c", cfg.name, "--log-level", "warn"], check=True)
    os.unlink(cfg.name)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cpu", type=int, default=0, help="core to pin to (-1: no pinning)")
    args = ap.parse_args()
    cpu = None if args.cpu < 0 else args.cpu
    weir = os.path.join(args.build, "weir")
    limit = os.path.join(args.build, "weir-parse-limit")
    for tool in (weir, limit):
        if not os.access(tool, os.X_OK):
            sys.exit("%s not built: run tools/build.sh first" % tool)

    data = os.path.join(args.build, "bench", "cvat-%d.ndjson" % args.events)
    os.makedirs(os.path.dirname(data), exist_ok=True)
    if not os.path.exists(data):
        print("generating %s ..." % data, flush=True)
        generate(weir, data, args.events)
    size = os.path.getsize(data)
    with open(data, "rb") as f:
        events = sum(1 for _ in f)
    mib = size / (1 << 20)
    print("input: %d events, %.1f MiB, %.0f bytes/event" % (events, mib, size / events))
    print("cpu: pinned to core %s, %d runs each, medians\n" % ("none" if cpu is None else cpu, args.runs))

    configs = {
        "decode -> blackhole": "sources:\n  in: { type: stdin }\nsinks:\n  out: { type: blackhole, inputs: [in] }\n",
        "decode -> encode -> /dev/null": "sources:\n  in: { type: stdin }\nsinks:\n  out: { type: file, inputs: [in], path: /dev/null }\n",
    }
    tmp = tempfile.mkdtemp(prefix="weir-bench-")
    paths = {}
    for name, text in configs.items():
        path = os.path.join(tmp, name.replace(" ", "_").replace(">", "").replace("/", "") + ".yaml")
        with open(path, "w") as f:
            f.write("data_dir: %s\n%s" % (tmp, text))
        paths[name] = path
    # Runs are interleaved (limit, then each pipeline, repeated) so that a slow spell of
    # the machine hits every measurement alike and the ratios stay meaningful.
    import json
    samples = {"parse limit (simdjson)": ([], [])}
    for name in configs:
        samples["weir " + name] = ([], [])
    for _ in range(args.runs):
        _, peak, out = run_measured([limit, data], cpu=cpu)
        samples["parse limit (simdjson)"][0].append(json.loads(out)["seconds"])
        samples["parse limit (simdjson)"][1].append(peak)
        for name, path in paths.items():
            s, peak, _ = run_measured([weir, "run", "-c", path, "--log-level", "warn"], stdin_path=data, cpu=cpu)
            samples["weir " + name][0].append(s)
            samples["weir " + name][1].append(peak)
    results = [(name, statistics.median(secs), statistics.median(rss)) for name, (secs, rss) in samples.items()]

    # Memory stays flat: 3x the input through a pipe.
    big_secs, big_rss, _ = run_measured([weir, "run", "-c", paths["decode -> encode -> /dev/null"], "--log-level", "warn"], stdin_path=data,
                                        stdin_repeat=3, cpu=cpu)

    base = events / results[0][1]
    print("%-34s %14s %10s %10s %12s" % ("", "events/s", "MiB/s", "peak RSS", "of limit"))
    for name, s, peak in results:
        rate = events / s
        print("%-34s %14s %10.1f %8.1f M %11.1f%%" % (name, "{:,.0f}".format(rate), mib / s, peak / 1024,
                                                     100 * rate / base))
    print("\n3x input (%d events) piped through decode -> encode: %.2f s, peak RSS %.1f MiB"
          % (3 * events, big_secs, big_rss / 1024))
    print("weir wall times include process start, config load and shutdown; the parse limit excludes file loading.")


if __name__ == "__main__":
    main()
