#!/usr/bin/env python3
"""End-to-end tests of the file source: globs picking up new files, rename-and-create and
copytruncate rotation, deletion, checkpoints across restarts, and kill -9 under load."""
import json, os, signal, subprocess, sys, tempfile, time

from harness import check, failures, finish

WEIR = sys.argv[1]
WORK = tempfile.mkdtemp(prefix="weir-file-")
LOGS = os.path.join(WORK, "logs")
OUT = os.path.join(WORK, "out.ndjson")
os.makedirs(LOGS)


def config(extra=""):
    path = os.path.join(WORK, "p.yaml")
    with open(path, "w") as f:
        f.write("""data_dir: %s/data
sources:
  logs:
    type: file
    include: ["%s/*.log"]
    exclude: ["%s/skip*.log"]
    glob_interval: 100ms
    poll_interval: 50ms
    %s
sinks:
  out: { type: file, inputs: [logs], path: "%s" }
""" % (WORK, LOGS, LOGS, extra, OUT))
    return path


def start(extra=""):
    log = open(os.path.join(WORK, "weir.log"), "a")
    return subprocess.Popen([WEIR, "run", "-c", config(extra)], stderr=log)


def out_numbers():
    if not os.path.exists(OUT):
        return []
    return [json.loads(l)["n"] for l in open(OUT) if l.strip()]


