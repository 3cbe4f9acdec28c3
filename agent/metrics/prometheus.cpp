#include "metrics/prometheus.hpp"

#include <fmt/format.h>

namespace weir::metrics {

namespace {

// Label values escape backslash, double quote and newline.
std::string label(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

struct Family {
  const char* name;
  const char* type;
  const char* help;
  const Counter ComponentMetrics::*counter;
};

constexpr Family kFamilies[] = {
    {"weir_component_received_events_total", "counter", "Events a component received.", &ComponentMetrics::events_received},
    {"weir_component_received_bytes_total", "counter", "Bytes a component received.", &ComponentMetrics::bytes_received},
    {"weir_component_sent_events_total", "counter", "Events a component sent (sinks: delivered).", &ComponentMetrics::events_sent},
    {"weir_component_sent_bytes_total", "counter", "Bytes a component sent (sinks: delivered).", &ComponentMetrics::bytes_sent},
    {"weir_component_errors_total", "counter", "Errors a component met.", &ComponentMetrics::errors},
    {"weir_component_dead_lettered_events_total", "counter", "Events set aside in the dead-letter file.",
     &ComponentMetrics::events_dead_lettered},
    {"weir_component_dead_letters_unwritten_total", "counter",
     "Dead letters not written: each refused by a full queue (16 MiB wait for the disk), and each batch whose letters the file refused; their batches failed.",
     &ComponentMetrics::dead_letters_unwritten},
    {"weir_component_discarded_events_total", "counter", "Events dropped without a dead letter (buffer when_full: drop_newest, or lost to a damaged disk buffer).",
     &ComponentMetrics::events_dropped},
    {"weir_component_requests_total", "counter", "Requests a sink sent (answered or failed).", &ComponentMetrics::requests},
    {"weir_component_request_retries_total", "counter", "Requests a sink sent again after a failure.",
     &ComponentMetrics::request_retries},
    {"weir_component_request_latency_nanoseconds_total", "counter", "Sum of request latencies in nanoseconds (divide by requests).",
     &ComponentMetrics::request_latency_nanos_sum},
    {"weir_buffer_events", "gauge", "Events waiting in a component's input buffer.", &ComponentMetrics::buffer_events},
    {"weir_buffer_max_events", "gauge", "Events a component's input buffer holds in memory before upstream waits (buffer.max_events).",
     &ComponentMetrics::buffer_max_events},
    {"weir_buffer_bytes", "gauge", "Bytes a component's input buffer holds (memory: the events' input size; disk: its segment files).",
     &ComponentMetrics::buffer_bytes},
    {"weir_buffer_corrupted_records_total", "counter", "Disk-buffer records that failed their framing or CRC (at start or when read).",
     &ComponentMetrics::buffer_corrupted_records},
    {"weir_buffer_set_aside_events_total", "counter",
     "Disk-buffer events set aside at start: made after the last saved state of their transform, sent again by their sources.",
     &ComponentMetrics::buffer_set_aside_events},
};

}  // namespace

std::string render_prometheus(const std::vector<ComponentRow>& components, const ProcessRow& process) {
  std::string out;
  out += "# HELP weir_uptime_seconds Seconds since the pipeline started.\n# TYPE weir_uptime_seconds gauge\n";
  out += fmt::format("weir_uptime_seconds {:.3f}\n", process.uptime_seconds);
  out += "# HELP weir_draining 1 while the pipeline drains after a stop signal.\n# TYPE weir_draining gauge\n";
  out += fmt::format("weir_draining {}\n", process.draining ? 1 : 0);
  out += "# HELP weir_config_generation The running configuration's number: 1 at start, +1 per applied reload.\n"
         "# TYPE weir_config_generation gauge\n";
  out += fmt::format("weir_config_generation {}\n", process.config_generation);
  out += "# HELP weir_reloads_total Reloads by outcome (failed: the old pipeline kept running).\n"
         "# TYPE weir_reloads_total counter\n";
  out += fmt::format("weir_reloads_total{{outcome=\"applied\"}} {}\nweir_reloads_total{{outcome=\"failed\"}} {}\n",
                     process.reloads, process.reload_failures);
  for (const Family& family : kFamilies) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", family.name, family.help, family.name, family.type);
    for (const ComponentRow& c : components) {
      out += fmt::format("{}{{component_id=\"{}\",component_kind=\"{}\",component_type=\"{}\"}} {}\n", family.name,
                         label(c.id), c.kind, label(c.type), (c.metrics->*family.counter).get());
    }
  }
  out += "# HELP weir_component_batch_latency_seconds Time from a batch's source to a sink.\n"
         "# TYPE weir_component_batch_latency_seconds summary\n";
  for (const ComponentRow& c : components) {
    if (c.kind != "sink") continue;
    std::string labels = fmt::format("component_id=\"{}\",component_kind=\"{}\",component_type=\"{}\"", label(c.id),
                                     c.kind, label(c.type));
    out += fmt::format("weir_component_batch_latency_seconds_sum{{{}}} {:.9f}\n", labels,
                       static_cast<double>(c.metrics->batch_latency_nanos_sum.get()) / 1e9);
    out += fmt::format("weir_component_batch_latency_seconds_count{{{}}} {}\n", labels,
                       c.metrics->batch_latency_count.get());
  }
  // Components' own metrics (plugins' are plugin_<name>): one family per name, over every
  // component that has it.
  std::vector<std::pair<std::string, std::string>> named;  // name, help; in first-seen order
  for (const ComponentRow& c : components) {
    for (const NamedMetric& m : c.metrics->named) {
      bool seen = false;
      for (const auto& [name, help] : named) seen = seen || name == m.name;
      if (!seen) named.emplace_back(m.name, m.help);
    }
  }
  for (const auto& [name, help] : named) {
    bool header = false;
    for (const ComponentRow& c : components) {
      for (const NamedMetric& m : c.metrics->named) {
        if (m.name != name) continue;
        if (!header) {
          out += fmt::format("# HELP weir_{} {}\n# TYPE weir_{} {}\n", name, label(help), name,
                             m.gauge ? "gauge" : "counter");
          header = true;
        }
        std::string labels = fmt::format("component_id=\"{}\",component_kind=\"{}\",component_type=\"{}\"",
                                         label(c.id), c.kind, label(c.type));
        if (m.gauge) {
          out += fmt::format("weir_{}{{{}}} {}\n", name, labels, m.value.load(std::memory_order_relaxed));
        } else {
          out += fmt::format("weir_{}{{{}}} {}\n", name, labels, m.count.load(std::memory_order_relaxed));
        }
      }
    }
  }
  return out;
}

}  // namespace weir::metrics
