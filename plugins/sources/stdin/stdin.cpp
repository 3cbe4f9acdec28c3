// `stdin` source: newline-delimited events from standard input. A pipe or terminal is read
// as a libuv stream; a regular file (`weir run < file`) through libuv's file reads. EOF
// finishes the source, so `cat log.ndjson | weir run -c p.yaml` exits by itself.
#include <uv.h>

#include "weir/codec.hpp"
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
    if (options.bytes("read_bytes") < 4096) return options.error_at("read_bytes", "read_bytes must be at least 4KiB");
    return std::make_unique<StdinSource>(codec, options.bytes("max_line_bytes"), options.bytes("read_bytes"));
  }

  StdinSource(Codec codec, std::size_t max_line_bytes, std::size_t read_bytes)
      : stream_(codec, max_line_bytes, read_bytes) {}

  Status start(SourceContext& ctx) override {
    ctx_ = &ctx;
    uv_handle_type kind = uv_guess_handle(0);
    if (kind == UV_NAMED_PIPE || kind == UV_TTY) {
      int rc = kind == UV_TTY ? uv_tty_init(ctx.loop(), tty_.get(), 0, 1) : uv_pipe_init(ctx.loop(), pipe_.get(), 0);
      if (rc == 0 && kind == UV_TTY) tty_.mark_initialized();
      if (rc == 0 && kind == UV_NAMED_PIPE) {
        pipe_.mark_initialized();
        rc = uv_pipe_open(pipe_.get(), 0);
      }
      if (rc != 0) return Error("cannot open standard input: " + uv_error_text(rc));
      stream_handle_ = kind == UV_TTY ? tty_.stream() : pipe_.stream();
      stream_handle_->data = this;
    }
    read_more();
    return {};
  }

  void resume() override {
    paused_ = false;
    read_more();
  }

  void stop() override {
    if (stopped_) return;
    stopped_ = true;
    if (stream_handle_ != nullptr) {
      uv_read_stop(stream_handle_);
      close_and_finish();
    } else if (!file_read_in_flight_) {
      close_and_finish();
    }
    // A file read in flight finishes the source from its callback.
  }

 private:
  void read_more() {
    if (paused_ || stopped_ || done_) return;
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
    if (file_read_in_flight_) return;
    std::size_t available = 0;
    char* space = stream_.read_space(available);
    file_buf_ = uv_buf_init(space, static_cast<unsigned>(available));
    file_req_.data = this;
    int rc = uv_fs_read(ctx_->loop(), &file_req_, 0, &file_buf_, 1, -1, [](uv_fs_t* req) {
      auto* self = static_cast<StdinSource*>(req->data);
      ssize_t result = req->result;
      uv_fs_req_cleanup(req);
      self->file_read_in_flight_ = false;
      self->on_read(result == 0 ? static_cast<ssize_t>(UV_EOF) : result);
      if (self->stopped_ && !self->done_) self->close_and_finish();
    });
    if (rc < 0) {
      on_read(rc);
      return;
    }
    file_read_in_flight_ = true;
  }

  void on_read(ssize_t nread) {
    if (nread == 0 || done_) return;  // EAGAIN on a stream
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
      return;
    }
    if (stream_handle_ == nullptr && !stopped_) read_more();
  }

  void close_and_finish() {
    if (done_) return;
    done_ = true;
    pipe_.close();
    tty_.close();
    stream_handle_ = nullptr;
    ctx_->finished();
  }

  SourceContext* ctx_ = nullptr;
  LineStream stream_;
  UvPipe pipe_;
  UvTty tty_;
  uv_stream_t* stream_handle_ = nullptr;
  uv_fs_t file_req_{};
  uv_buf_t file_buf_{};
  bool file_read_in_flight_ = false;
  bool paused_ = false;
  bool stopped_ = false;
  bool done_ = false;
};

}  // namespace

WEIR_REGISTER_SOURCE("stdin", "Newline-delimited events from standard input (NDJSON or text lines)", kSchema,
                     StdinSource::create);

}  // namespace weir::plugins
