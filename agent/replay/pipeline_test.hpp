// `weir test`: the `tests:` of pipeline files, each run in memory through the pipeline's
// real components (docs/testing.md). A test feeds events into any component (a source's
// place, a transform or a sink), and asserts on what leaves any component: conditions per
// event (every condition, on each event), an exact count, every event matching, or an
// exact, ordered comparison with a golden file (for a sink: what it would send, in its own
// encoding). Sources run no live input, sinks send nothing; the clock follows event time
// (or stands at `now`), ids come from `seed` (default 0), batches move in lockstep: a test's
// outcome depends on its pipeline and its inputs alone.
#pragma once

#include <string>
#include <vector>

namespace weir::replay {

struct TestRunOptions {
  std::vector<std::string> configs;
  std::string junit;          // a JUnit XML report, when set
  bool update_golden = false; // write what was seen into every equals_file instead of comparing
};

int run_pipeline_tests(const TestRunOptions& options);

}  // namespace weir::replay
