// `file` sink: events appended to files, as JSON lines or CSV. The path may hold
// `{{ field }}` and strftime templates; every file it names is opened on demand, closed
// after idle_timeout, and flushed on shutdown. A batch is acknowledged once write(2) has
// taken all of its bytes.
#include <sys/stat.h>

#include <map>
#include <vector>

#include <fmt/format.h>

#include "weir/csv.hpp"
#include "weir/field_template.hpp"
#include "weir/io.hpp"
#include "weir/json.hpp"
#include "weir/log.hpp"
#include "weir/registry.hpp"
#include "weir/uv.hpp"

namespace weir::plugins {
namespace {

const OptionSchema kSchema = {
    {.name = "path", .type = OptionType::String, .required = true,
     .doc = "File to append to; may hold `{{ field }}` and strftime (`%Y-%m-%d`, UTC, from the event's timestamp)."},
    {.name = "encoding.codec", .type = OptionType::Enum, .default_value = "json", .choices = {"json", "csv"},
     .doc = "`json`: one JSON object a line; `csv`: the `encoding.csv.fields` columns, RFC 4180 quoting."},
    {.name = "encoding.csv.fields", .type = OptionType::StringList,
     .doc = "Columns for `csv` (field paths); objects and arrays are written as JSON, null as empty."},
    {.name = "encoding.csv.header", .type = OptionType::Bool, .default_value = "false",
     .doc = "Write a header row at the top of each new file."},
    {.name = "idle_timeout", .type = OptionType::Duration, .default_value = "30s",
     .doc = "Close a file nothing was written to for this long."},
};

constexpr std::size_t kMaxPendingBytes = 16 << 20;

// What one batch is waiting for: when the last write holding it completes, the batch's
// acknowledgements are released (as delivered, or failed when a write failed).
struct Delivery {
  SinkContext* ctx;
  std::vector<AckRef> acks;
  std::size_t events = 0;
  std::uint64_t bytes = 0;
  std::string failure;
  ~Delivery() {
    if (failure.empty()) {
      ctx->metrics().events_sent.add(events);
      ctx->metrics().bytes_sent.add(bytes);
    } else {
      for (const auto& ack : acks) ack->fail(failure);
    }
  }
};

class FileSink final : public Sink {
 public:
  static Result<std::unique_ptr<FileSink>> create(const Options& options) {
    auto path = FieldTemplate::parse(std::string(options.string("path")), "path template");
    if (!path.ok()) return options.error_at("path", path.error().message());
    auto self = std::make_unique<FileSink>(std::move(path.value()));
    self->csv_ = options.string("encoding.codec") == "csv";
    self->csv_fields_ = options.strings("encoding.csv.fields");
    self->csv_header_ = options.boolean("encoding.csv.header");
    self->idle_timeout_ = options.duration("idle_timeout");
    if (self->csv_ && self->csv_fields_.empty()) {
      return options.error_at("encoding.codec", "encoding.codec csv needs encoding.csv.fields (the columns)");
    }
    return self;
  }
  explicit FileSink(FieldTemplate path) : path_(std::move(path)) {}

  Status start(SinkContext& ctx) override {
    ctx_ = &ctx;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(idle_timeout_).count();
    if (ms > 0) {
      auto period = static_cast<std::uint64_t>(std::max<std::int64_t>(ms / 2, 100));
      int rc = start_timer(
          idle_timer_, ctx.loop(), this, [](uv_timer_t* t) { static_cast<FileSink*>(t->data)->close_idle_files(); },
          period, period);
      if (rc != 0) return Error("cannot start timer: " + uv_error_text(rc));
      uv_unref(idle_timer_.base());
    }
    if (path_.is_constant()) {
      // Fail at start, not at the first event, when the one file cannot be opened.
      if (!open_file(path_.text())) return Error(fmt::format("cannot open '{}' for appending", path_.text()));
    }
    return {};
  }

  bool ready() const override { return pending_bytes() < kMaxPendingBytes; }

  void consume(BatchPtr batch) override {
    auto delivery = std::make_shared<Delivery>();
    delivery->ctx = ctx_;
    EpochNanos now = ctx_->clock().now();
    std::map<std::string, ByteBuffer> by_path;
    ByteBuffer* constant_out = nullptr;
    if (path_.is_constant()) {
      constant_out = &by_path[path_.text()];
      constant_out->reserve(batch->byte_size() + batch->byte_size() / 8 + 1024);
    }
    for (const Event& event : batch->events()) {
      ByteBuffer* out = constant_out;
      if (out == nullptr) {
        auto rendered = path_.render(event, now, FieldTemplate::Pieces::PathSafe);
        if (!rendered.ok()) {
          ctx_->dead_letter(event, rendered.error().message());
          continue;
        }
        out = &by_path[rendered.value()];
      }
      encode(event, *out);
      ++delivery->events;
    }
    delivery->acks = batch->take_acks();
    batch.reset();
    for (auto& entry : by_path) {
      const std::string& path = entry.first;  // not a structured binding: the write's callback captures it
      ByteBuffer& bytes = entry.second;
      if (bytes.empty()) continue;
      OpenFile* file = open_file(path);
      if (file == nullptr) {
        delivery->failure = fmt::format("cannot open '{}'", path);
        ctx_->metrics().errors.add();
        continue;
      }
      delivery->bytes += bytes.size();
      file->last_write = uv_now(ctx_->loop());
      if (file->needs_header) {
        ByteBuffer with_header;
        write_header(with_header);
        with_header.append(bytes.view());
        bytes = std::move(with_header);
        file->needs_header = false;
      }
      file->writer->write(std::move(bytes), [this, delivery, path](int status) {
        if (status < 0) {
          delivery->failure = fmt::format("write to '{}' failed: {}", path, uv_error_text(status));
          ctx_->metrics().errors.add();
          log::error(ctx_->name(), "{}", delivery->failure);
        }
        if (ready()) ctx_->ready_again();
      });
    }
  }

