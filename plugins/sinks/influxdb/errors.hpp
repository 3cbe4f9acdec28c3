// What an InfluxDB answer to a write means for the lines that were sent.
//
// InfluxDB 1.x writes the lines it could parse and answers 400 "partial write" naming each
// line it could not ("unable to parse '<line>': <why>"), so those are dead-lettered and the
// rest counts as written. A 400 that names no line (a field type conflict) or comes from 2.x
// (which rejects the whole body) is bisected: writing a point again is harmless (same
// measurement, tags and time replace it), so halves are resent until the bad line is alone.
#pragma once

#include <string>
#include <string_view>

#include "line_protocol.hpp"
#include "weir/http_batch_sink.hpp"

namespace weir::plugins::influxdb {

// The server's reason: "error" (1.x) or "message" (2.x) of a JSON body, else the
// X-Influxdb-Error header, else the body's first line.
std::string error_message(std::string_view body, const std::string* error_header);

http::Verdict classify(Dialect dialect, const http::Upload& upload, const http::ClientResponse& response);

}  // namespace weir::plugins::influxdb
