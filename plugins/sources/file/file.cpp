// `file` source: tails files matched by globs. Reads run on the thread pool; growth is
// found by polling (portable, and immune to missed inotify events). Checkpoints are keyed
// by device, inode and a fingerprint of the file's first line, advance only when the sinks
// acknowledged the events (a batch a sink gave up on is dead-lettered from the file, so
// later ones still advance), survive a crash, and are pruned once unseen for a while. Handles rename-and-create rotation (the old file is read to
// its end, the new one from its start), copytruncate (the shrink is noticed and reading
// starts again at 0) and deletion (read to the end, then closed).
#include <fcntl.h>
#include <fnmatch.h>
#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <map>

#include <fmt/format.h>

#include "checkpoints.hpp"
#include "weir/codec.hpp"
#include "weir/io.hpp"
#include "weir/log.hpp"
#include "weir/registry.hpp"
#include "weir/uv.hpp"

namespace weir::plugins {
namespace {

const OptionSchema kSchema = {
    {.name = "include", .type = OptionType::StringList, .required = true, .doc = "Glob patterns of files to read."},
    {.name = "exclude", .type = OptionType::StringList, .doc = "Glob patterns of files to leave alone."},
    {.name = "read_from", .type = OptionType::Enum, .default_value = "beginning", .choices = {"beginning", "end"},
     .doc = "Where to start in files found at startup without a checkpoint; files that appear later are read "
            "from their beginning."},
    {.name = "glob_interval", .type = OptionType::Duration, .default_value = "1s",
     .doc = "How often the globs are matched again (new files, rotation, deletion)."},
    {.name = "poll_interval", .type = OptionType::Duration, .default_value = "250ms",
     .doc = "How often files are checked for new data."},
    {.name = "fingerprint_bytes", .type = OptionType::Bytes, .default_value = "256",
     .doc = "A file is identified by its device, inode and a hash of its first line, up to this many bytes; it "
            "is read once that much (or a whole first line) is there. A copy (copytruncate's .1 file) is another "
            "file: read from its start if watched."},
    {.name = "checkpoint_retention", .type = OptionType::Duration, .default_value = "7d",
     .doc = "A checkpoint of a file not seen for this long (deleted, rotated away) is removed."},
    {.name = "max_line_bytes", .type = OptionType::Bytes, .default_value = "100KiB",
     .doc = "A longer line is dead-lettered whole, not split."},
    {.name = "read_bytes", .type = OptionType::Bytes, .default_value = "256KiB", .doc = "Size of one read."},
    {.name = "decoding.codec", .type = OptionType::Enum, .default_value = "json", .choices = {"json", "text"},
     .doc = "`json`: one JSON object a line; `text`: each line into `message`."},
    {.name = "file_key", .type = OptionType::String,
     .doc = "Field for the file's path (none when unset); `%name` puts it in the event's metadata."},
    {.name = "offset_key", .type = OptionType::String,
     .doc = "Field for the line's byte offset (none when unset); `%name` puts it in the event's metadata."},
};

std::string fnv1a_hex(std::string_view bytes) {
  std::uint64_t hash = 1469598103934665603ULL;
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= 1099511628211ULL;
  }
  return fmt::format("{:016x}", hash);
}

class FileSource;
struct ReadJob;

// One read and its decoded lines.
struct DecodedRead {
  ssize_t result = 0;  // bytes read, 0 at the end, or a negative libuv error code
  std::size_t asked = 0;
  BatchPtr batch;
  std::vector<DecodeRejection> rejected;
  std::vector<std::uint64_t> starts;
  std::uint64_t consumed = 0;  // the stream's bytes_consumed() after these lines
  ChainOutputPtr processed;    // what the transforms after the source made of `batch`, if they ran here
};

// `file_key` and `offset_key`: where each event's file and line offset go ("%name": the
// metadata). Copied into each job, which stamps the events as it decodes them.
struct Stamps {
  std::string file_key, offset_key;
  bool any() const { return !file_key.empty() || !offset_key.empty(); }

