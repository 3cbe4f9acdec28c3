#!/usr/bin/env python3
"""Transform plugins end to end: weir's SDK installed with `cmake --install`; the example
plugins (pseudonymise and upper in C++, stamp in plain C) and a fixture plugin built out of
tree against it with their own CMake; their own tests run (`weir test`); then loaded by
weir: `weir list`, `weir validate` (file:line:col), `weir graph`, a live pipeline through
both examples with /metrics and a reload, a plugin that throws on every batch (weir keeps
running, every event counted), a stateful one killed with -9 (its state comes back), and
the refusals: another ABI major (with the rebuild command), a duplicate type, a file that
is not a plugin."""
import hashlib, hmac, json, os, re, shutil, signal, subprocess, sys, tempfile, time, urllib.request

import harness
from harness import check, finish, free_port

WEIR_BUILT = os.path.abspath(sys.argv[1])
BUILD = os.path.dirname(WEIR_BUILT)
WORK = tempfile.mkdtemp(prefix="weir-plugins-")
PREFIX = os.path.join(WORK, "prefix")
EXAMPLES = os.path.join(harness.ROOT, "examples", "plugins")
# The minor both sides are built with (a refusal names it).
ABI_MINOR = re.search(r"^#define WEIR_ABI_MINOR (\d+)", open(os.path.join(harness.ROOT, "agent", "include", "weir", "plugin.h")).read(),
                      re.M).group(1)
FIXTURE = os.path.join(harness.ROOT, "test", "e2e", "fixtures", "plugins", "fixture")


def run(argv, env=None, check_rc=True):
    p = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, **(env or {})))
    if check_rc and p.returncode != 0:
        sys.exit("command failed: %s\n%s%s" % (" ".join(argv), p.stdout, p.stderr))
    return p


def build_plugin(source, name, extra=()):
    out = os.path.join(WORK, name)
    run(["cmake", "-S", source, "-B", out, "-DCMAKE_PREFIX_PATH=" + PREFIX, "-DCMAKE_BUILD_TYPE=Release"] + list(extra))
    run(["cmake", "--build", out])
    return out


def metrics(api):
    return urllib.request.urlopen("http://127.0.0.1:%d/metrics" % api, timeout=5).read().decode()


def metric(text, name, component):
    for line in text.splitlines():
        if line.startswith(name + '{component_id="%s"' % component):
            return float(line.split()[-1])
    return None


def post(port, events):
    req = urllib.request.Request("http://127.0.0.1:%d/" % port, data=json.dumps(events).encode(),
                                 headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=10).status


