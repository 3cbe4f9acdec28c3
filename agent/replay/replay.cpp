#include "replay/replay.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <thread>

#include <fmt/format.h>

#include "config/config.hpp"
#include "replay/replay_source.hpp"
#include "runtime/runtime.hpp"
#include "weir/log.hpp"
#include "weir/uv.hpp"

namespace weir::replay {

Result<ReplaySource*> replace_sources(topology::Graph& graph, const std::string& into, ReplayInput input) {
  std::vector<std::size_t> sources;
  for (std::size_t n = 0; n < graph.nodes.size(); ++n) {
    if (graph.nodes[n].kind == ComponentKind::Source) sources.push_back(n);
  }
  std::string names;
  for (std::size_t n : sources) names += (names.empty() ? "" : ", ") + graph.name(n);
  std::size_t target = graph.nodes.size();
  if (into.empty()) {
    if (sources.size() != 1) {
      return Error(fmt::format("the pipeline has {} sources ({}): name the one the log goes into with --input-into",
                               sources.size(), names));
    }
    target = sources.front();
  } else {
    for (std::size_t n : sources) {
      if (graph.name(n) == into) target = n;
    }
    if (target == graph.nodes.size()) return Error(fmt::format("no source '{}' in the pipeline (its sources: {})", into, names));
  }
  ReplaySource* replacing = nullptr;
  for (std::size_t n : sources) {
    topology::Node& node = graph.nodes[n];
    // The outputs of the source it stands in for, without the dead-letter one the graph adds.
    std::vector<std::string> outputs = node.source->outputs();
    ReplayInput given;
    if (n == target) given = input;  // the others: no input at all
    else given.clock = input.clock;
    auto source = std::make_unique<ReplaySource>(std::move(given), std::move(outputs));
    if (n == target) replacing = source.get();
    node.source = std::move(source);
  }
  return replacing;
}

std::vector<std::pair<std::string, std::shared_ptr<CaptureStore>>> capture_sinks(topology::Graph& graph,
                                                                                const std::string& directory) {
  std::vector<std::pair<std::string, std::shared_ptr<CaptureStore>>> stores;
  for (std::size_t n = 0; n < graph.nodes.size(); ++n) {
    topology::Node& node = graph.nodes[n];
    if (node.kind != ComponentKind::Sink) continue;
    std::shared_ptr<CaptureStore> store;
    if (directory.empty()) store = std::make_shared<CaptureStore>();
    stores.emplace_back(graph.name(n), store);
    node.sink = std::make_unique<CaptureSink>(graph.name(n), std::move(node.sink), directory, store);
  }
  return stores;
}

IsolatedRun::IsolatedRun(topology::Graph& graph, const std::string& purpose, std::shared_ptr<InputClock> clock,
                         std::uint64_t seed, const std::string& dead_letter_path) {
  std::error_code ec;
  scratch = (std::filesystem::temp_directory_path() / fmt::format("weir-{}-{}", purpose, getpid())).string();
  std::filesystem::remove_all(scratch, ec);
  graph.config.data_dir = scratch;
  graph.config.api_address.clear();
  // Replays and tests run the pipeline only: APIs (apis:) read live servers and bind ports.
  graph.config.apis.clear();
  graph.apis.clear();
  graph.config.dead_letter_path = dead_letter_path.empty() ? scratch + "/dead_letter.ndjson" : dead_letter_path;
  options.print_summary = false;
  options.clock = std::move(clock);
  options.seed = seed;
  options.lockstep = true;
  options.ephemeral = true;
}

IsolatedRun::~IsolatedRun() {
  std::error_code ec;
  std::filesystem::remove_all(scratch, ec);
}

namespace {

std::string rate(double per_second) {
  if (per_second >= 1e6) return fmt::format("{:.2f}M", per_second / 1e6);
  if (per_second >= 1e3) return fmt::format("{:.1f}k", per_second / 1e3);
  return fmt::format("{:.0f}", per_second);
}

// The progress line on a terminal: events so far, their rate, and the time left by the
// share of the file read.
struct Progress {
  ReplaySource* source = nullptr;
  std::chrono::steady_clock::time_point began;
  UvTimer timer;
  bool shown = false;

