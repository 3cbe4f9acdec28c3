// weir's dashboards: CVAT's All events, Management and Monitoring dashboards over the
// analytics API (GET /api/v1/analytics/table, so a page shows the numbers the API gives),
// and the running pipeline from weir's /graph and /metrics (as /dashboards/graph and
// /dashboards/metrics, under the API's access rule). Aggregation happens in
// ClickHouse; the page only draws. Its state is in window.weir for tests: errors, the
// charts' data, and `loads` (bumped after every complete refresh).
"use strict";

window.weir = { errors: [], charts: {}, loads: 0 };
window.addEventListener("error", (e) => window.weir.errors.push(String(e.message || e)));
window.addEventListener("unhandledrejection", (e) => window.weir.errors.push(String(e.reason)));

const COLORS = ["#2f6fdb", "#e8743b", "#19a979", "#945ecf", "#ed4a7b", "#13a4b4", "#bf8b00", "#6c8893", "#c23c3c", "#5899da"];

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attributes || {})) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return node;
}

function iso(seconds) { return new Date(seconds * 1000).toISOString().replace(".000Z", "Z"); }
function label(seconds, step) {
  const s = new Date(seconds * 1000).toISOString();
  return step >= 86400 ? s.slice(0, 10) : s.slice(0, 16).replace("T", " ");
}

async function table(name, params) {
  const query = new URLSearchParams(Object.assign({ name }, params));
  const response = await fetch("/dashboards/table?" + query, { credentials: "same-origin" });
  const body = await response.text();
  if (!response.ok) throw new Error(name + ": " + body);
  const parsed = JSON.parse(body);
  const columns = parsed.meta.map((m) => m.name);
  return parsed.data.map((row) => Object.fromEntries(row.map((v, i) => [columns[i], v])));
}

// ---- filters ----------------------------------------------------------------------------

const filters = { from: "", to: "", user_id: "", project_id: "", task_id: "", job_id: "" };

function filterParams() {
  const p = {};
  for (const [k, v] of Object.entries(filters)) if (v !== "") p[k] = v;
  const from = Date.parse(filters.from), to = Date.parse(filters.to);
  // Buckets of a size that keeps a chart under ~200 points.
  const span = (isFinite(to) && isFinite(from) ? to - from : 7 * 86400e3) / 1000;
  p.step = [60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400].find((s) => span / s <= 200) || 30 * 86400;
  return p;
}

async function buildFilters(onChange) {
  const range = (await table("range", {}))[0];
  if (Number(range.events) > 0) {
    filters.from = iso(Number(range.first));
    filters.to = iso(Number(range.last) + 1);
  } else {
    filters.to = new Date().toISOString().slice(0, 19) + "Z";
    filters.from = new Date(Date.now() - 86400e3).toISOString().slice(0, 19) + "Z";
  }
  const box = document.getElementById("filters");
  for (const key of ["from", "to"]) {
    const input = el("input", { id: "filter-" + key, value: filters[key], size: 22 });
    input.addEventListener("change", () => { filters[key] = input.value.trim(); onChange(); });
    box.append(el("label", {}, key === "from" ? "From (UTC)" : "To (UTC)", input));
  }
  const options = await table("filters", { from: filters.from, to: filters.to });
  for (const [kind, key, title] of [["user", "user_id", "User"], ["project", "project_id", "Project"],
                                    ["task", "task_id", "Task"], ["job", "job_id", "Job"]]) {
    // Several may be chosen (Ctrl or Shift), as in CVAT's dashboards; none is all.
    const select = el("select", { id: "filter-" + kind, multiple: "", size: 3 });
    options.filter((o) => o.kind === kind).sort((a, b) => Number(a.id) - Number(b.id))
      .forEach((o) => select.append(el("option", { value: o.id }, o.name ? `${o.name} (${o.id})` : o.id)));
    select.addEventListener("change", () => {
      filters[key] = [...select.selectedOptions].map((o) => o.value).join(",");
      onChange();
    });
    box.append(el("label", {}, title + " (none: all)", select));
  }
}

// ---- panels -----------------------------------------------------------------------------

function panel(id, title, wide) {
  const section = el("section", { id, class: wide ? "wide" : "" }, el("h2", {}, title));
  document.getElementById("panels").append(section);
  return section;
}

