#!/usr/bin/env python3
"""The clickhouse sink's benchmark on the 1M-event CVAT-like log (the one tools/bench/run
generates): file -> clickhouse as a passthrough (enrich's timestamp normalisation only),
through working_time (as the issue words it, with and without enrich), and through the
whole CVAT pipeline (request_id -> working_time -> enrich), into:
  receiver   into weir-discard-receiver, a minimal C++ HTTP server that reads and drops request
             bodies and answers the sink's start-up queries as ClickHouse 18.16 with CVAT's
             table, so the sink sends Native (weir's own ceiling: reading, decoding, the
             transforms, encoding, sending)
  clickhouse into a private ClickHouse (tools/clickhouse/server.sh) with CVAT's table
and prints events/s, MiB/s of input, and the CPU seconds of weir and of the server; then the
CVAT pipeline into the receiver with each request compression (none, gzip, zstd), as ratios
to none (--compression sets the one the other runs use); and with its transforms where the
file source decodes (the default, ADR 015) against on the loop, on 2 cores and on 1.
Usage: tools/bench/clickhouse.py [--build build] [--runs 3] [--compression none|gzip|zstd]
Environment: WEIR_BENCH_BATCH (batch.max_events), WEIR_BENCH_CONCURRENCY, WEIR_BENCH_READ (the file source read_bytes)."""
import json, os, re, statistics, subprocess, sys, tempfile, time, urllib.request

from sinkbench import free_port, parse_arguments, report, run_until_delivered, start_discard_receiver

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BATCH = int(os.environ.get("WEIR_BENCH_BATCH", "10000"))
CONCURRENCY = int(os.environ.get("WEIR_BENCH_CONCURRENCY", "2"))


def run_once(weir, data, events, endpoint, compression, tmp, server_pid=None, enrich=True, fmt="auto", table="events",
             cvat=False, passthrough=False):
    """passthrough: file -> enrich -> sink, the same timestamp normalisation without the
    CVAT transforms (what the CVAT pipeline's CPU is measured against)."""
    api = free_port()
    if passthrough:
        transforms = "  ts: { type: enrich, inputs: [in], timestamp: { field: timestamp, format: datetime } }\n"
        last = "ts"
    else:
        transforms = "%s  wt: { type: working_time, inputs: [%s] }\n%s\n" % (
            "  ids: { type: request_id, inputs: [in] }\n" if cvat else "", "ids" if cvat else "in",
            "  ts: { type: enrich, inputs: [wt], timestamp: { field: timestamp, format: datetime } }" if enrich else "")
        last = "ts" if enrich else "wt"
    cfg = os.path.join(tmp, "bench.yaml")
    with open(cfg, "w") as f:
        f.write("""data_dir: %s/data-%d
api: { address: "127.0.0.1:%d" }
sources:
  in: { type: file, include: ["%s"], poll_interval: 10ms, read_bytes: %s }
transforms:
%ssinks:
  ch:
    type: clickhouse
    inputs: [%s]
    endpoint: %s
    database: cvat
    table: %s
    format: %s
    compression: %s
    skip_unknown_fields: true
    healthcheck: { enabled: false }
    encoding:
      only_fields: [scope, obj_name, obj_id, obj_val, source, timestamp, count, duration, project_id, task_id,
                    job_id, user_id, user_name, user_email, org_id, org_slug, payload]
    batch: { max_events: %d, timeout: 100ms }  # the file source never ends: the last insert waits this long
    request: { concurrency: %d }
""" % (tmp, time.monotonic_ns(), api, data, os.environ.get("WEIR_BENCH_READ", "256KiB"), transforms, last,
       endpoint, table, fmt, compression, BATCH, CONCURRENCY))
    return run_until_delivered(weir, cfg, api, "ch", events, server_pid)


def schema_columns(sql):
    """The columns of the CREATE TABLE in `sql` as system.columns describes them."""
    body = open(sql).read().split("CREATE TABLE", 1)[1]
    body = body[body.index("(") + 1:body.index("\n)")]
    columns = []
    for line in body.splitlines():
        m = re.match(r"\s+(\w+) (.+?)(?: DEFAULT (.+?))?,?$", line)
        if m:
            columns.append({"name": m.group(1), "type": m.group(2), "default_kind": "DEFAULT" if m.group(3) else "",
                            "default_expression": m.group(3) or ""})
    return columns


def rows_note(samples):
    return "   (%d rows with working time)" % samples[0][4]


