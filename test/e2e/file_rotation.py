#!/usr/bin/env python3
"""The file sink after logrotate: once the path no longer names the open file (moved, or
removed), new events go to a new file at the path, and what was written before stays in
the moved one; nothing is lost or written twice."""
import json, os, shutil, signal, subprocess, sys, tempfile, time, urllib.request

import harness
from harness import check, finish, free_port

WEIR = os.path.abspath(sys.argv[1])
WORK = tempfile.mkdtemp(prefix="weir-rotation-")
port, api = free_port(), free_port()
out = os.path.join(WORK, "out.ndjson")
cfg = os.path.join(WORK, "p.yaml")
with open(cfg, "w") as f:
    f.write("""data_dir: %s/data
api: { address: "127.0.0.1:%d" }
sources:
  in: { type: http_server, address: "127.0.0.1:%d", acknowledgements: true }
sinks:
  out: { type: file, inputs: [in], path: "%s" }
""" % (WORK, api, port, out))


def post(events):
    req = urllib.request.Request("http://127.0.0.1:%d/" % port, data=json.dumps(events).encode(),
                                 headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=10).status


def lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(l)["n"] for l in f if l.strip()]


w = subprocess.Popen([WEIR, "run", "-c", cfg, "--log-level", "warn"])
try:
    check("weir is up", harness.wait_for(
        lambda: urllib.request.urlopen("http://127.0.0.1:%d/health" % api, timeout=2).status == 200, 20))
    check("first events written", post([{"n": i} for i in range(3)]) == 200 and lines(out) == [0, 1, 2], lines(out))
    os.rename(out, out + ".1")  # logrotate's default: move, then the writer should reopen
    time.sleep(1.2)             # the sink looks at the path at most once a second
    check("events after the move are accepted", post([{"n": i} for i in range(3, 6)]) == 200)
    check("they go to a new file at the path", harness.wait_for(lambda: lines(out) == [3, 4, 5], 10), lines(out))
    check("the moved file keeps what was written before, and nothing more", lines(out + ".1") == [0, 1, 2],
          lines(out + ".1"))
    if os.path.exists(out):
        os.remove(out)  # removed outright: the same
    time.sleep(1.2)
    post([{"n": 6}])
    check("after a removal, a new file again", harness.wait_for(lambda: lines(out) == [6], 10), lines(out))
    w.send_signal(signal.SIGTERM)
    check("weir stops cleanly", w.wait(timeout=30) == 0)
finally:
    if w.poll() is None:
        w.kill()
    shutil.rmtree(WORK, ignore_errors=True)
finish("file rotation")
