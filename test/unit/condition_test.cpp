#include <catch2/catch.hpp>

#include "test_components.hpp"
#include "weir/condition.hpp"
#include "weir/json.hpp"

using namespace weir;

namespace {
bool eval(const std::string& condition, const std::string& event) {
  auto c = Condition::compile(condition);
  INFO(condition);
  REQUIRE(c.ok());
  Arena arena;
  JsonParser parser;
  return c.value().matches(Event{parser.parse(event, arena).value(), Value::null()});
}
std::string error_of(const std::string& condition) {
  auto c = Condition::compile(condition);
  REQUIRE_FALSE(c.ok());
  return c.error().message();
}
}  // namespace

TEST_CASE("condition: comparisons, in, functions, logic") {
  std::string e = R"({"scope":"draw:object","duration":150,"ratio":1.0,"user":{"email":"ann@example.org"},"ok":true,"n":null})";
  CHECK(eval(R"(.scope == "draw:object")", e));
  CHECK(eval(R"(scope != "save:job")", e));
  CHECK(eval(".duration > 100 and .duration <= 150", e));
  CHECK_FALSE(eval(".duration < 100", e));
  CHECK(eval(".ratio == 1", e));  // numbers by value
  CHECK_FALSE(eval(R"(.duration > "100")", e));  // number vs string: not comparable
  CHECK(eval(R"(.scope in ["save:job", "draw:object"])", e));
  CHECK_FALSE(eval(".duration in []", e));
  CHECK(eval(R"(starts_with(.scope, "draw:") and ends_with(.scope, "object") and contains(.scope, "w:o"))", e));
  CHECK(eval(R"(matches(.user.email, "@example\\.org$"))", e));
  CHECK_FALSE(eval(R"(matches(.user.email, "^bob"))", e));
  CHECK(eval("exists(.n) and not exists(.missing)", e));
  CHECK(eval(".missing == null and .n == null", e));
  CHECK(eval(".ok", e));
  CHECK(eval(R"(not (.scope == "x" or .duration < 0) and (.ok == true))", e));
}

TEST_CASE("condition: errors name the place") {
  CHECK(error_of(".a ==") == "offset 5: expected a literal (string, number, true, false, null), got the end");
  CHECK(error_of(".a =< 5") == "offset 3: unexpected character '='");
  CHECK(error_of("(.a == 1") == "offset 8: expected ')', got the end");
  CHECK(error_of(R"(matches(.a, "("))").rfind("offset 12: invalid regular expression: missing ): (", 0) == 0);
  CHECK(error_of("nope(.a)") == "offset 0: unknown function 'nope' (exists, starts_with, ends_with, contains, matches)");
  CHECK(error_of("1 == 1") == "offset 2: comparing two literals is always the same; compare a field");
  CHECK(error_of(".a > true") == "offset 3: '>' orders numbers or strings, not boolean");
  CHECK(error_of(R"(.a == "x)") == "offset 6: unterminated string");
  CHECK(error_of(".a == 1 .b") == "offset 8: expected 'and', 'or' or the end, got 'b'");
}

TEST_CASE("filter and route transforms") {
  testing::TransformHarness filter("filter", R"(, condition: '.source == "client"')");
  auto out = filter.feed({R"({"source":"client","n":1})", R"({"source":"server","n":2})", R"({"n":3})"});
  CHECK(out == std::vector<std::string>{R"({"source":"client","n":1})"});
  CHECK(filter.metrics().events_dropped.get() == 2);

  testing::TransformHarness route("route", R"(, route: { big: ".n > 1", odd: ".n == 1 or .n == 3" })", "t._unmatched");
  out = route.feed({R"({"n":1})", R"({"n":2})", R"({"n":3})", R"({"n":0})"});
  // Outputs in order: big, odd, _unmatched; n=3 goes to both big and odd.
  CHECK(out == std::vector<std::string>{R"({"n":2})", R"({"n":3})", R"({"n":1})", R"({"n":3})", R"({"n":0})"});
  CHECK(route.outputs == std::vector<std::size_t>{0, 0, 1, 1, 2});
}

TEST_CASE("condition: hostile nesting and length are refused, not a stack overflow (found by fuzzing)") {
  auto nested = Condition::compile(std::string(1254, '('));
  REQUIRE_FALSE(nested.ok());
  CHECK(nested.error().message().find("more than 64 levels of nesting") != std::string::npos);
  std::string nots;
  for (int i = 0; i < 100000; ++i) nots += "not ";
  CHECK_FALSE(Condition::compile(nots + ".a == 1").ok());
  std::string chain = ".a == 1";
  for (int i = 0; i < 100000; ++i) chain += " and .a == 1";
  auto long_chain = Condition::compile(chain);
  REQUIRE_FALSE(long_chain.ok());
  CHECK(long_chain.error().message().find("more than 1024 terms") != std::string::npos);
  CHECK(Condition::compile(std::string(60, '(') + ".a == 1" + std::string(60, ')')).ok());  // deep but sane
}
