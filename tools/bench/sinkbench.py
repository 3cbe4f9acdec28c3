"""What the sink benchmarks (clickhouse.py, influxdb.py) share: running a pipeline until its
sink has delivered every event, with the wall time, weir's CPU seconds and peak RSS, and the
CPU seconds of the server it writes to."""
import argparse, os, socket, statistics, subprocess, sys, time, urllib.request

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    try:
        fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    except OSError:
        return 0.0


def peak_rss_kib(pid):
    """The process's peak RSS so far (VmHWM); 0 once it has exited. Raises OSError once it
    has been reaped."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def peak_rss_mib(pid):
    return peak_rss_kib(pid) / 1024


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def metrics(api):
    """weir's /metrics as {(name, component): value}; empty while it does not answer."""
    try:
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % api, timeout=2).read().decode()
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        if line.startswith("weir_component_") and '{component_id="' in line:
            name, rest = line.split("{", 1)
            component = rest.split('"', 2)[1]
            values[(name, component)] = int(float(line.rsplit(" ", 1)[1]))
    return values


def run_until_delivered(weir, config, api, sink, events, server_pid=None, source="in"):
    """Runs weir with `config` (its API on port `api`) until `source` has emitted `events` and
    `sink` has sent every row it received (transforms such as working_time add rows, so the
    sink's own count is not known beforehand). Returns (seconds, weir CPU s, server CPU s,
    weir peak RSS MiB, rows the sink received)."""
    proc = subprocess.Popen([weir, "run", "-c", config, "--log-level", "warn"])
    server_cpu_before = cpu_seconds(server_pid) if server_pid else 0.0
    start = time.perf_counter()
    settled = 0
    while True:
        m = metrics(api)
        emitted = m.get(("weir_component_sent_events_total", source), -1)
        received = m.get(("weir_component_received_events_total", sink), -1)
        sent = m.get(("weir_component_sent_events_total", sink), -1)
        # Two scrapes in a row with everything sent: nothing was still between the source
        # and the sink at the first one.
        if emitted >= events and sent >= received > 0:
            if settled == 0:
                seconds = time.perf_counter() - start  # when it was all sent
            settled += 1
        else:
            settled = 0
        if settled == 2:
            break
        if proc.poll() is not None:
            sys.exit("weir exited early")
        # Scrapes cost weir (and this machine's other core) CPU: rare until the end is near.
        time.sleep(0.005 if emitted >= events * 0.95 else 0.1)
    weir_cpu = cpu_seconds(proc.pid)
    rss = peak_rss_mib(proc.pid)
    server_cpu = cpu_seconds(server_pid) - server_cpu_before if server_pid else 0.0
    proc.terminate()
    proc.wait()
    return seconds, weir_cpu, server_cpu, rss, received


def start_discard_receiver(build, columns=None):
    """weir-discard-receiver (reads request bodies and drops them): (process, endpoint URL).
    columns: a file of system.columns rows (JSONEachRow); the receiver then answers the
    clickhouse sink's start-up questions as ClickHouse 18.16 does, so the sink goes binary."""
    receiver = subprocess.Popen([os.path.join(build, "weir-discard-receiver")] + (["--clickhouse", columns] if columns else []),
                                stdout=subprocess.PIPE, text=True)
    return receiver, "http://127.0.0.1:%s" % receiver.stdout.readline().strip()


def parse_arguments(doc, root, events, compression):
    """The options both sink benchmarks take; `events` and `compression` are the defaults."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(root, "build"))
    ap.add_argument("--events", type=int, default=events)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--compression", default=compression, choices=["none", "gzip", "zstd"])
    ap.add_argument("--skip-server", action="store_true")
    return ap.parse_args()


def report(name, samples, events, mib, note=""):
    """One line of medians over run_until_delivered() samples."""
    seconds = statistics.median(s[0] for s in samples)
    print("%-50s %12s events/s %8.1f MiB/s   CPU: weir %.2f s%s   peak RSS %.1f MiB%s"
          % (name, "{:,.0f}".format(events / seconds), mib / seconds, statistics.median(s[1] for s in samples),
             ", server %.2f s" % statistics.median(s[2] for s in samples) if samples[0][2] else "",
             statistics.median(s[3] for s in samples), note))
    sys.stdout.flush()
