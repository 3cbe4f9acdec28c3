"""Working time computed after Kafka by two aggregator weirs in one consumer group, with
their state per partition in a state topic (ADR 017), against librdkafka's mock cluster:
- one aggregator is killed with kill -9 while events flow; the other takes its partitions,
  restores their state from the state topic and reads on from the offset it covers;
- the working time per (user, job, task, project) the two wrote, counted once per distinct
  row, equals a single weir's over the same events, to the millisecond; the rows written
  twice (made again from the restored state) are identical copies, and counted;
- a partition whose state was saved is not read from before that state's offset."""
import collections, json, os, random, signal, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import KafkaMock, check, finish, free_port, wait_for  # noqa: E402

weir = os.path.abspath(sys.argv[1])
tmp = tempfile.mkdtemp(prefix="weir-kafka-aggregators-")
mock = KafkaMock(weir, 3, ["events:4", "state:4"])
bootstrap = mock.bootstrap

# CVAT-like client events: 12 users, each moving between jobs, with pauses past the
# threshold and past idle_after, and frame changes with durations.
rng = random.Random(17)
events = []
clock = {}
for i in range(4800):
    user = 1000 + rng.randrange(12)
    t = clock.get(user, 1704096000000) + (rng.randrange(1000, 30000) if rng.random() > 0.03 else rng.randrange(100000, 300000))
    clock[user] = t
    job = rng.randrange(3) if rng.random() < 0.1 else (user % 3)
    frame = rng.random() < 0.3
    events.append({"scope": "change:frame" if frame else "draw:object", "source": "client",
                   "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 1000)) + ".%03dZ" % (t % 1000),
                   "count": 1, "duration": rng.randrange(3000) if frame else 0, "job_id": 10 + job, "task_id": 5 + job // 2,
                   "project_id": 1, "user_id": user, "user_name": "annotator%d" % user})


def produce(part):
    lines = "".join("%d\t%s\n" % (e["user_id"], json.dumps(e)) for e in part)
    subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", "events", "-K", "\t"], input=lines, text=True, check=True, timeout=60)


def config(name, source):
    path = os.path.join(tmp, name + ".yaml")
    with open(path, "w") as f:
        f.write(f"""
data_dir: {tmp}/{name}
api: {{ address: "127.0.0.1:{free_port()}" }}
sources:
  in:
{source}
transforms:
  wt: {{ type: working_time, inputs: [in] }}
sinks:
  out: {{ type: file, inputs: [wt], path: {tmp}/{name}.ndjson }}
""")
    return path


def totals(names):
    """Working time per (user, job, task, project) over the distinct rows of these outputs, the
    number of rows, and the number of distinct rows."""
    rows = []
    for name in names:
        path = os.path.join(tmp, name + ".ndjson")
        if not os.path.exists(path):
            continue
        for line in open(path):
            try:
                e = json.loads(line)
            except ValueError:
                continue  # a line cut by kill -9
            if e.get("scope") == "send:working_time":
                rows.append(line.strip())
    sums = collections.Counter()
    for line in set(rows):
        e = json.loads(line)
        sums[(e["user_id"], e["job_id"], e["task_id"], e["project_id"])] += e["duration"]
    return sums, len(rows), len(set(rows))


# The reference: one weir over the same events, from stdin.
ref = subprocess.run([weir, "run", "-c", config("single", "    type: stdin")],
                     input="".join(json.dumps(e) + "\n" for e in events), capture_output=True, text=True, timeout=120)
check("the single weir ran (exit 0)", ref.returncode == 0, ref.stderr[-1500:])
expected, _, _ = totals(["single"])
check("the reference has working time for many keys", len(expected) >= 12 and sum(expected.values()) > 0, expected)

kafka_source = f"""    type: kafka
    bootstrap_servers: "{bootstrap}"
    group_id: aggregators
    topics: [events]
    state_topic: state
    commit_interval: 200ms
    librdkafka_options: {{ session.timeout.ms: "6000", heartbeat.interval.ms: "500" }}"""
procs = []
try:
    logs = {n: open(os.path.join(tmp, n + ".log"), "w") for n in ("a", "b")}
    a = subprocess.Popen([weir, "run", "-c", config("a", kafka_source)], stdout=logs["a"], stderr=subprocess.STDOUT)
    b = subprocess.Popen([weir, "run", "-c", config("b", kafka_source)], stdout=logs["b"], stderr=subprocess.STDOUT)
    procs += [a, b]
    time.sleep(9)  # both join; the group settles (the mock's first join waits 3 s)
    third = len(events) // 3
    produce(events[:third])
    time.sleep(3)
    # The middle third in small pieces, a at work on them when it is killed: some of its
    # batches in flight, some rows written after its last saved state.
    middle = events[third:2 * third]
    for i in range(0, len(middle), 40):
        produce(middle[i:i + 40])
        if i == 20 * 40:
            os.kill(a.pid, signal.SIGKILL)
    a.wait()
    produce(events[2 * third:])

    def b_caught_up():
        out = os.path.join(tmp, "b.ndjson")
        if not os.path.exists(out):
            return False
        passed = sum(1 for line in open(out) if '"send:working_time"' not in line)
        return passed >= len(events) - third  # at least the rest of the stream went through b
    check("the survivor read on after the kill", wait_for(b_caught_up, 90))
    time.sleep(3)  # anything left in flight
    b.send_signal(signal.SIGTERM)
    check("the survivor exits cleanly", b.wait(timeout=60) == 0)
    got, rows, distinct = totals(["a", "b"])
    diff = {k: (expected.get(k), got.get(k)) for k in set(expected) | set(got) if expected.get(k) != got.get(k)}
    check("working time per (user, job, task, project) equals a single weir's, to the ms", not diff,
          "%d keys differ, e.g. %s" % (len(diff), list(diff.items())[:5]))
    print("after kill -9: %d working-time rows written, %d distinct, %d written twice; %d ms in all"
          % (rows, distinct, rows - distinct, sum(got.values())))
    b_log = open(os.path.join(tmp, "b.log")).read()
    check("the survivor restored the dead one's partitions from the state topic", "state of events/" in b_log and "restored" in b_log,
          b_log[-2000:])
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
    mock.close()
finish("kafka aggregators")
