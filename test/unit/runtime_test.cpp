// The runtime: wiring (fan-out, fan-in, named outputs), backpressure, drain, acks, dead letters.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "config/config.hpp"
#include "runtime/runtime.hpp"
#include "runtime/transform_state.hpp"
#include "pipeline_helpers.hpp"
#include "test_components.hpp"
#include "topology/graph.hpp"
#include "weir/uv.hpp"

using namespace weir;
using testing::After;
using testing::build;
using testing::Probe;
using testing::quiet;

namespace {

std::size_t node_named(const topology::Graph& g, const std::string& name) {
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    if (g.name(i) == name) return i;
  }
  FAIL("no node " << name);
  return 0;
}

std::string temp_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("weir-test-" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

// Runs the pipeline until `arrived()` (polled on the loop every 20 ms; it gives up after
// 30 s, and the test's checks then fail), then shuts it down; the exit code.
int run_until(runtime::Runtime& rt, const std::function<bool()>& arrived) {
  int polls = 0;
  std::function<void()> check;
  std::vector<std::unique_ptr<After>> later;
  check = [&] {
    if (arrived() || ++polls > 1500) return rt.shutdown();
    later.push_back(std::make_unique<After>(rt.loop(), 20, [&] { check(); }));
  };
  After first(rt.loop(), 20, [&] { check(); });
  return rt.run();
}

std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace

TEST_CASE("runtime: one source to one sink delivers every event in order") {
  Probe::get().reset();
  auto graph = build("sources:\n  s: { type: test_source, count: 1000, batch: 64 }\nsinks:\n  k: { type: test_sink, inputs: [s] }\n");
  runtime::Runtime rt(graph, quiet());
  REQUIRE(rt.run() == 0);
  auto& got = Probe::get().received["k"];
  REQUIRE(got.size() == 1000);
  for (int i = 0; i < 1000; ++i) REQUIRE(got[i] == "{\"n\":" + std::to_string(i) + "}");
  CHECK(rt.metrics(node_named(graph, "s")).events_sent.get() == 1000);
  CHECK(rt.metrics(node_named(graph, "k")).events_received.get() == 1000);
}

TEST_CASE("runtime: fan-out gives each consumer its own copy") {
  Probe::get().reset();
  auto graph = build(
      "sources:\n  s: { type: test_source, count: 50, batch: 7 }\n"
      "transforms:\n  tag: { type: test_tag, inputs: [s] }\n"
      "sinks:\n  tagged: { type: test_sink, inputs: [tag] }\n  plain: { type: test_sink, inputs: [s] }\n");
  runtime::Runtime rt(graph, quiet());
  REQUIRE(rt.run() == 0);
  auto& tagged = Probe::get().received["tagged"];
  auto& plain = Probe::get().received["plain"];
  REQUIRE(tagged.size() == 50);
  REQUIRE(plain.size() == 50);
  CHECK(tagged[3] == R"({"n":3,"tagged":true})");
  CHECK(plain[3] == R"({"n":3})");
}

TEST_CASE("runtime: fan-in merges two sources") {
  Probe::get().reset();
  auto graph = build(
      "sources:\n  a: { type: test_source, count: 300, batch: 10 }\n  b: { type: test_source, count: 200, batch: 3 }\n"
      "sinks:\n  k: { type: test_sink, inputs: [a, b] }\n");
  runtime::Runtime rt(graph, quiet());
  REQUIRE(rt.run() == 0);
  CHECK(Probe::get().received["k"].size() == 500);
}

TEST_CASE("runtime: named outputs route events, rejected ones become dead letters") {
  Probe::get().reset();
  std::string dir = temp_dir("routes");
  auto graph = build("data_dir: " + dir +
                     "\nsources:\n  s: { type: test_source, count: 20, batch: 6 }\n"
                     "transforms:\n  split: { type: test_split, inputs: [s] }\n"
                     "sinks:\n  even: { type: test_sink, inputs: [split.even] }\n  odd: { type: test_sink, inputs: [split.odd] }\n");
  runtime::Runtime rt(graph, quiet());
  REQUIRE(rt.run() == 0);
  CHECK(Probe::get().received["even"].size() == 10);
  CHECK(Probe::get().received["odd"].size() == 8);
  CHECK(Probe::get().received["odd"][3] == R"({"n":9})");
  CHECK(rt.dead_letters() == 2);
  CHECK(rt.metrics(node_named(graph, "split")).events_dead_lettered.get() == 2);
  auto lines = read_lines(dir + "/dead_letter.ndjson");
  REQUIRE(lines.size() == 2);
  CHECK(lines[0].find(R"("component":"split","component_type":"test_split","reason":"sevens are rejected","event":{"n":7})") !=
        std::string::npos);
  CHECK(lines[1].find(R"("event":{"n":17})") != std::string::npos);
}

TEST_CASE("runtime: a full buffer pauses the source until the sink takes batches again") {
  Probe& probe = Probe::get();
  probe.reset();
  probe.sinks_ready = false;
  std::int64_t max_outstanding = 0;
  probe.on_emit = [&](std::int64_t emitted, bool) {
    std::int64_t outstanding = emitted - static_cast<std::int64_t>(Probe::get().received["k"].size());
    max_outstanding = std::max(max_outstanding, outstanding);
  };
  auto graph = build(
      "sources:\n  s: { type: test_source, count: 20000, batch: 100 }\n"
      "sinks:\n  k: { type: test_sink, inputs: [s], buffer: { max_events: 1000 } }\n");
  runtime::Runtime rt(graph, quiet());
  std::int64_t emitted_while_blocked = -1;
  After unblock(rt.loop(), 50, [&] {
    emitted_while_blocked = Probe::get().emitted;
    Probe::get().sinks_ready = true;
    for (auto* ctx : Probe::get().sink_contexts) ctx->ready_again();
  });
  REQUIRE(rt.run() == 0);
  // While the sink refused batches, the source stopped at the buffer's bound.
  CHECK(emitted_while_blocked == 1000);
  CHECK(max_outstanding <= 1100);  // the bound plus at most one batch
  CHECK(probe.pauses >= 1);
  CHECK(probe.resumes >= 1);
  REQUIRE(probe.received["k"].size() == 20000);
  CHECK(probe.received["k"].back() == R"({"n":19999})");
}

TEST_CASE("runtime: when_full drop_newest drops and counts instead of blocking") {
  Probe& probe = Probe::get();
  probe.reset();
  probe.sinks_ready = false;
  auto graph = build(
      "sources:\n  s: { type: test_source, count: 5000, batch: 100 }\n"
      "sinks:\n  k: { type: test_sink, inputs: [s], buffer: { max_events: 1000, when_full: drop_newest } }\n");
  runtime::Runtime rt(graph, quiet());
  After unblock(rt.loop(), 30, [&] {
    Probe::get().sinks_ready = true;
    for (auto* ctx : Probe::get().sink_contexts) ctx->ready_again();
  });
  REQUIRE(rt.run() == 0);
  CHECK(probe.pauses == 0);
  CHECK(probe.received["k"].size() == 1000);
  CHECK(rt.metrics(node_named(graph, "k")).events_dropped.get() == 4000);
}

TEST_CASE("runtime: shutdown drains: sources stop, everything sent is written, exit 0") {
  Probe::get().reset();
  std::string dir = temp_dir("drain");
  auto graph = build("sources:\n  gen: { type: demo, count: 0, rate: 0, batch_size: 500 }\n"
                     "sinks:\n  out: { type: file, inputs: [gen], path: " + dir + "/out.ndjson }\n");
  runtime::Runtime rt(graph, quiet());
  After stop(rt.loop(), 100, [&] { rt.shutdown(); });
  REQUIRE(rt.run() == 0);
  auto sent = rt.metrics(node_named(graph, "gen")).events_sent.get();
  CHECK(sent > 0);
  CHECK(read_lines(dir + "/out.ndjson").size() == sent);
  CHECK(rt.metrics(node_named(graph, "out")).events_sent.get() == sent);
}

TEST_CASE("runtime: acknowledgements reach the source once the sink is done") {
  Probe& probe = Probe::get();
  probe.reset();
  std::string dir = temp_dir("acks");
  auto graph = build("sources:\n  s: { type: test_source, count: 1000, batch: 10, acks: true }\n"
                     "sinks:\n  out: { type: file, inputs: [s], path: " + dir + "/out.ndjson }\n");
  runtime::Runtime rt(graph, quiet());
  REQUIRE(rt.run() == 0);
  CHECK(probe.delivered_acks == 100);
  CHECK(probe.failed_acks == 0);
  CHECK(read_lines(dir + "/out.ndjson").size() == 1000);

  probe.reset();
  auto failing = build("sources:\n  s: { type: test_source, count: 30, batch: 10, acks: true }\n"
                       "sinks:\n  k: { type: test_sink, inputs: [s], fail: true }\n");
  runtime::Runtime rt2(failing, quiet());
  REQUIRE(rt2.run() == 0);
  CHECK(probe.delivered_acks == 0);
  CHECK(probe.failed_acks == 3);
  CHECK(probe.last_failure == "test sink refuses");
}

TEST_CASE("runtime: acknowledgements fire only after every fan-out copy is delivered") {
  Probe& probe = Probe::get();
  probe.reset();
  auto graph = build("sources:\n  s: { type: test_source, count: 20, batch: 10, acks: true }\n"
                     "sinks:\n  a: { type: test_sink, inputs: [s] }\n  b: { type: test_sink, inputs: [s], fail: true }\n");
  runtime::Runtime rt(graph, quiet());
  REQUIRE(rt.run() == 0);
  CHECK(probe.delivered_acks == 0);  // one copy failed, so the batch failed
  CHECK(probe.failed_acks == 2);
}

TEST_CASE("runtime: a component that fails to start stops the pipeline with exit 1") {
  Probe::get().reset();
  auto graph = build("sources:\n  s: { type: test_source, count: 10 }\n"
                     "sinks:\n  out: { type: file, inputs: [s], path: /proc/no-such-dir/out.ndjson }\n");
  runtime::Runtime rt(graph, quiet());
  CHECK(rt.run() == 1);
}

TEST_CASE("demo: the same seed and start time give the same events; another seed does not") {
  auto events_of = [](const std::string& seed) {
    Probe::get().reset();
    auto graph = build("sources:\n  g: { type: demo, count: 300, users: 4, seed: " + seed +
                       ", start_time: \"2024-01-01T12:00:00Z\", batch_size: 64 }\n"
                       "sinks:\n  k: { type: test_sink, inputs: [g] }\n");
    runtime::Runtime rt(graph, quiet());
    REQUIRE(rt.run() == 0);
    return Probe::get().received["k"];
  };
  auto a = events_of("9"), b = events_of("9"), c = events_of("10");
  REQUIRE(a.size() == 300);
  CHECK(a == b);
  CHECK(a != c);
  CHECK(a[0].find(R"("source":"client","timestamp":"2024-01-01T12:)") != std::string::npos);
}

TEST_CASE("dead letters: NAME.dead_letter routes them to a sink as events, with their acknowledgements") {
  Probe& probe = Probe::get();
  probe.reset();
  auto graph = build("sources:\n  s: { type: test_source, count: 100, batch: 10, acks: true }\n"
                     "transforms:\n  split: { type: test_split, inputs: [s] }\n"
                     "sinks:\n  k: { type: test_sink, inputs: [split.even, split.odd] }\n"
                     "  rejects: { type: test_sink, inputs: [split.dead_letter] }\n");
  runtime::Runtime rt(graph, quiet());
  REQUIRE(rt.run() == 0);
  auto& rejects = probe.received["rejects"];
  REQUIRE(rejects.size() == 10);  // n % 10 == 7
  CHECK(rejects[0].find(R"("component":"split","component_type":"test_split","reason":"sevens are rejected","event":{"n":7})") != std::string::npos);
  CHECK(probe.received["k"].size() == 90);
  CHECK(probe.delivered_acks == 10);
  CHECK(rt.dead_letters() == 0);  // none went to the file
  CHECK(rt.metrics(node_named(graph, "split")).events_dead_lettered.get() == 10);

  probe.reset();  // a dead-letter sink that fails makes the batches it came from fail
  auto failing = build("sources:\n  s: { type: test_source, count: 20, batch: 10, acks: true }\n"
                       "transforms:\n  split: { type: test_split, inputs: [s] }\n"
                       "sinks:\n  k: { type: test_sink, inputs: [split.even, split.odd] }\n"
                       "  rejects: { type: test_sink, inputs: [split.dead_letter], fail: true }\n");
  runtime::Runtime rt2(failing, quiet());
  REQUIRE(rt2.run() == 0);
  CHECK(probe.failed_acks == 2);
  CHECK(probe.delivered_acks == 0);
}

TEST_CASE("dead letters: a dead-letter file that cannot be written fails the acknowledgement, never silently") {
  Probe& probe = Probe::get();
  probe.reset();
  auto graph = build("dead_letter: { path: /dev/full }\n"
                     "sources:\n  s: { type: test_source, count: 30, batch: 10, acks: true }\n"
                     "transforms:\n  split: { type: test_split, inputs: [s] }\n"
                     "sinks:\n  k: { type: test_sink, inputs: [split.even, split.odd] }\n");
  runtime::Runtime rt(graph, quiet());
  REQUIRE(rt.run() == 0);
  CHECK(probe.failed_acks == 3);  // every batch had a seven
  CHECK(probe.last_failure.find("a dead letter could not be written") != std::string::npos);
  CHECK(rt.metrics(node_named(graph, "split")).errors.get() == 3);
  CHECK(rt.metrics(node_named(graph, "split")).dead_letters_unwritten.get() == 3);  // one per batch held
}

TEST_CASE("dead letters: the default file is capped and rotated") {
  std::string dir = temp_dir("dead-letter-rotate");
  Probe::get().reset();
  auto graph = build("data_dir: " + dir + "\ndead_letter: { max_size: 2KiB }\n"
                     "sources:\n  s: { type: test_source, count: 1000, batch: 10 }\n"
                     "transforms:\n  split: { type: test_split, inputs: [s] }\n"
                     "sinks:\n  k: { type: test_sink, inputs: [split.even, split.odd] }\n");
  runtime::Runtime rt(graph, quiet());
  REQUIRE(rt.run() == 0);
  CHECK(rt.dead_letters() == 100);
  auto size = std::filesystem::file_size(dir + "/dead_letter.ndjson");
  auto old = std::filesystem::file_size(dir + "/dead_letter.ndjson.1");
  CHECK(size <= 2048);
  CHECK(old <= 2048);
  CHECK(old > 1024);
}

TEST_CASE("working_time live: a user who stops gets their row from the idle timer, before the end") {
  Probe::get().reset();
  std::string dir = temp_dir("wt-idle");
  {
    std::ofstream out(dir + "/events.ndjson");
    out << R"({"scope":"click:element","source":"client","timestamp":"2024-01-01T12:00:00Z","user_id":3,"job_id":1})" "\n"
        << R"({"scope":"click:element","source":"client","timestamp":"2024-01-01T12:00:04Z","user_id":3,"job_id":1})" "\n";
  }
  auto graph = build("data_dir: " + dir + "/data\nsources:\n  f: { type: file, include: ['" + dir +
                     "/*.ndjson'], poll_interval: 20ms }\ntransforms:\n  wt: { type: working_time, inputs: [f], "
                     "idle_after: 1s }\nsinks:\n  k: { type: test_sink, inputs: [wt] }\n");
  runtime::Runtime rt(graph, quiet());
  std::vector<std::string> seen_before_end;
  // The file source tails on: nothing ends the input, so only the timer can emit the row.
  After check(rt.loop(), 3500, [&] {
    seen_before_end = Probe::get().received["k"];
    rt.shutdown();
  });
  REQUIRE(rt.run() == 0);
  REQUIRE(seen_before_end.size() == 3);
  CHECK(seen_before_end[2].find(R"("scope":"send:working_time")") != std::string::npos);
  CHECK(seen_before_end[2].find(R"("duration":4000)") != std::string::npos);
  CHECK(Probe::get().received["k"].size() == 3);  // nothing more at the end
}

namespace {

// file -> test_tag -> test_split -> even/odd sinks over `count` events {"n": i}, run until
// the sinks hold every event not dead-lettered (the file source tails on), then shut down.
struct ChainRun {
  std::vector<std::string> even, odd, dead_letters;
  std::uint64_t tag_received = 0, split_received = 0, split_dead_lettered = 0, source_sent = 0;
  int on_loop = 0, off_loop = 0;
};

ChainRun run_file_chain(const std::string& name, bool off_loop, int count) {
  Probe::get().reset();
  std::string dir = temp_dir(name);
  {
    std::ofstream out(dir + "/events.ndjson");
    for (int i = 0; i < count; ++i) out << "{\"n\":" << i << "}\n";
  }
  std::string flag = off_loop ? "true" : "false";
  auto graph = build("data_dir: " + dir + "/data\nsources:\n  f: { type: file, include: ['" + dir +
                     "/*.ndjson'], poll_interval: 20ms, read_bytes: 4KiB }\n"
                     "transforms:\n  tag: { type: test_tag, inputs: [f], off_loop: " + flag + " }\n"
                     "  split: { type: test_split, inputs: [tag], off_loop: " + flag + " }\n"
                     "sinks:\n  even: { type: test_sink, inputs: [split.even] }\n  odd: { type: test_sink, inputs: [split.odd] }\n");
  runtime::Runtime rt(graph, quiet());
  const std::size_t expected = static_cast<std::size_t>(count - count / 10);
  REQUIRE(run_until(rt, [&] {
            Probe& probe = Probe::get();
            return probe.received["even"].size() + probe.received["odd"].size() >= expected;
          }) == 0);
  ChainRun run;
  run.even = Probe::get().received["even"];
  run.odd = Probe::get().received["odd"];
  // The letters without their timestamps (the pipeline's clock is the wall clock here).
  for (const std::string& line : read_lines(dir + "/data/dead_letter.ndjson")) run.dead_letters.push_back(line.substr(line.find("\"component\"")));
  run.tag_received = rt.metrics(node_named(graph, "tag")).events_received.get();
  run.split_received = rt.metrics(node_named(graph, "split")).events_received.get();
  run.split_dead_lettered = rt.metrics(node_named(graph, "split")).events_dead_lettered.get();
  run.source_sent = rt.metrics(node_named(graph, "f")).events_sent.get();
  run.on_loop = Probe::get().process_on_loop;
  run.off_loop = Probe::get().process_off_loop;
  return run;
}

}  // namespace

TEST_CASE("off-loop chain: transforms that allow it run where the file source decodes, with the same results") {
  const int count = 5000;
  ChainRun on_loop = run_file_chain("chain-on-loop", false, count);
  ChainRun off_loop = run_file_chain("chain-off-loop", true, count);

  // Where process() ran: every call on the loop, or every call on the decoding thread.
  CHECK(on_loop.on_loop > 0);
  CHECK(on_loop.off_loop == 0);
  CHECK(off_loop.off_loop > 0);
  CHECK(off_loop.on_loop == 0);

  for (const ChainRun* run : {&on_loop, &off_loop}) {
    REQUIRE(run->even.size() == 2500);
    REQUIRE(run->odd.size() == 2000);
    CHECK(run->even.front() == R"({"n":0,"tagged":true})");
    CHECK(run->odd.back() == R"({"n":4999,"tagged":true})");
    CHECK(run->source_sent == 5000);
    CHECK(run->tag_received == 5000);
    CHECK(run->split_received == 5000);
    CHECK(run->split_dead_lettered == 500);
    REQUIRE(run->dead_letters.size() == 500);
    CHECK(run->dead_letters.front() ==
          R"("component":"split","component_type":"test_split","reason":"sevens are rejected","event":{"n":7,"tagged":true}})");
  }
  // In order, the same events, the same letters.
  CHECK(off_loop.even == on_loop.even);
  CHECK(off_loop.odd == on_loop.odd);
  CHECK(off_loop.dead_letters == on_loop.dead_letters);
}

TEST_CASE("off-loop chain: a stateful member numbers, snapshots and restores as on the loop") {
  std::string dir = temp_dir("chain-state");
  auto write_lines = [&](int from, int to) {
    std::ofstream out(dir + "/events.ndjson", std::ios::app);
    for (int i = from; i < to; ++i) out << "{\"n\":" << i << "}\n";
  };
  // Runs file -> test_count (off the loop) until the sink holds `expected` events.
  auto run = [&](std::size_t expected) {
    Probe::get().reset();
    auto graph = build("data_dir: " + dir + "/data\nsources:\n  f: { type: file, include: ['" + dir +
                       "/*.ndjson'], poll_interval: 20ms, read_bytes: 4KiB }\n"
                       "transforms:\n  count: { type: test_count, inputs: [f], off_loop: true }\n"
                       "sinks:\n  k: { type: test_sink, inputs: [count] }\n");
    runtime::Runtime rt(graph, quiet());
    REQUIRE(run_until(rt, [&] { return Probe::get().received["k"].size() >= expected; }) == 0);
  };

  write_lines(0, 3000);
  run(3000);
  auto& got = Probe::get().received["k"];
  REQUIRE(got.size() == 3000);
  CHECK(got.front() == R"({"n":0,"seen":1})");
  CHECK(got.back() == R"({"n":2999,"seen":3000})");
  CHECK(Probe::get().process_off_loop > 0);
  CHECK(Probe::get().process_on_loop == 0);
  // The snapshot saved at the end covers every batch numbered, and holds the count of all.
  runtime::StateFiles files(dir + "/data/state/count");
  auto saved = runtime::load_snapshot(files);
  REQUIRE(saved.ok());
  REQUIRE(saved.value().has_value());
  CHECK(saved.value()->state == "3000");
  const std::uint64_t batches = saved.value()->covers;
  CHECK(batches >= 3000 * 9 / 4096);  // reads of 4 KiB, ~9 bytes a line

  // The next start restores it before the first batch, and reads on from the checkpoint.
  write_lines(3000, 3500);
  run(500);
  auto& again = Probe::get().received["k"];  // reset() made a new map
  REQUIRE(again.size() == 500);
  CHECK(again.front() == R"({"n":3000,"seen":3001})");
  CHECK(again.back() == R"({"n":3499,"seen":3500})");
  saved = runtime::load_snapshot(files);
  REQUIRE(saved.ok());
  REQUIRE(saved.value().has_value());
  CHECK(saved.value()->state == "3500");
  CHECK(saved.value()->covers > batches);
}

TEST_CASE("file source: a backlog decoded on two threads keeps the lines' order and their line numbers") {
  Probe::get().reset();
  std::string dir = temp_dir("file-two-decoders");
  const int count = 20000;
  std::vector<std::uint64_t> bad_lines;  // 1-based, as dead letters number them
  {
    std::ofstream out(dir + "/events.ndjson");
    for (int i = 0; i < count; ++i) {
      if (i % 997 == 500) {
        out << "not json {" << i << "\n";
        bad_lines.push_back(static_cast<std::uint64_t>(i) + 1);
      } else if (i == 12345) {
        out << "{\"n\":" << i << ",\"pad\":\"" << std::string(300, 'x') << "\"}\n";  // past max_line_bytes
        bad_lines.push_back(static_cast<std::uint64_t>(i) + 1);
      } else {
        out << "{\"n\":" << i << "}\n";
      }
    }
  }
  // Small reads: the backlog is many reads, so the source runs two jobs on the file.
  auto graph = build("data_dir: " + dir + "/data\nsources:\n  f: { type: file, include: ['" + dir +
                     "/*.ndjson'], poll_interval: 20ms, read_bytes: 4KiB, max_line_bytes: 200 }\n"
                     "transforms:\n  tag: { type: test_tag, inputs: [f], off_loop: true }\n"
                     "sinks:\n  k: { type: test_sink, inputs: [tag] }\n");
  runtime::Runtime rt(graph, quiet());
  const std::size_t expected = count - bad_lines.size();
  REQUIRE(run_until(rt, [&] { return Probe::get().received["k"].size() >= expected; }) == 0);

  const auto& got = Probe::get().received["k"];
  REQUIRE(got.size() == expected);
  std::size_t next = 0;
  for (int i = 0; i < count; ++i) {
    if (std::find(bad_lines.begin(), bad_lines.end(), static_cast<std::uint64_t>(i) + 1) != bad_lines.end()) continue;
    if (got[next] != "{\"n\":" + std::to_string(i) + ",\"tagged\":true}") FAIL("event " << next << " is " << got[next]);
    ++next;
  }
  std::vector<std::uint64_t> lettered;
  for (const std::string& line : read_lines(dir + "/data/dead_letter.ndjson")) {
    auto at = line.find("\"line\":");
    REQUIRE(at != std::string::npos);
    lettered.push_back(std::stoull(line.substr(at + 7)));
  }
  CHECK(lettered == bad_lines);
}

namespace {

// A sink's context without a runtime: the sink is called directly, on a loop of the test's.
class BareSinkContext final : public SinkContext {
 public:
  explicit BareSinkContext(uv_loop_t* loop) : loop_(loop) {}
  uv_loop_t* loop() override { return loop_; }
  const std::string& name() const override { return name_; }
  const std::string& type() const override { return type_; }
  const std::string& data_dir() const override { return dir_; }
  ComponentMetrics& metrics() override { return metrics_; }
  const Clock& clock() const override { return clock_; }
  Random& random() override { return random_; }
  bool dead_letter(const Event&, std::string_view) override { return true; }
  bool dead_letter_raw(std::string_view, std::uint64_t, std::string_view) override { return true; }
  void hold_until_dead_letters_written(std::vector<AckRef>) override {}
  void fail_pipeline(std::string_view) override {}
  void ready_again() override {}

 private:
  uv_loop_t* loop_;
  std::string name_ = "ch", type_ = "clickhouse", dir_ = temp_dir("bare-sink");
  ComponentMetrics metrics_;
  InputClock clock_;
  Random random_{1};
};

}  // namespace

TEST_CASE("HTTP sinks: no more than an upload's worth of rows waits decoded for the encoder") {
  // The ClickHouse sink encodes nothing until it has learned the server, and this loop never
  // runs, so every row it takes waits decoded. It may hold max_events x (concurrency + 2) =
  // 4000 rows, but takes no batch once 1000 wait for the encoder.
  auto graph = build("sources:\n  s: { type: test_source }\n"
                     "sinks:\n  ch:\n    type: clickhouse\n    inputs: [s]\n    endpoint: http://127.0.0.1:9\n"
                     "    table: events\n    healthcheck: { enabled: false }\n    batch: { max_events: 1000 }\n");
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  std::size_t taken = 0;
  {
    BareSinkContext ctx(&loop);
    Sink* sink = nullptr;
    for (auto& node : graph.nodes) {
      if (node.sink) sink = node.sink.get();
    }
    REQUIRE(sink != nullptr);
    REQUIRE(sink->start(ctx).ok());
    while (sink->ready() && taken < 10000) {
      BatchPtr batch = EventBatch::create();
      for (int i = 0; i < 100; ++i) batch->add_event().fields.append_member(batch->arena(), "n", Value::integer(i));
      sink->consume(std::move(batch));
      taken += 100;
    }
    for (auto& node : graph.nodes) node.sink.reset();  // its handles close on the loop below
  }
  while (uv_run(&loop, UV_RUN_NOWAIT) != 0) {
  }
  CHECK(uv_loop_close(&loop) == 0);
  CHECK(taken == 1000);
}
