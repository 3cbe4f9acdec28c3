#!/usr/bin/env python3
"""The `analytics` API (docs/analytics.md) against a real ClickHouse 18.16 holding a
deterministic fixture of CVAT events (several orgs, projects, tasks, jobs and users over
3.5 days, sources other than server/client, exceptions, working time, strings that need
CSV quoting, NULLs), inserted directly:
- access: no credential or a wrong one is 401 with WWW-Authenticate; a bearer token and a
  basic-auth user are let in; no credential ever reaches weir's log;
- CVAT's events export, both flows (GET /api/events with query_id, POST /api/events/export
  with rq_id), for filter sets of every kind: the CSV equals, byte for byte, ClickHouse's
  rows for the spec's query written by Python's csv.writer; bad filters are 400s;
- max_concurrent_exports: with ClickHouse stopped (SIGSTOP) two exports hang, a third is
  429 in either flow, and all complete once it goes on;
- the measures query (POST /api/v1/analytics/query): every measure at every granularity,
  with and without context, paged and sorted, equal to what the spec's definitions give
  when computed here from the fixture itself; bad payloads are 400s that say why;
- a restart serves no export of the run before, and SIGTERM exits 0."""
import base64, calendar, collections, csv, io, json, os, random, signal, subprocess, sys, tempfile, time
import urllib.error, urllib.parse, urllib.request, uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ROOT, check, finish, free_port, wait_for  # noqa: E402

WEIR = os.path.abspath(sys.argv[1])
WORK = tempfile.mkdtemp(prefix="weir-analytics-")
CH_DIR = os.path.join(WORK, "clickhouse")
DATA_DIR = os.path.join(WORK, "data")
EXPORTS_DIR = os.path.join(DATA_DIR, "apis", "analytics", "exports")
LOG = os.path.join(WORK, "weir.log")
TOKEN, USER, PASSWORD = "secret-token-1", "alice", "pw-alice"
BEARER = "Bearer " + TOKEN
BASIC = "Basic " + base64.b64encode((USER + ":" + PASSWORD).encode()).decode()
WRONG_TOKEN = "Bearer wrong-token-7f3a"
WRONG_BASIC = "Basic " + base64.b64encode(b"alice:pw-wrong-9c2e").decode()

# docs/analytics.md: "All count only the events in the range and the context": every row of
# the table, whatever its source or scope (the export's `source IN ('server', 'client') AND
# scope != 'send:exception'` is the export's). Flip this if the spec comes to say otherwise.
MEASURES_COUNT_EVERY_EVENT = True

COLUMNS = ["scope", "obj_name", "obj_id", "obj_val", "source", "timestamp", "count", "duration", "project_id",
           "task_id", "job_id", "user_id", "user_name", "user_email", "org_id", "org_slug", "payload",
           "access_token_id"]


def epoch(iso):
    """'2024-03-01T00:00:00Z' -> epoch seconds."""
    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))


