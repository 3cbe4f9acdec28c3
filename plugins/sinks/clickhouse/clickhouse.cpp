// `clickhouse` sink: rows inserted over ClickHouse's HTTP interface, in RowBinary built from
// the table's schema (row_binary.hpp) or as JSONEachRow, through the HTTP batch sink engine
// (weir/http_batch_sink.hpp: batching, encoding on the thread pool, retries with backoff,
// bisecting bad rows). This file knows ClickHouse: what the server is (version, time zone,
// settings) and the table's columns, read at start and again when an insert is refused for
// a schema change; the insert query and its settings; insert_deduplication_token (stable
// across retries, so replicated tables drop duplicates); what its error codes mean
// (errors.hpp); and the healthcheck.
#include <chrono>
#include <random>

#include <fmt/format.h>

#include "errors.hpp"
#include "row_binary.hpp"
#include "weir/field_path.hpp"
#include "weir/http_batch_sink.hpp"
#include "weir/json.hpp"
#include "weir/log.hpp"
#include "weir/registry.hpp"
#include "weir/time.hpp"

namespace weir::plugins {
namespace {

OptionSchema schema() {
  OptionSchema options = {
    {.name = "endpoint", .type = OptionType::StringList, .required = true,
     .doc = "ClickHouse HTTP endpoint(s), e.g. http://localhost:8123; with several, inserts take turns, and a "
            "retried insert stays on its endpoint (so deduplication applies there) unless request.failover is on. "
            "The server and the table's columns are read from the first that answers."},
    {.name = "database", .type = OptionType::String, .default_value = "default", .doc = "Database of the table."},
    {.name = "table", .type = OptionType::String, .required = true, .doc = "Table to insert into."},
    {.name = "auth.user", .type = OptionType::String, .doc = "User (HTTP basic auth); use ${ENV} for secrets."},
    {.name = "auth.password", .type = OptionType::String, .doc = "Password; never logged."},
    {.name = "format", .type = OptionType::Enum, .default_value = "auto", .choices = {"auto", "Native", "RowBinary", "JSONEachRow"},
     .doc = "Insert format. Native: each insert one block of columns built from the table's schema (read from "
            "system.columns at start), the cheapest for the server to take; RowBinary: binary rows from the same "
            "schema; with either, a table weir cannot describe is a setup error until fixed. auto: Native where the "
            "table allows it, else RowBinary (LowCardinality columns), else JSONEachRow with a warning naming the "
            "column. The luna layout is always JSONEachRow."},
    {.name = "layout", .type = OptionType::Enum, .default_value = "rows", .choices = {"rows", "luna"},
     .doc = "rows: each event is a row (its fields are the columns); luna: LUNA's monitoring layout, a row of "
            "`time` and `data` (the JSON text of the luna.data objects merged: the points' tags and fields)."},
    {.name = "luna.time_field", .type = OptionType::String, .default_value = "time",
     .doc = "luna layout: the field written to the `time` column."},
    {.name = "luna.data_fields", .type = OptionType::StringList,
     .doc = "luna layout: objects merged into `data` (default: tags, fields, as the monitoring transform makes)."},
    {.name = "encoding.only_fields", .type = OptionType::StringList,
     .doc = "Send only these fields (paths), as columns of the same name (CVAT lists its 17 columns)."},
    {.name = "skip_unknown_fields", .type = OptionType::Bool, .default_value = "false",
     .doc = "input_format_skip_unknown_fields=1: fields that are not columns are ignored instead of failing."},
    {.name = "date_time_best_effort", .type = OptionType::Bool, .default_value = "false",
     .doc = "date_time_input_format=best_effort: DateTime columns accept ISO-8601 and more."},
    {.name = "deduplication_token", .type = OptionType::Bool, .default_value = "true",
     .doc = "Send insert_deduplication_token, stable across retries of an insert, so replicated tables drop "
            "duplicates; turned off by itself (with a warning) on servers that do not know the setting."},
    {.name = "healthcheck.enabled", .type = OptionType::Bool, .default_value = "true",
     .doc = "At start, check GET /ping and that the table exists; failures are warnings."},
    {.name = "healthcheck.required", .type = OptionType::Bool, .default_value = "false",
     .doc = "Refuse to start when the healthcheck fails."},
  };
  OptionSchema common = http::batch_sink_options({});
  options.insert(options.end(), common.begin(), common.end());
  return options;
}

// Rows as JSONEachRow: the whole event, or only the configured fields.
class JsonEachRowEncoder final : public http::RowEncoder {
 public:
  explicit JsonEachRowEncoder(const std::vector<std::string>& only_fields) {
    for (const std::string& field : only_fields) {
      only_fields_.emplace_back(field);
      ByteBuffer key;
      write_json_string(field, key);
      key.push_back(':');
      field_keys_.emplace_back(key.view());
    }
  }

