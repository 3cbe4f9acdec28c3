#!/usr/bin/env python3
"""weir replay end to end:
- the same 1M-event log replayed twice through the CVAT analytics pipeline (request_id
  generating ids) and through a pipeline stamping enrich's now() gives byte-identical
  captures; another --seed gives other ids, --now fixes now();
- a gzip and a zstd copy of a log replay to the same capture as the plain one;
- the working-time totals of a replay equal, per (user, job, task, project), those of the
  same events posted live over HTTP in batches of 50 (CVAT's shipper), to the ms;
- --fail-on-dead-letter exits non-zero on a bad line and the summary counts it; a pipeline
  with two sources needs --input-into."""
import collections, gzip, hashlib, json, os, shutil, signal, subprocess, sys, tempfile, time, urllib.request

import harness
from harness import ROOT, check, finish, free_port

WEIR = os.path.abspath(sys.argv[1])
WORK = tempfile.mkdtemp(prefix="weir-replay-")
EVENTS = 1_000_000


def run(*args, **kw):
    return subprocess.run([WEIR] + list(args), capture_output=True, text=True, **kw)


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def capture_digests(folder):
    return {name: digest(os.path.join(folder, name)) for name in sorted(os.listdir(folder))}


def key_of(e):
    return (e["user_id"], e.get("job_id"), e.get("task_id"), e.get("project_id"))


def totals(path):
    t = collections.Counter()
    for line in open(path):
        e = json.loads(line)
        if e.get("scope") == "send:working_time" and e.get("source") == "server":
            t[key_of(e)] += e["duration"]
    return t


