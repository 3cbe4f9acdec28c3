#!/usr/bin/env python3
"""The influxdb sink's benchmark, on LUNA point events (the monitoring transform's output):
  parse limit  simdjson alone over the same file (weir-parse-limit), for the ratio
  encoder      line-protocol encoding alone (weir-line-protocol-bench): lines/s, MiB/s out
  receiver     file -> influxdb into weir-discard-receiver (weir's own ceiling: reading,
               decoding, encoding, gzip, sending)
  influxdb     file -> influxdb into a private InfluxDB 1.6 (tools/influxdb/server.sh)
and prints events/s, MiB/s of input, weir's peak RSS and the CPU seconds of weir and the server.
Usage: tools/bench/influxdb.py [--build build] [--events 500000] [--runs 3] [--compression gzip]"""
import json, os, random, statistics, subprocess, tempfile, time, urllib.parse, urllib.request

from sinkbench import free_port, parse_arguments, report, run_until_delivered, start_discard_receiver

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
def generate(path, n):
    """LUNA points: 20 services x 12 routes, 5% failed with an error code."""
    rng = random.Random(7)
    routes = [("POST", "/faces"), ("GET", "/faces"), ("DELETE", "/faces"), ("POST", "/descriptors/batches"),
              ("GET", "/lists"), ("PATCH", "/lists"), ("POST", "/matcher"), ("GET", "/events"), ("POST", "/handlers"),
              ("GET", "/version"), ("POST", "/images"), ("GET", "/images")]
    t0 = 1764410400000
    with open(path + ".tmp", "w") as f:
        for i in range(n):
            method, resource = routes[i % len(routes)]
            failed = rng.random() < 0.05
            tags = {"service": "luna-%02d" % (i % 20), "route": "%s:%s" % (method, resource),
                    "status_code": 400 if failed else 200}
            ms = t0 + i
            time_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + ".%03dZ" % (ms % 1000)
            fields = {"request_id": "%d,%08x-3e9b-f5a4-fc45-%012x" % (ms // 1000, i, i * 7919),
                      "execution_time": round(rng.random() * 2, 6)}
            if failed:
                tags["error_code"] = 13037
                f.write(json.dumps({"series": "errors", "time": time_text, "tags": tags,
                                    "fields": {"request_id": fields["request_id"]}}) + "\n")
            else:
                f.write(json.dumps({"series": "requests", "time": time_text, "tags": tags, "fields": fields}) + "\n")
    os.rename(path + ".tmp", path)


def run_once(weir, data, events, endpoint, compression, tmp, server_pid=None):
    api = free_port()
    cfg = os.path.join(tmp, "bench.yaml")
    with open(cfg, "w") as f:
        f.write("""data_dir: %s/data-%d
api: { address: "127.0.0.1:%d" }
sources:
  in: { type: file, include: ["%s"], poll_interval: 10ms }
sinks:
  influx:
    type: influxdb
    inputs: [in]
    endpoint: %s
    database: bench
    measurement_field: series
    tags: [tags]
    fields: [fields]
    field_types: { execution_time: float }
    timestamp: { field: time, precision: ms }
    compression: %s
    healthcheck: { enabled: false }
    batch: { timeout: 100ms }  # the file source never ends: the last write waits this long
""" % (tmp, time.monotonic_ns(), api, data, endpoint, compression))
    return run_until_delivered(weir, cfg, api, "influx", events, server_pid)


def main():
    args = parse_arguments(__doc__, ROOT, 500_000, "gzip")
    weir = os.path.join(args.build, "weir")
    os.makedirs(os.path.join(args.build, "bench"), exist_ok=True)
    data = os.path.join(args.build, "bench", "luna-points-%d.ndjson" % args.events)
    if not os.path.exists(data):
        generate(data, args.events)
    events = args.events
    mib = os.path.getsize(data) / (1 << 20)
    tmp = tempfile.mkdtemp(prefix="weir-bench-influx-")
    print("input: %d LUNA points, %.1f MiB; compression %s; medians of %d runs; not pinned\n"
          % (events, mib, args.compression, args.runs))

    limit = [json.loads(subprocess.run([os.path.join(args.build, "weir-parse-limit"), data], capture_output=True,
                                       text=True, check=True).stdout) for _ in range(args.runs)]
    limit_rate = events / statistics.median(l["seconds"] for l in limit)
    print("%-40s %12s events/s %7.1f MiB/s" % ("parse limit (simdjson alone)", "{:,.0f}".format(limit_rate),
                                                  mib / statistics.median(l["seconds"] for l in limit)))
    enc = [json.loads(subprocess.run([os.path.join(args.build, "weir-line-protocol-bench"), data], capture_output=True,
                                     text=True, check=True).stdout) for _ in range(args.runs)]
    enc_seconds = statistics.median(e["seconds"] for e in enc)
    print("%-40s %12s lines/s  %7.1f MiB/s of line protocol (%.1f%% of the parse limit's rate)"
          % ("line-protocol encoder alone", "{:,.0f}".format(events / enc_seconds),
             enc[0]["bytes_out"] / (1 << 20) / enc_seconds, 100 * events / enc_seconds / limit_rate))

    receiver, endpoint = start_discard_receiver(args.build)
    try:
        samples = [run_once(weir, data, events, endpoint, args.compression, tmp, receiver.pid) for _ in range(args.runs)]
    finally:
        receiver.kill()
    report("file -> influxdb -> receiver (discard)", samples, events, mib)

    if not args.skip_server:
        server_dir = os.path.join(tmp, "influxdb")
        script = os.path.join(ROOT, "tools", "influxdb", "server.sh")
        url = subprocess.run(["bash", script, "start", server_dir], capture_output=True, text=True,
                             check=True).stdout.strip().splitlines()[-1]
        try:
            server_pid = int(open(os.path.join(server_dir, "pid")).read())
            samples = []
            for _ in range(args.runs):
                for q in ("DROP DATABASE bench", "CREATE DATABASE bench"):
                    urllib.request.urlopen(url + "/query", data=urllib.parse.urlencode({"q": q}).encode()).read()
                samples.append(run_once(weir, data, events, url, args.compression, tmp, server_pid))
            q = urllib.parse.urlencode({"db": "bench", "q": "SELECT count(request_id) FROM requests, errors"})
            counts = json.loads(urllib.request.urlopen(url + "/query?" + q).read())
            stored = sum(s["values"][0][1] for s in counts["results"][0].get("series", []))
            report("file -> influxdb -> InfluxDB 1.6", samples, events, mib)
            print("  (points stored after the last run: %d of %d)" % (stored, events))
        finally:
            subprocess.run(["bash", script, "stop", server_dir], capture_output=True)


if __name__ == "__main__":
    main()
