// Components used only by the tests, registered through the same public API as the
// built-in ones, with hooks the tests use to observe and steer them.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "weir/component.hpp"
#include "weir/event.hpp"

namespace weir::testing {

// Shared observations, reset by each test.
struct Probe {
  // test_source
  std::int64_t emitted = 0;
  int pauses = 0;
  int resumes = 0;
  std::int64_t delivered_acks = 0;
  std::int64_t failed_acks = 0;
  std::string last_failure;
  // test_sink: events seen per sink name
  std::map<std::string, std::vector<std::string>> received;
  // test_sink readiness: while false the sink refuses batches
  bool sinks_ready = true;
  std::vector<SinkContext*> sink_contexts;
  // called after every emit of test_source with (events so far, room)
  std::function<void(std::int64_t, bool)> on_emit;
  // called by test_sink with each batch before it records it
  std::function<void(const std::string&, const EventBatch&)> on_consume;
  // test_tag and test_split (`off_loop: true` lets them run off the loop): process() calls
  // made on `loop_thread` and on any other thread (their calls never overlap: plain counts).
  std::thread::id loop_thread = std::this_thread::get_id();
  int process_on_loop = 0;
  int process_off_loop = 0;

  static Probe& get();
  void reset();
};

// Runs one transform of `type` (with extra YAML `options`, e.g. ", overwrite: true") on
// batches built from JSON texts, without a runtime.
class TransformHarness : public TransformContext {
 public:
  // `sink_input`: what the harness's sink reads (a route has only named outputs).
  TransformHarness(const std::string& type, const std::string& options = "", const std::string& sink_input = "t");
  ~TransformHarness() override;

  // One batch in; the JSON of every event it emitted (all outputs, in order).
  std::vector<std::string> feed(const std::vector<std::string>& events, const std::vector<std::string>& metadata = {});
  // Every input ended (Transform::flush): what it emitted then.
  std::vector<std::string> flush();
  // The transform's durable state (Transform::snapshot / restore).
  std::string snapshot() const { return transform_->snapshot(); }
  std::optional<std::string> try_snapshot() const { return transform_->try_snapshot(); }
  Status restore(std::string_view state) { return transform_->restore(state); }
  // State per partition (ADR 017).
  std::optional<std::string> snapshot_partition(const std::string& p) { return transform_->snapshot_partition(p); }
  Status restore_partition(const std::string& p, std::string_view state) { return transform_->restore_partition(p, state); }
  void drop_partition(const std::string& p) { transform_->drop_partition(p); }
  // When set, the batches fed come from this partition of a partitioned input.
  std::string partition;
  std::vector<std::string> partitions;  // the partition each emitted event's batch carried ("": none), last feed

  AckRef next_ack;                // when set, the next feed's batch carries it (then it is cleared)
  std::vector<std::string> dead;  // "reason {event}"
  BatchPtr last;                  // the last batch emitted
  std::vector<std::size_t> outputs;  // output index of each emitted event in the last feed
  InputClock clock_;                 // the tests move it
  Random random_{1};

  uv_loop_t* loop() override { return nullptr; }
  const std::string& name() const override { return name_; }
  const std::string& type() const override { return name_; }
  const std::string& data_dir() const override { return name_; }
  ComponentMetrics& metrics() override { return metrics_; }
  const Clock& clock() const override { return clock_; }
  Random& random() override { return random_; }
  bool dead_letter(const Event& e, std::string_view reason) override;
  bool dead_letter_raw(std::string_view, std::uint64_t, std::string_view reason) override {
    dead.emplace_back(reason);
    return true;
  }
  void hold_until_dead_letters_written(std::vector<AckRef>) override {}  // kept in `dead`, at once
  void fail_pipeline(std::string_view) override {}
  void emit(BatchPtr batch, std::size_t output) override;

 private:
  std::vector<std::string> take_emitted();
  struct Built;
  std::unique_ptr<Built> built_;
  Transform* transform_ = nullptr;
  std::string name_ = "t";
  ComponentMetrics metrics_;
  std::vector<BatchPtr> emitted_;
  std::vector<std::size_t> emitted_outputs_;
};

}  // namespace weir::testing
