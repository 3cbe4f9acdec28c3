// The API server: /health, /metrics, /reload.
#include "metrics/prometheus.hpp"
#include "runtime/runtime_impl.hpp"
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
  if (started.ok()) log::info("api", "serving /health and /metrics on {} (port {})", options.address, api_->port());
  return started;
}

void Runtime::Impl::serve_api(http::Request& request, http::Responder responder) {
  if (request.method != "GET" && request.method != "HEAD") return responder.send(http::Response::error(405, "use GET"));
  if (request.path == "/health") {
    // 503 while draining, so a load balancer stops sending before the agent goes away.
    return responder.send(stopping_ ? http::Response::json(503, R"({"status":"draining"})")
                                    : http::Response::json(200, R"({"status":"ok"})"));
  }
  if (request.path == "/metrics") {
    std::vector<metrics::ComponentRow> rows;
    for (auto& node : nodes_) {
      rows.push_back({node->config->name, std::string(component_kind_name(node->kind())), node->config->type,
                      &node->metrics});
    }
    double uptime = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_at_).count();
    auto response = http::Response::text(200, metrics::render_prometheus(rows, uptime, stopping_));
    response.content_type = "text/plain; version=0.0.4; charset=utf-8";
    return responder.send(std::move(response));
  }
  responder.send(http::Response::error(404, "the API serves /health and /metrics"));
}

}  // namespace weir::runtime
