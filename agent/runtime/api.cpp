// The API server: /health, /metrics, /reload, /tap, and the paths of the APIs on it (apis.cpp).
#include <fmt/format.h>

#include "metrics/prometheus.hpp"
#include "runtime/runtime_impl.hpp"
#include "weir/json.hpp"
#include "weir/log.hpp"
#include "weir/options.hpp"
#include "weir/uv.hpp"

namespace weir::runtime {

Status Runtime::Impl::start_api() {
  http::ServerOptions options;
  options.address = graph_.config.api_address;
  options.max_body_bytes = 64 * 1024;
  options.log_name = "api";
  api_ = std::make_unique<http::Server>(&loop_, options,
                                        [this](http::Request& r, http::Responder out) { serve_api(r, std::move(out)); });
  Status started = api_->start();
  if (started.ok()) {
    log::info("api", "serving /health, /metrics, /reload and /tap on {} (port {})", options.address, api_->port());
  }
  return started;
}

void Runtime::Impl::serve_api(http::Request& request, http::Responder responder) {
  if (route_to_api(request, responder)) return;
  if (request.path == "/reload") {
    if (request.method != "POST") return responder.send(http::Response::error(405, "use POST /reload"));
    // Answered once the reload is done (new sinks started, old ones drained), with what it did.
    return request_reload("POST /reload", [responder](const ReloadOutcome& outcome) mutable {
      responder.send(http::Response::json(outcome.status == "failed" ? 400 : 200, outcome.to_json()));
    });
  }
  if (request.method != "GET" && request.method != "HEAD") return responder.send(http::Response::error(405, "use GET"));
  if (request.path == "/health") {
    // 503 only while draining, so a load balancer stops sending before the agent goes away;
    // a component that retries or is blocked is reported, and the agent is still healthy.
    return responder.send(http::Response::json(stopping_ ? 503 : 200, health_json()));
  }
  if (request.path == "/tap") return serve_tap(request, std::move(responder));
  if (request.path == "/graph") return responder.send(http::Response::json(200, graph_json()));
  if (request.path == "/metrics") {
    auto response = http::Response::text(200, metrics_text());
    response.content_type = "text/plain; version=0.0.4; charset=utf-8";
    return responder.send(std::move(response));
  }
  std::string paths;
  for (const auto& slot : apis_) {
    if (!slot->server) paths += fmt::format(", {} ({})", fmt::join(slot->api->paths(), ", "), slot->config->name);
  }
  responder.send(
      http::Response::error(404, "the API serves GET /health, GET /metrics, GET /graph, GET /tap and POST /reload" + paths));
}

void Tap::offer(const EventBatch& batch) {
  seen += batch.size();
  for (const Event& event : batch.events()) {
    if (sampled >= limit) break;
    write_json(event.fields, events);
    events.push_back('\n');
    ++sampled;
  }
}

// GET /tap?components=a,b.output&limit=N&interval=1s: after the interval, the sampled events
// as NDJSON, with X-Weir-Tap-Seen (events that left the components meanwhile) and
// X-Weir-Tap-Sampled (how many of them are in the body).
void Runtime::Impl::serve_tap(http::Request& request, http::Responder responder) {
  auto tap = std::make_shared<Tap>();
  std::chrono::milliseconds interval{1000};
  if (auto limit = request.query_param("limit")) {
    char* end = nullptr;
    long long n = std::strtoll(limit->c_str(), &end, 10);
    if (end == limit->c_str() || *end != '\0' || n < 1 || n > 1'000'000) {
      return responder.send(http::Response::error(400, "limit must be a number from 1 to 1000000"));
    }
    tap->limit = static_cast<std::size_t>(n);
  }
  if (auto text = request.query_param("interval")) {
    auto parsed = parse_duration(*text);
    if (!parsed.ok() || parsed.value() < std::chrono::milliseconds(10) || parsed.value() > std::chrono::seconds(60)) {
      return responder.send(http::Response::error(400, "interval must be a duration from 10ms to 60s, e.g. 1s"));
    }
    interval = std::chrono::duration_cast<std::chrono::milliseconds>(parsed.value());
  }
  auto names = request.query_param("components").value_or("");
  auto entry = std::make_unique<TapRequest>();
  std::size_t from = 0;
  while (from <= names.size()) {
    std::size_t comma = std::min(names.find(',', from), names.size());
    std::string name = names.substr(from, comma - from);
    from = comma + 1;
    if (name.empty()) continue;
    std::string base = name, output;
    Node* found = nullptr;
    for (auto& node : nodes_) {
      if (node->config->name == name) found = node.get();
    }
    if (found == nullptr && name.find('.') != std::string::npos) {
      base = name.substr(0, name.find('.'));
      output = name.substr(name.find('.') + 1);
      for (auto& node : nodes_) {
        if (node->config->name == base) found = node.get();
      }
    }
    if (found == nullptr) return responder.send(http::Response::error(400, fmt::format("no component '{}'", name)));
    if (found->kind() == ComponentKind::Sink) {
      return responder.send(http::Response::error(
          400, fmt::format("'{}' is a sink: its events leave weir; tap the component it reads from", name)));
    }
    auto port = std::find(found->outputs.begin(), found->outputs.end(), output);
    if (port == found->outputs.end()) {
      return responder.send(http::Response::error(400, fmt::format("'{}' has no output '{}'", base, output)));
    }
    // A tap sees batches as they leave a component on the loop. Those of a source and of a
    // chain's inner members do not pass the loop while its chain is open (ADR 015).
    if (found->chain) close_chain(*found, "tapped");
    if (found->in_chain != nullptr && found != found->in_chain->nodes().back()) close_chain(found->in_chain->source(), "tapped");
    found->taps.emplace_back(static_cast<std::size_t>(port - found->outputs.begin()), tap);
    entry->nodes.push_back(found);
  }
  if (entry->nodes.empty()) return responder.send(http::Response::error(400, "name components: /tap?components=a,b.output"));
  entry->tap = tap;
  entry->responder = std::move(responder);
  entry->runtime = this;
  TapRequest* pending = entry.get();
  taps_.push_back(std::move(entry));
  start_timer(
      pending->timer, &loop_, pending,
      [](uv_timer_t* t) {
        auto* done = static_cast<TapRequest*>(t->data);
        Impl& rt = *done->runtime;
        for (Node* node : done->nodes) {
          std::erase_if(node->taps, [&](const auto& entry) { return entry.second == done->tap; });
        }
        http::Response response = http::Response::text(200, std::string(done->tap->events.view()));
        response.content_type = "application/x-ndjson";
        response.headers.push_back({"x-weir-tap-seen", std::to_string(done->tap->seen)});
        response.headers.push_back({"x-weir-tap-sampled", std::to_string(done->tap->sampled)});
        done->responder.send(std::move(response));
        // Freed now (the timer's memory goes with its close callback).
        std::erase_if(rt.taps_, [&](const auto& entry) { return entry.get() == done; });
      },
      static_cast<std::uint64_t>(interval.count()));
}

// {"components": [{"name", "kind", "type", "inputs": ["name" | "name.output", ...]}, ...]}:
// the running graph, for pages that draw it (the analytics API's /dashboards/pipeline).
std::string Runtime::Impl::graph_json() const {
  ByteBuffer out;
  out.append(R"({"components":[)");
  auto component = [&](const config::ComponentConfig& c) {
    if (out.view().back() == '}') out.push_back(',');
    out.append(R"({"name":)");
    write_json_string(c.name, out);
    out.append(fmt::format(R"(,"kind":"{}","type":)", component_kind_name(c.kind)));
    write_json_string(c.type, out);
    out.append(R"(,"inputs":[)");
    for (std::size_t i = 0; i < c.inputs.size(); ++i) {
      if (i != 0) out.push_back(',');
      write_json_string(c.inputs[i].text, out);
    }
    out.append("]}");
  };
  for (const auto& node : nodes_) {
    if (!node->removed) component(*node->config);
  }
  for (const auto& slot : apis_) component(*slot->config);
  out.append("]}");
  return std::string(out.view());
}

// Every component's counters and the process's, in Prometheus's text format.
std::string Runtime::Impl::metrics_text() const {
  std::vector<metrics::ComponentRow> rows;
  for (const auto& node : nodes_) {
    rows.push_back({node->config->name, std::string(component_kind_name(node->kind())), node->config->type, &node->metrics});
  }
  for (const auto& slot : apis_) rows.push_back({slot->config->name, "api", slot->config->type, &slot->metrics});
  metrics::ProcessRow process;
  process.uptime_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_at_).count();
  process.draining = stopping_;
  process.config_generation = generation_;
  process.reloads = reloads_;
  process.reload_failures = reload_failures_;
  return metrics::render_prometheus(rows, process);
}

