#include <catch2/catch.hpp>
TEST_CASE("placeholder compiles") { REQUIRE(1 == 1); }
