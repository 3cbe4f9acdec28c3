// What a ClickHouse answer means for the rows that were sent: delivered, worth retrying,
// a problem with some of the rows (bisect to find them), or a problem with the setup
// (credentials, table) that only an operator can fix.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "weir/http_batch_sink.hpp"

namespace weir::plugins::clickhouse {

// What an answer means, in the terms of the HTTP batch sink engine (weir/http_batch_sink.hpp):
// Delivered, Retry (transport errors, overload, timeouts), BadRows (parse and type errors:
// split the insert to find them), Setup (auth, unknown table or database, unknown setting).
using http::Outcome;

struct Verdict {
  Outcome outcome = Outcome::Retry;
  int code = 0;         // ClickHouse's exception code, 0 when there is none
  std::string message;  // the server's text (first line; may be empty), or the transport error
};

// The exception code at the start of an error body, in either form ClickHouse writes:
// "Code: 60. DB::Exception: ..." (newer) or "Code: 41, e.displayText() = ..." (older,
// as Debian's 18.16 sends).
std::optional<int> exception_code(std::string_view body);

// Codes that may mean the table changed (a column or the table itself gone): its columns are
// read again.
bool is_schema_change(int code);

// `status` 0 means no HTTP answer; `header_code` is X-ClickHouse-Exception-Code if sent.
Verdict classify(int status, const std::string* header_code, std::string_view body, std::string_view transport_error);

}  // namespace weir::plugins::clickhouse
