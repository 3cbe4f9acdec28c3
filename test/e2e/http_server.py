#!/usr/bin/env python3
"""End-to-end tests of the http_server source and the API, with real HTTP clients
(http.client with keep-alive, curl, raw sockets) against the weir binary."""
import gzip, http.client, json, os, signal, socket, subprocess, sys, tempfile, time

from harness import check, finish, free_port

WEIR = sys.argv[1]
WORK = tempfile.mkdtemp(prefix="weir-http-")


class Weir:
    def __init__(self, config, stdout=subprocess.DEVNULL):
        self.path = os.path.join(WORK, "p%d.yaml" % id(self))
        with open(self.path, "w") as f:
            f.write(config)
        self.log = open(self.path + ".log", "w+")
        self.proc = subprocess.Popen([WEIR, "run", "-c", self.path], stdout=stdout, stderr=self.log)

    def wait_port(self, port):
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.025)
        raise RuntimeError("weir did not listen on %d: %s" % (port, self.logs()))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def logs(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()


def post(port, body, headers=None, path="/", conn=None):
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    if own:
        conn.close()
    try:
        parsed = json.loads(data) if data else None
    except ValueError:
        parsed = data
    return r.status, parsed, r


def lines(path):
    if not os.path.exists(path):
        return []
    return [json.loads(l) for l in open(path, encoding="utf-8")]


# ---- bodies, encodings, errors -------------------------------------------------------------
port, api = free_port(), free_port()
out = os.path.join(WORK, "out.ndjson")
w = Weir("""data_dir: %s/data
api: { address: "127.0.0.1:%d" }
sources:
  in:
    type: http_server
    address: "127.0.0.1:%d"
    max_body_bytes: 64KiB
    headers_to_fields: { x-team: team }
    query_to_fields: { job: job_id }
sinks:
  out: { type: file, inputs: [in], path: "%s" }
""" % (WORK, api, port, out))
w.wait_port(port)

conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # one keep-alive connection
s, b, r = post(port, b'{"n":1}', {"X-Team": "red"}, conn=conn)
check("single object -> 200, accepted 1", s == 200 and b["accepted"] == 1 and b["rejected"] == 0, (s, b))
check("response header says keep-alive", r.getheader("Connection") == "keep-alive", r.getheaders())
s, b, _ = post(port, b'[{"n":2},{"n":3}]', conn=conn, path="/?job=77")
check("array of objects on the same connection", s == 200 and b["accepted"] == 2, (s, b))
s, b, _ = post(port, b'{"n":4}\n{"n":5}\n', conn=conn)
check("NDJSON body", s == 200 and b["accepted"] == 2, (s, b))
s, b, _ = post(port, gzip.compress(b'{"n":6}\n{"n":7}'), {"Content-Encoding": "gzip"}, conn=conn)
check("gzip body", s == 200 and b["accepted"] == 2, (s, b))
zstd_body = subprocess.run(["zstd", "-q", "-c"], input=b'{"n":8}', capture_output=True, check=True).stdout
s, b, _ = post(port, zstd_body, {"Content-Encoding": "zstd"}, conn=conn)
check("zstd body", s == 200 and b["accepted"] == 1, (s, b))
s, b, _ = post(port, b'{"n":9}\n{"n": oops}\n{"n":10}\n[1]\n', conn=conn)
check("NDJSON with bad lines: good ones accepted, counts in the answer", s == 200 and b["accepted"] == 2 and b["rejected"] == 2, (s, b))
s, b, _ = post(port, b'this is not json', conn=conn)
check("nothing decodable -> 400 naming the line", s == 400 and b["error"].startswith("line 1: invalid JSON"), (s, b))
conn.close()

big = b'{"pad":"' + b"x" * 70000 + b'"}'
s, b, _ = post(port, big)
check("body over max_body_bytes -> 413", s == 413 and "max_body_bytes" in b["error"], (s, b))
bomb = gzip.compress(b'{"pad":"' + b"y" * 200000 + b'"}')
s, b, _ = post(port, bomb, {"Content-Encoding": "gzip"})
check("gzip body inflating past the limit -> 413", s == 413 and len(bomb) < 65536, (s, b))
s, b, _ = post(port, b"{}", {"Content-Encoding": "br"})
check("unknown Content-Encoding -> 415", s == 415, (s, b))
s, b, _ = post(port, b'{"n":1}', path="/elsewhere")
check("wrong path -> 404", s == 404, (s, b))

# curl: chunked upload and Expect: 100-continue.
res = subprocess.run(["curl", "-s", "-H", "Transfer-Encoding: chunked", "-H", "Expect: 100-continue",
                      "--data-binary", '{"n":11}', "http://127.0.0.1:%d/" % port], capture_output=True, text=True)
check("curl chunked + Expect: 100-continue", json.loads(res.stdout or "{}").get("accepted") == 1, res.stdout + res.stderr)

# Request ids: a valid one is kept, an invalid one replaced, always echoed.
s, b, r = post(port, b'{"n":12}', {"X-Request-Id": "req-42:abc"})
check("valid X-Request-Id kept and echoed", r.getheader("X-Request-Id") == "req-42:abc" and b["request_id"] == "req-42:abc", r.getheaders())
s, b, r = post(port, b'{"n":13}', {"X-Request-Id": "no spaces allowed"})
rid = r.getheader("X-Request-Id") or ""
check("invalid X-Request-Id replaced by a UUIDv4", len(rid) == 36 and rid[14] == "4" and rid != "no spaces allowed", rid)

# The API.
h = http.client.HTTPConnection("127.0.0.1", api, timeout=5)
h.request("GET", "/health")
hr = h.getresponse()
check("/health 200 while running", hr.status == 200 and json.loads(hr.read())["status"] == "ok")
h.request("GET", "/metrics")
mr = h.getresponse()
metrics = mr.read().decode()
check("/metrics in Prometheus text format", mr.status == 200 and mr.getheader("Content-Type").startswith("text/plain"), mr.getheaders())
check("/metrics counts received events", 'weir_component_received_events_total{component_id="in",component_kind="source",component_type="http_server"} 13' in metrics, metrics[:2000])
check("/metrics counts dead letters", 'weir_component_dead_lettered_events_total{component_id="in",component_kind="source",component_type="http_server"} 3' in metrics, metrics[:2000])
h.close()

rc = w.stop()
check("SIGTERM: exit 0", rc == 0, w.logs())
got = lines(out)
check("every accepted event written", sorted(e["n"] for e in got) == list(range(1, 14)), [e.get("n") for e in got])
check("header copied into a field", any(e.get("team") == "red" and e["n"] == 1 for e in got))
check("query parameter copied into a field", [e.get("job_id") for e in got if e["n"] in (2, 3)] == ["77", "77"], got[:4])

# ---- auth --------------------------------------------------------------------------------
port = free_port()
w = Weir("""data_dir: %s/data
sources:
  in: { type: http_server, address: "127.0.0.1:%d", auth: { strategy: bearer, tokens: ["s3cret", "other"] } }
sinks:
  out: { type: blackhole, inputs: [in] }
""" % (WORK, port))
w.wait_port(port)
s, b, r = post(port, b'{"n":1}')
check("no credentials -> 401 with WWW-Authenticate", s == 401 and r.getheader("WWW-Authenticate") == "Bearer", (s, b))
s, b, _ = post(port, b'{"n":1}', {"Authorization": "Bearer wrong"})
check("wrong token -> 401", s == 401, (s, b))
s, b, _ = post(port, b'{"n":1}', {"Authorization": "Bearer other"})
check("right token -> 200", s == 200, (s, b))
w.stop()
check("secrets never logged", "s3cret" not in w.logs() and "other" not in w.logs())

port = free_port()
w = Weir("""data_dir: %s/data
sources:
  in: { type: http_server, address: "127.0.0.1:%d", auth: { strategy: basic, username: cvat, password: "pa:ss" } }
sinks:
  out: { type: blackhole, inputs: [in] }
""" % (WORK, port))
w.wait_port(port)
import base64
s, _, _ = post(port, b'{}', {"Authorization": "Basic " + base64.b64encode(b"cvat:pa:ss").decode()})
s2, _, r2 = post(port, b'{}', {"Authorization": "Basic " + base64.b64encode(b"cvat:nope").decode()})
check("basic auth: right 200, wrong 401", s == 200 and s2 == 401 and "Basic" in r2.getheader("WWW-Authenticate"), (s, s2))
w.stop()

# ---- slow clients and connection limits -------------------------------------------------------
port = free_port()
w = Weir("""data_dir: %s/data
sources:
  in: { type: http_server, address: "127.0.0.1:%d", header_timeout: 500ms, max_connections: 4 }
sinks:
  out: { type: blackhole, inputs: [in] }
""" % (WORK, port))
w.wait_port(port)
slow = socket.create_connection(("127.0.0.1", port))
slow.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")  # and then nothing: a slowloris client
start = time.time()
slow.settimeout(5)
answer = slow.recv(4096)
check("slowloris client answered 408 and closed at header_timeout", b" 408 " in answer and time.time() - start < 3, answer[:80])
slow.close()
w.stop()

# max_connections: idle ones make room, busy ones do not.
port = free_port()
w = Weir("""data_dir: %s/data
sources:
  in: { type: http_server, address: "127.0.0.1:%d", header_timeout: 5s, max_connections: 4 }
sinks:
  out: { type: blackhole, inputs: [in] }
""" % (WORK, port))
w.wait_port(port)
silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
time.sleep(0.3)
s, _, _ = post(port, b'{}')
silent[0].settimeout(5)
check("at max_connections, a real client is served: the longest-silent connection is shed",
      s == 200 and silent[0].recv(4096) == b"", s)
for c in silent:
    c.close()
time.sleep(0.2)
held = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
for c in held:
    c.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")  # mid-request: not idle, never shed
time.sleep(0.3)
extra = socket.create_connection(("127.0.0.1", port))
extra.settimeout(5)
answer = extra.recv(4096)
check("connection over max_connections with none idle -> 503 with Retry-After",
      b" 503 " in answer and b"retry-after: 1" in answer.lower(), answer[:200])
for c in held + [extra]:
    c.close()
time.sleep(0.2)
s, _, _ = post(port, b'{}')
check("slots come back once connections close", s == 200, s)
w.stop()

# ---- backpressure: a sink that cannot write makes the source answer 503 -----------------------
port, api = free_port(), free_port()
fifo = os.path.join(WORK, "stuck")
os.mkfifo(fifo)
holder = os.open(fifo, os.O_RDWR)  # kept open, never read: writes block once the pipe is full
stuck_out = open(fifo, "wb", buffering=0)
w = Weir("""data_dir: %s/data
shutdown_timeout: 2s
api: { address: "127.0.0.1:%d" }
sources:
  in: { type: http_server, address: "127.0.0.1:%d" }
sinks:
  out: { type: console, inputs: [in], buffer: { max_events: 100 } }
""" % (WORK, api, port), stdout=stuck_out)
w.wait_port(port)
body = b"\n".join(b'{"n":%d,"pad":"%s"}' % (i, b"z" * 200) for i in range(1000))
statuses = []
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
for _ in range(200):
    s, b, r = post(port, body, conn=conn)
    statuses.append(s)
    if s == 503:
        break
check("full pipeline -> 503 with Retry-After", statuses[-1] == 503 and r.getheader("Retry-After") == "1", statuses[-5:])
check("everything before the 503 was accepted whole", all(x == 200 for x in statuses[:-1]) and len(statuses) > 1, statuses)
conn.close()
h = http.client.HTTPConnection("127.0.0.1", api, timeout=5)
h.request("GET", "/metrics")
m = h.getresponse().read().decode()
check("/metrics has the sink's batch latency", 'weir_component_batch_latency_seconds_count{component_id="out",component_kind="sink",component_type="console"}' in m)
w.proc.send_signal(signal.SIGTERM)
time.sleep(0.3)  # the stuck sink keeps the drain going until the 2 s deadline
h = http.client.HTTPConnection("127.0.0.1", api, timeout=5)
h.request("GET", "/health")
hr = h.getresponse()
check("/health 503 while draining", hr.status == 503 and json.loads(hr.read())["status"] == "draining", hr.status)
w.proc.wait(timeout=30)
os.close(holder)
stuck_out.close()

# ---- acknowledgements -------------------------------------------------------------------------
port = free_port()
ack_out = os.path.join(WORK, "acked.ndjson")
w = Weir("""data_dir: %s/data
sources:
  in: { type: http_server, address: "127.0.0.1:%d", acknowledgements: true }
sinks:
  out: { type: file, inputs: [in], path: "%s" }
  broken: { type: file, inputs: [in], path: /dev/full }
""" % (WORK, port, ack_out))
w.wait_port(port)
s, b, _ = post(port, b'{"n":1}')
check("ack mode: a sink that cannot write -> 503 with the reason", s == 503 and "ENOSPC" in b.get("error", ""), (s, b))
w.stop()
port = free_port()
w = Weir("""data_dir: %s/data
sources:
  in: { type: http_server, address: "127.0.0.1:%d", acknowledgements: true }
sinks:
  out: { type: file, inputs: [in], path: "%s" }
""" % (WORK, port, ack_out))
w.wait_port(port)
before = len(lines(ack_out))
s, b, _ = post(port, b'{"n":2}\n{"n":3}')
after = len(lines(ack_out))
check("ack mode: 200 only once the events are written", s == 200 and after - before == 2, (s, b, before, after))
w.stop()

# ---- request ids reach the events ---------------------------------------------------------------
port = free_port()
rid_out = os.path.join(WORK, "rid.ndjson")
w = Weir("""data_dir: %s/data
sources:
  in: { type: http_server, address: "127.0.0.1:%d" }
transforms:
  ids: { type: request_id, inputs: [in] }
sinks:
  out: { type: file, inputs: [ids], path: "%s" }
""" % (WORK, port, rid_out))
w.wait_port(port)
answers = []
for body in (b'[{"n":1,"payload":"{\\"frame\\":1}"},{"n":2,"payload":null}]', b'{"n":3}\n{"n":4}\n'):
    s, b, r = post(port, body)
    answers.append(r.getheader("X-Request-Id"))
w.stop()
got = {e["n"]: json.loads(e["payload"])["request"]["id"] for e in lines(rid_out)}
check("request_id: every event of one request carries the id echoed to the client",
      got.get(1) == got.get(2) == answers[0] and got.get(3) == got.get(4) == answers[1] and answers[0] != answers[1], (got, answers))

# ---- shutdown: every request answered has its `requests` record, the last ones included -------
port = free_port()
events_out, records_out = os.path.join(WORK, "shut-events.ndjson"), os.path.join(WORK, "shut-records.ndjson")
w = Weir("""data_dir: %s/shutdown-data
sources:
  in: { type: http_server, address: "127.0.0.1:%d", acknowledgements: true }
sinks:
  out: { type: file, inputs: [in], path: "%s" }
  records: { type: file, inputs: [in.requests], path: "%s" }
""" % (WORK, port, events_out, records_out))
w.wait_port(port)
import threading
statuses = []


def client():
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for i in range(2000):
        try:
            s, _, _ = post(port, b'{"n":%d}' % i, conn=conn)
            statuses.append(s)
        except (OSError, http.client.HTTPException):
            return  # the server closed: shutting down


threads = [threading.Thread(target=client) for _ in range(4)]
for t in threads:
    t.start()
time.sleep(0.5)
rc = w.stop()
for t in threads:
    t.join()
records = lines(records_out)
by_status = {}
for r in records:
    by_status[r["status_code"]] = by_status.get(r["status_code"], 0) + 1
answered = {}
for st in statuses:
    answered[st] = answered.get(st, 0) + 1
check("shutdown mid-stream: exit 0, every answered request has its record, the last ones too",
      rc == 0 and answered.get(200, 0) > 0 and by_status.get(200, 0) == answered.get(200, 0)
      and by_status.get(200, 0) == len(lines(events_out)), (rc, answered, by_status, len(lines(events_out))))

finish("http_server")
