#include "query.hpp"

#include <algorithm>
#include <charconv>
#include <map>

#include <fmt/format.h>

#include "weir/arena.hpp"
#include "weir/csv.hpp"
#include "weir/json.hpp"

namespace weir::plugins::analytics {
namespace {

constexpr EpochNanos kSecond = 1'000'000'000;
constexpr EpochNanos kMs = 1'000'000;

bool all_digits(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::optional<std::uint64_t> parse_id(std::string_view text) {
  std::uint64_t id = 0;
  if (!all_digits(text)) return std::nullopt;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return id;
}

// Floor division for times before the epoch too.
std::int64_t floor_div(std::int64_t a, std::int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// The ISO-8601 forms (and a date alone) weir reads.
Result<EpochNanos> parse_iso(std::string_view text) {
  if (text.size() == 10 && text[4] == '-' && text[7] == '-') return parse_iso8601(std::string(text) + "T00:00:00Z");
  return parse_iso8601(text);
}

// A DateTime literal of the dialect: whole seconds on 18.16 (rounded up when `up`, else down).
std::string time_literal(EpochNanos t, Dialect dialect, bool up) {
  if (dialect.datetime64) {
    std::string iso = format_iso8601_ms(t);  // 2024-01-01T12:00:00.123Z
    iso[10] = ' ';
    iso.pop_back();
    return fmt::format("toDateTime64('{}', 3, 'Etc/UTC')", iso);
  }
  std::int64_t seconds = up ? -floor_div(-t, kSecond) : floor_div(t, kSecond);
  // A DateTime is a UInt32: a later time would wrap around to 1970.
  return fmt::format("toDateTime({})", std::clamp<std::int64_t>(seconds, 0, 4294967295));
}

// TabSeparated's escapes undone (ClickHouse escapes \b \f \r \n \t \0 \' \\).
void unescape_tsv(std::string_view field, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < field.size(); ++i) {
    char c = field[i];
    if (c != '\\' || i + 1 == field.size()) {
      out.push_back(c);
      continue;
    }
    char e = field[++i];
    switch (e) {
      case 'b': out.push_back('\b'); break;
      case 'f': out.push_back('\f'); break;
      case 'r': out.push_back('\r'); break;
      case 'n': out.push_back('\n'); break;
      case 't': out.push_back('\t'); break;
      case '0': out.push_back('\0'); break;
      default: out.push_back(e); break;  // \\ \' and anything else: the character itself
    }
  }
}

std::vector<std::string_view> split(std::string_view text, char by) {
  std::vector<std::string_view> parts;
  std::size_t from = 0;
  while (true) {
    std::size_t at = text.find(by, from);
    parts.push_back(text.substr(from, at == std::string_view::npos ? std::string_view::npos : at - from));
    if (at == std::string_view::npos) break;
    from = at + 1;
  }
  return parts;
}

// ---- measures ----

enum class Shape {
  Filled,        // (bucket, value...): every bucket of the range
  TimeKeyed,     // (bucket, key, value): the pairs that occur
  Keyed,         // (key, value) over the whole range
};

struct MeasureSpec {
  std::string_view type;
  Shape shape;
  bool key_is_text = false;        // labelingCounters' scope
  std::vector<std::string_view> fields;  // the row's names after time / key
  std::string_view key_name;       // the key's name in a row
  bool key_as_string = false;      // ids as strings
};

const std::vector<MeasureSpec>& specs() {
  static const std::vector<MeasureSpec> all = {
      {"activeUsers", Shape::Filled, false, {"activeUsers"}, "", false},
      {"annotationTimeline", Shape::Filled, false, {"annotations"}, "", false},
      {"issueCounters", Shape::Filled, false, {"issues", "comments"}, "", false},
      {"labelingCounters", Shape::TimeKeyed, true, {"count"}, "scope", false},
      {"userStatsActivityTime", Shape::TimeKeyed, false, {"activityDuration"}, "userId", true},
      {"userStatsTotalActivityTime", Shape::Keyed, false, {"activityDuration"}, "userId", true},
      {"itemAnnotationDuration", Shape::Keyed, false, {"duration"}, "itemId", true},
      {"countItemInAnnotationTimeBucket", Shape::Keyed, false, {"items"}, "bucket", false},
  };
  return all;
}

const MeasureSpec* find_spec(std::string_view type) {
  for (const MeasureSpec& s : specs()) {
    if (s.type == type) return &s;
  }
  return nullptr;
}

std::int64_t width_seconds(Granularity g) {
  switch (g) {
    case Granularity::Second: return 1;
    case Granularity::Minute: return 60;
    case Granularity::Hour: return 3600;
    case Granularity::Day: return 86400;
    case Granularity::Week: return 7 * 86400;
    case Granularity::Month: return 30 * 86400;  // the histogram's unit only; buckets are calendar months
  }
  return 3600;
}

// A bucket's start (epoch seconds) for a time in epoch seconds.
std::int64_t bucket_of(std::int64_t seconds, Granularity g) {
  if (g == Granularity::Week) {
    std::int64_t day = floor_div(seconds, 86400);
    std::int64_t since_monday = ((day + 3) % 7 + 7) % 7;  // 1970-01-01 was a Thursday
    return (day - since_monday) * 86400;
  }
  if (g == Granularity::Month) {
    std::int64_t year;
    unsigned month, day;
    civil_from_days(floor_div(seconds, 86400), year, month, day);
    return days_from_civil(year, month, 1) * 86400;
  }
  return floor_div(seconds, width_seconds(g)) * width_seconds(g);
}

std::int64_t next_bucket(std::int64_t bucket, Granularity g) {
  if (g == Granularity::Month) {
    std::int64_t year;
    unsigned month, day;
    civil_from_days(floor_div(bucket, 86400), year, month, day);
    if (++month > 12) {
      month = 1;
      ++year;
    }
    return days_from_civil(year, month, 1) * 86400;
  }
  return bucket + width_seconds(g);
}

// The bucket of `timestamp` in SQL, as epoch seconds (for months, year * 12 + month - 1,
// made a time by bucket_from_sql).
std::string bucket_sql(Granularity g) {
  switch (g) {
    case Granularity::Week:
      return "(intDiv(toUInt32(timestamp), 86400) - (intDiv(toUInt32(timestamp), 86400) + 3) % 7) * 86400";
    case Granularity::Month: return "(toYear(timestamp) * 12 + toMonth(timestamp) - 1)";
    default: return fmt::format("intDiv(toUInt32(timestamp), {0}) * {0}", width_seconds(g));
  }
}

std::int64_t bucket_from_sql(std::int64_t value, Granularity g) {
  if (g != Granularity::Month) return value;
  std::int64_t year = floor_div(value, 12);
  auto month = static_cast<unsigned>(value - year * 12 + 1);
  return days_from_civil(year, month, 1) * 86400;
}

// A payload's JSON key as `type` (UInt, String), read with the dialect's function.
std::string payload_json(Dialect dialect, std::string_view type, std::string_view key) {
  return fmt::format("{}{}(ifNull(payload, ''), '{}')", dialect.json_extract ? "JSONExtract" : "visitParamExtract", type, key);
}

std::string working_time_sql(Dialect dialect) { return payload_json(dialect, "UInt", "working_time"); }

// " AND timestamp >= from AND timestamp < to" for the bounds given (from <= timestamp < to).
std::string range_sql(std::optional<EpochNanos> from, std::optional<EpochNanos> to, Dialect dialect) {
  std::string sql;
  if (from) sql += " AND timestamp >= " + time_literal(*from, dialect, true);
  if (to) sql += " AND timestamp < " + time_literal(*to, dialect, true);
  return sql;
}

// " AND column IN (ids)" for each list.
std::string ids_sql(const std::vector<std::pair<std::string, std::vector<std::uint64_t>>>& lists) {
  std::string sql;
  for (const auto& [column, ids] : lists) sql += fmt::format(" AND {} IN ({})", column, fmt::join(ids, ", "));
  return sql;
}

struct Row {
  std::int64_t time = 0;
  std::uint64_t key = 0;
  std::string text_key;
  std::vector<std::uint64_t> values;
};

}  // namespace

Dialect Dialect::of_version(std::string_view version) {
  int major = 0, minor = 0;
  auto parts = split(version, '.');
  if (!parts.empty()) std::from_chars(parts[0].data(), parts[0].data() + parts[0].size(), major);
  if (parts.size() > 1) std::from_chars(parts[1].data(), parts[1].data() + parts[1].size(), minor);
  Dialect d;
  d.datetime64 = major >= 20;
  d.json_extract = major > 19 || (major == 19 && minor >= 8);
  return d;
}

Result<EpochNanos> parse_export_time(std::string_view text) {
  bool epoch = !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
  auto parsed = epoch ? parse_epoch_seconds(text) : parse_iso(text);
  if (!parsed.ok()) return Error(parsed.error().message());
  return parsed.value();
}

Result<EpochNanos> parse_query_time(std::string_view text) {
  if (all_digits(text)) {
    auto ms = parse_id(text);
    if (!ms || *ms > 253402300799999ULL) return Error(fmt::format("'{}' is not a time in epoch milliseconds", text));
    return static_cast<EpochNanos>(*ms) * kMs;
  }
  auto parsed = parse_iso(text);
  if (!parsed.ok()) return Error(parsed.error().message());
  return parsed.value();
}

// ---- export ----

std::string ExportFilters::canonical() const {
  std::string out = fmt::format("from={}&to={}", from ? std::to_string(*from) : "", to ? std::to_string(*to) : "");
  for (const auto& [column, id] : ids) out += fmt::format("&{}={}", column, id);
  return out;
}

Result<ExportFilters> parse_export_filters(const http::Request& request, EpochNanos now) {
  ExportFilters filters;
  for (const char* column : {"org_id", "project_id", "task_id", "job_id", "user_id"}) {
    auto text = request.query_param(column);
    if (!text || text->empty()) continue;
    auto id = parse_id(*text);
    if (!id) return Error(fmt::format("{}: '{}' is not an id (an unsigned integer)", column, *text));
    filters.ids.emplace_back(column, *id);
  }
  for (auto [name, into] : {std::pair{"from", &filters.from}, std::pair{"to", &filters.to}}) {
    auto text = request.query_param(name);
    if (!text || text->empty()) continue;
    auto parsed = parse_export_time(*text);
    if (!parsed.ok()) return Error(fmt::format("Cannot parse '{}' datetime parameter: {}", name, *text));
    *into = parsed.value();
  }
  if (filters.from && filters.to && *filters.from > *filters.to) return Error("'from' must be before 'to'");
  // CVAT's defaults: `to` now; `from` the object's creation, which weir knows no better than
  // as its first event: the same rows as no lower bound (docs/analytics.md).
  if (!filters.to) {
    filters.to = now;
    if (filters.from && *filters.from > now) return Error("'from' must be before 'to' (now, when 'to' is not given)");
  }
  return filters;
}

std::string_view export_csv_header() {
  return "scope,obj_name,obj_id,obj_val,source,timestamp,count,duration,project_id,task_id,job_id,user_id,"
         "user_name,user_email,org_id,org_slug,payload,access_token_id\r\n";
}

std::string export_sql(const ExportFilters& filters, const std::string& table, Dialect dialect) {
  std::string sql = fmt::format(
      "SELECT scope, obj_name, obj_id, obj_val, source, timestamp, count, duration, project_id, task_id, job_id, "
      "user_id, user_name, user_email, org_id, org_slug, payload, access_token_id FROM {} "
      "WHERE source IN ('server', 'client') AND scope != 'send:exception'",
      table);
  if (filters.from) sql += " AND timestamp >= " + time_literal(*filters.from, dialect, true);
  if (filters.to) sql += " AND timestamp <= " + time_literal(*filters.to, dialect, false);
  for (const auto& [column, id] : filters.ids) sql += fmt::format(" AND {} = {}", column, id);
  sql += " ORDER BY timestamp ASC FORMAT TabSeparated";
  return sql;
}

void TsvToCsv::feed(std::string_view piece, ByteBuffer& out) {
  while (!piece.empty()) {
    std::size_t end = piece.find('\n');
    if (end == std::string_view::npos) {
      partial_.append(piece);
      return;
    }
    if (partial_.empty()) {
      row(piece.substr(0, end), out);
    } else {
      partial_.append(piece.substr(0, end));
      row(partial_, out);
      partial_.clear();
    }
    piece.remove_prefix(end + 1);
  }
}

bool TsvToCsv::finish(ByteBuffer& out) {
  if (partial_.empty()) return true;
  row(partial_, out);
  partial_.clear();
  return false;
}

void TsvToCsv::row(std::string_view line, ByteBuffer& out) {
  if (!error_.empty()) return;
  std::size_t count = 1 + static_cast<std::size_t>(std::count(line.begin(), line.end(), '\t'));
  if (count != fields_) {
    error_ = fmt::format("a row of {} fields, not {}: {}", count, fields_, line.substr(0, 300));
    return;
  }
  bool first = true;
  while (true) {
    std::size_t tab = line.find('\t');
    std::string_view field = line.substr(0, tab);
    if (!first) out.push_back(',');
    first = false;
    if (field == "\\N") {
      // NULL: an empty field, as Python's csv writes None.
    } else if (field.find_first_of(",\"\r\n\\") == std::string_view::npos) {
      out.append(field);  // most fields: nothing to undo, nothing to quote
    } else {
      write_field(field, out);
    }
    if (tab == std::string_view::npos) break;
    line.remove_prefix(tab + 1);
  }
  out.append("\r\n");
  ++rows_;
}

void TsvToCsv::write_field(std::string_view field, ByteBuffer& out) {
  unescape_tsv(field, field_);
  write_csv_field(field_, out);
}

// ---- measures ----

std::string_view granularity_name(Granularity g) {
  switch (g) {
    case Granularity::Second: return "second";
    case Granularity::Minute: return "minute";
    case Granularity::Hour: return "hour";
    case Granularity::Day: return "day";
    case Granularity::Week: return "week";
    case Granularity::Month: return "month";
  }
  return "hour";
}

const std::vector<std::string>& supported_measures() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const MeasureSpec& s : specs()) out.emplace_back(s.type);
    return out;
  }();
  return names;
}