  void tick() {
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
    std::uint64_t events = source->events_emitted();
    double share = source->total_bytes() ? double(source->bytes_read()) / double(source->total_bytes()) : 0;
    std::string eta = share > 0.01 && share < 1 ? fmt::format(", ETA {:.0f} s", seconds / share - seconds) : "";
    std::fprintf(stderr, "\rreplay: %llu events, %s events/s%s    ", static_cast<unsigned long long>(events),
                 rate(seconds > 0 ? double(events) / seconds : 0).c_str(), eta.c_str());
    shown = true;
  }
};

}  // namespace

int run_replay(const ReplayOptions& options) {
  config::Diagnostics diagnostics;
  config::PipelineConfig config = config::load(options.configs, diagnostics);
  topology::Graph graph;
  if (diagnostics.ok()) graph = topology::build(std::move(config), diagnostics);
  for (const Error& w : diagnostics.warnings) std::fprintf(stderr, "%s\n", w.to_string("warning").c_str());
  for (const Error& e : diagnostics.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
  if (!diagnostics.ok()) {
    std::fprintf(stderr, "%zu error(s): nothing was replayed\n", diagnostics.errors.size());
    return 1;
  }

  // Dead letters next to the capture.
  auto clock = std::make_shared<InputClock>();
  if (options.now) clock->fix_at(*options.now);
  IsolatedRun isolated(graph, "replay", clock, options.seed,
                       options.capture_dir.empty() ? std::string() : options.capture_dir + "/dead_letter.ndjson");
  if (!options.capture_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(options.capture_dir, ec);
    std::filesystem::remove(graph.config.dead_letter_path, ec);
  }
  ReplayInput input;
  input.path = options.input;
  input.batch_events = options.batch_events;
  input.speed = options.speed;
  input.clock = clock;
  auto replaced = replace_sources(graph, options.input_into, std::move(input));
  if (!replaced.ok()) {
    std::fprintf(stderr, "error: %s\n", replaced.error().message().c_str());
    return 2;
  }
  if (!options.capture_dir.empty()) capture_sinks(graph, options.capture_dir);

  // As many pool threads as cores (libuv's default is 4): the reading ahead and the two
  // capture streams share the cores with the loop, and more threads than cores only take
  // turns (measured on 2 cores: 4 threads 790k events/s, 2 threads 910k). Before the pool
  // starts, which is at the first job; UV_THREADPOOL_SIZE set by the user wins.
  if (std::getenv("UV_THREADPOOL_SIZE") == nullptr) {
    unsigned cores = std::max(2u, std::thread::hardware_concurrency());
    setenv("UV_THREADPOOL_SIZE", std::to_string(cores).c_str(), 0);
  }
  auto began = std::chrono::steady_clock::now();
  int code;
  bool whole_log = false, read_failed = false;
  std::uint64_t dead_letters = 0;
  std::string summary;
  {
    runtime::Runtime rt(graph, isolated.options);
    Progress progress;
    progress.source = replaced.value();
    progress.began = began;
    if (options.progress && isatty(STDERR_FILENO)) {
      start_timer(progress.timer, rt.loop(), &progress, [](uv_timer_t* t) { static_cast<Progress*>(t->data)->tick(); },
                  1000, 1000);
      uv_unref(progress.timer.base());
    }
    code = rt.run();
    whole_log = replaced.value()->reached_end();
    read_failed = replaced.value()->read_failed();
    progress.timer.close();
    if (progress.shown) std::fputs("\n", stderr);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
    std::uint64_t events = replaced.value()->events_emitted();
    summary += fmt::format("replay: {} events from {} in {:.3f} s ({} events/s), seed {}{}\n", events, options.input,
                           seconds, rate(seconds > 0 ? double(events) / seconds : 0), options.seed,
                           options.now ? ", clock fixed at " + format_iso8601_ms(*options.now) : std::string());
    summary += fmt::format("  {:<9} {:<22} {:>12} {:>12} {:>12} {:>9}\n", "kind", "component", "events in", "events out",
                           "dead letters", "dropped");
    for (std::size_t n = 0; n < graph.nodes.size(); ++n) {
      const ComponentMetrics& m = rt.metrics(n);
      dead_letters += m.events_dead_lettered.get();
      summary += fmt::format("  {:<9} {:<22} {:>12} {:>12} {:>12} {:>9}\n", component_kind_name(graph.nodes[n].kind),
                             graph.name(n), m.events_received.get(), m.events_sent.get(), m.events_dead_lettered.get(),
                             m.events_dropped.get());
    }
  }
  if (dead_letters > 0) {
    summary += options.capture_dir.empty()
                   ? fmt::format("  {} dead letter(s): the log above has the first reasons; with --capture they are kept\n",
                                 dead_letters)
                   : fmt::format("  {} dead letter(s) in {}\n", dead_letters, graph.config.dead_letter_path);
  }
  if (!options.capture_dir.empty()) summary += fmt::format("  capture in {}\n", options.capture_dir);
  std::fputs(summary.c_str(), stdout);
  if (code != 0) return code;
  if (!whole_log) {
    std::fprintf(stderr, "error: %s %s: the capture is partial\n",
                 read_failed ? "could not read to the end of" : "stopped before the end of", options.input.c_str());
    return read_failed ? 1 : 130;
  }
  if (options.fail_on_dead_letter && dead_letters > 0) {
    std::fprintf(stderr, "error: %llu event(s) dead-lettered (--fail-on-dead-letter)\n",
                 static_cast<unsigned long long>(dead_letters));
    return 3;
  }
  return 0;
}

}  // namespace weir::replay