function chart(section, id, type, labels, datasets, stacked) {
  window.weir.charts[id] = { labels, datasets: datasets.map((d) => ({ label: d.label, data: d.data })) };
  let holder = section.querySelector(".chart");
  if (!holder) {
    holder = el("div", { class: "chart" }, el("canvas", { id: "canvas-" + id }));
    section.append(holder);
  }
  let empty = section.querySelector(".empty");
  if (!empty) { empty = el("p", { class: "empty" }); section.insertBefore(empty, holder); }
  empty.textContent = labels.length === 0 ? "no data for these filters" : "";
  if (typeof Chart === "undefined") {
    holder.textContent = "charts are off: /dashboards/assets/chart.js is not there (libjs-chart.js)";
    return;
  }
  const canvas = holder.querySelector("canvas");
  if (canvas.chart) canvas.chart.destroy();
  canvas.chart = new Chart(canvas, {
    type,
    data: { labels, datasets: datasets.map((d, i) => Object.assign({
      backgroundColor: type === "doughnut" ? COLORS : COLORS[i % COLORS.length],
      borderColor: type === "doughnut" ? "#fff" : COLORS[i % COLORS.length], pointRadius: 0, borderWidth: 1.5,
    }, d)) },
    options: {
      animation: false, maintainAspectRatio: false, responsive: true,
      plugins: { legend: { display: datasets.length > 1 || type === "doughnut", position: "bottom" } },
      scales: type === "doughnut" ? {} : { x: { stacked: !!stacked, ticks: { maxTicksLimit: 12 } },
                                           y: { stacked: !!stacked, beginAtZero: true } },
    },
  });
}

function grid(section, id, columns, rows) {
  let holder = section.querySelector(".scroll");
  if (!holder) { holder = el("div", { class: "scroll" }); section.append(holder); }
  const head = el("tr", {}, ...columns.map((c) => el("th", { class: c.num ? "num" : "" }, c.title)));
  const body = rows.map((r) => {
    const tr = el("tr", {}, ...columns.map((c) => el("td", { class: c.num ? "num" : c.text ? "text" : "" },
                                                     c.show ? c.show(r) : r[c.key])));
    if (r._data) for (const [k, v] of Object.entries(r._data)) tr.dataset[k] = v;
    return tr;
  });
  holder.replaceChildren(el("table", { id }, el("thead", {}, head), el("tbody", {}, ...body)));
  if (rows.length === 0) holder.append(el("p", { class: "empty" }, "no rows for these filters"));
}

// Every bucket from `from` to `to`, 0 where the table has none.
function filled(rows, key, step) {
  // An empty or unreadable bound: the rows' own.
  const times0 = rows.map((r) => Number(r.time));
  let from = Date.parse(filters.from) / 1000, to = Date.parse(filters.to) / 1000;
  if (!isFinite(from)) from = times0.length ? Math.min(...times0) : Date.now() / 1000;
  if (!isFinite(to)) to = times0.length ? Math.max(...times0) + step : Date.now() / 1000;
  from = Math.floor(from / step) * step;
  if ((to - from) / step > 5000) from = Math.floor((to - 5000 * step) / step) * step;  // the newest 5000 buckets
  const by = new Map(rows.map((r) => [Number(r.time), Number(r[key])]));
  const times = [];
  for (let t = from; t < to; t += step) times.push(t);
  return { times, values: times.map((t) => by.get(t) || 0) };
}