Result<QueryRequest> parse_query(std::string_view body, EpochNanos now) {
  Arena arena;
  JsonParser parser;
  auto parsed = parser.parse(body, arena);
  if (!parsed.ok()) return Error("the body is not JSON: " + parsed.error().message());
  const Value& root = parsed.value();
  if (!root.is_object()) return Error("the body must be a JSON object");
  QueryRequest query;

  auto time_of = [&](std::string_view key) -> Result<std::optional<EpochNanos>> {
    const Value* v = root.find(key);
    if (v == nullptr || v->is_null()) return std::optional<EpochNanos>();
    if (v->is_int() || v->is_uint()) {
      if (v->is_int() && v->as_int() < 0) return Error(fmt::format("{} must not be before 1970", key));
      std::uint64_t ms = v->is_int() ? static_cast<std::uint64_t>(v->as_int()) : v->as_uint();
      if (ms > 253402300799999ULL) return Error(fmt::format("{}: {} is not a time in epoch milliseconds", key, ms));
      return std::optional<EpochNanos>(static_cast<EpochNanos>(ms) * kMs);
    }
    if (!v->is_string()) return Error(fmt::format("{} must be an ISO-8601 time or epoch milliseconds", key));
    auto t = parse_query_time(v->as_string());
    if (!t.ok()) return Error(fmt::format("{}: {}", key, t.error().message()));
    return std::optional<EpochNanos>(t.value());
  };
  auto start = time_of("startTime");
  if (!start.ok()) return start.error();
  if (!start.value()) return Error("startTime is required");
  auto end = time_of("endTime");
  if (!end.ok()) return end.error();
  query.start = *start.value();
  query.end = end.value().value_or(now);
  if (query.start > query.end) return Error("startTime must not be after endTime");

  static const std::vector<std::pair<std::string_view, std::string_view>> kColumns = {
      {"orgId", "org_id"}, {"projectId", "project_id"}, {"taskId", "task_id"}, {"userId", "user_id"},
      {"assignmentId", "job_id"}};
  static const std::vector<std::string_view> kWithoutColumn = {
      "accountId", "datasetId", "itemId", "serviceId", "podId", "modelId", "snapshotId", "pipelineId", "triggerId",
      "pipelineExecutionId", "nodeId", "ontologyId"};
  if (const Value* context = root.find("context"); context != nullptr && !context->is_null()) {
    if (!context->is_object()) return Error("context must be an object of lists of strings");
    for (const Member& m : context->members()) {
      if (!m.value.is_array() || !std::all_of(m.value.elements().begin(), m.value.elements().end(),
                                              [](const Value& e) { return e.is_string(); })) {
        return Error(fmt::format("context.{} must be a list of strings", m.key));
      }
      auto column = std::find_if(kColumns.begin(), kColumns.end(), [&](const auto& c) { return c.first == m.key; });
      if (column == kColumns.end()) {
        bool known = std::find(kWithoutColumn.begin(), kWithoutColumn.end(), m.key) != kWithoutColumn.end();
        if (!known) {
          return Error(fmt::format("context.{} is not a dimension; known: orgId, projectId, taskId, userId, "
                                   "assignmentId (and Dataloop's others, which CVAT's events do not have)",
                                   m.key));
        }
        if (m.value.size() != 0) {
          return Error(fmt::format("context.{}: CVAT's events have no such dimension (only empty lists are accepted)", m.key));
        }
        continue;
      }
      if (m.value.size() == 0) continue;
      std::vector<std::uint64_t> ids;
      for (const Value& e : m.value.elements()) {
        auto id = parse_id(e.as_string());
        if (!id) return Error(fmt::format("context.{}: '{}' is not an id (an unsigned integer)", m.key, e.as_string()));
        ids.push_back(*id);
      }
      query.context.emplace_back(std::string(column->second), std::move(ids));
    }
  }

  const Value* measures = root.find("measures");
  if (measures == nullptr || !measures->is_array() || measures->size() == 0) {
    return Error("measures must be a non-empty list of {\"measureType\": ...}");
  }
  for (const Value& m : measures->elements()) {
    if (!m.is_object()) return Error("each of measures must be an object with a measureType");
    const Value* type = m.find("measureType");
    if (type == nullptr || !type->is_string()) return Error("each of measures needs a measureType (a string)");
    MeasureRequest request;
    request.type = std::string(type->as_string());
    if (find_spec(request.type) == nullptr) {
      return Error(fmt::format("unknown measureType '{}'; supported: {}", request.type, fmt::join(supported_measures(), ", ")));
    }
    const Value* granularity = m.find("timeGranularity");
    std::vector<std::string_view> names;
    if (granularity == nullptr || granularity->is_null()) names = {"hour"};
    else if (granularity->is_string()) names = {granularity->as_string()};
    else if (granularity->is_array() && granularity->size() > 0) {
      for (const Value& g : granularity->elements()) {
        if (!g.is_string()) return Error(fmt::format("{}: timeGranularity must be a list of strings", request.type));
        names.push_back(g.as_string());
      }
    } else {
      return Error(fmt::format("{}: timeGranularity must be a non-empty list of second|minute|hour|day|week|month",
                               request.type));
    }
    for (std::string_view name : names) {
      static const std::vector<std::pair<std::string_view, Granularity>> kNames = {
          {"second", Granularity::Second}, {"minute", Granularity::Minute}, {"hour", Granularity::Hour},
          {"day", Granularity::Day},       {"week", Granularity::Week},     {"month", Granularity::Month}};
      auto found = std::find_if(kNames.begin(), kNames.end(), [&](const auto& n) { return n.first == name; });
      if (found == kNames.end()) {
        return Error(fmt::format("{}: timeGranularity '{}' is not one of second, minute, hour, day, week, month",
                                 request.type, name));
      }
      request.granularities.push_back(found->second);
    }
    auto count = [&](std::string_view key, std::size_t fallback, std::size_t most) -> Result<std::size_t> {
      const Value* v = m.find(key);
      if (v == nullptr || v->is_null()) return fallback;
      if (v->is_uint() && v->as_uint() <= most) return static_cast<std::size_t>(v->as_uint());
      if (v->is_int() && v->as_int() >= 0 && static_cast<std::uint64_t>(v->as_int()) <= most) {
        return static_cast<std::size_t>(v->as_int());
      }
      return Error(fmt::format("{}: {} must be an integer from 0 to {}", request.type, key, most));
    };
    auto page = count("page", 0, 1'000'000'000);
    if (!page.ok()) return page.error();
    auto page_size = count("pageSize", 1000, 10000);
    if (!page_size.ok()) return page_size.error();
    request.page = page.value();
    request.page_size = page_size.value();
    if (const Value* sort = m.find("sortDirection"); sort != nullptr && !sort->is_null()) {
      if (!sort->is_string() || (sort->as_string() != "ascending" && sort->as_string() != "descending")) {
        return Error(fmt::format("{}: sortDirection must be \"ascending\" or \"descending\"", request.type));
      }
      request.descending = sort->as_string() == "descending";
    }
    query.measures.push_back(std::move(request));
  }
  return query;
}

std::uint64_t bucket_count(EpochNanos start, EpochNanos end, Granularity g) {
  if (end <= start) return 0;
  std::int64_t first = bucket_of(floor_div(start, kSecond), g);
  std::int64_t last = bucket_of(floor_div(end - 1, kSecond), g);
  if (g == Granularity::Month) {
    std::int64_t y1, y2;
    unsigned m1, m2, d;
    civil_from_days(first / 86400, y1, m1, d);
    civil_from_days(last / 86400, y2, m2, d);
    return static_cast<std::uint64_t>((y2 * 12 + m2) - (y1 * 12 + m1) + 1);
  }
  return static_cast<std::uint64_t>((last - first) / width_seconds(g) + 1);
}

std::string measure_sql(const QueryRequest& query, const MeasureRequest& measure, Granularity g,
                        const std::string& table, Dialect dialect, std::uint64_t max_rows) {
  std::string where = "1" + range_sql(query.start, query.end, dialect) + ids_sql(query.context);
  std::string b = bucket_sql(g);
  std::string wt = working_time_sql(dialect);
  const std::string& type = measure.type;
  std::string sql;
  if (type == "activeUsers") {
    sql = fmt::format("SELECT {} AS b, uniqExact(user_id) FROM {} WHERE {} AND isNotNull(user_id) GROUP BY b", b, table, where);
  } else if (type == "annotationTimeline") {
    sql = fmt::format("SELECT {} AS b, count() FROM {} WHERE {} AND scope IN ('draw:object', 'paste:object', "
                      "'propagate:object') GROUP BY b",
                      b, table, where);
  } else if (type == "issueCounters") {
    sql = fmt::format("SELECT {} AS b, countIf(scope = 'create:issue'), countIf(scope = 'create:comment') FROM {} "
                      "WHERE {} AND scope IN ('create:issue', 'create:comment') GROUP BY b",
                      b, table, where);
  } else if (type == "labelingCounters") {
    sql = fmt::format("SELECT {} AS b, scope, count() FROM {} WHERE {} GROUP BY b, scope", b, table, where);
  } else if (type == "userStatsActivityTime") {
    sql = fmt::format("SELECT {} AS b, user_id, sum({}) AS t FROM {} WHERE {} AND scope = 'send:working_time' AND "
                      "isNotNull(user_id) GROUP BY b, user_id HAVING t > 0",
                      b, wt, table, where);
  } else if (type == "userStatsTotalActivityTime") {
    sql = fmt::format("SELECT user_id, sum({}) AS t FROM {} WHERE {} AND scope = 'send:working_time' AND "
                      "isNotNull(user_id) GROUP BY user_id HAVING t > 0",
                      wt, table, where);
  } else if (type == "itemAnnotationDuration") {
    sql = fmt::format("SELECT job_id, sum({}) AS t FROM {} WHERE {} AND scope = 'send:working_time' AND "
                      "isNotNull(job_id) GROUP BY job_id HAVING t > 0",
                      wt, table, where);
  } else {  // countItemInAnnotationTimeBucket
    sql = fmt::format("SELECT intDiv(t, {}) AS bucket, count() FROM (SELECT job_id, sum({}) AS t FROM {} WHERE {} AND "
                      "scope = 'send:working_time' AND isNotNull(job_id) GROUP BY job_id) GROUP BY bucket",
                      width_seconds(g) * 1000, wt, table, where);
  }
  return sql + fmt::format(" LIMIT {} FORMAT TabSeparated", max_rows + 1);
}

Status measure_element(const QueryRequest& query, const MeasureRequest& measure, Granularity g,
                       std::string_view tsv, std::uint64_t max_rows, ByteBuffer& out, bool* too_many) {
  const MeasureSpec& spec = *find_spec(measure.type);
  std::vector<Row> rows;
  std::string text;
  std::size_t numbers = spec.fields.size();
  std::size_t columns = numbers + (spec.shape == Shape::TimeKeyed ? 2 : 1);
  for (std::string_view line : split(tsv, '\n')) {
    if (line.empty()) continue;
    auto fields = split(line, '\t');
    if (fields.size() != columns) return Error(fmt::format("ClickHouse answered a row of {} fields, not {}", fields.size(), columns));
    Row row;
    std::size_t at = 0;
    auto number = [&](std::string_view f) -> std::optional<std::uint64_t> { return parse_id(f); };
    if (spec.shape != Shape::Keyed) {
      auto b = number(fields[at++]);
      if (!b) return Error("ClickHouse answered a bucket that is not a number");
      row.time = bucket_from_sql(static_cast<std::int64_t>(*b), g);
    }
    if (spec.shape != Shape::Filled) {
      if (spec.key_is_text) {
        unescape_tsv(fields[at++], row.text_key);
      } else {
        auto k = number(fields[at++]);
        if (!k) return Error("ClickHouse answered a key that is not a number");
        row.key = *k;
      }
    }
    for (std::size_t i = 0; i < numbers; ++i) {
      auto v = number(fields[at++]);
      if (!v) return Error("ClickHouse answered a value that is not a number");
      row.values.push_back(*v);
    }
    rows.push_back(std::move(row));
  }
  if (rows.size() > max_rows) {
    if (too_many != nullptr) *too_many = true;
    return Error(fmt::format("{} has more than {} rows at {} granularity: narrow the range or coarsen the granularity",
                             measure.type, max_rows, granularity_name(g)));
  }
  if (spec.shape == Shape::Filled) {
    std::map<std::int64_t, Row> by_bucket;
    for (Row& r : rows) by_bucket[r.time] = std::move(r);
    rows.clear();
    if (query.end > query.start) {
      std::int64_t last = bucket_of(floor_div(query.end - 1, kSecond), g);
      for (std::int64_t b = bucket_of(floor_div(query.start, kSecond), g); b <= last; b = next_bucket(b, g)) {
        auto found = by_bucket.find(b);
        if (found != by_bucket.end()) {
          rows.push_back(std::move(found->second));
        } else {
          Row empty;
          empty.time = b;
          empty.values.assign(numbers, 0);
          rows.push_back(std::move(empty));
        }
      }
    }
  } else {
    std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
      if (a.time != b.time) return a.time < b.time;
      if (a.text_key != b.text_key) return a.text_key < b.text_key;
      return a.key < b.key;
    });
  }
  if (measure.descending) std::reverse(rows.begin(), rows.end());

  std::size_t total = rows.size();
  std::size_t from = 0, to = total;
  if (measure.page_size != 0) {
    from = std::min<std::size_t>(total, measure.page * measure.page_size);
    to = std::min<std::size_t>(total, from + measure.page_size);
  }
  out.append("{\"measureType\":");
  write_json_string(measure.type, out);
  out.append(fmt::format(R"(,"timeGranularity":"{}","page":{},"pageSize":{},"totalRows":{},"response":[)",
                         granularity_name(g), measure.page, measure.page_size, total));
  for (std::size_t i = from; i < to; ++i) {
    const Row& r = rows[i];
    if (i != from) out.push_back(',');
    out.push_back('{');
    bool comma = false;
    if (spec.shape != Shape::Keyed) {
      out.append("\"time\":");
      write_json_string(format_iso8601_ms(r.time * kSecond), out);
      comma = true;
    }
    if (spec.shape != Shape::Filled) {
      if (comma) out.push_back(',');
      write_json_string(spec.key_name, out);
      out.push_back(':');
      if (spec.key_is_text) write_json_string(r.text_key, out);
      else if (spec.key_as_string) write_json_string(std::to_string(r.key), out);
      else out.append(std::to_string(r.key));
      comma = true;
    }
    for (std::size_t f = 0; f < numbers; ++f) {
      if (comma) out.push_back(',');
      write_json_string(spec.fields[f], out);
      out.append(fmt::format(":{}", r.values[f]));
      comma = true;
    }
    out.push_back('}');
  }
  out.append("]}");
  return {};
}

