"""The kafka source against librdkafka's mock cluster (weir-kafka-mock), fed by kcat:
- two weirs in one consumer group share a topic's partitions, and together write every
  message, each once, in the order of its partition;
- one is killed with kill -9 while messages flow: the other takes its partitions (after the
  session timeout) and goes on from the offsets the dead one committed, which cover only
  what it had written: nothing is lost, and the messages written twice are at most those
  it had in flight;
- a weir stopped with SIGTERM commits what it wrote and leaves the group: the other takes
  its partitions, and nothing is written twice;
- with commits refused (as librdkafka's mock refuses them while its group rebalances), a
  member that gets its partitions back does not write again what it had written;
- a message that is not JSON is dead-lettered with its topic, partition and offset, and
  its neighbours are written."""
import json, os, signal, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import KafkaMock, check, finish, free_port, metrics, wait_for  # noqa: E402

weir = os.path.abspath(sys.argv[1])
tmp = tempfile.mkdtemp(prefix="weir-kafka-source-")

mock = KafkaMock(weir, 3, ["events:6"])
bootstrap = mock.bootstrap
produced = []  # (user, seq) in the order produced


def produce(count, bad=None):
    """`count` messages keyed by user, each user's in order; `bad`: text that is not JSON, in the middle."""
    lines = []
    for i in range(count):
        n = len(produced)
        user = n % 13
        seq = sum(1 for u, _ in produced if u == user)
        produced.append((user, seq))
        lines.append("%d\t%s" % (user, json.dumps({"id": n, "user_id": user, "seq": seq})))
        if bad is not None and i == count // 2:
            lines.append("%d\t%s" % (user, bad))
    subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", "events", "-K", "\t"], input="\n".join(lines) + "\n",
                   text=True, check=True, timeout=60)


def start(name):
    api = free_port()
    config = os.path.join(tmp, name + ".yaml")
    with open(config, "w") as f:
        f.write(f"""
data_dir: {tmp}/{name}
api: {{ address: "127.0.0.1:{api}" }}
sources:
  in:
    type: kafka
    bootstrap_servers: "{bootstrap}"
    group_id: aggregators
    topics: [events]
    commit_interval: 200ms
    partition_key: "%partition"
    offset_key: kafka_offset
    librdkafka_options: {{ session.timeout.ms: "6000", heartbeat.interval.ms: "500" }}
sinks:
  out:
    type: file
    inputs: [in]
    path: {tmp}/{name}.ndjson
""")
    log = open(os.path.join(tmp, name + ".log"), "a")
    return subprocess.Popen([weir, "run", "-c", config], stdout=log, stderr=subprocess.STDOUT), api


def written():
    rows = []
    for name in ("a", "b", "c", "d"):
        path = os.path.join(tmp, name + ".ndjson")
        if os.path.exists(path):
            with open(path) as f:
                rows += [json.loads(line) for line in f if line.strip()]
    return rows


def metric(api, name):
    return sum(v for (n, _), v in metrics(api).items() if n == name)