  void stamp(EventBatch& batch, std::string_view path, std::uint64_t stream_start, const std::vector<std::uint64_t>& starts) const {
    Arena& arena = batch.arena();
    Value path_value = Value::string(arena, path);
    for (std::size_t i = 0; i < batch.size(); ++i) {
      Event& event = batch.events()[i];
      if (!file_key.empty()) set_field_or_metadata(arena, event, file_key, path_value);
      if (!offset_key.empty()) {
        set_field_or_metadata(arena, event, offset_key, Value::integer(static_cast<std::int64_t>(stream_start + starts[i])));
      }
    }
  }
};

// Wakes the loop when a job has decoded a read. Shared with running jobs, which may outlive
// the source: it closes the handle only after clearing `async` under the mutex.
struct Waker {
  std::mutex mutex;
  uv_async_t* async = nullptr;
  void wake() {
    std::lock_guard lock(mutex);
    if (async != nullptr) uv_async_send(async);
  }
};

struct TailedFile {
  FileSource* owner = nullptr;
  std::string path;
  int fd = -1;
  std::uint64_t device = 0, inode = 0;
  std::string fingerprint;  // empty until the first line is there
  std::string key;          // its checkpoint's: Checkpoints::key(device, inode, fingerprint)
  std::unique_ptr<LineStream> stream;
  std::uint64_t stream_start = 0;  // file offset where `stream` began
  std::uint64_t read_offset = 0;   // next byte to read
  bool detached = false;           // the path names another file or none now: read to the end, close
  std::vector<ReadJob*> jobs;        // running (set on the loop), at most kJobsPerFile
  std::uint64_t size_seen = 0;       // its size at the last poll
  // The reads its jobs share (under `read_mutex`): one at a time, numbered, from where the
  // last one ended; the first job to find the end for now stops the others.
  std::mutex read_mutex;
  std::uint64_t next_read_offset = 0;
  std::uint64_t reads_taken = 0;
  bool reads_ended = false;
  // Each read goes through the chain and into `decoded` in its number's order (under
  // `order_mutex`): a stateful transform sees the file's lines in order.
  std::mutex order_mutex;
  std::condition_variable order_changed;
  std::uint64_t reads_published = 0;
  // Reads the jobs have decoded, in order, for the loop to deliver (guarded by `decoded_mutex`).
  std::mutex decoded_mutex;
  std::deque<DecodedRead> decoded;
  bool more = false;               // the last read delivered came back full: probably more
  bool queued = false;             // in the source's queue of files waiting for a job
  std::atomic<bool> hold{false};   // the loop wants no more reads (downstream full, or stopping)
  // Batches in flight, in order: their end offsets, and whether the sinks have them.
  struct InFlight {
    std::uint64_t start, end;  // the batch's bytes in the file
    bool acked;
  };
  std::deque<InFlight> in_flight;
  std::uint64_t first_sequence = 0;  // sequence number of in_flight.front()
  std::uint64_t generation = 0;      // bumped on truncation: acks of older batches are stale
  std::uint64_t committed = 0;       // the end of the last batch acknowledged (or where reading began)

  // Never while a read is in flight: the jobs hold the file.
  ~TailedFile() {
    if (fd >= 0) {
      uv_fs_t req;
      uv_fs_close(nullptr, &req, fd, nullptr);
      uv_fs_req_cleanup(&req);
    }
  }
};

// Reads, and the decoding of the lines they complete, on the thread pool: the loop's core is
// left to the transforms and sinks (decoding was the larger part of its work). Up to two
// jobs read a file with a backlog: the reads themselves and the framing of their lines are
// one at a time (the LineStream is used under `read_mutex`), and each job decodes the lines
// of its read with a decoder of its own, beside the other job's; the transforms that run
// where the source decodes (ADR 015) and the hand-over to the loop then go in read order.
// A job keeps reading while reads come back full, handing each decoded read to the loop as
// it is done (a queue and a uv_async wake-up), up to kAhead reads waiting: ending the job
// after each read made every read wait for two hand-overs (a pool thread's wake-up, then the
// loop's), and those waits, not the work, set the pace. The jobs hold the file: its
// descriptor and stream outlive them even when the source lets go of the file.
struct ReadJob {
  static constexpr std::size_t kAhead = 4;
  // Reads a job makes at most before it gives its turn to the next file with data.
  static constexpr int kReadsPerTurn = 16;
  uv_work_t work{};
  std::shared_ptr<TailedFile> file;
  std::shared_ptr<Waker> waker;
  std::unique_ptr<LineDecoder> decoder;  // like the stream's, this job's own
  // Read on the loop at the job's start: the loop changes them only while no job runs
  // (stream_start) or may rename the file meanwhile (path: the name it had when read).
  std::string path;
  std::uint64_t stream_start = 0;
  Stamps stamps;
  // The transforms after the source, run here on each decoded read while the chain is open
  // (ADR 015): the batch is still in this core's cache.
  std::shared_ptr<OffLoopChain> chain;

