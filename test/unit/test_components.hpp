// Components used only by the tests, registered through the same public API as the
// built-in ones, with hooks the tests use to observe and steer them.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "weir/component.hpp"

namespace weir::testing {

// Shared observations, reset by each test.
struct Probe {
  // test_source
  std::int64_t emitted = 0;
  int pauses = 0;
  int resumes = 0;
  std::int64_t delivered_acks = 0;
  std::int64_t failed_acks = 0;
  std::string last_failure;
  // test_sink: events seen per sink name
  std::map<std::string, std::vector<std::string>> received;
  // test_sink readiness: while false the sink refuses batches
  bool sinks_ready = true;
  std::vector<SinkContext*> sink_contexts;
  // called after every emit of test_source with (events so far, room)
  std::function<void(std::int64_t, bool)> on_emit;

  static Probe& get();
  void reset();
};

}  // namespace weir::testing
