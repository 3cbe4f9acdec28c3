// The `requests` output of an http_server source: one record per request it answered, in
// the shape the `monitoring` transform reads (a LUNA request record), so weir's own intake
// is watched through an ordinary channel like any other data:
//   {"method": "POST", "resource": "/", "status_code": 503, "request_id": "...",
//    "execution_time": 0.0012, "time": "2026-12-02T10:00:00.123456789Z",
//    "tags": {"component": "intake"}, "fields": {"error": "pipeline is full, retry later"}}
// (`fields` only for a failed request with a reason). Records are gathered and emitted in
// batches: every `kFlushInterval`, or once `kFlushRecords` are waiting. Backpressure is the
// channel's: while the output is full, records wait (the source answers 503 to new requests
// meanwhile, as for its main output); past `kMaxWaiting` new records are dropped and counted.
// Give the monitoring sink `buffer.when_full: drop_newest` to keep its outage from slowing
// the intake.
#pragma once

#include <cstddef>
#include <cstdint>

#include "weir/component.hpp"
#include "weir/http.hpp"
#include "weir/time.hpp"
#include "weir/uv.hpp"

namespace weir::plugins {

class RequestRecords {
 public:
  static constexpr std::uint64_t kFlushIntervalMs = 1000;
  static constexpr std::size_t kFlushRecords = 1000;
  static constexpr std::size_t kMaxWaiting = 100000;

  RequestRecords(SourceContext& ctx, std::size_t output);
  Status start();
  void record(const http::AnsweredRequest& answered, std::string_view request_id, EpochNanos time);
  // Downstream has room again.
  void resume();
  // Emits what is waiting (room or not: the source is ending) and stops the timer.
  void stop();

 private:
  void flush();

  SourceContext& ctx_;
  std::size_t output_;
  BatchPtr waiting_;
  UvTimer timer_;
  bool full_ = false;
  std::uint64_t drop_logs_ = 0;
};

}  // namespace weir::plugins