def main():
    args = parse_arguments(__doc__, ROOT, 1_000_000, "none")
    weir = os.path.join(args.build, "weir")
    data = os.path.join(args.build, "bench", "cvat-%d.ndjson" % args.events)
    if not os.path.exists(data):
        sys.exit("%s is missing: run tools/bench/run first (it generates it)" % data)
    events = sum(1 for _ in open(data, "rb"))
    mib = os.path.getsize(data) / (1 << 20)
    tmp = tempfile.mkdtemp(prefix="weir-bench-ch-")
    print("input: %d events, %.1f MiB; compression %s; medians of %d runs; not pinned (weir and the receiver "
          "share the 2 cores)\n" % (events, mib, args.compression, args.runs))

    # A C++ receiver (weir-discard-receiver) that reads bodies and drops them, answering the
    # sink's start-up questions with CVAT's 18.16 table, so the sink takes its default
    # (binary) path as it does against a real server.
    columns = os.path.join(tmp, "columns.jsonl")
    with open(columns, "w") as f:
        f.writelines(json.dumps(c) + "\n" for c in schema_columns(os.path.join(ROOT, "tools", "schema", "cvat-events-18.16.sql")))
    receiver, endpoint = start_discard_receiver(args.build, columns)
    try:
        # Interleaved, so a slower spell of the machine weighs on both alike.
        passthrough, plain, enriched, whole = [], [], [], []
        for _ in range(args.runs):
            passthrough.append(run_once(weir, data, events, endpoint, args.compression, tmp, receiver.pid, passthrough=True))
            plain.append(run_once(weir, data, events, endpoint, args.compression, tmp, receiver.pid, enrich=False))
            enriched.append(run_once(weir, data, events, endpoint, args.compression, tmp, receiver.pid))
            whole.append(run_once(weir, data, events, endpoint, args.compression, tmp, receiver.pid, cvat=True))
    finally:
        receiver.kill()
    report("file -> enrich -> receiver (passthrough)", passthrough, events, mib)
    report("file -> working_time -> receiver (discard)", plain, events, mib, rows_note(plain))
    report("file -> working_time -> enrich -> receiver", enriched, events, mib, rows_note(enriched))
    report("file -> request_id -> wt -> enrich -> receiver", whole, events, mib, rows_note(whole))
    median = lambda samples, k: statistics.median(s[k] for s in samples)
    # The targets: the CVAT pipeline at most 1.25x a passthrough's CPU, 1.5M events/s.
    print("  the CVAT pipeline against the passthrough: weir CPU %.2fx (%.2f s / %.2f s), events/s %.2fx (%.0f / %.0f)"
          % (median(whole, 1) / median(passthrough, 1), median(whole, 1), median(passthrough, 1),
             (events / median(whole, 0)) / (events / median(passthrough, 0)), events / median(whole, 0),
             events / median(passthrough, 0)))

    # What each request compression costs weir on the CVAT pipeline (the receiver does not
    # decompress: weir's side alone; ADR 013), interleaved by round.
    codecs = {codec: [] for codec in ("none", "gzip", "zstd")}
    receiver, endpoint = start_discard_receiver(args.build, columns)
    try:
        for _ in range(args.runs):
            for codec in codecs:
                codecs[codec].append(run_once(weir, data, events, endpoint, codec, tmp, receiver.pid, cvat=True))
    finally:
        receiver.kill()
    for codec in codecs:
        report("file -> request_id -> wt -> enrich -> receiver, %s" % codec, codecs[codec], events, mib)
    for codec in ("gzip", "zstd"):
        print("  compression %s: weir CPU %.2fx none's (%.2f s / %.2f s), events/s %.2fx"
              % (codec, median(codecs[codec], 1) / median(codecs["none"], 1), median(codecs[codec], 1),
                 median(codecs["none"], 1), median(codecs["none"], 0) / median(codecs[codec], 0)))

    # Where the transforms run (ADR 015): where the file source decodes (the default) or on
    # the loop (WEIR_OFF_LOOP_CHAINS=off), on both cores and on one (weir under taskset -c 0;
    # the receiver is not pinned), interleaved by round.
    pinned = os.path.join(tmp, "weir-on-core-0")
    with open(pinned, "w") as f:
        f.write("#!/bin/sh\nexec taskset -c 0 %s \"$@\"\n" % weir)
    os.chmod(pinned, 0o755)
    placements = {("2 cores", "chain"): (weir, None), ("2 cores", "loop"): (weir, "off"),
                  ("1 core", "chain"): (pinned, None), ("1 core", "loop"): (pinned, "off")}
    placed = {key: [] for key in placements}
    receiver, endpoint = start_discard_receiver(args.build, columns)
    try:
        for _ in range(args.runs):
            for key, (binary, chains) in placements.items():
                if chains:
                    os.environ["WEIR_OFF_LOOP_CHAINS"] = chains
                else:
                    os.environ.pop("WEIR_OFF_LOOP_CHAINS", None)
                placed[key].append(run_once(binary, data, events, endpoint, args.compression, tmp, receiver.pid, cvat=True))
    finally:
        os.environ.pop("WEIR_OFF_LOOP_CHAINS", None)
        receiver.kill()
    for (cores, where), samples in placed.items():
        report("CVAT pipeline -> receiver, %s, transforms %s" % (cores, "where the source decodes" if where == "chain"
                                                                   else "on the loop"), samples, events, mib)
    for cores in ("2 cores", "1 core"):
        chain, loop = placed[(cores, "chain")], placed[(cores, "loop")]
        print("  %s: transforms where the source decodes against on the loop: weir CPU %.2fx, events/s %.2fx"
              % (cores, median(chain, 1) / median(loop, 1), median(loop, 0) / median(chain, 0)))

    if not args.skip_server:
        # Its data on a tmpfs: on ext4 the server's CPU for the same insert swung 3x from run
        # to run (scanning the inodes of the previous run's dropped parts).
        server_dir = tempfile.mkdtemp(prefix="weir-bench-ch-server-", dir="/dev/shm" if os.path.isdir("/dev/shm") else tmp)
        script = os.path.join(ROOT, "tools", "clickhouse", "server.sh")
        port = subprocess.run(["bash", script, "start", server_dir], capture_output=True, text=True,
                              check=True).stdout.strip().splitlines()[-1]
        try:
            url = "http://127.0.0.1:%s" % port
            subprocess.run(["bash", os.path.join(ROOT, "tools", "clickhouse", "apply-schema.sh"), url,
                            os.path.join(ROOT, "tools", "schema", "cvat-events-18.16.sql")], check=True)
            server_pid = int(open(os.path.join(server_dir, "pid")).read())
            execute = lambda sql: urllib.request.urlopen(urllib.request.Request(url + "/", data=sql.encode())).read()
            # The server's parse cost alone (a Null table keeps nothing) and with MergeTree's
            # parts and merges, for each insert format; interleaved by round.
            execute("CREATE TABLE cvat.events_null AS cvat.events ENGINE = Null")
            cases = [(fmt, table) for table in ("events_null", "events") for fmt in ("JSONEachRow", "RowBinary", "Native")]
            samples = {case: [] for case in cases}
            for _ in range(args.runs):
                for fmt, table in cases:
                    execute("TRUNCATE TABLE cvat.events")
                    samples[(fmt, table)].append(run_once(weir, data, events, url, args.compression, tmp, server_pid, fmt=fmt,
                                                          table=table))
            for fmt, table in cases:
                report("file -> wt -> enrich -> ClickHouse 18.16 %s, %s" % ("Null" if table == "events_null" else "MergeTree", fmt),
                       samples[(fmt, table)], events, mib, rows_note(samples[(fmt, table)]))
            # The whole CVAT pipeline (request_id -> working_time -> enrich), as
            # pipelines/cvat-analytics.yaml runs it, into MergeTree.
            whole = {fmt: [] for fmt in ("JSONEachRow", "auto")}
            for _ in range(args.runs):
                for fmt in whole:
                    execute("TRUNCATE TABLE cvat.events")
                    whole[fmt].append(run_once(weir, data, events, url, args.compression, tmp, server_pid, fmt=fmt, cvat=True))
            for fmt in whole:
                report("file -> request_id -> wt -> enrich -> ClickHouse MergeTree, %s" % fmt, whole[fmt], events, mib,
                       rows_note(whole[fmt]))
            for table in ("events_null", "events"):
                server = lambda fmt: statistics.median(s[2] for s in samples[(fmt, table)])
                speed = lambda fmt: statistics.median(s[0] for s in samples[(fmt, table)])
                for fmt in ("RowBinary", "Native"):
                    print("  %s: the server's CPU for %s is %.2fx JSONEachRow's (%.2f s / %.2f s); events/s %.2fx"
                          % ("Null" if table == "events_null" else "MergeTree", fmt, server(fmt) / server("JSONEachRow"),
                             server(fmt), server("JSONEachRow"), speed("JSONEachRow") / speed(fmt)))
        finally:
            subprocess.run(["bash", script, "stop", server_dir], capture_output=True)


if __name__ == "__main__":
    main()