const pages = {
  async events() {
    const p = filterParams();
    const [activity, events] = await Promise.all([table("activity", p), table("events", Object.assign({ limit: 200 }, p))]);
    const series = filled(activity, "events", p.step);
    chart(panels.activity, "activity", "line", series.times.map((t) => label(t, p.step)),
          [{ label: "events", data: series.values, fill: true }]);
    grid(panels.events, "events-table", [
      { key: "at", title: "Timestamp" }, { key: "scope", title: "Scope" }, { key: "obj_name", title: "Object" },
      { key: "obj_val", title: "Value", text: true }, { key: "source", title: "Source" },
      { key: "count", title: "Count", num: true }, { key: "duration", title: "Duration (ms)", num: true },
      { key: "user_id", title: "User", num: true }, { key: "project_id", title: "Project", num: true },
      { key: "task_id", title: "Task", num: true }, { key: "job_id", title: "Job", num: true }], events);
  },
  async management() {
    const p = filterParams();
    const [activity, working] = await Promise.all([table("user_activity", p), table("working_time", p)]);
    const times = [...new Set(activity.map((r) => Number(r.time)))].sort((a, b) => a - b);
    const users = [...new Set(activity.map((r) => r.user_id))].sort((a, b) => Number(a) - Number(b));
    const index = new Map(times.map((t, i) => [t, i]));
    const datasets = users.map((u) => {
      const data = times.map(() => 0);
      activity.filter((r) => r.user_id === u).forEach((r) => { data[index.get(Number(r.time))] = Number(r.events); });
      return { label: "user " + u, data };
    });
    chart(panels.users, "user-activity", "bar", times.map((t) => label(t, p.step)), datasets, true);
    working.forEach((r) => { r._data = { ms: r.working_time_ms }; });
    grid(panels.working, "working-time", [
      { key: "user_id", title: "User", num: true }, { key: "user_name", title: "Name" },
      { key: "project_id", title: "Project", num: true }, { key: "task_id", title: "Task", num: true },
      { key: "job_id", title: "Job", num: true },
      { title: "Working time (h)", num: true, show: (r) => (Number(r.working_time_ms) / 3600000).toFixed(3) },
      { key: "activity", title: "Activity", num: true }], working);
    const total = working.reduce((sum, r) => sum + Number(r.working_time_ms), 0);
    panels.working.querySelector("h2").textContent = `Working time: ${(total / 3600000).toFixed(3)} h in all`;
  },
  async monitoring() {
    const p = filterParams();
    const [now, per15, overTime, exceptions, clients] = await Promise.all([
      table("active_users_now", p), table("active_users_15m", p), table("exceptions_over_time", p),
      table("exceptions", Object.assign({ limit: 100 }, p)), table("clients", p)]);
    let big = panels.now.querySelector(".big");
    if (!big) { big = el("div", { class: "big", id: "active-now" }); panels.now.append(big); }
    // (uniqExact over no rows is NULL on 18.16)
    big.textContent = now.length && now[0].active_users != null ? now[0].active_users : "0";
    const users = filled(per15, "active_users", 900);
    chart(panels.active, "active-users", "line", users.times.map((t) => label(t, 900)),
          [{ label: "active users", data: users.values, stepped: true }]);
    const errors = filled(overTime, "exceptions", p.step);
    chart(panels.exceptionsChart, "exceptions", "bar", errors.times.map((t) => label(t, p.step)),
          [{ label: "exceptions", data: errors.values }]);
    grid(panels.exceptions, "exceptions-table", [
      { key: "at", title: "Timestamp" }, { key: "user_id", title: "User", num: true },
      { key: "job_id", title: "Job", num: true }, { key: "error", title: "Error", text: true },
      { show: (r) => (r.stack || "").slice(0, 300), title: "Stack", text: true },
      { show: (r) => (r.payload || "").slice(0, 300), title: "Payload", text: true }], exceptions);
    const sum = (key) => {
      const m = new Map();
      clients.forEach((r) => m.set(r[key] || "other", (m.get(r[key] || "other") || 0) + Number(r.events)));
      return [...m.entries()].sort((a, b) => b[1] - a[1]);
    };
    const browsers = sum("browser"), systems = sum("os");
    chart(panels.browsers, "browsers", "doughnut", browsers.map((b) => b[0]), [{ label: "events", data: browsers.map((b) => b[1]) }]);
    chart(panels.systems, "systems", "doughnut", systems.map((s) => s[0]), [{ label: "events", data: systems.map((s) => s[1]) }]);
  },
};

const layouts = {
  events: [["activity", "Overall activity", true], ["events", "Events (latest 200)", true]],
  management: [["users", "User activity", true], ["working", "Working time", true]],
  monitoring: [["now", "Active users (now: the last 15 minutes)"], ["active", "Active users per 15 minutes"],
               ["exceptionsChart", "Exceptions over time", true], ["exceptions", "Exceptions (latest 100)", true],
               ["browsers", "Browsers"], ["systems", "Operating systems"]],
};
const panels = {};

