#!/usr/bin/env python3
"""Memory through a sink outage: 20k events/s over HTTP for OUTAGE_SECONDS (60) into a
clickhouse sink whose server is down (connection refused, retried).

- memory buffer, max_bytes 16MiB (what the buffered events take in memory): weir's RSS stays
  under max_bytes plus a fixed 32 MiB (the process and its libraries, the HTTP server's
  buffers, the sink's held rows: batch.max_events 1000 x (concurrency 2 + 2), and what the
  allocator keeps); the intake answers 503 once the buffer is full;
- disk buffer: every request is answered 200 (the events go to disk), and RSS is flat: its
  peak over the last third of the run is within 8 MiB of its peak over the first third."""
import os, subprocess, sys, tempfile, threading, time, urllib.request

import harness
from harness import check, finish, free_port, wait_for

WEIR = os.path.abspath(sys.argv[1])
SECONDS = float(os.environ.get("OUTAGE_SECONDS", "60"))
MAX_BYTES = 16 << 20
BOUND = MAX_BYTES + (32 << 20)
WORK = tempfile.mkdtemp(prefix="weir-memory-")
PAD = "x" * 60


def rss_kib(pid, field="VmRSS"):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def run(buffer):
    port, api, dead = free_port(), free_port(), free_port()  # nothing listens on `dead`
    config = os.path.join(WORK, "p.yaml")
    with open(config, "w") as f:
        f.write("""data_dir: %s/data
api: { address: "127.0.0.1:%d" }
sources:
  in: { type: http_server, address: "127.0.0.1:%d" }
sinks:
  ch:
    type: clickhouse
    inputs: [in]
    endpoint: http://127.0.0.1:%d
    table: events
    healthcheck: { enabled: false }
    batch: { max_events: 1000, timeout: 200ms }
    request: { retry_initial_backoff: 200ms, retry_max_backoff: 1s }
    buffer: %s
""" % (WORK, api, port, dead, buffer))
    log = open(os.path.join(WORK, "weir.log"), "a")
    weir = subprocess.Popen([WEIR, "run", "-c", config], stdout=log, stderr=subprocess.STDOUT)
    answers = {200: 0, 503: 0, "other": 0}
    samples = []
    try:
        wait_for(lambda: urllib.request.urlopen("http://127.0.0.1:%d/health" % api, timeout=2).status == 200, 20)
        start = time.time()
        n = 0
        while time.time() - start < SECONDS:
            body = "".join('{"id":%d,"pad":"%s"}\n' % (i, PAD) for i in range(n * 1000, (n + 1) * 1000)).encode()
            try:
                req = urllib.request.Request("http://127.0.0.1:%d/" % port, data=body, method="POST")
                with urllib.request.urlopen(req, timeout=10) as r:
                    answers[r.status if r.status in answers else "other"] += 1
            except urllib.error.HTTPError as e:
                answers[e.code if e.code in answers else "other"] += 1
            n += 1
            samples.append((time.time() - start, rss_kib(weir.pid)))
            time.sleep(max(0, n * 0.05 - (time.time() - start)))  # 20 requests of 1000 events a second
        peak = rss_kib(weir.pid, "VmHWM")
        alive = weir.poll() is None
    finally:
        weir.kill()
        weir.wait()
        log.close()
    return answers, samples, peak, alive, n


try:
    answers, samples, peak, alive, sent = run("{ type: memory, max_events: 1000000, max_bytes: 16MiB }")
    print("memory buffer: %d requests (%d events/s), answers %s, peak RSS %.1f MiB (bound %.0f MiB)"
          % (sent, sent * 1000 / SECONDS, answers, peak / 1024, BOUND / (1 << 20)))
    check("memory: weir stays up through the outage", alive)
    check("memory: about 20k events/s were offered", sent * 1000 / SECONDS > 15000, sent)
    check("memory: the full buffer answers 503", answers[503] > 0, answers)
    check("memory: RSS stays under max_bytes + 32 MiB", peak * 1024 < BOUND, peak)

    answers, samples, peak, alive, sent = run("{ type: disk, max_size: 1GiB, max_events: 4096, max_bytes: 16MiB }")
    third = [rss for t, rss in samples if t < SECONDS / 3], [rss for t, rss in samples if t > 2 * SECONDS / 3]
    print("disk buffer: %d requests, answers %s, RSS first third max %.1f MiB, last third max %.1f MiB, peak %.1f MiB"
          % (sent, answers, max(third[0]) / 1024, max(third[1]) / 1024, peak / 1024))
    check("disk: weir stays up through the outage", alive)
    check("disk: every request is answered 200 (the events are on disk)", answers[503] == 0 and answers["other"] == 0
          and answers[200] == sent, answers)
    check("disk: RSS is flat (last third within 8 MiB of the first)", max(third[1]) <= max(third[0]) + 8 * 1024,
          (max(third[0]), max(third[1])))
finally:
    if harness.failures:
        print(open(os.path.join(WORK, "weir.log")).read()[-3000:])
    subprocess.run(["rm", "-rf", WORK])
finish("memory outage")
