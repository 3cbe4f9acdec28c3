// `stdin` source: newline-delimited events from standard input. A pipe, terminal or socket
// is read as a libuv stream; a regular file (`weir run < file`) through libuv's file reads
// on the thread pool. EOF finishes the source, so `cat log.ndjson | weir run -c p.yaml`
// exits by itself.
#include <uv.h>

#include "weir/codec.hpp"
#include "weir/io.hpp"
#include "weir/log.hpp"
#include "weir/registry.hpp"
#include "weir/uv.hpp"

namespace weir::plugins {
namespace {

const OptionSchema kSchema = {
    {.name = "decoding.codec", .type = OptionType::Enum, .default_value = "json", .choices = {"json", "text"},
     .doc = "`json`: one JSON object a line (NDJSON); `text`: each line into the `message` field."},
    {.name = "max_line_bytes", .type = OptionType::Bytes, .default_value = "100KiB",
     .doc = "A longer line is dead-lettered whole, not split."},
    {.name = "read_bytes", .type = OptionType::Bytes, .default_value = "256KiB",
     .doc = "Size of the read buffer; a batch is what one read completes."},
};

class StdinSource final : public Source {
 public:
  static Result<std::unique_ptr<StdinSource>> create(const Options& options) {
    Codec codec = options.string("decoding.codec") == "text" ? Codec::Text : Codec::Json;
    if (options.bytes("read_bytes") < 4096 || options.bytes("read_bytes") > (64u << 20)) {
      return options.error_at("read_bytes", "read_bytes must be between 4KiB and 64MiB");
    }
    if (options.bytes("max_line_bytes") == 0) return options.error_at("max_line_bytes", "max_line_bytes must be above 0");
    return std::make_unique<StdinSource>(codec, options.bytes("max_line_bytes"), options.bytes("read_bytes"));
  }

  StdinSource(Codec codec, std::size_t max_line_bytes, std::size_t read_bytes)
      : codec_(codec), max_line_bytes_(max_line_bytes), stream_(codec, max_line_bytes, read_bytes) {}

  bool decode_raw(std::string_view raw, EpochNanos, EventBatch& batch, std::vector<DecodeRejection>& rejected) const override {
    decode_text(raw, codec_, max_line_bytes_, batch, rejected);
    return true;
  }

  Status start(SourceContext& ctx) override {
    ctx_ = &ctx;
    uv_handle_type kind = uv_guess_handle(0);
    int rc = 0;
    switch (kind) {
      case UV_TTY:
        rc = uv_tty_init(ctx.loop(), tty_.get(), 0, 1);
        if (rc == 0) tty_.mark_initialized(), stream_handle_ = tty_.stream();
        break;
      case UV_NAMED_PIPE:
        rc = uv_pipe_init(ctx.loop(), pipe_.get(), 0);
        if (rc == 0) pipe_.mark_initialized(), rc = uv_pipe_open(pipe_.get(), 0), stream_handle_ = pipe_.stream();
        break;
      case UV_TCP:  // socket activation (inetd, systemd)
        rc = uv_tcp_init(ctx.loop(), tcp_.get());
        if (rc == 0) tcp_.mark_initialized(), rc = uv_tcp_open(tcp_.get(), 0), stream_handle_ = tcp_.stream();
        break;
      case UV_UDP: return Error("standard input is a UDP socket; the stdin source reads byte streams only");
      default: break;  // a regular file, /dev/null, or closed: thread-pool reads
    }
    if (rc != 0) return Error("cannot open standard input: " + uv_error_text(rc));
    if (stream_handle_ != nullptr) stream_handle_->data = this;
    read_more();
    return {};
  }

  void resume() override {
    paused_ = false;
    read_more();
  }

  // Stops at once; a file read still in flight is ignored when it lands.
  void stop() override {
    if (stream_handle_ != nullptr) uv_read_stop(stream_handle_);
    file_read_.cancel();
    close_and_finish();
  }

 private:
  void read_more() {
    if (paused_ || done_) return;
    if (stream_handle_ != nullptr) {
      uv_read_start(
          stream_handle_,
          [](uv_handle_t* h, std::size_t, uv_buf_t* buf) {
            auto* self = static_cast<StdinSource*>(h->data);
            std::size_t available = 0;
            char* space = self->stream_.read_space(available);
            *buf = uv_buf_init(space, static_cast<unsigned>(available));
          },
          [](uv_stream_t* s, ssize_t nread, const uv_buf_t*) { static_cast<StdinSource*>(s->data)->on_read(nread); });
      return;
    }
    if (file_read_.in_flight()) return;  // one read at a time
    std::size_t available = 0;
    char* space = stream_.read_space(available);
    int rc = file_read_.start(ctx_->loop(), 0, space, available, -1, stream_.chunk(), [this](ssize_t result) {
      on_read(result == 0 ? static_cast<ssize_t>(UV_EOF) : result);
      if (!done_ && !paused_) read_more();
    });
    if (rc < 0) on_read(rc);
  }

  void on_read(ssize_t nread) {
    if (nread == 0 || done_) return;  // EAGAIN on a stream, or a read that landed after stop()
    auto batch = EventBatch::create();
    std::vector<DecodeRejection> rejected;
    bool end = nread < 0;
    if (nread > 0) {
      stream_.commit(static_cast<std::size_t>(nread), *batch, rejected);
    } else {
      if (nread != UV_EOF) {
        log::error(ctx_->name(), "reading standard input failed: {}", uv_error_text(static_cast<int>(nread)));
        ctx_->metrics().errors.add();
      }
      stream_.finish(*batch, rejected);
    }
    for (const DecodeRejection& r : rejected) ctx_->dead_letter_raw(r.raw, r.line, r.reason);
    bool room = batch->empty() ? ctx_->downstream_ready() : ctx_->emit(std::move(batch));
    if (end) {
      close_and_finish();
      return;
    }
    if (!room) {
      paused_ = true;
      if (stream_handle_ != nullptr) uv_read_stop(stream_handle_);
    }
  }

  void close_and_finish() {
    if (done_) return;
    done_ = true;
    pipe_.close();
    tty_.close();
    tcp_.close();
    stream_handle_ = nullptr;
    ctx_->finished();
  }

  SourceContext* ctx_ = nullptr;
  Codec codec_;
  std::size_t max_line_bytes_;
  LineStream stream_;
  UvPipe pipe_;
  UvTty tty_;
  UvTcp tcp_;
  uv_stream_t* stream_handle_ = nullptr;
  AsyncRead file_read_;
  bool paused_ = false;
  bool done_ = false;
};

}  // namespace

WEIR_REGISTER_SOURCE("stdin", "Newline-delimited events from standard input (NDJSON or text lines)", kSchema,
                     StdinSource::create);

}  // namespace weir::plugins
