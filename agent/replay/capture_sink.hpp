// The sink `weir replay --capture` and `weir test` put in place of each real one: it keeps
// what the sink would have sent instead of sending it. The events as NDJSON, and, when the
// sink has an encoding of its own (Sink::capture_format), the bytes it would have written:
// ClickHouse's JSONEachRow rows, InfluxDB's line protocol. Into files in a directory
// (<sink>.ndjson, <sink>.<format>) or into memory. Encoding and writing run on the thread
// pool, one batch at a time and in order, so the capture is the same on every run.
#pragma once

#include <cstdio>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "weir/component.hpp"

namespace weir::replay {

// What a capture holds in memory (weir test).
struct CaptureStore {
  std::vector<std::string> events;  // JSON, one per event, in order
  std::string encoded;              // the sink's own encoding, concatenated
  std::string format;               // its name; "" when the sink has none
};

class CaptureSink final : public Sink {
 public:
  // Into `directory` (created if missing) when `store` is null.
  CaptureSink(std::string name, std::unique_ptr<Sink> real, std::string directory, std::shared_ptr<CaptureStore> store);
  ~CaptureSink() override;

  Status start(SinkContext& ctx) override;
  void consume(BatchPtr batch) override;
  bool ready() const override { return held_.size() < kMaxHeld; }
  void drain(std::function<void()> done) override;

  struct Job;
  // The two streams of a capture, each written in order by one job at a time; they run
  // side by side on the pool (the events' JSON and the sink's encoding cost about the same).
  enum Stream { kEvents = 0, kEncoded = 1 };

  void job_done(Job& job);  // back from the pool (queue_job)

 private:
  struct Held {
    std::shared_ptr<EventBatch> batch;  // shared with its jobs; let go on the loop (its acknowledgements)
    bool done[2] = {false, false};
    std::vector<CaptureRejection> rejected;
  };
  void next_jobs();
  void release_done();
  void check_drained();

  // Batches held while their streams are written: few, so they are still in the cache when
  // written (8 measured 10% slower than 4 on 2 cores, 16 slower again).
  static constexpr std::size_t kMaxHeld = 4;
  std::string name_;
  std::shared_ptr<Sink> real_;  // shared with the job that encodes through it
  std::string directory_;
  std::shared_ptr<CaptureStore> store_;
  bool has_encoding_ = false;  // the sink's capture_format(), asked once at start
  SinkContext* ctx_ = nullptr;
  struct Files;
  std::shared_ptr<Files> files_;
  std::deque<Held> held_;      // in order; released from the front once both streams wrote them
  std::uint64_t first_held_ = 0;  // sequence number of held_.front()
  std::uint64_t next_[2] = {0, 0};  // per stream: the next batch to write
  Job* jobs_[2] = {nullptr, nullptr};
  std::function<void()> drained_;
};

}  // namespace weir::replay
