// The analytics API's queries and answers without a server (plugins/apis/analytics/query.hpp);
// test/e2e/analytics.py runs them against ClickHouse 18.16.
#include <catch2/catch.hpp>

#include "plugins/apis/analytics/query.hpp"

using namespace weir;
using namespace weir::plugins::analytics;

namespace {
EpochNanos at(const char* iso) { return parse_iso8601(iso).value(); }

http::Request with_query(std::string query) {
  http::Request r;
  r.method = "GET";
  r.path = "/api/events";
  r.query = std::move(query);
  return r;
}

std::string csv_of(std::vector<std::string> pieces, bool* complete = nullptr, std::string* error = nullptr) {
  TsvToCsv csv(6);
  ByteBuffer out;
  for (const std::string& p : pieces) csv.feed(p, out);
  bool whole = csv.finish(out);
  if (complete) *complete = whole;
  if (error) *error = csv.error();
  return std::string(out.view());
}

std::string element(const QueryRequest& q, std::size_t m, Granularity g, std::string_view tsv, std::uint64_t max = 1000) {
  ByteBuffer out;
  Status made = measure_element(q, q.measures[m], g, tsv, max, out);
  return made.ok() ? std::string(out.view()) : "error: " + made.error().message();
}
}  // namespace

TEST_CASE("analytics: the server's version picks the dialect") {
  CHECK_FALSE(Dialect::of_version("18.16.1").datetime64);
  CHECK_FALSE(Dialect::of_version("18.16.1").json_extract);
  CHECK(Dialect::of_version("19.8.3.8").json_extract);
  CHECK_FALSE(Dialect::of_version("19.14.3").datetime64);
  CHECK(Dialect::of_version("23.8.2.7").datetime64);
  CHECK(Dialect::of_version("23.8.2.7").json_extract);
}

TEST_CASE("analytics: export times as CVAT takes them") {
  CHECK(parse_export_time("2024-01-01").value() == at("2024-01-01T00:00:00Z"));
  CHECK(parse_export_time("2024-01-01T12:00:00+02:00").value() == at("2024-01-01T10:00:00Z"));
  CHECK(parse_export_time("2024-01-01T12:00:00.5Z").value() == at("2024-01-01T12:00:00.500Z"));
  CHECK(parse_export_time("1704110400").value() == at("2024-01-01T12:00:00Z"));
  CHECK(parse_export_time("1704110400.25").value() == at("2024-01-01T12:00:00.250Z"));
  CHECK_FALSE(parse_export_time("yesterday").ok());
  CHECK(parse_query_time("1704110400250").value() == at("2024-01-01T12:00:00.250Z"));
  CHECK(parse_query_time("2024-01-01T12:00:00Z").value() == at("2024-01-01T12:00:00Z"));
}

TEST_CASE("analytics: export filters, their defaults and their 400s") {
  EpochNanos now = at("2024-02-01T00:00:00Z");
  auto none = parse_export_filters(with_query(""), now);
  REQUIRE(none.ok());
  CHECK_FALSE(none.value().from.has_value());
  CHECK(none.value().to == now);  // `to` defaults to now; `from` has no lower bound
  auto some = parse_export_filters(with_query("job_id=7&org_id=2&from=2024-01-01&to=&user_id="), now);
  REQUIRE(some.ok());
  CHECK(some.value().ids == std::vector<std::pair<std::string, std::uint64_t>>{{"org_id", 2}, {"job_id", 7}});
  CHECK(some.value().from == at("2024-01-01T00:00:00Z"));
  CHECK(parse_export_filters(with_query("job_id=abc"), now).error().message() == "job_id: 'abc' is not an id (an unsigned integer)");
  CHECK(parse_export_filters(with_query("task_id=-1"), now).error().message().starts_with("task_id:"));
  CHECK(parse_export_filters(with_query("from=nope"), now).error().message() == "Cannot parse 'from' datetime parameter: nope");
  CHECK(parse_export_filters(with_query("from=2024-01-02&to=2024-01-01"), now).error().message() == "'from' must be before 'to'");
  CHECK_FALSE(parse_export_filters(with_query("from=2025-01-01"), now).ok());  // after now, the default `to`
}

