#include "runtime/dead_letter.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "weir/json.hpp"
#include "weir/time.hpp"

namespace weir::runtime {

DeadLetterFile::DeadLetterFile(std::string path, std::uint64_t max_bytes, std::size_t max_queued_bytes)
    : path_(std::move(path)), max_bytes_(max_bytes), max_queued_bytes_(max_queued_bytes) {}

// What is queued is written; callbacks still waiting are dropped uncalled (the runtime
// runs them with flush() while its components still exist).
DeadLetterFile::~DeadLetterFile() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_writer_.notify_one();
  if (thread_.joinable()) thread_.join();
  if (file_ != nullptr) std::fclose(file_);
  detach();
}

Status DeadLetterFile::attach(uv_loop_t* loop) {
  int rc = uv_async_init(loop, wake_loop_.get(), [](uv_async_t* h) {
    if (h->data != nullptr) static_cast<DeadLetterFile*>(h->data)->complete_written();
  });
  if (rc != 0) return Error(uv_error_text(rc));
  wake_loop_.mark_initialized();
  wake_loop_.get()->data = this;
  uv_unref(wake_loop_.base());  // referenced only while a callback waits (after_written)
  return {};
}

void DeadLetterFile::detach() {
  std::lock_guard lock(mutex_);  // the writer sends to it under the lock
  wake_loop_.close();
}

void DeadLetterFile::begin(std::string_view component, std::string_view type, std::string_view reason) {
  line_.clear();
  line_.append("{\"timestamp\":\"");
  format_iso8601_ms(clock_ ? clock_->now() : wall_clock_now(), line_);
  line_.append("\",\"component\":");
  write_json_string(component, line_);
  line_.append(",\"component_type\":");
  write_json_string(type, line_);
  line_.append(",\"reason\":");
  write_json_string(reason, line_);
}

bool DeadLetterFile::enqueue() {
  line_.append("}\n");
  {
    std::lock_guard lock(mutex_);
    if (queue_.size() + writing_bytes_ + line_.size() > max_queued_bytes_ && queue_.size() + writing_bytes_ > 0) {
      ++not_queued_;
      if (auto held_back = full_log_.pass()) {
        log::error("dead_letter", "{} bytes of dead letters are waiting for {}: {} more not written (and not delivered)",
                   queue_.size() + writing_bytes_, path_, *held_back + 1);
      }
      return false;
    }
    queue_.append(line_.view());
    queue_ends_.push_back(static_cast<std::uint32_t>(queue_.size()));
    ++queued_seq_;
    if (!thread_.joinable()) thread_ = std::thread([this] { writer(); });
  }
  wake_writer_.notify_one();
  return true;
}

bool DeadLetterFile::write_event(std::string_view component, std::string_view type, const Event& event,
                                 std::string_view reason) {
  begin(component, type, reason);
  line_.append(",\"event\":");
  write_json(event.fields, line_);
  if (!event.metadata.is_null()) {
    line_.append(",\"metadata\":");
    write_json(event.metadata, line_);
  }
  return enqueue();
}

bool DeadLetterFile::write_raw(std::string_view component, std::string_view type, std::string_view raw,
                               std::uint64_t line, std::string_view reason) {
  begin(component, type, reason);
  if (line > 0) {
    line_.append(",\"line\":");
    line_.append(std::to_string(line));
  }
  line_.append(",\"raw\":");
  Arena scratch(256);
  write_json_string(valid_utf8(raw, scratch), line_);
  return enqueue();
}

void DeadLetterFile::after_written(std::function<void(bool)> done) {
  std::uint64_t target;
  {
    std::lock_guard lock(mutex_);
    target = queued_seq_;
  }
  // Records the writer is done with but whose results the loop has not taken yet are this
  // callback's concern too: one may have failed.
  const std::uint64_t after = seen_seq_;
  if (target == after && waiters_.empty()) return done(true);
  // A waiting callback keeps the loop running (a source's last acknowledgement may wait on
  // nothing else).
  if (waiters_.empty() && wake_loop_.initialized()) uv_ref(wake_loop_.base());
  waiters_.push_back(Waiter{after, target, std::move(done)});
}

bool DeadLetterFile::pending() const {
  std::lock_guard lock(mutex_);
  return seen_seq_ < queued_seq_;
}

void DeadLetterFile::flush() {
  {
    std::unique_lock lock(mutex_);
    chunk_done_.wait(lock, [this] { return done_seq_ == queued_seq_; });
  }
  complete_written();
}