  Status encode_row(const Event& event, ByteBuffer& out) override {
    if (only_fields_.empty()) {
      write_json(event.fields, out);
    } else {
      out.push_back('{');
      bool first = true;
      for (std::size_t i = 0; i < only_fields_.size(); ++i) {
        const Value* v = only_fields_[i].find(event.fields);  // FieldPath hints: one thread at a time
        if (v == nullptr) continue;  // absent: the column's default
        if (!first) out.push_back(',');
        first = false;
        out.append(field_keys_[i]);
        write_json(*v, out);
      }
      out.push_back('}');
    }
    out.push_back('\n');
    return {};
  }

 private:
  std::vector<FieldPath> only_fields_;
  std::vector<std::string> field_keys_;  // `"name":` of each only_fields entry
};

// LUNA's monitoring layout: {"time": ..., "data": "<JSON object of tags and fields>"}, one
// table per series (a route on `series` in front of one sink per table).
class LunaEncoder final : public http::RowEncoder {
 public:
  LunaEncoder(std::string_view time_field, const std::vector<std::string>& data_fields) : time_field_(time_field) {
    for (const std::string& f : data_fields) data_fields_.emplace_back(f);
  }

  Status encode_row(const Event& event, ByteBuffer& out) override {
    const Value* time = time_field_.find(event.fields);
    if (time == nullptr || time->is_null()) return Error(fmt::format("luna layout: no '{}' field", time_field_.text()));
    data_.clear();
    data_.push_back('{');
    for (const FieldPath& path : data_fields_) {
      const Value* object = path.find(event.fields);
      if (object == nullptr) continue;
      if (!object->is_object()) return Error(fmt::format("luna layout: '{}' is not an object", path.text()));
      for (const Member& member : object->members()) {
        if (data_.size() > 1) data_.push_back(',');
        write_json_string(member.key, data_);
        data_.push_back(':');
        write_json(member.value, data_);
      }
    }
    data_.push_back('}');
    out.append("{\"time\":");
    write_json(*time, out);
    out.append(",\"data\":");
    write_json_string(data_.view(), out);
    out.append("}\n");
    return {};
  }

 private:
  FieldPath time_field_;
  std::vector<FieldPath> data_fields_;
  ByteBuffer data_;
};

class ClickHouseSink final : public http::BatchSink {
 public:
  static Result<std::unique_ptr<ClickHouseSink>> create(const Options& o) {
    auto settings = http::BatchSinkSettings::from(o);
    if (!settings.ok()) return settings.error();
    if (o.string("table").empty()) return o.error_at("table", "table must not be empty");
    std::shared_ptr<http::RowEncoder> encoder;
    if (o.string("layout") == "luna") {
      if (!o.strings("encoding.only_fields").empty()) {
        return o.error_at("encoding.only_fields", "the luna layout writes `time` and `data`; only_fields does not apply");
      }
      std::vector<std::string> data_fields = o.strings("luna.data_fields");
      if (data_fields.empty()) data_fields = {"tags", "fields"};
      encoder = std::make_shared<LunaEncoder>(o.string("luna.time_field"), data_fields);
    } else {
      encoder = std::make_shared<JsonEachRowEncoder>(o.strings("encoding.only_fields"));
    }
    auto self = std::unique_ptr<ClickHouseSink>(new ClickHouseSink(std::move(settings.value()), encoder));
    self->text_encoder_ = std::move(encoder);
    self->database_ = std::string(o.string("database"));
    self->table_ = std::string(o.string("table"));
    self->user_ = std::string(o.string("auth.user"));
    self->password_ = std::string(o.string("auth.password"));
    self->use_token_ = o.boolean("deduplication_token");
    self->healthcheck_ = o.boolean("healthcheck.enabled");
    self->healthcheck_required_ = o.boolean("healthcheck.required");
    self->json_query_ = "/?query=" + http::url_encode(fmt::format("INSERT INTO {}.{} FORMAT JSONEachRow",
                                                                  clickhouse::quoted_identifier(self->database_),
                                                                  clickhouse::quoted_identifier(self->table_)));
    if (o.boolean("skip_unknown_fields")) self->json_query_ += "&input_format_skip_unknown_fields=1";
    if (o.boolean("date_time_best_effort")) self->json_query_ += "&date_time_input_format=best_effort";
    self->format_ = o.string("layout") == "luna" ? "JSONEachRow" : std::string(o.string("format"));
    self->only_fields_ = o.strings("encoding.only_fields");
    self->skip_unknown_fields_ = o.boolean("skip_unknown_fields");
    return self;
  }

