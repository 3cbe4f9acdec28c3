// `weir tap`: the events leaving components of a running weir, through its API (GET /tap),
// printed or recorded as NDJSON ready for `weir replay`. Sampled on the agent's side: a
// slow or absent reader never slows the pipeline, and each interval's sample size is told.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace weir::cli {

struct TapOptions {
  std::string api;                       // host:port
  std::vector<std::string> components;   // NAME or NAME.output
  std::size_t limit = 100;               // events per interval at most
  std::string interval = "1s";
  std::string output;                    // a file; empty: stdout
  std::optional<std::chrono::milliseconds> duration;  // stop after; none: until interrupted
};

int run_tap(const TapOptions& options);

}  // namespace weir::cli
