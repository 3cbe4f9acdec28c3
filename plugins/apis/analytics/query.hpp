// What the analytics API asks ClickHouse, and how it reads the answers: pure functions of
// a request and the server's dialect, so each is tested without a server
// (test/unit/analytics_query_test.cpp). The HTTP side is analytics.cpp. docs/analytics.md
// defines every query and measure.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "weir/buffer.hpp"
#include "weir/http.hpp"
#include "weir/result.hpp"
#include "weir/time.hpp"

namespace weir::plugins::analytics {

// What differs between ClickHouse servers: `timestamp` is a DateTime64(3) from 20.1 on (a
// DateTime of whole seconds before, tools/schema/cvat-events-18.16.sql), and JSON is read
// with JSONExtract* from 19.8 (visitParam* before).
struct Dialect {
  bool datetime64 = false;
  bool json_extract = false;
  static Dialect of_version(std::string_view version);  // "18.16.1", "23.8.2.7"
};

// A time as CVAT's export takes it: ISO-8601 (a date alone is its midnight, UTC; no offset
// means UTC) or epoch seconds.
Result<EpochNanos> parse_export_time(std::string_view text);
// A time as the measures query takes it: ISO-8601, or epoch milliseconds (digits).
Result<EpochNanos> parse_query_time(std::string_view text);

// ---- CVAT's events export ----------------------------------------------------------------

struct ExportFilters {
  std::optional<EpochNanos> from, to;
  std::vector<std::pair<std::string, std::uint64_t>> ids;  // (column, id), in CVAT's order
  std::string canonical() const;  // the same filters, the same text
};
// The filters of an export request's query string; `now` is `to`'s default. Errors are the
// 400's message.
Result<ExportFilters> parse_export_filters(const http::Request& request, EpochNanos now);
// The export's query, answered as TabSeparated. `table` is `db`.`table`, quoted.
std::string export_sql(const ExportFilters& filters, const std::string& table, Dialect dialect);
// The CSV's header row.
std::string_view export_csv_header();

// ClickHouse's TabSeparated rows into CSV as Python's csv.writer writes it (what CVAT's
// export file is): a field is quoted only when it holds a comma, a quote, CR or LF; NULL
// (\N) is an empty field; lines end with CRLF. Fed in pieces as they arrive; a row split
// between pieces is held until its end comes.
// A row of another width is an error, not a row: ClickHouse reports a failure that comes
// after its 200 (a timeout, a memory limit) as a line of text in the body.
class TsvToCsv {
 public:
  explicit TsvToCsv(std::size_t fields) : fields_(fields) {}
  void feed(std::string_view piece, ByteBuffer& out);
  // The end of the input: false when a row was left unfinished (the answer was cut).
  bool finish(ByteBuffer& out);
  std::uint64_t rows() const { return rows_; }
  // Empty while every row had its fields; else what came instead (its first 300 bytes).
  const std::string& error() const { return error_; }

 private:
  void row(std::string_view line, ByteBuffer& out);
  void write_field(std::string_view field, ByteBuffer& out);  // unescaped, quoted if it must be
  std::size_t fields_;
  std::string partial_;
  std::string field_;
  std::string error_;
  std::uint64_t rows_ = 0;
};
inline constexpr std::size_t kExportColumns = 18;

// ---- the measures query --------------------------------------------------------------------

enum class Granularity { Second, Minute, Hour, Day, Week, Month };
std::string_view granularity_name(Granularity g);

struct MeasureRequest {
  std::string type;
  std::vector<Granularity> granularities;
  std::size_t page = 0;
  std::size_t page_size = 1000;  // 0: every row
  bool descending = false;
};

struct QueryRequest {
  EpochNanos start = 0, end = 0;  // start <= timestamp < end
  std::vector<std::pair<std::string, std::vector<std::uint64_t>>> context;  // (column, ids)
  std::vector<MeasureRequest> measures;
};

// The supported measures, as the 400 for an unknown one lists them.
const std::vector<std::string>& supported_measures();
// Dataloop's payload (docs/analytics.md); errors are the 400's message.
Result<QueryRequest> parse_query(std::string_view body, EpochNanos now);

// How many time buckets [start, end) spans at `g` (the filled measures answer each).
std::uint64_t bucket_count(EpochNanos start, EpochNanos end, Granularity g);

// One (measure, granularity)'s query, answered as TabSeparated, at most `max_rows` + 1 rows
// (one more tells that there were too many).
std::string measure_sql(const QueryRequest& query, const MeasureRequest& measure, Granularity g,
                        const std::string& table, Dialect dialect, std::uint64_t max_rows);
// Its element of the answer, {"measureType", "timeGranularity", "page", "pageSize",
// "totalRows", "response": [...]}, from the query's TabSeparated rows: buckets filled,
// sorted, paged. An error when the rows cannot be read, or are more than max_rows (then
// `too_many` is set: the asker's range is too wide, not the server's answer wrong).
Status measure_element(const QueryRequest& query, const MeasureRequest& measure, Granularity g,
                       std::string_view tsv, std::uint64_t max_rows, ByteBuffer& out, bool* too_many = nullptr);

}  // namespace weir::plugins::analytics

namespace weir::plugins::analytics {

// ---- the dashboards' tables (GET /api/v1/analytics/table?name=...) ----------------------

// The dashboards' filters: a time range and lists of ids per column.
struct PanelFilters {
  std::optional<EpochNanos> from, to;  // from <= timestamp < to
  std::vector<std::pair<std::string, std::vector<std::uint64_t>>> ids;  // (column, any of)
  std::uint64_t step = 3600;  // seconds per bucket, for the tables over time
  std::uint64_t limit = 100;  // rows of the event lists
};
Result<PanelFilters> parse_panel_filters(const http::Request& request);
// The names a table may have, as the 400 for another lists them.
const std::vector<std::string>& panel_tables();
// The query of table `name`, answered as ClickHouse's JSONCompact; `now` anchors "active
// users now" (the last 15 minutes). An error for an unknown name.
Result<std::string> panel_sql(std::string_view name, const PanelFilters& filters, const std::string& table,
                              Dialect dialect, EpochNanos now);

}  // namespace weir::plugins::analytics
