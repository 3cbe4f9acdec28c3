#include <catch2/catch.hpp>

#include "test_components.hpp"

using weir::testing::TransformHarness;

TEST_CASE("request_id: the HTTP request's id goes into CVAT's payload JSON text") {
  TransformHarness h("request_id");
  auto out = h.feed({R"({"scope":"a","payload":"{\"frame\":3}"})", R"({"scope":"b","payload":null})", R"({"scope":"c"})"},
                    {R"({"request_id":"req-1"})", R"({"request_id":"req-1"})", R"({"request_id":"req-1"})"});
  REQUIRE(out.size() == 3);
  CHECK(out[0] == R"({"scope":"a","payload":"{\"frame\":3,\"request\":{\"id\":\"req-1\"}}"})");
  CHECK(out[1] == R"({"scope":"b","payload":"{\"request\":{\"id\":\"req-1\"}}"})");
  CHECK(out[2] == R"({"scope":"c","payload":"{\"request\":{\"id\":\"req-1\"}}"})");
}

TEST_CASE("request_id: existing ids are kept unless overwrite; new ones are UUIDv4 or 32 hex") {
  TransformHarness keep("request_id");
  auto out = keep.feed({R"({"payload":"{\"request\":{\"id\":\"server-made\"}}"})", R"({"payload":"{}"})"});
  CHECK(out[0] == R"({"payload":"{\"request\":{\"id\":\"server-made\"}}"})");
  REQUIRE(out[1].size() == std::string(R"({"payload":"{\"request\":{\"id\":\"\"}}"})").size() + 36);
  std::string uuid = out[1].substr(out[1].find(R"(id\":\")") + 7, 36);
  CHECK(uuid[8] == '-');
  CHECK(uuid[13] == '-');
  CHECK(uuid[14] == '4');  // version 4
  CHECK(std::string("89ab").find(uuid[19]) != std::string::npos);  // RFC 4122 variant
  CHECK(uuid.find_first_not_of("0123456789abcdef-") == std::string::npos);

  TransformHarness overwrite("request_id", ", overwrite: true");
  out = overwrite.feed({R"({"payload":"{\"request\":{\"id\":\"old\"}}"})"}, {R"({"request_id":"new"})"});
  CHECK(out[0] == R"({"payload":"{\"request\":{\"id\":\"new\"}}"})");

  TransformHarness hex("request_id", ", target: trace.id, json_field: \"\", generate: hex32");
  out = hex.feed({R"({"n":1})"});
  REQUIRE(out[0].size() == std::string(R"({"n":1,"trace":{"id":""}})").size() + 32);
  CHECK(out[0].find_first_not_of("0123456789abcdef", 22) == 22 + 32);
}

TEST_CASE("request_id: events of one request share one id; events without one get their own") {
  TransformHarness h("request_id", ", target: rid, json_field: \"\"");
  auto out = h.feed({R"({"n":1})", R"({"n":2})", R"({"n":3})"}, {R"({"request_id":"r"})", R"({"request_id":"r"})", "null"});
  CHECK(out[0] == R"({"n":1,"rid":"r"})");
  CHECK(out[1] == R"({"n":2,"rid":"r"})");
  CHECK(out[2].size() == std::string(R"({"n":3,"rid":""})").size() + 36);
}

TEST_CASE("request_id: a payload that is not a JSON object is kept (counted) or dead-lettered") {
  TransformHarness keep("request_id");
  auto out = keep.feed({R"({"payload":"not json"})", R"({"payload":"[1]"})"});
  CHECK(out == std::vector<std::string>{R"({"payload":"not json"})", R"({"payload":"[1]"})"});
  CHECK(keep.metrics().errors.get() == 2);

  TransformHarness strict("request_id", ", on_bad_json: dead_letter");
  out = strict.feed({R"({"payload":"not json","n":1})", R"({"payload":"{}","n":2})"});
  REQUIRE(out.size() == 1);
  REQUIRE(strict.dead.size() == 1);
  CHECK(strict.dead[0].rfind("request_id: 'payload' is not a JSON object (invalid JSON", 0) == 0);
}

TEST_CASE("request_id: splicing into payload text keeps the text and nests the path") {
  TransformHarness h("request_id", ", target: payload.meta.req.id");
  auto out = h.feed({R"({"payload":"{ }"})", R"({"payload":" {\"a\": [1, {\"b\": \"}\"}]} "})",
                     R"({"payload":"{\"meta\":{\"x\":1}}"})"},
                    {R"({"request_id":"r1"})", R"({"request_id":"r2"})", R"({"request_id":"r3"})"});
  CHECK(out[0] == R"({"payload":"{ \"meta\":{\"req\":{\"id\":\"r1\"}}}"})");
  CHECK(out[1] == R"({"payload":" {\"a\": [1, {\"b\": \"}\"}],\"meta\":{\"req\":{\"id\":\"r2\"}}} "})");
  // "meta" exists: the full path parses and re-encodes.
  CHECK(out[2] == R"({"payload":"{\"meta\":{\"x\":1,\"req\":{\"id\":\"r3\"}}}"})");
}
