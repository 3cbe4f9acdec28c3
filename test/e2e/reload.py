#!/usr/bin/env python3
"""Reload under load: 20k events/s over HTTP (acknowledgements on) through an enrich
transform into a disk-buffered file sink while its option changes on SIGHUP. Every
answered event arrives exactly once; the change shows from the next request after the
reload is reported; an invalid config on SIGHUP (or POST /reload) keeps the old pipeline
running and is reported with file:line:col; a burst of 10 SIGHUPs is survived. Changes of
shape under the same load: a sink added (it gets every event answered after the reload),
a transform inserted before the disk-buffered sink (its edges rewired), both removed again,
and the source's options changed (stopped, answering what it took, and started anew on the
same port); through all of it every answered event reaches the first sink exactly once. A
component changing kind under the same name is refused."""
import json, os, signal, subprocess, sys, tempfile, threading, time, urllib.request

import harness
from harness import check, finish, free_port, wait_for

WEIR = os.path.abspath(sys.argv[1])
WORK = tempfile.mkdtemp(prefix="weir-reload-")
port, api = free_port(), free_port()
out_path = os.path.join(WORK, "out.ndjson")
config = os.path.join(WORK, "p.yaml")
copy_path = os.path.join(WORK, "copy.ndjson")
TEMPLATE = """data_dir: %s/data
api: { address: "127.0.0.1:%d" }
sources:
  in: { type: http_server, address: "127.0.0.1:%d", acknowledgements: true%%(source)s }
transforms:
  tag: { type: enrich, inputs: [in], set: { version: "%%(version)s" } }
%%(transforms)ssinks:
  out: { type: file, inputs: [%%(out_input)s], path: %s, buffer: { type: disk } }
%%(sinks)s""" % (WORK, api, port, out_path)


def write_config(version, extra="", transforms="", out_input="tag", source=""):
    with open(config + ".tmp", "w") as f:
        f.write(TEMPLATE % {"version": version, "sinks": extra, "transforms": transforms, "out_input": out_input,
                            "source": source})
    os.replace(config + ".tmp", config)


