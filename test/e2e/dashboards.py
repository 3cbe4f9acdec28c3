"""The dashboards (/dashboards/*) in a real browser: headless Chromium (Debian's chromium,
driven through chromium-driver's WebDriver HTTP API with urllib), against the main job's
data: a private ClickHouse 18.16, pipelines/cvat-analytics.yaml fed the recorded 8-user
session, and the analytics API on the same weir's API server (and a second one on an address
of its own, for the pipeline page).
- a page needs a credential: 401 without; ?token= on the first load sets an HttpOnly,
  SameSite=Strict cookie for /dashboards and reloads the page without it; the cookie opens
  nothing outside /dashboards;
- each page loads with no console error and no script error;
- All events: the activity chart's events add up to ClickHouse's count for the range; the
  event table has rows;
- Management: the working-time table's hours per (user, project, task, job) equal
  ClickHouse's query for the same filters; choosing a user in the filter updates the chart
  and the table to that user alone;
- Monitoring: its panels load;
- Pipeline, served by the API on its own address: the graph has every component and the
  rates on the page move while events flow; its data (/dashboards/graph, /dashboards/metrics)
  needs the API's credential on either server;
- every query of examples/grafana's dashboards runs on 18.16, and their working-time table
  has the hours of the raw rows;
- with 100k more events the pages still load (their load times are printed);
- a screenshot of each page is saved (WEIR_SCREENSHOT_DIR, else the test's temp dir)."""
import base64, glob, json, os, shutil, subprocess, sys, tempfile, threading, time, urllib.error, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ROOT, check, finish, free_port, server, wait_for  # noqa: E402

weir = os.path.abspath(sys.argv[1])
tmp = tempfile.mkdtemp(prefix="weir-dashboards-")
shots = os.environ.get("WEIR_SCREENSHOT_DIR") or os.path.join(tmp, "screenshots")
os.makedirs(shots, exist_ok=True)
TOKEN = "dashboard-token-4d1f"
SESSION = os.path.join(ROOT, "examples", "cvat-multi-user.ndjson")


def ch(port, sql):
    req = urllib.request.Request("http://127.0.0.1:%d/" % port, data=sql.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read().decode()


def http_status(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    opener = urllib.request.build_opener(NoRedirect())
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Browser:
    """chromium-driver's WebDriver endpoints, enough for these checks."""

    def __init__(self):
        self.port = free_port()
        self.driver = subprocess.Popen(["chromedriver", "--port=%d" % self.port], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        wait_for(lambda: self.call("GET", "/status")["value"]["ready"], 30)
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": shutil.which("chromium") or "/usr/bin/chromium",
                                   "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1100",
                                            "--disable-dev-shm-usage", "--user-data-dir=" + os.path.join(tmp, "profile")]},
            "goog:loggingPrefs": {"browser": "ALL"}}}}
        self.session = self.call("POST", "/session", caps)["value"]["sessionId"]

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path), data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read())

    def go(self, url):
        self.call("POST", "/session/%s/url" % self.session, {"url": url})

    def js(self, script, *args):
        return self.call("POST", "/session/%s/execute/sync" % self.session, {"script": script, "args": list(args)})["value"]

    def console(self):
        """Console messages since the last call: [(level, message)]."""
        entries = self.call("POST", "/session/%s/se/log" % self.session, {"type": "browser"})["value"]
        return [(e["level"], e["message"]) for e in entries]

    def screenshot(self, path):
        png = self.call("GET", "/session/%s/screenshot" % self.session)["value"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(png))

    def close(self):
        try:
            self.call("DELETE", "/session/%s" % self.session)
        except Exception:
            pass
        self.driver.terminate()
        self.driver.wait(timeout=30)


def loads(browser):
    return browser.js("return window.weir ? window.weir.loads : 0")


def wait_loaded(browser, after=0, seconds=30):
    return wait_for(lambda: loads(browser) > after, seconds)


