// What the tests that run whole pipelines share: building a graph from YAML text, quiet run
// options, and a one-shot timer on the runtime's loop.
#pragma once

#include <catch2/catch.hpp>

#include <filesystem>
#include <functional>
#include <string>

#include "config/config.hpp"
#include "runtime/runtime.hpp"
#include "topology/graph.hpp"
#include "weir/uv.hpp"

namespace weir::testing {

inline topology::Graph build(const std::string& yaml) {
  config::Diagnostics d;
  auto cfg = config::load_text(yaml, "test.yaml", d);
  INFO(yaml);
  REQUIRE(d.ok());
  auto graph = topology::build(std::move(cfg), d);
  for (const auto& e : d.errors) UNSCOPED_INFO(e.to_string());
  REQUIRE(d.ok());
  return graph;
}

// An empty directory under the system's temporary one, made afresh (weir-disk-buffer-<name>: the
// disk buffer tests had it first).
inline std::string fresh_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("weir-disk-buffer-" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

inline runtime::RunOptions quiet() { return {.handle_signals = false, .print_summary = false}; }

// Calls `action` once after `ms` on the runtime's loop.
class After {
 public:
  After(uv_loop_t* loop, std::uint64_t ms, std::function<void()> action) : action_(std::move(action)) {
    start_timer(timer_, loop, this, [](uv_timer_t* t) { static_cast<After*>(t->data)->action_(); }, ms);
  }

 private:
  std::function<void()> action_;
  UvTimer timer_;
};

}  // namespace weir::testing