  void run() {
    for (int turn = 0; turn < kReadsPerTurn && !file->hold.load(std::memory_order_relaxed); ++turn) {
      DecodedRead r;
      AcceptedLines lines;
      std::uint64_t number;
      bool full;
      {
        std::lock_guard lock(file->read_mutex);
        if (file->reads_ended) return;  // the other job found the end: nothing taken
        number = file->reads_taken++;
        char* into = file->stream->read_space(r.asked);
        ssize_t n;
        do {
          n = pread(file->fd, into, r.asked, static_cast<off_t>(file->next_read_offset));
        } while (n < 0 && errno == EINTR);
        r.result = n < 0 ? uv_translate_sys_error(errno) : n;
        if (n > 0) {
          file->next_read_offset += static_cast<std::uint64_t>(n);
          file->stream->accept(static_cast<std::size_t>(n), r.rejected);
          lines = file->stream->take_accepted();
          r.consumed = file->stream->bytes_consumed();
        }
        full = n > 0 && static_cast<std::size_t>(n) == r.asked;
        if (!full) file->reads_ended = true;
      }
      if (r.result > 0) {
        r.batch = EventBatch::create();
        LineStream::decode(lines, *decoder, *r.batch, r.rejected, &r.starts);
        if (stamps.any()) stamps.stamp(*r.batch, path, stream_start, r.starts);
      }
      std::size_t waiting;
      {
        std::unique_lock order(file->order_mutex);
        file->order_changed.wait(order, [&] { return file->reads_published == number; });
        if (chain != nullptr && r.batch != nullptr && !r.batch->empty()) r.processed = chain->run(r.batch);
        {
          std::lock_guard lock(file->decoded_mutex);
          file->decoded.push_back(std::move(r));
          waiting = file->decoded.size();
        }
        ++file->reads_published;
      }
      file->order_changed.notify_all();
      waker->wake();
      // Not full: the end of the file for now. Too far ahead: the loop starts the next job
      // once it has delivered these.
      if (!full || waiting >= kAhead) return;
    }
  }
};

class FileSource final : public Source {
 public:
  static Result<std::unique_ptr<FileSource>> create(const Options& options) {
    auto self = std::make_unique<FileSource>();
    self->include_ = options.strings("include");
    self->exclude_ = options.strings("exclude");
    if (self->include_.empty()) return options.error_at("include", "include needs at least one pattern");
    self->from_end_ = options.string("read_from") == "end";
    auto ms = [&](std::string_view key) {
      return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(options.duration(key)).count());
    };
    self->glob_ms_ = std::max<std::uint64_t>(10, ms("glob_interval"));
    self->poll_ms_ = std::max<std::uint64_t>(10, ms("poll_interval"));
    self->fingerprint_bytes_ = std::max<std::uint64_t>(1, options.bytes("fingerprint_bytes"));
    self->retention_ns_ = std::max<std::int64_t>(
        1'000'000'000, std::chrono::duration_cast<std::chrono::nanoseconds>(options.duration("checkpoint_retention")).count());
    self->max_line_bytes_ = options.bytes("max_line_bytes");
    if (self->max_line_bytes_ == 0) return options.error_at("max_line_bytes", "max_line_bytes must be above 0");
    self->read_bytes_ = std::clamp<std::uint64_t>(options.bytes("read_bytes"), 4096, 64 << 20);
    self->codec_ = options.string("decoding.codec") == "text" ? Codec::Text : Codec::Json;
    self->stamps_.file_key = std::string(options.string("file_key"));
    self->stamps_.offset_key = std::string(options.string("offset_key"));
    if (self->stamps_.file_key == "%" || self->stamps_.offset_key == "%") return options.error_at("file_key", "'%' alone names no field");
    return self;
  }

