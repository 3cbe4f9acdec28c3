#!/usr/bin/env python3
"""An insert re-sent from a disk buffer after a crash is the same insert: the same rows
under the same insert_deduplication_token, so a server that deduplicates (replicated
tables, non_replicated_deduplication_window) stores it once. Debian's ClickHouse 18.16
does not know the setting (weir then stops sending it), so this test stands in a small
fake server that records each insert's token and rows, and holds the first inserts
unanswered while weir is killed with SIGKILL."""
import gzip, http.server, json, os, signal, socketserver, subprocess, sys, tempfile, threading, time, urllib.parse, urllib.request

import harness
from harness import check, finish, free_port, wait_for

WEIR = os.path.abspath(sys.argv[1])
WORK = tempfile.mkdtemp(prefix="weir-dedup-")
inserts = []  # (token, ids) in arrival order
lock = threading.Lock()
hold = threading.Event()  # set: answer inserts at once; clear: keep them waiting


class FakeClickHouse(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        ids = [json.loads(line)["id"] for line in body.decode().splitlines() if line.strip()]
        with lock:
            inserts.append((query.get("insert_deduplication_token", [""])[0], ids))
        while not hold.is_set():
            time.sleep(0.05)  # in flight until the test lets go (or weir is killed)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        # What weir asks at start: the server's version, time zone and whether it knows
        # insert_deduplication_token (a current server does); the table's columns (none
        # here, so weir inserts JSONEachRow, which this fake reads).
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query).get("query", [""])[0]
        body = b"24.3.1.1\tUTC\t1\n" if "version()" in query else b""
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


fake_port, port = free_port(), free_port()
server = Server(("127.0.0.1", fake_port), FakeClickHouse)
threading.Thread(target=server.serve_forever, daemon=True).start()
config = os.path.join(WORK, "p.yaml")
with open(config, "w") as f:
    f.write("""data_dir: %s/data
sources:
  in: { type: http_server, address: "127.0.0.1:%d", acknowledgements: true }
sinks:
  ch:
    type: clickhouse
    inputs: [in]
    endpoint: http://127.0.0.1:%d
    table: events
    healthcheck: { enabled: false }
    batch: { max_events: 300, timeout: 2s }  # uploads are cut by size, at ids that are multiples of 300
    request: { concurrency: 2, retry_initial_backoff: 100ms, retry_max_backoff: 500ms }
    buffer: { type: disk }
""" % (WORK, port, fake_port))
log = open(os.path.join(WORK, "weir.log"), "w")


def start():
    proc = subprocess.Popen([WEIR, "run", "-c", config], stdout=log, stderr=subprocess.STDOUT)
    wait_for(lambda: urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:%d/" % port, data=b"", method="POST"), timeout=2), 20)
    return proc


def post(first, count):
    body = "".join('{"id":%d}\n' % i for i in range(first, first + count)).encode()
    with urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:%d/" % port, data=body, method="POST"), timeout=10) as r:
        return r.status


try:
    weir = start()
    statuses = [post(i * 250, 250) for i in range(8)]  # 2000 events, on disk before each 200
    check("every request answered 200 while the server holds the inserts", statuses == [200] * 8, statuses)
    check("inserts are in flight", wait_for(lambda: len(inserts) >= 2, 10), len(inserts))
    time.sleep(0.3)
    with lock:
        before = list(inserts)
    weir.send_signal(signal.SIGKILL)
    weir.wait()
    hold.set()
    weir = start()
    delivered = lambda: sorted({i for _, ids in inserts for i in ids}) == list(range(2000))
    check("after the restart every event is delivered", wait_for(delivered, 30))
    with lock:
        after = inserts[len(before):]
    again = {token: ids for token, ids in after}
    print("in flight at the kill: %s" % [(t, len(ids)) for t, ids in before])
    check("the inserts in flight at the kill are sent again with the same token and the same rows",
          before and all(token and again.get(token) == ids for token, ids in before), (before, list(again.items())[:4]))
    tokens = [t for t, _ in inserts]
    check("tokens name the rows' event ids: weir-ch-e<first>-<end>", all(t.startswith("weir-ch-e") for t in tokens), tokens[:4])
    ranges = sorted((ids[0], ids[-1] + 1) for _, ids in after)
    check("uploads end at multiples of batch.max_events", all(end % 300 == 0 or end == 2000 for _, end in ranges), ranges)
    weir.send_signal(signal.SIGTERM)
    check("weir exits 0", weir.wait(timeout=30) == 0)
finally:
    hold.set()
    if weir.poll() is None:
        weir.kill()
    log.close()
    if harness.failures:
        print(open(os.path.join(WORK, "weir.log")).read()[-3000:])
    server.shutdown()
    subprocess.run(["rm", "-rf", WORK])
finish("dedup token")
