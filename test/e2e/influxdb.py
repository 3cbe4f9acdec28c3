#!/usr/bin/env python3
"""End-to-end tests of the influxdb sink against a real InfluxDB (Debian's 1.6 influxd,
started here on loopback with a temporary data dir and free ports): nasty names and values
round-tripped, 20k points written and queried back equal, a partial write (type conflicts
the server refuses) dead-lettered with the rest written, the server stopped and restarted
mid-stream with nothing lost, a missing database kept until it exists, and the LUNA
monitoring pipeline (pipelines/service-monitoring.yaml) with a real ClickHouse too: the
seed document's `requests` and `errors` points in both, and weir's own requests."""
import base64, json, os, subprocess, sys, tempfile, threading, time, urllib.error, urllib.parse, urllib.request

from harness import ROOT, check, finish, free_port, server, wait_for

WEIR = os.path.abspath(sys.argv[1])
WORK = tempfile.mkdtemp(prefix="weir-influxdb-")
INFLUX_DIR = os.path.join(WORK, "influxdb")
CLICKHOUSE_DIR = os.path.join(WORK, "clickhouse")
AUTH_DIR = os.path.join(WORK, "influxdb-auth")


def influx(q, db=None, method="GET"):
    params = {"q": q}
    if db:
        params["db"] = db
    if method == "POST":
        req = urllib.request.Request(URL + "/query", data=urllib.parse.urlencode(params).encode(), method="POST")
    else:
        req = urllib.request.Request(URL + "/query?" + urllib.parse.urlencode(params))
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read().decode())
    except urllib.error.HTTPError as e:
        raise SystemExit("influx query %r: HTTP %d %s" % (q, e.code, e.read()[:500]))


def series(q, db):
    """{measurement: [row dicts]} of a SELECT."""
    out = {}
    for result in influx(q, db)["results"]:
        for s in result.get("series", []):
            out.setdefault(s["name"], []).extend(dict(zip(s["columns"], v)) for v in s["values"])
    return out


