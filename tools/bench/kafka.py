#!/usr/bin/env python3
"""Kafka between sidecars and aggregators (docs/scale-out.md): the throughput of one sidecar
into Kafka and of one aggregator out of it, on librdkafka's mock cluster (weir-kafka-mock,
3 brokers, a process of its own on the same 2 cores: its CPU is printed apart).

  sidecar:    the CVAT log (build/bench/cvat-1000000.ndjson, its first --events lines) POSTed
              to pipelines/cvat-sidecar.yaml in bodies of 1000 events by 8 keep-alive
              clients, each waiting for its 200 (acknowledgements: the brokers have every
              event): http_server -> request_id -> kafka (lz4, keyed by user_id).
  aggregator: the topic consumed by one weir: kafka (state per partition in a state topic)
              -> working_time -> enrich -> blackhole, until every message is through.

The mock keeps at most 5 MiB a partition (older data is dropped), so the topic has 12
partitions and the default is 200k events. Medians of --runs runs; events/s, weir's CPU
seconds and peak RSS, and the mock's CPU seconds."""
import argparse, http.client, os, statistics, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sinkbench import cpu_seconds, free_port, metrics, peak_rss_mib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sidecar_run(weir, mock_pid, bootstrap, bodies, events, tmp, topic):
    api, port = free_port(), free_port()
    env = dict(os.environ, WEIR_DATA_DIR=tempfile.mkdtemp(dir=tmp), WEIR_API_ADDRESS="127.0.0.1:%d" % api,
               WEIR_LISTEN="127.0.0.1:%d" % port, KAFKA_BROKERS=bootstrap, KAFKA_TOPIC=topic)
    proc = subprocess.Popen([weir, "run", "-c", os.path.join(ROOT, "pipelines", "cvat-sidecar.yaml"), "--log-level", "warn"], env=env)
    deadline = time.time() + 30
    while not metrics(api):
        if time.time() > deadline or proc.poll() is not None:
            sys.exit("the sidecar did not start")
        time.sleep(0.05)
    mock_before = cpu_seconds(mock_pid)
    failures = []
    retried = [0]
    next_body = iter(range(len(bodies)))
    lock = threading.Lock()

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                i = next(next_body, None)
            if i is None:
                break
            # A 503 (the sidecar's buffers full: its answer instead of holding the request) is
            # sent again, as CVAT's shipper does; counted.
            while True:
                conn.request("POST", "/", body=bodies[i], headers={"Content-Type": "application/x-ndjson"})
                response = conn.getresponse()
                response.read()
                if response.status != 503:
                    break
                with lock:
                    retried[0] += 1
                time.sleep(0.02)
            if response.status != 200:
                failures.append(response.status)
        conn.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    cpu, rss = cpu_seconds(proc.pid), peak_rss_mib(proc.pid)
    mock_cpu = cpu_seconds(mock_pid) - mock_before
    proc.terminate()
    proc.wait(timeout=60)
    if failures:
        sys.exit("the sidecar answered %d requests with other than 200: %s" % (len(failures), failures[:5]))
    return seconds, cpu, rss, mock_cpu, retried[0]


def aggregator_run(weir, mock_pid, bootstrap, events, tmp, topic, run):
    api = free_port()
    config = os.path.join(tmp, "aggregator-%d.yaml" % run)
    with open(config, "w") as f:
        f.write(f"""
data_dir: {tempfile.mkdtemp(dir=tmp)}
api: {{ address: "127.0.0.1:{api}" }}
sources:
  in:
    type: kafka
    bootstrap_servers: "{bootstrap}"
    group_id: bench-{run}
    topics: [{topic}]
    state_topic: {topic}-state
transforms:
  wt: {{ type: working_time, inputs: [in] }}
  ts: {{ type: enrich, inputs: [wt], timestamp: {{ field: timestamp, format: datetime }} }}
sinks:
  out: {{ type: blackhole, inputs: [ts] }}
""")
    mock_before = cpu_seconds(mock_pid)
    proc = subprocess.Popen([weir, "run", "-c", config, "--log-level", "warn"])
    # Timed from the first message through (the group's first join waits 3 s on the mock).
    start = None
    while True:
        m = metrics(api)
        through = m.get(("weir_component_sent_events_total", "in"), 0)
        if through > 0 and start is None:
            start, cpu_at_start = time.perf_counter(), cpu_seconds(proc.pid)
        if through >= events:
            seconds = time.perf_counter() - start
            break
        if proc.poll() is not None:
            sys.exit("the aggregator exited early")
        time.sleep(0.01 if start else 0.1)
    cpu, rss = cpu_seconds(proc.pid) - cpu_at_start, peak_rss_mib(proc.pid)
    mock_cpu = cpu_seconds(mock_pid) - mock_before
    proc.terminate()
    proc.wait(timeout=60)
    return seconds, cpu, rss, mock_cpu, 0


def report(name, samples, events):
    med = lambda k: statistics.median(s[k] for s in samples)
    print("%-60s %10s events/s   CPU: weir %.2f s (%.2f s per million), mock cluster %.2f s   peak RSS %.1f MiB%s"
          % (name, "{:,.0f}".format(events / med(0)), med(1), med(1) * 1e6 / events, med(3), med(2),
             "   (%d bodies sent again after a 503)" % med(4) if med(4) else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    weir = os.path.join(args.build, "weir")
    log = os.path.join(args.build, "bench", "cvat-1000000.ndjson")
    if not os.path.exists(log):
        sys.exit("%s is missing: run tools/bench/run first (it generates it)" % log)
    with open(log, "rb") as f:
        lines = [next(f) for _ in range(args.events)]
    bodies = [b"".join(lines[i:i + 1000]) for i in range(0, len(lines), 1000)]
    tmp = tempfile.mkdtemp(prefix="weir-bench-kafka-")
    topics = []
    for run in range(args.runs):
        topics += ["--topic", "events-%d:12" % run, "--topic", "events-%d-state:12" % run]
    mock = subprocess.Popen([os.path.join(args.build, "weir-kafka-mock"), "--brokers", "3"] + topics,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    bootstrap = mock.stdout.readline().strip()
    print("input: %d CVAT events (%.1f MiB) in bodies of 1000; medians of %d runs; weir, the mock cluster and the "
          "clients share the 2 cores\n" % (args.events, sum(map(len, bodies)) / (1 << 20), args.runs))
    try:
        sidecar, aggregator = [], []
        for run in range(args.runs):
            sidecar.append(sidecar_run(weir, mock.pid, bootstrap, bodies, args.events, tmp, "events-%d" % run))
            aggregator.append(aggregator_run(weir, mock.pid, bootstrap, args.events, tmp, "events-%d" % run, run))
    finally:
        mock.stdin.close()
        mock.wait(timeout=30)
    report("sidecar: http_server -> request_id -> kafka (acknowledged)", sidecar, args.events)
    report("aggregator: kafka -> working_time -> enrich -> blackhole", aggregator, args.events)


if __name__ == "__main__":
    main()
