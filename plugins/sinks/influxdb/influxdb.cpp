// `influxdb` sink: events written as points in line protocol (line_protocol.hpp) to InfluxDB
// 1.x (`/write`, database and retention policy, basic or `Token user:pass` auth) or 2.x
// (`/api/v2/write`, org, bucket and token), through the HTTP batch sink engine
// (weir/http_batch_sink.hpp). What the server's answers mean is in errors.hpp.
#include <fmt/format.h>

#include "errors.hpp"
#include "line_protocol.hpp"
#include "weir/http_batch_sink.hpp"
#include "weir/log.hpp"
#include "weir/registry.hpp"

namespace weir::plugins {
namespace {

using influxdb::Dialect;

OptionSchema schema() {
  OptionSchema options = {
      {.name = "endpoint", .type = OptionType::StringList, .required = true,
       .doc = "InfluxDB base URL(s), e.g. http://localhost:8086; with several, writes take turns (a retried write "
              "stays on its endpoint unless request.failover is on)."},
      {.name = "api", .type = OptionType::Enum, .default_value = "auto", .choices = {"auto", "v1", "v2"},
       .doc = "v1: POST /write (InfluxDB 1.x); v2: POST /api/v2/write; auto: v2 when `bucket` is set."},
      {.name = "database", .type = OptionType::String, .doc = "v1: the database (db=)."},
      {.name = "retention_policy", .type = OptionType::String, .doc = "v1: the retention policy (rp=); the default one when empty."},
      {.name = "auth.user", .type = OptionType::String, .doc = "v1: user; use ${ENV} for secrets."},
      {.name = "auth.password", .type = OptionType::String, .doc = "v1: password; never logged."},
      {.name = "auth.scheme", .type = OptionType::Enum, .default_value = "basic", .choices = {"basic", "query", "token"},
       .doc = "v1: basic (HTTP basic auth, any 1.x), query (u= and p= in the URL, any 1.x; proxies may log it) or "
              "token (`Authorization: Token user:password`, InfluxDB 1.8 and later; 1.6 answers 401)."},
      {.name = "org", .type = OptionType::String, .doc = "v2: organization name (org=)."},
      {.name = "bucket", .type = OptionType::String, .doc = "v2: bucket name (bucket=)."},
      {.name = "token", .type = OptionType::String, .doc = "v2: API token (Authorization: Token ...); never logged."},
      {.name = "measurement", .type = OptionType::String,
       .doc = "Measurement name; with measurement_field, used for events where that field is absent."},
      {.name = "measurement_field", .type = OptionType::String, .doc = "Field (path) that holds the measurement name."},
      {.name = "tags", .type = OptionType::StringList,
       .doc = "Fields (paths) written as tags; a path to an object makes each of its members a tag. Empty values "
              "are omitted; tags are sorted by key."},
      {.name = "fields", .type = OptionType::StringList,
       .doc = "Fields (paths) written as fields; a path to an object writes its members. Empty: every top-level "
              "field that is not a tag, the measurement or the timestamp."},
      {.name = "field_types", .type = OptionType::Map,
       .doc = "Pinned field types by field key: float, integer, unsigned (v2), boolean or string. Other fields "
              "keep the type of their first point."},
      {.name = "separator", .type = OptionType::String, .default_value = "_",
       .doc = "Joins the keys of nested objects: {\"http\":{\"status\":200}} -> http_status."},
      {.name = "timestamp.field", .type = OptionType::String,
       .doc = "Field (path) with the point's time (ISO-8601, or a number of `timestamp.unit`s since the epoch); absent: "
              "the server's time."},
      {.name = "timestamp.unit", .type = OptionType::Enum, .default_value = "precision",
       .choices = {"precision", "s", "ms", "us", "ns"},
       .doc = "What a numeric timestamp counts (numbers, and text that is only a number): `precision` (the default) "
              "reads it in timestamp.precision."},
      {.name = "timestamp.precision", .type = OptionType::Enum, .default_value = "ns", .choices = {"ns", "us", "ms", "s"},
       .doc = "Precision of the written timestamps (finer digits are cut)."},
      {.name = "healthcheck.enabled", .type = OptionType::Bool, .default_value = "true",
       .doc = "At start, check GET /ping; failures are warnings."},
      {.name = "healthcheck.required", .type = OptionType::Bool, .default_value = "false",
       .doc = "Refuse to start when the healthcheck fails."},
  };
  http::BatchSinkDefaults defaults;
  defaults.max_events = "5000";  // InfluxDB's advice: 5,000 lines per write
  OptionSchema common = http::batch_sink_options(defaults);
  options.insert(options.end(), common.begin(), common.end());
  return options;
}

class InfluxDbSink final : public http::BatchSink {
 public:
  static Result<std::unique_ptr<InfluxDbSink>> create(const Options& o) {
    auto settings = http::BatchSinkSettings::from(o);
    if (!settings.ok()) return settings.error();

    std::string_view api = o.string("api");
    Dialect dialect = api == "v2" || (api == "auto" && !o.string("bucket").empty()) ? Dialect::V2 : Dialect::V1;
    influxdb::PointMapping mapping;
    mapping.dialect = dialect;
    mapping.measurement = std::string(o.string("measurement"));
    if (!o.string("measurement_field").empty()) mapping.measurement_field = FieldPath(o.string("measurement_field"));
    if (mapping.measurement.empty() && mapping.measurement_field.empty()) {
      return o.error_at("measurement", "set measurement or measurement_field");
    }
    for (const std::string& tag : o.strings("tags")) mapping.tags.emplace_back(tag);
    for (const std::string& field : o.strings("fields")) mapping.fields.emplace_back(field);
    if (!o.string("timestamp.field").empty()) mapping.timestamp_field = FieldPath(o.string("timestamp.field"));
    mapping.precision = influxdb::parse_precision(o.string("timestamp.precision")).value();
    if (o.string("timestamp.unit") != "precision") mapping.number_unit = influxdb::parse_precision(o.string("timestamp.unit")).value();
    mapping.separator = std::string(o.string("separator"));
    if (const Value* types = o.find("field_types"); types != nullptr) {
      for (const Member& member : types->members()) {
        auto type = member.value.is_string() ? influxdb::parse_field_type(member.value.as_string())
                                             : Result<influxdb::FieldType>(Error("a type name is expected"));
        if (!type.ok()) return o.error_at("field_types", fmt::format("field_types.{}: {}", member.key, type.error().message()));
        if (type.value() == influxdb::FieldType::Unsigned && dialect == Dialect::V1) {
          return o.error_at("field_types", fmt::format("field_types.{}: InfluxDB 1.x has no unsigned type", member.key));
        }
        mapping.field_types.emplace(std::string(member.key), type.value());
      }
    }

    std::string path;
    if (dialect == Dialect::V1) {
      if (o.string("database").empty()) return o.error_at("database", "the v1 API needs `database`");
      static const char* kV1Precision[] = {"n", "u", "ms", "s"};
      path = fmt::format("/write?db={}&precision={}", http::url_encode(o.string("database")),
                         kV1Precision[static_cast<int>(mapping.precision)]);
      if (!o.string("retention_policy").empty()) path += "&rp=" + http::url_encode(o.string("retention_policy"));
    } else {
      if (o.string("bucket").empty()) return o.error_at("bucket", "the v2 API needs `bucket`");
      if (o.string("org").empty()) return o.error_at("org", "the v2 API needs `org`");
      path = fmt::format("/api/v2/write?org={}&bucket={}&precision={}", http::url_encode(o.string("org")),
                         http::url_encode(o.string("bucket")), o.string("timestamp.precision"));
    }

    auto self = std::unique_ptr<InfluxDbSink>(new InfluxDbSink(
        std::move(settings.value()), std::make_shared<influxdb::PointEncoder>(std::move(mapping))));
    self->dialect_ = dialect;
    self->path_ = std::move(path);
    self->target_ = dialect == Dialect::V1 ? fmt::format("write to database {}", o.string("database"))
                                           : fmt::format("write to bucket {}", o.string("bucket"));
    if (dialect == Dialect::V1) {
      self->user_ = std::string(o.string("auth.user"));
      self->password_ = std::string(o.string("auth.password"));
      if (o.string("auth.scheme") == "token" && !self->user_.empty()) {
        self->authorization_ = fmt::format("Token {}:{}", self->user_, self->password_);
        self->user_.clear();
        self->password_.clear();
      } else if (o.string("auth.scheme") == "query" && !self->user_.empty()) {
        self->path_ += fmt::format("&u={}&p={}", http::url_encode(self->user_), http::url_encode(self->password_));
        self->user_.clear();
        self->password_.clear();
      }
    } else if (!o.string("token").empty()) {
      self->authorization_ = fmt::format("Token {}", o.string("token"));
    }
    self->healthcheck_ = o.boolean("healthcheck.enabled");
    self->healthcheck_required_ = o.boolean("healthcheck.required");
    return self;
  }

