// State per partition (ADR 017) through the runtime: a partitioned source's partition is
// restored from its store before it is read, and read on from the offset the state covers;
// the state goes to the store (after the flush at the end); graphs the runtime cannot keep
// state per partition for are refused at start.
#include <catch2/catch.hpp>

#include <map>

#include <fmt/format.h>

#include "pipeline_helpers.hpp"
#include "test_components.hpp"
#include "weir/registry.hpp"
#include "weir/time.hpp"

using namespace weir;
using namespace weir::testing;

namespace {

// A store in memory, answering at once.
class MemoryStore final : public PartitionStateStore {
 public:
  std::map<std::pair<std::string, std::string>, PartitionSnapshot> saved;
  int writes = 0;
  void read(const std::string& owner, const std::string& partition,
            std::function<void(Result<std::optional<PartitionSnapshot>>)> done) override {
    auto found = saved.find({owner, partition});
    done(found == saved.end() ? std::optional<PartitionSnapshot>() : std::optional<PartitionSnapshot>(found->second));
  }
  void write(const std::string& owner, const std::string& partition, PartitionSnapshot snapshot,
             std::function<void(Status)> done) override {
    saved[{owner, partition}] = std::move(snapshot);
    ++writes;
    done({});
  }
};

std::shared_ptr<MemoryStore>& store() {
  static std::shared_ptr<MemoryStore> s;
  return s;
}
std::optional<std::int64_t> g_resumed_at;  // what the last run's restore said

// Events 0..count-1 of one partition, a CVAT client event each (one user, a second apart),
// from where the restored state leaves off, in batches of 10 carrying the partition.
class PartitionedSource final : public Source {
 public:
  static Result<std::unique_ptr<PartitionedSource>> create(const Options& o) {
    auto s = std::make_unique<PartitionedSource>();
    s->count_ = o.integer("count");
    return s;
  }
  bool partitioned() const override { return true; }
  Status start(SourceContext& ctx) override {
    ctx_ = &ctx;
    ctx.partition_assigned("t/0", store(), [this](Result<std::optional<std::int64_t>> ready) {
      REQUIRE(ready.ok());
      g_resumed_at = ready.value();
      next_ = ready.value().value_or(0);
      start_timer(timer_, ctx_->loop(), this, [](uv_timer_t* t) { static_cast<PartitionedSource*>(t->data)->tick(); }, 0);
    });
    return {};
  }
  void stop() override { timer_.close(); }

 private:
  void tick() {
    while (next_ < count_) {
      auto batch = EventBatch::create();
      for (int i = 0; i < 10 && next_ < count_; ++i, ++next_) {
        ByteBuffer ts;
        format_iso8601(1704110400LL * 1'000'000'000 + next_ * 1'000'000'000, 3, ts);
        Event& e = batch->add_event();
        for (auto [key, value] : {std::pair<const char*, Value>{"source", Value::string_view("client")},
                                  {"scope", Value::string_view("click:element")},
                                  {"timestamp", Value::string(batch->arena(), ts.view())},
                                  {"job_id", Value::integer(1 + next_ / 30)},
                                  {"user_id", Value::integer(7)}}) {
          e.fields.append_member(batch->arena(), key, value);
        }
      }
      batch->set_partition(std::make_shared<PartitionPosition>(PartitionPosition{"t/0", next_}));
      if (!ctx_->emit(std::move(batch))) return;
    }
    timer_.close();
    ctx_->finished();
  }

  SourceContext* ctx_ = nullptr;
  UvTimer timer_;
  std::int64_t count_ = 0, next_ = 0;
};

const OptionSchema kSchema = {{.name = "count", .type = OptionType::Integer, .required = true, .doc = "Events in all."}};
WEIR_REGISTER_SOURCE("test_partitioned_source", "test: one partition's events, restored", kSchema,
                     PartitionedSource::create);

// The working time of the rows a run delivered.
std::int64_t rows_ms(const std::vector<std::string>& out) {
  std::int64_t ms = 0;
  for (const std::string& e : out) {
    auto at = e.find(R"("scope":"send:working_time")");
    if (at == std::string::npos) continue;
    auto d = e.find(R"("duration":)");
    ms += std::stoll(e.substr(d + 11));
  }
  return ms;
}

std::int64_t run_pipeline(const std::string& dir, std::int64_t count) {
  Probe& probe = Probe::get();
  probe.reset();
  auto graph = build("data_dir: " + dir + "\nsources:\n  s: { type: test_partitioned_source, count: " +
                     std::to_string(count) + " }\ntransforms:\n  wt: { type: working_time, inputs: [s] }\n"
                     "sinks:\n  k: { type: test_sink, inputs: [wt] }\n");
  runtime::Runtime rt(graph, quiet());
  CHECK(rt.run() == 0);
  return rows_ms(probe.received["k"]);
}

}  // namespace

TEST_CASE("state per partition: restored before the partition is read, read on from the offset it covers") {
  std::string dir = fresh_dir("partition-state");
  // One run over all 100 events, against two: 0..49, then a new weir given the partition.
  store() = std::make_shared<MemoryStore>();
  std::int64_t whole = run_pipeline(dir + "/whole", 100);
  CHECK(g_resumed_at == std::nullopt);
  REQUIRE(whole == 99'000);  // a second between each of 100 events, whatever the rows

  store() = std::make_shared<MemoryStore>();
  std::int64_t first = run_pipeline(dir + "/a", 50);
  REQUIRE(store()->saved.count({"wt", "t/0"}) == 1);
  CHECK(store()->saved.at({"wt", "t/0"}).next_offset == 50);
  CHECK(store()->saved.at({"wt", "t/0"}).state.find("\"7\"") != std::string::npos);  // user 7's clock
  std::int64_t second = run_pipeline(dir + "/b", 100);  // another data_dir: nothing local carries over
  CHECK(g_resumed_at == std::optional<std::int64_t>(50));
  CHECK(first + second == whole);
  CHECK(store()->writes >= 2);
}

TEST_CASE("state per partition: graphs with no one place for it are refused at start") {
  std::string dir = fresh_dir("partition-refused");
  store() = std::make_shared<MemoryStore>();
  auto refused = [&](const std::string& yaml) {
    auto graph = build("data_dir: " + dir + "\n" + yaml);
    runtime::Runtime rt(graph, quiet());
    return rt.run() != 0;
  };
  // Two transforms that keep state per partition after one source.
  CHECK(refused("sources:\n  s: { type: test_partitioned_source, count: 5 }\n"
                "transforms:\n  a: { type: working_time, inputs: [s] }\n  b: { type: working_time, inputs: [a] }\n"
                "sinks:\n  k: { type: test_sink, inputs: [b] }\n"));
  // One fed by a source without partitions as well.
  CHECK(refused("sources:\n  s: { type: test_partitioned_source, count: 5 }\n  t: { type: test_source, count: 5, batch: 5 }\n"
                "transforms:\n  a: { type: working_time, inputs: [s, t] }\n"
                "sinks:\n  k: { type: test_sink, inputs: [a] }\n"));
}