  void drain(std::function<void()> done) override {
    idle_timer_.close();
    drain_done_ = std::move(done);
    check_drained();
  }

 private:
  struct OpenFile {
    std::unique_ptr<FdWriter> writer;
    std::uint64_t last_write = 0;
    bool needs_header = false;
    dev_t device = 0;  // what the path named when it was opened
    ino_t inode = 0;
    std::uint64_t checked_ms = 0;
  };

  std::size_t pending_bytes() const {
    std::size_t total = 0;
    for (const auto& [path, file] : files_) total += file.writer->pending_bytes();
    for (const OpenFile& file : retired_) total += file.writer->pending_bytes();
    return total;
  }

  // Whether the path no longer names the open file: logrotate (or anyone) moved or removed
  // it. Asked at most once a second per file; a rotation that copies and truncates keeps
  // the file, and appending goes on at its new end.
  bool moved_away(const std::string& path, OpenFile& file) {
    std::uint64_t now = uv_now(ctx_->loop());
    if (now - file.checked_ms < kRotationCheckMs) return false;
    file.checked_ms = now;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return true;
    return st.st_dev != file.device || st.st_ino != file.inode;
  }

  OpenFile* open_file(const std::string& path) {
    auto it = files_.find(path);
    if (it != files_.end()) {
      if (!moved_away(path, it->second)) return &it->second;
      // What is queued goes on into the moved file; new writes go to a new one at the path.
      log::info(ctx_->name(), "'{}' was moved or removed: writing to a new file there", path);
      retired_.push_back(std::move(it->second));
      files_.erase(it);
    }
    std::erase_if(retired_, [](const OpenFile& f) { return f.writer->idle(); });
    int fd = open_for_append(path);
    if (fd < 0) {
      log::error(ctx_->name(), "cannot open '{}': {}", path, uv_error_text(fd));
      return nullptr;
    }
    OpenFile file;
    file.writer = std::make_unique<FdWriter>(ctx_->loop(), fd, true);
    struct stat st {};
    if (fstat(fd, &st) == 0) {
      file.needs_header = csv_ && csv_header_ && st.st_size == 0;
      file.device = st.st_dev;
      file.inode = st.st_ino;
    }
    file.checked_ms = uv_now(ctx_->loop());
    return &files_.emplace(path, std::move(file)).first->second;
  }

  void close_idle_files() {
    std::uint64_t now = uv_now(ctx_->loop());
    auto idle_ms = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(idle_timeout_).count());
    for (auto it = files_.begin(); it != files_.end();) {
      bool keep = path_.is_constant() || !it->second.writer->idle() || now - it->second.last_write < idle_ms;
      it = keep ? std::next(it) : files_.erase(it);
    }
  }

  void check_drained() {
    for (auto& [path, file] : files_) {
      if (!file.writer->idle()) {
        file.writer->when_idle([this] { check_drained(); });
        return;
      }
    }
    for (OpenFile& file : retired_) {
      if (!file.writer->idle()) {
        file.writer->when_idle([this] { check_drained(); });
        return;
      }
    }
    files_.clear();
    retired_.clear();
    if (drain_done_) {
      auto done = std::move(drain_done_);
      drain_done_ = nullptr;
      done();
    }
  }

  void write_header(ByteBuffer& out) const {
    for (std::size_t i = 0; i < csv_fields_.size(); ++i) {
      if (i) out.push_back(',');
      write_csv_field(csv_fields_[i], out);
    }
    out.push_back('\n');
  }

  void encode(const Event& event, ByteBuffer& out) const {
    if (!csv_) {
      write_json(event.fields, out);
      out.push_back('\n');
      return;
    }
    for (std::size_t i = 0; i < csv_fields_.size(); ++i) {
      if (i) out.push_back(',');
      const Value* v = event.fields.find_path(csv_fields_[i]);
      if (v == nullptr || v->is_null()) continue;
      if (v->is_string()) {
        write_csv_field(v->as_string(), out);
      } else {
        ByteBuffer json;
        write_json(*v, json);
        write_csv_field(json.view(), out);
      }
    }
    out.push_back('\n');
  }

  FieldTemplate path_;
  bool csv_ = false;
  std::vector<std::string> csv_fields_;
  bool csv_header_ = false;
  std::chrono::nanoseconds idle_timeout_{};
  SinkContext* ctx_ = nullptr;
  UvTimer idle_timer_;
  std::map<std::string, OpenFile> files_;
  std::vector<OpenFile> retired_;  // moved away, still writing what was queued for them
  std::function<void()> drain_done_;
  static constexpr std::uint64_t kRotationCheckMs = 1000;
};

}  // namespace

WEIR_REGISTER_SINK("file", "Appends events to files (JSON lines or CSV); path templates by field and time", kSchema,
                   FileSink::create);

}  // namespace weir::plugins
