// `console` sink: one line per event on stdout (or stderr), as JSON or as the text of the
// `message` field. Writes go through the thread pool, so a slow terminal or pipe reader
// slows the pipeline down (backpressure) instead of blocking the loop.
#include <unistd.h>

#include "weir/io.hpp"
#include "weir/json.hpp"
#include "weir/log.hpp"
#include "weir/registry.hpp"
#include "weir/uv.hpp"

namespace weir::plugins {
namespace {

const OptionSchema kSchema = {
    {.name = "target", .type = OptionType::Enum, .default_value = "stdout", .choices = {"stdout", "stderr"},
     .doc = "Where lines go."},
    {.name = "encoding.codec", .type = OptionType::Enum, .default_value = "json", .choices = {"json", "text"},
     .doc = "`json`: the event as one JSON line; `text`: the `message` field (the whole event as JSON when it has none)."},
};

constexpr std::size_t kMaxPendingBytes = 8 << 20;

class ConsoleSink final : public Sink {
 public:
  static Result<std::unique_ptr<ConsoleSink>> create(const Options& options) {
    return std::make_unique<ConsoleSink>(options.string("target") == "stderr" ? STDERR_FILENO : STDOUT_FILENO,
                                         options.string("encoding.codec") == "text");
  }
  ConsoleSink(int fd, bool text) : fd_(fd), text_(text) {}

  Status start(SinkContext& ctx) override {
    ctx_ = &ctx;
    writer_ = std::make_unique<FdWriter>(ctx.loop(), fd_, false);
    return {};
  }

  bool ready() const override { return writer_->pending_bytes() < kMaxPendingBytes; }

  void consume(BatchPtr batch) override {
    ByteBuffer out(batch->size() * 400);
    for (const Event& event : batch->events()) {
      const Value* message = text_ ? event.fields.find("message") : nullptr;
      if (message != nullptr && message->is_string()) out.append(message->as_string());
      else write_json(message != nullptr ? *message : event.fields, out);
      out.push_back('\n');
    }
    std::size_t events = batch->size();
    std::size_t bytes = out.size();
    writer_->write(std::move(out), [this, events, bytes, acks = batch->take_acks()](int status) {
      if (status == UV_EPIPE && !output_closed_) {
        // Nobody reads our output any more (`weir run ... | head`): stop, as any pipe tool would.
        output_closed_ = true;
        ctx_->fail_pipeline("output closed (EPIPE)");
      }
      if (status < 0) {
        ctx_->metrics().errors.add();
        // A closed pipe fails every write after it: log the first and then every 1000th.
        if (ctx_->metrics().errors.get() % 1000 == 1) {
          log::error(ctx_->name(), "write failed: {} ({} failed writes)", uv_error_text(status), ctx_->metrics().errors.get());
        }
        for (const auto& ack : acks) ack->fail("console write failed");
      } else {
        ctx_->metrics().events_sent.add(events);
        ctx_->metrics().bytes_sent.add(bytes);
      }
      if (ready()) ctx_->ready_again();
    });
  }

  void drain(std::function<void()> done) override { writer_->when_idle(std::move(done)); }

 private:
  int fd_;
  bool text_;
  SinkContext* ctx_ = nullptr;
  std::unique_ptr<FdWriter> writer_;
  bool output_closed_ = false;
};

}  // namespace

WEIR_REGISTER_SINK("console", "Writes events to stdout or stderr, as JSON lines or text", kSchema, ConsoleSink::create);

}  // namespace weir::plugins
