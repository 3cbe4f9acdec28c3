// Replay in lockstep: the order of events meeting at a fan-in, and what a clock-reading
// transform emits, are a function of the input alone; captures keep a sink's own encoding.
#include <catch2/catch.hpp>

#include "pipeline_helpers.hpp"
#include "replay/replay.hpp"
#include "replay/replay_source.hpp"

#include <fmt/format.h>

using namespace weir;

namespace {

// route splits by parity, two enrich branches stamp now() and merge again into one sink.
const char* kFanIn = R"(
sources:
  in: { type: stdin }
transforms:
  split: { type: route, inputs: [in], route: { even: '.kind == "even"', odd: '.kind == "odd"' } }
  evens: { type: enrich, inputs: [split.even], set: { branch: even, at: now() } }
  odds: { type: enrich, inputs: [split.odd], set: { branch: odd, at: now() } }
  ids: { type: request_id, inputs: [evens, odds] }
sinks:
  out: { type: file, inputs: [ids], path: /nonexistent/never-written }
)";

std::vector<std::string> replay_once(const std::string& log, std::size_t batch_events, std::uint64_t seed) {
  auto graph = testing::build(kFanIn);
  auto clock = std::make_shared<InputClock>();
  replay::ReplayInput input;
  input.text = log;
  input.batch_events = batch_events;
  input.clock = clock;
  REQUIRE(replay::replace_sources(graph, "", input).ok());
  auto stores = replay::capture_sinks(graph, "");
  replay::IsolatedRun isolated(graph, "unit", clock, seed, "");
  isolated.options.handle_signals = false;
  runtime::Runtime rt(graph, isolated.options);
  REQUIRE(rt.run() == 0);
  return stores.at(0).second->events;
}

}  // namespace

TEST_CASE("replay: lockstep makes fan-in order, now() and ids a function of the input and seed") {
  std::string log;
  for (int i = 0; i < 5000; ++i) {
    log += fmt::format(R"({{"n":{},"kind":"{}","timestamp":"2024-01-01T00:{:02}:{:02}Z"}})", i, i % 2 ? "odd" : "even",
                       (i / 60) % 60, i % 60) + "\n";
  }
  auto first = replay_once(log, 100, 0);
  REQUIRE(first.size() == 5000);
  CHECK(replay_once(log, 100, 0) == first);  // the same, run after run
  CHECK(replay_once(log, 100, 1) != first);  // another seed: other ids
  // Each batch goes through both branches before the next enters: the evens of a batch,
  // then its odds (the order the runtime pumps the branches in), batch after batch.
  CHECK(first[0].find(R"("n":0,)") != std::string::npos);
  CHECK(first[1].find(R"("n":2,)") != std::string::npos);
  CHECK(first[50].find(R"("n":1,)") != std::string::npos);
  CHECK(first[100].find(R"("n":100,)") != std::string::npos);
  // now() is the latest event time of the batch being fed: batch 0 ends at 00:01:39.
  CHECK(first[0].find(R"("at":"2024-01-01T00:01:39.000Z")") != std::string::npos);
}

TEST_CASE("replay: a capture keeps the sink's own encoding (InfluxDB line protocol)") {
  auto graph = testing::build(R"(
sources:
  in: { type: stdin }
sinks:
  points:
    type: influxdb
    inputs: [in]
    endpoint: http://127.0.0.1:9
    database: db
    measurement_field: m
    tags: [t]
    fields: [f]
    timestamp: { field: time, precision: ms }
)");
  replay::ReplayInput input;
  input.text = R"({"m":"cpu","t":{"host":"a"},"f":{"v":1.5},"time":"2024-01-01T00:00:00Z"})" "\n"
               R"({"m":"cpu","t":{"host":"b"},"time":"2024-01-01T00:00:01Z"})" "\n";
  REQUIRE(replay::replace_sources(graph, "", input).ok());
  auto stores = replay::capture_sinks(graph, "");
  replay::IsolatedRun isolated(graph, "unit", std::make_shared<InputClock>(), 0, "");
  isolated.options.handle_signals = false;
  runtime::Runtime rt(graph, isolated.options);
  REQUIRE(rt.run() == 0);
  const replay::CaptureStore& store = *stores.at(0).second;
  CHECK(store.format == "lp");
  CHECK(store.events.size() == 2);
  CHECK(store.encoded == "cpu,host=a v=1.5 1704067200000\n");  // the point without fields is refused
  CHECK(rt.metrics(1).events_dead_lettered.get() == 1);
}