  ~FileSource() override {
    close_waker();
    each_file([](const std::shared_ptr<TailedFile>& file) { file->owner = nullptr; });
    if (checkpoints_) save_checkpoints();
  }

  Status start(SourceContext& ctx) override {
    ctx_ = &ctx;
    checkpoints_ = std::make_unique<Checkpoints>(ctx.data_dir() + "/" + ctx.name());
    if (Status loaded = checkpoints_->load(ctx.clock().now()); !loaded.ok()) return loaded;
    if (int rc = uv_async_init(ctx.loop(), wake_.get(), [](uv_async_t* a) {
          if (a->data != nullptr) static_cast<FileSource*>(a->data)->deliver_decoded();
        });
        rc != 0) {
      return Error("file: cannot create a wake-up handle: " + uv_error_text(rc));
    }
    wake_.mark_initialized();
    wake_.get()->data = this;
    waker_->async = wake_.get();
    scan(true);
    start_timer(glob_timer_, ctx.loop(), this, [](uv_timer_t* t) { static_cast<FileSource*>(t->data)->scan(false); },
                glob_ms_, glob_ms_);
    start_timer(poll_timer_, ctx.loop(), this, [](uv_timer_t* t) { static_cast<FileSource*>(t->data)->poll(); }, 0,
                poll_ms_);
    return {};
  }

  void resume() override {
    if (stopped_) return;  // the reads still running end after their current one
    paused_ = false;
    each_file([](const std::shared_ptr<TailedFile>& file) { file->hold = false; });
    poll();
  }

  bool decode_raw(std::string_view raw, EpochNanos, EventBatch& batch, std::vector<DecodeRejection>& rejected) const override {
    decode_text(raw, codec_, max_line_bytes_, batch, rejected);
    return true;
  }

  void stop() override {
    if (stopped_) return;
    stopped_ = true;
    glob_timer_.close();
    poll_timer_.close();
    if (save_pending_) {
      save_timer_.close();
      save_pending_ = false;
      save_checkpoints();
    }
    // Jobs end after their current read, and what they decoded still goes downstream before
    // the source says it is finished: the transforms that run where the source decodes have
    // already seen it (ADR 015), and a stateful one's saved state must match what was emitted.
    each_file([](const std::shared_ptr<TailedFile>& file) { file->hold = true; });
    close_waker();
    if (jobs_ == 0) ctx_->finished();
  }

  // An acknowledgement of batch `sequence` of `file`: the checkpoint moves up to the end of
  // the last batch before which everything is delivered.
  void acknowledged(TailedFile& file, std::uint64_t generation, std::uint64_t sequence, DeliveryStatus status,
                    const std::string& reason) {
    if (generation != file.generation || sequence < file.first_sequence) return;
    TailedFile::InFlight& done = file.in_flight[sequence - file.first_sequence];
    if (status != DeliveryStatus::Delivered) {
      // A sink gave up on it for good: its lines go to the dead-letter file, read again from
      // the file, and the checkpoint moves on past them with the batches after it. (Left
      // unacknowledged, it held the checkpoint back for ever and in_flight grew without end.)
      ctx_->metrics().errors.add();
      std::size_t lines = dead_letter_range(file, done.start, done.end, reason);
      log::error(ctx_->name(), "{}: delivery failed ({}): bytes {}-{} ({} lines) dead-lettered", file.path, reason,
                 done.start, done.end, lines);
    }
    done.acked = true;
    std::uint64_t committed = 0;
    bool moved = false;
    while (!file.in_flight.empty() && file.in_flight.front().acked) {
      committed = file.in_flight.front().end;
      file.in_flight.pop_front();
      ++file.first_sequence;
      moved = true;
    }
    if (moved && !file.key.empty()) {
      file.committed = committed;
      checkpoints_->set(file.key, committed, file.path, ctx_->clock().now());
      // Saved on the next loop turn: acknowledgements that land together cost one write,
      // and a crash still re-delivers only what was acknowledged in that one turn (a file
      // sink completes one write at a time).
      if (!save_pending_ && !stopped_) {
        save_pending_ = true;
        start_timer(save_timer_, ctx_->loop(), this, [](uv_timer_t* t) {
          auto* self = static_cast<FileSource*>(t->data);
          self->save_pending_ = false;
          self->save_checkpoints();
        }, 0);
      } else if (stopped_) {
        save_checkpoints();
      }
    }
  }