try:
    log = os.path.join(WORK, "cvat.ndjson")
    gen = os.path.join(WORK, "gen.yaml")
    with open(gen, "w") as f:
        f.write('sources:\n  gen: { type: demo, count: %d, seed: 11, users: 50, start_time: "2024-01-01T08:00:00Z" }\n'
                'sinks:\n  out: { type: file, inputs: [gen], path: "%s" }\n' % (EVENTS, log))
    subprocess.run([WEIR, "run", "-c", gen, "--log-level", "warn"], check=True)

    cvat = os.path.join(ROOT, "pipelines", "cvat-analytics.yaml")
    first, second = os.path.join(WORK, "a"), os.path.join(WORK, "b")
    r1 = run("replay", "-c", cvat, "--input", log, "--capture", first)
    r2 = run("replay", "-c", cvat, "--input", log, "--capture", second)
    check("replay exits 0 twice", r1.returncode == 0 and r2.returncode == 0, r1.stderr[-1500:] + r2.stderr[-1500:])
    print(r1.stdout, flush=True)
    a, b = capture_digests(first), capture_digests(second)
    check("the capture holds the events and the ClickHouse rows", sorted(a) == ["events.JSONEachRow", "events.ndjson"], a)
    check("two replays of 1M events through the CVAT pipeline: byte-identical captures", a == b, (a, b))
    rows = sum(1 for _ in open(os.path.join(first, "events.JSONEachRow")))
    wt, wt_ms = 0, 0
    for line in open(os.path.join(first, "events.ndjson")):
        if '"scope":"send:working_time"' in line:
            wt += 1
            wt_ms += json.loads(line)["duration"]
    # About as many rows as CVAT's client would send: one per 90 s of work, plus one per
    # change of job and per pause, never one per batch.
    changes, last = 0, {}
    for line in open(log):
        e = json.loads(line)
        k = (e.get("job_id"), e.get("task_id"), e.get("project_id"))
        changes += e["user_id"] in last and last[e["user_id"]] != k
        last[e["user_id"]] = k
    spans = wt_ms // 90_000
    check("every event is a row; working-time rows: %d for %.0f h of work (%d spans of 90 s, %d job changes)"
          % (wt, wt_ms / 3.6e6, spans, changes), rows == EVENTS + wt and spans <= wt <= 2 * (spans + changes) + 100,
          (rows, wt))
    ids = [json.loads(json.loads(line)["payload"])["request"]["id"] for line, _ in zip(open(os.path.join(first, "events.ndjson")), range(3))]
    check("request_id generated ids (UUIDv4)", all(len(i) == 36 and i[14] == "4" for i in ids), ids)
    shutil.rmtree(second)
    seeded = os.path.join(WORK, "seeded")
    r3 = run("replay", "-c", cvat, "--input", log, "--capture", seeded, "--seed", "7")
    other = [json.loads(json.loads(line)["payload"])["request"]["id"] for line, _ in zip(open(os.path.join(seeded, "events.ndjson")), range(3))]
    check("another --seed, other ids", r3.returncode == 0 and other != ids, (ids, other))
    shutil.rmtree(seeded)
    shutil.rmtree(first)

    # enrich's now() under replay: the clock follows event time, or stands at --now.
    stamp = os.path.join(WORK, "stamp.yaml")
    with open(stamp, "w") as f:
        f.write("sources:\n  in: { type: stdin }\ntransforms:\n  ids: { type: request_id, inputs: [in] }\n"
                "  stamped: { type: enrich, inputs: [ids], set: { seen_at: now() } }\n"
                "sinks:\n  out: { type: file, inputs: [stamped], path: /nonexistent/never-written.ndjson }\n")
    small = os.path.join(WORK, "small.ndjson")
    with open(log) as src, open(small, "w") as dst:
        for line, _ in zip(src, range(20000)):
            dst.write(line)
    outs = []
    for n in range(2):
        folder = os.path.join(WORK, "now%d" % n)
        outs.append((run("replay", "-c", stamp, "--input", small, "--capture", folder).returncode, capture_digests(folder)))
    check("enrich now() and request_id: byte-identical twice", outs[0] == outs[1] and outs[0][0] == 0, outs)
    last = json.loads(open(os.path.join(WORK, "now0", "out.ndjson")).readlines()[-1])
    check("now() follows event time (no later than the latest event)", last["seen_at"] >= last["timestamp"][:19], last)
    fixed = os.path.join(WORK, "fixed")
    run("replay", "-c", stamp, "--input", small, "--capture", fixed, "--now", "2030-01-02T03:04:05Z")
    seen = {json.loads(line)["seen_at"] for line in open(os.path.join(fixed, "out.ndjson"))}
    check("--now fixes now()", seen == {"2030-01-02T03:04:05.000Z"}, seen)

    # Compressed logs replay to the same capture.
    with open(small, "rb") as f:
        data = f.read()
    with gzip.open(small + ".gz", "wb") as f:
        f.write(data)
    subprocess.run(["zstd", "-q", "-f", small, "-o", small + ".zst"], check=True)
    digests = {}
    for name in (small, small + ".gz", small + ".zst"):
        folder = os.path.join(WORK, "z-" + os.path.basename(name))
        rc = run("replay", "-c", stamp, "--input", name, "--capture", folder).returncode
        digests[os.path.basename(name)] = (rc, capture_digests(folder))
    check("plain, gzip and zstd logs give the same capture", len({json.dumps(v) for v in digests.values()}) == 1, digests)
    with open(small + ".gz", "rb") as f:
        whole = f.read()
    with open(small + ".cut.gz", "wb") as f:
        f.write(whole[:len(whole) // 2])
    cut = run("replay", "-c", stamp, "--input", small + ".cut.gz", "--capture", os.path.join(WORK, "cut"))
    check("a truncated gzip log is an error (exit 1), not a silent short replay",
          cut.returncode == 1 and "truncated" in cut.stderr and "capture is partial" in cut.stderr, cut.stderr[-600:])

    # Working time: replay vs the same events posted live over HTTP, 50 a request.
    session = os.path.join(ROOT, "examples", "cvat-multi-user.ndjson")
    live_out = os.path.join(WORK, "live.ndjson")
    listen, api = free_port(), free_port()
    live_cfg = os.path.join(WORK, "live.yaml")
    with open(live_cfg, "w") as f:
        f.write('data_dir: %s/live-data\napi: { address: "127.0.0.1:%d" }\nsources:\n'
                '  cvat: { type: http_server, address: "127.0.0.1:%d", decoding: { codec: json } }\n'
                'transforms:\n  wt: { type: working_time, inputs: [cvat] }\n'
                'sinks:\n  out: { type: file, inputs: [wt], path: "%s" }\n' % (WORK, api, listen, live_out))
    weir = subprocess.Popen([WEIR, "run", "-c", live_cfg], stderr=open(os.path.join(WORK, "live.log"), "w"))
    harness.wait_for(lambda: urllib.request.urlopen("http://127.0.0.1:%d/health" % api, timeout=2).status == 200, 20)
    posted = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "post-events.py"), "http://127.0.0.1:%d/" % listen,
                             session, "--batch", "50"], capture_output=True, text=True, timeout=120)
    weir.send_signal(signal.SIGTERM)
    rc = weir.wait(timeout=60)
    check("live: posted in batches of 50, drained, exit 0", posted.returncode == 0 and rc == 0, posted.stdout + posted.stderr)
    replayed = os.path.join(WORK, "replayed")
    rr = run("replay", "-c", live_cfg, "--input", session, "--capture", replayed)
    live, replay_totals = totals(live_out), totals(os.path.join(replayed, "out.ndjson"))
    differing = [(k, live.get(k), v) for k, v in replay_totals.items() if live.get(k) != v]
    check("replay: working time per (user, job, task, project) equals the live run's, to the ms (%d keys, %.3f h)"
          % (len(replay_totals), sum(replay_totals.values()) / 3.6e6),
          rr.returncode == 0 and len(live) == len(replay_totals) > 20 and not differing, differing[:5])

    # Dead letters and source choice.
    bad = os.path.join(WORK, "bad.ndjson")
    with open(bad, "w") as f:
        f.write('{"a":1}\nnot json\n{"a":2}\n')
    plain = os.path.join(WORK, "plain.yaml")
    with open(plain, "w") as f:
        f.write("sources:\n  in: { type: stdin }\nsinks:\n  out: { type: file, inputs: [in], path: /nonexistent/x }\n")
    ok = run("replay", "-c", plain, "--input", bad, "--capture", os.path.join(WORK, "bad"))
    strict = run("replay", "-c", plain, "--input", bad, "--capture", os.path.join(WORK, "bad2"), "--fail-on-dead-letter")
    kept = open(os.path.join(WORK, "bad", "out.ndjson")).read()
    letters = open(os.path.join(WORK, "bad", "dead_letter.ndjson")).read()
    check("a bad line is a dead letter; its neighbours pass (exit 0 without --fail-on-dead-letter)",
          ok.returncode == 0 and kept == '{"a":1}\n{"a":2}\n' and '"line":2' in letters and "1 dead letter" in ok.stdout,
          (ok.returncode, kept, letters, ok.stdout))
    check("--fail-on-dead-letter exits non-zero", strict.returncode != 0, strict.returncode)
    two = os.path.join(WORK, "two.yaml")
    with open(two, "w") as f:
        f.write("sources:\n  a: { type: stdin }\n  b: { type: demo, count: 5 }\n"
                "sinks:\n  out: { type: file, inputs: [a, b], path: /nonexistent/x }\n")
    unnamed = run("replay", "-c", two, "--input", bad, "--capture", os.path.join(WORK, "two"))
    named = run("replay", "-c", two, "--input", small, "--input-into", "a", "--capture", os.path.join(WORK, "two"))
    check("two sources: --input-into is required and named in the error", unnamed.returncode != 0 and "--input-into" in unnamed.stderr,
          unnamed.stderr)
    check("with --input-into, the other source emits nothing", named.returncode == 0 and
          sum(1 for _ in open(os.path.join(WORK, "two", "out.ndjson"))) == 20000, named.stdout + named.stderr)
finally:
    shutil.rmtree(WORK, ignore_errors=True)

finish("replay")