TEST_CASE("analytics: the export query on 18.16 (whole seconds) and on a current server") {
  ExportFilters f;
  f.from = at("2024-01-01T12:00:00.250Z");
  f.to = at("2024-01-01T13:00:00.750Z");
  f.ids = {{"project_id", 3}, {"user_id", 9}};
  std::string old_sql = export_sql(f, "`cvat`.`events`", Dialect::of_version("18.16.1"));
  CHECK(old_sql.find("FROM `cvat`.`events` WHERE source IN ('server', 'client') AND scope != 'send:exception'") != std::string::npos);
  // From rounded up, to rounded down: a row of 12:00:00 is before 12:00:00.250.
  CHECK(old_sql.find("timestamp >= toDateTime(1704110401) AND timestamp <= toDateTime(1704114000)") != std::string::npos);
  CHECK(old_sql.find("AND project_id = 3 AND user_id = 9 ORDER BY timestamp ASC FORMAT TabSeparated") != std::string::npos);
  std::string new_sql = export_sql(f, "`cvat`.`events`", Dialect::of_version("24.3"));
  CHECK(new_sql.find("timestamp >= toDateTime64('2024-01-01 12:00:00.250', 3, 'Etc/UTC')") != std::string::npos);
  CHECK(new_sql.find("timestamp <= toDateTime64('2024-01-01 13:00:00.750', 3, 'Etc/UTC')") != std::string::npos);
}

TEST_CASE("analytics: TabSeparated into Python's csv, rows split anywhere between pieces") {
  std::string tsv = "draw:object\t\\N\t5\tsaid \"hi\", then\\tleft\tclient\t2024-01-01 12:00:00\n"
                    "a\\\\b\tline\\nbreak\tcr\\r\t\t\\N\tx\n";
  std::string expected = "draw:object,,5,\"said \"\"hi\"\", then\tleft\",client,2024-01-01 12:00:00\r\n"
                         "a\\b,\"line\nbreak\",\"cr\r\",,,x\r\n";
  CHECK(csv_of({tsv}) == expected);
  for (std::size_t cut = 1; cut < tsv.size(); cut += 3) {
    CHECK(csv_of({tsv.substr(0, cut), tsv.substr(cut)}) == expected);
  }
  bool complete = true;
  csv_of({"a\tb\tc\td\te\tf\nc\t"}, &complete);
  CHECK_FALSE(complete);  // an answer cut in the middle of a row
  // A failure after ClickHouse's 200 comes as a line of text: an error, not a row.
  std::string error;
  std::string kept = csv_of({"a\tb\tc\td\te\tf\nCode: 241. DB::Exception: Memory limit exceeded\n"}, nullptr, &error);
  CHECK(error == "a row of 1 fields, not 6: Code: 241. DB::Exception: Memory limit exceeded");
  CHECK(kept == "a,b,c,d,e,f\r\n");
}