// {"status": "ok"|"draining", "generation": N, "components": {name: {kind, type, state, ...}}}
// A component's state: `retrying` (with the last error and for how long), `blocked` (its
// input buffer is full, or a source's downstream is), or `ok`.
std::string Runtime::Impl::health_json() const {
  ByteBuffer out;
  out.append(fmt::format(R"({{"status":"{}","generation":{},"components":{{)", stopping_ ? "draining" : "ok", generation_));
  std::uint64_t now = uv_now(const_cast<uv_loop_t*>(&loop_));
  bool first = true;
  for (const auto& node : nodes_) {
    if (node->removed && node->drained()) continue;  // removed by a reload, and drained
    if (!first) out.push_back(',');
    first = false;
    write_json_string(node->config->name, out);
    out.append(fmt::format(R"(:{{"kind":"{}","type":)", component_kind_name(node->kind())));
    write_json_string(node->config->type, out);
    const ComponentMetrics& m = node->metrics;
    bool full = node->input ? node->input->full() : false;
    if (node->kind() == ComponentKind::Source) {
      for (const auto& port : node->consumers) {
        for (const Node* consumer : port) full = full || (!consumer->drop_newest && consumer->input->full());
      }
    }
    if (node->removed) {
      out.append(R"(,"state":"draining")");  // removed by a reload: what it holds goes out first
    } else if (std::uint64_t since = m.retrying_since_ms.get()) {
      out.append(R"(,"state":"retrying","error":)");
      write_json_string(m.last_error, out);
      out.append(fmt::format(R"(,"retrying_seconds":{:.1f})", double(now > since ? now - since : 0) / 1000.0));
    } else {
      out.append(full ? R"(,"state":"blocked")" : R"(,"state":"ok")");
    }
    if (node->input) out.append(fmt::format(R"(,"buffer_events":{})", node->input->events()));
    out.push_back('}');
  }
  out.append("}}");
  return std::string(out.view());
}

}  // namespace weir::runtime
