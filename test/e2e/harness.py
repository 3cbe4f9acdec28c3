"""What the Python end-to-end tests share: checks and their summary, waiting, free ports,
and the private servers of tools/<kind>/server.sh."""
import atexit, os, socket, subprocess, sys, time, urllib.error, urllib.request

ROOT = os.environ.get("WEIR_SOURCE_DIR") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
passes, failures = [], []

# Every process a test starts is killed when the test exits, however it exits: a weir left
# running after a failed check (or an exception) holds ctest's output pipe, and ctest then
# waits for it until the test's timeout, reporting a timeout instead of the failure. (The
# private servers are daemons of tools/<kind>/server.sh, stopped by their own `stop`.)
_started = []
_popen_init = subprocess.Popen.__init__


def _tracked_popen_init(self, *args, **kwargs):
    _popen_init(self, *args, **kwargs)
    _started.append(self)


subprocess.Popen.__init__ = _tracked_popen_init


@atexit.register
def _kill_what_is_left():
    for proc in _started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def check(name, condition, detail=""):
    print(("ok: " if condition else "FAIL: ") + name + ("" if condition else " -- " + str(detail)[:2000]), flush=True)
    (passes if condition else failures).append(name)


def finish(title):
    """Prints '<title> checks: N passed, M failed' and exits 1 if any failed."""
    print("%s checks: %d passed, %d failed" % (title, len(passes), len(failures)))
    sys.exit(1 if failures else 0)


def wait_for(predicate, seconds=60):
    """True once predicate() is (an exception counts as not yet), False after `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if predicate():
                return True
        except Exception:
            pass
        time.sleep(0.2)
    return False


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def server(kind, verb, directory, env=None):
    """tools/<kind>/server.sh VERB DIRECTORY: its last line on stdout (the port or URL)."""
    # server.sh bounds itself (start 60 s, stop 20 s, waiting for its lock 90 s); this bound
    # turns a hang of it into a failure that says where, not a ctest timeout that says nothing.
    try:
        out = subprocess.run(["bash", os.path.join(ROOT, "tools", kind, "server.sh"), verb, directory],
                             capture_output=True, text=True, env=env, timeout=240)
    except subprocess.TimeoutExpired as e:
        def text(x):  # TimeoutExpired holds bytes even when text=True
            return x.decode(errors="replace") if isinstance(x, bytes) else (x or "")
        print(text(e.stdout)[-3000:], text(e.stderr)[-3000:])
        raise SystemExit("%s %s %s: no answer after 240 s" % (kind, verb, directory))
    if out.returncode != 0:
        print(out.stdout[-3000:], out.stderr[-3000:])
        raise SystemExit("%s %s failed" % (kind, verb))
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def post_status(url, body, timeout=30, headers=None):
    """POSTs `body` (bytes); the HTTP status, or None when no answer came in time."""
    req = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception:
        return None


class KafkaMock:
    """librdkafka's mock cluster, kept alive by weir-kafka-mock (built beside weir):
    `bootstrap` is its address; command("down"/"up"/"topic NAME N") answers "ok" or an error."""

    def __init__(self, weir, brokers, topics):
        args = [os.path.join(os.path.dirname(os.path.abspath(weir)), "weir-kafka-mock"), "--brokers", str(brokers)]
        for topic in topics:
            args += ["--topic", topic]
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.bootstrap = self.process.stdout.readline().strip()

    def command(self, line):
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=30)


def metrics(api):
    """weir's /metrics on 127.0.0.1:`api` as {(name, component): value}; empty while it does not answer."""
    try:
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % api, timeout=5).read().decode()
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        if line.startswith("weir_") and '{component_id="' in line:
            name, rest = line.split("{", 1)
            values[(name, rest.split('"', 2)[1])] = float(line.rsplit(" ", 1)[1])
    return values