 private:
  using BatchSink::BatchSink;

  Status on_start() override {
    token_prefix_ = fmt::format("weir-{}-{:016x}", context().name(), rng()());
    if (healthcheck_ && healthcheck_required_) {
      if (Status healthy = check_blocking(); !healthy.ok()) return healthy;
    }
    if (healthcheck_ && !healthcheck_required_) check_async();
    // Nothing is encoded until the server is known: its settings decide the insert's, its
    // schema the rows' bytes (and no probe insert is refused in its log).
    pause_encoding();
    learn_server();
    return {};
  }

  // ---- what the server is, and the table's columns --------------------------------------
  // One query for the version, the time zone (of DateTime columns that name none) and
  // whether insert_deduplication_token is a setting (from 22.2; Debian's 18.16 lacks it).
  void learn_server() {
    std::string query =
        "SELECT version(), timezone(), (SELECT count() FROM system.settings WHERE name = 'insert_deduplication_token') "
        "FORMAT TabSeparated";
    client().send(check_request(endpoints()[learn_from_] + "/?query=" + http::url_encode(query)), [this](http::ClientResponse r) {
      if (r.status == 0) return learn_again(fmt::format("the server is not answering ({})", r.transport_error));
      std::vector<std::string_view> fields;
      std::string_view line = std::string_view(r.body).substr(0, r.body.find('\n'));
      for (std::size_t at = 0; at <= line.size();) {
        std::size_t tab = std::min(line.find('\t', at), line.size());
        fields.push_back(line.substr(at, tab - at));
        at = tab + 1;
      }
      if (r.status != 200 || fields.size() != 3) {
        // Not a ClickHouse we can ask (or not allowed to): insert as before, and let a
        // refusal of the token turn it off.
        log::warn(context().name(), "cannot ask the server what it is (HTTP {}: {}); inserting JSONEachRow", r.status,
                  line.substr(0, 200));
        return use_json({});
      }
      version_ = std::string(fields[0]);
      server_zone_ = std::string(fields[1]);
      if (use_token_ && fields[2] == "0") {
        log::info(context().name(), "ClickHouse {} has no insert_deduplication_token: inserts go without it "
                                    "(retries still resend the same rows in the same order)", version_);
        use_token_ = false;
      }
      if (format_ == "JSONEachRow") return use_json({});
      learn_columns();
    });
  }

  // Asks again after a wait, the next endpoint (they hold the same table): one endpoint
  // down at start does not keep the others from being written.
  void learn_again(const std::string& why) {
    if (!learn_problem_reported_) {
      log::warn(context().name(), "{} at {}; rows are kept until it does", why, endpoints()[learn_from_]);
      learn_problem_reported_ = true;
    }
    learn_from_ = (learn_from_ + 1) % endpoints().size();
    start_timer(learn_timer_, context().loop(), this, [](uv_timer_t* t) { static_cast<ClickHouseSink*>(t->data)->learn_server(); },
                static_cast<std::uint64_t>(std::min<std::int64_t>(settings().max_backoff.count(), 2000)));
  }

