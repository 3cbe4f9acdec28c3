#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "plugins/transforms/enrich/lookup_table.hpp"
#include "test_components.hpp"
#include "weir/time.hpp"
#include "weir/json.hpp"

using weir::testing::TransformHarness;

namespace {
std::string write_file(const std::string& name, const std::string& text) {
  auto path = std::filesystem::temp_directory_path() / ("weir-enrich-" + name);
  std::ofstream(path) << text;
  return path.string();
}
}  // namespace

TEST_CASE("enrich: set, set_if_missing, rename, copy, remove, in that order") {
  TransformHarness h("enrich",
                     ", rename: { old: fresh }, copy: { a.b: c }, set: { team: blue, 'deep.x': 5, n: 7 },"
                     " set_if_missing: { region: eu, a.b: 9 }, remove: [gone, fresh.secret]");
  auto out = h.feed({R"({"old":{"secret":1,"keep":2},"a":{"b":1},"n":1,"gone":true})"});
  CHECK(out[0] == R"({"a":{"b":1},"n":7,"fresh":{"keep":2},"c":1,"team":"blue","deep":{"x":5},"region":"eu"})");
}

TEST_CASE("enrich: now() is the pipeline clock's time") {
  TransformHarness h("enrich", ", set: { seen_at: now() }");
  h.clock_.advance_to(weir::parse_iso8601("2024-01-01T12:00:00.250Z").value());
  CHECK(h.feed({R"({})"}).at(0) == R"({"seen_at":"2024-01-01T12:00:00.250Z"})");
  h.clock_.advance_to(weir::parse_iso8601("2024-01-01T12:00:01Z").value());
  CHECK(h.feed({R"({})"}).at(0) == R"({"seen_at":"2024-01-01T12:00:01.000Z"})");
}

TEST_CASE("enrich: timestamp normalisation in every format, exact") {
  auto run = [](const std::string& format, const std::string& in) {
    TransformHarness h("enrich", ", timestamp: { field: timestamp, format: " + format + " }");
    auto out = h.feed({R"({"timestamp":)" + in + "}"});
    return out.empty() ? std::string("dead: ") + h.dead.at(0) : out[0];
  };
  CHECK(run("iso8601_ms", R"("1767225600.123")") == R"({"timestamp":"2026-01-01T00:00:00.123Z"})");
  CHECK(run("datetime", R"("1767225600.123")") == R"({"timestamp":"2026-01-01 00:00:00"})");
  CHECK(run("epoch_ms", R"("2026-01-01T01:00:00.123+01:00")") == R"({"timestamp":1767225600123})");
  CHECK(run("epoch_seconds", "1767225600.5") == R"({"timestamp":"1767225600.500"})");
  CHECK(run("iso8601_ms", R"("soon")").rfind("dead: enrich: 'soon' is neither", 0) == 0);
}

TEST_CASE("enrich: JSON text parsed into an object and back") {
  TransformHarness h("enrich", ", parse_json: [payload], copy: { payload.a: a }, stringify_json: [payload]");
  auto out = h.feed({R"({"payload":"{\"a\":1}"})", R"({"payload":"not json"})"});
  CHECK(out[0] == R"({"payload":"{\"a\":1}","a":1})");
  CHECK(out[1] == R"({"payload":"not json"})");  // left as text, counted
  CHECK(h.metrics().errors.get() == 1);
}

TEST_CASE("enrich: CSV lookup with missing-key policies") {
  std::string csv = write_file("users.csv", "user_id,user_name,user_email,org_id\n7,ann,\"ann@x.org\",3\n8,\"bob, jr\",,\n");
  TransformHarness leave("enrich", ", lookup: { file: \"" + csv + "\", key_field: user_id, reload_interval: 0s }");
  auto out = leave.feed({R"({"user_id":7})", R"({"user_id":"8"})", R"({"user_id":9})", R"({"x":1})"});
  CHECK(out[0] == R"({"user_id":7,"user_name":"ann","user_email":"ann@x.org","org_id":3})");
  CHECK(out[1] == R"({"user_id":"8","user_name":"bob, jr","user_email":null,"org_id":null})");
  CHECK(out[2] == R"({"user_id":9})");
  CHECK(out[3] == R"({"x":1})");

  TransformHarness defaults("enrich", ", lookup: { file: \"" + csv +
                                          "\", key_field: user_id, fields: [user_name], on_missing: default, defaults: { user_name: unknown }, reload_interval: 0s }");
  out = defaults.feed({R"({"user_id":7})", R"({"user_id":9})"});
  CHECK(out == std::vector<std::string>{R"({"user_id":7,"user_name":"ann"})", R"({"user_id":9,"user_name":"unknown"})"});

  TransformHarness strict("enrich", ", lookup: { file: \"" + csv + "\", key_field: user_id, on_missing: dead_letter, reload_interval: 0s }");
  out = strict.feed({R"({"user_id":9})", R"({"user_id":7})"});
  CHECK(out.size() == 1);
  REQUIRE(strict.dead.size() == 1);
  CHECK(strict.dead[0].find("enrich: no row in") == 0);
}

TEST_CASE("enrich: NDJSON tables keep their types; bad tables are clear errors") {
  std::string nd = write_file("orgs.ndjson", "{\"org_id\":3,\"org_slug\":\"acme\",\"tags\":[1,2]}\n\n{\"org_id\":4,\"org_slug\":null}\n");
  auto table = weir::plugins::LookupTable::load(nd, "org_id");
  REQUIRE(table.ok());
  CHECK(table.value()->size() == 2);
  REQUIRE(table.value()->find("3") != nullptr);
  CHECK(weir::to_json(*table.value()->find("3")) == R"({"org_id":3,"org_slug":"acme","tags":[1,2]})");
  std::string bad = write_file("bad.csv", "id,name\n1,a,extra\n");
  auto broken = weir::plugins::LookupTable::load(bad, "id");
  REQUIRE_FALSE(broken.ok());
  CHECK(broken.error().message() == bad + ":2: 3 cells where the header has 2");
  CHECK(weir::plugins::LookupTable::load(bad, "nope").error().message() == bad + ": no column 'nope' in the header");
}

TEST_CASE("enrich: lookup table index: many keys, the last row of a key wins, quoted cells") {
  std::string text = "id,name,note\n";
  for (int i = 0; i < 50000; ++i) text += std::to_string(i) + ",user" + std::to_string(i) + ",\n";
  text += "17,again,\"a \"\"quoted\"\", multi\nline\"\r\n";  // a later row for key 17; CRLF
  text += "x y,\"sp\"ace,\n";
  std::string csv = write_file("many.csv", text);
  auto table = weir::plugins::LookupTable::load(csv, "id");
  REQUIRE(table.ok());
  CHECK(table.value()->size() == 50001);
  for (int i : {0, 1, 16, 18, 4095, 4096, 49999}) {
    const weir::Value* row = table.value()->find(std::to_string(i));
    REQUIRE(row != nullptr);
    CHECK(row->find("name")->as_string() == "user" + std::to_string(i));
  }
  const weir::Value* again = table.value()->find("17");
  REQUIRE(again != nullptr);
  CHECK(again->find("name")->as_string() == "again");
  CHECK(again->find("note")->as_string() == "a \"quoted\", multi\nline");
  CHECK(table.value()->find("x y")->find("name")->as_string() == "space");
  CHECK(table.value()->find("50000") == nullptr);
  CHECK(table.value()->find("") == nullptr);
}
