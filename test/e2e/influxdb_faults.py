#!/usr/bin/env python3
"""The influxdb sink against a small fake InfluxDB 2.x (Debian has no 2.x server; the real
1.6 is tested in influxdb.py): the v2 request (path, org, bucket, precision, token, gzip,
two-character escapes, unsigned integers), `compression: auto` uncompressed on loopback, 429 with Retry-After and 503 retried, 413 split
into halves, and 401 kept until the server lets the points in."""
import calendar, gzip, json, os, subprocess, sys, tempfile, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import check, finish

WEIR = os.path.abspath(sys.argv[1])
WORK = tempfile.mkdtemp(prefix="weir-influx-faults-")


class Fake:
    """Answers from a script: a list of (status, headers) per request, then 204."""
    def __init__(self):
        self.requests = []  # (path, headers, lines)
        self.script = []
        self.max_lines = None  # more lines than this: 413
        self.lock = threading.Lock()


fake = Fake()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        lines = body.decode().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        with fake.lock:
            fake.requests.append((self.path, dict(self.headers), lines))
            if fake.max_lines is not None and len(lines) > fake.max_lines:
                status, headers = 413, {}
            elif fake.script:
                status, headers = fake.script.pop(0)
                if "name" in headers:  # a 1.x partial write naming these lines
                    named = [lines[int(i)] for i in headers.pop("name").split(",")]
                    message = "partial write: " + "\n".join("unable to parse '%s': invalid field format" % l for l in named)
                    headers["X-Influxdb-Error"] = message.replace("\n", " ")
                    self.partial = json.dumps({"error": message + " dropped=0"}).encode()
            else:
                status, headers = 204, {}
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        payload = b"" if status == 204 else json.dumps({"code": "x", "message": "scripted %d" % status}).encode()
        payload = getattr(self, "partial", payload)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self):  # /ping
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
URL = "http://127.0.0.1:%d" % server.server_address[1]


def run(name, events, extra="", target="    org: my org\n    bucket: b/rp\n    token: secret-token\n"):
    path = os.path.join(WORK, name + ".yaml")
    with open(path, "w") as f:
        f.write("""data_dir: %s/%s-data
sources:
  in: { type: stdin }
sinks:
  influx:
    type: influxdb
    inputs: [in]
    endpoint: %s
%s    measurement: m
    tags: [host]
    timestamp: { field: t, precision: ms }
    batch: { timeout: 100ms }
    request: { retry_initial_backoff: 100ms, retry_max_backoff: 500ms }
%s""" % (WORK, name, URL, target, extra))
    log = open(os.path.join(WORK, name + ".log"), "w")
    started = time.time()
    p = subprocess.run([WEIR, "run", "-c", path], input="".join(json.dumps(e) + "\n" for e in events).encode(),
                       stderr=log, timeout=60)
    return p.returncode, open(log.name).read(), time.time() - started


def written_lines():
    return [l for _, _, lines in fake.requests for l in lines]


# ---- the v2 request ------------------------------------------------------------------------
events = [{"host": "a b", "t": "2025-11-29T10:00:00.123Z", "u": 18446744073709551615, "s": "x\ny\"z\\", "f": 0.5}]
millis = calendar.timegm((2025, 11, 29, 10, 0, 0)) * 1000 + 123
rc, log, _ = run("v2", events, extra="    compression: gzip\n")
path, headers, lines = fake.requests[-1] if fake.requests else ("", {}, [])
check("v2: weir exits 0", rc == 0, log[-1500:])
check("v2: POST /api/v2/write with org, bucket and precision, url-encoded",
      path == "/api/v2/write?org=my%20org&bucket=b%2Frp&precision=ms", path)
check("v2: Authorization: Token, gzip, text/plain", headers.get("Authorization") == "Token secret-token"
      and headers.get("Content-Encoding") == "gzip" and headers.get("Content-Type", "").startswith("text/plain"), headers)
check("v2: the line (escaped tag, u suffix, two-character escapes, ms timestamp)",
      lines == ['m,host=a\\ b u=18446744073709551615u,s="x\\ny\\"z\\\\",f=0.5 %d' % millis], lines)
