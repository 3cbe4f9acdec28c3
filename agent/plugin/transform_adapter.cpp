#include "plugin/transform_adapter.hpp"

#include <chrono>

#include <fmt/format.h>

#include "plugin/host.hpp"
#include "weir/buffer.hpp"
#include "weir/log.hpp"

namespace weir::plugin {
namespace {

std::string reason_of(const weir_error& error, std::string_view what) {
  if (error.error.has_value() && !error.error->message().empty()) return error.error->message();
  return fmt::format("{} failed without saying why", what);
}

class PluginTransform final : public Transform {
 public:
  PluginTransform(std::shared_ptr<const PluginTransformType> type, void* instance)
      : type_(std::move(type)), instance_(instance) {
    context_.output_count = 1 + type_->outputs.size();
    context_.plugin_name = type_->plugin;
  }
  ~PluginTransform() override { type_->callbacks.destroy(instance_); }

  std::vector<std::string> outputs() const override {
    std::vector<std::string> out{""};
    out.insert(out.end(), type_->outputs.begin(), type_->outputs.end());
    return out;
  }

  Status start(TransformContext& ctx) override {
    context_.ctx = &ctx;
    if (type_->callbacks.start == nullptr) return {};
    weir_error error;
    if (type_->callbacks.start(instance_, &context_, &error) != WEIR_OK) {
      return Error(fmt::format("plugin {}: {}", type_->plugin, reason_of(error, "start")));
    }
    return {};
  }

  void process(BatchPtr batch, TransformContext& ctx) override {
    context_.ctx = &ctx;
    HostBatch input(std::move(batch), &context_, false);
    weir_error error;
    int status = type_->callbacks.process(instance_, &context_, &input, &error);
    if (status != WEIR_OK) return failed(input, reason_of(error, "process"), ctx);
    // What the plugin removed or did not emit (an aggregation that only counts, say) goes
    // nowhere on purpose: counted as discarded, as a filter's events are.
    ctx.metrics().events_dropped.add(input.removed + input.remaining());
  }

  void flush(TransformContext& ctx) override {
    context_.ctx = &ctx;
    if (type_->callbacks.flush == nullptr) return;
    weir_error error;
    if (type_->callbacks.flush(instance_, &context_, &error) != WEIR_OK) {
      ctx.metrics().errors.add();
      log::error(ctx.name(), "plugin {}: flush: {}", type_->plugin, reason_of(error, "flush"));
    }
  }

  bool keeps_state() const override { return type_->callbacks.keeps_state != 0; }
  bool runs_off_loop() const override { return type_->callbacks.off_loop != 0; }

  std::optional<std::string> try_snapshot() const override {
    ByteBuffer out;
    weir_error error;
    if (type_->callbacks.snapshot(instance_, &context_, reinterpret_cast<weir_buffer*>(&out), &error) != WEIR_OK) {
      // A state that cannot be saved covers no acknowledgement: nothing is saved (those
      // stay held), and the pipeline stops rather than run on without a state.
      std::string reason = fmt::format("plugin {}: snapshot: {}", type_->plugin, reason_of(error, "snapshot"));
      if (context_.ctx != nullptr) context_.ctx->fail_pipeline(reason);
      return std::nullopt;
    }
    last_snapshot_ = std::string(out.view());
    return last_snapshot_;
  }
  // For a reload's hand-over: the last state made (the pipeline is stopping if it failed).
  std::string snapshot() const override { return try_snapshot().value_or(last_snapshot_); }

  Status restore(std::string_view snapshot) override {
    weir_error error;
    if (type_->callbacks.restore(instance_, &context_, weir_str{snapshot.data(), snapshot.size()}, &error) != WEIR_OK) {
      return Error(fmt::format("plugin {}: restore: {}", type_->plugin, reason_of(error, "restore")));
    }
    last_snapshot_ = std::string(snapshot);
    return {};
  }

 private:
  // The plugin gave up on a batch (a C++ plugin threw): an error counted, and every event
  // still in the batch dead-lettered with the reason, so nothing is lost silently.
  void failed(HostBatch& input, const std::string& reason, TransformContext& ctx) {
    ctx.metrics().errors.add();
    ctx.metrics().events_dropped.add(input.removed);
    if (auto held_back = failure_log_.pass()) {
      log::error(ctx.name(), "plugin {} failed on a batch ({}x since the last such line): {}; its events are dead-lettered",
                 type_->plugin, *held_back + 1, reason);
    }
    if (input.batch == nullptr) return;  // emitted before it failed
    std::string dead_letter_reason = fmt::format("transform failed: {}", reason);
    const std::vector<Event>& events = input.batch->events();
    for (std::size_t i = 0; i < events.size(); ++i) {
      if (!input.is_gone(i)) ctx.dead_letter(events[i], dead_letter_reason);
    }
  }

  std::shared_ptr<const PluginTransformType> type_;
  void* instance_;
  mutable HostContext context_;
  mutable std::string last_snapshot_;
  log::Throttle failure_log_{std::chrono::seconds(10)};
};

}  // namespace

Result<std::unique_ptr<Transform>> make_plugin_transform(std::shared_ptr<const PluginTransformType> type,
                                                          const Options& options) {
  HostOptions host_options(options);
  weir_error error;
  void* instance = type->callbacks.create(&host_options, &error);
  if (instance == nullptr) {
    if (error.error.has_value()) {
      Error e = *error.error;
      if (e.where().file.empty()) return Error(e.message(), options.component_location());
      return e;
    }
    return Error(fmt::format("plugin {}: create failed without saying why", type->plugin), options.component_location());
  }
  return std::unique_ptr<Transform>(std::make_unique<PluginTransform>(std::move(type), instance));
}

}  // namespace weir::plugin
