// What the clickhouse sink makes of ClickHouse's answers, in both error-body forms.
#include <catch2/catch.hpp>
#include <string>

#include "plugins/sinks/clickhouse/errors.hpp"

using namespace weir::plugins::clickhouse;

TEST_CASE("clickhouse: exception codes from old and new error bodies", "[clickhouse]") {
  CHECK(exception_code("Code: 60. DB::Exception: Table default.x does not exist. (UNKNOWN_TABLE) (version 23.8.1)") == 60);
  CHECK(exception_code("Code: 41, e.displayText() = DB::Exception: Cannot parse datetime: (at row 3)") == 41);
  CHECK(exception_code("Code: 117. DB::Exception: ...") == 117);
  CHECK_FALSE(exception_code("Internal Server Error").has_value());
  CHECK_FALSE(exception_code("Code: abc").has_value());
  CHECK_FALSE(exception_code("Code: 60").has_value());  // no separator: not the form ClickHouse writes
  CHECK_FALSE(exception_code("").has_value());
}

TEST_CASE("clickhouse: answers sorted into delivered, retry, bad rows and setup", "[clickhouse]") {
  CHECK(classify(200, nullptr, "", "").outcome == Outcome::Delivered);
  auto transport = classify(0, nullptr, "", "Failed to connect to 127.0.0.1 port 1: Connection refused");
  CHECK(transport.outcome == Outcome::Retry);
  CHECK(transport.message.find("Connection refused") != std::string::npos);

  // The header wins over the body; the body is read when there is no header (18.16).
  std::string code = "252";
  CHECK(classify(500, &code, "Code: 41, e.displayText() = x", "").outcome == Outcome::Retry);
  auto parse = classify(500, nullptr, "Code: 41, e.displayText() = DB::Exception: Cannot parse datetime\nstack", "");
  CHECK(parse.outcome == Outcome::BadRows);
  CHECK(parse.code == 41);
  CHECK(parse.message == "Code: 41, e.displayText() = DB::Exception: Cannot parse datetime");
  CHECK(classify(400, nullptr, "Code: 117. DB::Exception: bad", "").outcome == Outcome::BadRows);
  CHECK(classify(500, nullptr, "Code: 33, e.displayText() = DB::Exception: Unexpected end of stream while parsing JSONEachRow format: (at row 1)", "").outcome == Outcome::BadRows);
  CHECK(classify(500, nullptr, "Code: 53, e.displayText() = DB::Exception: Type mismatch", "").outcome == Outcome::BadRows);
  CHECK(classify(404, nullptr, "Code: 60. DB::Exception: Table cvat.nope doesn't exist.", "").outcome == Outcome::Setup);
  CHECK(classify(500, nullptr, "Code: 193, e.displayText() = DB::Exception: Wrong password for user weir", "").outcome ==
        Outcome::Setup);
  CHECK(classify(500, nullptr, "Code: 81, e.displayText() = DB::Exception: Database nope doesn't exist", "").outcome ==
        Outcome::Setup);
  CHECK(classify(500, nullptr, "Code: 209. DB::Exception: Timeout", "").outcome == Outcome::Retry);
  CHECK(classify(500, nullptr, "Code: 241. DB::Exception: Memory limit", "").outcome == Outcome::Retry);
  // An unknown code: 5xx retries, 4xx is taken as a problem with the rows.
  CHECK(classify(500, nullptr, "Code: 1234. DB::Exception: new", "").outcome == Outcome::Retry);
  CHECK(classify(400, nullptr, "Code: 1234. DB::Exception: new", "").outcome == Outcome::BadRows);
  // No code at all: by status.
  CHECK(classify(503, nullptr, "overloaded", "").outcome == Outcome::Retry);
  CHECK(classify(429, nullptr, "", "").outcome == Outcome::Retry);
  CHECK(classify(401, nullptr, "", "").outcome == Outcome::Setup);
  CHECK(classify(413, nullptr, "", "").outcome == Outcome::BadRows);
  CHECK(classify(501, nullptr, "", "").outcome == Outcome::Setup);
}
