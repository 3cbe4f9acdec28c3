#include "errors.hpp"

#include <algorithm>
#include <charconv>

namespace weir::plugins::clickhouse {
namespace {

// Codes from ClickHouse's src/Common/ErrorCodes.cpp, grouped by what a sink can do.
bool is_retryable(int code) {
  switch (code) {
    case 3:    // UNEXPECTED_END_OF_FILE
    case 107:  // FILE_DOESNT_EXIST
    case 159:  // TIMEOUT_EXCEEDED
    case 164:  // READONLY
    case 202:  // TOO_MANY_SIMULTANEOUS_QUERIES
    case 203:  // NO_FREE_CONNECTION
    case 209:  // SOCKET_TIMEOUT
    case 210:  // NETWORK_ERROR
    case 241:  // MEMORY_LIMIT_EXCEEDED
    case 242:  // TABLE_IS_READ_ONLY
    case 252:  // TOO_MANY_PARTS
    case 285:  // TOO_FEW_LIVE_REPLICAS
    case 319:  // UNKNOWN_STATUS_OF_INSERT
    case 425:  // SYSTEM_ERROR
    case 999:  // KEEPER_EXCEPTION
      return true;
    default: return false;
  }
}

bool is_bad_rows(int code) {
  switch (code) {
    case 6:    // CANNOT_PARSE_TEXT
    case 25:   // CANNOT_PARSE_ESCAPE_SEQUENCE
    case 26:   // CANNOT_PARSE_QUOTED_STRING
    case 27:   // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    case 33:   // CANNOT_READ_ALL_DATA (18.16: "Unexpected end of stream while parsing JSONEachRow")
    case 38:   // CANNOT_PARSE_DATE
    case 41:   // CANNOT_PARSE_DATETIME
    case 53:   // TYPE_MISMATCH
    case 69:   // ARGUMENT_OUT_OF_BOUND
    case 70:   // CANNOT_CONVERT_TYPE
    case 72:   // CANNOT_PARSE_NUMBER
    case 117:  // INCORRECT_DATA
    case 321:  // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    case 349:  // CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
    case 376:  // CANNOT_PARSE_UUID
      return true;
    default: return false;
  }
}

bool is_setup(int code) {
  switch (code) {
    case 16:   // NO_SUCH_COLUMN_IN_TABLE
    case 60:   // UNKNOWN_TABLE
    case 62:   // SYNTAX_ERROR
    case 73:   // UNKNOWN_FORMAT
    case 81:   // UNKNOWN_DATABASE
    case 115:  // UNKNOWN_SETTING
    case 192:  // UNKNOWN_USER
    case 193:  // WRONG_PASSWORD
    case 194:  // REQUIRED_PASSWORD
    case 497:  // ACCESS_DENIED
    case 516:  // AUTHENTICATION_FAILED
      return true;
    default: return false;
  }
}

std::string first_line(std::string_view text) {
  std::string_view line = text.substr(0, text.find('\n'));
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
  return std::string(line.substr(0, 2000));
}

}  // namespace

bool is_schema_change(int code) {
  switch (code) {
    case 10:   // NOT_FOUND_COLUMN_IN_BLOCK
    case 16:   // NO_SUCH_COLUMN_IN_TABLE
    case 47:   // UNKNOWN_IDENTIFIER
    case 60:   // UNKNOWN_TABLE
    case 81:   // UNKNOWN_DATABASE
      return true;
    default: return false;
  }
}

std::optional<int> exception_code(std::string_view body) {
  std::size_t at = body.find("Code: ");
  if (at == std::string_view::npos || at > 64) return std::nullopt;  // must open the body
  at += 6;
  int code = 0;
  auto [end, ec] = std::from_chars(body.data() + at, body.data() + body.size(), code);
  if (ec != std::errc() || end == body.data() + body.size() || (*end != '.' && *end != ',')) return std::nullopt;
  return code;
}

Verdict classify(int status, const std::string* header_code, std::string_view body, std::string_view transport_error) {
  Verdict v;
  if (status == 0) {
    v.outcome = Outcome::Retry;
    v.message = std::string(transport_error);
    return v;
  }
  if (status >= 200 && status < 300) {
    v.outcome = Outcome::Delivered;
    return v;
  }
  std::optional<int> code;
  if (header_code != nullptr) {
    int parsed = 0;
    auto [end, ec] = std::from_chars(header_code->data(), header_code->data() + header_code->size(), parsed);
    if (ec == std::errc()) code = parsed;
  }
  if (!code) code = exception_code(body);
  v.code = code.value_or(0);
  v.message = first_line(body);
  if (code) {
    if (is_bad_rows(*code)) v.outcome = Outcome::BadRows;
    else if (is_setup(*code)) v.outcome = Outcome::Setup;
    else if (is_retryable(*code)) v.outcome = Outcome::Retry;
    else v.outcome = status >= 500 && status != 501 ? Outcome::Retry : Outcome::BadRows;
    return v;
  }
  // No code: judge by the status alone.
  if (status == 401 || status == 403 || status == 404) v.outcome = Outcome::Setup;
  else if (status == 408 || status == 429 || (status >= 500 && status != 501)) v.outcome = Outcome::Retry;
  else if (status == 413) v.outcome = Outcome::BadRows;  // too large: splitting helps
  else v.outcome = Outcome::Setup;
  return v;
}

}  // namespace weir::plugins::clickhouse