procs = []
try:
    produce(3000, bad="not json {")
    a, api_a = start("a")
    procs.append(a)
    check("the first member writes what was produced before it joined",
          wait_for(lambda: len({r["id"] for r in written()}) == 3000, 60), len(written()))
    check("the message that is not JSON was dead-lettered",
          wait_for(lambda: metric(api_a, "weir_component_dead_lettered_events_total") == 1, 10))
    letters = open(os.path.join(tmp, "a", "dead_letter.ndjson")).read()
    check("its dead letter says where it came from", "topic events, partition" in letters and "offset" in letters,
          letters[:500])

    # a's acknowledged offsets are committed (every 200 ms) before b joins: librdkafka's mock
    # refuses commits while its group rebalances (a broker takes them), and a partition that
    # moves to b then goes on from an older commit (the last phase tests that case).
    time.sleep(1)
    b, api_b = start("b")
    procs.append(b)
    time.sleep(8)  # the group rebalances (the mock's first join waits 3 s)
    produce(3000)
    check("two members write the rest", wait_for(lambda: len({r["id"] for r in written()}) == 6000, 60))
    rows = written()
    check("nothing written twice so far", len(rows) == 6000, len(rows))
    by_member = {}
    for name in ("a", "b"):
        with open(os.path.join(tmp, name + ".ndjson")) as f:
            by_member[name] = {json.loads(line)["id"] for line in f if line.strip()}
    check("both members took partitions", len(by_member["b"]) > 0 and len(by_member["a"]) > 3000, by_member.keys())

    # kill -9 while messages flow.
    for _ in range(5):
        produce(1000)
    os.kill(a.pid, signal.SIGKILL)
    a.wait()
    for _ in range(5):
        produce(1000)
    check("the survivor takes the dead member's partitions and writes everything",
          wait_for(lambda: {r["id"] for r in written()} == set(range(len(produced))), 90),
          len(set(range(len(produced))) - {r["id"] for r in written()}))
    rows = written()
    twice = len(rows) - len({r["id"] for r in rows})
    print("after kill -9: %d messages, %d written twice" % (len(produced), twice))
    check("written twice: at most what the dead member had in flight", twice <= 5000, twice)
    order_ok = True
    for user in range(13):
        seqs = []
        for r in rows:
            if r["user_id"] == user and (not seqs or r["seq"] > seqs[-1]):
                seqs.append(r["seq"])
        order_ok = order_ok and seqs == sorted(set(s for u, s in produced if u == user))
    check("each user's messages in the order produced", order_ok)
    check("the partition in the metadata, the offset in a field",
          all(isinstance(r.get("kafka_offset"), int) and "partition" not in r for r in rows))

    # SIGTERM: leaves the group at once.
    c, api_c = start("c")
    procs.append(c)
    time.sleep(8)
    before = len(written())
    b.send_signal(signal.SIGTERM)
    check("a member stopped with SIGTERM exits cleanly", b.wait(timeout=60) == 0)
    t0 = time.time()
    produce(2000)
    check("the other takes its partitions and writes the rest",
          wait_for(lambda: {r["id"] for r in written()} == set(range(len(produced))), 60))
    took = time.time() - t0
    rows = written()
    print("after SIGTERM: the rest written in %.1f s; %d rows, %d new" % (took, len(rows), len(rows) - before))
    check("nothing written twice after a clean stop", len(rows) - before == 2000, len(rows) - before)

    # Commits refused (as the mock refuses them mid-rebalance): a partition that comes back
    # to the member that had it goes on from an older commit, and what that member had
    # delivered is not written by it again.
    check("the mock refuses commits from now on", mock.command("refuse-commits 100000") == "ok")
    produce(2000)
    check("c writes what came", wait_for(lambda: {r["id"] for r in written()} == set(range(len(produced))), 60))
    d, api_d = start("d")
    procs.append(d)
    time.sleep(8)
    produce(1000)
    check("c and d write what came", wait_for(lambda: {r["id"] for r in written()} == set(range(len(produced))), 60))
    d.send_signal(signal.SIGTERM)
    check("d exits cleanly", d.wait(timeout=60) == 0)
    produce(1000)
    check("c takes every partition back and writes the rest",
          wait_for(lambda: {r["id"] for r in written()} == set(range(len(produced))), 60))
    with open(os.path.join(tmp, "c.ndjson")) as f:
        by_c = [json.loads(line)["id"] for line in f if line.strip()]
    with open(os.path.join(tmp, "d.ndjson")) as f:
        by_d = [json.loads(line)["id"] for line in f if line.strip()]
    print("commits refused: c wrote %d rows, d %d (%d of them c's too)" % (len(by_c), len(by_d), len(set(by_c) & set(by_d))))
    check("c wrote no message twice, though its partitions came back from older commits",
          len(by_c) == len(set(by_c)), len(by_c) - len(set(by_c)))
    check("c passed over what it had delivered",
          "were delivered before this member last let it go" in open(os.path.join(tmp, "c.log")).read())
    c.send_signal(signal.SIGTERM)
    check("the last member exits cleanly", c.wait(timeout=60) == 0)
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
    mock.close()
finish("kafka source")
