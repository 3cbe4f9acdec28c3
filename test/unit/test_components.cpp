#include "test_components.hpp"

#include <catch2/catch.hpp>

#include "config/config.hpp"
#include "topology/graph.hpp"

#include <map>

#include "weir/json.hpp"
#include "weir/log.hpp"
#include "weir/registry.hpp"
#include "weir/uv.hpp"

namespace weir::testing {

Probe& Probe::get() {
  static Probe probe;
  return probe;
}

void Probe::reset() { *this = Probe(); }

namespace {

// Emits `count` events {"n": i} in batches of `batch`, as fast as downstream allows,
// each batch with an acknowledgement when `acks` is set.
class TestSource final : public Source {
 public:
  static Result<std::unique_ptr<TestSource>> create(const Options& o) {
    auto s = std::make_unique<TestSource>();
    s->count_ = o.integer("count");
    s->batch_ = o.integer("batch");
    s->acks_ = o.boolean("acks");
    return s;
  }
  Status start(SourceContext& ctx) override {
    ctx_ = &ctx;
    arm();
    return {};
  }
  void resume() override {
    ++Probe::get().resumes;
    arm();
  }
  void stop() override { finish(); }

 private:
  void arm() {
    if (!done_) start_timer(timer_, ctx_->loop(), this, [](uv_timer_t* t) { static_cast<TestSource*>(t->data)->tick(); }, 0);
  }
  void tick() {
    Probe& probe = Probe::get();
    while (next_ < count_ && !done_) {
      auto batch = EventBatch::create();
      for (std::int64_t i = 0; i < batch_ && next_ < count_; ++i, ++next_) {
        batch->add_event().fields.append_member(batch->arena(), "n", Value::integer(next_));
      }
      batch->set_byte_size(8 * batch->size());  // about {"n":i}
      if (acks_) {
        batch->add_ack(Acknowledgement::make([](DeliveryStatus status, const std::string& reason) {
          Probe& p = Probe::get();
          if (status == DeliveryStatus::Delivered) ++p.delivered_acks;
          else ++p.failed_acks, p.last_failure = reason;
        }));
      }
      bool room = ctx_->emit(std::move(batch));
      probe.emitted = next_;
      if (probe.on_emit) probe.on_emit(next_, room);
      if (!room) {
        ++probe.pauses;
        return;
      }
    }
    if (next_ >= count_) finish();
  }
  void finish() {
    if (done_) return;
    done_ = true;
    timer_.close();
    ctx_->finished();
  }

  SourceContext* ctx_ = nullptr;
  UvTimer timer_;
  std::int64_t count_ = 0, batch_ = 1, next_ = 0;
  bool acks_ = false;
  bool done_ = false;
};

// Records every event as JSON; refuses batches while Probe::sinks_ready is false; fails
// every batch's acknowledgement when `fail` is set.
class TestSink final : public Sink {
 public:
  static Result<std::unique_ptr<TestSink>> create(const Options& o) {
    auto s = std::make_unique<TestSink>();
    s->fail_ = o.boolean("fail");
    s->metadata_ = o.boolean("metadata");
    return s;
  }
  Status start(SinkContext& ctx) override {
    ctx_ = &ctx;
    Probe::get().sink_contexts.push_back(&ctx);
    return {};
  }
  bool ready() const override { return Probe::get().sinks_ready; }
  void consume(BatchPtr batch) override {
    if (Probe::get().on_consume) Probe::get().on_consume(ctx_->name(), *batch);
    auto& seen = Probe::get().received[ctx_->name()];
    for (const Event& e : batch->events()) {
      seen.push_back(metadata_ ? "{\"fields\":" + to_json(e.fields) + ",\"metadata\":" + to_json(e.metadata) + "}"
                               : to_json(e.fields));
    }
    if (fail_) batch->fail("test sink refuses");
    ctx_->metrics().events_sent.add(batch->size());
  }
  void drain(std::function<void()> done) override { done(); }

