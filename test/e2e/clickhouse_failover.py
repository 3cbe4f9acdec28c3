#!/usr/bin/env python3
"""request.failover against two real ClickHouse servers standing for two replicas of one
table (each a plain MergeTree here: ReplicatedMergeTree needs a ZooKeeper, which this test
does not start; what is tested is where weir sends the rows, not how replicas converge).

weir runs http_server (acknowledgements: true, so a 200 means ClickHouse has the rows) ->
clickhouse with `endpoint: [A, B]`, `request.failover: true` and retry backoffs of 8 s, far
longer than any wait below, so a row can only arrive in time by going to the other replica:
- A is down before weir starts: weir reads the table's columns from B, and every batch is
  answered 200 within seconds, all rows in B, each once;
- A comes back: once its pass-over time is over, inserts take turns again and A gets rows;
- A freezes (SIGSTOP: connections taken, nothing answered): the inserts in flight there
  wait out the request timeout and go to B, and the inserts sealed for A meanwhile go to B
  without waiting; A is then killed before it reads them;
- both are down: nothing is answered 200; B comes back: every waiting batch is answered 200
  and its rows are in B;
- at the end every row answered 200 is in A or B, and none is in both or twice.
The baseline WEIR_FAILOVER=0 (off) fails the first phase: the inserts meant for A wait out
its backoff."""
import json, os, signal, subprocess, sys, tempfile, threading, time, urllib.request

import harness
from harness import check, finish, free_port, post_status, wait_for

WEIR = os.path.abspath(sys.argv[1])
WORK = tempfile.mkdtemp(prefix="weir-failover-")
FAILOVER = os.environ.get("WEIR_FAILOVER", "1") != "0"
dirs = {name: os.path.join(WORK, name) for name in ("a", "b")}
ports = {}


def server(name, verb):
    out = harness.server("clickhouse", verb, dirs[name])
    if verb in ("start", "restart"):
        ports[name] = int(out)