// One refresh at a time: a filter changed meanwhile refreshes again after it, so the last
// filters are the ones drawn.
let refreshing = null, refreshAgain = false;
async function refresh(page) {
  if (refreshing) {
    refreshAgain = true;
    return refreshing;
  }
  refreshing = (async () => {
    do {
      refreshAgain = false;
      await refreshOnce(page);
    } while (refreshAgain);
  })();
  await refreshing;
  refreshing = null;
}

async function refreshOnce(page) {
  const status = document.getElementById("status");
  status.textContent = "loading…";
  status.className = "";
  const started = performance.now();
  try {
    await pages[page]();
    status.textContent = `${filters.from} – ${filters.to}: loaded in ${Math.round(performance.now() - started)} ms`;
  } catch (e) {
    status.textContent = String(e.message || e);
    status.className = "error";
    console.error(e);
  }
  window.weir.loads += 1;
  document.body.dataset.loads = String(window.weir.loads);
}

// ---- the pipeline -----------------------------------------------------------------------

function parseMetrics(text) {
  const out = {};
  for (const line of text.split("\n")) {
    const m = /^(weir_[a-z_]+)\{([^}]*)\} ([0-9.e+-]+)$/.exec(line);
    if (!m) continue;
    const id = /component_id="([^"]*)"/.exec(m[2]);
    if (!id) continue;
    (out[id[1]] = out[id[1]] || {})[m[1]] = Number(m[3]);
  }
  return out;
}

