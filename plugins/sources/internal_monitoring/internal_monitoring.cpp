// `internal_monitoring` source: weir watching itself the way LUNA services are watched. Each
// request that one of weir's HTTP sources answers becomes a `requests` point and, when it
// failed, an `errors` point (the same events the `monitoring` transform makes), so agents
// show up in the dashboards of the services they serve. Points are gathered and emitted
// every `interval`.
#include <algorithm>

#include <fmt/format.h>

#include "weir/monitoring_points.hpp"
#include "weir/registry.hpp"
#include "weir/request_watch.hpp"
#include "weir/uv.hpp"

namespace weir::plugins {
namespace {

const OptionSchema kSchema = {
    {.name = "service", .type = OptionType::String, .default_value = "weir", .doc = "The points' service tag."},
    {.name = "components", .type = OptionType::StringList,
     .doc = "HTTP sources to watch, by name; empty: all of them. Each point gets a `component` tag."},
    {.name = "interval", .type = OptionType::Duration, .default_value = "1s", .doc = "How often points are emitted."},
    {.name = "error_status", .type = OptionType::Integer, .default_value = "400",
     .doc = "A status at or over this makes a request failed (an `errors` point)."},
    {.name = "max_pending", .type = OptionType::Integer, .default_value = "100000",
     .doc = "Points held while downstream is full; past that new points are dropped (counted)."},
};

class InternalMonitoring final : public Source {
 public:
  static Result<std::unique_ptr<InternalMonitoring>> create(const Options& o) {
    auto self = std::make_unique<InternalMonitoring>();
    self->service_ = std::string(o.string("service"));
    if (self->service_.empty()) return o.error_at("service", "service must not be empty");
    self->components_ = o.strings("components");
    self->interval_ms_ = std::max<std::uint64_t>(
        1, static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(o.duration("interval")).count()));
    self->error_status_ = o.integer("error_status");
    if (o.integer("max_pending") < 1) return o.error_at("max_pending", "max_pending must be at least 1");
    self->max_pending_ = static_cast<std::size_t>(o.integer("max_pending"));
    return self;
  }

  ~InternalMonitoring() override {
    if (watch_ != 0) RequestWatch::unwatch(watch_);
  }

  Status start(SourceContext& ctx) override {
    ctx_ = &ctx;
    watch_ = RequestWatch::watch([this](const ServedRequest& r) { record(r); });
    int rc = start_timer(timer_, ctx.loop(), this, [](uv_timer_t* t) { static_cast<InternalMonitoring*>(t->data)->flush(); },
                         interval_ms_, interval_ms_);
    if (rc != 0) return Error("cannot start timer: " + uv_error_text(rc));
    return {};
  }

  void resume() override { paused_ = false; }

  void stop() override {
    if (stopped_) return;
    stopped_ = true;
    RequestWatch::unwatch(watch_);
    watch_ = 0;
    uv_timer_stop(timer_.get());
    paused_ = false;
    flush();  // what was gathered goes out before the source ends
    ctx_->finished();
  }

 private:
  void record(const ServedRequest& r) {
    if (!components_.empty() && std::find(components_.begin(), components_.end(), r.component) == components_.end()) return;
    if (!pending_) pending_ = EventBatch::create();
    if (pending_->size() >= max_pending_) {
      ctx_->metrics().events_dropped.add(1);
      return;
    }
    Arena& arena = pending_->arena();
    monitoring::RequestRecord rec;
    rec.service = service_;
    rec.method = r.method.empty() ? std::string_view("-") : r.method;
    rec.resource = r.path.empty() ? std::string_view("-") : r.path;
    rec.status_code = r.status;
    rec.request_id = r.request_id;
    rec.execution_time = r.seconds;
    rec.time = r.time;
    rec.extra_tags = Value::object(arena, 1);
    rec.extra_tags.append_member(arena, "component", Value::string(arena, r.component));
    if (!r.error.empty()) {
      rec.extra_fields = Value::object(arena, 1);
      rec.extra_fields.append_member(arena, "error", Value::string(arena, r.error));
    }
    monitoring::append_points(rec, error_status_, *pending_);
  }

  void flush() {
    if (paused_ || !pending_ || pending_->empty()) return;
    BatchPtr batch = std::move(pending_);
    if (!ctx_->emit(std::move(batch))) paused_ = true;
  }

  SourceContext* ctx_ = nullptr;
  std::string service_;
  std::vector<std::string> components_;
  std::uint64_t interval_ms_ = 1000;
  std::int64_t error_status_ = 400;
  std::size_t max_pending_ = 100000;
  std::uint64_t watch_ = 0;
  BatchPtr pending_;
  UvTimer timer_;
  bool paused_ = false;
  bool stopped_ = false;
};

}  // namespace

WEIR_REGISTER_SOURCE("internal_monitoring",
                     "weir's own HTTP requests as LUNA monitoring points (requests, errors)", kSchema,
                     InternalMonitoring::create);

}  // namespace weir::plugins
