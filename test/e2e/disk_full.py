#!/usr/bin/env python3
"""A disk buffer on a filesystem that fills up (a 8 MiB tmpfs this test mounts, as root):
weir neither crashes nor answers 200 for what it could not write; writing fails with
ENOSPC, is counted and retried, the HTTP intake pushes back, and once space is freed every
event it answered 200 for is delivered, exactly once."""
import json, os, subprocess, sys, tempfile, threading, time, urllib.request

import harness
from harness import check, finish, free_port, wait_for

WEIR = os.path.abspath(sys.argv[1])
if os.geteuid() != 0:
    print("skip: mounting a tmpfs needs root")
    print("disk full checks: 0 passed, 0 failed")
    sys.exit(0)

WORK = tempfile.mkdtemp(prefix="weir-disk-full-")
FS = os.path.join(WORK, "fs")
os.makedirs(FS)
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", FS], check=True)
port, api = free_port(), free_port()
out_path = os.path.join(WORK, "out.ndjson")
config = os.path.join(WORK, "p.yaml")
with open(config, "w") as f:
    f.write("""data_dir: %s/data
api: { address: "127.0.0.1:%d" }
sources:
  in: { type: http_server, address: "127.0.0.1:%d", acknowledgements: true }
sinks:
  out:
    type: file
    inputs: [in]
    path: %s
    buffer: { type: disk, max_size: 256MiB, max_events: 1000, sync: always }
""" % (FS, api, port, out_path))
log = open(os.path.join(WORK, "weir.log"), "w")
weir = subprocess.Popen([WEIR, "run", "-c", config], stdout=log, stderr=subprocess.STDOUT)
# Leave ~1 MiB free: the buffer's first segment (32 MiB for max_size 256MiB) cannot fit.
filler = os.path.join(FS, "filler")
with open(filler, "wb") as f:
    f.write(b"\0" * (7 << 20))

answers = {"200": 0, "503": 0, "other": 0}
accepted = set()
lock = threading.Lock()
stop_at = time.time() + 60


def sender(first, requests):
    for r in range(requests):
        ids = range(first + r * 200, first + (r + 1) * 200)
        body = "".join(json.dumps({"id": i, "pad": "x" * 80}) + "\n" for i in ids).encode()
        while time.time() < stop_at:
            try:
                req = urllib.request.Request("http://127.0.0.1:%d/" % port, data=body, method="POST")
                with urllib.request.urlopen(req, timeout=30) as resp:
                    code = resp.status
            except urllib.error.HTTPError as e:
                code = e.code
            except Exception:
                code = None
            with lock:
                answers["200" if code == 200 else "503" if code == 503 else "other"] += 1
            if code == 200:
                with lock:
                    accepted.update(ids)
                break
            time.sleep(0.05)


def metric(name, component="out"):
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % api, timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + "{") and 'component_id="%s"' % component in line:
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


try:
    check("weir serves", wait_for(lambda: metric("weir_buffer_events") >= 0, 20))
    threads = [threading.Thread(target=sender, args=(k * 1_000_000, 50)) for k in range(6)]
    for t in threads:
        t.start()
    # While the filler is there, writes fail with ENOSPC: counted, and weir stays up.
    check("writes fail with ENOSPC and are counted as errors", wait_for(lambda: metric("weir_component_errors_total") > 0, 20))
    time.sleep(3)
    with lock:
        pushed_back, during = answers["503"], len(accepted)
    check("weir is still running on a full disk", weir.poll() is None)
    # 6 senders of 200 events against max_events 1000 not yet durable: some are told to retry.
    check("the intake pushes back (503) while nothing can be written", pushed_back > 0, answers)
    os.remove(filler)  # space is back
    for t in threads:
        t.join()
    check("every request is answered 200 once space is back", len(accepted) == 6 * 50 * 200, (len(accepted), answers))
    delivered = lambda: sum(1 for _ in open(out_path)) >= len(accepted)
    check("everything answered 200 is delivered", wait_for(delivered, 60))
    ids = [json.loads(line)["id"] for line in open(out_path)]
    check("each exactly once", len(ids) == len(set(ids)) and set(ids) == accepted,
          (len(ids), len(set(ids)), len(accepted - set(ids))))
    print("answered while full: %d 503s, %d events accepted before space was freed; errors counted: %d"
          % (pushed_back, during, metric("weir_component_errors_total")))
    weir.terminate()
    check("weir exits 0 after SIGTERM", weir.wait(timeout=30) == 0)
finally:
    if weir.poll() is None:
        weir.kill()
    log.close()
    if harness.failures:
        print(open(os.path.join(WORK, "weir.log")).read()[-3000:])
    subprocess.run(["umount", FS])
    subprocess.run(["rm", "-rf", WORK])
finish("disk full")