async function pipeline() {
  const graph = await (await fetch("/dashboards/graph", { credentials: "same-origin" })).json();
  const nodes = graph.components.filter((c) => c.kind !== "api");
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const depth = new Map();
  const depthOf = (n, seen = new Set()) => {
    if (depth.has(n.name)) return depth.get(n.name);
    if (seen.has(n.name)) return 0;
    seen.add(n.name);
    const d = n.inputs.length === 0 ? 0 : 1 + Math.max(...n.inputs.map((i) => {
      const from = byName.get(i) || byName.get(i.split(".")[0]);
      return from ? depthOf(from, seen) : 0;
    }));
    depth.set(n.name, d);
    return d;
  };
  nodes.forEach((n) => depthOf(n));
  const columns = [];
  nodes.forEach((n) => (columns[depth.get(n.name)] = columns[depth.get(n.name)] || []).push(n));
  const W = 205, H = 92, GX = 40, GY = 24;
  const place = new Map();
  for (let x = 0; x < columns.length; ++x) columns[x] = columns[x] || [];  // (a depth no component has)
  columns.forEach((col, x) => col.forEach((n, y) => place.set(n.name, { x: 10 + x * (W + GX), y: 10 + y * (H + GY) })));
  const width = 20 + columns.length * (W + GX), height = 20 + Math.max(1, ...columns.map((c) => c.length)) * (H + GY);
  const section = panel("graph", "Pipeline", true);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.id = "pipeline-graph";
  const add = (tag, attributes, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  for (const n of nodes) {
    for (const i of n.inputs) {
      const from = place.get(i) || place.get(i.split(".")[0]), to = place.get(n.name);
      if (!from) continue;
      add("path", { d: `M${from.x + W},${from.y + H / 2} C${from.x + W + GX / 2},${from.y + H / 2} ${to.x - GX / 2},${to.y + H / 2} ${to.x},${to.y + H / 2}`,
                    fill: "none", stroke: "#8a94a6", "stroke-width": 1.5 });
    }
  }
  const texts = new Map();
  for (const n of nodes) {
    const at = place.get(n.name);
    const color = { source: "#2f6fdb", transform: "#19a979", sink: "#e8743b" }[n.kind] || "#6c8893";
    add("rect", { x: at.x, y: at.y, width: W, height: H, rx: 6, fill: "#fff", stroke: color, "stroke-width": 2 });
    add("text", { x: at.x + 10, y: at.y + 18, "font-weight": 600 }, n.name);
    add("text", { x: at.x + W - 8, y: at.y + 18, "text-anchor": "end", fill: "#5b6475" }, n.type);
    texts.set(n.name, [0, 1, 2, 3].map((k) => add("text", { x: at.x + 10, y: at.y + 36 + k * 16, id: `rate-${n.name}-${k}` }, "")));
  }
  section.append(svg);
  const tableSection = panel("rates", "Per component", true);
  let before = null, beforeAt = 0;
  const human = (v) => v >= 1e6 ? (v / 1e6).toFixed(2) + "M" : v >= 1e3 ? (v / 1e3).toFixed(1) + "k" : v.toFixed(0);
  const bytes = (v) => v >= 1048576 ? (v / 1048576).toFixed(1) + " MiB" : v >= 1024 ? (v / 1024).toFixed(1) + " KiB" : v.toFixed(0) + " B";
  const tick = async () => {
    try {
      const now = parseMetrics(await (await fetch("/dashboards/metrics", { credentials: "same-origin" })).text());
      const at = performance.now();
      if (before) {
        const seconds = (at - beforeAt) / 1000;
        const rows = [];
        for (const n of nodes) {
          const m = now[n.name] || {}, b = before[n.name] || {};
          const rate = (k) => Math.max(0, ((m[k] || 0) - (b[k] || 0)) / seconds);
          const row = {
            name: n.name, kind: n.kind, type: n.type,
            in: rate("weir_component_received_events_total"), out: rate("weir_component_sent_events_total"),
            bytes: rate("weir_component_received_bytes_total"), errors: m.weir_component_errors_total || 0,
            dead: (m.weir_component_dead_lettered_events_total || 0) + (m.weir_component_discarded_events_total || 0),
            buffer: m.weir_buffer_events || 0, capacity: m.weir_buffer_max_events || 0,
          };
          rows.push(row);
          const t = texts.get(n.name);
          t[0].textContent = `in ${human(row.in)}/s   out ${human(row.out)}/s`;
          t[1].textContent = `${bytes(row.bytes)}/s`;
          t[2].textContent = `errors ${row.errors}   dead letters ${row.dead}`;
          t[3].textContent = row.capacity ? `buffer ${row.buffer}/${row.capacity} (${Math.round(100 * row.buffer / row.capacity)}%)` : "";
        }
        grid(tableSection, "rates-table", [
          { key: "name", title: "Component" }, { key: "kind", title: "Kind" }, { key: "type", title: "Type" },
          { show: (r) => human(r.in), title: "In/s", num: true }, { show: (r) => human(r.out), title: "Out/s", num: true },
          { show: (r) => bytes(r.bytes) + "/s", title: "Bytes in/s", num: true },
          { key: "errors", title: "Errors", num: true }, { key: "dead", title: "Dead letters", num: true },
          { show: (r) => r.capacity ? `${r.buffer}/${r.capacity}` : "-", title: "Buffer", num: true }],
          rows.map((r) => Object.assign(r, { _data: { in: r.in.toFixed(1), out: r.out.toFixed(1) } })));
        window.weir.loads += 1;
        document.body.dataset.loads = String(window.weir.loads);
      }
      before = now;
      beforeAt = at;
      document.getElementById("status").textContent = "refreshed every second from weir's /metrics";
    } catch (e) {
      document.getElementById("status").textContent = String(e.message || e);
      console.error(e);
    }
  };
  // Each tick after the last one ended: a slow /metrics never stacks them up.
  const loop = async () => {
    await tick();
    setTimeout(loop, 1000);
  };
  await loop();
}

window.addEventListener("DOMContentLoaded", async () => {
  const page = document.body.dataset.page;
  document.querySelectorAll("header a").forEach((a) => {
    if (a.getAttribute("href") === "/dashboards/" + page) a.className = "here";
  });
  if (page === "index") {
    const section = panel("index", "Dashboards", true);
    for (const [href, text] of [["events", "All events: activity over time and the event log"],
                                ["management", "Management: user activity and working time per user, project, task and job"],
                                ["monitoring", "Monitoring: active users, exceptions, browsers and systems"],
                                ["pipeline", "Pipeline: this weir's components, live"]]) {
      section.append(el("p", {}, el("a", { href: "/dashboards/" + href }, text)));
    }
    return;
  }
  if (page === "pipeline") {
    document.getElementById("filters").remove();
    return pipeline();
  }
  for (const [id, title, wide] of layouts[page]) panels[id] = panel(id, title, wide);
  try {
    await buildFilters(() => refresh(page));
  } catch (e) {
    document.getElementById("status").textContent = String(e.message || e);
    document.getElementById("status").className = "error";
    console.error(e);
  }
  await refresh(page);
});
