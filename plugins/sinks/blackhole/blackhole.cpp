// `blackhole` sink: counts what reaches it and discards it; prints totals and the rate at
// exit (and every print_interval). The reference sink for benchmarks.
#include <chrono>

#include "weir/log.hpp"
#include "weir/registry.hpp"
#include "weir/uv.hpp"

namespace weir::plugins {
namespace {

const OptionSchema kSchema = {
    {.name = "print_interval", .type = OptionType::Duration, .default_value = "0s",
     .doc = "Also report running totals this often; 0s reports only at exit."},
};

class BlackholeSink final : public Sink {
 public:
  static Result<std::unique_ptr<BlackholeSink>> create(const Options& options) {
    return std::make_unique<BlackholeSink>(options.duration("print_interval"));
  }
  explicit BlackholeSink(std::chrono::nanoseconds interval) : interval_(interval) {}

  Status start(SinkContext& ctx) override {
    ctx_ = &ctx;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(interval_).count();
    if (ms > 0) {
      auto period = static_cast<std::uint64_t>(ms);
      int rc = start_timer(
          timer_, ctx.loop(), this, [](uv_timer_t* t) { static_cast<BlackholeSink*>(t->data)->report("so far"); },
          period, period);
      if (rc != 0) return Error("cannot start timer: " + uv_error_text(rc));
      uv_unref(timer_.base());
    }
    return {};
  }

  void consume(BatchPtr batch) override {
    if (events_ == 0) first_ = std::chrono::steady_clock::now();
    events_ += batch->size();
    bytes_ += batch->byte_size();
    ctx_->metrics().events_sent.add(batch->size());
    ctx_->metrics().bytes_sent.add(batch->byte_size());
  }

  void drain(std::function<void()> done) override {
    timer_.close();
    report("total");
    done();
  }

 private:
  void report(std::string_view what) {
    double seconds = events_ ? std::chrono::duration<double>(std::chrono::steady_clock::now() - first_).count() : 0;
    double rate = seconds > 0 ? static_cast<double>(events_) / seconds : 0;
    log::info(ctx_->name(), "{}: {} events, {:.2f} MiB in {:.3f}s ({:.0f} events/s, {:.1f} MiB/s)", what, events_,
              static_cast<double>(bytes_) / (1 << 20), seconds, rate,
              seconds > 0 ? static_cast<double>(bytes_) / (1 << 20) / seconds : 0);
  }

  std::chrono::nanoseconds interval_;
  SinkContext* ctx_ = nullptr;
  UvTimer timer_;
  std::uint64_t events_ = 0;
  std::uint64_t bytes_ = 0;
  std::chrono::steady_clock::time_point first_;
};

}  // namespace

WEIR_REGISTER_SINK("blackhole", "Counts events and discards them; prints totals and rate at exit", kSchema,
                   BlackholeSink::create);

}  // namespace weir::plugins