// ---- the dashboards' tables ----

Result<PanelFilters> parse_panel_filters(const http::Request& request) {
  PanelFilters f;
  for (auto [name, into] : {std::pair{"from", &f.from}, std::pair{"to", &f.to}}) {
    auto text = request.query_param(name);
    if (!text || text->empty()) continue;
    auto parsed = all_digits(*text) && text->size() > 11 ? parse_query_time(*text) : parse_export_time(*text);
    if (!parsed.ok()) return Error(fmt::format("{}: '{}' is not a time (ISO-8601, epoch seconds or milliseconds)", name, *text));
    *into = parsed.value();
  }
  if (f.from && f.to && *f.from > *f.to) return Error("'from' must be before 'to'");
  for (const char* column : {"org_id", "project_id", "task_id", "job_id", "user_id"}) {
    auto text = request.query_param(column);
    if (!text || text->empty()) continue;
    std::vector<std::uint64_t> ids;
    for (std::string_view part : split(*text, ',')) {
      auto id = parse_id(part);
      if (!id) return Error(fmt::format("{}: '{}' is not an id (an unsigned integer)", column, part));
      ids.push_back(*id);
    }
    f.ids.emplace_back(column, std::move(ids));
  }
  for (auto [name, into, least, most] : {std::tuple{"step", &f.step, 1ULL, 366ULL * 86400},
                                         std::tuple{"limit", &f.limit, 1ULL, 10000ULL}}) {
    auto text = request.query_param(name);
    if (!text || text->empty()) continue;
    auto n = parse_id(*text);
    if (!n || *n < least || *n > most) return Error(fmt::format("{} must be an integer from {} to {}", name, least, most));
    *into = *n;
  }
  return f;
}

