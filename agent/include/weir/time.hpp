// Event time: timestamps as integer nanoseconds since the Unix epoch (UTC), parsed and
// formatted exactly (no binary floating point on the way).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "weir/buffer.hpp"
#include "weir/result.hpp"
#include "weir/value.hpp"

namespace weir {

using EpochNanos = std::int64_t;

// ISO-8601 / RFC 3339: "2024-01-01T12:00:00Z", "2024-01-01 12:00:00.123456789+02:00",
// up to 9 fraction digits, 'Z' or an offset (no offset means UTC).
Result<EpochNanos> parse_iso8601(std::string_view text);
// Epoch seconds as a decimal string: "1704110400", "1704110400.123456".
Result<EpochNanos> parse_epoch_seconds(std::string_view text);
// A field value: ISO string, epoch-seconds string, or a number of epoch seconds.
Result<EpochNanos> parse_timestamp(const Value& value);

// "2024-01-01T12:00:00.123456Z": UTC with `fraction_digits` (0..9) digits, truncated.
void format_iso8601(EpochNanos time, int fraction_digits, ByteBuffer& out);
// "2024-01-01T12:00:00.123Z" (milliseconds, UTC).
void format_iso8601_ms(EpochNanos time, ByteBuffer& out);
std::string format_iso8601_ms(EpochNanos time);

EpochNanos wall_clock_now();

// Days since 1970-01-01 for a proleptic Gregorian date, and back (Howard Hinnant's algorithm).
std::int64_t days_from_civil(std::int64_t year, unsigned month, unsigned day);
void civil_from_days(std::int64_t days, std::int64_t& year, unsigned& month, unsigned& day);

}  // namespace weir