 private:
  SinkContext* ctx_ = nullptr;
  bool fail_ = false;
  bool metadata_ = false;  // record {"fields":..,"metadata":..}
};

// Where a transform's process() ran (Probe::process_on_loop / process_off_loop).
void count_process_thread() {
  Probe& probe = Probe::get();
  ++(std::this_thread::get_id() == probe.loop_thread ? probe.process_on_loop : probe.process_off_loop);
}

// Sets field `tagged` to true on every event (proves fan-out copies are independent).
class TestTag final : public Transform {
 public:
  static Result<std::unique_ptr<TestTag>> create(const Options& o) {
    auto tag = std::make_unique<TestTag>();
    tag->off_loop_ = o.boolean("off_loop");
    return tag;
  }
  bool runs_off_loop() const override { return off_loop_; }
  void process(BatchPtr batch, TransformContext& ctx) override {
    count_process_thread();
    for (Event& e : batch->events()) e.fields.set(batch->arena(), "tagged", Value::boolean(true));
    ctx.emit(std::move(batch));
  }

 private:
  bool off_loop_ = false;
};

// Routes events with even `n` to output `even`, odd to `odd`, and dead-letters n % 10 == 7.
class TestSplit final : public Transform {
 public:
  static Result<std::unique_ptr<TestSplit>> create(const Options& o) {
    auto split = std::make_unique<TestSplit>();
    split->off_loop_ = o.boolean("off_loop");
    return split;
  }
  std::vector<std::string> outputs() const override { return {"", "even", "odd"}; }
  bool runs_off_loop() const override { return off_loop_; }
  void process(BatchPtr batch, TransformContext& ctx) override {
    count_process_thread();
    BatchPtr even = batch->derive(), odd = batch->derive();
    for (Event& e : batch->events()) {
      std::int64_t n = e.fields.find("n")->as_int();
      if (n % 10 == 7) ctx.dead_letter(e, "sevens are rejected");
      else (n % 2 == 0 ? even : odd)->events().push_back(e);
    }
    ctx.emit(std::move(even), 1);
    ctx.emit(std::move(odd), 2);
  }

 private:
  bool off_loop_ = false;
};

// Keeps a running count of the events it saw (durable state) and writes it into each
// event as `seen`.
class TestCount final : public Transform {
 public:
  static Result<std::unique_ptr<TestCount>> create(const Options& o) {
    auto count = std::make_unique<TestCount>();
    count->off_loop_ = o.boolean("off_loop");
    return count;
  }
  bool runs_off_loop() const override { return off_loop_; }
  void process(BatchPtr batch, TransformContext& ctx) override {
    count_process_thread();
    for (Event& e : batch->events()) e.fields.set(batch->arena(), "seen", Value::integer(++seen_));
    ctx.emit(std::move(batch));
  }
  bool keeps_state() const override { return true; }
  std::string snapshot() const override { return std::to_string(seen_); }
  Status restore(std::string_view snapshot) override {
    seen_ = std::stoll(std::string(snapshot));
    return {};
  }

 private:
  std::int64_t seen_ = 0;
  bool off_loop_ = false;
};

const OptionSchema kSourceSchema = {
    {.name = "count", .type = OptionType::Integer, .default_value = "10"},
    {.name = "batch", .type = OptionType::Integer, .default_value = "1"},
    {.name = "acks", .type = OptionType::Bool, .default_value = "false"},
};
const OptionSchema kOffLoopSchema = {{.name = "off_loop", .type = OptionType::Bool, .default_value = "false"}};
const OptionSchema kSinkSchema = {{.name = "fail", .type = OptionType::Bool, .default_value = "false"},
                                   {.name = "metadata", .type = OptionType::Bool, .default_value = "false"}};

}  // namespace

WEIR_REGISTER_SOURCE("test_source", "test: numbered events", kSourceSchema, TestSource::create);
WEIR_REGISTER_SINK("test_sink", "test: records events", kSinkSchema, TestSink::create);
WEIR_REGISTER_TRANSFORM("test_tag", "test: tags events", kOffLoopSchema, TestTag::create);
WEIR_REGISTER_TRANSFORM("test_split", "test: even/odd outputs", kOffLoopSchema, TestSplit::create);
WEIR_REGISTER_TRANSFORM("test_count", "test: counts events, durable", kOffLoopSchema, TestCount::create);

}  // namespace weir::testing