check("v2: the token is not in the log", "secret-token" not in log)

# ---- compression: auto (the default) sends plain bodies to a server on this machine ---------
fake.requests.clear()
rc, log, _ = run("auto", events)
_, auto_headers, auto_lines = fake.requests[-1] if fake.requests else ("", {}, [])
check("auto: a loopback endpoint gets the lines uncompressed (no Content-Encoding)",
      rc == 0 and "Content-Encoding" not in auto_headers and auto_lines == lines, (rc, auto_headers, auto_lines))

# ---- 429 with Retry-After, then 503: retried, nothing lost ------------------------------------
fake.requests.clear()
fake.script = [(429, {"Retry-After": "1"}), (503, {})]
rc, log, seconds = run("retry", [{"host": "h", "t": i, "v": i} for i in range(100)])
ok_lines = fake.requests[-1][2] if fake.requests else []
check("retry: 3 attempts, the last one delivered all 100 points", rc == 0 and len(fake.requests) == 3 and len(ok_lines) == 100,
      (rc, len(fake.requests), len(ok_lines), log[-1000:]))
check("retry: Retry-After honoured (at least 1 s)", seconds >= 1.0, seconds)
check("retry: the same lines resent in the same order", fake.requests[0][2] == fake.requests[2][2])

# ---- 413: split until each part fits ----------------------------------------------------------
fake.requests.clear()
fake.max_lines = 300
rc, log, _ = run("split", [{"host": "h", "t": i, "v": i} for i in range(1000)], "    batch: { max_events: 1000, timeout: 100ms }\n")
fake.max_lines = None
accepted = [l for _, _, lines in fake.requests if len(lines) <= 300 for l in lines]
check("413: the body is split until the server takes it; every point written once",
      rc == 0 and sorted(accepted) == sorted(set(accepted)) and len(accepted) == 1000, (rc, len(accepted), log[-1000:]))

# ---- 401: clear error, points kept until it passes ---------------------------------------------
fake.requests.clear()
fake.script = [(401, {}), (401, {})]
rc, log, _ = run("auth", [{"host": "h", "t": i, "v": i} for i in range(10)])
check("401: logged as refused, then delivered once the server lets it in",
      rc == 0 and "refused" in log and "401" in log and len(fake.requests) == 3 and len(fake.requests[-1][2]) == 10,
      (rc, len(fake.requests), log[-1500:]))

# ---- a 1.x partial write naming two lines: those dead-lettered, the rest counted written -------
fake.requests.clear()
fake.script = [(400, {"name": "3,7"})]
rc, log, _ = run("partial", [{"host": "h", "t": i, "v": i} for i in range(10)], target="    database: d\n")
dead_path = os.path.join(WORK, "partial-data", "dead_letter.ndjson")
dead = [json.loads(l) for l in open(dead_path)] if os.path.exists(dead_path) else []
check("1.x partial write: one request, the named lines dead-lettered with the reason, no resend",
      rc == 0 and len(fake.requests) == 1 and fake.requests[0][0].startswith("/write?db=d&precision=ms")
      and sorted(d["raw"] for d in dead) == sorted([fake.requests[0][2][3], fake.requests[0][2][7]])
      and all("invalid field format" in d["reason"] for d in dead), (rc, len(fake.requests), dead, log[-1000:]))
check("1.x partial write: the other 8 counted as sent", "8 events out" in log and "2 dead-lettered" in log, log[-800:])

# ---- v1 with `auth.scheme: token`: the 1.8+ header ------------------------------------------
fake.requests.clear()
rc, log, _ = run("v1token", [{"host": "h", "t": 1, "v": 1}],
                 target="    database: d\n    auth: { user: weir, password: pw, scheme: token }\n")
check("v1 token auth: Authorization: Token user:password, no basic auth",
      rc == 0 and fake.requests and fake.requests[-1][1].get("Authorization") == "Token weir:pw", fake.requests[-1:])

server.shutdown()
finish("influxdb fault")
