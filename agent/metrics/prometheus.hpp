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

std::string render_prometheus(const std::vector<ComponentRow>& components, double uptime_seconds, bool draining);

}  // namespace weir::metrics
