// APIs (`apis:`, docs/adr/019-apis.md): components beside the graph that answer HTTP
// requests, on weir's API server under the paths they claim or on a server of their own.
// They take no batches, so draining does not wait for them: at shutdown each is asked to
// stop (it answers what is left 503), and the runtime waits only for its work off the loop
// (Api::stop's done) before destroying it.
#include <fmt/format.h>

#include "runtime/runtime_impl.hpp"
#include "weir/log.hpp"

namespace weir::runtime {

class ApiNodeContext final : public ApiContext {
 public:
  ApiNodeContext(Runtime::Impl& rt, Runtime::Impl::ApiSlot& slot) : rt_(rt), slot_(slot) {}
  uv_loop_t* loop() override { return rt_.loop(); }
  const std::string& name() const override { return slot_.config->name; }
  const std::string& type() const override { return slot_.config->type; }
  const std::string& data_dir() const override { return rt_.graph_.config.data_dir; }
  ComponentMetrics& metrics() override { return slot_.metrics; }
  const Clock& clock() const override { return *rt_.clock_; }
  Random& random() override { return slot_.random; }
  // An API reads; it has no events to set aside.
  bool dead_letter(const Event&, std::string_view) override { return false; }
  bool dead_letter_raw(std::string_view, std::uint64_t, std::string_view) override { return false; }
  void hold_until_dead_letters_written(std::vector<AckRef>) override {}
  void fail_pipeline(std::string_view reason) override {
    log::error(slot_.config->name, "{}", reason);
    rt_.exit_code_ = 1;
    rt_.shutdown();
  }
  const std::string& served_address() const override { return slot_.served_address; }
  std::string pipeline_graph() const override { return rt_.graph_json(); }
  std::string pipeline_metrics() const override { return rt_.metrics_text(); }

 private:
  Runtime::Impl& rt_;
  Runtime::Impl::ApiSlot& slot_;
};

Status Runtime::Impl::start_apis(topology::Graph& graph) {
  for (std::size_t i = 0; i < graph.apis.size(); ++i) {
    auto slot = std::make_unique<ApiSlot>();
    slot->config = &graph.config.apis[i];
    slot->api = graph.apis[i].get();
    slot->random.reseed(Random::seed_for(seed_, slot->config->name));
    slot->context = std::make_unique<ApiNodeContext>(*this, *slot);
    ApiSlot& s = *slot;
    apis_.push_back(std::move(slot));
    if (s.config->options.has("address")) {
      http::ServerOptions options;
      options.address = std::string(s.config->options.string("address"));
      options.max_body_bytes = 1 << 20;
      options.log_name = s.config->name;
      s.server = std::make_unique<http::Server>(&loop_, options, [slot = &s](http::Request& r, http::Responder out) {
        if (!slot->started || slot->stopped) return out.send(http::Response::error(503, "weir is stopping"));
        slot->api->handle(r, std::move(out));
      });
      if (Status started = s.server->start(); !started.ok()) {
        return Error(fmt::format("{}: {}", s.config->name, started.error().message()));
      }
      std::string host = options.address.substr(0, options.address.rfind(':'));
      s.served_address = fmt::format("{}:{}", host, s.server->port());
    } else {
      std::string host = graph_.config.api_address.substr(0, graph_.config.api_address.rfind(':'));
      s.served_address = fmt::format("{}:{}", host, api_ ? api_->port() : 0);
    }
    if (Status started = s.api->start(*s.context); !started.ok()) {
      s.metrics.errors.add();
      return Error(fmt::format("{}: {}", s.config->name, started.error().message()));
    }
    s.started = true;
    log::info(s.config->name, "serving {} on {}",
              s.server ? std::string("every path") : fmt::format("{}", fmt::join(s.api->paths(), ", ")), s.served_address);
  }
  return {};
}

bool Runtime::Impl::route_to_api(http::Request& request, http::Responder& responder) {
  for (auto& slot : apis_) {
    if (slot->server || !slot->started) continue;
    for (const std::string& path : slot->api->paths()) {
      if (!http::path_is_under(request.path, path)) continue;
      if (slot->stopped) responder.send(http::Response::error(503, "weir is stopping"));
      else slot->api->handle(request, std::move(responder));
      return true;
    }
  }
  return false;
}

void Runtime::Impl::stop_apis() {
  for (auto& slot : apis_) {
    if (slot->server && !slot->stopped) slot->server->stop([] {});  // (also one whose API failed to start)
    if (slot->stopped) continue;
    slot->stopped = true;
    if (!slot->started) {
      slot->stop_done = true;
      continue;
    }
    slot->api->stop([s = slot.get()] { s->stop_done = true; });
  }
}

}  // namespace weir::runtime