  void learn_columns() {
    std::string query = fmt::format(
        "SELECT name, type, default_kind, default_expression FROM system.columns WHERE database = '{}' AND table = '{}' "
        "FORMAT JSONEachRow",
        escape_literal(database_), escape_literal(table_));
    client().send(check_request(endpoints()[learn_from_] + "/?query=" + http::url_encode(query)), [this](http::ClientResponse r) {
      if (r.status == 0) return learn_again(fmt::format("the server is not answering ({})", r.transport_error));
      std::vector<clickhouse::ColumnInfo> columns;
      Arena arena;
      std::string_view body = r.body;
      for (std::size_t at = 0; r.status == 200 && at < body.size();) {
        std::size_t end = std::min(body.find('\n', at), body.size());
        auto row = parser_.parse(body.substr(at, end - at), arena);
        at = end + 1;
        if (!row.ok()) continue;
        auto text = [&](const char* key) {
          const Value* v = row.value().find(key);
          return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
        };
        columns.push_back({text("name"), text("type"), text("default_kind"), text("default_expression")});
      }
      if (r.status != 200) {
        std::string why = fmt::format("reading the columns of {}.{} failed (HTTP {}: {})", database_, table_, r.status,
                                      r.body.substr(0, r.body.find('\n')));
        if (format_ != "auto") return learn_again(why + "; format is " + format_);
        return use_json(why);
      }
      if (columns.empty()) {
        // No table yet: inserts are refused as a setup problem until it exists (the engine
        // logs that); its columns are read again when the first insert is refused.
        if (format_ != "auto") return learn_again(fmt::format("table {}.{} does not exist", database_, table_));
        return use_json({});
      }
      auto binary = clickhouse::binary_columns(columns, server_zone_);
      if (!binary.ok()) {
        if (format_ != "auto") {
          return learn_again(fmt::format("{}.{} cannot be written in {}: {}", database_, table_, format_,
                                         binary.error().message()));
        }
        log::warn(context().name(), "{}.{} cannot be written in RowBinary ({}): inserting JSONEachRow", database_, table_,
                  binary.error().message());
        return use_json({});
      }
      std::string names;
      bool native = format_ != "RowBinary";
      for (const clickhouse::Column& c : binary.value()) {
        names += (names.empty() ? "" : ", ") + c.name + " " + c.type;
        if (!clickhouse::native_can_write(c.type)) {
          if (format_ == "Native") {
            return learn_again(fmt::format("{}.{} cannot be written in Native: column `{}` is {} (format RowBinary can)",
                                           database_, table_, c.name, c.type));
          }
          native = false;
        }
      }
      const char* chosen = native ? "Native" : "RowBinary";
      log::info(context().name(), "inserting {} into {}.{} (ClickHouse {}): {}", chosen, database_, table_, version_, names);
      auto encoder = std::make_shared<clickhouse::RowBinaryEncoder>(std::move(binary.value()), only_fields_, skip_unknown_fields_);
      encoder->send_native(native);
      binary_query_ = "/?query=" + http::url_encode(fmt::format("INSERT INTO {}.{} {} FORMAT {}", clickhouse::quoted_identifier(database_),
                                                                clickhouse::quoted_identifier(table_), encoder->column_list(), chosen));
      set_encoder(std::move(encoder));
      learned();
    });
  }

  // Uploads sealed from now on go as JSONEachRow (a table read again may no longer fit).
  void use_json(const std::string& why) {
    if (!why.empty() && format_ == "auto") log::warn(context().name(), "{}: inserting JSONEachRow", why);
    set_encoder(text_encoder_);
    learned();
  }

  void learned() {
    learn_problem_reported_ = false;
    relearn_pending_ = false;
    resume_encoding();
  }

  // After an insert was refused for what may be a change of the table: read it again (once
  // at a time); uploads encoded from then on follow the new schema.
  void relearn() {
    if (relearn_pending_ || format_ == "JSONEachRow") return;
    relearn_pending_ = true;
    learn_columns();
  }

  std::string describe_write() const override { return fmt::format("insert into {}.{}", database_, table_); }
  std::string capture_format() const override { return "JSONEachRow"; }

  http::ClientRequest make_request(const http::Upload& insert) override {
    http::ClientRequest request;
    request.method = "POST";
    const bool binary = dynamic_cast<const clickhouse::RowBinaryEncoder*>(insert.encoder.get()) != nullptr;
    request.url = endpoints()[insert.endpoint] + (binary ? binary_query_ : json_query_);
    // Rows from a disk buffer: a token made of their event ids alone, so an insert re-sent
    // after a crash is the same insert to a server that deduplicates. Otherwise the
    // process's own prefix keeps tokens of two runs apart.
    std::string token = insert.event_ids ? fmt::format("weir-{}-e{}", context().name(), insert.id)
                                         : token_prefix_ + "-" + insert.id;
    if (use_token_) request.url += "&insert_deduplication_token=" + http::url_encode(token);
    request.user = user_;
    request.password = password_;
    request.headers.push_back({"Content-Type", binary ? "application/octet-stream" : "application/x-ndjson"});
    return request;
  }

  http::Verdict classify(const http::Upload& /*insert*/, const http::ClientResponse& response) override {
    clickhouse::Verdict verdict = clickhouse::classify(response.status, response.header("x-clickhouse-exception-code"),
                                                       response.body, response.transport_error);
    if (verdict.outcome == http::Outcome::Setup && verdict.code == 115 &&
        verdict.message.find("insert_deduplication_token") != std::string::npos) {
      // Answered for every insert sent before the first such answer came back.
      if (use_token_) {
        log::warn(context().name(), "the server does not know insert_deduplication_token ({}); sending inserts "
                                    "without it (retries still resend the same rows in the same order)", verdict.message);
        use_token_ = false;
      }
      return {.outcome = http::Outcome::SendAgainNow, .message = verdict.message};
    }
    if (clickhouse::is_schema_change(verdict.code)) relearn();
    return {.outcome = verdict.outcome, .message = std::move(verdict.message)};
  }

