// The source `weir replay` and `weir test` put in place of a pipeline's live input: events
// from a recorded NDJSON log (or inline text), cut into batches of a fixed number of events
// so the cuts are a function of the log alone. Lines are read and decoded on the thread
// pool, a few batches ahead; each batch moves the pipeline's InputClock to the latest event
// time in it before it is emitted, and with a speed the batches keep the log's pacing.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "replay/recorded_log.hpp"
#include "weir/clock.hpp"
#include "weir/codec.hpp"
#include "weir/component.hpp"
#include "weir/uv.hpp"

namespace weir::replay {

struct ReplayInput {
  std::string path;          // the log; empty: `text`
  std::string text;          // NDJSON (weir test's events)
  std::size_t batch_events = 1000;
  double speed = 0;          // 0: as fast as the pipeline goes; N: N times the recorded pace
  std::shared_ptr<InputClock> clock;  // moved on by event time (null: none)
  std::string timestamp_field = "timestamp";
  // Rejected before the replay (weir test's raw input, decoded by the source's own format):
  // dead-lettered by this source when it starts.
  std::vector<DecodeRejection> rejected;
};

class ReplaySource final : public Source {
 public:
  // `outputs`: those of the source it stands in for, so the pipeline's inputs still name them.
  ReplaySource(ReplayInput input, std::vector<std::string> outputs);
  ~ReplaySource() override;

  std::vector<std::string> outputs() const override { return outputs_; }
  Status start(SourceContext& ctx) override;
  void resume() override;
  void stop() override;

  std::uint64_t events_emitted() const { return emitted_; }
  // The whole log went in (not stopped by a signal or a failure before its end).
  bool reached_end() const { return log_done_ && !stopping_ && !read_failed_ && ready_.empty(); }
  bool read_failed() const { return read_failed_; }
  std::uint64_t bytes_read() const { return log_ ? log_->bytes_read() : 0; }
  std::uint64_t total_bytes() const { return log_ ? log_->total_bytes() : 0; }

  struct Prepared;  // a decoded batch (replay_source.cpp)
  struct Job;

  void job_done(Job& job);  // back from the pool (queue_job)

 private:
  void prepare_more();
  void deliver();
  void finish();

  ReplayInput input_;
  std::vector<std::string> outputs_;
  SourceContext* ctx_ = nullptr;
  std::shared_ptr<RecordedLog> log_;
  std::shared_ptr<LineDecoder> decoder_;
  std::deque<std::unique_ptr<Prepared>> ready_;
  Job* job_ = nullptr;
  bool log_done_ = false;
  bool waiting_ = false;   // emit() said wait: until resume()
  bool stopping_ = false;
  bool read_failed_ = false;
  bool finished_ = false;
  std::uint64_t emitted_ = 0;
  std::uint64_t started_ms_ = 0;
  EpochNanos first_time_ = 0;
  bool have_first_time_ = false;
  UvTimer pace_;
};

}  // namespace weir::replay
