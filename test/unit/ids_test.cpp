// Request ids: generated UUIDs are RFC 4122 version 4, distinct; incoming ids validated.
#include <catch2/catch.hpp>
#include <set>
#include <string>

#include "weir/ids.hpp"

using namespace weir;

TEST_CASE("ids: UUIDv4 text form, version and variant, no repeats", "[ids]") {
  UuidGenerator uuids;
  std::set<std::string> seen;
  std::set<char> digits_seen;
  for (int i = 0; i < 5000; ++i) {
    char text[36];
    uuids.next_into(text);
    std::string id(text, 36);
    for (int at : {8, 13, 18, 23}) REQUIRE(id[static_cast<std::size_t>(at)] == '-');
    for (std::size_t at = 0; at < 36; ++at) {
      if (at == 8 || at == 13 || at == 18 || at == 23) continue;
      REQUIRE(std::string("0123456789abcdef").find(id[at]) != std::string::npos);
      digits_seen.insert(id[at]);
    }
    REQUIRE(id[14] == '4');
    REQUIRE(std::string("89ab").find(id[19]) != std::string::npos);
    REQUIRE(valid_request_id(id));
    seen.insert(id);
  }
  CHECK(seen.size() == 5000);
  CHECK(digits_seen.size() == 16);  // every hex digit turns up
}

TEST_CASE("ids: incoming request ids are kept only when valid", "[ids]") {
  CHECK(valid_request_id("abc-123"));
  CHECK(valid_request_id("A.b_c:d+e/f=g@h-1"));
  CHECK(valid_request_id(std::string(200, 'x')));
  CHECK_FALSE(valid_request_id(std::string(201, 'x')));
  CHECK_FALSE(valid_request_id(""));
  CHECK_FALSE(valid_request_id("has space"));
  CHECK_FALSE(valid_request_id("quote\""));
  CHECK_FALSE(valid_request_id("new\nline"));
}

TEST_CASE("ids: the same seed gives the same ids, another seed others", "[ids]") {
  UuidGenerator a(42), b(42), c(43);
  for (int i = 0; i < 100; ++i) {
    std::string first = a.next();
    CHECK(first == b.next());
    CHECK(first != c.next());
  }
}

TEST_CASE("random: a component's seed depends on the pipeline's seed and its own name alone", "[ids]") {
  CHECK(Random::seed_for(7, "ids") == Random::seed_for(7, "ids"));
  CHECK(Random::seed_for(7, "ids") != Random::seed_for(8, "ids"));
  CHECK(Random::seed_for(7, "ids") != Random::seed_for(7, "ids2"));
  Random r(Random::seed_for(7, "ids"));
  double sum = 0;
  for (int i = 0; i < 10000; ++i) {
    double u = r.uniform();
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
    sum += u;
  }
  CHECK(sum / 10000 == Approx(0.5).margin(0.02));
}
