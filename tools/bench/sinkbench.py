"""What the sink benchmarks (clickhouse.py, influxdb.py) share: running a pipeline until its
sink has delivered every event, with the wall time, weir's CPU seconds and peak RSS, and the
CPU seconds of the server it writes to."""
import os, socket, subprocess, sys, time, urllib.request

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    try:
        fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    except OSError:
        return 0.0


def peak_rss_mib(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def metric(api, name, component):
    """A counter of one component from weir's /metrics; -1 while it does not answer."""
    try:
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % api, timeout=2).read().decode()
    except OSError:
        return -1
    for line in text.splitlines():
        if line.startswith(name + '{component_id="%s"' % component):
            return int(line.rsplit(" ", 1)[1])
    return -1


def run_until_delivered(weir, config, api, sink, events, server_pid=None):
    """Runs weir with `config` (its API on port `api`) until `sink` has received `events` and
    sent all it received. Returns (seconds, weir CPU s, server CPU s, weir peak RSS MiB, events
    the sink received)."""
    proc = subprocess.Popen([weir, "run", "-c", config, "--log-level", "warn"])
    server_cpu_before = cpu_seconds(server_pid) if server_pid else 0.0
    start = time.perf_counter()
    while True:
        received = metric(api, "weir_component_received_events_total", sink)
        sent = metric(api, "weir_component_sent_events_total", sink)
        if received >= events and sent >= received:
            break
        if proc.poll() is not None:
            sys.exit("weir exited early")
        time.sleep(0.02)
    seconds = time.perf_counter() - start
    weir_cpu = cpu_seconds(proc.pid)
    rss = peak_rss_mib(proc.pid)
    server_cpu = cpu_seconds(server_pid) - server_cpu_before if server_pid else 0.0
    proc.terminate()
    proc.wait()
    return seconds, weir_cpu, server_cpu, rss, received


def start_discard_receiver(build):
    """weir-discard-receiver (reads request bodies and drops them): (process, endpoint URL)."""
    receiver = subprocess.Popen([os.path.join(build, "weir-discard-receiver")], stdout=subprocess.PIPE, text=True)
    return receiver, "http://127.0.0.1:%s" % receiver.stdout.readline().strip()