TEST_CASE("analytics: the measures payload and its 400s") {
  EpochNanos now = at("2024-02-01T00:00:00Z");
  auto q = parse_query(R"({"startTime":"2024-01-01T00:00:00Z","endTime":1704153600000,
      "context":{"userId":["1","2"],"assignmentId":["7"],"datasetId":[],"orgId":[]},
      "measures":[{"measureType":"activeUsers","timeGranularity":["hour","day"],"page":1,"pageSize":2,
                   "sortDirection":"descending"},{"measureType":"userStatsTotalActivityTime"}]})",
                       now);
  REQUIRE(q.ok());
  CHECK(q.value().start == at("2024-01-01T00:00:00Z"));
  CHECK(q.value().end == at("2024-01-02T00:00:00Z"));
  REQUIRE(q.value().context.size() == 2);
  CHECK(q.value().context[0].first == "user_id");
  CHECK(q.value().context[1] == std::pair<std::string, std::vector<std::uint64_t>>{"job_id", {7}});
  REQUIRE(q.value().measures.size() == 2);
  CHECK(q.value().measures[0].granularities == std::vector<Granularity>{Granularity::Hour, Granularity::Day});
  CHECK(q.value().measures[0].descending);
  CHECK(q.value().measures[1].granularities == std::vector<Granularity>{Granularity::Hour});  // the default
  CHECK(parse_query(R"({"startTime":"1704067200000","measures":[{"measureType":"activeUsers"}]})", now).value().end == now);

  auto error = [&](const char* body) { return parse_query(body, now).error().message(); };
  CHECK(error(R"({"measures":[{"measureType":"activeUsers"}]})") == "startTime is required");
  CHECK(error("not json").starts_with("the body is not JSON"));
  CHECK(error(R"({"startTime":1,"context":{"userId":"1"},"measures":[{"measureType":"activeUsers"}]})") ==
        "context.userId must be a list of strings");
  CHECK(error(R"({"startTime":1,"context":{"userId":[1]},"measures":[{"measureType":"activeUsers"}]})") ==
        "context.userId must be a list of strings");
  CHECK(error(R"({"startTime":1,"context":{"datasetId":["x"]},"measures":[{"measureType":"activeUsers"}]})")
            .starts_with("context.datasetId: CVAT's events have no such dimension"));
  CHECK(error(R"({"startTime":1,"measures":[{"measureType":"pieChart"}]})").find("supported: activeUsers,") != std::string::npos);
  CHECK(error(R"({"startTime":1,"measures":[{"measureType":"activeUsers","timeGranularity":["fortnight"]}]})")
            .find("'fortnight' is not one of") != std::string::npos);
  CHECK(error(R"({"startTime":2,"endTime":1,"measures":[{"measureType":"activeUsers"}]})") ==
        "startTime must not be after endTime");
  CHECK(error(R"({"startTime":1,"measures":[]})").starts_with("measures must be a non-empty list"));
  CHECK(error(R"({"startTime":1,"measures":[{"measureType":"activeUsers","pageSize":20000}]})")
            .find("pageSize must be an integer from 0 to 10000") != std::string::npos);
}

TEST_CASE("analytics: buckets (weeks from Monday, calendar months) and their count") {
  CHECK(bucket_count(at("2024-01-01T00:00:00Z"), at("2024-01-02T00:00:00Z"), Granularity::Hour) == 24);
  CHECK(bucket_count(at("2024-01-01T00:30:00Z"), at("2024-01-01T01:00:00.001Z"), Granularity::Hour) == 2);
  CHECK(bucket_count(at("2024-01-01T00:00:00Z"), at("2024-01-01T00:00:00Z"), Granularity::Hour) == 0);
  CHECK(bucket_count(at("2024-01-03T00:00:00Z"), at("2024-01-15T00:00:00Z"), Granularity::Week) == 2);  // Mon 1st, Mon 8th
  CHECK(bucket_count(at("2024-01-31T00:00:00Z"), at("2024-03-01T00:00:00Z"), Granularity::Month) == 2);
  CHECK(bucket_count(at("2023-12-31T00:00:00Z"), at("2024-01-01T00:00:01Z"), Granularity::Month) == 2);
}

TEST_CASE("analytics: a filled measure answers every bucket, sorted and paged") {
  auto q = parse_query(R"({"startTime":"2024-01-01T10:30:00Z","endTime":"2024-01-01T14:00:00Z",
      "measures":[{"measureType":"activeUsers"},
                  {"measureType":"activeUsers","page":1,"pageSize":2,"sortDirection":"descending"},
                  {"measureType":"activeUsers","pageSize":0},
                  {"measureType":"activeUsers","timeGranularity":"month"}]})",
                       0);
  REQUIRE(q.ok());
  // ClickHouse answers only the buckets with events (epoch seconds of their starts).
  std::string tsv = "1704106800\t3\n1704114000\t1\n";  // 11:00, 13:00
  CHECK(element(q.value(), 0, Granularity::Hour, tsv) ==
        R"({"measureType":"activeUsers","timeGranularity":"hour","page":0,"pageSize":1000,"totalRows":4,"response":[)"
        R"({"time":"2024-01-01T10:00:00.000Z","activeUsers":0},{"time":"2024-01-01T11:00:00.000Z","activeUsers":3},)"
        R"({"time":"2024-01-01T12:00:00.000Z","activeUsers":0},{"time":"2024-01-01T13:00:00.000Z","activeUsers":1}]})");
  CHECK(element(q.value(), 1, Granularity::Hour, tsv) ==
        R"({"measureType":"activeUsers","timeGranularity":"hour","page":1,"pageSize":2,"totalRows":4,"response":[)"
        R"({"time":"2024-01-01T11:00:00.000Z","activeUsers":3},{"time":"2024-01-01T10:00:00.000Z","activeUsers":0}]})");
  CHECK(element(q.value(), 2, Granularity::Hour, tsv).find("\"totalRows\":4") != std::string::npos);
  // Months come back from SQL as year * 12 + month - 1.
  CHECK(element(q.value(), 3, Granularity::Month, "24288\t5\n") ==
        R"({"measureType":"activeUsers","timeGranularity":"month","page":0,"pageSize":1000,"totalRows":1,"response":[)"
        R"({"time":"2024-01-01T00:00:00.000Z","activeUsers":5}]})");
  CHECK(element(q.value(), 0, Granularity::Hour, "1704106800\n").starts_with("error: ClickHouse answered a row of 1 fields"));
}

