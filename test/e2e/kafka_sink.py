"""The kafka sink against librdkafka's mock cluster (weir-kafka-mock, 3 brokers), read back
with kcat, a Kafka client apart from weir:
- every event of every acknowledged request arrives once, as the JSON it came as, each
  user's events in one partition (key_field) and in the order they were sent;
- a topic template sends events by a field, and an event without it is dead-lettered;
- a message larger than the brokers take is dead-lettered with librdkafka's reason, and
  the rest of its batch arrives;
- with every broker down, nothing is answered 200 (requests wait, then 503 once the
  buffer is full); once they are back, every event answered 200 is in Kafka."""
import json, os, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import KafkaMock, check, finish, free_port, metrics, post_status, wait_for  # noqa: E402

weir = os.path.abspath(sys.argv[1])
tmp = tempfile.mkdtemp(prefix="weir-kafka-sink-")

mock = KafkaMock(weir, 3, ["events:4", "cvat-client:2", "cvat-server:2"])
bootstrap = mock.bootstrap


def read_topic(topic, expected, seconds=60):
    """Every message of `topic` as (partition, key, value), once at least `expected` came."""
    got = []

    def enough():
        out = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q",
                              "-f", "%p\t%k\t%s\n"], capture_output=True, text=True, timeout=30)
        got[:] = [line.split("\t", 2) for line in out.stdout.splitlines() if line]
        return len(got) >= expected
    wait_for(enough, seconds)
    return got


http_port, api_port = free_port(), free_port()
config = os.path.join(tmp, "weir.yaml")
with open(config, "w") as f:
    f.write(f"""
data_dir: {tmp}/data
api: {{ address: "127.0.0.1:{api_port}" }}
sources:
  in:
    type: http_server
    address: 127.0.0.1:{http_port}
    acknowledgements: true
    max_body_bytes: 256KiB
    max_buffered_bytes: 1MiB
sinks:
  kafka:
    type: kafka
    inputs: [in]
    bootstrap_servers: "{bootstrap}"
    topic: events
    key_field: user_id
    message_timeout: 2s
    max_queued_bytes: 64KiB
    retry_backoff: 200ms
    librdkafka_options: {{ message.max.bytes: "20000", linger.ms: "5" }}
    buffer: {{ max_events: 2000 }}
  by_source:
    type: kafka
    inputs: [in]
    bootstrap_servers: "{bootstrap}"
    topic: "cvat-{{{{ source }}}}"
""")
log = open(os.path.join(tmp, "weir.log"), "w")
proc = subprocess.Popen([weir, "run", "-c", config], stdout=log, stderr=subprocess.STDOUT)


def post(events, timeout=30):
    body = "\n".join(json.dumps(e) for e in events).encode()
    return post_status(f"http://127.0.0.1:{http_port}/", body, timeout)


def metric(name, component):
    return metrics(api_port).get((name, component), 0.0)


