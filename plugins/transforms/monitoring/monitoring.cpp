// `monitoring` transform: request records (method, resource, status code, request id,
// execution time, optional error code, service) become LUNA's monitoring series: a
// `requests` point per record and an `errors` point per failed one (their shape is in
// points.hpp). Extra tags and fields of a record pass through onto its points. A record
// that lacks what a point needs is dead-lettered with the reason.
#include <cmath>
#include <cstdlib>

#include <fmt/format.h>

#include "points.hpp"
#include "weir/field_path.hpp"
#include "weir/registry.hpp"

namespace weir::plugins {
namespace {

const OptionSchema kSchema = {
    {.name = "service", .type = OptionType::String,
     .doc = "The service tag (e.g. luna-faces); records' service_field wins when present."},
    {.name = "service_field", .type = OptionType::String, .default_value = "service", .doc = "Field with the service name."},
    {.name = "method_field", .type = OptionType::String, .default_value = "method", .doc = "HTTP method (required)."},
    {.name = "resource_field", .type = OptionType::String, .default_value = "resource",
     .doc = "Request resource, e.g. /faces (required); route = METHOD:resource."},
    {.name = "status_field", .type = OptionType::String, .default_value = "status_code",
     .doc = "HTTP status code of the response (required; a number or its text)."},
    {.name = "request_id_field", .type = OptionType::String, .default_value = "request_id",
     .doc = "Request id; when absent, the HTTP request's id (metadata request_id) if any."},
    {.name = "execution_time_field", .type = OptionType::String, .default_value = "execution_time",
     .doc = "Execution time in seconds (a number or its text)."},
    {.name = "error_code_field", .type = OptionType::String, .default_value = "error_code",
     .doc = "The service's error code; its presence makes the request failed."},
    {.name = "time_field", .type = OptionType::String, .default_value = "time",
     .doc = "When the request happened (ISO-8601 or epoch seconds); absent: now."},
    {.name = "extra_tags_field", .type = OptionType::String, .default_value = "tags",
     .doc = "An object whose members are added to the points' tags."},
    {.name = "extra_fields_field", .type = OptionType::String, .default_value = "fields",
     .doc = "An object whose members are added to the points' fields."},
    {.name = "error_status", .type = OptionType::Integer, .default_value = "400",
     .doc = "A status at or over this makes a request failed (an `errors` point) even without an error code."},
    {.name = "keep_records", .type = OptionType::Bool, .default_value = "false",
     .doc = "Pass the records on too, before their points."},
};

class Monitoring final : public Transform {
 public:
  static Result<std::unique_ptr<Monitoring>> create(const Options& o) {
    auto self = std::make_unique<Monitoring>();
    self->service_ = std::string(o.string("service"));
    auto path = [&](const char* name) { return o.string(name).empty() ? FieldPath() : FieldPath(o.string(name)); };
    self->service_field_ = path("service_field");
    self->method_field_ = path("method_field");
    self->resource_field_ = path("resource_field");
    self->status_field_ = path("status_field");
    self->request_id_field_ = path("request_id_field");
    self->execution_time_field_ = path("execution_time_field");
    self->error_code_field_ = path("error_code_field");
    self->time_field_ = path("time_field");
    self->extra_tags_field_ = path("extra_tags_field");
    self->extra_fields_field_ = path("extra_fields_field");
    for (const char* required : {"method_field", "resource_field", "status_field"}) {
      if (o.string(required).empty()) return o.error_at(required, fmt::format("{} must name a field", required));
    }
    self->error_status_ = o.integer("error_status");
    self->keep_records_ = o.boolean("keep_records");
    return self;
  }

