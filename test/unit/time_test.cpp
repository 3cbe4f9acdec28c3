#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>

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

TEST_CASE("time: memoised dates never leak between timestamps", "[time]") {
  // Same date, other dates, bad input after a memoised date, and back: each answer must be
  // the one the full computation gives.
  constexpr EpochNanos day = 86400LL * 1'000'000'000;
  const EpochNanos base = parse_iso8601("2024-01-01T12:00:00Z").value();
  CHECK(parse_iso8601("2024-01-01T13:00:00Z").value() == base + 3600LL * 1'000'000'000);
  CHECK(parse_iso8601("2024-01-02T12:00:00Z").value() == base + day);
  CHECK_FALSE(parse_iso8601("2024-01-02T25:00:00Z").ok());
  CHECK_FALSE(parse_iso8601("2024-01-02X12:00:00Z").ok());
  CHECK_FALSE(parse_iso8601("2024-01-0212:00:00").ok());
  CHECK_FALSE(parse_iso8601("2024-01-02T1a:00:00Z").ok());
  CHECK(parse_iso8601("2024-01-02T12:00:00.000000001Z").value() == base + day + 1);
  CHECK(parse_iso8601("2024-01-01T12:00:00Z").value() == base);

  // Round trip and an independent formatter (std::chrono's civil calendar) over random
  // instants from 1900 to 2200, interleaved so the memo keeps changing.
  std::uint64_t state = 42;
  auto next = [&state] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  const std::int64_t lo = -2208988800LL, hi = 7258118400LL;  // 1900-01-01 .. 2200-01-01, seconds
  for (int i = 0; i < 20000; ++i) {
    std::int64_t seconds = lo + static_cast<std::int64_t>(next() % static_cast<std::uint64_t>(hi - lo));
    EpochNanos t = seconds * 1'000'000'000 + static_cast<std::int64_t>(next() % 1'000'000'000);
    ByteBuffer text;
    format_iso8601(t, 9, text);
    REQUIRE(parse_iso8601(text.view()).value() == t);
    using namespace std::chrono;
    sys_days days{floor<std::chrono::days>(sys_seconds{std::chrono::seconds{seconds}}).time_since_epoch()};
    year_month_day ymd{days};
    char expected[16];
    std::snprintf(expected, sizeof expected, "%04d-%02u-%02u", static_cast<int>(ymd.year()),
                  static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()));
    REQUIRE(text.view().substr(0, 10) == std::string_view(expected, 10));
  }
}

TEST_CASE("time: dates that do not exist are refused, leap days by the Gregorian rule") {
  CHECK_FALSE(parse_iso8601("2024-02-30T00:00:00Z").ok());
  CHECK_FALSE(parse_iso8601("2023-02-29T00:00:00Z").ok());
  CHECK_FALSE(parse_iso8601("2024-04-31T00:00:00Z").ok());
  CHECK_FALSE(parse_iso8601("1900-02-29T00:00:00Z").ok());
  CHECK(parse_iso8601("2000-02-29T00:00:00Z").ok());
  CHECK(parse_iso8601("2024-02-29T00:00:00Z").ok());
  CHECK(parse_iso8601("2024-12-31T00:00:00Z").ok());
  auto refused = parse_iso8601("2024-02-30T10:00:00Z");
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message() == "'2024-02-30T10:00:00Z' has a field out of range");
}

TEST_CASE("time: epoch seconds past what int64 nanoseconds hold are refused, not overflowed") {
  // 9,223,372,036 s is the last whole second int64 nanoseconds reach (2262-04-11).
  CHECK(parse_epoch_seconds("9223372035").value() == 9223372035LL * 1'000'000'000);
  CHECK(parse_epoch_seconds("-9223372035").value() == -9223372035LL * 1'000'000'000);
  CHECK_FALSE(parse_epoch_seconds("9223372037").ok());
  CHECK_FALSE(parse_epoch_seconds("90000000000").ok());
  CHECK_FALSE(parse_epoch_seconds("99999999999999999999").ok());
  CHECK_FALSE(parse_timestamp(Value::floating(9.5e10)).ok());
  CHECK_FALSE(parse_timestamp(Value::uinteger(18'000'000'000'000'000'000ULL)).ok());
  CHECK(parse_epoch_seconds("90000000000").error().message() == "'90000000000' is out of range for epoch seconds");
}
