#include <catch2/catch.hpp>

#include "weir/http.hpp"
#include "weir/http_client.hpp"

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

TEST_CASE("http: query values percent-encoded by libcurl (all but A-Z a-z 0-9 - . _ ~)") {
  CHECK(url_encode("my org") == "my%20org");
  CHECK(url_encode("b/rp") == "b%2Frp");
  CHECK(url_encode("a-b.c_d~e") == "a-b.c_d~e");
  CHECK(url_encode("\xC3\xA9+&=") == "%C3%A9%2B%26%3D");
  CHECK(url_encode("") == "");
  CHECK(url_encode(std::string_view("a\0b", 3)) == "a%00b");
}

TEST_CASE("http: which endpoints are on this machine (compression: auto sends those uncompressed)") {
  for (const char* url : {"http://127.0.0.1:8123", "http://127.1.2.3", "http://localhost:8086/", "http://LOCALHOST",
                          "https://ch.localhost:8443", "http://[::1]:8123", "http://user:pw@127.0.0.1:8123/"}) {
    CAPTURE(url);
    CHECK(url_host_is_loopback(url));
  }
  for (const char* url : {"http://clickhouse:8123", "http://10.0.0.7:8123", "http://128.0.0.1", "http://[::2]:8123",
                          "http://localhost.example.org", "http://127.0.0.1.example.org", "not a url", ""}) {
    CAPTURE(url);
    CHECK_FALSE(url_host_is_loopback(url));
  }
}
