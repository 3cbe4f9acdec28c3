#include "replay/capture_sink.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "weir/json.hpp"
#include "weir/log.hpp"
#include "weir/uv.hpp"

namespace weir::replay {

struct CaptureSink::Files {
  std::FILE* file[2] = {nullptr, nullptr};  // by Stream
  std::string error[2];                     // the first write that failed
  ~Files() {
    for (std::FILE* f : file) {
      if (f != nullptr) std::fclose(f);
    }
  }
};

struct CaptureSink::Job {
  uv_work_t work{};
  CaptureSink* owner = nullptr;
  Stream stream = kEvents;
  std::uint64_t sequence = 0;
  std::shared_ptr<const EventBatch> batch;  // dropped on the loop, where the job is freed
  std::shared_ptr<Sink> real;
  std::shared_ptr<Files> files;
  std::shared_ptr<CaptureStore> store;
  std::vector<CaptureRejection> rejected;

  void run() {
    ByteBuffer out;
    if (stream == kEvents) {
      for (const Event& e : batch->events()) {
        std::size_t from = out.size();
        write_json(e.fields, out);
        if (store) store->events.emplace_back(out.view().substr(from));
        out.push_back('\n');
      }
    } else {
      real->capture(*batch, out, rejected);
      if (store) store->encoded.append(out.view());
    }
    if (store || files->file[stream] == nullptr || out.size() == 0 || !files->error[stream].empty()) return;
    if (std::fwrite(out.data(), 1, out.size(), files->file[stream]) != out.size()) {
      files->error[stream] = std::strerror(errno);
    }
  }
};

CaptureSink::CaptureSink(std::string name, std::unique_ptr<Sink> real, std::string directory,
                         std::shared_ptr<CaptureStore> store)
    : name_(std::move(name)), real_(std::move(real)), directory_(std::move(directory)), store_(std::move(store)) {}

CaptureSink::~CaptureSink() {
  for (Job* job : jobs_) {
    if (job != nullptr) job->owner = nullptr;
  }
}

Status CaptureSink::start(SinkContext& ctx) {
  ctx_ = &ctx;
  std::string format = real_->capture_format();
  has_encoding_ = !format.empty();
  if (store_) {
    store_->format = format;
    return {};
  }
  files_ = std::make_shared<Files>();
  std::error_code ec;
  std::filesystem::create_directories(directory_, ec);
  if (ec) return Error(fmt::format("cannot create {}: {}", directory_, ec.message()));
  auto open = [&](const std::string& path, std::FILE*& f) -> Status {
    f = std::fopen(path.c_str(), "wb");
    if (f == nullptr) return Error(fmt::format("cannot write {}: {}", path, std::strerror(errno)));
    return {};
  };
  if (Status s = open(directory_ + "/" + name_ + ".ndjson", files_->file[kEvents]); !s.ok()) return s;
  if (!format.empty()) {
    if (Status s = open(directory_ + "/" + name_ + "." + format, files_->file[kEncoded]); !s.ok()) return s;
  }
  return {};
}

void CaptureSink::consume(BatchPtr batch) {
  Held held;
  held.batch.reset(batch.release());
  // Without an encoding of its own there is nothing for the second stream to do.
  if (!has_encoding_) held.done[kEncoded] = true;
  held_.push_back(std::move(held));
  next_jobs();
}

void CaptureSink::next_jobs() {
  for (Stream stream : {kEvents, kEncoded}) {
    if (jobs_[stream] != nullptr) continue;
    while (next_[stream] < first_held_ + held_.size() && held_[next_[stream] - first_held_].done[stream]) ++next_[stream];
    if (next_[stream] >= first_held_ + held_.size()) continue;
    Held& held = held_[next_[stream] - first_held_];
    auto job = std::make_unique<Job>();
    job->owner = this;
    job->stream = stream;
    job->sequence = next_[stream];
    job->batch = held.batch;
    job->real = real_;
    job->files = files_;
    job->store = store_;
    int rc = 0;
    jobs_[stream] = queue_job(ctx_->loop(), job, rc);
    if (jobs_[stream] == nullptr) {
      // Not captured: the batch fails, as a sink that cannot write fails it.
      held.batch->fail("capture: " + uv_error_text(rc));
      ctx_->metrics().errors.add();
      held.done[stream] = true;
    }
  }
  release_done();
}

void CaptureSink::job_done(Job& job) {
  jobs_[job.stream] = nullptr;
  Held& held = held_[job.sequence - first_held_];
  held.done[job.stream] = true;
  if (job.stream == kEncoded) held.rejected = std::move(job.rejected);
  if (files_ && !files_->error[job.stream].empty()) {
    held.batch->fail("capture: " + files_->error[job.stream]);
    ctx_->metrics().errors.add();
    log::error(name_, "capture: cannot write to {}: {}", directory_, files_->error[job.stream]);
    files_->error[job.stream].clear();
  }
  bool was_full = !ready();
  next_jobs();
  if (was_full && ready()) ctx_->ready_again();
}

// Batches both streams wrote go, in order: their dead letters first (the encoder refused
// them), then the batch itself, whose acknowledgements then say delivered.
void CaptureSink::release_done() {
  while (!held_.empty() && held_.front().done[kEvents] && held_.front().done[kEncoded]) {
    Held& held = held_.front();
    for (const CaptureRejection& r : held.rejected) ctx_->dead_letter(held.batch->events()[r.index], r.reason);
    ctx_->metrics().events_sent.add(held.batch->size() - held.rejected.size());
    ctx_->metrics().bytes_sent.add(held.batch->byte_size());
    held_.pop_front();
    ++first_held_;
  }
  check_drained();
}

void CaptureSink::drain(std::function<void()> done) {
  drained_ = std::move(done);
  check_drained();
}

void CaptureSink::check_drained() {
  if (!drained_ || !held_.empty() || jobs_[kEvents] != nullptr || jobs_[kEncoded] != nullptr) return;
  if (files_) {
    for (std::FILE*& f : files_->file) {
      if (f != nullptr && std::fclose(f) != 0) log::error(name_, "capture: closing a file in {} failed", directory_);
      f = nullptr;
    }
  }
  auto done = std::move(drained_);
  drained_ = nullptr;
  done();
}

}  // namespace weir::replay
