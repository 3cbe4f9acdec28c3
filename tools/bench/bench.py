#!/usr/bin/env python3
"""weir's throughput benchmark.

Generates a 1M-event CVAT-like NDJSON file (with weir's own demo source), then measures,
pinned to one CPU core, with several runs each and the median reported:
  parse limit   simdjson alone over the file (weir-parse-limit: the faster of parse_many and one parse per line)
  decode        stdin -> blackhole                     (read, frame, decode into events)
  decode+encode stdin -> file /dev/null, JSON lines    (read, decode, encode, write)
  transforms    request_id -> working_time -> enrich, timed alone (weir-transform-bench:
                decode untimed, only the transforms' process() calls)
  disk buffer   decode+encode and the transforms with the sink's input in a disk buffer,
                with `sync: always` (fdatasync per group of batches) and `sync: os`
  plugins       the plugin ABI's cost: a no-op and a field rewrite built in and loaded from
                weir-bench-plugins.so (tools/bench/plugins/), alone and, for the no-ops, in a pipeline
and prints events/s, MiB/s, peak RSS and each rate as a share of the parse limit.
Peak RSS is also measured on a 3x larger input piped in, to show memory stays flat.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from sinkbench import free_port, peak_rss_kib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def watch_peak_rss(pid, peak):
    """Reads the process's VmHWM every 10 ms until it exits; peak[0] keeps the last value.
    (wait4's ru_maxrss would not do: it keeps the high-water mark of the forked Python from
    before exec, ~22 MiB, which hid every smaller peak.)"""
    while True:
        try:
            peak[0] = max(peak[0], peak_rss_kib(pid))
        except OSError:
            return
        time.sleep(0.01)


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
    peak = [0]
    watcher = threading.Thread(target=watch_peak_rss, args=(proc.pid, peak), daemon=True)
    watcher.start()
    if feeder:
        with open(stdin_path, "rb") as f:
            data = f.read()
        for _ in range(stdin_repeat):
            feeder.write(data)
        feeder.close()
    out = proc.stdout.read()
    err = proc.stderr.read()
    status = proc.wait()
    seconds = time.perf_counter() - start
    watcher.join(timeout=1)  # growth in the process's last 10 ms is not seen
    if status != 0:
        sys.exit("command failed: %s\n%s" % (" ".join(argv), err.decode(errors="replace")))
    return seconds, peak[0], out


def generate(weir, path, events):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as cfg:
        cfg.write(
            "sources:\n  gen: { type: demo, count: %d, seed: 11, users: 50, start_time: \"2024-01-01T08:00:00Z\" }\n"
            "sinks:\n  out: { type: file, inputs: [gen], path: \"%s\" }\n" % (events, path))
    subprocess.run([weir, "run", "-c", cfg.name, "--log-level", "warn"], check=True)
    os.unlink(cfg.name)


def blackhole_count(api_port):
    import urllib.request
    try:
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % api_port, timeout=1).read().decode()
    except OSError:
        return -1
    for line in text.splitlines():
        if line.startswith('weir_component_received_events_total{component_id="out"'):
            return int(line.rsplit(" ", 1)[1])
    return -1


def measure_file_source(weir, data, events, tmp, cpu, runs):
    """Seconds (median) a file source takes to read every line into a blackhole, scaled from
    the events counted between the first and the last look at /metrics."""
    import signal
    secs = []
    for i in range(runs):
        api = free_port()
        cfg = os.path.join(tmp, "file-%d.yaml" % i)
        with open(cfg, "w") as f:
            f.write("data_dir: %s/file-data-%d\napi: { address: \"127.0.0.1:%d\" }\n"
                    "sources:\n  in: { type: file, include: [\"%s\"], poll_interval: 10ms }\n"
                    "sinks:\n  out: { type: blackhole, inputs: [in] }\n" % (tmp, i, api, data))
        argv = [weir, "run", "-c", cfg, "--log-level", "warn"]
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + argv
        proc = subprocess.Popen(argv)
        # Timed from the first events seen to the last, so that process start and the
        # first poll do not count: the rate of reading, decoding and delivering.
        first_count, first_at = 0, None
        while True:
            count = blackhole_count(api)
            now = time.perf_counter()
            if first_at is None and count > 0:
                first_count, first_at = count, now
            if count >= events:
                break
            time.sleep(0.02)
        secs.append((now - first_at) * events / max(1, events - first_count))
        proc.send_signal(signal.SIGTERM)
        proc.wait()
    return statistics.median(secs)


def measure_http(weir, data, tmp, seconds):
    """http_server -> blackhole under wrk posting 1000-event NDJSON bodies (not pinned: wrk
    needs a core of its own)."""
    import shutil
    import signal
    if not shutil.which("wrk"):
        print("\nhttp_server: wrk not installed (apt-get install wrk); skipped")
        return
    with open(data, "rb") as f:
        body = b"".join(f.readline() for _ in range(1000))
    body_path = os.path.join(tmp, "body.ndjson")
    with open(body_path, "wb") as f:
        f.write(body)
    lua = os.path.join(tmp, "post.lua")
    with open(lua, "w") as f:
        f.write('wrk.method = "POST"\nlocal f = io.open("%s", "rb")\nwrk.body = f:read("*a")\nf:close()\n'
                'wrk.headers["Content-Type"] = "application/x-ndjson"\n'
                'done = function(summary, latency, requests)\n'
                '  io.write(string.format("wrk: %%d requests, %%d errors, p50 %%.1f ms, p99 %%.1f ms\\n", '
                'summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read + '
                'summary.errors.write + summary.errors.timeout, latency:percentile(50) / 1000, latency:percentile(99) / 1000))\n'
                'end\n' % body_path)
    port, api = free_port(), free_port()
    cfg = os.path.join(tmp, "http.yaml")
    with open(cfg, "w") as f:
        f.write("data_dir: %s/http-data\napi: { address: \"127.0.0.1:%d\" }\n"
                "sources:\n  in: { type: http_server, address: \"127.0.0.1:%d\", decoding: { codec: ndjson } }\n"
                "sinks:\n  out: { type: blackhole, inputs: [in] }\n" % (tmp, api, port))
    proc = subprocess.Popen([weir, "run", "-c", cfg, "--log-level", "warn"])
    while blackhole_count(api) < 0:
        time.sleep(0.02)
    run = subprocess.run(["wrk", "-t1", "-c8", "-d%ds" % seconds, "-s", lua, "http://127.0.0.1:%d/" % port],
                         capture_output=True, text=True)
    delivered = blackhole_count(api)
    peak_kib = peak_rss_kib(proc.pid)
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    summary = [l for l in run.stdout.splitlines() if l.startswith("wrk:") or "Requests/sec" in l]
    print("\nhttp_server -> blackhole, wrk 1 thread, 8 connections, %d s, 1000-event NDJSON bodies (%.0f KiB):"
          % (seconds, len(body) / 1024))
    for line in summary:
        print("  " + line.strip())
    print("  delivered %d events: %s events/s; weir peak RSS %.1f MiB"
          % (delivered, "{:,.0f}".format(delivered / seconds), peak_kib / 1024))


def measure_lookup_load(weir, folder, tmp):
    """Wall time of a run that only loads a 1M-row CSV lookup table (stdin is empty)."""
    table = os.path.join(folder, "users-1m.csv")
    if not os.path.exists(table):
        with open(table, "w") as f:
            f.write("user_id,user_name,user_email,org_id,org_slug\n")
            for i in range(1_000_000):
                f.write("%d,user%d,user%d@example.org,%d,org-%d\n" % (i, i, i, i % 97, i % 97))
    cfg = os.path.join(tmp, "lookup.yaml")
    with open(cfg, "w") as f:
        f.write("data_dir: %s\nsources:\n  in: { type: stdin }\n"
                "transforms:\n  names: { type: enrich, inputs: [in], lookup: { file: \"%s\", key_field: user_id } }\n"
                "sinks:\n  out: { type: blackhole, inputs: [names] }\n" % (tmp, table))
    secs = []
    peak = 0
    for _ in range(3):
        s, rss, _ = run_measured([weir, "run", "-c", cfg, "--log-level", "warn"], stdin_path=os.devnull)
        secs.append(s)
        peak = max(peak, rss)
    print("enrich: 1M-row CSV lookup table (%.0f MiB) loaded and the run done in %.2f s (median of 3), peak RSS %.0f MiB"
          % (os.path.getsize(table) / 2**20, statistics.median(secs), peak / 1024))


def measure_plugin_overhead(weir, transform_bench, plugins_so, data, events, tmp, cpu, runs):
    """The plugin ABI's cost: the same no-op and field rewrite (user_name -> "u-" + user_name)
    built into weir-transform-bench and loaded from build/weir-bench-plugins.so, on the SDK.
    The transforms alone (weir-transform-bench) and, for the no-ops, whole pipelines."""
    import json
    if not os.path.exists(plugins_so):
        print("\nplugin overhead: %s not built" % plugins_so)
        return
    paths = {}
    # weir itself has no no-op transform: in whole pipelines the built-in side is a filter
    # that keeps every event (one field lookup per event: a little more than nothing).
    transforms = {"bench_noop": "bench_noop", "bench_noop_plugin": "bench_noop_plugin", "bench_rewrite": "bench_rewrite",
                  "bench_rewrite_plugin": "bench_rewrite_plugin",
                  "filter": 'filter, condition: "exists(.scope)"'}
    for name, t in transforms.items():
        paths[name] = os.path.join(tmp, name + ".yaml")
        with open(paths[name], "w") as f:
            f.write("data_dir: %s\nplugins: [%s]\nsources:\n  in: { type: stdin }\ntransforms:\n"
                    "  t: { type: %s, inputs: [in] }\nsinks:\n  out: { type: blackhole, inputs: [t] }\n" % (tmp, plugins_so, t))
    # Alone, built-in and plugin in one process, batch by batch (weir-transform-bench with
    # two pipelines): separate runs of ~10 ms of work each drift more than they differ.
    alone = {t: [] for t in paths if t != "filter"}
    pipeline = {t: [] for t in ("filter", "bench_noop_plugin")}
    for _ in range(runs):  # interleaved, as above
        for builtin in ("bench_noop", "bench_rewrite"):
            plugin = builtin + "_plugin"
            _, _, out = run_measured([transform_bench, "-c", paths[builtin], "-c", paths[plugin], data], cpu=cpu)
            both = json.loads(out)
            alone[builtin].append(both["a"]["seconds"])
            alone[plugin].append(both["b"]["seconds"])
        for t in pipeline:
            s, _, _ = run_measured([weir, "run", "-c", paths[t], "--log-level", "warn"], stdin_path=data, cpu=cpu)
            pipeline[t].append(s)
    med = {t: statistics.median(v) for t, v in alone.items()}
    print("\nplugin overhead (the same transforms built in and on the SDK, medians of %d):" % runs)
    print("  no-op, transform alone:  built in %.1f us, plugin %.1f us for %d events (%.2f ns/event more, %+.1f%%)"
          % (1e6 * med["bench_noop"], 1e6 * med["bench_noop_plugin"], events,
             1e9 * (med["bench_noop_plugin"] - med["bench_noop"]) / events,
             100 * (med["bench_noop_plugin"] - med["bench_noop"]) / med["bench_noop"]))
    a, b = statistics.median(pipeline["filter"]), statistics.median(pipeline["bench_noop_plugin"])
    print("  decode -> t -> blackhole:  built-in filter keeping all %.3f s, no-op plugin %.3f s (%+.1f%%)"
          % (a, b, 100 * (b - a) / a))
    # What the ABI adds to a run on this log: the no-op's extra time alone, against the
    # whole pipeline's (a filter and a no-op differ by more than the ABI does).
    print("  no-op plugin against a no-op built in, on the whole run:  %+.2f%% of the pipeline's %.3f s"
          % (100 * (med["bench_noop_plugin"] - med["bench_noop"]) / b, b))
    ratios = sorted(p / b for p, b in zip(alone["bench_rewrite_plugin"], alone["bench_rewrite"]))
    print("  field rewrite, transform alone:  built in %.1f ns/event, plugin %.1f ns/event (%.2fx; runs %.2f-%.2fx)"
          % (1e9 * med["bench_rewrite"] / events, 1e9 * med["bench_rewrite_plugin"] / events,
             statistics.median(ratios), ratios[0], ratios[-1]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cpu", type=int, default=0, help="core to pin to (-1: no pinning)")
    ap.add_argument("--skip-sources", action="store_true", help="skip the file and http_server source runs")
    ap.add_argument("--http-seconds", type=int, default=10)
    ap.add_argument("--only", choices=["plugins"], help="run only this part")
    args = ap.parse_args()
    cpu = None if args.cpu < 0 else args.cpu
    weir = os.path.join(args.build, "weir")
    limit = os.path.join(args.build, "weir-parse-limit")
    transform_bench = os.path.join(args.build, "weir-transform-bench")
    for tool in (weir, limit, transform_bench):
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
    if args.only == "plugins":
        tmp = tempfile.mkdtemp(prefix="weir-bench-", dir=os.path.dirname(data))
        measure_plugin_overhead(weir, transform_bench, os.path.abspath(os.path.join(args.build, "weir-bench-plugins.so")),
                                data, events, tmp, cpu, args.runs)
        shutil.rmtree(tmp, ignore_errors=True)
        return

    configs = {
        "decode -> blackhole": "sources:\n  in: { type: stdin }\nsinks:\n  out: { type: blackhole, inputs: [in] }\n",
        "decode -> encode -> /dev/null": "sources:\n  in: { type: stdin }\nsinks:\n  out: { type: file, inputs: [in], path: /dev/null }\n",
        "decode -> 3 transforms -> blackhole": (
            "sources:\n  in: { type: stdin }\n"
            "transforms:\n  ids: { type: request_id, inputs: [in] }\n"
            "  wt: { type: working_time, inputs: [ids] }\n"
            "  names: { type: enrich, inputs: [wt], set: { pipeline: weir }, timestamp: { field: timestamp, format: datetime } }\n"
            "sinks:\n  out: { type: blackhole, inputs: [names] }\n"),
    }
    # The same with the sink's input in a disk buffer: every event written, fsynced (or not,
    # `sync: os`), read back and acknowledged; the buffer lives in data_dir on the build's disk.
    disk = "    buffer: { type: disk, sync: %s }\n"
    configs["decode -> encode, disk buffer sync=always"] = (
        "sources:\n  in: { type: stdin }\nsinks:\n  out:\n    type: file\n    inputs: [in]\n    path: /dev/null\n" + disk % "always")
    configs["decode -> encode, disk buffer sync=os"] = (
        "sources:\n  in: { type: stdin }\nsinks:\n  out:\n    type: file\n    inputs: [in]\n    path: /dev/null\n" + disk % "os")
    configs["decode -> 3 transforms -> disk buffer"] = (
        configs["decode -> 3 transforms -> blackhole"].replace(
            "  out: { type: blackhole, inputs: [names] }\n", "  out:\n    type: blackhole\n    inputs: [names]\n" + disk % "always"))
    # On the build's disk, not /tmp (a tmpfs on some machines would make fsync free).
    tmp = tempfile.mkdtemp(prefix="weir-bench-", dir=os.path.dirname(data))
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
    transform_samples = []
    for _ in range(args.runs):
        _, _, out = run_measured([transform_bench, "-c", paths["decode -> 3 transforms -> blackhole"], data], cpu=cpu)
        transform_samples.append(json.loads(out))
        _, peak, out = run_measured([limit, data], cpu=cpu)
        samples["parse limit (simdjson)"][0].append(json.loads(out)["seconds"])
        samples["parse limit (simdjson)"][1].append(peak)
        for name, path in paths.items():
            for kept in ("buffers", "state"):  # each run starts empty
                shutil.rmtree(os.path.join(tmp, kept), ignore_errors=True)
            s, peak, _ = run_measured([weir, "run", "-c", path, "--log-level", "warn"], stdin_path=data, cpu=cpu)
            samples["weir " + name][0].append(s)
            samples["weir " + name][1].append(peak)
    results = [(name, statistics.median(secs), statistics.median(rss)) for name, (secs, rss) in samples.items()]

    # weir replay through the CVAT analytics pipeline, every sink captured (events and
    # ClickHouse rows) on tmpfs when there is one; both cores (it reads ahead and encodes on
    # the pool), so not pinned like the rows above.
    cvat = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "pipelines", "cvat-analytics.yaml")
    capture = tempfile.mkdtemp(prefix="weir-bench-capture-", dir="/dev/shm" if os.path.isdir("/dev/shm") else tmp)
    replay_secs, replay_rss = [], []
    for _ in range(args.runs):
        shutil.rmtree(capture, ignore_errors=True)
        s, peak, _ = run_measured([weir, "replay", "-c", cvat, "--input", data, "--capture", capture, "--log-level", "warn"])
        replay_secs.append(s)
        replay_rss.append(peak)
    shutil.rmtree(capture, ignore_errors=True)
    results.append(("weir replay CVAT pipeline --capture (2 cores)", statistics.median(replay_secs), statistics.median(replay_rss)))

    # Memory stays flat: 3x the input through a pipe.
    big_secs, big_rss, _ = run_measured([weir, "run", "-c", paths["decode -> encode -> /dev/null"], "--log-level", "warn"], stdin_path=data,
                                        stdin_repeat=3, cpu=cpu)

    # The transforms in the running pipeline: the time they add to decode -> blackhole
    # (their own work plus the runtime's hand-offs between three more components).
    by_name = {name: secs for name, secs, _ in results}
    extra = by_name["weir decode -> 3 transforms -> blackhole"] - by_name["weir decode -> blackhole"]
    transform_rate = events / extra if extra > 0 else float("inf")
    alone = statistics.median(t["seconds"] for t in transform_samples)
    per_transform = {name: statistics.median(t["per_transform"][name] for t in transform_samples)
                     for name in transform_samples[0]["per_transform"]}
    if not args.skip_sources:
        file_seconds = measure_file_source(weir, data, events, tmp, cpu, args.runs)
        results.append(("weir file -> blackhole", file_seconds, 0))
    base = events / results[0][1]
    print("%-46s %14s %10s %10s %12s" % ("", "events/s", "MiB/s", "peak RSS", "of limit"))
    for name, s, peak in results:
        rate = events / s
        rss = "%8.1f M" % (peak / 1024) if peak else "%10s" % "-"
        print("%-46s %14s %10.1f %s %11.1f%%" % (name, "{:,.0f}".format(rate), mib / s, rss, 100 * rate / base))
    print("\nrequest_id + working_time + enrich (set, timestamp), decode excluded:")
    print("  alone (weir-transform-bench):  %s events/s, %.1f%% of the parse limit's rate  [%s]"
          % ("{:,.0f}".format(events / alone), 100 * (events / alone) / base,
             ", ".join("%s %.0f ns/event" % (n, 1e9 * s / events) for n, s in per_transform.items())))
    print("  in the pipeline (difference):  %s events/s" % "{:,.0f}".format(transform_rate))
    measure_lookup_load(weir, os.path.dirname(data), tmp)
    measure_plugin_overhead(weir, transform_bench, os.path.abspath(os.path.join(args.build, "weir-bench-plugins.so")), data, events, tmp,
                            cpu, args.runs)
    if not args.skip_sources:
        measure_http(weir, data, tmp, args.http_seconds)
    print("\n3x input (%d events) piped through decode -> encode: %.2f s, peak RSS %.1f MiB"
          % (3 * events, big_secs, big_rss / 1024))
    print("weir wall times include process start, config load and shutdown; the parse limit excludes file loading.")


if __name__ == "__main__":
    main()
