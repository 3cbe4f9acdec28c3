// The API server: /health, /metrics, /reload.
#include <fmt/format.h>

#include "metrics/prometheus.hpp"
#include "runtime/runtime_impl.hpp"
#include "weir/json.hpp"
#include "weir/log.hpp"

namespace weir::runtime {

Status Runtime::Impl::start_api() {
  http::ServerOptions options;
  options.address = graph_.config.api_address;
  options.max_body_bytes = 64 * 1024;
  options.log_name = "api";
  api_ = std::make_unique<http::Server>(&loop_, options,
                                        [this](http::Request& r, http::Responder out) { serve_api(r, std::move(out)); });
  Status started = api_->start();
  if (started.ok()) log::info("api", "serving /health, /metrics and /reload on {} (port {})", options.address, api_->port());
  return started;
}

void Runtime::Impl::serve_api(http::Request& request, http::Responder responder) {
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
  if (request.path == "/metrics") {
    std::vector<metrics::ComponentRow> rows;
    for (auto& node : nodes_) {
      rows.push_back({node->config->name, std::string(component_kind_name(node->kind())), node->config->type,
                      &node->metrics});
    }
    metrics::ProcessRow process;
    process.uptime_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_at_).count();
    process.draining = stopping_;
    process.config_generation = generation_;
    process.reloads = reloads_;
    process.reload_failures = reload_failures_;
    auto response = http::Response::text(200, metrics::render_prometheus(rows, process));
    response.content_type = "text/plain; version=0.0.4; charset=utf-8";
    return responder.send(std::move(response));
  }
  responder.send(http::Response::error(404, "the API serves GET /health, GET /metrics and POST /reload"));
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
