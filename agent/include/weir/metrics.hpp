// The component telemetry contract: every component reports the same named counters, so
// /metrics and the exit summary read the same for all of them.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>

namespace weir {

// A counter or gauge a component names itself, exported as weir_<name> under the
// component's labels (plugins' through host->counter and host->gauge: plugin_<name>).
struct NamedMetric {
  NamedMetric(std::string metric_name, std::string metric_help, bool is_gauge)
      : name(std::move(metric_name)), help(std::move(metric_help)), gauge(is_gauge) {}
  std::string name;
  std::string help;
  bool gauge = false;
  std::atomic<std::uint64_t> count{0};  // counters
  std::atomic<double> value{0};         // gauges
};

class Counter {
 public:
  void add(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  void set(std::uint64_t n) { value_.store(n, std::memory_order_relaxed); }
  std::uint64_t get() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

struct ComponentMetrics {
  Counter events_received;       // into the component (sources: decoded from input)
  Counter bytes_received;
  Counter events_sent;           // out of it (sinks: only once delivered)
  Counter bytes_sent;
  Counter errors;                // error occurrences of any stage (decode, request, write)
  Counter events_dead_lettered;  // rejected with a reason and written to the dead-letter file
  Counter dead_letters_unwritten;  // not written: each refused by a full queue, each batch whose letters the file refused
  Counter events_dropped;        // discarded without a dead letter (when_full: drop_newest, damaged disk buffer)
  Counter buffer_events;         // gauge: events waiting in this component's input buffer
  Counter buffer_bytes;          // gauge: bytes it holds (memory: input size; disk: segment files)
  Counter buffer_max_events;     // gauge: the events it holds in memory before upstream waits (buffer.max_events)
  Counter buffer_corrupted_records;  // disk buffer records that failed framing or CRC
  Counter buffer_set_aside_events;   // made after the last saved state of their transform: sent again by their sources
  // Sinks: time from a batch's creation at its source to its arrival at this sink.
  Counter batch_latency_nanos_sum;
  Counter batch_latency_count;
  // Sinks that send requests (ClickHouse, InfluxDB): requests answered or failed, the
  // retries among them, and their latency.
  Counter requests;
  Counter request_retries;
  Counter request_latency_nanos_sum;
  // Health (/health): since when the component has been retrying a failure (the loop's
  // clock, uv_now, in ms; 0 while it is not), and the last such failure. Loop thread only.
  Counter retrying_since_ms;
  std::string last_error;
  void retrying(std::uint64_t now_ms, std::string error) {
    if (retrying_since_ms.get() == 0) retrying_since_ms.set(now_ms ? now_ms : 1);
    last_error = std::move(error);
  }
  void recovered() { retrying_since_ms.set(0); }

  // Named metrics, in the order first asked for (a deque: they never move). Loop thread.
  std::deque<NamedMetric> named;
  // The metric called `name`, made on first use; nullptr when `name` is not
  // [a-z][a-z0-9_]* or is taken by the other kind.
  NamedMetric* named_metric(std::string_view metric_name, std::string_view help, bool gauge) {
    if (metric_name.empty() || metric_name.front() < 'a' || metric_name.front() > 'z') return nullptr;
    for (char c : metric_name) {
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return nullptr;
    }
    for (NamedMetric& m : named) {
      if (m.name == metric_name) return m.gauge == gauge ? &m : nullptr;
    }
    return &named.emplace_back(std::string(metric_name), std::string(help), gauge);
  }
};

}  // namespace weir
