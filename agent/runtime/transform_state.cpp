#include "runtime/transform_state.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "buffer/crc32c.hpp"
#include "weir/log.hpp"

namespace weir::runtime {

namespace {

constexpr std::uint32_t kStateMagic = 0x31545357;  // "WST1"
constexpr std::size_t kHeaderBytes = 24;

Error os_error(std::string_view what, const std::string& path, int error) {
  return Error(fmt::format("{} {}: {}", what, path, std::strerror(error)));
}

}  // namespace

Result<std::optional<std::string>> StateFiles::load() {
  std::optional<std::string> best;
  std::uint64_t best_save = 0;
  for (int slot = 0; slot < 2; ++slot) {
    std::string path = slot_path(slot);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) continue;
      return os_error("cannot open", path, errno);
    }
    std::string data;
    char chunk[1 << 16];
    ssize_t n;
    while ((n = ::read(fd, chunk, sizeof chunk)) > 0) data.append(chunk, static_cast<std::size_t>(n));
    ::close(fd);
    if (data.size() < kHeaderBytes) continue;
    std::uint32_t magic, crc;
    std::uint64_t save, length;
    std::memcpy(&magic, data.data(), 4);
    std::memcpy(&crc, data.data() + 4, 4);
    std::memcpy(&save, data.data() + 8, 8);
    std::memcpy(&length, data.data() + 16, 8);
    if (magic != kStateMagic || length > data.size() - kHeaderBytes) continue;
    if (buffer::crc32c(std::string_view(data).substr(8, 16 + length)) != crc) continue;  // torn: the other slot
    if (best && save <= best_save) continue;
    best = data.substr(kHeaderBytes, length);
    best_save = save;
  }
  saves_ = best_save;
  return best;
}

Status StateFiles::save(std::string_view state) {
  std::uint64_t save = saves_ + 1;
  std::string record(kHeaderBytes, '\0');
  std::uint64_t length = state.size();
  std::memcpy(record.data(), &kStateMagic, 4);
  std::memcpy(record.data() + 8, &save, 8);
  std::memcpy(record.data() + 16, &length, 8);
  record.append(state);
  std::uint32_t crc = buffer::crc32c(std::string_view(record).substr(8));
  std::memcpy(record.data() + 4, &crc, 4);
  std::string path = slot_path(static_cast<int>(save % 2));
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return os_error("cannot open", path, errno);
  std::size_t done = 0;
  while (done < record.size()) {
    ssize_t n = pwrite(fd, record.data() + done, record.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int error = n < 0 ? errno : ENOSPC;
      ::close(fd);
      return os_error("cannot write", path, error);
    }
    done += static_cast<std::size_t>(n);
  }
  if (ftruncate(fd, static_cast<off_t>(record.size())) != 0 || fdatasync(fd) != 0) {
    int error = errno;
    ::close(fd);
    return os_error("cannot sync", path, error);
  }
  ::close(fd);
  saves_ = save;
  return {};
}

namespace {

// The slot files, written with fdatasync on the thread pool.
class FileWriter final : public SnapshotWriter {
 public:
  explicit FileWriter(std::shared_ptr<StateFiles> files) : files_(std::move(files)) {}
  void write(uv_loop_t* loop, std::uint64_t covers, std::string_view state, std::function<void(Status)> done) override {
    struct Job {
      uv_work_t work{};
      std::shared_ptr<StateFiles> files;
      std::string bytes;
      std::function<void(Status)> done;
      Status status;
    };
    auto* job = new Job{{}, files_, encode_snapshot(covers, state), std::move(done), {}};
    job->work.data = job;
    int rc = uv_queue_work(
        loop, &job->work, [](uv_work_t* w) {
          auto* job = static_cast<Job*>(w->data);
          job->status = job->files->save(job->bytes);
        },
        [](uv_work_t* w, int) {
          std::unique_ptr<Job> job(static_cast<Job*>(w->data));
          job->done(job->status);
        });
    if (rc != 0) {
      std::unique_ptr<Job> failed(job);
      failed->done(Error(fmt::format("cannot queue the state write: {}", uv_strerror(rc))));
    }
  }

 private:
  std::shared_ptr<StateFiles> files_;
};

}  // namespace

TransformState::TransformState(uv_loop_t* loop, std::string component, std::string base, ComponentMetrics& metrics,
                               std::shared_ptr<buffer::StateCoverage> coverage)
    : loop_(loop),
      component_(std::move(component)),
      files_(std::make_shared<StateFiles>(std::move(base))),
      writer_(std::make_shared<FileWriter>(files_)),
      metrics_(metrics),
      coverage_(std::move(coverage)) {}

TransformState::TransformState(uv_loop_t* loop, std::string component, std::shared_ptr<SnapshotWriter> writer,
                               ComponentMetrics& metrics, std::uint64_t snapshot_interval_ms)
    : loop_(loop),
      component_(std::move(component)),
      writer_(std::move(writer)),
      metrics_(metrics),
      snapshot_interval_ms_(snapshot_interval_ms) {}

TransformState::~TransformState() = default;

std::string encode_snapshot(std::uint64_t covers, std::string_view state) {
  std::string out(8, '\0');
  std::memcpy(out.data(), &covers, 8);
  out += state;
  return out;
}