// On the loop: the callbacks whose records are all done, in order.
void DeadLetterFile::complete_written() {
  std::uint64_t done;
  {
    std::lock_guard lock(mutex_);
    done = done_seq_;
    failed_seen_.insert(failed_seen_.end(), failed_.begin(), failed_.end());
    failed_.clear();
  }
  while (!waiters_.empty() && waiters_.front().target <= done) {
    Waiter w = std::move(waiters_.front());
    waiters_.pop_front();
    bool ok = std::none_of(failed_seen_.begin(), failed_seen_.end(),
                           [&](const auto& f) { return f.first <= w.target && f.second > w.after; });
    w.done(ok);
  }
  seen_seq_ = done;
  if (waiters_.empty() && wake_loop_.initialized()) uv_unref(wake_loop_.base());
  // A failed chunk matters only to waiters that cover it.
  std::uint64_t oldest = waiters_.empty() ? done : waiters_.front().after;
  std::erase_if(failed_seen_, [&](const auto& f) { return f.second <= oldest; });
}

void DeadLetterFile::writer() {
  ByteBuffer chunk;
  std::vector<std::uint32_t> ends;
  std::unique_lock lock(mutex_);
  while (true) {
    wake_writer_.wait(lock, [this] { return stop_ || !queue_ends_.empty(); });
    if (queue_ends_.empty()) return;  // stopping, and everything written
    chunk.clear();
    std::swap(chunk, queue_);
    ends.swap(queue_ends_);
    queue_ends_.clear();
    writing_bytes_ = chunk.size();
    std::uint64_t first = done_seq_ + 1;
    std::uint64_t last = done_seq_ + ends.size();
    lock.unlock();
    bool ok = write_chunk(chunk.view(), ends);
    if (ok) written_.fetch_add(ends.size(), std::memory_order_relaxed);
    lock.lock();
    writing_bytes_ = 0;
    done_seq_ = last;
    if (!ok) failed_.emplace_back(first, last);
    if (wake_loop_.initialized()) uv_async_send(wake_loop_.get());
    chunk_done_.notify_all();
  }
}

bool DeadLetterFile::open_file() {
  std::error_code ec;
  auto parent = std::filesystem::path(path_).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  file_ = std::fopen(path_.c_str(), "ab");
  if (file_ == nullptr) return false;
  size_ = std::filesystem::file_size(path_, ec);
  if (ec) size_ = 0;
  return true;
}

// On the writer: the chunk's records, rotating where one would pass max_bytes; one flush.
bool DeadLetterFile::write_chunk(std::string_view chunk, const std::vector<std::uint32_t>& ends) {
  bool ok = file_ != nullptr || open_file();
  std::size_t begin = 0, segment = 0;  // [segment, begin): records not yet handed to fwrite
  auto put = [&](std::size_t end) {
    if (ok && end > segment) ok = std::fwrite(chunk.data() + segment, 1, end - segment, file_) == end - segment;
    if (ok) size_ += end - segment;
    segment = end;
  };
  for (std::size_t i = 0; ok && i < ends.size(); ++i) {
    std::size_t end = ends[i];
    if (size_ + (begin - segment) + (end - begin) > max_bytes_ && size_ + (begin - segment) > 0) {
      put(begin);
      if (ok) ok = std::fflush(file_) == 0;
      if (ok) {
        rotate();
        ok = open_file();
      }
    }
    begin = end;
  }
  put(begin);
  if (ok) ok = std::fflush(file_) == 0;
  if (!ok) {
    int error = errno;
    if (auto held_back = failure_log_.pass()) {
      log::error("dead_letter", "cannot write {}: {}; {} dead letters not delivered ({} more failed writes since the last such line)",
                 path_, std::strerror(error), ends.size(), *held_back);
    }
    if (file_ != nullptr) {
      std::fclose(file_);  // opened again for the next chunk: the disk may have room by then
      file_ = nullptr;
    }
  }
  return ok;
}

void DeadLetterFile::rotate() {
  std::fclose(file_);
  file_ = nullptr;
  std::string old = path_ + ".1";
  if (std::rename(path_.c_str(), old.c_str()) != 0) {
    log::error("dead_letter", "cannot rotate {}: {}", path_, std::strerror(errno));
  } else {
    log::info("dead_letter", "{} reached {} bytes: moved to {}", path_, size_, old);
  }
  size_ = 0;
}

}  // namespace weir::runtime