const std::vector<std::string>& panel_tables() {
  static const std::vector<std::string> names = {"range", "filters", "activity", "user_activity", "events",
                                                 "working_time", "active_users_now", "active_users_15m",
                                                 "exceptions", "exceptions_over_time", "clients"};
  return names;
}

Result<std::string> panel_sql(std::string_view name, const PanelFilters& f, const std::string& table, Dialect dialect,
                              EpochNanos now) {
  std::string ids = ids_sql(f.ids);
  std::string time = range_sql(f.from, f.to, dialect);
  std::string where = "WHERE 1" + time + ids;
  std::string bucket = fmt::format("intDiv(toUInt32(timestamp), {0}) * {0}", f.step);
  auto json = [&](std::string_view key) { return payload_json(dialect, "String", key); };
  std::string wt = working_time_sql(dialect);
  // The client's browser and system, from the user agent a server event's request carries.
  std::string agent = json("user_agent");
  std::string sql;
  if (name == "range") {
    sql = fmt::format("SELECT toUInt32(min(timestamp)) AS first, toUInt32(max(timestamp)) AS last, count() AS events "
                      "FROM {} WHERE 1{}",
                      table, ids);
  } else if (name == "filters") {
    // What the filters offer: the users, projects, tasks and jobs of the client's events.
    std::string w = "WHERE source = 'client'" + time;
    sql = fmt::format(
        "SELECT 'user' AS kind, user_id AS id, any(ifNull(user_name, '')) AS name FROM {0} {1} AND isNotNull(user_id) "
        "GROUP BY id UNION ALL SELECT 'project', project_id, '' FROM {0} {1} AND isNotNull(project_id) GROUP BY "
        "project_id UNION ALL SELECT 'task', task_id, '' FROM {0} {1} AND isNotNull(task_id) GROUP BY task_id UNION ALL "
        "SELECT 'job', job_id, '' FROM {0} {1} AND isNotNull(job_id) GROUP BY job_id",
        table, w);
  } else if (name == "activity") {
    sql = fmt::format("SELECT {} AS time, count() AS events FROM {} {} GROUP BY time ORDER BY time", bucket, table, where);
  } else if (name == "user_activity") {
    sql = fmt::format("SELECT {} AS time, user_id, count() AS events FROM {} {} AND isNotNull(user_id) GROUP BY time, "
                      "user_id ORDER BY time, user_id",
                      bucket, table, where);
  } else if (name == "events") {
    sql = fmt::format("SELECT scope, obj_name, obj_id, obj_val, source, toString(timestamp) AS at, count, "
                      "duration, project_id, task_id, job_id, user_id, user_name, org_id FROM {} {} ORDER BY "
                      "timestamp DESC LIMIT {}",
                      table, where, f.limit);
  } else if (name == "working_time") {
    // CVAT's Management dashboard's table: working time per user, project, task and job.
    sql = fmt::format("SELECT user_id, any(ifNull(user_name, '')) AS user_name, project_id, task_id, job_id, sum({}) AS "
                      "working_time_ms, count() AS activity FROM {} {} AND scope = 'send:working_time' GROUP BY "
                      "user_id, project_id, task_id, job_id ORDER BY user_id, project_id, task_id, job_id",
                      wt, table, where);
  } else if (name == "active_users_now") {
    sql = fmt::format("SELECT uniqExact(user_id) AS active_users FROM {} WHERE timestamp >= {}{}", table,
                      time_literal(now - 900 * kSecond, dialect, true), ids);
  } else if (name == "active_users_15m") {
    sql = fmt::format("SELECT intDiv(toUInt32(timestamp), 900) * 900 AS time, uniqExact(user_id) AS active_users FROM "
                      "{} {} AND isNotNull(user_id) GROUP BY time ORDER BY time",
                      table, where);
  } else if (name == "exceptions") {
    sql = fmt::format("SELECT toString(timestamp) AS at, user_id, user_name, job_id, {} AS error, {} AS stack, "
                      "payload FROM {} {} AND scope = 'send:exception' ORDER BY timestamp DESC LIMIT {}",
                      json("message"), json("stack"), table, where, f.limit);
  } else if (name == "exceptions_over_time") {
    sql = fmt::format("SELECT {} AS time, count() AS exceptions FROM {} {} AND scope = 'send:exception' GROUP BY "
                      "time ORDER BY time",
                      bucket, table, where);
  } else if (name == "clients") {
    sql = fmt::format(
        "SELECT extract({0}, '(Edg|OPR|Firefox|Chrome|Safari)') AS browser, "
        "extract({0}, '(Windows|Android|iPhone|iPad|Mac OS X|Linux|CrOS)') AS os, count() AS events "
        "FROM {1} {2} AND {0} != '' GROUP BY browser, os ORDER BY events DESC",
        agent, table, where);
  } else {
    return Error(fmt::format("unknown table '{}'; known: {}", name, fmt::join(panel_tables(), ", ")));
  }
  return sql + " FORMAT JSONCompact";
}

}  // namespace weir::plugins::analytics