procs = []
try:
    # The SDK, installed as a user would; weir itself from the same prefix.
    run(["cmake", "--install", BUILD, "--prefix", PREFIX])
    WEIR = os.path.join(PREFIX, "bin", "weir")
    for f in ("include/weir/plugin.h", "include/weir/sdk.hpp", "lib/cmake/weir/weirConfig.cmake",
              "lib/cmake/weir/WeirPlugin.cmake", "lib/pkgconfig/weir.pc"):
        check("cmake --install puts " + f, os.path.exists(os.path.join(PREFIX, f)))
    pc = run(["pkg-config", "--cflags", "weir"], env={"PKG_CONFIG_PATH": os.path.join(PREFIX, "lib", "pkgconfig")})
    check("pkg-config --cflags weir names the installed headers", os.path.join(PREFIX, "include") in
          os.path.normpath(pc.stdout.split()[0][2:]) or PREFIX in pc.stdout, pc.stdout)

    ps = build_plugin(os.path.join(EXAMPLES, "pseudonymise"), "pseudonymise")
    stamp = build_plugin(os.path.join(EXAMPLES, "minimal-c"), "minimal-c", ["-DCMAKE_C_FLAGS=-Wall -Wextra -Werror"])
    fixture = build_plugin(FIXTURE, "fixture")
    PS, STAMP, FIXTURE_SO = (os.path.join(ps, "pseudonymise.so"), os.path.join(stamp, "stamp.so"),
                          os.path.join(fixture, "fixture.so"))
    nm = run(["nm", "-D", "--defined-only", PS]).stdout
    exported = [l.split()[-1] for l in nm.splitlines() if l.split()[-2] in ("T", "D", "B", "W")]
    check("a plugin exports its entry symbol and nothing else of its own",
          "weir_plugin_entry" in exported and not [s for s in exported if "weir::" in s or s.startswith("_ZN4weir")],
          exported)
    ldd = run(["ldd", PS]).stdout
    check("a plugin links nothing of weir's", "weir" not in ldd.replace(PS, ""), ldd)

    # The plugin's own tests, through weir test.
    t = run(["ctest", "--test-dir", ps, "--output-on-failure"], check_rc=False)
    check("pseudonymise's own tests pass (weir test, RFC 4231 vector)", t.returncode == 0, t.stdout + t.stderr)

    # docs/plugins.md's complete example, with its own weir test.
    upper = build_plugin(os.path.join(EXAMPLES, "upper"), "upper")
    t = run([WEIR, "test", "--plugin", os.path.join(upper, "upper.so"), "-c",
             os.path.join(EXAMPLES, "upper", "tests", "upper.yaml")], check_rc=False)
    check("the documented example (upper, under 50 lines) builds and passes its weir test", t.returncode == 0,
          t.stdout + t.stderr)

    # weir list, with --plugin and from a config's plugins_dir.
    listed = run([WEIR, "list", "--plugin", PS, "--plugin", STAMP, "pseudonymise", "stamp"]).stdout
    check("weir list shows a plugin's types, where they come from, and their options",
          "transform pseudonymise" in listed and "from plugin pseudonymise 1.0.0 (%s)" % os.path.realpath(PS) in listed
          and "key_env" in listed and "default PSEUDONYMISE_KEY" in listed and "transform stamp" in listed
          and "from plugin minimal-c 1.0.0" in listed, listed)

    plugins_dir = os.path.join(WORK, "plugins")
    os.makedirs(plugins_dir)
    shutil.copy(PS, plugins_dir)
    shutil.copy(STAMP, plugins_dir)
    api, port = free_port(), free_port()
    out = os.path.join(WORK, "out.ndjson")
    cfg = os.path.join(WORK, "p.yaml")

    def write_config(stamp_value):
        with open(cfg, "w") as f:
            f.write("""data_dir: %s/data
api: { address: "127.0.0.1:%d" }
plugins_dir: plugins
sources:
  in: { type: http_server, address: "127.0.0.1:%d" }
transforms:
  anon:
    type: pseudonymise
    inputs: [in]
    prefix: "p-"
  mark:
    type: stamp
    inputs: [anon]
    field: meta.stamp
    value: %s
sinks:
  out: { type: file, inputs: [mark], path: "%s" }
""" % (WORK, api, port, stamp_value, out))

    write_config("one")
    listed = run([WEIR, "list", "-c", cfg, "stamp"]).stdout
    check("weir list -c loads the config's plugins_dir", "transform stamp" in listed, listed)
    v = run([WEIR, "validate", "-c", cfg], env={"PSEUDONYMISE_KEY": "k1"}, check_rc=False)
    check("weir validate accepts the plugin pipeline", v.returncode == 0 and "valid:" in v.stdout, v.stdout + v.stderr)
    g = run([WEIR, "graph", "-c", cfg], env={"PSEUDONYMISE_KEY": "k1"}).stdout
    check("weir graph draws plugin components", "anon" in g and "pseudonymise" in g and "mark" in g, g)
    bad = os.path.join(WORK, "bad.yaml")
    with open(bad, "w") as f:
        f.write(open(cfg).read().replace("    prefix: \"p-\"\n", "    prefix: \"p-\"\n    length: 8\n"))
    v = run([WEIR, "validate", "-c", bad], env={"PSEUDONYMISE_KEY": "k1"}, check_rc=False)
    check("a plugin's own option check is reported at file:line:col",
          v.returncode != 0 and "bad.yaml:11:5: error: length must be 16 to 64 hex digits" in v.stderr, v.stderr)
    v = run([WEIR, "validate", "-c", cfg], env={"PSEUDONYMISE_KEY": ""}, check_rc=False)
    check("pseudonymise refuses an empty key at validate", v.returncode != 0 and "PSEUDONYMISE_KEY is empty" in v.stderr,
          v.stderr)

    # A live pipeline through both plugins, /metrics, then a reload that changes an option.
    w = subprocess.Popen([WEIR, "run", "-c", cfg, "--log-level", "warn"], env=dict(os.environ, PSEUDONYMISE_KEY="k1"))
    procs.append(w)
    check("weir runs the plugin pipeline", harness.wait_for(lambda: metrics(api) is not None, 20))
    status = post(port, [{"user_email": "ann@example.org", "user_name": "ann", "n": i} for i in range(5)])
    check("events posted through the plugins are accepted", status == 200, status)

    def lines():
        with open(out) as f:
            return [json.loads(l) for l in f if l.strip()]

    check("the events come out", harness.wait_for(lambda: len(lines()) == 5, 20), lines() if os.path.exists(out) else None)
    want = "p-" + hmac.new(b"k1", b"ann@example.org", hashlib.sha256).hexdigest()
    got = lines()
    check("pseudonymise replaced the e-mail with its HMAC-SHA256 (Python's hmac agrees)",
          all(e["user_email"] == want for e in got), got[:1])
    check("stamp (the C plugin) set its field", all(e["meta"]["stamp"] == "one" for e in got), got[:1])
    m = metrics(api)
    check("a plugin's own counter is on /metrics under its component's labels",
          metric(m, "weir_plugin_pseudonymised_fields_total", "anon") == 10
          and metric(m, "weir_plugin_stamped_events_total", "mark") == 5, m[-1500:])
    check("plugin components report the standard counters",
          metric(m, "weir_component_received_events_total", "mark") == 5
          and metric(m, "weir_component_sent_events_total", "anon") == 5)
    write_config("two")
    req = urllib.request.Request("http://127.0.0.1:%d/reload" % api, data=b"", method="POST")
    answer = urllib.request.urlopen(req, timeout=20).read().decode()
    check("a reload that changes a plugin's option is applied", "applied" in answer or "reloaded" in answer, answer)
    post(port, [{"user_name": "bob", "n": 9}])
    check("after the reload the plugin runs with the new option",
          harness.wait_for(lambda: len(lines()) == 6 and lines()[-1]["meta"]["stamp"] == "two", 20), lines()[-1:])
    w.send_signal(signal.SIGTERM)
    check("weir stops cleanly", w.wait(timeout=30) == 0)

    # A plugin that throws on every batch: weir keeps running, every event accounted for.
    api2, port2 = free_port(), free_port()
    cfg2 = os.path.join(WORK, "explode.yaml")
    dead = os.path.join(WORK, "data2", "dead_letter.ndjson")
    with open(cfg2, "w") as f:
        f.write("""data_dir: %s/data2
api: { address: "127.0.0.1:%d" }
plugins: [%s]
sources:
  in: { type: http_server, address: "127.0.0.1:%d" }
transforms:
  boom: { type: explode, inputs: [in] }
sinks:
  out: { type: blackhole, inputs: [boom] }
""" % (WORK, api2, FIXTURE_SO, port2))
    w = subprocess.Popen([WEIR, "run", "-c", cfg2, "--log-level", "warn"], stderr=subprocess.PIPE, text=True)
    procs.append(w)
    check("weir runs a pipeline with a throwing plugin", harness.wait_for(lambda: metrics(api2) is not None, 20))
    codes = [post(port2, [{"n": r * 10 + i} for i in range(10)]) for r in range(3)]
    check("requests are answered (their events are dead-lettered, which counts as delivered)", codes == [200] * 3, codes)
    m = metrics(api2)
    check("every failed batch is an error", metric(m, "weir_component_errors_total", "boom") == 3, m[-2500:])
    check("every event is dead-lettered and counted",
          metric(m, "weir_component_dead_lettered_events_total", "boom") == 30)
    def read_letters():
        if not os.path.exists(dead):
            return []
        with open(dead) as f:
            return [json.loads(l) for l in f if l.endswith("\n")]
    # Without acknowledgements the answer does not wait for the dead-letter file (written off
    # the loop): the letters arrive just after.
    harness.wait_for(lambda: len(read_letters()) >= 30, 10)
    letters = read_letters()
    check("the dead letters hold the events and the exception's message",
          len(letters) == 30 and sorted(l["event"]["n"] for l in letters) == list(range(30))
          and all(l["reason"] == "transform failed: explode: always" for l in letters), letters[:1])
    check("weir is still running", w.poll() is None and "ok" in
          urllib.request.urlopen("http://127.0.0.1:%d/health" % api2, timeout=5).read().decode().lower())
    w.send_signal(signal.SIGTERM)
    rc = w.wait(timeout=30)
    err = w.stderr.read()
    check("and stops cleanly, having logged the failures rate-limited",
          rc == 0 and err.count("plugin fixture 0.0.1 failed on a batch") == 1, err[-2000:])

    # A stateful plugin's state survives kill -9: acknowledged requests are covered by the
    # saved state, so the numbering goes on where it was.
    api3, port3 = free_port(), free_port()
    cfg3 = os.path.join(WORK, "count.yaml")
    counted = os.path.join(WORK, "counted.ndjson")
    with open(cfg3, "w") as f:
        f.write("""data_dir: %s/data3
api: { address: "127.0.0.1:%d" }
plugins: [%s]
sources:
  in: { type: http_server, address: "127.0.0.1:%d", acknowledgements: true }
transforms:
  numbered: { type: count, inputs: [in] }
sinks:
  out: { type: file, inputs: [numbered], path: "%s" }
""" % (WORK, api3, FIXTURE_SO, port3, counted))

    def seqs():
        with open(counted) as f:
            return [json.loads(l)["seq"] for l in f if l.strip()]

    w = subprocess.Popen([WEIR, "run", "-c", cfg3, "--log-level", "warn"])
    procs.append(w)
    check("weir runs a stateful plugin", harness.wait_for(lambda: metrics(api3) is not None, 20))
    codes = [post(port3, [{"n": r * 2 + i} for i in range(2)]) for r in range(3)]
    check("acknowledged requests through the stateful plugin", codes == [200] * 3 and seqs() == [1, 2, 3, 4, 5, 6], seqs())
    w.kill()
    w.wait(timeout=30)
    w = subprocess.Popen([WEIR, "run", "-c", cfg3, "--log-level", "warn"])
    procs.append(w)
    check("weir restarts after kill -9", harness.wait_for(lambda: metrics(api3) is not None, 20))
    post(port3, [{"n": 100}, {"n": 101}])
    check("the plugin's state came back: numbering goes on after kill -9",
          harness.wait_for(lambda: seqs()[-2:] == [7, 8], 20) and seqs() == list(range(1, 9)), seqs())
    w.send_signal(signal.SIGTERM)
    w.wait(timeout=30)

    # Refusals, before anything starts.
    major2 = build_plugin(os.path.join(EXAMPLES, "minimal-c"), "minimal-c-abi2", ["-DCMAKE_C_FLAGS=-DWEIR_ABI_MAJOR=2"])
    r = run([WEIR, "validate", "--plugin", os.path.join(major2, "stamp.so"), "-c", cfg], check_rc=False)
    src = os.path.join(EXAMPLES, "minimal-c")
    check("a plugin built for another ABI major is refused: file, both versions, the rebuild command",
          r.returncode != 0 and "plugin %s (minimal-c 1.0.0) was built for weir plugin ABI 2.%s, but this weir" %
          (os.path.realpath(os.path.join(major2, "stamp.so")), ABI_MINOR) in r.stderr and "has ABI 1.%s" % ABI_MINOR in r.stderr
          and "cmake -S %s -B %s/build -DCMAKE_PREFIX_PATH=%s" % (src, src, PREFIX) in r.stderr, r.stderr)
    copy = os.path.join(WORK, "stamp-copy.so")
    shutil.copy(STAMP, copy)
    r = run([WEIR, "list", "--plugin", STAMP, "--plugin", copy], check_rc=False)
    check("a second plugin with a type already taken is refused, naming both",
          r.returncode != 0 and "transform type 'stamp': already registered by plugin minimal-c 1.0.0 (%s)"
          % os.path.realpath(STAMP) in r.stderr and copy in r.stderr, r.stderr)
    notplugin = os.path.join(WORK, "libnot.so")
    shutil.copy(run(["bash", "-c", "ldconfig -p | awk '/libz.so.1 /{print $NF; exit}'"]).stdout.strip(), notplugin)
    with open(os.path.join(WORK, "np.yaml"), "w") as f:
        f.write(open(cfg).read().replace("plugins_dir: plugins", "plugins: [libnot.so]"))
    r = run([WEIR, "validate", "-c", os.path.join(WORK, "np.yaml")], check_rc=False)
    check("a library that is not a plugin is refused at its config line",
          r.returncode != 0 and "np.yaml:3:" in r.stderr and "exports no weir_plugin_entry symbol" in r.stderr, r.stderr)
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
    shutil.rmtree(WORK, ignore_errors=True)

finish("plugins")
