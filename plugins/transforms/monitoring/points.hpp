// LUNA's monitoring series, as events: a `requests` point for every request and an `errors`
// point for every failed one. A point event is
//   {"series": "requests", "time": "2018-09-12T11:22:25.123Z",
//    "tags":   {"service": "luna-faces", "route": "POST:/faces", "status_code": 204, ...},
//    "fields": {"request_id": "...", "execution_time": 1.234, ...}}
// which the influxdb sink writes with measurement_field: series, tags: [tags], fields:
// [fields], timestamp.field: time, and the clickhouse sink's `luna` layout writes as a row of
// `time` and `data` (tags and fields merged).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "weir/event.hpp"
#include "weir/time.hpp"

namespace weir::monitoring {

struct RequestRecord {
  std::string_view service;
  std::string_view method;
  std::string_view resource;
  std::int64_t status_code = 0;
  std::string_view request_id;          // empty: no request_id field
  std::optional<double> execution_time;  // seconds
  Value error_code;                      // null when there is none
  EpochNanos time = 0;
  Value extra_tags;    // objects whose members are added to both points' tags (null: none)
  Value extra_fields;  // ... and fields
};

// Failed: an error code, or a status at or over `error_status`.
bool failed(const RequestRecord& record, std::int64_t error_status);

// Appends the record's points to `out`, their values copied into its arena.
void append_points(const RequestRecord& record, std::int64_t error_status, EventBatch& out);

}  // namespace weir::monitoring
