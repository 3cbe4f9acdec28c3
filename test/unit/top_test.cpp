// `weir top`'s reading of /metrics and its table (agent/cli/top.hpp); test/e2e/top.sh runs
// it in a terminal under tmux.
#include <catch2/catch.hpp>

#include "cli/top.hpp"

using namespace weir::cli;

namespace {
std::string scrape(int in, int out, int buffered) {
  return "# HELP weir_component_received_events_total Events in.\n"
         "weir_component_received_events_total{component_id=\"in\",component_kind=\"source\",component_type=\"demo\"} " +
         std::to_string(in) +
         "\n"
         "weir_component_sent_events_total{component_id=\"in\",component_kind=\"source\",component_type=\"demo\"} " +
         std::to_string(in) +
         "\n"
         "weir_component_received_events_total{component_id=\"out\",component_kind=\"sink\",component_type=\"blackhole\"} " +
         std::to_string(out) +
         "\n"
         "weir_component_errors_total{component_id=\"out\",component_kind=\"sink\",component_type=\"blackhole\"} 3\n"
         "weir_buffer_events{component_id=\"out\",component_kind=\"sink\",component_type=\"blackhole\"} " +
         std::to_string(buffered) +
         "\n"
         "weir_buffer_max_events{component_id=\"out\",component_kind=\"sink\",component_type=\"blackhole\"} 4096\n"
         "weir_uptime_seconds 12.5\n";
}
}  // namespace

TEST_CASE("top: /metrics read per component") {
  auto samples = parse_metrics(scrape(100, 90, 2048));
  REQUIRE(samples.size() == 2);
  CHECK(samples["in"].kind == "source");
  CHECK(samples["in"].type == "demo");
  CHECK(samples["out"].value("weir_component_errors_total") == 3);
  CHECK(samples["out"].value("weir_buffer_events") == 2048);
  CHECK(samples["out"].value("no_such_metric") == 0);
}

TEST_CASE("top: rates from two scrapes, sorted by the key asked") {
  auto before = parse_metrics(scrape(1000, 900, 0));
  auto now = parse_metrics(scrape(3000, 1900, 2048));
  std::string table = render_top(before, now, 2.0, "name", "127.0.0.1:8686", 0);
  INFO(table);
  // in: 2000 events in 2 s; out: 1000 in 2 s; out's buffer half full.
  CHECK(table.find("in                   source    demo                1.0k      1.0k       3.0k       3.0k") != std::string::npos);
  CHECK(table.find("out                  sink      blackhole            500         0       1.9k          0") != std::string::npos);
  CHECK(table.find("2.0k/4.1k 50%") != std::string::npos);
  // Sorted by errors, `out` (3) comes before `in` (0); by name, `in` first.
  CHECK(table.find("\nin ") < table.find("\nout "));
  std::string by_errors = render_top(before, now, 2.0, "errors", "127.0.0.1:8686", 0);
  CHECK(by_errors.find("\nout ") < by_errors.find("\nin "));
  // Cut to the terminal's width.
  std::string narrow = render_top(before, now, 2.0, "name", "x", 30);
  CHECK(narrow.find("out                  sink     \n") != std::string::npos);
}