def query(name, sql):
    req = urllib.request.Request("http://127.0.0.1:%d/" % ports[name], data=sql.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read().decode()


def ids_in(name):
    return [int(x) for x in query(name, "SELECT id FROM weir_test.t FORMAT TSV").split()]


weir = None
try:
    for name in ("a", "b"):
        server(name, "start")
        query(name, "CREATE DATABASE IF NOT EXISTS weir_test")
        query(name, "CREATE TABLE weir_test.t (id UInt64, phase String) ENGINE = MergeTree ORDER BY id")
    server("a", "stop")

    listen, api = free_port(), free_port()
    config = os.path.join(WORK, "weir.yaml")
    with open(config, "w") as f:
        f.write("""data_dir: %s/data
api: { address: "127.0.0.1:%d" }
sources:
  in: { type: http_server, address: "127.0.0.1:%d", acknowledgements: true }
sinks:
  ch:
    type: clickhouse
    inputs: [in]
    endpoint: [http://127.0.0.1:%d, http://127.0.0.1:%d]
    database: weir_test
    table: t
    batch: { max_events: 50, timeout: 50ms }
    request: { failover: %s, timeout: 5s, retry_initial_backoff: 8s, retry_max_backoff: 8s }
""" % (WORK, api, listen, ports["a"], ports["b"], "true" if FAILOVER else "false"))
    log = open(os.path.join(WORK, "weir.log"), "w")
    weir = subprocess.Popen([WEIR, "run", "-c", config], stdout=log, stderr=subprocess.STDOUT)
    check("weir starts", wait_for(lambda: post_status("http://127.0.0.1:%d/" % listen, b"[]", 5) == 200, 30))

    answered = set()
    next_id = [0]

    def send(phase, batches, timeout):
        """Posts `batches` bodies of 50 rows at once; the statuses, and the ids answered 200."""
        bodies = []
        for _ in range(batches):
            ids = list(range(next_id[0], next_id[0] + 50))
            next_id[0] += 50
            bodies.append((ids, json.dumps([{"id": i, "phase": phase} for i in ids]).encode()))
        statuses = [None] * batches

        def one(k):
            statuses[k] = post_status("http://127.0.0.1:%d/" % listen, bodies[k][1], timeout,
                                      {"Content-Type": "application/json"})
        threads = [threading.Thread(target=one, args=(k,)) for k in range(batches)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ok = {i for k, (ids, _) in enumerate(bodies) if statuses[k] == 200 for i in ids}
        answered.update(ok)
        return statuses, ok

    # ---- A down from the start ------------------------------------------------------------
    started = time.time()
    statuses, ok = send("a-down", 10, 6)
    took = time.time() - started
    print("A down: %s in %.1f s" % (statuses, took))
    check("A down: every batch answered 200 well within the 8 s backoff", statuses == [200] * 10 and took < 6,
          (statuses, took))
    check("A down: the rows are in B, each once", sorted(ids_in("b")) == sorted(ok) and len(ok) == 500,
          (len(ids_in("b")), len(ok)))

    # ---- A back: it gets rows again -------------------------------------------------------
    server("a", "start")
    time.sleep(8.5)  # A's pass-over time (at most the 8 s backoff) is over
    statuses, ok = send("a-back", 10, 20)
    in_a = [i for i in ids_in("a") if i in ok]
    check("A back: every batch answered 200", statuses == [200] * 10, statuses)
    check("A back: inserts take turns again (A has some of the rows)", 0 < len(in_a) < len(ok), (len(in_a), len(ok)))

    # ---- A frozen (SIGSTOP): its inserts time out, and the rows go to B ----------------------
    # The kernel still takes A's connections, so each insert sent there waits out the 5 s
    # request timeout: the ones in flight when it froze do, the rest go to B.
    time.sleep(8.5)  # any pass-over time of A is over: A gets its share of the next inserts
    a_pid = int(open(os.path.join(dirs["a"], "pid")).read())
    os.kill(a_pid, signal.SIGSTOP)
    started = time.time()
    statuses, ok = send("a-frozen", 10, 30)
    took = time.time() - started
    print("A frozen: %s in %.1f s" % (statuses, took))
    check("A frozen: every batch answered 200 after about one request timeout (5 s), not one per insert sent to A",
          statuses == [200] * 10 and took < 9, (statuses, took))
    os.kill(a_pid, signal.SIGKILL)  # (before it reads the inserts it holds: they went to B)
    os.kill(a_pid, signal.SIGCONT)

    # ---- both down, then B back -------------------------------------------------------------
    server("a", "stop")
    server("b", "stop")
    results = {}
    sender = threading.Thread(target=lambda: results.update(zip(("statuses", "ok"), send("both-down", 4, 60))))
    sender.start()
    time.sleep(4)
    check("both down: nothing answered yet", sender.is_alive() and not results, results)
    server("b", "start")
    sender.join()
    check("both down, B back: every waiting batch answered 200", results.get("statuses") == [200] * 4, results.get("statuses"))
    server("a", "start")

    # ---- everything answered 200 is stored once --------------------------------------------
    a, b = ids_in("a"), ids_in("b")
    check("every row answered 200 is in A or B", answered <= set(a) | set(b), len(answered - set(a) - set(b)))
    check("no row is stored twice (in one replica or in both)", len(a) + len(b) == len(set(a) | set(b)),
          (len(a), len(b), len(set(a) | set(b))))
    text = open(log.name).read()
    check("the log names the endpoint that failed and the one the rows went to",
          "at http://127.0.0.1:%d failed" % ports["a"] in text and "sending them to http://127.0.0.1:%d" % ports["b"] in text,
          text[-1500:])
    weir.send_signal(signal.SIGTERM)
    check("weir exits 0", weir.wait(timeout=60) == 0)
finally:
    if weir is not None and weir.poll() is None:
        weir.kill()
    for name in ("a", "b"):
        if os.path.exists(dirs[name]):
            harness.server("clickhouse", "stop", dirs[name])
finish("clickhouse failover")
