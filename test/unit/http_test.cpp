#include <catch2/catch.hpp>

#include "weir/http.hpp"

using namespace weir::http;

TEST_CASE("http: a URL path keeps '+' (only a query turns it into a space)") {
  CHECK(decode_path("/events/a+b") == "/events/a+b");
  CHECK(decode_path("/events/a%20b%2Bc") == "/events/a b+c");
  CHECK(decode_path("/plain") == "/plain");
  CHECK(decode_path("/bad%zz%4") == "/bad%zz%4");  // malformed escapes stay as they are
  CHECK(decode_query_component("a+b%2Bc") == "a b+c");
  Request r;
  r.query = "team=red+blue&x=%C3%A9";
  CHECK(r.query_param("team").value() == "red blue");
  CHECK(r.query_param("x").value() == "\xC3\xA9");
  CHECK_FALSE(r.query_param("y").has_value());
}
