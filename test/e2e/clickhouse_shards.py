"""The `shard` transform against a real 2-shard ClickHouse 18.16 (tools/clickhouse/cluster.sh):
- weir's hashes are ClickHouse's own (cityHash64 and intHash64 of integers, sipHash64 of
  strings and integers), asked of the server for many keys;
- CVAT rows sharded by cityHash64(assumeNotNull(user_id)) and written by two clickhouse sinks
  straight into each shard's local table sit on the shard the Distributed table's own
  inserts put the same keys on, and a read through the Distributed table sees every row once;
- weights: a slot per unit of weight, in the shards' order, as remote_servers' <weight>;
- a key that is no integer is dead-lettered, its neighbours are written."""
import json, os, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ROOT, check, finish  # noqa: E402

weir = os.path.abspath(sys.argv[1])
tmp = tempfile.mkdtemp(prefix="weir-shards-")
cluster = os.path.join(tmp, "cluster")
out = subprocess.run(["bash", os.path.join(ROOT, "tools", "clickhouse", "cluster.sh"), "start", "2", cluster],
                     capture_output=True, text=True, timeout=240)
if out.returncode != 0:
    print(out.stdout, out.stderr)
    raise SystemExit("the cluster did not start")
ports = out.stdout.split()


def query(port, sql, settings=""):
    r = subprocess.run(["curl", "-sS", "--fail-with-body", "http://127.0.0.1:%s/?%s" % (port, settings), "--data-binary", "@-"],
                       input=sql, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(r.stdout + r.stderr)
    return r.stdout


def run_weir(config, lines):
    path = os.path.join(tmp, "weir.yaml")
    with open(path, "w") as f:
        f.write(config)
    r = subprocess.run([weir, "run", "-c", path], input="".join(json.dumps(l) + "\n" for l in lines),
                       capture_output=True, text=True, timeout=120)
    return r.returncode, r.stderr


try:
    # The hashes, key by key, against the server's: weir writes each event to a file per
    # shard; the server says which shard each key belongs to.
    keys = list(range(0, 3000, 7)) + [2**63 - 1, 2**64 - 1, -1, -12345]
    names = ["", "a", "annotator1", "x" * 7, "y" * 8, "z" * 9, "é-ü", "annotator" * 20] + ["u%d" % i for i in range(300)]
    events = [{"kind": "int", "n": k} for k in keys] + [{"kind": "str", "name": s} for s in names]
    files = {}
    sinks = ""
    for name, key, key_type, hash_, layout, nshards in [
            ("city", "n", "integer", "cityHash64", "shards: 2", 2), ("int", "n", "integer", "intHash64", "shards: 3", 3),
            ("sipi", "n", "integer", "sipHash64", "weights: ['1', '2']", 2),
            ("sips", "name", "string", "sipHash64", "weights: ['2', '1', '3']", 3), ("none", "n", "integer", "none", "shards: 2", 2)]:
        kind = "str" if key_type == "string" else "int"
        sinks += "  %s: { type: shard, inputs: [%s_in], key: %s, key_type: %s, hash: %s, %s }\n" % (name, name, key, key_type, hash_, layout)
        sinks += "  %s_in: { type: filter, inputs: [in], condition: '.kind == \"%s\"' }\n" % (name, kind)
        for s in range(1, nshards + 1):
            files[(name, s)] = os.path.join(tmp, "%s-%d.ndjson" % (name, s))
    config = "data_dir: %s/data\nsources:\n  in: { type: stdin }\ntransforms:\n%ssinks:\n" % (tmp, sinks)
    for (name, s), path in files.items():
        config += "  %s_%d: { type: file, inputs: [%s.%d], path: %s }\n" % (name, s, name, s, path)
    rc, err = run_weir(config, events)
    check("weir sharded the keys (exit 0)", rc == 0, err[-2000:])

    def expected(expr, value_sql, weights):
        slots = [i for i, w in enumerate(weights) for _ in range(w)]
        return slots[int(query(ports[0], "SELECT %s FORMAT TSV" % expr.replace("K", value_sql)).strip()) % len(slots)] + 1

    def sql_int(v):
        return "toUInt64(%d)" % v if v >= 0 else "toInt64(%d)" % v

    for name, expr, weights, field, to_sql in [
            ("city", "cityHash64(K)", [1, 1], "n", sql_int), ("int", "intHash64(K)", [1, 1, 1], "n", sql_int),
            ("sipi", "sipHash64(K)", [1, 2], "n", sql_int),
            ("sips", "sipHash64(K)", [2, 1, 3], "name", lambda s: "'%s'" % s.replace("\\", "\\\\").replace("'", "\\'")),
            ("none", "K", [1, 1], "n", lambda v: "toUInt64(%d)" % (v % 2**64))]:
        wrong = []
        seen = 0
        for s in range(1, len(weights) + 1):
            path = files[(name, s)]
            rows = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
            seen += len(rows)
            # One query for all of a file's keys: a column each (an array would need one type).
            if rows:
                hashes = query(ports[0], "SELECT %s FORMAT TSV" % ", ".join(expr.replace("K", to_sql(r[field])) for r in rows)).split()
                slots = [i for i, w in enumerate(weights) for _ in range(w)]
                wrong += [(r[field], s) for r, h in zip(rows, hashes) if slots[int(h) % len(slots)] + 1 != s]
        total = len(keys) if field == "n" else len(names)
        check("%s: every key on the shard ClickHouse computes (%d keys)" % (name, total), not wrong and seen == total,
              "%d wrong, e.g. %s; %d of %d seen" % (len(wrong), wrong[:5], seen, total))

    # CVAT rows into the shards' local tables, against the Distributed table's own inserts.
    rows = []
    for i in range(5000):
        user = None if i % 97 == 0 else 1000 + (i * 7919) % 211
        rows.append({"scope": "click:element", "source": "client", "timestamp": "2024-01-01T10:%02d:%02d.%03dZ" % (i // 3600 % 60, i // 60 % 60, i % 1000),
                     "count": 1, "duration": 0, "job_id": 1 + i % 5, "task_id": 1, "project_id": 1, "user_id": user,
                     "payload": "{\"i\":%d}" % i})
    bad = {"scope": "click:element", "source": "client", "timestamp": "2024-01-01T10:00:00Z", "user_id": "not a number"}
    config = """
data_dir: %s/data-ch
sources:
  in: { type: stdin }
transforms:
  by_user: { type: shard, inputs: [in], key: user_id, hash: cityHash64, shards: 2 }
sinks:
""" % tmp
    for s in (1, 2):
        config += """  shard%d:
    type: clickhouse
    inputs: [by_user.%d]
    endpoint: http://127.0.0.1:%s
    database: cvat
    table: events_local
    skip_unknown_fields: true
    batch: { max_events: 1000, timeout: 100ms }
""" % (s, s, ports[s - 1])
    rc, err = run_weir(config, rows[:2500] + [bad] + rows[2500:])
    check("CVAT rows sharded into the local tables (exit 0)", rc == 0, err[-2000:])
    local = [int(query(p, "SELECT count() FROM cvat.events_local FORMAT TSV")) for p in ports]
    check("both shards got rows", all(n > 500 for n in local), local)
    check("the Distributed table reads every row once", int(query(ports[0], "SELECT count() FROM cvat.events FORMAT TSV")) == 5000,
          query(ports[0], "SELECT count() FROM cvat.events FORMAT TSV"))
    check("the key that is no integer was dead-lettered",
          "not an integer" in open(os.path.join(tmp, "data-ch", "dead_letter.ndjson")).read())
    # The Distributed table's own inserts of the same users (a marker scope), synchronously:
    # each shard must hold both kinds for exactly the same users.
    values = ",".join("('check', 'server', '2024-01-02 00:00:00', %s)" % ("NULL" if r["user_id"] is None else r["user_id"])
                      for r in rows)
    query(ports[0], "INSERT INTO cvat.events (scope, source, timestamp, user_id) VALUES " + values, "insert_distributed_sync=1")
    for s, port in enumerate(ports, 1):
        weir_users = sorted(query(port, "SELECT DISTINCT ifNull(user_id, 0) FROM cvat.events_local WHERE scope != 'check' FORMAT TSV").split())
        ch_users = sorted(query(port, "SELECT DISTINCT ifNull(user_id, 0) FROM cvat.events_local WHERE scope = 'check' FORMAT TSV").split())
        check("shard %d holds the same users from weir and from the Distributed table (%d users)" % (s, len(ch_users)),
              weir_users == ch_users and ch_users, (weir_users[:10], ch_users[:10]))
finally:
    subprocess.run(["bash", os.path.join(ROOT, "tools", "clickhouse", "cluster.sh"), "stop", cluster],
                   capture_output=True, timeout=120)
finish("clickhouse shards")
