#!/usr/bin/env python3
"""The analytics API's CVAT events export (docs/analytics.md) of a large table: a private
ClickHouse (tools/clickhouse/server.sh, on this machine's cores too) gets --events CVAT-like
rows (INSERT ... SELECT from numbers(), payloads of ~150 bytes with commas and quotes to
quote), then weir, serving only the `analytics` API, exports them all through the newer flow
(POST /api/events/export, polled) and the CSV is downloaded once.

Printed per run: the export's seconds (start to finished) and MiB/s of CSV written, the
download's MiB/s, weir's CPU seconds and peak RSS (VmHWM, over the whole run). Medians of --runs."""
import argparse, json, os, statistics, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sinkbench import cpu_seconds, free_port, peak_rss_mib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKEN = "bench-token"


def ch(port, sql):
    req = urllib.request.Request("http://127.0.0.1:%d/" % port, data=sql.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=600) as r:
        return r.read().decode()


def call(api, method, path):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (api, path), method=method,
                                 headers={"Authorization": "Bearer " + TOKEN})
    with urllib.request.urlopen(req, timeout=600) as r:
        return r.status, r.read()


def one_run(weir, ch_port, tmp):
    api = free_port()
    config = os.path.join(tmp, "analytics.yaml")
    with open(config, "w") as f:
        f.write("""data_dir: %s/data
api: { address: "127.0.0.1:%d" }
apis:
  analytics:
    type: analytics
    endpoint: http://127.0.0.1:%d
    access: { tokens: ["%s"] }
""" % (tmp, api, ch_port, TOKEN))
    proc = subprocess.Popen([weir, "run", "-c", config, "--log-level", "warn"])
    try:
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/health" % api, timeout=2)
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    sys.exit("weir did not start")
                time.sleep(0.05)
        cpu0 = cpu_seconds(proc.pid)
        t0 = time.time()
        status, body = call(api, "POST", "/api/events/export")
        rq = json.loads(body)["rq_id"]
        while True:
            _, body = call(api, "GET", "/api/requests/" + rq)
            state = json.loads(body)["status"]
            if state == "finished":
                break
            if state == "failed":
                sys.exit("the export failed: %s" % body)
            time.sleep(0.05)
        export_s = time.time() - t0
        t1 = time.time()
        size = 0
        req = urllib.request.Request("http://127.0.0.1:%d/api/events/download?rq_id=%s" % (api, rq),
                                     headers={"Authorization": "Bearer " + TOKEN})
        with urllib.request.urlopen(req, timeout=600) as r:
            while True:
                chunk = r.read(1 << 20)
                if not chunk:
                    break
                size += len(chunk)
        download_s = time.time() - t1
        cpu = cpu_seconds(proc.pid) - cpu0
        rss = peak_rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return {"export_s": export_s, "csv_mib": size / 2**20, "export_mibs": size / 2**20 / export_s,
            "download_mibs": size / 2**20 / download_s, "cpu_s": cpu, "rss_mib": rss}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weir", default=os.path.join(ROOT, "build", "weir"))
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="weir-bench-export-")
    server = os.path.join(ROOT, "tools", "clickhouse", "server.sh")
    port = int(subprocess.run(["bash", server, "start", tmp + "/ch"], check=True, capture_output=True,
                              text=True).stdout.strip().splitlines()[-1])
    try:
        subprocess.run(["bash", os.path.join(ROOT, "tools", "clickhouse", "apply-schema.sh"), "http://127.0.0.1:%d/" % port,
                        os.path.join(ROOT, "tools", "schema", "cvat-events-18.16.sql")], check=True, capture_output=True)
        ch(port, """INSERT INTO cvat.events (scope, obj_name, obj_id, obj_val, source, timestamp, count, duration,
 project_id, task_id, job_id, user_id, user_name, user_email, org_id, org_slug, payload)
SELECT ['draw:object', 'change:frame', 'save:job', 'send:working_time'][number % 4 + 1], 'label', number % 50,
 'a, "quoted" value', ['client', 'server'][number % 2 + 1], toDateTime(1704067200 + intDiv(number, 10)), 1, number % 1000,
 number % 7, number % 70, number % 700, number % 40, concat('user', toString(number % 40)),
 concat('user', toString(number % 40), '@example.com'), number % 3, 'org',
 concat('{"request":{"id":"', toString(number), '","user_agent":"Mozilla/5.0 (X11; Linux x86_64)"},"working_time":', toString(number % 1000), '}')
FROM numbers(EVENTS)""".replace("EVENTS", str(args.events)))
        print("ClickHouse holds %s rows" % ch(port, "SELECT count() FROM cvat.events").strip())
        runs = [one_run(args.weir, port, tmp) for _ in range(args.runs)]
    finally:
        subprocess.run(["bash", server, "stop", tmp + "/ch"], capture_output=True)
    for r in runs:
        print("  export %.2f s (%.1f MiB of CSV, %.1f MiB/s), download %.1f MiB/s, weir %.2f CPU-s, peak RSS %.1f MiB"
              % (r["export_s"], r["csv_mib"], r["export_mibs"], r["download_mibs"], r["cpu_s"], r["rss_mib"]))
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print("median of %d: %d events, export %.2f s = %.1f MiB/s of CSV (%.0f events/s), download %.1f MiB/s, "
          "weir %.2f CPU-s, peak RSS %.1f MiB"
          % (len(runs), args.events, med["export_s"], med["export_mibs"], args.events / med["export_s"],
             med["download_mibs"], med["cpu_s"], med["rss_mib"]))


if __name__ == "__main__":
    main()
