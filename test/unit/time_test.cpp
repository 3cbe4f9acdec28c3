#include <catch2/catch.hpp>

#include "weir/time.hpp"

using namespace weir;

TEST_CASE("time: ISO-8601 with Z, offsets and up to 9 fraction digits, exactly") {
  constexpr EpochNanos base = 1704110400LL * 1'000'000'000;  // 2024-01-01T12:00:00Z
  CHECK(parse_iso8601("2024-01-01T12:00:00Z").value() == base);
  CHECK(parse_iso8601("2024-01-01T12:00:00.123Z").value() == base + 123'000'000);
  CHECK(parse_iso8601("2024-01-01T12:00:00.123456789Z").value() == base + 123'456'789);
  CHECK(parse_iso8601("2024-01-01 14:00:00.5+02:00").value() == base + 500'000'000);
  CHECK(parse_iso8601("2024-01-01T11:30:00-0030").value() == base);
  CHECK(parse_iso8601("2024-01-01T12:00:00").value() == base);
  CHECK(parse_iso8601("1969-12-31T23:59:59.999Z").value() == -1'000'000);
  CHECK_FALSE(parse_iso8601("2024-13-01T12:00:00Z").ok());
  CHECK_FALSE(parse_iso8601("2024-01-01T12:00:00Zjunk").ok());
  CHECK_FALSE(parse_iso8601("yesterday").ok());
}

TEST_CASE("time: epoch seconds as strings and numbers, without float rounding") {
  CHECK(parse_epoch_seconds("1704110400.123").value() == 1704110400'123'000'000LL);
  CHECK(parse_epoch_seconds("1704110400.123456789").value() == 1704110400'123'456'789LL);
  CHECK(parse_epoch_seconds("1704110400").value() == 1704110400'000'000'000LL);
  CHECK_FALSE(parse_epoch_seconds("17041104OO").ok());
  CHECK(parse_timestamp(Value::floating(1704110400.123)).value() == 1704110400'123'000'000LL);
  CHECK(parse_timestamp(Value::integer(1704110400)).value() == 1704110400'000'000'000LL);
  CHECK(parse_timestamp(Value::string_view("1700000000.123456")).value() == 1700000000'123'456'000LL);
  CHECK(parse_timestamp(Value::string_view("2024-01-01T12:00:00Z")).value() == 1704110400'000'000'000LL);
  CHECK_FALSE(parse_timestamp(Value::boolean(true)).ok());
}

TEST_CASE("time: formatting to ISO-8601 milliseconds floors") {
  CHECK(format_iso8601_ms(1704110400'123'999'999LL) == "2024-01-01T12:00:00.123Z");
  CHECK(format_iso8601_ms(-1) == "1969-12-31T23:59:59.999Z");
  CHECK(format_iso8601_ms(0) == "1970-01-01T00:00:00.000Z");
  CHECK(format_iso8601_ms(parse_iso8601("2096-02-29T23:59:59.5Z").value()) == "2096-02-29T23:59:59.500Z");
  CHECK_FALSE(parse_iso8601("2400-02-29T23:59:59Z").ok());  // past int64 nanoseconds
  CHECK_FALSE(parse_iso8601("1600-01-01T00:00:00Z").ok());
}
