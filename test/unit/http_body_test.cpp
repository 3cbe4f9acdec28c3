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
