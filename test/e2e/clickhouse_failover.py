#!/usr/bin/env python3
"""request.failover against real replicas: two ClickHouse 18.16 servers holding one
ReplicatedMergeTree table, coordinated by a private ZooKeeper (Debian's `zookeeper`, 3.8)
on loopback.

weir runs http_server (acknowledgements: true, so a 200 means a replica has the rows) ->
clickhouse with `endpoint: [A, B]`, `request.failover: true` and retry backoffs of 8 s, far
longer than any wait below, so a row can only arrive in time by going to the other replica:
- A is down before weir starts: weir reads the table's columns from B, and every batch is
  answered 200 within seconds;
- A comes back: it catches up by replication, and once its pass-over time is over, inserts
  take turns again (A's own INSERT count grows);
- A freezes (SIGSTOP: connections taken, nothing answered): the inserts in flight there
  wait out the request timeout and go to B, and the inserts sealed for A meanwhile go to B
  without waiting. Then A resumes and runs the inserts it held, whose blocks B already
  has: the replicas' shared deduplication drops them;
- both are down: nothing is answered 200; B comes back: every waiting batch is answered 200;
- at the end both replicas hold every row answered 200, each once.
The baseline WEIR_FAILOVER=0 (off) fails the first phase: the inserts meant for A wait out
its backoff."""
import json, os, signal, socket, subprocess, sys, tempfile, threading, time, urllib.request

import harness
from harness import ROOT, check, finish, free_port, post_status, wait_for

WEIR = os.path.abspath(sys.argv[1])
WORK = tempfile.mkdtemp(prefix="weir-failover-")
FAILOVER = os.environ.get("WEIR_FAILOVER", "1") != "0"
ZOOKEEPER_JAR = "/usr/share/java/zookeeper.jar"
dirs = {name: os.path.join(WORK, name) for name in ("a", "b")}
ports = {}


def stable_ports():
    """Two free ports that a server started again keeps: tools/lib/private-server.bash's."""
    out = subprocess.run(["bash", "-c", 'source "$1" && free_ports', "-", os.path.join(ROOT, "tools", "lib", "private-server.bash")],
                         capture_output=True, text=True, check=True)
    return [int(x) for x in out.stdout.split()]


def start_zookeeper():
    """A standalone ZooKeeper on 127.0.0.1; the harness stops it when the test exits."""
    if not os.path.exists(ZOOKEEPER_JAR):
        raise SystemExit("%s is missing: apt-get install zookeeper (tools/setup.sh does)" % ZOOKEEPER_JAR)
    port = free_port()
    os.makedirs(os.path.join(WORK, "zk", "data"))
    config = os.path.join(WORK, "zk", "zoo.cfg")
    with open(config, "w") as f:
        f.write("tickTime=2000\ndataDir=%s/zk/data\nclientPort=%d\nclientPortAddress=127.0.0.1\n"
                "admin.enableServer=false\n" % (WORK, port))
    subprocess.Popen(["java", "-cp", ZOOKEEPER_JAR, "org.apache.zookeeper.server.ZooKeeperServerMain", config],
                     stdout=open(os.path.join(WORK, "zk", "log"), "w"), stderr=subprocess.STDOUT)

    def answers():
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    if not wait_for(answers, 60):
        raise SystemExit("ZooKeeper did not start: " + open(os.path.join(WORK, "zk", "log")).read()[-2000:])
    return port


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


def inserts_run(name):
    """INSERT queries the server ran since it started (system.events): weir's, not replication's fetches."""
    return int(query(name, "SELECT value FROM system.events WHERE event = 'InsertQuery' FORMAT TSV") or 0)


weir = None
try:
    zk_port = start_zookeeper()
    interserver = stable_ports()
    for k, name in enumerate(("a", "b")):
        # Before the first start: server.sh's config.xml takes config.d/ beside it.
        os.makedirs(os.path.join(dirs[name], "config.d"))
        with open(os.path.join(dirs[name], "config.d", "replication.xml"), "w") as f:
            f.write("<yandex><zookeeper><node><host>127.0.0.1</host><port>%d</port></node></zookeeper>"
                    "<macros><replica>%s</replica></macros><interserver_http_host>127.0.0.1</interserver_http_host>"
                    "<interserver_http_port>%d</interserver_http_port></yandex>\n" % (zk_port, name, interserver[k]))
        server(name, "start")
        query(name, "CREATE DATABASE IF NOT EXISTS weir_test")
        query(name, "CREATE TABLE weir_test.t (id UInt64, phase String) "
                    "ENGINE = ReplicatedMergeTree('/clickhouse/tables/weir_test_t', '{replica}') ORDER BY id")
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

    # ---- A back: it catches up, and gets inserts again ----------------------------------
    server("a", "start")
    check("A back: it catches up by replication", wait_for(lambda: sorted(ids_in("a")) == sorted(ids_in("b")), 60),
          (len(ids_in("a")), len(ids_in("b"))))
    time.sleep(8.5)  # A's pass-over time (at most the 8 s backoff) is over
    before = inserts_run("a")
    statuses, ok = send("a-back", 10, 20)
    check("A back: every batch answered 200", statuses == [200] * 10, statuses)
    check("A back: inserts take turns again (A runs some of them)", 0 < inserts_run("a") - before < 10,
          inserts_run("a") - before)

    # ---- A frozen (SIGSTOP): its inserts time out, and the rows go to B ----------------------
    # The kernel still takes A's connections, so each insert sent there waits out the 5 s
    # request timeout: the ones in flight when it froze do, the rest go to B.
    time.sleep(8.5)  # any pass-over time of A is over: A gets its share of the next inserts
    a_pid = int(open(os.path.join(dirs["a"], "pid")).read())
    a_inserts = inserts_run("a")
    os.kill(a_pid, signal.SIGSTOP)
    started = time.time()
    statuses, ok = send("a-frozen", 10, 30)
    took = time.time() - started
    print("A frozen: %s in %.1f s" % (statuses, took))
    check("A frozen: every batch answered 200 after about one request timeout (5 s), not one per insert sent to A",
          statuses == [200] * 10 and took < 9, (statuses, took))
    os.kill(a_pid, signal.SIGCONT)  # A runs the inserts it held, which B has run already
    check("A resumed: it runs the inserts it held", wait_for(lambda: inserts_run("a") > a_inserts, 30),
          (inserts_run("a"), a_inserts))
    check("A resumed: the replicas drop those inserts as repeats (the same rows once, on both)",
          wait_for(lambda: sorted(ids_in("a")) == sorted(ids_in("b")), 60) and len(ids_in("b")) == len(set(ids_in("b"))),
          (len(ids_in("a")), len(ids_in("b")), len(set(ids_in("b")))))
    repeats = open(os.path.join(dirs["a"], "log", "server.log")).read().count("already exists; ignoring it")
    print("blocks A dropped as repeats: %d" % repeats)
    check("A's log says it dropped blocks it already had", repeats > 0, repeats)

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

    # ---- everything answered 200 is stored once, on both replicas ----------------------------
    check("both replicas hold the same rows", wait_for(lambda: sorted(ids_in("a")) == sorted(ids_in("b")), 60),
          (len(ids_in("a")), len(ids_in("b"))))
    a = ids_in("a")
    check("every row answered 200 is there", answered <= set(a), len(answered - set(a)))
    check("no row is stored twice", len(a) == len(set(a)), (len(a), len(set(a))))
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