 private:
  // The lines of bytes [start, end) of `file`, dead-lettered with `reason`; how many.
  std::size_t dead_letter_range(TailedFile& file, std::uint64_t start, std::uint64_t end, const std::string& reason) {
    std::string bytes(end > start ? end - start : 0, '\0');
    std::size_t got = 0;
    while (got < bytes.size()) {
      ssize_t n = ::pread(file.fd, bytes.data() + got, bytes.size() - got, static_cast<off_t>(start + got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += static_cast<std::size_t>(n);
    }
    bytes.resize(got);
    std::string why = fmt::format("{}: delivery failed: {}", file.path, reason);
    std::size_t lines = 0;
    std::string_view rest = bytes;
    while (!rest.empty()) {
      auto newline = rest.find('\n');
      std::string_view line = rest.substr(0, newline);
      if (!line.empty()) {
        ctx_->dead_letter_raw(line, 0, why);
        ++lines;
      }
      if (newline == std::string_view::npos) break;
      rest.remove_prefix(newline + 1);
    }
    return lines;
  }

  // Every file being read: those the globs name, then those rotated away or deleted and
  // still read to their end (over a copy of that list, which `visit` may shorten).
  template <typename Visit>
  void each_file(Visit visit) {
    for (auto& [path, file] : files_) visit(file);
    for (auto& file : std::vector<std::shared_ptr<TailedFile>>(detached_)) visit(file);
  }

  void save_checkpoints() {
    if (Status saved = checkpoints_->save(); !saved.ok()) {
      log::error(ctx_ ? ctx_->name() : "file", "{}", saved.error().message());
      if (ctx_) ctx_->metrics().errors.add();
    }
  }

  bool excluded(const std::string& path) const {
    for (const std::string& pattern : exclude_) {
      if (fnmatch(pattern.c_str(), path.c_str(), FNM_PATHNAME) == 0) return true;
    }
    return false;
  }

  std::vector<std::string> matches() const {
    std::vector<std::string> paths;
    for (const std::string& pattern : include_) {
      glob_t found{};
      if (glob(pattern.c_str(), GLOB_NOSORT, nullptr, &found) == 0) {
        for (std::size_t i = 0; i < found.gl_pathc; ++i) {
          std::string path = found.gl_pathv[i];
          if (!excluded(path) && std::find(paths.begin(), paths.end(), path) == paths.end()) paths.push_back(path);
        }
      }
      globfree(&found);
    }
    return paths;
  }

  void scan(bool initial) {
    if (stopped_) return;
    std::map<std::pair<std::uint64_t, std::uint64_t>, std::shared_ptr<TailedFile>> by_inode;
    each_file([&](const std::shared_ptr<TailedFile>& file) { by_inode[{file->device, file->inode}] = file; });

    std::map<std::string, std::shared_ptr<TailedFile>> next;
    for (const std::string& path : matches()) {
      struct stat st {};
      if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      auto known = by_inode.find({static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)});
      if (known != by_inode.end()) {
        // The same file, possibly under a new name (rotated into a name we also watch).
        known->second->path = path;
        known->second->detached = false;
        next[path] = known->second;
        continue;
      }
      if (auto file = open(path, initial && from_end_)) next[path] = std::move(file);
    }
    // Files no longer matched under any name: read what is left, then close.
    for (auto& watched : files_) {
      auto& file = watched.second;  // not a structured binding: the lambda below captures it (clang 14)
      bool kept = std::any_of(next.begin(), next.end(), [&](const auto& entry) { return entry.second == file; });
      if (!kept) {
        log::info(ctx_->name(), "{} was rotated or deleted: reading it to its end", file->path);
        file->detached = true;
        detached_.push_back(file);
      }
    }
    std::erase_if(detached_, [&](const auto& file) { return !file->detached; });
    files_ = std::move(next);
    // Checkpoints: those of files still here are seen; those unseen for the retention go.
    std::int64_t now = ctx_->clock().now();
    each_file([&](const std::shared_ptr<TailedFile>& file) {
      if (!file->key.empty()) checkpoints_->seen(file->key, now, retention_ns_ / 8);
    });
    if (std::size_t pruned = checkpoints_->prune(now, retention_ns_); pruned > 0) {
      log::info(ctx_->name(), "removed {} checkpoint(s) of files not seen for checkpoint_retention", pruned);
      save_checkpoints();
    }
  }

  std::shared_ptr<TailedFile> open(const std::string& path, bool from_end) {
    uv_fs_t req;
    int fd = uv_fs_open(nullptr, &req, path.c_str(), O_RDONLY | O_CLOEXEC, 0, nullptr);
    uv_fs_req_cleanup(&req);
    if (fd < 0) {
      log::warn(ctx_->name(), "cannot open {}: {}", path, uv_error_text(fd));
      return nullptr;
    }
    struct stat st {};
    fstat(fd, &st);
    auto file = std::make_shared<TailedFile>();
    file->owner = this;
    file->path = path;
    file->fd = fd;
    file->device = static_cast<std::uint64_t>(st.st_dev);
    file->inode = static_cast<std::uint64_t>(st.st_ino);
    file->read_offset = from_end ? static_cast<std::uint64_t>(st.st_size) : 0;
    file->stream_start = file->read_offset;
    file->committed = file->read_offset;
    file->stream = std::make_unique<LineStream>(codec_, max_line_bytes_, read_bytes_);
    fingerprint(*file);
    log::info(ctx_->name(), "watching {}{}", path, from_end ? " from its end" : "");
    return file;
  }

  // Identifies the file by its first line; once known, a checkpoint decides where to start.
  void fingerprint(TailedFile& file) {
    if (!file.fingerprint.empty()) return;
    std::string head(fingerprint_bytes_, '\0');
    uv_fs_t req;
    uv_buf_t buf = uv_buf_init(head.data(), static_cast<unsigned>(head.size()));
    auto n = uv_fs_read(nullptr, &req, file.fd, &buf, 1, 0, nullptr);
    uv_fs_req_cleanup(&req);
    if (n <= 0) return;
    head.resize(static_cast<std::size_t>(n));
    auto newline = head.find('\n');
    if (newline == std::string::npos && head.size() < fingerprint_bytes_) return;  // wait for more
    file.fingerprint = fnv1a_hex(newline == std::string::npos ? head : head.substr(0, newline));
    file.key = Checkpoints::key(file.device, file.inode, file.fingerprint);
    bool found = false;
    std::uint64_t offset = checkpoints_->offset(file.key, file.fingerprint, found);
    if (found && file.read_offset == file.stream_start && file.in_flight.empty()) {
      struct stat st {};
      fstat(file.fd, &st);
      // A checkpoint past the end means the file was truncated since: start over.
      file.read_offset = offset <= static_cast<std::uint64_t>(st.st_size) ? offset : 0;
      file.stream_start = file.read_offset;
      file.committed = file.read_offset;
      file.stream = std::make_unique<LineStream>(codec_, max_line_bytes_, read_bytes_);
      log::info(ctx_->name(), "{}: resuming at byte {} from the checkpoint", file.path, file.read_offset);
    }
  }

  void poll() {
    if (stopped_ || paused_) return;
    each_file([this](const std::shared_ptr<TailedFile>& file) { poll_file(file); });
  }

  void poll_file(const std::shared_ptr<TailedFile>& file) {
    if (!file->jobs.empty() || stopped_ || paused_) return;
    fingerprint(*file);
    if (file->fingerprint.empty()) {
      if (file->detached) std::erase(detached_, file);  // gone before it had a whole first line
      return;
    }
    struct stat st {};
    if (fstat(file->fd, &st) != 0) return;
    auto size = static_cast<std::uint64_t>(st.st_size);
    file->size_seen = size;
    if (size < file->read_offset) {
      log::info(ctx_->name(), "{} was truncated (copytruncate?): reading it again from the start", file->path);
      ++file->generation;
      file->in_flight.clear();
      file->read_offset = 0;
      file->stream_start = 0;
      file->committed = 0;
      file->stream = std::make_unique<LineStream>(codec_, max_line_bytes_, read_bytes_);
      // New content, new identity. The old key's entry stays until pruned; a copy of the
      // old content (copytruncate's .1 file) is another inode, read from its start if watched.
      file->fingerprint.clear();
      file->key.clear();
      return;  // read once the new first line is there
    }
    if (size > file->read_offset) return read(file);
    if (file->detached) finish_detached(file);
  }

  void finish_detached(const std::shared_ptr<TailedFile>& file) {
    // The writer moved on: its last line will not get a newline any more.
    auto batch = EventBatch::create();
    std::vector<DecodeRejection> rejected;
    std::vector<std::uint64_t> starts;
    file->stream->finish(*batch, rejected, &starts);
    if (stamps_.any()) stamps_.stamp(*batch, file->path, file->stream_start, starts);
    // The chain too, here on the loop (no job of this file runs): a batch emitted past an
    // open chain would close it.
    ChainOutputPtr processed;
    if (auto chain = ctx_->off_loop_chain(); chain != nullptr && !batch->empty()) processed = chain->run(batch);
    deliver(file, std::move(batch), std::move(processed), rejected, file->stream->bytes_consumed());
    log::info(ctx_->name(), "{}: done (rotated or deleted, read to its end)", file->path);
    std::erase(detached_, file);
  }

  void close_waker() {
    {
      std::lock_guard lock(waker_->mutex);
      waker_->async = nullptr;
    }
    wake_.close();
  }

  // The file has data: it gets a job in its turn, behind the files already waiting.
  void read(const std::shared_ptr<TailedFile>& file) {
    if (!file->queued) {
      file->queued = true;
      waiting_for_job_.push_back(file);
    }
    start_waiting();
  }

  void start_waiting() {
    while (jobs_ < kMaxJobs && !waiting_for_job_.empty() && !paused_ && !stopped_) {
      std::shared_ptr<TailedFile> next = waiting_for_job_.front().lock();
      waiting_for_job_.pop_front();
      if (next == nullptr) continue;
      next->queued = false;
      if (next->jobs.size() >= kJobsPerFile) continue;
      start_job(next);
      // More than a read's worth waiting: its next read decodes beside this one.
      if (next->jobs.size() < kJobsPerFile && next->size_seen > next->read_offset + read_bytes_ && !next->queued) {
        next->queued = true;
        waiting_for_job_.push_front(next);
      }
    }
  }

  void start_job(const std::shared_ptr<TailedFile>& file) {
    auto job = std::make_unique<ReadJob>();
    job->file = file;
    job->waker = waker_;
    job->decoder = file->stream->another_decoder();
    if (file->jobs.empty()) {  // every read so far delivered: the reads go on from there
      std::lock_guard lock(file->read_mutex);
      file->next_read_offset = file->read_offset;
      file->reads_ended = false;
    }
    job->path = file->path;
    job->stream_start = file->stream_start;
    job->stamps = stamps_;
    job->chain = ctx_->off_loop_chain();
    job->work.data = job.get();
    file->hold = false;
    int rc = uv_queue_work(
        ctx_->loop(), &job->work, [](uv_work_t* w) { static_cast<ReadJob*>(w->data)->run(); },
        [](uv_work_t* w, int status) {
          std::unique_ptr<ReadJob> done(static_cast<ReadJob*>(w->data));
          std::shared_ptr<TailedFile> file = std::move(done->file);
          std::erase(file->jobs, done.get());
          if (file->owner != nullptr) file->owner->job_ended(file, status != 0);
        });
    if (rc < 0) {
      log::error(ctx_->name(), "{}: read failed: {}", file->path, uv_error_text(rc));
      return;
    }
    file->jobs.push_back(job.release());
    ++jobs_;
  }

  // The wake-up: reads decoded by the jobs go downstream, in order.
  void deliver_decoded() {
    each_file([this](const std::shared_ptr<TailedFile>& file) { deliver_decoded(file); });
  }

  void deliver_decoded(const std::shared_ptr<TailedFile>& file) {
    std::deque<DecodedRead> reads;
    {
      std::lock_guard lock(file->decoded_mutex);
      reads.swap(file->decoded);
    }
    for (DecodedRead& r : reads) {
      if (r.result < 0) {
        log::error(ctx_->name(), "{}: read failed: {}", file->path, uv_error_text(static_cast<int>(r.result)));
        ctx_->metrics().errors.add();
        file->more = false;
        continue;
      }
      file->more = r.result > 0 && static_cast<std::size_t>(r.result) == r.asked;
      if (r.result == 0) continue;
      file->read_offset += static_cast<std::uint64_t>(r.result);
      if (!deliver(file, std::move(r.batch), std::move(r.processed), r.rejected, r.consumed)) pause();
    }
  }

  // Downstream is full: running jobs stop after their current read.
  void pause() {
    paused_ = true;
    each_file([](const std::shared_ptr<TailedFile>& file) { file->hold = true; });
  }

  // A job ended (the end of the file for now, far enough ahead, held, or stopping): what it
  // decoded last goes downstream, and if there is probably more the file queues again behind
  // the files already waiting, so files with a backlog take turns. `dropped`: libuv cancelled
  // it (the loop is closing).
  void job_ended(const std::shared_ptr<TailedFile>& file, bool dropped) {
    --jobs_;
    if (!dropped) {
      deliver_decoded(file);
      if (file->more && !paused_ && !stopped_) read(file);  // to the back of the queue
    }
    if (stopped_) {
      if (jobs_ == 0) ctx_->finished();  // the last one after stop()
      return;
    }
    start_waiting();
  }

  // Emits a batch (or what the transforms after the source made of it, `processed`) with an
  // acknowledgement that moves the checkpoint. Returns whether downstream has room for more.
  // `consumed`: the stream's bytes_consumed() after these lines.
  bool deliver(const std::shared_ptr<TailedFile>& file, BatchPtr batch, ChainOutputPtr processed,
               const std::vector<DecodeRejection>& rejected, std::uint64_t consumed) {
    for (const DecodeRejection& r : rejected) {
      ctx_->dead_letter_raw(r.raw, r.line, fmt::format("{}: {}", file->path, r.reason));
    }
    std::uint64_t end = file->stream_start + consumed;
    std::uint64_t sequence = file->first_sequence + file->in_flight.size();
    std::uint64_t start = file->in_flight.empty() ? std::min(end, file->committed) : file->in_flight.back().end;
    file->in_flight.push_back({start, end, false});
    std::weak_ptr<TailedFile> weak = file;
    std::uint64_t generation = file->generation;
    AckRef ack = Acknowledgement::make([weak, generation, sequence](DeliveryStatus status, const std::string& reason) {
      auto f = weak.lock();
      if (f && f->owner) f->owner->acknowledged(*f, generation, sequence, status, reason);
    });
    if (processed != nullptr) {
      processed->add_ack(std::move(ack));
      return ctx_->emit_processed(std::move(processed));
    }
    batch->add_ack(std::move(ack));
    if (batch->empty()) return ctx_->downstream_ready();  // nothing to send: the ack fires now
    return ctx_->emit(std::move(batch));
  }

  SourceContext* ctx_ = nullptr;
  std::vector<std::string> include_, exclude_;
  bool from_end_ = false;
  std::uint64_t glob_ms_ = 1000, poll_ms_ = 250;
  std::int64_t retention_ns_ = 0;
  std::size_t fingerprint_bytes_ = 256, max_line_bytes_ = 100 << 10, read_bytes_ = 256 << 10;
  Codec codec_ = Codec::Json;
  Stamps stamps_;
  std::unique_ptr<Checkpoints> checkpoints_;
  std::map<std::string, std::shared_ptr<TailedFile>> files_;
  std::vector<std::shared_ptr<TailedFile>> detached_;
  UvTimer glob_timer_, poll_timer_, save_timer_;
  bool save_pending_ = false;
  bool paused_ = false;
  // Jobs at once: a job keeps a thread of libuv's pool (4 by default) while its file has a
  // backlog and downstream keeps up, and the sinks encode and write on that pool too.
  static constexpr std::size_t kMaxJobs = 2;
  static constexpr std::size_t kJobsPerFile = 2;
  std::size_t jobs_ = 0;
  std::deque<std::weak_ptr<TailedFile>> waiting_for_job_;
  UvAsync wake_;
  std::shared_ptr<Waker> waker_ = std::make_shared<Waker>();
  bool stopped_ = false;
};

}  // namespace

WEIR_REGISTER_SOURCE("file", "Tails files matched by globs, with checkpoints and rotation", kSchema, FileSource::create);

}  // namespace weir::plugins