try:
    check("weir answers", wait_for(lambda: post([]) == 200, 30))

    # Ordered per user: each user's events carry a sequence number.
    sent = []
    seq = {}
    for r in range(40):
        batch = []
        for i in range(50):
            user = (r * 50 + i) % 7
            seq[user] = seq.get(user, 0) + 1
            batch.append({"id": f"a{r}-{i}", "user_id": user, "seq": seq[user], "source": ["client", "server"][i % 2],
                          "scope": "click:element", "payload": "{\"x\":%d}" % i})
        sent += batch
        check(f"request {r} answered 200", post(batch) == 200)
    got = read_topic("events", len(sent))
    values = [json.loads(v) for _, _, v in got]
    check("every event arrived once", sorted(v["id"] for v in values) == sorted(e["id"] for e in sent),
          f"{len(values)} messages for {len(sent)} events")
    check("as the JSON it came as", {v["id"]: v for v in values} == {e["id"]: e for e in sent})
    partitions = {}
    for p, k, v in got:
        partitions.setdefault(k, set()).add(p)
    check("keyed by user_id, each user in one partition", set(partitions) == {str(u) for u in range(7)}
          and all(len(ps) == 1 for ps in partitions.values()), partitions)
    check("the users spread over more than one partition", len({next(iter(ps)) for ps in partitions.values()}) > 1)
    in_order = all([v["seq"] for v in values if v["user_id"] == u] == sorted(v["seq"] for v in values if v["user_id"] == u)
                   for u in range(7))
    check("each user's events in the order sent", in_order)

    client = read_topic("cvat-client", len(sent) // 2)
    server = read_topic("cvat-server", len(sent) // 2)
    check("the topic template sends events by field",
          len(client) == len(sent) // 2 and all(json.loads(v)["source"] == "client" for _, _, v in client)
          and len(server) == len(sent) // 2 and all(json.loads(v)["source"] == "server" for _, _, v in server))

    # A message the brokers refuse (message.max.bytes 20000), and one without the template's field.
    big = {"id": "big", "user_id": 1, "seq": 0, "source": "client", "payload": "x" * 30000}
    nosource = {"id": "nosource", "user_id": 2, "seq": 0}
    neighbours = [{"id": f"n{i}", "user_id": 3, "seq": 1000 + i, "source": "server"} for i in range(5)]
    check("a batch with a message too large is answered 200 (dead-lettered)", post([big, nosource] + neighbours) == 200)
    got = read_topic("events", len(sent) + 6)
    ids = [json.loads(v)["id"] for _, _, v in got]
    check("its neighbours arrived", all(f"n{i}" in ids for i in range(5)) and "nosource" in ids, ids[-8:])
    check("the one too large did not", "big" not in ids)
    check("it was dead-lettered", wait_for(lambda: metric("weir_component_dead_lettered_events_total", "kafka") == 1, 10))
    check("the event without the topic's field was dead-lettered",
          wait_for(lambda: metric("weir_component_dead_lettered_events_total", "by_source") == 1, 10))
    letters = open(os.path.join(tmp, "data", "dead_letter.ndjson")).read() if os.path.exists(
        os.path.join(tmp, "data", "dead_letter.ndjson")) else ""
    check("the dead letter says why", "too large" in letters.lower() and "topic field 'source' is missing" in letters,
          letters[:600])

    # Every broker down: requests wait for their acknowledgement, none is answered 200 while
    # the brokers are away; afterwards, every event answered 200 is in Kafka.
    check("brokers down", mock.command("down") == "ok")
    results = {}

    def client_thread(n):
        batch = [{"id": f"c{n}-{i}", "user_id": i % 5, "seq": 0, "source": "client"} for i in range(200)]
        t0 = time.time()
        results[n] = (post(batch, timeout=60), t0)

    threads = []
    for n in range(30):
        t = threading.Thread(target=client_thread, args=(n,))
        t.start()
        threads.append(t)
        time.sleep(0.1)
    time.sleep(4)
    answered_early = [n for n, (status, _) in results.items() if status == 200]
    check("no request answered 200 while the brokers are down", not answered_early, answered_early)
    refused = [n for n, (status, _) in results.items() if status == 503]
    check("full buffers answer 503", len(refused) > 0, results)
    check("brokers up", mock.command("up") == "ok")
    for t in threads:
        t.join()
    accepted = [n for n, (status, _) in results.items() if status == 200]
    check("requests waiting when the brokers came back were answered 200", len(accepted) > 0, results)
    expected_ids = {f"c{n}-{i}" for n in accepted for i in range(200)}
    got = read_topic("events", len(sent) + 6 + len(expected_ids), 90)
    ids = [json.loads(v)["id"] for _, _, v in got]
    missing = expected_ids - set(ids)
    check("every event answered 200 is in Kafka", not missing, f"{len(missing)} missing")
    duplicates = len(ids) - len(set(ids))
    print(f"after the outage: {len(accepted)} requests answered 200, {len(refused)} refused with 503, "
          f"{duplicates} duplicate messages")

    proc.terminate()
    check("weir exits cleanly", proc.wait(timeout=60) == 0)
finally:
    if proc.poll() is None:
        proc.kill()
    mock.close()
    log.close()
    if errors := [line for line in open(os.path.join(tmp, "weir.log")) if "ERROR" in line]:
        print("weir's errors:", "".join(errors[:10]))
finish("kafka sink")
