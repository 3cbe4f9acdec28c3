#include "request_records.hpp"

#include "weir/log.hpp"
#include "weir/time.hpp"

namespace weir::plugins {

RequestRecords::RequestRecords(SourceContext& ctx, std::size_t output) : ctx_(ctx), output_(output) {}

Status RequestRecords::start() {
  int rc = start_timer(timer_, ctx_.loop(), this, [](uv_timer_t* t) { static_cast<RequestRecords*>(t->data)->flush(); },
                       kFlushIntervalMs, kFlushIntervalMs);
  if (rc != 0) return Error("cannot start the requests timer: " + uv_error_text(rc));
  return {};
}

void RequestRecords::record(const http::AnsweredRequest& answered, std::string_view request_id, EpochNanos time) {
  if (!waiting_) waiting_ = EventBatch::create();
  if (waiting_->size() >= kMaxWaiting) {
    ctx_.metrics().events_dropped.add(1);
    std::uint64_t n = ++drop_logs_;
    if (n <= 5 || n % 10000 == 0) {
      log::warn(ctx_.name(), "{} request records wait for a full `requests` output: dropped one ({} so far)",
                waiting_->size(), n);
    }
    return;
  }
  Arena& arena = waiting_->arena();
  Event& event = waiting_->add_event(8);
  Value& f = event.fields;
  f.append_member(arena, "method", Value::string(arena, answered.method.empty() ? std::string_view("-") : answered.method));
  f.append_member(arena, "resource", Value::string(arena, answered.path.empty() ? std::string_view("-") : answered.path));
  f.append_member(arena, "status_code", Value::integer(answered.response.status));
  if (!request_id.empty()) f.append_member(arena, "request_id", Value::string(arena, request_id));
  f.append_member(arena, "execution_time", Value::floating(answered.seconds));
  ByteBuffer time_text;
  format_iso8601(time, 9, time_text);
  f.append_member(arena, "time", Value::string(arena, time_text.view()));
  Value tags = Value::object(arena, 1);
  tags.append_member(arena, "component", Value::string(arena, ctx_.name()));
  f.append_member(arena, "tags", tags);
  if (std::string error = http::error_text(answered.response); !error.empty()) {
    Value fields = Value::object(arena, 1);
    fields.append_member(arena, "error", Value::string(arena, error));
    f.append_member(arena, "fields", fields);
  }
  if (waiting_->size() >= kFlushRecords) flush();
}

void RequestRecords::resume() {
  full_ = false;
  flush();
}

void RequestRecords::flush() {
  if (full_ || !waiting_ || waiting_->empty()) return;
  if (!ctx_.emit_to(output_, std::move(waiting_))) full_ = true;
}

void RequestRecords::stop() {
  full_ = false;
  flush();
  if (timer_.initialized()) uv_timer_stop(timer_.get());
}

}  // namespace weir::plugins
