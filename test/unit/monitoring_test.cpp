// The monitoring transform: request records into LUNA's requests and errors points.
#include <catch2/catch.hpp>

#include "test_components.hpp"

using weir::testing::TransformHarness;

TEST_CASE("monitoring: the seed document's requests and errors points", "[monitoring]") {
  TransformHarness h("monitoring", ", service: luna-faces");
  auto out = h.feed({
      R"({"method":"POST","resource":"/faces","status_code":204,"request_id":"1536751345,6a5c2191-3e9b-f5a4-fc45-3abf43625c5f","execution_time":1.234,"time":"2018-09-12T11:22:25.123Z"})",
      R"({"method":"POST","resource":"/faces","status_code":"400","request_id":"r2","execution_time":"0.5","error_code":13037,"time":1536751345.5})",
  });
  REQUIRE(out.size() == 3);
  CHECK(out[0] ==
        R"({"series":"requests","time":"2018-09-12T11:22:25.123Z","tags":{"service":"luna-faces","route":"POST:/faces","status_code":204},"fields":{"request_id":"1536751345,6a5c2191-3e9b-f5a4-fc45-3abf43625c5f","execution_time":1.234}})");
  CHECK(out[1] ==
        R"({"series":"requests","time":"2018-09-12T11:22:25.500Z","tags":{"service":"luna-faces","route":"POST:/faces","status_code":400},"fields":{"request_id":"r2","execution_time":0.5}})");
  CHECK(out[2] ==
        R"({"series":"errors","time":"2018-09-12T11:22:25.500Z","tags":{"service":"luna-faces","route":"POST:/faces","status_code":400,"error_code":13037},"fields":{"request_id":"r2"}})");
  CHECK(h.dead.empty());
}

TEST_CASE("monitoring: failed by status or by error code; extra tags and fields pass through", "[monitoring]") {
  TransformHarness h("monitoring", ", error_status: 500");
  auto out = h.feed({
      R"({"service":"s","method":"GET","resource":"/x","status_code":404,"time":"2026-01-01T00:00:00Z"})",
      R"({"service":"s","method":"GET","resource":"/x","status_code":503,"time":"2026-01-01T00:00:00Z","tags":{"zone":"eu","service":"ignored"},"fields":{"bytes":12}})",
      R"({"service":"s","method":"GET","resource":"/x","status_code":200,"error_code":7,"time":"2026-01-01T00:00:00Z"})",
  });
  REQUIRE(out.size() == 5);  // 404 is not failed at error_status 500; 503 and the error code are
  CHECK(out[1].find(R"("series":"requests")") != std::string::npos);
  CHECK(out[1].find(R"("tags":{"service":"s","route":"GET:/x","status_code":503,"zone":"eu"})") != std::string::npos);
  CHECK(out[1].find(R"("fields":{"request_id":"","bytes":12})") != std::string::npos);  // no execution time given
  CHECK(out[2].find(R"("series":"errors")") != std::string::npos);
  CHECK(out[4].find(R"("tags":{"service":"s","route":"GET:/x","status_code":200,"error_code":7})") != std::string::npos);
}

TEST_CASE("monitoring: the HTTP request's id when the record has none", "[monitoring]") {
  TransformHarness h("monitoring", ", service: s");
  auto out = h.feed({R"({"method":"GET","resource":"/","status_code":200,"time":"2026-01-01T00:00:00Z"})"},
                    {R"({"request_id":"from-http"})"});
  REQUIRE(out.size() == 1);
  CHECK(out[0].find(R"("request_id":"from-http")") != std::string::npos);
}

TEST_CASE("monitoring: records that cannot make points are dead-lettered, neighbours kept", "[monitoring]") {
  TransformHarness h("monitoring", ", keep_records: true");
  auto out = h.feed({
      R"({"method":"GET","resource":"/","status_code":200})",                          // no service
      R"({"service":"s","resource":"/","status_code":200})",                           // no method
      R"({"service":"s","method":"GET","status_code":200})",                           // no resource
      R"({"service":"s","method":"GET","resource":"/","status_code":"OK"})",           // not a status
      R"({"service":"s","method":"GET","resource":"/","status_code":200,"execution_time":"fast"})",
      R"({"service":"s","method":"GET","resource":"/","status_code":200,"time":"later"})",
      R"({"service":"s","method":"GET","resource":"/","status_code":200,"time":"2026-01-01T00:00:00Z"})",
  });
  REQUIRE(h.dead.size() == 6);
  CHECK(h.dead[0].find("monitoring: no service") != std::string::npos);
  CHECK(h.dead[1].find("no method") != std::string::npos);
  CHECK(h.dead[2].find("no resource") != std::string::npos);
  CHECK(h.dead[3].find("'status_code' is not an HTTP status code") != std::string::npos);
  CHECK(h.dead[4].find("'execution_time' is not a number of seconds") != std::string::npos);
  CHECK(h.dead[5].find("'time'") != std::string::npos);
  // keep_records: every record goes on, then the one good record's point.
  REQUIRE(out.size() == 8);
  CHECK(out[7].find(R"("series":"requests")") != std::string::npos);
}