TEST_CASE("analytics: keyed measures sort by time then key, ids as strings; too many rows is an error") {
  auto q = parse_query(R"({"startTime":"2024-01-01T00:00:00Z","endTime":"2024-01-02T00:00:00Z",
      "measures":[{"measureType":"userStatsActivityTime"},{"measureType":"labelingCounters"},
                  {"measureType":"itemAnnotationDuration"},{"measureType":"countItemInAnnotationTimeBucket"}]})",
                       0);
  REQUIRE(q.ok());
  CHECK(element(q.value(), 0, Granularity::Day, "1704067200\t12\t500\n1704067200\t3\t7\n") ==
        R"({"measureType":"userStatsActivityTime","timeGranularity":"day","page":0,"pageSize":1000,"totalRows":2,"response":[)"
        R"({"time":"2024-01-01T00:00:00.000Z","userId":"3","activityDuration":7},)"
        R"({"time":"2024-01-01T00:00:00.000Z","userId":"12","activityDuration":500}]})");
  CHECK(element(q.value(), 1, Granularity::Hour, "1704067200\tsave:job\t2\n1704067200\tdraw:object\t5\n")
            .find(R"([{"time":"2024-01-01T00:00:00.000Z","scope":"draw:object","count":5},)") != std::string::npos);
  CHECK(element(q.value(), 2, Granularity::Hour, "9\t100\n").find(R"([{"itemId":"9","duration":100}])") != std::string::npos);
  CHECK(element(q.value(), 3, Granularity::Minute, "2\t4\n0\t1\n").find(R"([{"bucket":0,"items":1},{"bucket":2,"items":4}])") !=
        std::string::npos);
  CHECK(element(q.value(), 2, Granularity::Hour, "1\t1\n2\t2\n3\t3\n", 2).find("more than 2 rows") != std::string::npos);
}

TEST_CASE("analytics: measure queries read working time with the dialect's JSON function") {
  auto q = parse_query(R"({"startTime":"2024-01-01T00:00:00.500Z","endTime":"2024-01-02T00:00:00Z",
      "context":{"projectId":["4","5"]},"measures":[{"measureType":"userStatsTotalActivityTime"}]})",
                       0);
  REQUIRE(q.ok());
  std::string old_sql = measure_sql(q.value(), q.value().measures[0], Granularity::Hour, "`cvat`.`events`",
                                    Dialect::of_version("18.16.1"), 100);
  CHECK(old_sql.find("visitParamExtractUInt(ifNull(payload, ''), 'working_time')") != std::string::npos);
  CHECK(old_sql.find("timestamp >= toDateTime(1704067201) AND timestamp < toDateTime(1704153600) AND project_id IN (4, 5)") !=
        std::string::npos);
  CHECK(old_sql.ends_with("LIMIT 101 FORMAT TabSeparated"));
  std::string new_sql = measure_sql(q.value(), q.value().measures[0], Granularity::Hour, "`cvat`.`events`",
                                    Dialect::of_version("24.3"), 100);
  CHECK(new_sql.find("JSONExtractUInt(ifNull(payload, ''), 'working_time')") != std::string::npos);
}
