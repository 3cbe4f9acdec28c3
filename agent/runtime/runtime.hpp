// Runs a built graph on one libuv loop: starts sinks, transforms, then sources; moves
// batches through bounded per-component input buffers; drains on SIGINT/SIGTERM or when
// every source has finished; exits once every sink has flushed.
#pragma once

#include <uv.h>

#include <chrono>
#include <memory>
#include <optional>
#include <vector>

#include "topology/graph.hpp"
#include "weir/clock.hpp"

namespace weir::runtime {

struct RunOptions {
  bool handle_signals = true;
  bool print_summary = true;
  bool watch_config = false;  // reload when a config file changes (polled each second)
  // The pipeline's clock (null: the system clock) and the seed of every component's random
  // numbers (none: one from the operating system).
  std::shared_ptr<Clock> clock;
  std::optional<std::uint64_t> seed;
  // Replay and tests: a source emits its next batch only once everything before it has
  // gone through every transform into the sinks, so the order in which batches meet at a
  // fan-in, and the clock each transform reads, are a function of the input alone.
  bool lockstep = false;
  // Replay and tests: nothing is read from or written to data_dir: sinks' disk buffers are
  // memory channels, transforms keep no saved state and components' save_state() keeps
  // nothing, so a run depends on its input and config alone.
  bool ephemeral = false;
};

class Runtime {
 public:
  explicit Runtime(topology::Graph& graph, RunOptions options = {});
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Runs until the pipeline has drained. Returns the process exit code: 0 after a clean
  // drain, 1 when a component failed to start or the drain missed its deadline.
  int run();

  // Begins a graceful drain (what SIGTERM does). Safe to call from loop callbacks.
  void shutdown();

  uv_loop_t* loop();
  // True when run() gave up on components still busy (drain deadline, second signal):
  // their threads may be blocked, so the process should end with _Exit, not exit.
  bool abandoned() const;
  const ComponentMetrics& metrics(std::size_t node) const;
  std::uint64_t dead_letters() const;

  class Impl;  // public so the engine's per-component contexts can name it

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace weir::runtime
