// The http_server source's body codecs.
#include <catch2/catch.hpp>

#include "plugins/sources/http_server/body_decoder.hpp"
#include "weir/json.hpp"

using namespace weir;
using weir::plugins::BodyCodec;
using weir::plugins::BodyDecoder;
using weir::plugins::BodyRejection;

namespace {
struct Decoded {
  std::vector<std::string> events;
  std::vector<BodyRejection> rejected;
};
Decoded decode(BodyCodec codec, const std::string& body, EpochNanos received_at = 0) {
  EventBatch batch;
  Decoded out;
  BodyDecoder(codec).decode(body, received_at, batch, out.rejected);
  for (const Event& e : batch.events()) out.events.push_back(to_json(e.fields));
  return out;
}
}  // namespace

TEST_CASE("http body: json detects an object, an array and NDJSON") {
  CHECK(decode(BodyCodec::Json, R"(  {"a":1})").events == std::vector<std::string>{R"({"a":1})"});
  auto array = decode(BodyCodec::Json, R"([{"a":1},2,{"b":2}])");
  CHECK(array.events == std::vector<std::string>{R"({"a":1})", R"({"b":2})"});
  REQUIRE(array.rejected.size() == 1);
  CHECK(array.rejected[0].line == 2);
  CHECK(array.rejected[0].reason == "element 2: expected a JSON object, got integer");
  auto lines = decode(BodyCodec::Json, "{\"a\":1}\n{\"a\":2}\n");
  CHECK(lines.events.size() == 2);
  CHECK(decode(BodyCodec::Json, "").events.empty());
  CHECK(decode(BodyCodec::Json, "[1,").rejected.size() == 1);
}

TEST_CASE("http body: text lines") {
  auto d = decode(BodyCodec::Text, "one\ntwo\r\n");
  CHECK(d.events == std::vector<std::string>{R"({"message":"one"})", R"({"message":"two"})"});
}

TEST_CASE("http body: CVAT client batches are clock-corrected and marked as client events") {
  // The client's clock is 5.5 s behind: it sent at 12:00:00.000 (its time), we got it at 12:00:05.500.
  EpochNanos received = parse_iso8601("2024-01-01T12:00:05.500Z").value();
  std::string body = R"({"events":[
      {"scope":"click:element","timestamp":"2024-01-01T11:59:58.250Z","user_id":7,"source":"spoofed"},
      {"scope":"change:frame","timestamp":"2024-01-01T11:59:59.123456Z","duration":1500},
      {"scope":"no time"},
      "not an event"],
    "previous_event":null,"timestamp":"2024-01-01T12:00:00.000Z"})";
  auto d = decode(BodyCodec::CvatClient, body, received);
  REQUIRE(d.events.size() == 2);
  CHECK(d.events[0] == R"({"scope":"click:element","timestamp":"2024-01-01T12:00:03.750000Z","user_id":7,"source":"client"})");
  CHECK(d.events[1] == R"({"scope":"change:frame","timestamp":"2024-01-01T12:00:04.623456Z","duration":1500,"source":"client"})");
  REQUIRE(d.rejected.size() == 2);
  CHECK(d.rejected[0].reason == "event 3: it has no timestamp");
  CHECK(d.rejected[1].reason == "event 4: expected a JSON object, got string");
  CHECK(decode(BodyCodec::CvatClient, R"({"no":"events"})").rejected[0].reason ==
        "a CVAT client body is an object with an \"events\" array");
}

TEST_CASE("http body: a CVAT client clock offset past what int64 nanoseconds hold is refused, not overflowed") {
  // Found by fuzz_http_body: sent in 1729 and received in 2023, the offset is over 292 years.
  EpochNanos received = 1'700'000'000'000'000'000;
  auto far = decode(BodyCodec::CvatClient,
                    R"({"events":[{"scope":"a","timestamp":"2020-01-01T00:00:00Z"}],"timestamp":"1729-01-01T00:00:02Z"})", received);
  CHECK(far.events.empty());
  REQUIRE(far.rejected.size() == 1);
  CHECK(far.rejected[0].reason == "body timestamp: the client's clock is too far off to correct (over 292 years)");
  // An offset that fits, moving an event past 2262.
  auto past = decode(BodyCodec::CvatClient,
                     R"({"events":[{"scope":"a","timestamp":"2262-01-01T00:00:00Z"},{"scope":"b","timestamp":"2000-01-01T00:00:00Z"}],)"
                     R"("timestamp":"1900-01-01T00:00:00Z"})",
                     received);
  REQUIRE(past.events.size() == 1);
  REQUIRE(past.rejected.size() == 1);
  CHECK(past.rejected[0].reason == "event 1: corrected by the client's clock offset it is past the years 1677..2262");
}
