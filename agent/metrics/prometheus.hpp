// The agent's metrics in Prometheus text format (version 0.0.4), one family per counter of
// the component telemetry contract, labelled by component id, kind and type.
#pragma once

#include <string>
#include <vector>

#include "weir/metrics.hpp"

namespace weir::metrics {

struct ComponentRow {
  std::string id;
  std::string kind;
  std::string type;
  const ComponentMetrics* metrics;
};

struct ProcessRow {
  double uptime_seconds = 0;
  bool draining = false;
  std::uint64_t config_generation = 1;
  std::uint64_t reloads = 0;          // applied
  std::uint64_t reload_failures = 0;  // refused (invalid or not reloadable); the old pipeline kept running
};

std::string render_prometheus(const std::vector<ComponentRow>& components, const ProcessRow& process);

}  // namespace weir::metrics
