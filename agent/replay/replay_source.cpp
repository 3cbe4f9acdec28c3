#include "replay/replay_source.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "weir/field_path.hpp"
#include "weir/log.hpp"
#include "weir/time.hpp"

namespace weir::replay {

namespace {
// Batches decoded ahead of the pipeline: enough to keep it busy, few enough to stay in the
// cache (4 measured 15% faster than 16).
constexpr std::size_t kAhead = 4;
constexpr std::size_t kPadding = 64;  // what simdjson may read past a line's end
}

struct ReplaySource::Prepared {
  BatchPtr batch;
  std::vector<DecodeRejection> rejected;
  EpochNanos first_time = 0, latest_time = 0;
  bool timed = false;  // some event had a readable timestamp
};

// Reads and decodes up to `wanted` batches on the thread pool. The log and the decoder are
// used by this job alone while it runs (one job at a time).
struct ReplaySource::Job {
  uv_work_t work{};
  ReplaySource* owner = nullptr;  // null once the source is gone
  std::shared_ptr<RecordedLog> log;
  std::shared_ptr<LineDecoder> decoder;
  std::size_t wanted = 0, batch_events = 0;
  FieldPath timestamp;
  std::vector<std::unique_ptr<Prepared>> made;
  bool at_end = false;
  std::string error;

  void run() {
    std::string lines;
    for (std::size_t n = 0; n < wanted; ++n) {
      lines.clear();
      auto read = log->read_lines(batch_events, lines);
      if (!read.ok()) {
        error = read.error().message();
        at_end = true;
        if (lines.empty()) return;  // else the lines read before the failure still go in
      } else if (read.value() == 0) {
        at_end = true;
        return;
      }
      auto prepared = std::make_unique<Prepared>();
      prepared->batch = EventBatch::create();
      lines.append(kPadding, '\0');
      std::size_t size = lines.size() - kPadding;
      decoder->decode(lines.data(), size, lines.size(), *prepared->batch, prepared->rejected);
      prepared->batch->set_byte_size(size);
      for (const Event& e : prepared->batch->events()) {
        const Value* ts = timestamp.find(e.fields);
        if (ts == nullptr) continue;
        auto at = parse_timestamp(*ts);
        if (!at.ok()) continue;
        if (!prepared->timed) prepared->first_time = prepared->latest_time = at.value();
        prepared->timed = true;
        prepared->latest_time = std::max(prepared->latest_time, at.value());
      }
      made.push_back(std::move(prepared));
      if (at_end) return;
    }
  }
};

ReplaySource::ReplaySource(ReplayInput input, std::vector<std::string> outputs)
    : input_(std::move(input)), outputs_(std::move(outputs)) {
  // Paced: an event a batch, each emitted at its own time (a recorded CVAT log has tens of
  // events a second, far below what single-event batches cost).
  if (input_.speed > 0) input_.batch_events = 1;
  input_.batch_events = std::max<std::size_t>(1, input_.batch_events);
}

ReplaySource::~ReplaySource() {
  if (job_ != nullptr) job_->owner = nullptr;  // the loop still ends it; it then finds no one
}

Status ReplaySource::start(SourceContext& ctx) {
  ctx_ = &ctx;
  if (input_.path.empty()) {
    log_ = RecordedLog::from_text(std::move(input_.text));
  } else {
    auto opened = RecordedLog::open(input_.path);
    if (!opened.ok()) return opened.error();
    log_ = std::move(opened.value());
  }
  decoder_ = std::make_shared<LineDecoder>(Codec::Json);
  for (const DecodeRejection& r : input_.rejected) ctx.dead_letter_raw(r.raw, r.line, r.reason);
  started_ms_ = uv_now(ctx.loop());
  prepare_more();
  return {};
}

void ReplaySource::prepare_more() {
  if (job_ != nullptr || log_done_ || stopping_ || ready_.size() > kAhead / 2) return;
  auto job = std::make_unique<Job>();
  job->owner = this;
  job->log = log_;
  job->decoder = decoder_;
  job->wanted = kAhead - ready_.size();
  job->batch_events = input_.batch_events;
  job->timestamp = FieldPath(input_.timestamp_field);
  int rc = 0;
  job_ = queue_job(ctx_->loop(), job, rc);
  if (job_ == nullptr) {
    log::error(ctx_->name(), "cannot read {}: {}", log_->name(), uv_error_text(rc));
    log_done_ = true;
    read_failed_ = true;
    deliver();
  }
}

void ReplaySource::job_done(Job& job) {
  job_ = nullptr;
  for (auto& made : job.made) ready_.push_back(std::move(made));
  if (!job.error.empty()) {
    log::error(ctx_->name(), "replay input: {}; the events before it were replayed", job.error);
    read_failed_ = true;
    ctx_->metrics().errors.add();
  }
  if (job.at_end) log_done_ = true;
  deliver();
  prepare_more();
}

void ReplaySource::resume() {
  waiting_ = false;
  deliver();
}

void ReplaySource::deliver() {
  while (!waiting_ && !stopping_ && !ready_.empty()) {
    Prepared& next = *ready_.front();
    if (next.timed && !have_first_time_) {
      first_time_ = next.first_time;
      have_first_time_ = true;
    }
    if (input_.speed > 0 && next.timed) {
      // The recorded pace: this batch is due when as much wall time has passed as event
      // time since the first event (divided by the speed).
      double due_ms = static_cast<double>(next.first_time - first_time_) / 1e6 / input_.speed;
      std::uint64_t elapsed = uv_now(ctx_->loop()) - started_ms_;
      auto due = static_cast<std::uint64_t>(std::ceil(std::max(0.0, due_ms)));  // an event out of order: now
      if (due > elapsed) {
        // At least 1 ms: a timer of 0 re-armed from its own callback would fire again
        // before the loop's time moves on.
        start_timer(pace_, ctx_->loop(), this, [](uv_timer_t* t) { static_cast<ReplaySource*>(t->data)->deliver(); },
                    due - elapsed);
        return;
      }
    }
    std::unique_ptr<Prepared> prepared = std::move(ready_.front());
    ready_.pop_front();
    if (input_.clock && prepared->timed) input_.clock->advance_to(prepared->latest_time);
    for (const DecodeRejection& r : prepared->rejected) ctx_->dead_letter_raw(r.raw, r.line, r.reason);
    emitted_ += prepared->batch->size();
    bool room = ctx_->emit(std::move(prepared->batch));
    if (!room) waiting_ = true;
    prepare_more();
  }
  if (job_ == nullptr && (stopping_ || (log_done_ && ready_.empty()))) finish();
}

void ReplaySource::stop() {
  stopping_ = true;
  ready_.clear();
  pace_.close();
  if (job_ == nullptr) finish();  // else when the job is back
}

void ReplaySource::finish() {
  if (finished_) return;
  finished_ = true;
  pace_.close();
  ctx_->finished();
}

}  // namespace weir::replay