 private:
  using BatchSink::BatchSink;

  Status on_start() override {
    if (!healthcheck_) return {};
    for (const std::string& endpoint : endpoints()) {
      if (healthcheck_required_) {
        http::ClientResponse r = http::send_blocking(ping(endpoint));
        if (std::string problem = judge_ping(r); !problem.empty()) {
          return Error(fmt::format("influxdb healthcheck of {} failed: {} (healthcheck.required is set)", endpoint, problem));
        }
        continue;
      }
      client().send(ping(endpoint), [this, endpoint](http::ClientResponse r) {
        if (std::string problem = judge_ping(r); !problem.empty()) {
          log::warn(context().name(), "healthcheck: {} is not answering ({}); points are kept until it does", endpoint, problem);
        }
      });
    }
    return {};
  }

  static http::ClientRequest ping(const std::string& endpoint) {
    http::ClientRequest r;
    r.method = "GET";
    r.url = endpoint + "/ping";
    r.timeout = std::chrono::milliseconds(5000);
    return r;
  }

  static std::string judge_ping(const http::ClientResponse& r) {
    if (r.status == 0) return r.transport_error;
    if (r.status != 204 && r.status != 200) return fmt::format("GET /ping answered HTTP {}", r.status);
    return {};
  }

  std::string describe_write() const override { return target_; }
  std::string capture_format() const override { return "lp"; }

  http::ClientRequest make_request(const http::Upload& upload) override {
    http::ClientRequest request;
    request.method = "POST";
    request.url = endpoints()[upload.endpoint] + path_;
    request.user = user_;
    request.password = password_;
    request.headers.push_back({"Content-Type", "text/plain; charset=utf-8"});
    if (!authorization_.empty()) request.headers.push_back({"Authorization", authorization_});
    return request;
  }

  http::Verdict classify(const http::Upload& upload, const http::ClientResponse& response) override {
    return influxdb::classify(dialect_, upload, response);
  }

  Dialect dialect_ = Dialect::V1;
  std::string path_, target_, user_, password_, authorization_;
  bool healthcheck_ = true, healthcheck_required_ = false;
};

}  // namespace

WEIR_REGISTER_SINK("influxdb", "Writes points to InfluxDB 1.x or 2.x in line protocol, with retries and dead letters",
                   schema(), InfluxDbSink::create);

}  // namespace weir::plugins