  // The dead letter of a refused row: the row as sent (the columns the server saw).
  bool dead_letter_row(const http::Upload& insert, std::string_view row, const std::string& reason) override {
    Arena arena;
    std::string why = fmt::format("clickhouse: {}", reason);
    if (auto* binary = dynamic_cast<const clickhouse::RowBinaryEncoder*>(insert.encoder.get())) {
      auto decoded = binary->decode_row(row, arena);
      if (decoded.ok()) return context().dead_letter(Event{decoded.value(), Value::null()}, why);
      return context().dead_letter_raw(row, 0, why);
    }
    while (!row.empty() && row.back() == '\n') row.remove_suffix(1);
    auto parsed = parser_.parse(row, arena);
    if (parsed.ok()) return context().dead_letter(Event{parsed.value(), Value::null()}, why);
    return context().dead_letter_raw(row, 0, why);
  }

  // ---- healthcheck ----------------------------------------------------------------------
  std::string table_exists_url(const std::string& endpoint) const {
    std::string query = fmt::format("SELECT count() FROM system.tables WHERE database = '{}' AND name = '{}'",
                                    escape_literal(database_), escape_literal(table_));
    return endpoint + "/?query=" + http::url_encode(query);
  }

  static std::string escape_literal(std::string_view text) {
    std::string out;
    for (char c : text) {
      if (c == '\'' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
    return out;
  }

  http::ClientRequest check_request(std::string url) const {
    http::ClientRequest r;
    r.method = "GET";
    r.url = std::move(url);
    r.user = user_;
    r.password = password_;
    r.timeout = std::chrono::milliseconds(5000);
    return r;
  }

  // "": healthy; otherwise what is wrong.
  static std::string judge_ping(const http::ClientResponse& r) {
    if (r.status == 0) return r.transport_error;
    if (r.status != 200) return fmt::format("GET /ping answered HTTP {}", r.status);
    return {};
  }
  std::string judge_table(const http::ClientResponse& r) const {
    if (r.status == 0) return r.transport_error;
    if (r.status != 200) return fmt::format("checking the table failed: HTTP {}: {}", r.status, r.body.substr(0, r.body.find('\n')));
    if (r.body.rfind("0", 0) == 0) return fmt::format("table {}.{} does not exist", database_, table_);
    return {};
  }

  Status check_blocking() {
    for (const std::string& endpoint : endpoints()) {
      std::string problem = judge_ping(http::send_blocking(check_request(endpoint + "/ping")));
      if (problem.empty()) problem = judge_table(http::send_blocking(check_request(table_exists_url(endpoint))));
      if (!problem.empty()) {
        return Error(fmt::format("clickhouse healthcheck of {} failed: {} (healthcheck.required is set)", endpoint, problem));
      }
    }
    return {};
  }

  void check_async() {
    for (const std::string& endpoint : endpoints()) {
      client().send(check_request(endpoint + "/ping"), [this, endpoint](http::ClientResponse r) {
        std::string problem = judge_ping(r);
        if (!problem.empty()) {
          log::warn(context().name(), "healthcheck: {} is not answering ({}); rows are kept until it does", endpoint, problem);
          return;
        }
        client().send(check_request(table_exists_url(endpoint)), [this, endpoint](http::ClientResponse t) {
          std::string issue = judge_table(t);
          if (!issue.empty()) log::warn(context().name(), "healthcheck of {}: {}; rows are kept until it is fixed", endpoint, issue);
        });
      });
    }
  }

  std::string database_, table_, user_, password_, json_query_, binary_query_, token_prefix_;
  std::string format_, version_, server_zone_;
  std::vector<std::string> only_fields_;
  bool skip_unknown_fields_ = false;
  bool use_token_ = true, healthcheck_ = true, healthcheck_required_ = false;
  bool learn_problem_reported_ = false, relearn_pending_ = false;
  std::size_t learn_from_ = 0;  // the endpoint the server and its columns are asked of
  UvTimer learn_timer_;
  std::shared_ptr<http::RowEncoder> text_encoder_;  // JSONEachRow (or the luna layout)
  JsonParser parser_;
};

}  // namespace

WEIR_REGISTER_SINK("clickhouse", "Inserts rows into ClickHouse over HTTP (Native or RowBinary from the table's schema, or JSONEachRow), "
                   "with retries and dead letters",
                   schema(), ClickHouseSink::create);

}  // namespace weir::plugins
