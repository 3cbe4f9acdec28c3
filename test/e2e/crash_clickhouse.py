#!/usr/bin/env python3
"""Crash test of the clickhouse sink's disk buffer against a real ClickHouse: 4 senders post
CRASH_EVENTS events to the http_server source in acknowledgement mode and re-send each body
until weir answers 200; meanwhile weir is killed with SIGKILL CRASH_KILLS times at seeded
random moments (and started again on the same data_dir), and ClickHouse is stopped for
CRASH_OUTAGE_SECONDS in the middle, two of the kills falling inside that outage. Every event
answered 200 must end up in ClickHouse. Duplicates are allowed (delivery is at least once)
but counted, and bounded by the inserts in flight at each kill.

The sending is paced, CRASH_SEND_SECONDS (40) in all besides the outage: unpaced, weir takes
200k events in about a second and the kills would all land in it.

The events are CVAT client events of 4 users (user = sender), and the pipeline has the shape of
pipelines/cvat-analytics.yaml: http_server -> working_time -> clickhouse with a disk buffer.
Each sender sends its own bodies in order, so each user's events reach weir in one order
however the kills fall, and the working time per (user, job) is known in advance (computed
here, CVAT's algorithm): the send:working_time rows in ClickHouse, repeats of the same row
counted once, must add up to it exactly, to the ms. (A row sent twice, an insert in flight at
a kill, is the same row twice: ClickHouse 18.16's MergeTree keeps both, hence the DISTINCT.)

Two baselines show what the checks catch. CRASH_NO_DISK_BUFFER=1: no disk buffer, so in
acknowledgement mode weir answers only once ClickHouse has the rows, and nothing at all while
it is away. CRASH_NO_ACKS=1 as well: weir answers on receipt, and a kill loses what it held.

CRASH_SOURCE=file (crash_clickhouse_file.sh) runs the same plan against the file source: the
4 senders are writers appending the same lines to two log files (2 writers each), paced the
same way, and a line counts as offered once it is written (there is no 200 to wait for).
The file source's checkpoints move only once the lines are durable in the disk buffer, and a
restarted weir reads again from them; every line written must end up in ClickHouse. Halfway
through, each log file is rotated (renamed to <name>.1, the writer finishing its current
write into the renamed file, then a new file under the old name): the lines of both files
must all arrive. CRASH_NO_DISK_BUFFER=1 is the baseline here too: the checkpoints then wait
for ClickHouse, and do not move while it is away. With the rotation, the working time is
checked in file mode only for being whole rows of the right users: the order in which a
restarted weir reads a rotated file and its successor is not fixed, and working time depends
on order. CRASH_NO_ROTATION=1 (crash_clickhouse_file_exact.sh) leaves the rotation out, and
the working time is then checked to the ms, as for the http source.
"""
import http.client, json, os, random, re, shutil, signal, socket, subprocess, sys, tempfile, threading, time, zlib
import urllib.error, urllib.request
from collections import Counter

import harness
from harness import check, finish, free_port

WEIR = os.path.abspath(sys.argv[1])
EVENTS = int(os.environ.get("CRASH_EVENTS", "200000"))
KILLS = int(os.environ.get("CRASH_KILLS", "10"))
OUTAGE = float(os.environ.get("CRASH_OUTAGE_SECONDS", "60"))
SEND_SECONDS = float(os.environ.get("CRASH_SEND_SECONDS", "40"))
DISK_BUFFER = os.environ.get("CRASH_NO_DISK_BUFFER", "") != "1"
ACKS = os.environ.get("CRASH_NO_ACKS", "") != "1"
SOURCE = os.environ.get("CRASH_SOURCE", "http")
if SOURCE not in ("http", "file"):
    raise SystemExit("CRASH_SOURCE is http or file, not %r" % SOURCE)
FILE = SOURCE == "file"
# File mode without the rotation: a user's events are then read in the order written, however
# the kills fall, so the working time is checked to the ms there too.
ROTATION = FILE and os.environ.get("CRASH_NO_ROTATION", "") != "1"
if FILE and not ACKS:
    raise SystemExit("CRASH_NO_ACKS=1 is for the http source: the file source always waits for its sinks")
