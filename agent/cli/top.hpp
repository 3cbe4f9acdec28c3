// `weir top`: a running weir's components as a table refreshed every interval, from its
// API's /metrics (what `vector top` is to Vector): events in and out per second and in
// total, bytes per second, errors, dead letters and input-buffer fill. Keys sort it; it
// needs only a terminal, so it works over ssh and `kubectl exec`.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace weir::cli {

struct TopOptions {
  std::string api;                          // host:port
  std::chrono::milliseconds interval{1000};
  std::string sort = "name";                // name | in | out | errors | buffer
  int iterations = 0;                       // tables to print before exiting; 0: until q or Ctrl-C
};

int run_top(const TopOptions& options);

// One component's counters in one scrape of /metrics.
struct ComponentSample {
  std::string kind, type;
  std::map<std::string, double, std::less<>> values;  // metric name -> value
  double value(std::string_view name) const;
};
// Parses Prometheus text (weir's /metrics): component -> its sample.
std::map<std::string, ComponentSample> parse_metrics(std::string_view text);

// The table for two scrapes `seconds` apart, sorted by `sort`, `width` columns at most.
std::string render_top(const std::map<std::string, ComponentSample>& before,
                       const std::map<std::string, ComponentSample>& now, double seconds, std::string_view sort,
                       std::string_view api, std::size_t width);

}  // namespace weir::cli