def write_lines(db, body):
    req = urllib.request.Request(URL + "/write?db=" + db, data=body.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status


def pipeline(name, db, sink_extra="", top="", source="in: { type: stdin }"):
    path = os.path.join(WORK, name + ".yaml")
    with open(path, "w") as f:
        f.write(top + """data_dir: %s/%s-data
sources:
  %s
sinks:
  influx:
    type: influxdb
    inputs: [in]
    endpoint: %s
    database: %s
    batch: { timeout: 200ms }
    request: { retry_initial_backoff: 200ms, retry_max_backoff: 1s }
%s
""" % (WORK, name, source, URL, db, sink_extra))
    return path


def run_stdin(config, data, timeout=120):
    log = open(os.path.join(WORK, os.path.basename(config) + ".log"), "w")
    p = subprocess.run([WEIR, "run", "-c", config], input=data.encode(), stderr=log, timeout=timeout)
    return p.returncode, open(log.name).read()


def dead_letters(name):
    path = os.path.join(WORK, name + "-data", "dead_letter.ndjson")
    return [json.loads(l) for l in open(path)] if os.path.exists(path) else []


try:
    URL = server("influxdb", "start", INFLUX_DIR)
    print("influxdb at %s" % URL, flush=True)
    for db in ("nasty", "whole", "partial", "outage", "restart"):
        influx("CREATE DATABASE " + db, method="POST")

    # ---- nasty names and values round-trip ---------------------------------------------------
    nasty = [
        {"m": "cpu load,total", "tags": {"host name": "a b", "k=v": "x,y=z", "quote\"d": "say \"hi\"", "uni": "Zürich ✓",
                                          "back": "a\\b"},
         "fields": {"msg": "line1\nline2\ttab \"q\" back\\slash", "f,=k ey": 1.5, "n": -42, "ok": True, "uni_f": "ĀāĂ 日本"},
         "time": "2026-11-29T10:00:00.001Z"},
        {"m": "m2", "tags": {"t": "plain"}, "fields": {"big": 9007199254740993, "tiny": 5e-324, "neg": -0.25, "cr": "a\rb"},
         "time": "2026-11-29T10:00:00.002Z"},
    ]
    config = pipeline("nasty", "nasty", """    measurement_field: m
    tags: [tags]
    fields: [fields]
    timestamp: { field: time, precision: ms }
""")
    rc, log = run_stdin(config, "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in nasty))
    check("nasty: weir exits 0", rc == 0, log[-1500:])
    got = series('SELECT * FROM "cpu load,total", "m2"', "nasty")
    ok = True
    detail = []
    for e in nasty:
        rows = got.get(e["m"], [])
        if len(rows) != 1:
            ok = False
            detail.append((e["m"], rows))
            continue
        row = rows[0]
        for k, v in list(e["tags"].items()) + list(e["fields"].items()):
            if row.get(k) != v and not (isinstance(v, float) and isinstance(row.get(k), (int, float)) and float(row[k]) == v):
                ok = False
                detail.append((e["m"], k, v, row.get(k)))
        if row["time"] != e["time"]:
            ok = False
            detail.append(("time", row["time"], e["time"]))
    check("nasty: measurement, tag keys and values, field keys and string values read back as written", ok, detail)
    keys = influx('SHOW FIELD KEYS FROM "cpu load,total"', "nasty")["results"][0]["series"][0]["values"]
    types = dict((k, t) for k, t in keys)
    check("nasty: field types kept (float, integer, boolean, string)",
          types.get("f,=k ey") == "float" and types.get("n") == "integer" and types.get("ok") == "boolean" and types.get("msg") == "string",
          types)

    # ---- 20k points written and queried back equal ---------------------------------------------
    N = 20_000
    events = "".join(json.dumps({"host": "h%d" % (i % 10), "i": i, "f": i / 4, "s": "v%d" % i, "b": i % 2 == 0,
                                 "t": 1764410400 + i}) + "\n" for i in range(N))
    config = pipeline("whole", "whole", """    measurement: points
    tags: [host]
    timestamp: { field: t, precision: s }
""")
    rc, log = run_stdin(config, events)
    check("20k: weir exits 0", rc == 0, log[-1500:])
    stats = influx("SELECT count(i), sum(i), sum(f), count(s), count(b) FROM points", "whole")
    values = stats["results"][0]["series"][0]["values"][0][1:]
    check("20k: every point once, values equal (count, sums)",
          values == [N, N * (N - 1) // 2, (N * (N - 1) // 2) / 4, N, N], values)
    sample = series("SELECT * FROM points WHERE i = 12345", "whole").get("points", [{}])[0]
    check("20k: a point's values and tag read back", sample.get("s") == "v12345" and sample.get("b") is False and
          sample.get("host") == "h5" and sample.get("f") == 12345 / 4 and sample.get("time") == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1764410400 + 12345)), sample)

    # ---- partial write: the server refuses 7 points (type conflict), the rest is written ------
    write_lines("partial", "p,k=seed s=1i 1\n")  # the server's `s` is an integer field from now on
    bad = {13, 250, 251, 600, 777, 901, 999}
    lines = []
    for i in range(1000):
        e = {"k": "x", "n": i, "t": 1000 + i}
        if i in bad:
            e["s"] = "text %d" % i  # a string where the server has integers
        lines.append(json.dumps(e) + "\n")
    config = pipeline("partial", "partial", """    measurement: p
    tags: [k]
    timestamp: { field: t, precision: s }
""")
    rc, log = run_stdin(config, "".join(lines))
    dead = dead_letters("partial")
    check("partial: weir exits 0", rc == 0, log[-1500:])
    check("partial: the 7 refused points are dead-lettered with the server's reason",
          len(dead) == 7 and all("field type conflict" in d["reason"] for d in dead) and
          sorted(int(d["raw"].split("n=")[1].split("i")[0]) for d in dead) == sorted(bad),
          [(d.get("reason"), d.get("raw")) for d in dead][:3])
    count = influx("SELECT count(n) FROM p WHERE k = 'x'", "partial")["results"][0]["series"][0]["values"][0][1]
    check("partial: the other 993 are written", count == 993, count)
    check("partial: the bisection was logged", "splitting them to find the bad rows" in log, log[-1500:])

    # ---- field types remembered across a restart of weir ------------------------------------------
    # The first run writes `v` as an integer; the second run's first point has v = 2.0. With the
    # types restored from <data_dir>/state it is sent as 2i and written; without them it would
    # be a float, which the server refuses for an integer field.
    config = pipeline("restart", "restart", "    measurement: m\n")
    rc, log = run_stdin(config, '{"v": 1}\n')
    check("restart: the first run writes v as an integer", rc == 0 and series("SELECT v FROM m", "restart").get("m"),
          log[-1500:])
    rc, log = run_stdin(config, '{"v": 2.0}\n')
    rows = series("SELECT v FROM m", "restart").get("m", [])
    check("restart: after it, v = 2.0 is written as the integer it was (no type conflict)",
          rc == 0 and len(rows) == 2 and not dead_letters("restart"), (rows, dead_letters("restart"), log[-1500:]))

    # ---- the server stopped and restarted mid-stream: nothing lost ------------------------------
    M = 30_000
    config = pipeline("outage", "outage", """    measurement: o
    fields: [n]
    timestamp: { field: n, precision: ns }
""")
    log = open(os.path.join(WORK, "outage.log"), "w")
    p = subprocess.Popen([WEIR, "run", "-c", config], stdin=subprocess.PIPE, stderr=log)

    def feed():
        for start in range(0, M, 500):
            p.stdin.write("".join('{"n":%d}\n' % i for i in range(start, start + 500)).encode())
            p.stdin.flush()
            time.sleep(0.03)
        p.stdin.close()

    feeder = threading.Thread(target=feed)
    feeder.start()
    wait_for(lambda: influx("SELECT count(n) FROM o", "outage")["results"][0].get("series"), 30)
    server("influxdb", "stop", INFLUX_DIR)
    time.sleep(5)
    server("influxdb", "start", INFLUX_DIR)
    feeder.join()
    rc = p.wait(timeout=120)
    text = open(log.name).read()
    values = influx("SELECT count(n), sum(n) FROM o", "outage")["results"][0]["series"][0]["values"][0][1:]
    check("outage: weir exits 0 once the server is back", rc == 0, text[-1500:])
    check("outage: every point present exactly once", values == [M, M * (M - 1) // 2], values)
    check("outage: the failure was logged with the server's address", URL in text and "retrying" in text, text[-1500:])

    # ---- a missing database: clear error, points kept, written once it exists -------------------
    config = pipeline("later", "not_yet", """    measurement: l
    timestamp: { field: t, precision: s }
""")
    log = open(os.path.join(WORK, "later.log"), "w")
    p = subprocess.Popen([WEIR, "run", "-c", config], stdin=subprocess.PIPE, stderr=log)
    p.stdin.write("".join('{"n":%d,"t":%d}\n' % (i, i) for i in range(100)).encode())
    p.stdin.close()
    wait_for(lambda: "refused" in open(log.name).read(), 20)
    text = open(log.name).read()
    check("missing database: a clear error naming it", "database not found" in text and "not_yet" in text, text[-1500:])
    influx("CREATE DATABASE not_yet", method="POST")
    rc = p.wait(timeout=60)
    count = influx("SELECT count(n) FROM l", "not_yet")["results"][0]["series"][0]["values"][0][1]
    check("missing database: every kept point arrives once it exists, weir exits 0", rc == 0 and count == 100, (rc, count))

    # ---- authentication on: a wrong password is a clear error, the points kept; the right one delivers
    env_auth = dict(os.environ, INFLUXDB_AUTH="1")
    auth_url = server("influxdb", "start", AUTH_DIR, env=env_auth)
    req = urllib.request.Request(auth_url + "/query", data=urllib.parse.urlencode({"q": "CREATE DATABASE secured"}).encode(),
                                 method="POST", headers={"Authorization": "Basic " + base64.b64encode(b"weir:weir-secret").decode()})
    urllib.request.urlopen(req, timeout=10).read()
    api_port = 20000 + (os.getpid() + 7) % 20000
    for scheme in ("basic", "query"):  # 1.6 does not take `Token user:pass` (1.8+ does): influxdb_faults.py checks that header
        path = os.path.join(WORK, "auth-%s.yaml" % scheme)
        with open(path, "w") as f:
            f.write("""data_dir: %s/auth-%s-data
api: { address: "127.0.0.1:%d" }
sources:
  in: { type: stdin }
sinks:
  influx:
    type: influxdb
    inputs: [in]
    endpoint: %s
    database: secured
    auth: { user: weir, password: "${INFLUX_TEST_PASSWORD}", scheme: %s }
    measurement: s
    timestamp: { field: t, precision: s }
    batch: { timeout: 100ms }
    request: { retry_initial_backoff: 100ms, retry_max_backoff: 500ms }
""" % (WORK, scheme, api_port, auth_url, scheme))
        log = open(os.path.join(WORK, "auth-%s.log" % scheme), "w")
        p = subprocess.Popen([WEIR, "run", "-c", path], stdin=subprocess.PIPE, stderr=log,
                             env=dict(os.environ, INFLUX_TEST_PASSWORD="not-the-password"))
        p.stdin.write("".join('{"v":%d,"t":%d}\n' % (i, i) for i in range(50)).encode())
        p.stdin.flush()
        wait_for(lambda: "refused" in open(log.name).read(), 20)
        metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % api_port, timeout=5).read().decode()
        p.kill()
        p.wait()
        text = open(log.name).read()
        check("auth (%s): a wrong password is a clear error (401, authorization failed)" % scheme,
              "refused" in text and "401" in text and "authorization failed" in text, text[-1500:])
        check("auth (%s): the password is not in the log" % scheme, "not-the-password" not in text)
        sent = [l for l in metrics.splitlines() if l.startswith('weir_component_sent_events_total{component_id="influx"')]
        dead = [l for l in metrics.splitlines() if l.startswith('weir_component_dead_lettered_events_total{component_id="influx"')]
        check("auth (%s): nothing sent, nothing dead-lettered: the points are kept" % scheme,
              sent and sent[0].endswith(" 0") and dead and dead[0].endswith(" 0"), (sent, dead))
        log = open(os.path.join(WORK, "auth-%s-ok.log" % scheme), "w")
        p = subprocess.run([WEIR, "run", "-c", path], input="".join('{"v":%d,"t":%d}\n' % (i, i) for i in range(50)).encode(),
                           stderr=log, env=dict(os.environ, INFLUX_TEST_PASSWORD="weir-secret"), timeout=60)
        q = urllib.request.Request(auth_url + "/query?" + urllib.parse.urlencode({"db": "secured", "q": "SELECT count(v) FROM s"}),
                                   headers={"Authorization": "Basic " + base64.b64encode(b"weir:weir-secret").decode()})
        got = json.loads(urllib.request.urlopen(q, timeout=10).read())["results"][0]["series"][0]["values"][0][1]
        check("auth (%s): the right password writes every point" % scheme, p.returncode == 0 and got == 50, (p.returncode, got))
    server("influxdb", "stop", AUTH_DIR)

    # ---- LUNA monitoring: pipelines/service-monitoring.yaml with InfluxDB and ClickHouse --------
    ch_port = server("clickhouse", "start", CLICKHOUSE_DIR)
    subprocess.run(["bash", os.path.join(ROOT, "tools", "clickhouse", "apply-schema.sh"), "http://127.0.0.1:%s/" % ch_port,
                    os.path.join(ROOT, "tools", "schema", "luna-monitoring.sql")], check=True)
    influx("CREATE DATABASE monitoring", method="POST")
    listen, api = free_port(), free_port()  # not derived from the pid: that can collide in a parallel run
    env = dict(os.environ, INFLUXDB_URL=URL, CLICKHOUSE_HOST="127.0.0.1", CLICKHOUSE_PORT=str(ch_port),
               WEIR_LISTEN="127.0.0.1:%d" % listen, WEIR_API_ADDRESS="127.0.0.1:%d" % api,
               WEIR_DATA_DIR=os.path.join(WORK, "luna-data"))
    log = open(os.path.join(WORK, "luna.log"), "w")
    p = subprocess.Popen([WEIR, "run", "-c", os.path.join(ROOT, "pipelines", "service-monitoring.yaml")], env=env, stderr=log)
    try:
        wait_for(lambda: urllib.request.urlopen("http://127.0.0.1:%d/health" % api, timeout=2).status == 200, 20)
        rid = "1536751345,6a5c2191-3e9b-f5a4-fc45-3abf43625c5f"
        records = [
            {"service": "luna-faces", "method": "POST", "resource": "/faces", "status_code": 204, "request_id": rid,
             "execution_time": 1.234, "time": "2026-11-29T10:00:00.123Z"},
            {"service": "luna-faces", "method": "POST", "resource": "/faces", "status_code": 400, "request_id": rid,
             "execution_time": 0.012, "error_code": 13037, "time": "2026-11-29T10:00:01.456Z"},
            {"service": "luna-faces", "method": "GET"},  # no resource: dead-lettered, the others still go
        ]
        body = "\n".join(json.dumps(r) for r in records).encode()
        req = urllib.request.Request("http://127.0.0.1:%d/" % listen, data=body, method="POST",
                                     headers={"Content-Type": "application/x-ndjson"})
        answer = urllib.request.urlopen(req, timeout=10).read().decode()
        check("luna: the records are accepted", '"accepted":3' in answer, answer)

        def influx_has():
            got = series("SELECT * FROM requests WHERE service = 'luna-faces'; SELECT * FROM errors", "monitoring")
            return got if len(got.get("requests", [])) == 2 and got.get("errors") else None
        wait_for(influx_has, 30)
        got = influx_has() or {}
        req_points = got.get("requests", [])
        err_points = got.get("errors", [])
        first = req_points[0] if req_points else {}
        check("luna: InfluxDB has the requests point of POST:/faces with status 204",
              first.get("route") == "POST:/faces" and first.get("status_code") == "204" and first.get("service") == "luna-faces"
              and first.get("request_id") == rid and first.get("execution_time") == 1.234
              and first.get("time") == "2026-11-29T10:00:00.123Z", req_points)
        check("luna: InfluxDB has the errors point with error_code 13037",
              len(err_points) == 1 and err_points[0].get("error_code") == "13037" and err_points[0].get("status_code") == "400"
              and err_points[0].get("request_id") == rid and err_points[0].get("time") == "2026-11-29T10:00:01.456Z", err_points)
        types = dict(influx("SHOW FIELD KEYS FROM requests", "monitoring")["results"][0]["series"][0]["values"])
        check("luna: execution_time is a float field, request_id a string", types.get("execution_time") == "float"
              and types.get("request_id") == "string", types)

        def ch(sql):
            url = "http://127.0.0.1:%s/?%s" % (ch_port, urllib.parse.urlencode({"query": sql}))
            return urllib.request.urlopen(url, timeout=10).read().decode()
        wait_for(lambda: ch("SELECT count() FROM luna.errors FORMAT TSV").strip() == "1", 30)
        ch_requests = [json.loads(l) for l in ch("SELECT toString(time) AS time, data FROM luna.requests "
                                                    "WHERE visitParamExtractString(data, 'service') = 'luna-faces' "
                                                    "ORDER BY time FORMAT JSONEachRow").splitlines()]
        ch_errors = [json.loads(l) for l in ch("SELECT toString(time) AS time, data FROM luna.errors FORMAT JSONEachRow").splitlines()]
        data = [json.loads(r["data"]) for r in ch_requests]
        check("luna: ClickHouse luna.requests rows are time + data with the merged tags and fields",
              len(data) == 2 and data[0] == {"service": "luna-faces", "route": "POST:/faces", "status_code": 204,
                                             "request_id": rid, "execution_time": 1.234}
              and ch_requests[0]["time"] == "2026-11-29 10:00:00", ch_requests)
        check("luna: ClickHouse luna.errors has the error_code 13037 row",
              len(ch_errors) == 1 and json.loads(ch_errors[0]["data"]) == {"service": "luna-faces", "route": "POST:/faces",
                                                                           "status_code": 400, "error_code": 13037, "request_id": rid},
              ch_errors)
        dead = dead_letters("luna")
        check("luna: the record without a resource is dead-lettered with the reason",
              len(dead) == 1 and "no resource" in dead[0]["reason"], dead)
        # weir's own request (the POST above) as a point of service "weir".
        wait_for(lambda: series("SELECT * FROM requests WHERE service = 'weir'", "monitoring").get("requests"), 15)
        own = series("SELECT * FROM requests WHERE service = 'weir'", "monitoring").get("requests", [])
        check("luna: weir's own request is a requests point (records.requests -> monitoring)",
              len(own) >= 1 and own[0].get("route") == "POST:/" and own[0].get("status_code") == "200"
              and own[0].get("component") == "records" and isinstance(own[0].get("execution_time"), float), own)
        bad = urllib.request.Request("http://127.0.0.1:%d/" % listen, data=b"{not json", method="POST")
        try:
            urllib.request.urlopen(bad, timeout=10)
        except urllib.error.HTTPError as e:
            pass
        wait_for(lambda: series("SELECT * FROM errors WHERE service = 'weir'", "monitoring").get("errors"), 15)
        own_errors = series("SELECT * FROM errors WHERE service = 'weir'", "monitoring").get("errors", [])
        check("luna: weir's own failed request is an errors point with the reason",
              len(own_errors) == 1 and own_errors[0].get("status_code") == "400" and own_errors[0].get("error"), own_errors)
    finally:
        p.terminate()
        p.wait(timeout=30)
finally:
    for kind, directory in (("influxdb", INFLUX_DIR), ("influxdb", AUTH_DIR), ("clickhouse", CLICKHOUSE_DIR)):
        try:
            if os.path.isdir(directory):
                server(kind, "stop", directory)
        except SystemExit:
            pass

finish("influxdb")
