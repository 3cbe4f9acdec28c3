#include "points.hpp"

#include <fmt/format.h>

namespace weir::monitoring {

bool failed(const RequestRecord& record, std::int64_t error_status) {
  return !record.error_code.is_null() || record.status_code >= error_status;
}

namespace {

void add_extra(Value& target, const Value& extra, Arena& arena) {
  for (const Member& member : extra.members()) {
    if (target.find(member.key) != nullptr) continue;  // the series' own keys win
    target.append_member(arena, arena.copy(member.key), deep_copy(member.value, arena));
  }
}

void append_point(const RequestRecord& r, bool errors, std::string_view time, EventBatch& out) {
  Arena& arena = out.arena();
  Event& point = out.add_event(4);
  point.fields.append_member(arena, "series", Value::string_view(errors ? "errors" : "requests"));
  point.fields.append_member(arena, "time", Value::string(arena, time));
  Value tags = Value::object(arena, 4);
  tags.append_member(arena, "service", Value::string(arena, r.service));
  tags.append_member(arena, "route", Value::string(arena, fmt::format("{}:{}", r.method, r.resource)));
  tags.append_member(arena, "status_code", Value::integer(r.status_code));
  if (errors && !r.error_code.is_null()) tags.append_member(arena, "error_code", deep_copy(r.error_code, arena));
  add_extra(tags, r.extra_tags, arena);
  Value fields = Value::object(arena, 2);
  fields.append_member(arena, "request_id", Value::string(arena, r.request_id));  // always: a point needs a field
  if (!errors && r.execution_time) fields.append_member(arena, "execution_time", Value::floating(*r.execution_time));
  add_extra(fields, r.extra_fields, arena);
  point.fields.append_member(arena, "tags", tags);
  point.fields.append_member(arena, "fields", fields);
}

}  // namespace

void append_points(const RequestRecord& record, std::int64_t error_status, EventBatch& out) {
  std::string time = format_iso8601_ms(record.time);
  append_point(record, false, time, out);
  if (failed(record, error_status)) append_point(record, true, time, out);
}

}  // namespace weir::monitoring
