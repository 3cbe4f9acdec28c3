#!/usr/bin/env python3
"""The CVAT analytics pipeline end to end: a real ClickHouse with CVAT's schema (the 18.16
variant), weir running pipelines/cvat-analytics.yaml, the recorded multi-user session
posted the way CVAT's server ships events. Every event lands as a row, and the working
time in ClickHouse equals, per (user, job, task, project), what the working_time transform
computes from the same log through stdin."""
import collections, json, os, signal, subprocess, sys, tempfile, time, urllib.parse, urllib.request

import harness
from harness import ROOT, check, finish, free_port

WEIR = os.path.abspath(sys.argv[1])
WORK = tempfile.mkdtemp(prefix="weir-cvat-")
SERVER_DIR = os.path.join(WORK, "clickhouse")
SESSION = os.path.join(ROOT, "examples", "cvat-multi-user.ndjson")


def server(verb):
    return harness.server("clickhouse", verb, SERVER_DIR)


def query(sql):
    url = "http://127.0.0.1:%s/?%s" % (PORT, urllib.parse.urlencode({"query": sql}))
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()


def key_of(e):
    return (e["user_id"], e.get("job_id"), e.get("task_id"), e.get("project_id"))


weir = None
try:
    PORT = server("start")
    subprocess.run(["bash", os.path.join(ROOT, "tools", "clickhouse", "apply-schema.sh"), "http://127.0.0.1:%s" % PORT,
                    os.path.join(ROOT, "tools", "schema", "cvat-events-18.16.sql")], check=True)
    listen, api = free_port(), free_port()
    env = dict(os.environ, CLICKHOUSE_HOST="127.0.0.1", CLICKHOUSE_PORT=str(PORT), CLICKHOUSE_DB="cvat",
               CLICKHOUSE_USER="default", CLICKHOUSE_PASSWORD="", WEIR_DATA_DIR=os.path.join(WORK, "data"),
               WEIR_LISTEN="127.0.0.1:%d" % listen, WEIR_API_ADDRESS="127.0.0.1:%d" % api,
               WEIR_WORKING_TIME_IDLE_AFTER="1s")  # each user's last row 1 s after they stop, not 90
    log = open(os.path.join(WORK, "weir.log"), "w")
    weir = subprocess.Popen([WEIR, "run", "-c", os.path.join(ROOT, "pipelines", "cvat-analytics.yaml")], env=env, stderr=log)
    posted = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "post-events.py"), "http://127.0.0.1:%d/" % listen,
                             SESSION], capture_output=True, text=True, timeout=120)
    check("the session is posted, every request answered 200", posted.returncode == 0, posted.stdout + posted.stderr)

    # The transform's own totals from the same log through stdin (its rows come at the end).
    out = os.path.join(WORK, "totals.ndjson")
    subprocess.run([WEIR, "run", "-c", os.path.join(ROOT, "pipelines", "working-time.yaml")], stdin=open(SESSION),
                   env=dict(os.environ, WEIR_OUT=out, WEIR_DATA_DIR=os.path.join(WORK, "wt")), check=True,
                   stderr=subprocess.DEVNULL)
    transform = collections.Counter()
    for line in open(out):
        e = json.loads(line)
        transform[key_of(e)] += e["duration"]

    # Live, the last rows come from the idle timer, emit_interval after each user's last event.
    events = [json.loads(line) for line in open(SESSION)]
    deadline = time.time() + 60
    while time.time() < deadline:
        if (int(query("SELECT count() FROM cvat.events WHERE scope != 'send:working_time'")) >= len(events) and
                int(query("SELECT sum(duration) FROM cvat.events WHERE scope = 'send:working_time'")) >= sum(transform.values())):
            break
        time.sleep(0.2)
    weir.send_signal(signal.SIGTERM)
    rc = weir.wait(timeout=60)
    weir = None
    check("weir drains and exits 0", rc == 0, open(log.name).read()[-2000:])

    stored = int(query("SELECT count() FROM cvat.events WHERE scope != 'send:working_time'"))
    check("every event is a row", stored == len(events), (stored, len(events)))
    ids = query("SELECT count() FROM cvat.events WHERE scope != 'send:working_time' AND visitParamExtractString("
                "visitParamExtractRaw(payload, 'request'), 'id') != ''")
    check("every event's payload carries its request id", int(ids) == len(events), ids)

    # Working time in ClickHouse, per key.
    rows = query("SELECT user_id, job_id, task_id, project_id, sum(duration), sum(visitParamExtractUInt(payload, "
                 "'working_time')) FROM cvat.events WHERE scope = 'send:working_time' GROUP BY user_id, job_id, task_id, "
                 "project_id FORMAT JSONCompact")
    in_clickhouse = {}
    consistent = True
    for user, job, task, project, duration, payload_ms in json.loads(rows)["data"]:
        key = tuple(None if v is None else int(v) for v in (user, job, task, project))
        in_clickhouse[key] = int(duration)
        consistent = consistent and int(duration) == int(payload_ms)
    check("duration and payload.working_time agree in every row", consistent)

    check("working-time keys: %d in ClickHouse, %d from the transform" % (len(in_clickhouse), len(transform)),
          len(in_clickhouse) == len(transform) and len(transform) > 20)
    differing = [(k, in_clickhouse.get(k), v) for k, v in transform.items() if in_clickhouse.get(k) != v]
    total_ms = sum(transform.values())
    check("working time in ClickHouse equals the transform's, per key, to the ms (%.3f h in all)" % (total_ms / 3.6e6),
          not differing, differing[:5])
finally:
    if weir is not None:
        weir.kill()
    try:
        server("stop")
    except SystemExit:
        pass

finish("cvat analytics")