  void process(BatchPtr batch, TransformContext& ctx) override {
    // The points replace the records in the same batch (its arena, acknowledgements and
    // input buffers stay with them).
    std::vector<Event> records = std::move(batch->events());
    batch->events().clear();
    batch->events().reserve(records.size() * (keep_records_ ? 2 : 1));
    EpochNanos now = ctx.clock().now();
    for (const Event& event : records) {
      if (keep_records_) batch->events().push_back(event);
      monitoring::RequestRecord record;
      if (std::string problem = read(event, now, record); !problem.empty()) {
        ctx.dead_letter(event, fmt::format("monitoring: {}", problem));
        continue;
      }
      monitoring::append_points(record, error_status_, *batch);
    }
    if (!batch->empty()) ctx.emit(std::move(batch));
  }

 private:
  static std::string_view text_of(const Value* v) { return v != nullptr && v->is_string() ? v->as_string() : std::string_view(); }

  static std::optional<double> number_of(const Value* v) {
    if (v == nullptr) return std::nullopt;
    if (v->is_double()) return v->as_double();
    if (v->is_int()) return static_cast<double>(v->as_int());
    if (v->is_uint()) return static_cast<double>(v->as_uint());
    if (v->is_string() && !v->as_string().empty()) {
      std::string text(v->as_string());
      char* end = nullptr;
      double d = std::strtod(text.c_str(), &end);
      if (end == text.c_str() + text.size() && std::isfinite(d)) return d;
    }
    return std::nullopt;
  }

  // "" when the record makes points; otherwise what is missing.
  std::string read(const Event& event, EpochNanos now, monitoring::RequestRecord& r) {
    const Value& f = event.fields;
    r.service = service_field_.empty() ? std::string_view() : text_of(service_field_.find(f));
    if (r.service.empty()) r.service = service_;
    if (r.service.empty()) return fmt::format("no service: '{}' is absent and no static service is set", service_field_.text());
    r.method = text_of(method_field_.find(f));
    if (r.method.empty()) return fmt::format("no method in '{}'", method_field_.text());
    r.resource = text_of(resource_field_.find(f));
    if (r.resource.empty()) return fmt::format("no resource in '{}'", resource_field_.text());
    std::optional<double> status = number_of(status_field_.find(f));
    if (!status || *status != std::trunc(*status) || *status < 100 || *status > 999) {
      return fmt::format("'{}' is not an HTTP status code", status_field_.text());
    }
    r.status_code = static_cast<std::int64_t>(*status);
    r.request_id = request_id_field_.empty() ? std::string_view() : text_of(request_id_field_.find(f));
    if (r.request_id.empty()) r.request_id = text_of(event.metadata.find("request_id"));
    if (!execution_time_field_.empty()) {
      const Value* t = execution_time_field_.find(f);
      r.execution_time = number_of(t);
      if (t != nullptr && !t->is_null() && !r.execution_time) {
        return fmt::format("'{}' is not a number of seconds", execution_time_field_.text());
      }
    }
    if (!error_code_field_.empty()) {
      if (const Value* code = error_code_field_.find(f); code != nullptr) r.error_code = *code;
    }
    r.time = now;
    if (const Value* t = time_field_.empty() ? nullptr : time_field_.find(f); t != nullptr && !t->is_null()) {
      auto parsed = parse_timestamp(*t);
      if (!parsed.ok()) return fmt::format("'{}': {}", time_field_.text(), parsed.error().message());
      r.time = parsed.value();
    }
    if (!extra_tags_field_.empty()) {
      if (const Value* v = extra_tags_field_.find(f); v != nullptr && v->is_object()) r.extra_tags = *v;
    }
    if (!extra_fields_field_.empty()) {
      if (const Value* v = extra_fields_field_.find(f); v != nullptr && v->is_object()) r.extra_fields = *v;
    }
    return {};
  }

  std::string service_;
  FieldPath service_field_, method_field_, resource_field_, status_field_, request_id_field_, execution_time_field_,
      error_code_field_, time_field_, extra_tags_field_, extra_fields_field_;
  std::int64_t error_status_ = 400;
  bool keep_records_ = false;
};

}  // namespace

WEIR_REGISTER_TRANSFORM("monitoring", "Request records into LUNA's monitoring series (requests, errors points)", kSchema,
                        Monitoring::create);

}  // namespace weir::plugins