def wait_for(predicate, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def append(name, numbers):
    with open(os.path.join(LOGS, name), "a") as f:
        for n in numbers:
            f.write('{"n":%d}\n' % n)


# ---- rotation, truncation, new files, exclusion, deletion -----------------------------------
append("app.log", range(0, 10))
append("skip-me.log", [999])
p = start()
check("existing file read from the beginning", wait_for(lambda: sorted(out_numbers()) == list(range(10))), out_numbers())
append("new.log", range(100, 105))
check("a file that appears later is picked up by the glob", wait_for(lambda: set(range(100, 105)) <= set(out_numbers())))
# rename-and-create: the writer still appends to the renamed file for a moment.
os.rename(os.path.join(LOGS, "app.log"), os.path.join(LOGS, "app.log.1"))
append("app.log.1", range(10, 15))
append("app.log", range(15, 20))
check("rename-and-create: the old file is finished, the new one read from its start",
      wait_for(lambda: set(range(10, 20)) <= set(out_numbers())), sorted(out_numbers()))
# copytruncate: copy away, truncate in place, keep writing.
with open(os.path.join(LOGS, "new.log"), "r+") as f:
    f.truncate(0)
time.sleep(0.3)
append("new.log", range(200, 203))
check("copytruncate: the shrink is noticed and the file read again from 0",
      wait_for(lambda: set(range(200, 203)) <= set(out_numbers())), sorted(out_numbers()))
append("app.log", range(20, 25))
time.sleep(0.05)
os.unlink(os.path.join(LOGS, "app.log"))
check("deleted file: what was written before the deletion arrives", wait_for(lambda: set(range(20, 25)) <= set(out_numbers())))
p.send_signal(signal.SIGTERM)
check("SIGTERM: exit 0", p.wait(timeout=30) == 0)
got = out_numbers()
check("nothing twice, nothing from excluded files", len(got) == len(set(got)) and 999 not in got, sorted(got))

# ---- checkpoints: a restart continues where the sinks got to --------------------------------
before = len(out_numbers())
append("new.log", range(203, 210))
p = start()
check("restart reads only what is new", wait_for(lambda: set(range(203, 210)) <= set(out_numbers())))
time.sleep(0.3)
p.send_signal(signal.SIGTERM)
p.wait(timeout=30)
got = out_numbers()
check("restart delivered no duplicates", len(got) == len(set(got)) and len(got) == before + 7, (before, len(got)))

# ---- kill -9 under load ---------------------------------------------------------------------
for name in os.listdir(LOGS):
    os.unlink(os.path.join(LOGS, name))
os.unlink(OUT)
TOTAL = 200000
writer = subprocess.Popen([sys.executable, "-c", """
import sys, time
with open(sys.argv[1], "a") as f:
    for start in range(0, %d, 2000):
        f.write("".join('{"n":%%d,"pad":"%s"}\\n' %% n for n in range(start, start + 2000)))
        f.flush()
        time.sleep(0.01)
""" % (TOTAL, "p" * 60), os.path.join(LOGS, "load.log")])
p = start()
wait_for(lambda: len(out_numbers()) > 30000)
p.send_signal(signal.SIGKILL)
p.wait()
killed_at = len(out_numbers())
p = start()
writer.wait()
check("after kill -9 and restart every line arrives", wait_for(lambda: len(set(out_numbers())) == TOTAL, 60),
      (len(set(out_numbers())), TOTAL))
time.sleep(0.5)
p.send_signal(signal.SIGTERM)
p.wait(timeout=30)
got = out_numbers()
counts = {}
for n in got:
    counts[n] = counts.get(n, 0) + 1
twice = sorted(n for n, c in counts.items() if c > 1)
one_read = 256 * 1024 // 70  # lines in one 256 KiB read: the largest batch
contiguous = not twice or twice[-1] - twice[0] + 1 == len(twice)
check("kill -9: duplicates are at most one batch (%d lines, killed after %d)" % (len(twice), killed_at),
      max(counts.values()) <= 2 and len(twice) <= one_read and contiguous, twice[:5])

# ---- many files with a backlog: every line once, and the files take turns ------------------
# A source runs at most two read jobs at once (the sinks need the thread pool too), and a
# job gives its turn to the next file after 16 reads, so no file waits for the others to be
# read to the end.
for name in os.listdir(LOGS):
    os.unlink(os.path.join(LOGS, name))
os.unlink(OUT)
FILES, LINES = 6, 150000  # 11 MB each: about 3 turns of 16 reads of 256 KiB
for i in range(FILES):
    # First lines unlike any file above: a file is known by its first line (the checkpoint key).
    with open(os.path.join(LOGS, "many%d.log" % i), "a") as f:
        f.write("".join('{"n":%d,"pad":"%s"}\n' % (n, "x" * 50) for n in range(i * 1000000 + 500000,
                                                                           i * 1000000 + 500000 + LINES)))
p = start()
def out_lines():
    with open(OUT, "rb") as f:
        return f.read().count(b"\n")


ok = wait_for(lambda: os.path.exists(OUT) and out_lines() >= FILES * LINES, 60)
p.send_signal(signal.SIGTERM)
p.wait(timeout=30)
got = out_numbers()
check("6 files with a backlog: every line exactly once", ok and len(got) == len(set(got)) == FILES * LINES,
      (len(got), len(set(got))))
first_half = {n // 1000000 for n in got[:len(got) // 2]}  # the file each line came from
check("6 files with a backlog: all of them are read from in the first half of the output",
      first_half == set(range(FILES)), sorted(first_half))

# ---- a slow sink: the source pauses and resumes, and nothing is lost or repeated ----------
# The file sink writes into a pipe drained slowly, with a small input buffer: the buffer fills,
# the source pauses (its read job stops after the read in hand) and resumes many times.
for name in os.listdir(LOGS):
    os.unlink(os.path.join(LOGS, name))
SLOW_LINES = 60000
with open(os.path.join(LOGS, "slow.log"), "w") as f:
    f.write("".join('{"n":%d,"pad":"%s"}\n' % (n, "s" * 40) for n in range(7000000, 7000000 + SLOW_LINES)))
fifo = os.path.join(WORK, "slow.fifo")
os.mkfifo(fifo)
drained = os.path.join(WORK, "slow.out")
reader = subprocess.Popen([sys.executable, "-c", """
import os, sys, time
with open(sys.argv[1], "rb", buffering=0) as src, open(sys.argv[2], "wb") as dst:
    while True:
        chunk = os.read(src.fileno(), 16384)  # what the pipe has, up to 16 KiB
        if not chunk:
            break
        dst.write(chunk)
        dst.flush()
        time.sleep(0.002)
""", fifo, drained])
slow_cfg = os.path.join(WORK, "slow.yaml")
with open(slow_cfg, "w") as f:
    f.write("""data_dir: %s/data-slow
sources:
  logs: { type: file, include: ["%s/slow.log"], poll_interval: 50ms }
sinks:
  out: { type: file, inputs: [logs], path: "%s", buffer: { max_events: 500 } }
""" % (WORK, LOGS, fifo))
p = subprocess.Popen([WEIR, "run", "-c", slow_cfg], stderr=open(os.path.join(WORK, "weir.log"), "a"))


def drained_lines():
    with open(drained, "rb") as f:
        return f.read().count(b"\n")


ok = wait_for(lambda: os.path.exists(drained) and drained_lines() >= SLOW_LINES, 90)
p.send_signal(signal.SIGTERM)
p.wait(timeout=30)
reader.wait(timeout=30)
got = [json.loads(l)["n"] for l in open(drained) if l.strip()]
check("slow sink: every line exactly once, in order", ok and got == list(range(7000000, 7000000 + SLOW_LINES)),
      (len(got), len(set(got))))

# ---- two files with the same first line are two files ---------------------------------------
# A CSV-like header on both: keyed by the first line alone, the second file resumed at the
# first one's checkpoint and its first lines were skipped without a word.
same = os.path.join(WORK, "same")
os.makedirs(same)
same_out = os.path.join(WORK, "same.ndjson")
same_cfg = os.path.join(WORK, "same.yaml")
with open(same_cfg, "w") as f:
    f.write("""data_dir: %s/data-same
sources:
  logs: { type: file, include: ["%s/*.csv"], decoding: { codec: text }, glob_interval: 100ms, poll_interval: 50ms }
sinks:
  out: { type: file, inputs: [logs], path: "%s" }
""" % (WORK, same, same_out))


def same_lines():
    return [json.loads(l)["message"] for l in open(same_out)] if os.path.exists(same_out) else []


with open(os.path.join(same, "a.csv"), "w") as f:
    f.write("id,name\n" + "".join("a%d,x\n" % i for i in range(20)))
p = subprocess.Popen([WEIR, "run", "-c", same_cfg], stderr=open(os.path.join(WORK, "weir.log"), "a"))
wait_for(lambda: len(same_lines()) == 21)
p.send_signal(signal.SIGTERM)
p.wait(timeout=30)
with open(os.path.join(same, "b.csv"), "w") as f:
    f.write("id,name\n" + "".join("b%d,y\n" % i for i in range(30)))
p = subprocess.Popen([WEIR, "run", "-c", same_cfg], stderr=open(os.path.join(WORK, "weir.log"), "a"))
wait_for(lambda: len([l for l in same_lines() if l.startswith("b")]) >= 30)
time.sleep(0.3)
p.send_signal(signal.SIGTERM)
p.wait(timeout=30)
got = same_lines()
check("same first line: the second file is read whole, the first not again",
      sorted(l for l in got if l.startswith("b")) == sorted("b%d,y" % i for i in range(30))
      and sorted(l for l in got if l.startswith("a")) == sorted("a%d,x" % i for i in range(20)),
      (len(got), got[-5:]))
def newest_checkpoints(directory):
    """The entries of the newest checkpoint slot: header 'weir-checkpoints v1 SEQ LEN CRC', then LEN bytes."""
    best, entries = -1, {}
    for slot in (0, 1):
        path = os.path.join(directory, "checkpoints.%d" % slot)
        if not os.path.exists(path):
            continue
        header, _, rest = open(path, "rb").read().partition(b"\n")
        if len(header.split()) != 5:
            continue  # read while weir rewrites that slot: the other one holds the last save
        _, _, seq, length, _ = header.split()
        if int(seq) > best and len(rest) >= int(length):
            best, entries = int(seq), json.loads(rest[:int(length)])
    return entries


keys = newest_checkpoints(os.path.join(WORK, "data-same", "logs"))
check("their checkpoints are two entries, keyed by device:inode:fingerprint",
      len(keys) == 2 and all(k.count(":") == 2 for k in keys), list(keys))

# ---- a sink that gives up: the lines are dead-lettered and the checkpoint still advances -------
gave = os.path.join(WORK, "gave-up")
os.makedirs(gave)
with open(os.path.join(gave, "g.log"), "w") as f:
    f.write("".join('{"n":%d}\n' % n for n in range(500)))
gave_cfg = os.path.join(WORK, "gave.yaml")
gave_out = os.path.join(WORK, "gave.ndjson")
with open(gave_cfg, "w") as f:
    f.write("""data_dir: %s/data-gave
sources:
  logs: { type: file, include: ["%s/*.log"], poll_interval: 50ms, read_bytes: 4KiB }
sinks:
  good: { type: file, inputs: [logs], path: "%s" }
  full: { type: file, inputs: [logs], path: /dev/full }
""" % (WORK, gave, gave_out))
p = subprocess.Popen([WEIR, "run", "-c", gave_cfg], stderr=open(os.path.join(WORK, "gave.log"), "w"))
dead_path = os.path.join(WORK, "data-gave", "dead_letter.ndjson")


def dead_numbers():
    if not os.path.exists(dead_path):
        return []
    return [json.loads(json.loads(l)["raw"])["n"] for l in open(dead_path) if '"raw"' in l]


wait_for(lambda: len(dead_numbers()) >= 500, 20)
time.sleep(0.5)
p.send_signal(signal.SIGTERM)
p.wait(timeout=30)
dead = dead_numbers()
gave_log = open(os.path.join(WORK, "gave.log")).read()
check("every batch the /dev/full sink gave up on is dead-lettered from the file, each line once",
      sorted(dead) == list(range(500)), (len(dead), gave_log[-1500:]))
check("with the reason", "delivery failed" in open(dead_path).read() if os.path.exists(dead_path) else False)
before = len(open(gave_out).read().splitlines())
with open(os.path.join(gave, "g.log"), "a") as f:
    f.write('{"n":500}\n')
p = subprocess.Popen([WEIR, "run", "-c", gave_cfg], stderr=open(os.path.join(WORK, "gave.log"), "a"))
wait_for(lambda: len(open(gave_out).read().splitlines()) > before, 10)
time.sleep(0.3)
p.send_signal(signal.SIGTERM)
p.wait(timeout=30)
after = [json.loads(l)["n"] for l in open(gave_out)]
check("the checkpoint advanced past them: a restart reads only the new line", after[before:] == [500], after[before:][:10])

# ---- a dead-letter file that does not take its letters holds the checkpoint back -------------
# The dead-letter file is written off the loop. Here it is a FIFO nobody reads yet, as a disk
# that has stalled: the good lines flow on, but the checkpoint must not pass the bad lines
# until their letters are written, or a kill -9 now would lose them for good.
stall = os.path.join(WORK, "stall")
os.makedirs(stall)
fifo = os.path.join(WORK, "dead.fifo")
os.mkfifo(fifo)
with open(os.path.join(stall, "s.log"), "w") as f:
    f.write("".join(('{"n":%d}\n' % n) if n % 10 else ("not json %d\n" % n) for n in range(100)))
stall_out = os.path.join(WORK, "stall.ndjson")
stall_cfg = os.path.join(WORK, "stall.yaml")
with open(stall_cfg, "w") as f:
    f.write("""data_dir: %s/data-stall
dead_letter: { path: "%s" }
sources:
  logs: { type: file, include: ["%s/*.log"], poll_interval: 50ms }
sinks:
  out: { type: file, inputs: [logs], path: "%s" }
""" % (WORK, fifo, stall, stall_out))
p = subprocess.Popen([WEIR, "run", "-c", stall_cfg], stdout=subprocess.DEVNULL,
                     stderr=open(os.path.join(WORK, "stall.log"), "w"))


def stall_good():
    return len(open(stall_out).read().splitlines()) if os.path.exists(stall_out) else 0


def stall_offset():
    entries = newest_checkpoints(os.path.join(WORK, "data-stall", "logs"))
    return max([e["offset"] for e in entries.values()] or [0])


check("a stalled dead-letter file does not stop the good lines", wait_for(lambda: stall_good() == 90, 10), stall_good())
time.sleep(1.5)  # several checkpoint saves' worth
check("the checkpoint has not passed the lines whose letters are not written", stall_offset() == 0, stall_offset())
reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
letters = b""
size = os.path.getsize(os.path.join(stall, "s.log"))
end = time.time() + 10
while time.time() < end and (letters.count(b"\n") < 10 or stall_offset() != size):
    try:
        letters += os.read(reader, 65536)
    except BlockingIOError:
        time.sleep(0.05)
os.kill(p.pid, signal.SIGKILL)
p.wait()
os.close(reader)
raws = sorted(json.loads(l)["raw"] for l in letters.decode().splitlines())
check("once the letters are read, every bad line is in them", raws == sorted("not json %d" % n for n in range(0, 100, 10)), raws)
check("and then the checkpoint covers the whole file (so kill -9 lost nothing)", stall_offset() == size, (stall_offset(), size))

if failures:
    print(open(os.path.join(WORK, "weir.log")).read()[-3000:])
finish("file source")