procs = []
browser = None
ch_dir = os.path.join(tmp, "clickhouse")
ch_port = int(server("clickhouse", "start", ch_dir))
try:
    subprocess.run(["bash", os.path.join(ROOT, "tools", "clickhouse", "apply-schema.sh"), "http://127.0.0.1:%d/" % ch_port,
                    os.path.join(ROOT, "tools", "schema", "cvat-events-18.16.sql")], check=True, capture_output=True)
    api, listen, own = free_port(), free_port(), free_port()
    with open(os.path.join(tmp, "apis.yaml"), "w") as f:
        f.write("""apis:
  analytics:
    type: analytics
    endpoint: http://127.0.0.1:%d
    access: { tokens: ["%s"] }
  analytics_own:
    type: analytics
    address: 127.0.0.1:%d
    endpoint: http://127.0.0.1:%d
    access: { tokens: ["%s"] }
""" % (ch_port, TOKEN, own, ch_port, TOKEN))
    env = dict(os.environ, CLICKHOUSE_HOST="127.0.0.1", CLICKHOUSE_PORT=str(ch_port), WEIR_DATA_DIR=os.path.join(tmp, "data"),
               WEIR_LISTEN="127.0.0.1:%d" % listen, WEIR_API_ADDRESS="127.0.0.1:%d" % api, WEIR_WORKING_TIME_IDLE_AFTER="1s")
    log = open(os.path.join(tmp, "weir.log"), "w")
    proc = subprocess.Popen([weir, "run", "-c", os.path.join(ROOT, "pipelines", "cvat-analytics.yaml"), "-c",
                             os.path.join(tmp, "apis.yaml")], env=env, stdout=log, stderr=subprocess.STDOUT)
    procs.append(proc)
    base = "http://127.0.0.1:%d" % api
    check("weir starts with the pipeline and the analytics API", wait_for(lambda: http_status(base + "/health")[0] == 200, 30))
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "post-events.py"), "http://127.0.0.1:%d/" % listen, SESSION],
                   check=True, capture_output=True)
    expected = sum(1 for line in open(SESSION) if line.strip())
    # Every event and the working-time rows weir made of them (the last after idle_after).
    settled = [0, -1]

    def all_in():
        n = int(ch(ch_port, "SELECT count() FROM cvat.events").strip())
        settled[0] = settled[0] + 1 if n == settled[1] and n > expected else 0
        settled[1] = n
        return settled[0] >= 20  # 4 s with nothing new: the last working-time rows (idle_after 1s) are in
    check("the session is in ClickHouse", wait_for(all_in, 90), settled)

    status, headers = http_status(base + "/dashboards/management")
    check("a page without a credential is 401", status == 401, status)
    status, headers = http_status(base + "/dashboards/management?token=wrong")
    check("a wrong ?token= is 401", status == 401, status)
    status, headers = http_status(base + "/dashboards/management?token=" + TOKEN)
    cookie = headers.get("set-cookie", "")
    landing = urllib.request.urlopen(urllib.request.Request(base + "/dashboards/management?token=" + TOKEN), timeout=30).read().decode()
    check("?token= sets an HttpOnly, SameSite=Strict cookie for /dashboards, named for this weir's port, and a page "
          "that reloads without the token",
          status == 200 and cookie.startswith("weir_analytics_%d=%s;" % (api, TOKEN)) and "HttpOnly" in cookie and
          "SameSite=Strict" in cookie and "Path=/dashboards" in cookie and
          'http-equiv="refresh" content="0;url=/dashboards/management"' in landing and TOKEN not in landing,
          (status, headers, landing))
    status, _ = http_status(base + "/dashboards/nowhere?token=" + TOKEN)
    check("a token landing on no page is 404", status == 404, status)
    status, _ = http_status(base + "/dashboards/management", {"Cookie": cookie.split(";")[0]})
    check("the cookie opens the page", status == 200, status)
    status, _ = http_status(base + "/dashboards/table?name=range", {"Cookie": "weir_analytics_%d=stale; " % api + cookie.split(";")[0]})
    check("and its tables, past a stale cookie of the same name", status == 200, status)
    status, _ = http_status(base + "/api/events?job_id=1", {"Cookie": cookie.split(";")[0]})
    check("but nothing outside /dashboards (an export started from another page of the host)", status == 401, status)
    status, _ = http_status(base + "/dashboards/management", {"Authorization": "Bearer " + TOKEN})
    check("the bearer token opens the page too", status == 200, status)

    browser = Browser()
    browser.go(base + "/dashboards/events?token=" + TOKEN)
    check("All events loads", wait_loaded(browser), loads(browser))
    browser.console()  # (the first load's messages are checked below with every page's)
    state = browser.js("return {status: document.getElementById('status').textContent, errors: window.weir.errors, charts: window.weir.charts, rows: "
                       "document.querySelectorAll('#events-table tbody tr').length, from: document.getElementById('filter-from').value, "
                       "to: document.getElementById('filter-to').value, url: location.href}")
    check("the token left the URL", "token" not in state["url"], state["url"])
    check("no script error on All events", state["errors"] == [], (state["errors"], state["status"]))
    total = int(ch(ch_port, "SELECT count() FROM cvat.events WHERE timestamp >= parseDateTimeBestEffort('%s') AND timestamp < "
                            "parseDateTimeBestEffort('%s')" % (state["from"], state["to"])).strip())
    print("page status: %s" % state["status"])
    shown = sum(state["charts"]["activity"]["datasets"][0]["data"]) if "activity" in state["charts"] else -1
    check("the activity chart adds up to ClickHouse's count for the range (%d)" % total, shown == total, (shown, total))
    check("the event table has rows", state["rows"] > 0, state["rows"])
    browser.screenshot(os.path.join(shots, "events.png"))

    browser.go(base + "/dashboards/management")
    check("Management loads (the cookie is kept)", wait_loaded(browser), loads(browser))
    rows = browser.js("return [...document.querySelectorAll('#working-time tbody tr')].map(tr => "
                      "[...tr.children].map(td => td.textContent).concat([tr.dataset.ms]))")
    reference = ch(ch_port, "SELECT user_id, project_id, task_id, job_id, sum(visitParamExtractUInt(payload, 'working_time')), "
                            "count() FROM cvat.events WHERE scope = 'send:working_time' GROUP BY user_id, project_id, task_id, "
                            "job_id ORDER BY user_id, project_id, task_id, job_id FORMAT TabSeparated")
    ref = [line.split("\t") for line in reference.strip().splitlines()]
    page = [[r[0], r[2], r[3], r[4], r[7], r[6]] for r in rows]
    expected_rows = [[u, p, t, j, ms, cnt] for u, p, t, j, ms, cnt in ref]
    diff = [(a, b) for a, b in zip(page, expected_rows) if a != b]
    print("working-time rows: page %d, ClickHouse %d; first differences: %s" % (len(page), len(expected_rows), diff[:3]))
    check("the working-time table is ClickHouse's, row for row (%d rows)" % len(ref),
          [r[:4] + [r[4]] for r in page] == [r[:5] for r in expected_rows] and [r[5] for r in page] == [r[5] for r in expected_rows],
          (page[:3], expected_rows[:3]))
    hours_ok = all(r[5] == "%.3f" % (int(r[7]) / 3600000) for r in rows)
    ref_hours = ch(ch_port, "SELECT round(sum(visitParamExtractUInt(payload, 'working_time')) / 1000 / 3600, 3) FROM cvat.events "
                            "WHERE scope = 'send:working_time' AND user_id = 1003").strip()
    page_hours = sum(int(r[7]) for r in rows if r[0] == "1003") / 3600000
    check("its hours are the ms shown to 3 decimals, and user 1003's total is ClickHouse's (%s h)" % ref_hours,
          hours_ok and "%.3f" % page_hours == "%.3f" % float(ref_hours), (page_hours, ref_hours))
    browser.screenshot(os.path.join(shots, "management.png"))
    before = loads(browser)
    browser.js("const s = document.getElementById('filter-user'); s.value = '1003'; s.dispatchEvent(new Event('change'))")
    check("choosing a user refreshes the page", wait_loaded(browser, before), loads(browser))
    after = browser.js("return {users: [...new Set([...document.querySelectorAll('#working-time tbody tr')].map(tr => "
                       "tr.children[0].textContent))], series: window.weir.charts['user-activity'].datasets.map(d => d.label)}")
    check("the table and the chart now show that user alone", after["users"] == ["1003"] and after["series"] == ["user 1003"], after)
    before = loads(browser)
    browser.js("const s = document.getElementById('filter-user'); for (const o of s.options) o.selected = ['1001', '1003'].includes(o.value); "
               "s.dispatchEvent(new Event('change'))")
    check("choosing two users refreshes the page", wait_loaded(browser, before), loads(browser))
    two = browser.js("return {users: [...new Set([...document.querySelectorAll('#working-time tbody tr')].map(tr => "
                     "tr.children[0].textContent))], series: window.weir.charts['user-activity'].datasets.map(d => d.label)}")
    check("then both, and only them", two["users"] == ["1001", "1003"] and two["series"] == ["user 1001", "user 1003"], two)
    browser.js("const s = document.getElementById('filter-user'); for (const o of s.options) o.selected = false; "
               "s.dispatchEvent(new Event('change'))")

    browser.go(base + "/dashboards/monitoring")
    check("Monitoring loads", wait_loaded(browser), loads(browser))
    mon = browser.js("return {errors: window.weir.errors, now: document.getElementById('active-now').textContent, "
                     "active: window.weir.charts['active-users'].datasets[0].data.reduce((a, b) => Math.max(a, b), 0), "
                     "browsers: window.weir.charts['browsers'].labels}")
    check("no script error on Monitoring", mon["errors"] == [], mon["errors"])
    check("active users now (the last 15 minutes of the pipeline's clock: none, the session is from 2024) reads 0",
          mon["now"] == "0", mon["now"])
    peak = int(ch(ch_port, "SELECT max(n) FROM (SELECT intDiv(toUInt32(timestamp), 900) AS b, uniqExact(user_id) AS n "
                           "FROM cvat.events WHERE isNotNull(user_id) GROUP BY b)").strip())
    check("active users per 15 minutes peak at ClickHouse's %d" % peak, mon["active"] == peak, mon)

    # The pipeline page while events flow.
    stop = threading.Event()

    def flow():
        body = json.dumps([{"scope": "click:element", "source": "client", "timestamp": "2024-03-05T10:00:00Z",
                            "user_id": 1, "job_id": 1}] * 20).encode()
        while not stop.is_set():
            try:
                urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:%d/" % listen, data=body,
                                                              headers={"Content-Type": "application/json"}), timeout=10)
            except Exception:
                pass
            time.sleep(0.02)
    flowing = threading.Thread(target=flow)
    flowing.start()
    own_base = "http://127.0.0.1:%d" % own
    for where in (base, own_base):
        for data in ("/dashboards/graph", "/dashboards/metrics"):
            status, _ = http_status(where + data)
            check("%s%s without a credential is 401" % (where, data), status == 401, status)
    bearer = {"Authorization": "Bearer " + TOKEN}
    graph_json = json.loads(urllib.request.urlopen(urllib.request.Request(own_base + "/dashboards/graph", headers=bearer),
                                                   timeout=30).read())
    metrics_text = urllib.request.urlopen(urllib.request.Request(own_base + "/dashboards/metrics", headers=bearer),
                                          timeout=30).read().decode()
    served = urllib.request.urlopen(base + "/graph", timeout=30).read()
    check("the API on its own address serves weir's /graph and /metrics",
          graph_json == json.loads(served) and 'weir_component_sent_events_total{component_id="cvat"' in metrics_text,
          (graph_json, metrics_text[:300]))
    browser.go(own_base + "/dashboards/pipeline?token=" + TOKEN)
    check("Pipeline loads from the API on its own address", wait_loaded(browser), loads(browser))
    first = browser.js("return [...document.querySelectorAll('#rates-table tbody tr')].map(tr => [tr.children[0].textContent, tr.dataset.in])")
    n = loads(browser)
    wait_loaded(browser, n + 1)
    second = browser.js("return [...document.querySelectorAll('#rates-table tbody tr')].map(tr => [tr.children[0].textContent, tr.dataset.in])")
    graph = browser.js("return document.querySelectorAll('#pipeline-graph rect').length")
    browser.screenshot(os.path.join(shots, "pipeline.png"))  # (while the rates are not 0)
    stop.set()
    flowing.join()
    settled = [0, -1]
    wait_for(all_in, 90)  # the flow's last working-time rows, before the Grafana queries read the table
    names = sorted(r[0] for r in second)
    check("the graph draws every component", graph == 5 and names == ["cvat", "events", "ids", "normalised", "working_time"],
          (graph, names))
    source_rates = [float(r[1]) for r in first + second if r[0] == "cvat"]
    check("the source's rate is above zero and moves", max(source_rates) > 0 and len(set(source_rates)) > 1,
          source_rates)
    errors = [m for level, m in browser.console() if level == "SEVERE"]
    check("no console errors on any page", errors == [], errors)

    # examples/grafana: every query of the three dashboards runs on this 18.16, with the
    # plugin's macros as it expands them and the filters at "All" (0) and at one value each.
    first, last = [int(x) for x in ch(ch_port, "SELECT toUInt32(min(timestamp)), toUInt32(max(timestamp)) + 1 FROM cvat.events").split()]
    ran, failed_queries, results = 0, [], {}
    for path in sorted(glob.glob(os.path.join(ROOT, "examples", "grafana", "dashboards", "*.json"))):
        board = json.load(open(path))
        for variable in board["templating"]["list"]:
            sql = variable["query"].replace("$__fromTime", "toDateTime(%d)" % first).replace("$__toTime", "toDateTime(%d)" % last)
            try:
                ch(ch_port, sql + " FORMAT TabSeparated")
                ran += 1
            except urllib.error.HTTPError as e:
                failed_queries.append((variable["name"], e.read().decode()[:300]))
        for panel in board["panels"]:
            for target in panel["targets"]:
                for values in ({"user_id": "0", "project_id": "0", "task_id": "0", "job_id": "0"},
                               {"user_id": "1003", "project_id": "4", "task_id": "0", "job_id": "0"}):
                    sql = (target["rawSql"].replace("$__fromTime", "toDateTime(%d)" % first)
                           .replace("$__toTime", "toDateTime(%d)" % last).replace("$__interval_s", "300"))
                    for name, value in values.items():
                        sql = sql.replace("$" + name, value)
                    try:
                        results[(board["uid"], panel["title"], values["user_id"])] = ch(ch_port, sql + " FORMAT TabSeparated")
                        ran += 1
                    except urllib.error.HTTPError as e:
                        failed_queries.append((board["uid"], panel["title"], e.read().decode()[:300]))
    check("every Grafana query runs on ClickHouse 18.16 (%d runs)" % ran, ran >= 30 and failed_queries == [], failed_queries)
    # Their working-time table against the raw rows, summed here.
    raw = ch(ch_port, "SELECT user_id, project_id, task_id, job_id, payload FROM cvat.events WHERE scope = 'send:working_time' "
                      "FORMAT JSONEachRow")
    sums = {}
    for line in raw.splitlines():
        row = json.loads(line)
        key = tuple(str(row[k]) for k in ("user_id", "project_id", "task_id", "job_id"))
        sums[key] = sums.get(key, 0) + json.loads(row["payload"])["working_time"]
    grafana = {tuple(r.split("\t")[i] for i in (0, 2, 3, 4)): r.split("\t")[5]
               for r in results[("cvat-management", "Working time", "0")].strip().splitlines()}
    expected_hours = {k: "%g" % round(v / 3600000, 3) for k, v in sums.items()}
    check("Grafana's working-time table has the hours of the raw rows (%d rows)" % len(sums),
          {k: "%g" % float(v) for k, v in grafana.items()} == expected_hours,
          sorted(set(grafana.items()) ^ set(expected_hours.items()))[:4])
    one_user = results[("cvat-management", "Working time", "1003")].strip().splitlines()
    check("with the filters set, it holds that user and project alone",
          one_user and all(r.split("\t")[0] == "1003" and r.split("\t")[2] == "4" for r in one_user), one_user[:3])

    # 100k more events (a second day): the pages still load, aggregated in ClickHouse.
    ch(ch_port, "INSERT INTO cvat.events (scope, source, timestamp, user_id, job_id, project_id, task_id, payload) "
                "SELECT ['draw:object', 'change:frame', 'send:working_time'][number % 3 + 1], 'client', "
                "toDateTime(1709596800 + intDiv(number, 2)), 2000 + number % 50, 5000 + number % 400, number % 9, number % 90, "
                "concat('{\"working_time\":', toString(number % 5000), '}') FROM numbers(100000)")
    # Exceptions from a browser: Monitoring lists them with their error, and counts the
    # browser and system of the user agent.
    ch(ch_port, "INSERT INTO cvat.events (scope, source, timestamp, user_id, job_id, payload) FORMAT JSONEachRow " + " ".join(
        json.dumps({"scope": "send:exception", "source": "client", "timestamp": "2024-03-05 12:00:%02d" % i, "user_id": 7,
                    "job_id": 9, "payload": json.dumps({"message": "TypeError: x is undefined <b>%d</b>" % i,
                                                        "stack": "at draw (canvas.js:10)",
                                                        "user_agent": agent}, separators=(",", ":"))})
        for i, agent in enumerate(["Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"] * 3 +
                                  ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"] * 2)))
    timings = {}
    for name in ("events", "management", "monitoring"):
        browser.go(base + "/dashboards/" + name)
        ok = wait_loaded(browser, 0, 60)
        timings[name] = browser.js("return [document.getElementById('status').textContent, window.weir.errors]")
        check("%s loads over 106k events with no error" % name, ok and timings[name][1] == [], timings[name])
    print("load times over 106k events: %s" % {k: v[0].split(": ")[-1] for k, v in timings.items()})
    seen = browser.js("return {browsers: window.weir.charts['browsers'], systems: window.weir.charts['systems'], "
                      "errors: [...document.querySelectorAll('#exceptions-table tbody tr')].map(tr => tr.children[3].textContent), "
                      "markup: document.querySelectorAll('#exceptions-table b').length}")
    counts = dict(zip(seen["browsers"]["labels"], seen["browsers"]["datasets"][0]["data"]))
    systems = dict(zip(seen["systems"]["labels"], seen["systems"]["datasets"][0]["data"]))
    check("Monitoring counts the exceptions' browsers and systems",
          counts == {"Firefox": 3, "Chrome": 2} and systems == {"Linux": 3, "Windows": 2}, (counts, systems))
    check("and lists their errors, as text (no markup from a payload reaches the page)",
          len(seen["errors"]) == 5 and seen["errors"][0] == "TypeError: x is undefined <b>4</b>" and seen["markup"] == 0,
          seen["errors"][:2])
    browser.screenshot(os.path.join(shots, "monitoring.png"))
    print("screenshots in %s" % shots)
    proc.terminate()
    check("weir exits cleanly", proc.wait(timeout=60) == 0)
finally:
    if browser:
        browser.close()
    for p in procs:
        if p.poll() is None:
            p.kill()
    server("clickhouse", "stop", ch_dir)
finish("dashboards")