def ch_time(ts):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def iso_time(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


# ---- the fixture ----------------------------------------------------------------------------
rng = random.Random(20240229)
T0 = epoch("2024-02-29T18:00:00Z")  # Thursday of a leap February; the events cross March 1st and Monday March 4th
ORG_SLUGS = {1: "acme", 2: 'beta, "the second"'}
PROJECT_ORG = {11: 1, 12: 1, 21: 2, 31: None}
TASK_PROJECT = {111: 11, 112: 11, 121: 12, 211: 21, 212: 21, 311: 31, 401: None}
TASK_ORG = {t: (PROJECT_ORG[p] if p is not None else 1) for t, p in TASK_PROJECT.items()}
JOB_COUNTS = {111: 3, 112: 2, 121: 2, 211: 2, 212: 3, 311: 2, 401: 2}
JOB_TASK = {t * 10 + k: t for t, n in JOB_COUNTS.items() for k in range(1, n + 1)}  # 4-digit ids: string order = numeric
JOBS = sorted(JOB_TASK)
USERS = {1: ("ann", "ann@example.org"), 2: ('O"Neil, Pat', "pat@example.org"), 3: ("bo\nline two", None),
         4: ("Zoë", "zoe@example.org"), 5: ("eve", "eve,admin@example.org"), 6: ("dan", "dan@example.org")}
USER_JOBS = {u: sorted(rng.sample(JOBS, rng.randint(3, 6))) for u in USERS}
OBJECT_SCOPES = ("draw:object", "paste:object", "propagate:object")
TRICKY = ['a,b', 'say "hi"', 'line1\nline2', 'cr\r\nlf', 'tab\there', 'back\\slash', 'ünï ✓ 🎉', '', ' padded ',
          '"', ',', 'plain']


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def make_timestamps():
    stamps, ts = set(), T0
    while ts < T0 + 302400:  # 3.5 days
        stamps.add(ts)
        ts += rng.randint(1, 200)
    # rows exactly on bucket, month and week boundaries, and at the ranges' ends below
    for iso in ("2024-03-01T00:00:00Z", "2024-03-01T12:00:00Z", "2024-03-02T00:00:00Z", "2024-03-03T00:00:00Z",
                "2024-03-04T00:00:00Z", "2024-03-01T13:00:00Z"):
        stamps.add(epoch(iso))
    return sorted(stamps)


def make_event(ts):
    """One row of cvat.events as a dict (ts in epoch seconds, wt the working time or None)."""
    r = rng.random()
    user = rng.choice(list(USERS))
    job = rng.choice(USER_JOBS[user])
    source, wt, count, duration = "client", None, rng.choice([None, 1, rng.randint(1, 60)]), rng.choice(
        [0, 0, rng.randint(1, 10000)])
    payload = rng.choice([None, compact({"request": {"id": str(uuid.UUID(int=rng.getrandbits(128)))}}),
                          compact({"note": rng.choice(TRICKY)}), rng.choice(TRICKY)])
    obj_name, obj_id, obj_val = None, None, None
    level = "job"  # which of job/task/project the row names
    if r < 0.03:
        source = rng.choice(["ui", "ui", "bot"])
        scope = rng.choice(["click:button", "load:job", "change:frame"])
    elif r < 0.05:
        scope = "send:exception"
        payload = compact({"message": "TypeError: x is undefined, \"y\"", "stack": "at f (a.js:1)\nat g (b.js:2)"})
    elif r < 0.15:
        scope, source = "send:working_time", "server"
        wt = rng.choice([rng.randint(1, 5000), rng.randint(5000, 120000), rng.randint(120000, 1800000)])
        count, duration = 1, wt
        payload = compact({"working_time": wt, "request": {"id": str(uuid.UUID(int=rng.getrandbits(128)))}})
    elif r < 0.35:
        scope = "draw:object"
    elif r < 0.43:
        scope = "paste:object"
    elif r < 0.48:
        scope = "propagate:object"
    elif r < 0.52:
        scope, source, obj_name = "create:issue", "server", "issue"
        obj_id = rng.randint(1, 500)
        obj_val = rng.choice(TRICKY + [None])
    elif r < 0.57:
        scope, source, obj_name = "create:comment", "server", "comment"
        obj_id = rng.randint(1, 500)
        obj_val = rng.choice(TRICKY + [None])
    elif r < 0.72:
        scope = rng.choice(["change:frame", "zoom:image", "fit:image", "load:job"])
    elif r < 0.85:
        scope, source, obj_name = rng.choice(["update:job", "create:job"]), "server", rng.choice(["state", "stage", None])
        obj_val = rng.choice(TRICKY + [None, "completed", "annotation"])
    elif r < 0.95:
        scope, source, level = rng.choice(["update:task", "create:task"]), "server", "task"
        obj_name, obj_val = "name", rng.choice(TRICKY + [None])
    else:
        scope, source, level = "update:project", "server", "project"
        obj_name, obj_val = "labels", rng.choice(TRICKY + [None])
    task = JOB_TASK[job]
    project = TASK_PROJECT[task]
    if level == "project" and project is None:
        level = "task"
    row = {"scope": scope, "obj_name": obj_name, "obj_id": obj_id, "obj_val": obj_val, "source": source, "ts": ts,
           "count": count, "duration": duration, "project_id": project, "task_id": task,
           "job_id": job if level == "job" else None, "user_id": user, "org_id": TASK_ORG[task],
           "payload": payload, "access_token_id": rng.choice([None] * 8 + [7, 12345678901]), "wt": wt}
    if level == "project":
        row["task_id"] = None
    if source == "server" and scope != "send:working_time" and rng.random() < 0.15:
        row["user_id"] = None  # a system action
    u = row["user_id"]
    row["user_name"], row["user_email"] = USERS[u] if u is not None else (None, None)
    row["org_slug"] = ORG_SLUGS.get(row["org_id"])
    return row


EVENTS = [make_event(ts) for ts in make_timestamps()]
BUSY_JOBS = [j for j, _ in collections.Counter(e["job_id"] for e in EVENTS if e["job_id"] is not None).most_common()]


def insert_fixture():
    lines = []
    for e in EVENTS:
        row = {c: e[c] for c in COLUMNS if c != "timestamp"}
        row["timestamp"] = ch_time(e["ts"])
        lines.append(json.dumps(row, ensure_ascii=False))
    ch_post("INSERT INTO cvat.events FORMAT JSONEachRow", ("\n".join(lines) + "\n").encode())


# ---- ClickHouse and weir over HTTP ----------------------------------------------------------
def ch_post(sql, body=None):
    url = "http://127.0.0.1:%s/?%s" % (CH_PORT, urllib.parse.urlencode({"query": sql}))
    with urllib.request.urlopen(urllib.request.Request(url, data=body if body is not None else b""), timeout=60) as r:
        return r.read()


def http(method, path, body=None, auth=BEARER, headers=None, timeout=30):
    """(status, headers, body bytes); status None when there was no answer."""
    h = dict(headers or {})
    if auth:
        h["Authorization"] = auth
    url = path if path.startswith("http") else "http://127.0.0.1:%d%s" % (API, path)
    if method == "POST" and body is None:
        body = b""
    req = urllib.request.Request(url, data=body, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()
    except OSError as e:
        return None, {}, str(e).encode()


def as_json(body):
    try:
        return json.loads(body)
    except ValueError:
        return None


# ---- the export's reference -----------------------------------------------------------------
def export_where(params, lo, hi):
    where = ["source IN ('server', 'client')", "scope != 'send:exception'"]
    if lo is not None:
        where.append("timestamp >= toDateTime(%d)" % lo)
    if hi is not None:
        where.append("timestamp <= toDateTime(%d)" % hi)
    for key in ("org_id", "project_id", "task_id", "job_id", "user_id"):
        if key in params:
            where.append("%s = %d" % (key, int(params[key])))
    return " AND ".join(where)


def write_csv(rows):
    out = io.StringIO()
    writer = csv.writer(out)  # the default dialect: QUOTE_MINIMAL, "\r\n", None -> ""
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(row)
    return out.getvalue().encode()


def reference_csv(params, lo, hi):
    """The spec's query run on ClickHouse here, written as csv.writer writes it."""
    sql = "SELECT %s FROM cvat.events WHERE %s ORDER BY timestamp ASC FORMAT JSONCompact" % (
        ", ".join(COLUMNS), export_where(params, lo, hi))
    data = json.loads(ch_post(sql))["data"]
    return write_csv([[None if v is None else str(v) for v in row] for row in data]), len(data)


def fixture_csv(params, lo, hi):
    """The same from the fixture itself: a check of the reference (and of the insert)."""
    rows = []
    for e in EVENTS:
        if e["source"] not in ("server", "client") or e["scope"] == "send:exception":
            continue
        if (lo is not None and e["ts"] < lo) or (hi is not None and e["ts"] > hi):
            continue
        if any(e[k] is None or e[k] != int(v) for k, v in params.items() if k in (
                "org_id", "project_id", "task_id", "job_id", "user_id")):
            continue
        rows.append([ch_time(e["ts"]) if c == "timestamp" else e[c] for c in COLUMNS])
    return write_csv(rows)


def first_difference(got, expected):
    if got == expected:
        return ""
    g, e = got.split(b"\r\n"), expected.split(b"\r\n")
    for i, (a, b) in enumerate(zip(g, e)):
        if a != b:
            return "line %d: got %r, expected %r (%d vs %d bytes in all)" % (i, a[:300], b[:300], len(got), len(expected))
    return "got %d lines, expected %d (%d vs %d bytes)" % (len(g), len(e), len(got), len(expected))


# ---- the export flows -------------------------------------------------------------------------
protocol = collections.defaultdict(list)  # what the flows did that the spec does not say, by kind


def with_query(path, params):
    qs = urllib.parse.urlencode(params)
    return path + ("?" + qs if qs else "")


def poll(fn, seconds=30):
    deadline = time.time() + seconds
    while True:
        done, value = fn()
        if done or time.time() > deadline:
            return done, value
        time.sleep(0.05)


def old_wait(params, query_id):
    """Polls the older flow until 201: (True, None) or (False, why)."""
    url = with_query("/api/events", list(params.items()) + [("query_id", query_id)])

    def step():
        status, _, body = http("GET", url)
        if status == 201:
            return True, None
        if status != 202:
            return True, "poll answered %s %r" % (status, body[:300])
        return False, "still 202 after 30 s"
    done, why = poll(step)
    return why is None, why


def old_download(params, query_id):
    url = with_query("/api/events", list(params.items()) + [("query_id", query_id), ("action", "download")])
    status, headers, body = http("GET", url)
    if status != 200:
        return None, "download answered %s %r" % (status, body[:300])
    if "attachment" not in (headers.get("Content-Disposition") or ""):
        protocol["no Content-Disposition: attachment"].append(headers.get("Content-Disposition"))
    return body, None


def export_old(params):
    """The older flow: (csv bytes, None, query_id) or (None, why, query_id)."""
    status, _, body = http("GET", with_query("/api/events", params))
    answer = as_json(body)
    if status != 202 or not isinstance(answer, dict) or not answer.get("query_id"):
        return None, "start answered %s %r" % (status, body[:300]), None
    query_id = answer["query_id"]
    ok, why = old_wait(params, query_id)
    if not ok:
        return None, why, query_id
    csv_bytes, why = old_download(params, query_id)
    return csv_bytes, why, query_id


def new_status(rq_id):
    status, _, body = http("GET", "/api/requests/" + urllib.parse.quote(rq_id, safe=""))
    answer = as_json(body)
    if status != 200 or not isinstance(answer, dict):
        return None, "status answered %s %r" % (status, body[:300])
    if answer.get("id") != rq_id or answer.get("status") not in ("queued", "started", "finished", "failed"):
        protocol["a request's status is not {id, status: queued|started|finished|failed}"].append(answer)
    return answer, None


def new_wait(rq_id):
    """Polls the newer flow until finished: (answer, None) or (None, why)."""
    def step():
        answer, why = new_status(rq_id)
        if answer is None:
            return True, (None, why)
        if answer.get("status") == "finished":
            return True, (answer, None)
        if answer.get("status") == "failed":
            return True, (None, "failed: %r" % answer)
        return False, (None, "still %r" % answer.get("status"))
    done, (answer, why) = poll(step)
    return (answer, None) if answer is not None else (None, why if done else "not finished after 30 s: " + why)


def new_download(answer):
    url = answer.get("result_url") or ""
    if not url.startswith("http://127.0.0.1:%d/" % API) or "rq_id=" + answer.get("id", "?") not in url:
        protocol["result_url not absolute with the rq_id"].append(url)
    status, _, body = http("GET", url if url.startswith("http") else ("/" + url.lstrip("/")))
    if status != 200:
        return None, "result_url %r answered %s %r" % (url, status, body[:300])
    return body, None


def export_new(params):
    """The newer flow: (csv bytes, None, rq_id) or (None, why, rq_id)."""
    status, _, body = http("POST", with_query("/api/events/export", params))
    answer = as_json(body)
    if status != 202 or not isinstance(answer, dict) or not answer.get("rq_id"):
        return None, "start answered %s %r" % (status, body[:300]), None
    rq_id = answer["rq_id"]
    answer, why = new_wait(rq_id)
    if answer is None:
        return None, why, rq_id
    csv_bytes, why = new_download(answer)
    return csv_bytes, why, rq_id


# ---- the measures, computed from the fixture ----------------------------------------------------
CONTEXT_COLUMNS = {"orgId": "org_id", "projectId": "project_id", "taskId": "task_id", "userId": "user_id",
                   "assignmentId": "job_id"}
UNIT_MS = {"second": 1000, "minute": 60000, "hour": 3600000, "day": 86400000, "week": 7 * 86400000,
           "month": 30 * 86400000}
TIME_KEYED = ("activeUsers", "annotationTimeline", "issueCounters")  # one row per bucket: every order reading agrees


def bucket_start(ts, g):
    if g == "second":
        return ts
    if g in ("minute", "hour", "day"):
        step = {"minute": 60, "hour": 3600, "day": 86400}[g]
        return ts - ts % step
    day = ts - ts % 86400
    if g == "week":
        return day - ((day // 86400 + 3) % 7) * 86400  # 1970-01-01 was a Thursday; weeks start on Monday
    t = time.gmtime(ts)
    return calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0))


def next_bucket(b, g):
    if g == "month":
        t = time.gmtime(b)
        y, m = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
        return calendar.timegm((y, m, 1, 0, 0, 0))
    return b + {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}[g]


def all_buckets(start_ms, end_ms, g):
    out, b = [], bucket_start(start_ms // 1000, g)
    while b * 1000 < end_ms:
        out.append(b)
        b = next_bucket(b, g)
    return out


def selected_events(start_ms, end_ms, context):
    rows = []
    for e in EVENTS:
        if not start_ms <= e["ts"] * 1000 < end_ms:
            continue
        if not MEASURES_COUNT_EVERY_EVENT and (e["source"] not in ("server", "client") or e["scope"] == "send:exception"):
            continue
        if any(values and (e[CONTEXT_COLUMNS[k]] is None or str(e[CONTEXT_COLUMNS[k]]) not in values)
               for k, values in context.items() if k in CONTEXT_COLUMNS):
            continue
        rows.append(e)
    return rows


def measure_rows(measure, g, events, start_ms, end_ms):
    """The rows of one measure at one granularity, sorted ascending, before paging."""
    working = [e for e in events if e["scope"] == "send:working_time"]
    if measure in TIME_KEYED:
        per = collections.defaultdict(list)
        for e in events:
            per[bucket_start(e["ts"], g)].append(e)
        rows = []
        for b in all_buckets(start_ms, end_ms, g):
            es = per.get(b, [])
            if measure == "activeUsers":
                rows.append({"time": iso_time(b), "activeUsers": len({e["user_id"] for e in es if e["user_id"] is not None})})
            elif measure == "annotationTimeline":
                rows.append({"time": iso_time(b), "annotations": sum(e["scope"] in OBJECT_SCOPES for e in es)})
            else:
                rows.append({"time": iso_time(b), "issues": sum(e["scope"] == "create:issue" for e in es),
                             "comments": sum(e["scope"] == "create:comment" for e in es)})
        return rows
    if measure == "labelingCounters":
        counts = collections.Counter((bucket_start(e["ts"], g), e["scope"]) for e in events)
        return [{"time": iso_time(b), "scope": s, "count": n} for (b, s), n in sorted(counts.items())]
    if measure == "userStatsActivityTime":
        sums = collections.Counter()
        for e in working:
            sums[(bucket_start(e["ts"], g), e["user_id"])] += e["wt"]
        return [{"time": iso_time(b), "userId": str(u), "activityDuration": ms} for (b, u), ms in sorted(sums.items())]
    if measure == "userStatsTotalActivityTime":
        sums = collections.Counter()
        for e in working:
            sums[e["user_id"]] += e["wt"]
        return [{"userId": str(u), "activityDuration": ms} for u, ms in sorted(sums.items())]
    per_job = collections.Counter()
    for e in working:
        per_job[e["job_id"]] += e["wt"]
    if measure == "itemAnnotationDuration":
        return [{"itemId": str(j), "duration": ms} for j, ms in sorted(per_job.items())]
    assert measure == "countItemInAnnotationTimeBucket", measure
    histogram = collections.Counter(ms // UNIT_MS[g] for ms in per_job.values())
    return [{"bucket": b, "items": n} for b, n in sorted(histogram.items())]


MEASURES = ["activeUsers", "annotationTimeline", "labelingCounters", "issueCounters", "userStatsActivityTime",
            "userStatsTotalActivityTime", "itemAnnotationDuration", "countItemInAnnotationTimeBucket"]


def expected_answer(start_ms, end_ms, context, measures):
    events = selected_events(start_ms, end_ms, context)
    out = []
    for m in measures:
        page, size = m.get("page", 0), m.get("pageSize", 1000)
        for g in m.get("timeGranularity", ["hour"]):
            rows = measure_rows(m["measureType"], g, events, start_ms, end_ms)
            total = len(rows)
            if m.get("sortDirection") == "descending":
                rows = rows[::-1]
            if size:
                rows = rows[page * size:(page + 1) * size]
            out.append({"measureType": m["measureType"], "timeGranularity": g, "page": page, "pageSize": size,
                        "totalRows": total, "response": rows})
    return out


def normalized(row):
    """userId as a string: the spec shows no userId's JSON type (itemId is said to be a string)."""
    if isinstance(row, dict) and "userId" in row and isinstance(row["userId"], int):
        return dict(row, userId=str(row["userId"]))
    return row


def answer_difference(got, expected, rows_in_any_order=()):
    """'' when the answer is the expected one, else its first difference. Elements of the measures
    in `rows_in_any_order` are compared as multisets, their times non-increasing."""
    if not isinstance(got, list):
        return "not a JSON array: %r" % (got if not isinstance(got, (bytes, str)) else got[:300])
    if len(got) != len(expected):
        return "%d elements, expected %d: %r" % (len(got), len(expected), [
            (g.get("measureType"), g.get("timeGranularity")) for g in got if isinstance(g, dict)][:50])
    for i, (g, e) in enumerate(zip(got, expected)):
        where = "element %d (%s, %s)" % (i, e["measureType"], e["timeGranularity"])
        if not isinstance(g, dict):
            return where + ": not an object"
        for key in ("measureType", "timeGranularity", "page", "pageSize", "totalRows"):
            if g.get(key) != e[key]:
                return "%s: %s is %r, expected %r" % (where, key, g.get(key), e[key])
        rows = g.get("response")
        if not isinstance(rows, list):
            return where + ": no response list"
        rows = [normalized(r) for r in rows]
        if e["measureType"] in rows_in_any_order:
            key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
            if sorted(rows, key=key) != sorted(e["response"], key=key):
                return where + ": not the expected rows (in any order)"
            times = [r.get("time") for r in rows if "time" in r]
            if times != sorted(times, reverse=True):
                return where + ": times not descending"
            continue
        if rows != e["response"]:
            for j, (a, b) in enumerate(zip(rows, e["response"])):
                if a != b:
                    return "%s: row %d is %r, expected %r" % (where, j, a, b)
            return "%s: %d rows, expected %d (last got %r)" % (where, len(rows), len(e["response"]), rows[-1:])
    return ""


def analytics_query(payload, auth=BEARER):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    status, _, answer = http("POST", "/api/v1/analytics/query", body, auth=auth, headers={"Content-Type": "application/json"})
    return status, answer


def measures_case(name, start_ms, end_ms, context, measures, start=None, end=None, any_order=()):
    """POSTs the query (startTime/endTime as `start`/`end` when given, else ISO) and checks the answer
    against the spec's definitions computed from the fixture."""
    payload = {"startTime": start if start is not None else iso_ms(start_ms),
               "endTime": end if end is not None else iso_ms(end_ms), "measures": measures}
    if context is not None:
        payload["context"] = context
    status, body = analytics_query(payload)
    expected = expected_answer(start_ms, end_ms, context or {}, measures)
    if status != 200:
        check(name, False, "answered %s %r" % (status, body[:500]))
        return
    diff = answer_difference(as_json(body), expected, any_order)
    rows = sum(len(e["response"]) for e in expected)
    check("%s (%d elements, %d rows)" % (name, len(expected), rows), not diff, diff)


def iso_ms(ms):
    s = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000))
    return s + (".%03dZ" % (ms % 1000) if ms % 1000 else "Z")


def every_measure(grans, **extra):
    return [dict({"measureType": m, "timeGranularity": grans}, **extra) for m in MEASURES]


def bad_query(name, payload, status=400, says=()):
    code, body = analytics_query(payload)
    text = body.decode(errors="replace")
    check(name, code == status and text.strip() != "" and all(s in text for s in says), "%s %r" % (code, text[:500]))


# ---- weir ---------------------------------------------------------------------------------------
def write_config():
    path = os.path.join(WORK, "weir.yaml")
    with open(path, "w") as f:
        f.write("""data_dir: %s
api: { address: "127.0.0.1:%d" }
apis:
  analytics:
    type: analytics
    endpoint: http://127.0.0.1:%s
    database: cvat
    table: events
    access: { tokens: ["%s"], users: { %s: "%s" } }
    export_ttl: 1h
    max_concurrent_exports: 2
""" % (DATA_DIR, API, CH_PORT, TOKEN, USER, PASSWORD))
    return path


def start_weir(config):
    log = open(LOG, "a")
    process = subprocess.Popen([WEIR, "run", "-c", config], stdout=log, stderr=subprocess.STDOUT)
    up = wait_for(lambda: process.poll() is not None or http("GET", "/health", auth=None)[0] is not None, 30)
    return process, up and process.poll() is None


def log_tail():
    try:
        return open(LOG, errors="replace").read()[-3000:]
    except OSError:
        return ""


class Abort(Exception):
    pass


# ---- the test -------------------------------------------------------------------------------------
weir = None
ch_pid = None
try:
    CH_PORT = harness.server("clickhouse", "start", CH_DIR)
    subprocess.run(["bash", os.path.join(ROOT, "tools", "clickhouse", "apply-schema.sh"), "http://127.0.0.1:%s/" % CH_PORT,
                    os.path.join(ROOT, "tools", "schema", "cvat-events-18.16.sql")], check=True,
                   stderr=subprocess.DEVNULL)
    insert_fixture()
    stored = json.loads(ch_post("SELECT %s FROM cvat.events ORDER BY timestamp FORMAT JSONCompact" % ", ".join(COLUMNS)))["data"]
    as_generated = [[None if v is None else str(v) for v in row] for row in stored] == [
        [ch_time(e["ts"]) if c == "timestamp" else (None if e[c] is None else str(e[c])) for c in COLUMNS] for e in EVENTS]
    working_rows = sum(e["scope"] == "send:working_time" for e in EVENTS)
    print("fixture: %d events from %s to %s, %d of working time, %d outside the export" % (
        len(EVENTS), ch_time(EVENTS[0]["ts"]), ch_time(EVENTS[-1]["ts"]), working_rows,
        sum(e["source"] not in ("server", "client") or e["scope"] == "send:exception" for e in EVENTS)))
    check("(the test itself) the fixture is in ClickHouse as generated", as_generated, "%d rows stored" % len(stored))
    ch_pid = int(open(os.path.join(CH_DIR, "pid")).read())

    API = free_port()
    config = write_config()
    weir, up = start_weir(config)
    check("weir starts with the analytics API and answers /health", up, log_tail())
    if not up:
        raise Abort()

    # ---- access
    status, headers, body = http("GET", "/api/events", auth=None)
    check("no credential: 401 with WWW-Authenticate", status == 401 and headers.get("WWW-Authenticate"), (status, body[:200]))
    anonymous_body = body
    status, headers, body = http("POST", "/api/v1/analytics/query", b'{"startTime": 0}', auth=None)
    check("no credential on the measures query: 401", status == 401 and headers.get("WWW-Authenticate"), status)
    status, headers, body = http("POST", "/api/events/export", auth=WRONG_TOKEN)
    check("a wrong bearer token: 401 with WWW-Authenticate", status == 401 and headers.get("WWW-Authenticate"), status)
    check("a wrong token is told no more than a missing one", body == anonymous_body, (body[:200], anonymous_body[:200]))
    status, _, _ = http("GET", "/api/events", auth="Bearer " + TOKEN + "x")
    check("a token with one more character: 401", status == 401, status)
    status, _, _ = http("GET", "/api/events", auth=WRONG_BASIC)
    check("basic auth with a wrong password: 401", status == 401, status)
    status, _, _ = http("GET", "/api/events", auth="Basic " + base64.b64encode(b"mallory:pw-alice").decode())
    check("basic auth of an unknown user with alice's password: 401", status == 401, status)
    day_ms = epoch("2024-03-01T00:00:00Z") * 1000
    probe = {"startTime": day_ms, "endTime": day_ms + 86400000, "measures": [{"measureType": "activeUsers",
                                                                               "timeGranularity": ["day"]}]}
    # the first query may wait for the API to learn ClickHouse's version: it has 15 s to be answered 200
    ready = wait_for(lambda: analytics_query(probe, auth=BEARER)[0] == 200, 15)
    status, body = analytics_query(probe, auth=BEARER)
    check("the bearer token is let in", ready and status == 200, (status, body[:300]))
    status, body = analytics_query(probe, auth=BASIC)
    check("the basic-auth user is let in", status == 200, (status, body[:300]))

    # ---- the export, both flows
    E = epoch
    cases = [  # (name, filters, from as epoch seconds after rounding up, to after rounding down)
        ("no filters", {}, None, None),
        ("org_id", {"org_id": "1"}, None, None),
        ("org_id and project_id", {"org_id": "2", "project_id": "21"}, None, None),
        ("project_id", {"project_id": "11"}, None, None),
        ("task_id of a task without project", {"task_id": "401"}, None, None),
        ("job_id", {"job_id": str(BUSY_JOBS[0])}, None, None),
        ("user_id", {"user_id": "2"}, None, None),
        ("from, a date", {"from": "2024-03-01"}, E("2024-03-01T00:00:00Z"), None),
        ("to, a date (its midnight included)", {"to": "2024-03-02"}, None, E("2024-03-02T00:00:00Z")),
        ("from and to with Z", {"from": "2024-03-01T12:00:00Z", "to": "2024-03-02T00:00:00Z"},
         E("2024-03-01T12:00:00Z"), E("2024-03-02T00:00:00Z")),
        ("from and to with offsets", {"from": "2024-03-01T14:00:00+02:00", "to": "2024-03-02T01:30:00+01:00"},
         E("2024-03-01T12:00:00Z"), E("2024-03-02T00:30:00Z")),
        ("from and to in epoch seconds, both rows included", {"from": str(EVENTS[100]["ts"]), "to": str(EVENTS[900]["ts"])},
         EVENTS[100]["ts"], EVENTS[900]["ts"]),
        ("fractions: from rounded up, to down", {"from": "2024-03-01T00:00:00.5Z", "to": "2024-03-01T12:00:00.999Z"},
         E("2024-03-01T00:00:01Z"), E("2024-03-01T12:00:00Z")),
        ("from without a zone (UTC)", {"from": "2024-03-01T12:00:00"}, E("2024-03-01T12:00:00Z"), None),
        ("org_id, user_id, from and to", {"org_id": "1", "user_id": "3", "from": "2024-02-29T20:00:00Z",
                                         "to": "2024-03-03T08:00:00Z"}, E("2024-02-29T20:00:00Z"), E("2024-03-03T08:00:00Z")),
        ("project_id and a task of another project: the header alone", {"project_id": "11", "task_id": "211"}, None, None),
        ("an unknown job: the header alone", {"job_id": "9999"}, None, None),
    ]
    last = {}
    for name, params, lo, hi in cases:
        reference, n = reference_csv(params, lo, hi)
        if fixture_csv(params, lo, hi) != reference:
            check("(the test itself) %s: ClickHouse's reference equals the fixture's rows" % name, False,
                  first_difference(fixture_csv(params, lo, hi), reference))
        for flow, run in (("older flow", export_old), ("newer flow", export_new)):
            got, why, export_id = run(params)
            check("%s, %s: the CSV is ClickHouse's %d rows as csv.writer writes them" % (flow, name, n),
                  why is None and got == reference, why or first_difference(got, reference))
            last[flow] = (params, export_id, reference)

    # the file, downloaded again; another flow's id
    params, query_id, reference = last["older flow"]
    again, why = old_download(params, query_id)
    check("a finished export downloads again, the same (older flow)", again == reference, why)
    params, rq_id, reference = last["newer flow"]
    status, _, again = http("GET", "/api/events/download?" + urllib.parse.urlencode({"rq_id": rq_id}))
    check("/api/events/download?rq_id= serves the export again, the same (newer flow)", status == 200 and again == reference,
          (status, again[:200]))
    files = [os.path.join(EXPORTS_DIR, f) for f in os.listdir(EXPORTS_DIR)] if os.path.isdir(EXPORTS_DIR) else []
    check("finished exports are files in <data_dir>/apis/analytics/exports",
          any(f.endswith(".csv") and open(f, "rb").read() == reference for f in files), files[:10])
    params = {"job_id": str(BUSY_JOBS[1])}
    reference, n = reference_csv(params, None, None)
    chosen = str(uuid.UUID(int=random.Random(7).getrandbits(128)))
    status, _, body = http("GET", with_query("/api/events", list(params.items()) + [("query_id", chosen)]))
    ok, why = old_wait(params, chosen) if status in (201, 202) else (False, "answered %s %r" % (status, body[:300]))
    got, why2 = old_download(params, chosen) if ok else (None, why)
    check("an unknown query_id starts an export under that id (%d rows)" % n, got == reference,
          why2 or first_difference(got or b"", reference))
    check("every older-flow download had Content-Disposition: attachment; every request status was "
          "{id, status: queued|started|finished|failed}; every result_url absolute, with the rq_id",
          not protocol, {k: v[:3] for k, v in protocol.items()})

    # ---- bad export requests
    bad = [("from after to", {"from": "2024-03-02", "to": "2024-03-01"}, ""),
           ("job_id=abc", {"job_id": "abc"}, "job_id"),
           ("user_id=-1", {"user_id": "-1"}, "user_id"),
           ("from=not-a-date", {"from": "not-a-date"}, "from"),
           ("to=2024-13-45", {"to": "2024-13-45"}, "")]
    for name, params, says in bad:
        status, _, body = http("GET", with_query("/api/events", params))
        check("older flow, %s: 400%s" % (name, " naming " + says if says else ""),
              status == 400 and says.encode() in body, (status, body[:300]))
        status, _, body = http("POST", with_query("/api/events/export", params))
        check("newer flow, %s: 400%s" % (name, " naming " + says if says else ""),
              status == 400 and says.encode() in body, (status, body[:300]))
    params, query_id, _ = last["older flow"]
    status, _, body = http("GET", with_query("/api/events", list(params.items()) + [("query_id", query_id),
                                                                                    ("action", "other")]))
    check("action other than download: 400", status == 400, (status, body[:300]))

    # ---- max_concurrent_exports: ClickHouse stopped, two exports hang, a third is 429
    os.kill(ch_pid, signal.SIGSTOP)
    try:
        p1, p2 = {"task_id": "111"}, {"task_id": "212"}
        status1, _, body1 = http("POST", with_query("/api/events/export", p1), timeout=10)
        status2, _, body2 = http("GET", with_query("/api/events", p2), timeout=10)
        check("ClickHouse stopped: two exports are accepted (202)", status1 == 202 and status2 == 202,
              (status1, body1[:200], status2, body2[:200]))
        rq_hung = (as_json(body1) or {}).get("rq_id", "")
        qid_hung = (as_json(body2) or {}).get("query_id", "")
        time.sleep(0.5)
        answer, why = new_status(rq_hung)
        check("while ClickHouse answers nothing, the export is queued or started",
              answer is not None and answer.get("status") in ("queued", "started"), why or answer)
        status, _, body = http("GET", with_query("/api/events", list(p2.items()) + [("query_id", qid_hung)]), timeout=10)
        check("while ClickHouse answers nothing, the older flow's poll is 202", status == 202, (status, body[:200]))
        status, _, body = http("POST", with_query("/api/events/export", {"task_id": "121"}), timeout=10)
        check("a third export (newer flow) while two run: 429", status == 429, (status, body[:200]))
        status, _, body = http("GET", with_query("/api/events", {"task_id": "121"}), timeout=10)
        check("a third export (older flow) while two run: 429", status == 429, (status, body[:200]))
    finally:
        os.kill(ch_pid, signal.SIGCONT)
    answer, why = new_wait(rq_hung)
    got, why = new_download(answer) if answer else (None, why)
    check("ClickHouse back: the first hung export finishes with its rows", got == reference_csv(p1, None, None)[0], why)
    ok, why = old_wait(p2, qid_hung)
    got, why = old_download(p2, qid_hung) if ok else (None, why)
    check("ClickHouse back: the second hung export finishes with its rows", got == reference_csv(p2, None, None)[0], why)
    got, why, _ = export_new({"task_id": "121"})
    check("once they are done, another export runs", got == reference_csv({"task_id": "121"}, None, None)[0], why)

    # ---- the measures query
    day = lambda iso: E(iso) * 1000  # noqa: E731
    FULL = (day("2024-02-29T00:00:00Z"), day("2024-03-05T00:00:00Z"))
    measures_case("every measure, minute to month, the whole fixture", FULL[0], FULL[1], None,
                  every_measure(["minute", "hour", "day", "week", "month"]))
    measures_case("startTime in epoch ms (a number), endTime in epoch ms (a string)", FULL[0], FULL[1], {},
                  every_measure(["hour", "day"]), start=FULL[0], end=str(FULL[1]))
    measures_case("startTime with an offset, endTime a date", FULL[0], FULL[1], {},
                  every_measure(["day"]), start="2024-02-29T02:00:00+02:00", end="2024-03-05")
    odd = (day("2024-02-29T21:17:33Z"), day("2024-03-03T05:42:10Z"))
    measures_case("a range off the buckets' edges, orgId", odd[0], odd[1], {"orgId": ["1"]},
                  every_measure(["hour", "day", "week", "month"]))
    measures_case("projectId with two values, an empty taskId", FULL[0], FULL[1], {"projectId": ["11", "21"], "taskId": []},
                  every_measure(["hour", "day"]))
    measures_case("taskId of a task without project", FULL[0], FULL[1], {"taskId": ["401"]}, every_measure(["day", "week"]))
    measures_case("userId with two values", FULL[0], FULL[1], {"userId": ["2", "5"]}, every_measure(["hour", "day"]))
    measures_case("assignmentId (jobs)", FULL[0], FULL[1], {"assignmentId": [str(BUSY_JOBS[0]), str(BUSY_JOBS[-1])]},
                  every_measure(["minute", "day"]))
    measures_case("orgId and userId together, an empty datasetId", odd[0], odd[1],
                  {"orgId": ["2"], "userId": ["3", "4"], "datasetId": []}, every_measure(["hour", "month"]))
    measures_case("orgId of no event: filled buckets at 0, no other rows", FULL[0], FULL[1], {"orgId": ["77"]},
                  every_measure(["day"]))
    busy = EVENTS[len(EVENTS) // 2]["ts"]
    short = (bucket_start(busy, "minute") * 1000 - 240000, bucket_start(busy, "minute") * 1000 + 360000)
    measures_case("a 10-minute range by the second", short[0], short[1], None, every_measure(["second", "minute"]))
    a, b = EVENTS[500]["ts"], EVENTS[530]["ts"]
    measures_case("startTime on a row includes it, endTime on a row excludes it", a * 1000, b * 1000, None,
                  every_measure(["hour"], pageSize=0))
    measures_case("milliseconds: a row 0.5 s after startTime is in, one 0.5 s before endTime too",
                  a * 1000 - 500, b * 1000 + 500, None, every_measure(["minute"], pageSize=0), start=a * 1000 - 500,
                  end=b * 1000 + 500)
    measures_case("milliseconds: a row 0.5 s before startTime is out", a * 1000 + 500, b * 1000, None,
                  every_measure(["second"], pageSize=0), start=str(a * 1000 + 500))
    measures_case("defaults: granularity hour, page 0, pageSize 1000", FULL[0], FULL[1], None,
                  [{"measureType": m} for m in MEASURES])
    measures_case("paging", FULL[0], FULL[1], None, [
        {"measureType": "activeUsers", "timeGranularity": ["minute"], "page": 2, "pageSize": 100},
        {"measureType": "labelingCounters", "timeGranularity": ["hour", "day"], "page": 1, "pageSize": 50},
        {"measureType": "userStatsActivityTime", "timeGranularity": ["hour"], "pageSize": 0},
        {"measureType": "itemAnnotationDuration", "timeGranularity": ["day"], "page": 1, "pageSize": 5},
        {"measureType": "countItemInAnnotationTimeBucket", "timeGranularity": ["minute"], "page": 0, "pageSize": 3},
        {"measureType": "issueCounters", "timeGranularity": ["hour"], "page": 40, "pageSize": 10},
        {"measureType": "annotationTimeline", "timeGranularity": ["minute"], "pageSize": 10000}])
    measures_case("descending, one row per bucket", FULL[0], FULL[1], {"projectId": ["11"]}, [
        {"measureType": "activeUsers", "timeGranularity": ["hour"], "sortDirection": "descending", "pageSize": 10},
        {"measureType": "annotationTimeline", "timeGranularity": ["day", "week"], "sortDirection": "descending"},
        {"measureType": "issueCounters", "timeGranularity": ["hour"], "sortDirection": "descending", "page": 1,
         "pageSize": 7},
        {"measureType": "activeUsers", "timeGranularity": ["day"], "sortDirection": "ascending"}])
    measures_case("descending, several rows per bucket: the same rows, times descending", FULL[0], FULL[1], None, [
        {"measureType": "labelingCounters", "timeGranularity": ["day"], "sortDirection": "descending", "pageSize": 0},
        {"measureType": "userStatsActivityTime", "timeGranularity": ["hour"], "sortDirection": "descending",
         "pageSize": 0}], any_order=("labelingCounters", "userStatsActivityTime"))

    # endTime omitted: now
    before = time.time()
    status, body = analytics_query({"startTime": "2024-02-29", "measures": [
        {"measureType": "activeUsers", "timeGranularity": ["day"], "pageSize": 0}]})
    answer = as_json(body)
    rows = answer[0]["response"] if isinstance(answer, list) and answer and isinstance(answer[0], dict) else None
    fixture_days = expected_answer(FULL[0], FULL[1], {}, [{"measureType": "activeUsers", "timeGranularity": ["day"]}])[0]
    ok = status == 200 and isinstance(rows, list) and len(rows) > len(fixture_days["response"])
    if ok:
        last_time = calendar.timegm(time.strptime(rows[-1]["time"], "%Y-%m-%dT%H:%M:%S.000Z"))
        ok = (rows[:len(fixture_days["response"])] == fixture_days["response"]
              and all(r["activeUsers"] == 0 for r in rows[len(fixture_days["response"]):])
              and bucket_start(int(before), "day") - 86400 <= last_time <= time.time()
              and answer[0].get("totalRows") == len(rows))
    check("endTime omitted: the days of the fixture, then zeros up to today, none after now", ok,
          (status, body[:300]) if not ok else "")

    # bad payloads
    good = {"startTime": FULL[0], "endTime": FULL[1], "measures": [{"measureType": "activeUsers"}]}
    bad_query("startTime missing: 400", {k: v for k, v in good.items() if k != "startTime"})
    bad_query("startTime not a time: 400", dict(good, startTime="yesterday-ish"))
    bad_query("context value a string, not a list: 400 naming the key", dict(good, context={"projectId": "11"}),
              says=["projectId"])
    bad_query("context value a list of numbers: 400 naming the key", dict(good, context={"userId": [2]}), says=["userId"])
    bad_query("context value not an unsigned integer: 400 naming the key", dict(good, context={"taskId": ["abc"]}),
              says=["taskId"])
    bad_query("unknown measureType: 400 listing the supported ones",
              dict(good, measures=[{"measureType": "fooBar"}]), says=["activeUsers", "countItemInAnnotationTimeBucket"])
    bad_query("bad timeGranularity: 400", dict(good, measures=[{"measureType": "activeUsers",
                                                                 "timeGranularity": ["fortnight"]}]))
    bad_query("startTime after endTime: 400", dict(good, startTime=FULL[1], endTime=FULL[0]))
    bad_query("a body that is not JSON: 400", b'{"startTime": 1709164800000, "measures": [')
    bad_query("an empty measures list: 400", dict(good, measures=[]))
    bad_query("a non-empty datasetId (no such column): 400", dict(good, context={"datasetId": ["x"]}), says=["datasetId"])
    bad_query("more than max_buckets (100000) seconds: 400",
              dict(good, measures=[{"measureType": "activeUsers", "timeGranularity": ["second"]}]))

    # ---- SIGTERM, and a restart serves no export of the run before
    weir.send_signal(signal.SIGTERM)
    rc = weir.wait(timeout=60)
    weir = None
    check("weir stopped with SIGTERM exits 0", rc == 0, (rc, log_tail()))
    weir, up = start_weir(config)
    check("weir starts again", up, log_tail())
    if up:
        status, _, body = http("GET", "/api/events/download?" + urllib.parse.urlencode({"rq_id": rq_id}))
        check("after a restart, an export of the run before is not served", status != 200 and status is not None,
              (status, body[:200]))
        check("after a restart, the exports of the run before are deleted",
              wait_for(lambda: not [f for f in os.listdir(EXPORTS_DIR) if f.endswith(".csv")], 10)
              if os.path.isdir(EXPORTS_DIR) else True, os.listdir(EXPORTS_DIR) if os.path.isdir(EXPORTS_DIR) else "")
        weir.send_signal(signal.SIGTERM)
        rc = weir.wait(timeout=60)
        weir = None
        check("the restarted weir exits 0 on SIGTERM", rc == 0, (rc, log_tail()))

    text = open(LOG, errors="replace").read()
    for name, secret in (("the bearer token", TOKEN), ("the basic-auth password", PASSWORD),
                         ("the basic-auth header", BASIC.split()[1]), ("a wrong token", WRONG_TOKEN.split()[1]),
                         ("a wrong password", "pw-wrong-9c2e")):
        check("weir's log never holds %s" % name, secret not in text)
except Abort:
    pass
finally:
    if ch_pid is not None:
        try:
            os.kill(ch_pid, signal.SIGCONT)
        except OSError:
            pass
    if weir is not None:
        weir.kill()
        weir.wait()
    try:
        harness.server("clickhouse", "stop", CH_DIR)
    except SystemExit:
        pass

finish("analytics")