def reload_api():
    req = urllib.request.Request("http://127.0.0.1:%d/reload" % api, data=b"", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


write_config("one")
log = open(os.path.join(WORK, "weir.log"), "w")
weir = subprocess.Popen([WEIR, "run", "-c", config], stdout=log, stderr=subprocess.STDOUT)
accepted, lock = {}, threading.Lock()  # id -> the request's send time
stop = threading.Event()


def sender(first):
    # 4 senders x 5 requests/s x 1000 events = 20k events/s
    n = 0
    while not stop.is_set():
        ids = range(first + n * 1000, first + (n + 1) * 1000)
        body = "".join('{"id":%d}\n' % i for i in ids).encode()
        start = time.time()
        while True:
            try:
                req = urllib.request.Request("http://127.0.0.1:%d/" % port, data=body, method="POST")
                with urllib.request.urlopen(req, timeout=30) as r:
                    if r.status == 200:
                        break
            except Exception:
                pass
            time.sleep(0.05)
        with lock:
            for i in ids:
                accepted[i] = start
        n += 1
        time.sleep(max(0, 0.2 - (time.time() - start)))


try:
    check("weir serves", wait_for(lambda: reload_api()[0] == 200, 20))
    threads = [threading.Thread(target=sender, args=(k * 10_000_000,)) for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(2)
    write_config("two")
    weir.send_signal(signal.SIGHUP)
    check("SIGHUP applies the change", wait_for(lambda: "generation 2, rebuilt tag" in open(log.name).read(), 10))
    time.sleep(2)
    write_config("three")
    status, outcome = reload_api()
    reloaded_at = time.time()
    check("POST /reload answers the real outcome and the generation",
          status == 200 and outcome["status"] == "reloaded" and outcome["generation"] == 3 and outcome["rebuilt"] == ["tag"],
          (status, outcome))
    time.sleep(2)
    with open(config, "a") as f:
        f.write("oops: [\n")
    weir.send_signal(signal.SIGHUP)
    status, outcome = reload_api()
    check("an invalid config is refused with file:line:col", status == 400 and outcome["status"] == "failed"
          and any("p.yaml:" in e for e in outcome["errors"]) and outcome["generation"] == 3, (status, outcome))
    # The SIGHUP above may be handled after the POST was answered: let that reload run
    # (on the same invalid file) before the next change is written, or it would apply it.
    time.sleep(0.5)
    reload_api()
    # Shape changes, under the same load.
    copy_sink = "  copy: { type: file, inputs: [tag], path: %s }\n" % copy_path
    write_config("three", copy_sink)
    status, outcome = reload_api()
    added_at = time.time()
    check("a sink added on reload starts", status == 200 and outcome["status"] == "reloaded"
          and outcome["rebuilt"] == ["copy (added)"], (status, outcome))
    time.sleep(2)
    write_config("three", copy_sink, transforms="  mark: { type: enrich, inputs: [tag], set: { marked: true } }\n",
                 out_input="mark")
    status, outcome = reload_api()
    inserted_at = time.time()
    check("a transform inserted before the sink, its edges rewired", status == 200
          and outcome["rebuilt"] == ["mark (added)"], (status, outcome))
    time.sleep(2)
    write_config("three")
    status, outcome = reload_api()
    removed_at = time.time()
    check("both removed again", status == 200 and sorted(outcome["rebuilt"]) == ["copy (removed)", "mark (removed)"],
          (status, outcome))
    time.sleep(1)
    health = json.loads(urllib.request.urlopen("http://127.0.0.1:%d/health" % api).read())
    check("/health no longer lists the removed components once drained",
          sorted(health["components"]) == ["in", "out", "tag"], health)
    write_config("three", source=", max_body_bytes: 5MiB")
    status, outcome = reload_api()
    check("a source's options changed: it is stopped and started anew", status == 200
          and outcome["rebuilt"] == ["in"] and not outcome["errors"], (status, outcome))
    time.sleep(2)
    with open(config, "w") as f:  # `tag`, a transform, as a sink
        f.write(TEMPLATE.split("transforms:")[0].replace("%%", "%") % {"source": ""}
                + "sinks:\n  out: { type: file, inputs: [in], path: %s, buffer: { type: disk } }\n"
                  "  tag: { type: blackhole, inputs: [in] }\n" % out_path)
    status, outcome = reload_api()
    check("a component changing kind under its name is refused", status == 400
          and "tag: a transform cannot become a sink" in outcome["errors"][0], (status, outcome))
    write_config("four")
    for _ in range(10):
        weir.send_signal(signal.SIGHUP)
    time.sleep(2)
    check("a burst of 10 SIGHUPs is survived", weir.poll() is None)
    status, outcome = reload_api()
    check("and the last change is applied", status == 200 and outcome["generation"] >= 4, (status, outcome))
    metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % api).read().decode()
    failed = [l for l in metrics.splitlines() if l.startswith('weir_reloads_total{outcome="failed"}')]
    # the invalid file (SIGHUP, then POST: one or two reloads) and the added component
    check("failed reloads are counted", failed and int(failed[0].split()[-1]) >= 2, failed)
    time.sleep(1)
    stop.set()
    for t in threads:
        t.join()
    weir.send_signal(signal.SIGTERM)
    check("weir exits 0", weir.wait(timeout=30) == 0)
    events = [json.loads(line) for line in open(out_path)]
    ids = [e["id"] for e in events]
    check("%d answered events, each delivered exactly once" % len(accepted),
          len(ids) == len(set(ids)) and set(ids) == set(accepted), (len(ids), len(set(ids)), len(accepted)))
    rate = len(accepted) / (max(accepted.values()) - min(accepted.values()) + 0.2)
    print("rate: %.0f events/s" % rate)
    check("about 20k events/s were sent", rate > 15000, rate)
    versions = [e["version"] for e in events]
    changes = [versions[i] for i in range(len(versions)) if i == 0 or versions[i] != versions[i - 1]]
    check("versions change in order, never back", changes == ["one", "two", "three", "four"], changes)
    late = [e for e in events if accepted[e["id"]] > reloaded_at + 0.05 and e["version"] in ("one", "two")]
    check("requests sent after POST /reload answered see the new option", not late, late[:3])
    marked = {e["id"] for e in events if e.get("marked")}
    inserted = {i for i, at in accepted.items() if inserted_at + 0.05 < at < removed_at - 0.3}
    after_removal = {e["id"] for e in events if e.get("marked") and accepted[e["id"]] > removed_at + 0.05}
    check("events sent while the inserted transform ran went through it (%d)" % len(inserted),
          inserted and inserted <= marked, (len(inserted), len(inserted - marked)))
    check("and none sent after its removal", not after_removal, len(after_removal))
    copies = [json.loads(line)["id"] for line in open(copy_path)]
    expected_copies = {i for i, at in accepted.items() if added_at + 0.05 < at < removed_at - 0.3}
    check("the added sink got every event sent while it ran (%d), once each" % len(expected_copies),
          expected_copies and expected_copies <= set(copies) and len(copies) == len(set(copies)),
          (len(expected_copies), len(expected_copies - set(copies)), len(copies) - len(set(copies))))
finally:
    stop.set()
    if weir.poll() is None:
        weir.kill()
    log.close()
    if harness.failures:
        print(open(log.name).read()[-4000:])
    subprocess.run(["rm", "-rf", WORK])
finish("reload")