namespace {
// Unit tests run pipelines; their info lines would drown Catch2's report.
[[maybe_unused]] const bool quiet_logs = (weir::log::set_level(weir::log::Level::Warn), true);
}  // namespace

namespace weir::testing {

struct TransformHarness::Built {
  topology::Graph graph;
};

TransformHarness::TransformHarness(const std::string& type, const std::string& options, const std::string& sink_input)
    : built_(std::make_unique<Built>()) {
  config::Diagnostics d;
  auto cfg = config::load_text("sources:\n  in: { type: stdin }\ntransforms:\n  t: { type: " + type + ", inputs: [in]" +
                                   options + " }\nsinks:\n  out: { type: blackhole, inputs: [" + sink_input + "] }\n",
                               "harness.yaml", d);
  for (const auto& e : d.errors) UNSCOPED_INFO(e.to_string());
  REQUIRE(d.ok());
  built_->graph = topology::build(std::move(cfg), d);
  for (const auto& e : d.errors) UNSCOPED_INFO(e.to_string());
  REQUIRE(d.ok());
  for (auto& node : built_->graph.nodes) {
    if (node.transform) transform_ = node.transform.get();
  }
  Status started = transform_->start(*this);  // no loop here: timers must be off in tests
  if (!started.ok()) FAIL(started.error().to_string());
}

TransformHarness::~TransformHarness() = default;

bool TransformHarness::dead_letter(const Event& e, std::string_view reason) {
  dead.push_back(std::string(reason) + " " + to_json(e.fields));
  return true;
}

void TransformHarness::emit(BatchPtr batch, std::size_t output) {
  emitted_outputs_.push_back(output);
  emitted_.push_back(std::move(batch));
}

std::vector<std::string> TransformHarness::feed(const std::vector<std::string>& events,
                                                const std::vector<std::string>& metadata) {
  auto batch = EventBatch::create();
  JsonParser parser;
  for (std::size_t i = 0; i < events.size(); ++i) {
    Event e{parser.parse(events[i], batch->arena()).value(), Value::null()};
    if (i < metadata.size()) e.metadata = parser.parse(metadata[i], batch->arena()).value();
    batch->events().push_back(e);
  }
  batch->add_ack(std::move(next_ack));
  next_ack = nullptr;
  if (!partition.empty()) batch->set_partition(std::make_shared<PartitionPosition>(PartitionPosition{partition, 0}));
  emitted_.clear();
  emitted_outputs_.clear();
  transform_->process(std::move(batch), *this);
  return take_emitted();
}

std::vector<std::string> TransformHarness::flush() {
  emitted_.clear();
  emitted_outputs_.clear();
  transform_->flush(*this);
  return take_emitted();
}

std::vector<std::string> TransformHarness::take_emitted() {
  std::vector<std::string> out;
  outputs.clear();
  partitions.clear();
  for (std::size_t b = 0; b < emitted_.size(); ++b) {
    for (const Event& e : emitted_[b]->events()) {
      out.push_back(to_json(e.fields));
      outputs.push_back(emitted_outputs_[b]);
      partitions.push_back(emitted_[b]->partition() ? emitted_[b]->partition()->partition : std::string());
    }
  }
  last = emitted_.empty() ? nullptr : std::move(emitted_.back());
  return out;
}

}  // namespace weir::testing