Result<std::optional<SavedSnapshot>> load_snapshot(StateFiles& files) {
  auto loaded = files.load();
  if (!loaded.ok()) return loaded.error();
  if (!loaded.value() || loaded.value()->size() < 8) return std::optional<SavedSnapshot>();
  SavedSnapshot saved;
  std::memcpy(&saved.covers, loaded.value()->data(), 8);
  saved.state = loaded.value()->substr(8);
  return std::optional<SavedSnapshot>(std::move(saved));
}

Result<std::optional<std::string>> TransformState::load() {
  if (!files_) return std::optional<std::string>();
  auto loaded = load_snapshot(*files_);
  if (!loaded.ok()) return loaded.error();
  std::optional<std::uint64_t> covers;
  std::optional<std::string> state;
  if (loaded.value()) {
    covers = loaded.value()->covers;
    state = std::move(loaded.value()->state);
  }
  first_ = next_ = covered_ = covers.value_or(0);
  if (coverage_) coverage_->set_loaded(component_, covers);
  return state;
}

AckRef TransformState::hold(std::vector<AckRef> acks) {
  Held held;
  held.acks = std::move(acks);
  held_.push_back(std::move(held));
  std::uint64_t seq = next_++;
  std::weak_ptr<TransformState> weak = weak_from_this();
  AckRef ack = Acknowledgement::make([weak, seq](DeliveryStatus status, const std::string& reason) {
    if (auto self = weak.lock()) self->downstream_done(seq, status, reason);
  });
  if (coverage_) ack->set_state_mark({component_, seq});
  return ack;
}

void TransformState::processed() {
  if (covered_ == next_ || closed_) return;
  std::uint64_t now = uv_now(loop_);
  if (now - last_snapshot_ms_ >= snapshot_interval_ms_) return snapshot_now();
  if (soon_.initialized() && uv_is_active(soon_.base())) return;
  start_timer(soon_, loop_, this, [](uv_timer_t* t) { static_cast<TransformState*>(t->data)->snapshot_now(); },
              snapshot_interval_ms_ - (now - last_snapshot_ms_));
}

void TransformState::snapshot_now() {
  if (covered_ == next_ || closed_ || !take_snapshot) return;
  last_snapshot_ms_ = uv_now(loop_);
  std::optional<std::string> state = take_snapshot();
  if (!state) return;  // nothing covers these batches: their acknowledgements stay held
  covered_ = next_;
  snapshots_.push_back({next_, std::move(*state)});
  maybe_write();
}

void TransformState::snapshot_taken(std::string state) {
  if (covered_ == next_ || closed_) return;
  last_snapshot_ms_ = uv_now(loop_);
  covered_ = next_;
  snapshots_.push_back({next_, std::move(state)});
  maybe_write();
}

void TransformState::downstream_done(std::uint64_t seq, DeliveryStatus status, const std::string& reason) {
  if (seq < first_ || seq >= next_) return;
  Held& held = held_[seq - first_];
  held.done = true;
  held.status = status;
  held.reason = reason;
  maybe_write();
}

// Writes the newest snapshot whose batches are all done downstream.
void TransformState::maybe_write() {
  if (writing_ || closed_) return;
  std::uint64_t done_end = first_;
  while (done_end < next_ && held_[done_end - first_].done) ++done_end;
  std::optional<Snapshot> chosen;
  while (!snapshots_.empty() && snapshots_.front().covers <= done_end) {
    chosen = std::move(snapshots_.front());
    snapshots_.pop_front();
  }
  if (!chosen) return;
  writing_ = true;
  std::weak_ptr<TransformState> weak = weak_from_this();
  // Kept for written(): a failed write puts it back to be tried again.
  auto kept = std::make_shared<Snapshot>(std::move(*chosen));
  writer_->write(loop_, kept->covers, kept->state, [weak, kept](Status status) {
    auto self = weak.lock();
    if (!self) return;
    self->writing_ = false;
    if (!self->closed_) self->written(*kept, status);
  });
}

void TransformState::written(const Snapshot& snapshot, const Status& status) {
  if (!status.ok()) {
    // The acknowledgements stay held (their sources keep waiting or will send again); the
    // next snapshot tries again.
    metrics_.errors.add();
    metrics_.retrying(uv_now(loop_), "state: " + status.error().message());
    log::error(component_, "state: {}; acknowledgements wait for the next snapshot", status.error().message());
    snapshots_.push_front({snapshot.covers, snapshot.state});
    start_timer(retry_, loop_, this, [](uv_timer_t* t) { static_cast<TransformState*>(t->data)->maybe_write(); }, 1000);
    return;
  }
  if (metrics_.retrying_since_ms.get()) metrics_.recovered();
  if (coverage_) coverage_->advance(component_, snapshot.covers);
  while (first_ < snapshot.covers) {
    Held held = std::move(held_.front());
    held_.pop_front();
    ++first_;
    if (held.status != DeliveryStatus::Delivered) {
      for (auto& ack : held.acks) ack->fail(held.reason);
    }
    // Dropping `held` releases the sources' acknowledgements.
  }
  maybe_write();
  if (idle() && on_idle) on_idle();
}

}  // namespace weir::runtime