MODE = ("disk buffer" if DISK_BUFFER else "no disk buffer (baseline)") + ("" if ACKS else ", no acknowledgements")
if FILE:
    MODE = "file source, " + MODE
TAKEN = "written" if FILE else "accepted"  # what the progress lines count: lines written, or events answered 200
SEED = 12

SENDERS = 4
BODY = 500              # events per request
MAX_EVENTS = 2000       # the sink's batch.max_events: one insert
PAYLOAD = 62            # characters: with the id, sender and CVAT fields, a line of about 200 bytes
# Event time: 50 ms apart by id, with a 120 s pause every 3500 ids (longer than working
# time's 100 s threshold, so some of a user's gaps count and some do not), and the job
# changing every 25000 ids.
BASE_MS = 1767225600000  # 2026-01-01T00:00:00Z
THRESHOLD_MS = 100000


def event_ms(i):
    return BASE_MS + i * 50 + (i // 3500) * 120000


def job_of(i):
    return 1 + (i // 25000) % 3


def iso_ms(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + ".%03dZ" % (ms % 1000)
BEFORE, DURING = 0.4, 0.2  # shares of the events let out before the outage and during it; the rest after
KILLS_IN_OUTAGE = min(2, KILLS)
# File mode. Writer n appends to log file n % LOG_FILES; each file is rotated once, by the
# writer that first takes a body from the second half of the ids.
LOG_FILES = 2
ROTATE_AT = EVENTS // 2 if ROTATION else EVENTS + 1
POLL = 0.1              # the file source's poll_interval, in seconds
READ_BYTES = 64 * 1024  # its read_bytes: one read
BUFFER_EVENTS = 4096    # the disk buffer's max_events (its default): events not yet durable, at most
LINE_BYTES = None       # the shortest line (a 1-digit id), below: a read holds at most READ_BYTES // LINE_BYTES lines
# ctest gives an e2e test 300 s, then kills it and ClickHouse keeps running: at the defaults
# these limits end a stuck run, cleaned up, inside that.
SEND_LIMIT = SEND_SECONDS + OUTAGE + 90  # seconds for every event to be answered 200
BUDGET = 220 + OUTAGE                    # for the whole run: the wait for the rows gets what is left

WORK = tempfile.mkdtemp(prefix="weir-crash-clickhouse-")
SERVER_DIR = os.path.join(WORK, "clickhouse")
CONFIG = os.path.join(WORK, "crash.yaml")
LOG = os.path.join(WORK, "weir.log")  # every start appends: a file, not a pipe that could fill up
LOGS = os.path.join(WORK, "logs")     # file mode: the files written, and read by weir
CHECKPOINTS = os.path.join(WORK, "data", "in")
PORT = free_port()
URL = "http://127.0.0.1:%d/" % PORT


def server(verb):
    return harness.server("clickhouse", verb, SERVER_DIR)


def query(sql):
    req = urllib.request.Request("http://127.0.0.1:%s/" % CH_PORT, data=sql.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read().decode()


def source_config():
    if not FILE:
        return '  in: { type: http_server, address: "127.0.0.1:%d", acknowledgements: %s }\n' % (PORT, "true" if ACKS else "false")
    # Both the live files and the rotated ones: a rotated file the globs no longer name is read
    # to its end only by the weir that saw the rename, and one killed before that end would
    # leave its last lines unread. Files without a checkpoint (a new file that appeared while
    # weir was down) are read from their beginning.
    return """  in:
    type: file
    include: ["%s/*.log", "%s/*.log.1"]
    read_from: beginning
    glob_interval: 500ms
    poll_interval: %dms
    read_bytes: %d
""" % (LOGS, LOGS, POLL * 1000, READ_BYTES)


def write_config():
    if not DISK_BUFFER:
        buffer = ""
    elif FILE:  # max_events stated: the duplicates' bound counts on it
        buffer = "    buffer: { type: disk, max_size: 256MiB, sync: always, max_events: %d }\n" % BUFFER_EVENTS
    else:
        buffer = "    buffer: { type: disk, max_size: 256MiB, sync: always }\n"
    with open(CONFIG, "w") as f:
        f.write("""data_dir: %s/data
sources:
%stransforms:
  wt:
    type: working_time
    inputs: [in]
    idle_after: 1s
sinks:
  ch:
    type: clickhouse
    inputs: [wt]
    skip_unknown_fields: true
    endpoint: http://127.0.0.1:%s
    database: weir_crash
    table: events
    batch: { max_events: %d, timeout: 200ms }
    request: { retry_initial_backoff: 200ms, retry_max_backoff: 2s }
%s""" % (WORK, source_config(), CH_PORT, MAX_EVENTS, buffer))


def payload(i):
    """Says which id it belongs to, so a row pieced together from two records shows."""
    return ("p%08d" % i).ljust(PAYLOAD, "x")


def event_line(i, number):
    """Event i, sent by `number` for user `number`: a CVAT client event working_time counts."""
    return ('{"id":%d,"sender":%d,"payload":"%s","user_id":%d,"job_id":%d,"source":"client","scope":"click:element",'
            '"timestamp":"%s"}\n' % (i, number, payload(i), number, job_of(i), iso_ms(event_ms(i))))


LINE_BYTES = len(event_line(0, 0))


def user_of_body(first):
    """Whose body starts at id `first`: sender n sends bodies n, n + SENDERS, ... in order."""
    return (first // BODY) % SENDERS


def expected_working_time():
    """{(user, job): ms}: CVAT's working time of each user's events in the order they were sent."""
    totals = Counter()
    for user in range(SENDERS):
        prev_end = prev_job = None
        for first in range(user * BODY, EVENTS, SENDERS * BODY):
            for i in range(first, min(EVENTS, first + BODY)):
                t = event_ms(i)
                if prev_end is None:
                    prev_end, prev_job = t, job_of(i)
                if 0 < t - prev_end < THRESHOLD_MS:
                    totals[(user, prev_job)] += t - prev_end
                prev_end, prev_job = max(prev_end, t), job_of(i)
    return dict(totals)


def log_tail(chars=3000):
    with open(LOG, errors="replace") as f:
        return f.read()[-chars:]


def listening():
    try:
        socket.create_connection(("127.0.0.1", PORT), timeout=0.5).close()
        return True
    except OSError:
        return False


def running(since):
    """File mode: weir logged, after byte `since` of its log, that its pipeline runs."""
    with open(LOG, "rb") as f:
        f.seek(since)
        return b"weir: running " in f.read()


class Weir:
    """The weir under test: started, killed and started again on the same config and data_dir
    (so the disk buffer is what it recovers from). Only the controller thread uses it."""

    def __init__(self):
        self.proc = None
        self.starts = 0
        self.kills = 0
        self.exits = []  # exit codes of the exits nobody asked for

    def start(self):
        self.starts += 1
        started = time.time()
        with open(LOG, "a") as log:
            log.write("---- test: start %d\n" % self.starts)
            log.flush()
            since = log.tell()
            self.proc = subprocess.Popen([WEIR, "run", "-c", CONFIG], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        while not (running(since) if FILE else listening()):
            if self.proc.poll() is not None or time.time() - started > 30:
                raise RuntimeError("weir (start %d) is not %s, exit %s:\n%s"
                                   % (self.starts, "running" if FILE else "listening on %d" % PORT,
                                      self.proc.poll(), log_tail()))
            time.sleep(0.05)
        return time.time() - started

    def watch(self):
        """A weir that exited by itself is noted (a failure) and started again, so the run goes on."""
        if self.proc.poll() is not None:
            self.exits.append(self.proc.returncode)
            print("weir exited by itself (exit %s): starting it again" % self.proc.returncode, flush=True)
            self.start()

    def kill(self, why):
        self.watch()
        written = len(accepted)
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.kills += 1
        # File mode: the lines the restart reads again (those weir had not seen yet too).
        behind = ", %d past the checkpoints" % (written - checkpointed()) if FILE else ""
        back = self.start()
        print("kill %d/%d %s (t=%.1f s, %d %s%s); back in %.1f s"
              % (self.kills, KILLS, why, time.time() - T0, len(accepted), TAKEN, behind, back), flush=True)


class Pace:
    """Which ids may be sent by now: each phase lets its events out evenly over its seconds,
    and hold() lets none out, for while ClickHouse is being stopped or started (18.16 serves
    its open keep-alive connections for up to 20 s after SIGTERM: answers then are not the
    outage yet)."""

    def __init__(self):
        self.base, self.events, self.since, self.seconds = 0.0, 0.0, time.time(), 1.0

    def let_out(self):
        return self.base + self.events * min(1.0, (time.time() - self.since) / self.seconds)

    def phase(self, events, seconds):
        self.base, self.events, self.since, self.seconds = self.let_out(), events, time.time(), seconds

    def hold(self):
        self.phase(0, 1.0)


class LogFile:
    """File mode: a log file its writers append whole bodies to, each in one write(2) on a
    descriptor opened with O_APPEND, so lines of two writers never interleave. Rotated once."""

    def __init__(self, number):
        self.path = os.path.join(LOGS, "app-%d.log" % number)
        self.lock = threading.Lock()
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.ids = []       # of the lines in the file under self.path
        self.rotated = None  # of the lines in self.path + ".1", once rotated

    def write(self, fd, body):
        view = memoryview(body)
        while view:
            view = view[os.write(fd, view):]

    def append(self, ids, body):
        with self.lock:
            if self.rotated is None and ids[0] >= ROTATE_AT:
                # Rename and create, as loggers rotate: the writer has the old file open and
                # finishes this write into it, then opens a new one under the old name.
                os.rename(self.path, self.path + ".1")
                self.write(self.fd, body)
                os.close(self.fd)
                self.rotated, self.ids = self.ids + list(ids), []
                self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                print("rotated %s (t=%.1f s, %d written)" % (os.path.basename(self.path), time.time() - T0, len(accepted)),
                      flush=True)
                return
            self.write(self.fd, body)
            self.ids.extend(ids)


lock = threading.Lock()
accepted = set()          # ids weir answered 200 for (file mode: ids written)
answers = Counter()       # every answer (status, or the error when there was none)
accepted_while_down = 0   # events answered 200 while ClickHouse was stopped (file mode: written)
clickhouse_down = False
in_flight = 0             # requests posted and not answered yet
writes = 0                # file mode: bodies written so far
log_files = []            # file mode: the LogFiles
checkpointed_in_outage = []  # file mode: lines behind weir's checkpoints as ClickHouse went away, and came back
pace = Pace()
pace.hold()               # until the controller starts the first phase
stop = threading.Event()  # time is up, or the controller failed: the senders give up
errors = []               # what ended the controller


def post(body):
    """weir's answer: the HTTP status, or the error's name when there was none (weir is down)."""
    req = urllib.request.Request(URL, data=body, method="POST", headers={"Content-Type": "application/x-ndjson"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, http.client.HTTPException) as e:
        return type(e).__name__


def fnv1a(data):
    """The file source's fingerprint of a file: FNV-1a of its first line, as 16 hex digits."""
    h = 1469598103934665603
    for c in data:
        h = ((h ^ c) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def checkpointed():
    """File mode: how many lines of the log files lie before weir's saved checkpoints (the
    newest whole slot of <data_dir>/in/checkpoints.{0,1}, keyed by device:inode:fingerprint)."""
    newest, offsets = -1, {}
    for slot in (0, 1):
        try:
            with open(os.path.join(CHECKPOINTS, "checkpoints.%d" % slot), "rb") as f:
                text = f.read()
        except FileNotFoundError:
            continue
        header, _, rest = text.partition(b"\n")
        m = re.fullmatch(rb"weir-checkpoints v1 (\d+) (\d+) ([0-9a-f]{8})", header)
        if not m or int(m.group(1)) <= newest:
            continue
        body = rest[:int(m.group(2))]
        if len(body) == int(m.group(2)) and zlib.crc32(body) == int(m.group(3), 16):
            newest, offsets = int(m.group(1)), {k: v["offset"] for k, v in json.loads(body).items()}
    lines = 0
    for name in os.listdir(LOGS):
        path = os.path.join(LOGS, name)
        with open(path, "rb") as f:
            data = f.read()
        st = os.stat(path)
        end = data.find(b"\n")
        key = "%d:%d:%s" % (st.st_dev, st.st_ino, fnv1a(data[:min(end, 256)])) if end >= 0 else None
        if key in offsets:
            lines += data.count(b"\n", 0, offsets[key])
    return lines


def sender(number):
    global accepted_while_down, in_flight, writes
    pauses = random.Random(SEED * 100 + number)
    for first in range(number * BODY, EVENTS, SENDERS * BODY):
        if stop.is_set():
            return
        ids = range(first, min(EVENTS, first + BODY))
        body = "".join(event_line(i, number) for i in ids).encode()
        while first >= pace.let_out() and not stop.is_set():
            time.sleep(0.02)
        if FILE:  # written is offered: there is no answer to wait for
            if not stop.is_set():
                log_files[number % LOG_FILES].append(ids, body)
                with lock:
                    accepted.update(ids)
                    writes += 1
                    if clickhouse_down:
                        accepted_while_down += len(ids)
            continue
        # The same body until it is answered 200: weir may be dead, starting, or busy.
        while not stop.is_set():
            with lock:
                in_flight += 1
            status = post(body)
            with lock:
                in_flight -= 1
                answers[status] += 1
                if status == 200:
                    accepted.update(ids)
                    if clickhouse_down:
                        accepted_while_down += len(ids)
            if status == 200:
                break
            time.sleep(pauses.uniform(0.1, 0.2))


def plan():
    """Seconds into each phase (before, during and after the outage) at which weir is killed."""
    rng = random.Random(SEED)
    before, after = [], []
    for _ in range(KILLS - KILLS_IN_OUTAGE):
        (before if rng.random() < 0.5 else after).append(rng.uniform(0.05, 0.95) * SEND_SECONDS / 2)
    during = [rng.uniform(0.1, 0.9) * OUTAGE for _ in range(KILLS_IN_OUTAGE)]
    return sorted(before), sorted(during), sorted(after)


def sleep_until(moment):
    while time.time() < moment and not stop.is_set():
        weir.watch()
        time.sleep(0.02)


def read_so_far(pid):
    """Bytes the process has read (rchar of /proc/PID/io), 0 when that is not to be had."""
    try:
        with open("/proc/%d/io" % pid) as f:
            for line in f:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


kill_delays = random.Random(SEED + 1)  # file mode: a kill's delay after weir read a body


def phase(name, events, seconds, kills):
    """Lets `events` out over `seconds`, killing weir at the planned moments in it. A kill waits
    (a second at most) for a request in flight: paced, weir is mostly idle, and between taking
    a body and answering it is where an answer could come before the events are safe. In file
    mode it waits (a second at most) for the next write and for weir to read it (it has read
    a body's bytes more), then 0-2 ms: from reading the lines to moving the checkpoint past
    them (decoding, the disk buffer's write and fdatasync, the acknowledgement, the save) is
    where a checkpoint could move before the lines are safe, and it takes about a millisecond.
    Killed at a random moment instead, weir is mostly idle, all it read behind the checkpoints."""
    began = time.time()
    pace.phase(events, seconds)
    for at in kills:
        sleep_until(began + at)
        until = time.time() + 1
        if FILE:
            seen, read = writes, read_so_far(weir.proc.pid)
            while writes == seen and time.time() < until:
                time.sleep(0.001)
            while read_so_far(weir.proc.pid) - read < BODY * LINE_BYTES and time.time() < until:
                time.sleep(0.0001)
            time.sleep(kill_delays.uniform(0, 0.002))
        else:
            while in_flight == 0 and time.time() < until:
                time.sleep(0.001)
        weir.kill("%.1f s %s" % (at, name))
    sleep_until(began + seconds)


def controller(before, during, after):
    global clickhouse_down
    try:
        phase("into the sending", BEFORE * EVENTS, SEND_SECONDS / 2, before)
        pace.hold()
        stopping = time.time()
        server("stop")
        clickhouse_down = True
        print("clickhouse stopped in %.1f s, for %.0f s (t=%.1f s, %d %s)"
              % (time.time() - stopping, OUTAGE, time.time() - T0, len(accepted), TAKEN), flush=True)
        if FILE:
            checkpointed_in_outage.append(checkpointed())
        phase("into the outage", DURING * EVENTS, OUTAGE, during)
        pace.hold()
        if FILE:
            checkpointed_in_outage.append(checkpointed())
        clickhouse_down = False
        server("start")
        print("clickhouse back (t=%.1f s, %d %s, %d of them while it was away%s)"
              % (time.time() - T0, len(accepted), TAKEN, accepted_while_down,
                 "; checkpoints moved by %d lines meanwhile" % (checkpointed_in_outage[1] - checkpointed_in_outage[0])
                 if FILE else ""), flush=True)
        phase("after the outage", EVENTS - pace.let_out(), SEND_SECONDS / 2, after)
    except BaseException as e:  # SystemExit from server() too: a thread would end silently
        errors.append(repr(e))
        stop.set()


RAW = "scope != 'send:working_time'"  # the events sent, not working_time's rows


def working_time_rows():
    """working_time's rows in ClickHouse: {(user, job, ms, timestamp, payload): how many times}."""
    text = query("SELECT user_id, job_id, duration, timestamp, payload FROM weir_crash.events "
                 "WHERE scope = 'send:working_time' FORMAT TSV")
    rows = Counter()
    for line in text.splitlines():
        user, job, ms, stamp, row_payload = line.split("\t")
        rows[(int(user), int(job), int(ms), stamp, row_payload)] += 1
    return rows


def stored():
    """(rows, distinct ids) in the table."""
    rows, distinct = query("SELECT count(), uniqExact(id) FROM weir_crash.events WHERE %s FORMAT TSV" % RAW).split()
    return int(rows), int(distinct)


weir = Weir()
senders = []
STARTED = T0 = time.time()
try:
    CH_PORT = server("start")
    print("clickhouse on port %s; weir %s; %d events over %.0f s, %d kills, %.0f s outage, seed %d, %s"
          % (CH_PORT, "reading %s" % LOGS if FILE else "on %d" % PORT, EVENTS, SEND_SECONDS, KILLS, OUTAGE, SEED, MODE),
          flush=True)
    query("CREATE DATABASE IF NOT EXISTS weir_crash")
    query("CREATE TABLE weir_crash.events (id UInt64, sender UInt32, payload String, user_id UInt32, job_id UInt32, "
          "scope String, duration UInt64, timestamp String) ENGINE = MergeTree ORDER BY id")
    write_config()
    before, during, after = plan()
    print("kills at %s s into the sending, %s s into the outage, %s s after it"
          % tuple(", ".join("%.1f" % s for s in kills) or "-" for kills in (before, during, after)), flush=True)
    if FILE:
        os.makedirs(LOGS)
        log_files = [LogFile(n) for n in range(LOG_FILES)]
    weir.start()
    T0 = time.time()
    senders = [threading.Thread(target=sender, args=(n,), daemon=True) for n in range(SENDERS)]
    for t in senders:
        t.start()
    control = threading.Thread(target=controller, args=(before, during, after), daemon=True)
    control.start()
    while any(t.is_alive() for t in senders + [control]) and time.time() - T0 < SEND_LIMIT and not stop.is_set():
        time.sleep(0.2)
    stop.set()  # what is still at it by now is given up on
    control.join(30)
    sent_seconds = time.time() - T0
    check("the controller ran its plan", not errors and not control.is_alive(), errors)
    if FILE:
        check("every line was written within %.0f s" % SEND_LIMIT, len(accepted) == EVENTS,
              "%d of %d" % (len(accepted), EVENTS))
        print("all written in %.1f s" % sent_seconds, flush=True)
    else:
        check("every event was answered 200 within %.0f s" % SEND_LIMIT, len(accepted) == EVENTS,
              "%d of %d; answers %s" % (len(accepted), EVENTS, dict(answers)))
        print("all sent in %.1f s; answers: %s" % (sent_seconds, dict(answers)), flush=True)

    # Delivery goes on after the last 200 (or line written): wait for the rows (weir watched:
    # it may still crash), but not for rows that stopped coming: retries are at most 2 s apart.
    waited = moved = time.time()
    delivery_limit = min(180, max(30, BUDGET - (waited - STARTED)))
    last = None
    while time.time() - waited < delivery_limit and time.time() - moved < 30:
        try:
            now = stored()[1]
            if now >= len(accepted):
                break
            if now != last:
                last, moved = now, time.time()
        except OSError:
            pass
        if not errors:
            weir.watch()
        time.sleep(0.5)
    # The last working-time rows come from the idle timer, emit_interval after the last events.
    expected_ms = sum(expected_working_time().values())
    while time.time() - waited < delivery_limit + 20:
        try:
            if sum(ms for (_, _, ms, _, _) in working_time_rows()) >= expected_ms:
                break
        except OSError:
            pass
        time.sleep(0.5)
    rows, distinct = stored()
    print("in clickhouse %.1f s after the last %s: %d rows, %d distinct ids"
          % (time.time() - waited, "line written" if FILE else "200", rows, distinct), flush=True)
    weir.proc.send_signal(signal.SIGTERM)
    rc = weir.proc.wait(timeout=60)

    present = {int(x) for x in query("SELECT DISTINCT id FROM weir_crash.events WHERE %s FORMAT TSV" % RAW).split()}
    missing = sorted(accepted - present)
    check("every line written is in ClickHouse" if FILE else "every event answered 200 is in ClickHouse", not missing,
          "%d of %d missing, e.g. %s" % (len(missing), len(accepted), missing[:10]))
    if ROTATION:
        for f in log_files:
            name = os.path.basename(f.path)
            lost = {name + ".1": len(set(f.rotated or []) - present), name: len(set(f.ids) - present)}
            check("rotation: %s was rotated, and the lines of %s.1 (%d) and of the new %s (%d) are all in ClickHouse"
                  % (name, name, len(f.rotated or []), name, len(f.ids)),
                  f.rotated is not None and not any(lost.values()), "missing: %s" % lost)
    check("weir was killed %d times, and came back each time" % KILLS, weir.kills == KILLS, weir.kills)
    check("weir never exited by itself", not weir.exits, weir.exits)
    # At least half of what was let out during the outage: the two kills in it cost a few seconds.
    if FILE:
        advanced = checkpointed_in_outage[1] - checkpointed_in_outage[0] if len(checkpointed_in_outage) == 2 else 0
        check("outage: weir's checkpoints kept moving while ClickHouse was away (the lines durable in the disk buffer)",
              advanced >= DURING * EVENTS / 2, "by %d lines (%d written then)" % (advanced, accepted_while_down))
    else:
        check("outage: weir kept answering 200 while ClickHouse was away",
              accepted_while_down >= DURING * EVENTS / 2, "%d events answered 200 then" % accepted_while_down)
    duplicates = rows - distinct
    print("duplicates: %d (%d rows for %d ids)" % (duplicates, rows, distinct), flush=True)
    if FILE:
        # What a kill can make weir send twice: the inserts in flight, which ClickHouse may
        # have stored before the disk buffer marked them done (two, as in HTTP mode), and the
        # lines already durable in the disk buffer whose checkpoint was not saved yet (it is
        # saved on the loop turn after the acknowledgement): read again after the restart and
        # buffered again. Those are some of the lines read and not yet acknowledged, the file
        # source's read-ahead: the disk buffer takes at most max_events not yet durable, and
        # the source's last read may overshoot that by one read's lines. A kill tearing a
        # checkpoint save costs the previous save, inside the same read-ahead.
        read_ahead = BUFFER_EVENTS + READ_BYTES // LINE_BYTES
        bound = (2 * MAX_EVENTS + read_ahead) * KILLS
        check("duplicates: at most two inserts in flight and the file source's read-ahead per kill (%d)" % bound,
              duplicates <= bound, duplicates)
    else:
        check("duplicates: at most two inserts in flight per kill (%d)" % (2 * MAX_EVENTS * KILLS),
              duplicates <= 2 * MAX_EVENTS * KILLS, duplicates)
    bad = int(query("SELECT count() FROM weir_crash.events WHERE %s AND (id >= %d OR sender >= %d OR length(payload) != %d "
                    "OR toUInt64OrZero(substring(payload, 2, 8)) != id OR user_id != sender) FORMAT TSV"
                    % (RAW, EVENTS, SENDERS, PAYLOAD)))
    check("every row intact (id in range, its own payload)", bad == 0, "%d rows" % bad)

    # Working time. A row repeated is an insert sent again after a kill (the same record of
    # the disk buffer, byte for byte); the rows made from batches the saved state did not
    # cover were set aside at the restart, and made again from the events sent again.
    wt_rows = working_time_rows()
    totals = Counter()
    for (user, job, ms, _, _), _ in wt_rows.items():
        totals[(user, job)] += ms
    with_repeats = sum(ms * n for (_, _, ms, _, _), n in wt_rows.items())
    repeats = sum(wt_rows.values()) - len(wt_rows)
    expected = expected_working_time()
    print("working time: %d rows (%d repeated), %d ms in all counting each row once, %d ms with the repeats; "
          "expected %d ms" % (sum(wt_rows.values()), repeats, sum(totals.values()), with_repeats, sum(expected.values())),
          flush=True)
    check("working time: rows for the senders' users only, each of positive ms",
          wt_rows and all(user < SENDERS and ms > 0 for (user, _, ms, _, _) in wt_rows), list(wt_rows)[:5])
    if not ROTATION:
        wrong = {key: (totals.get(key, 0), ms) for key, ms in expected.items() if totals.get(key, 0) != ms}
        wrong.update({key: (ms, 0) for key, ms in totals.items() if key not in expected})
        check("working time per (user, job) after %d kills equals the uninterrupted computation, to the ms" % KILLS,
              not wrong, "(user, job): (in clickhouse, expected) %s" % wrong)
    check("weir exits 0 on SIGTERM once everything is delivered", rc == 0, log_tail())
    with open(LOG, errors="replace") as f:
        alarming = [l.rstrip() for l in f if re.search(r"AddressSanitizer|\bterminate", l)]
    check("weir's log has no AddressSanitizer or terminate lines", not alarming, alarming[:5])
    if FILE:  # whole lines only: a restart reading from the middle of one would dead-letter its tail
        dead = os.path.join(WORK, "data", "dead_letter.ndjson")
        dead_letters = open(dead, errors="replace").read().splitlines() if os.path.exists(dead) else []
        check("weir dead-lettered no line", not dead_letters, "%d, e.g. %s" % (len(dead_letters), dead_letters[:3]))
    with open(LOG, errors="replace") as f:
        set_aside = [int(m.group(1)) for m in re.finditer(r"disk buffer: set aside (\d+) events", f.read())]
    print("set aside at restarts: %d events in %d of %d starts" % (sum(set_aside), len(set_aside), weir.starts), flush=True)
    print("crash clickhouse: %d events, %d kills, %d duplicates, %d missing, %.0f s (%s)"
          % (EVENTS, weir.kills, duplicates, len(missing), time.time() - T0, MODE), flush=True)
finally:
    stop.set()
    if weir.proc is not None and weir.proc.poll() is None:
        weir.proc.kill()
        weir.proc.wait()
    try:
        server("stop")
    except SystemExit:
        pass

if harness.failures:
    print("kept %s (weir.log, clickhouse/log)" % WORK)
else:
    shutil.rmtree(WORK, ignore_errors=True)
finish("crash clickhouse" + (" file" if FILE else ""))
