#include "errors.hpp"

#include <fmt/format.h>

#include "weir/arena.hpp"
#include "weir/json.hpp"

namespace weir::plugins::influxdb {

std::string error_message(std::string_view body, const std::string* error_header) {
  if (!body.empty() && body.front() == '{') {
    Arena arena;
    JsonParser parser;
    if (auto parsed = parser.parse(body, arena); parsed.ok()) {
      for (const char* key : {"error", "message"}) {
        if (const Value* v = parsed.value().find(key); v != nullptr && v->is_string()) return std::string(v->as_string());
      }
    }
  }
  if (error_header != nullptr && !error_header->empty()) return *error_header;
  return std::string(body.substr(0, body.find('\n')));
}

namespace {

constexpr std::string_view kUnableToParse = "unable to parse '";

std::size_t count_of(std::string_view text, std::string_view what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string_view::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

}  // namespace

http::Verdict classify(Dialect dialect, const http::Upload& upload, const http::ClientResponse& response) {
  using http::Outcome;
  http::Verdict v;
  const int status = response.status;
  if (status == 0) {
    v.outcome = Outcome::Retry;
    v.message = response.transport_error;
    return v;
  }
  if (status >= 200 && status < 300) {
    v.outcome = Outcome::Delivered;
    return v;
  }
  v.message = error_message(response.body, response.header("x-influxdb-error"));
  if (status == 400 || status == 422) {
    v.outcome = Outcome::BadRows;
    const std::size_t named = count_of(v.message, kUnableToParse);
    if (dialect == Dialect::V1 && named > 0) {
      // Which of our lines are they? Each is quoted whole in the message.
      std::string needle;
      for (std::size_t i = 0; i < upload.encoded_rows(); ++i) {
        std::string_view row = upload.row(i);
        if (!row.empty() && row.back() == '\n') row.remove_suffix(1);
        needle.assign(kUnableToParse);
        needle.append(row);
        needle.push_back('\'');
        if (v.message.find(needle) != std::string::npos) v.refused_rows.push_back(static_cast<std::uint32_t>(i));
      }
      // Every named line found: the others were written. Otherwise bisect (safe to resend).
      if (v.refused_rows.size() == named) v.outcome = Outcome::SomeRowsRefused;
      else v.refused_rows.clear();
    }
    return v;
  }
  if (status == 413) {
    v.outcome = Outcome::BadRows;  // too large: halves are smaller
    if (v.message.empty()) v.message = "request body too large";
    return v;
  }
  if (status == 408 || status == 429 || status >= 500) {
    v.outcome = Outcome::Retry;
    return v;
  }
  v.outcome = Outcome::Setup;  // 401, 403, 404 (database or bucket), and anything else only an operator can fix
  return v;
}

}  // namespace weir::plugins::influxdb
