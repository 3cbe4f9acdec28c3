// `weir replay`: a recorded log through a pipeline's real transforms, deterministically
// (docs/replay.md): the log stands in for one source's live input, the other sources
// produce nothing, every sink can be replaced by a capture, the clock follows event time
// (or stands at --now), random numbers come from --seed, batches are cut every
// --batch-events events and move through the pipeline in lockstep, and nothing is read from
// or written to the config's data_dir.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "replay/capture_sink.hpp"
#include "runtime/runtime.hpp"
#include "topology/graph.hpp"
#include "weir/clock.hpp"

namespace weir::replay {

struct ReplayOptions {
  std::vector<std::string> configs;
  std::string input;        // the recorded log
  std::string input_into;   // the source it replaces; empty: the only one
  std::string capture_dir;  // empty: the real sinks are used
  double speed = 0;         // 0: max
  std::uint64_t seed = 0;
  std::optional<EpochNanos> now;
  bool fail_on_dead_letter = false;
  std::size_t batch_events = 1000;
  bool progress = true;     // a progress line on stderr when it is a terminal
};

int run_replay(const ReplayOptions& options);

// Shared with `weir test`: the source named `into` (empty: the only one) reads `input`;
// every other source emits nothing. Returns the replacing source, or an error naming the
// sources to choose from.
class ReplaySource;
struct ReplayInput;
Result<ReplaySource*> replace_sources(topology::Graph& graph, const std::string& into, ReplayInput input);
// Every sink becomes a capture: into `directory`, or (directory empty) into a store each,
// returned by sink name.
std::vector<std::pair<std::string, std::shared_ptr<CaptureStore>>> capture_sinks(topology::Graph& graph,
                                                                                const std::string& directory);

// What a replay and a test run share: nothing of the config's data_dir is read or written
// (components get a scratch directory, removed when this goes), the API server is off, dead
// letters go to `dead_letter_path` (empty: into the scratch directory), and the runtime runs
// deterministically (lockstep, ephemeral) on `clock` with `seed`.
struct IsolatedRun {
  IsolatedRun(topology::Graph& graph, const std::string& purpose, std::shared_ptr<InputClock> clock, std::uint64_t seed,
              const std::string& dead_letter_path);
  ~IsolatedRun();
  IsolatedRun(const IsolatedRun&) = delete;
  IsolatedRun& operator=(const IsolatedRun&) = delete;
  std::string scratch;
  runtime::RunOptions options;
};

}  // namespace weir::replay
