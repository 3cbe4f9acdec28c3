#include "weir/time.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

namespace weir {

std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

void civil_from_days(std::int64_t z, std::int64_t& year, unsigned& month, unsigned& day) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  day = doy - (153 * mp + 2) / 5 + 1;
  month = mp < 10 ? mp + 3 : mp - 9;
  year = static_cast<std::int64_t>(yoe) + era * 400 + (month <= 2);
}

namespace {

bool digits(std::string_view text, std::size_t at, std::size_t count, unsigned& out) {
  if (at + count > text.size()) return false;
  out = 0;
  for (std::size_t i = 0; i < count; ++i) {
    char c = text[at + i];
    if (c < '0' || c > '9') return false;
    out = out * 10 + static_cast<unsigned>(c - '0');
  }
  return true;
}

// ".123456789" at `at`: nanoseconds, advancing `at`. Digits past the ninth are truncated.
std::int64_t fraction_nanos(std::string_view text, std::size_t& at) {
  std::int64_t nanos = 0;
  int count = 0;
  while (at < text.size() && text[at] >= '0' && text[at] <= '9') {
    if (count < 9) {
      nanos = nanos * 10 + (text[at] - '0');
      ++count;
    }
    ++at;
  }
  while (count++ < 9) nanos *= 10;
  return nanos;
}

constexpr std::int64_t kNanosPerSecond = 1'000'000'000;
// The last whole second int64 nanoseconds hold with any fraction after it (2262-04-11).
constexpr std::int64_t kMaxEpochSeconds = INT64_MAX / kNanosPerSecond - 1;

unsigned days_in_month(unsigned year, unsigned month) {
  static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return month == 2 && leap ? 29 : kDays[month - 1];
}

bool two_digits(std::string_view text, std::size_t at, unsigned& out) {
  unsigned a = static_cast<unsigned>(text[at]) - '0', b = static_cast<unsigned>(text[at + 1]) - '0';
  out = a * 10 + b;
  return a < 10 && b < 10;
}

// The last "YYYY-MM-DD" parsed (or formatted) on this thread and its day number. The
// timestamps of a stream mostly share a date, so the date's validation and the calendar
// arithmetic run about once a day of data instead of once an event.
struct DateMemo {
  char date[10] = {};
  std::int64_t days = 0;
  bool set = false;
};
thread_local DateMemo parsed_date;
thread_local DateMemo formatted_date;

}  // namespace

Result<EpochNanos> parse_iso8601(std::string_view text) {
  auto malformed = [&] {
    return Error(fmt::format("'{}' is not an ISO-8601 timestamp (YYYY-MM-DDThh:mm:ss[.fff][Z|+hh:mm])", text));
  };
  if (text.size() < 19) return malformed();
  std::int64_t days;
  if (parsed_date.set && std::memcmp(parsed_date.date, text.data(), 10) == 0) {
    days = parsed_date.days;
  } else {
    unsigned year, month, day;
    if (!digits(text, 0, 4, year) || text[4] != '-' || !digits(text, 5, 2, month) || text[7] != '-' ||
        !digits(text, 8, 2, day)) {
      return malformed();
    }
    if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month)) {
      return Error(fmt::format("'{}' has a field out of range", text));
    }
    days = days_from_civil(year, month, day);
    std::memcpy(parsed_date.date, text.data(), 10);
    parsed_date.days = days;
    parsed_date.set = true;
  }
  unsigned hour, minute, second;
  if ((text[10] != 'T' && text[10] != 't' && text[10] != ' ') || !two_digits(text, 11, hour) || text[13] != ':' ||
      !two_digits(text, 14, minute) || text[16] != ':' || !two_digits(text, 17, second)) {
    return malformed();
  }
  if (hour > 23 || minute > 59 || second > 60) return Error(fmt::format("'{}' has a field out of range", text));
  std::size_t at = 19;
  std::int64_t nanos = 0;
  if (at < text.size() && (text[at] == '.' || text[at] == ',')) {
    ++at;
    if (at >= text.size() || text[at] < '0' || text[at] > '9') return Error(fmt::format("'{}' has an empty fraction", text));
    nanos = fraction_nanos(text, at);
  }
  std::int64_t offset_seconds = 0;
  if (at < text.size()) {
    char sign = text[at];
    if ((sign == 'Z' || sign == 'z') && at + 1 == text.size()) {
      at += 1;
    } else if (sign == '+' || sign == '-') {
      unsigned oh, om = 0;
      if (!digits(text, at + 1, 2, oh)) return Error(fmt::format("'{}' has a bad UTC offset", text));
      std::size_t next = at + 3;
      if (next < text.size() && text[next] == ':') ++next;
      if (next < text.size() && !digits(text, next, 2, om)) return Error(fmt::format("'{}' has a bad UTC offset", text));
      if (next < text.size()) next += 2;
      if (next != text.size() || oh > 23 || om > 59) return Error(fmt::format("'{}' has a bad UTC offset", text));
      offset_seconds = (sign == '-' ? -1 : 1) * static_cast<std::int64_t>(oh * 3600 + om * 60);
      at = next;
    } else {
      return Error(fmt::format("'{}' has trailing characters after the time", text));
    }
  }
  std::int64_t seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset_seconds;
  // Nanoseconds in an int64 reach from 1677-09-21 to 2262-04-11.
  if (seconds <= -9'223'372'036LL || seconds >= 9'223'372'036LL) {
    return Error(fmt::format("'{}' is outside the years 1677..2262 that weir can represent", text));
  }
  return seconds * kNanosPerSecond + nanos;
}

Result<EpochNanos> parse_epoch_seconds(std::string_view text) {
  std::size_t at = 0;
  bool negative = false;
  if (at < text.size() && (text[at] == '-' || text[at] == '+')) negative = text[at++] == '-';
  std::size_t int_start = at;
  std::int64_t seconds = 0;
  while (at < text.size() && text[at] >= '0' && text[at] <= '9') {
    seconds = seconds * 10 + (text[at++] - '0');
    // Checked per digit, so neither this product nor the one below can overflow.
    if (seconds > kMaxEpochSeconds) return Error(fmt::format("'{}' is out of range for epoch seconds", text));
  }
  if (at == int_start) return Error(fmt::format("'{}' is not a number of epoch seconds", text));
  std::int64_t nanos = 0;
  if (at < text.size() && text[at] == '.') {
    ++at;
    nanos = fraction_nanos(text, at);
  }
  if (at != text.size()) return Error(fmt::format("'{}' is not a number of epoch seconds", text));
  std::int64_t total = seconds * kNanosPerSecond + nanos;
  return negative ? -total : total;
}

Result<EpochNanos> parse_timestamp(const Value& value) {
  switch (value.kind()) {
    case Kind::String: {
      std::string_view text = value.as_string();
      if (text.size() >= 10 && text[4] == '-') return parse_iso8601(text);
      auto seconds = parse_epoch_seconds(text);
      if (!seconds.ok()) {
        return Error(fmt::format("'{}' is neither an ISO-8601 timestamp nor a number of epoch seconds", text));
      }
      return seconds;
    }
    case Kind::Int: return parse_epoch_seconds(std::to_string(value.as_int()));
    case Kind::Uint: return parse_epoch_seconds(std::to_string(value.as_uint()));
    case Kind::Double: {
      // The shortest decimal form is what the writer meant ("1704110400.123"), parsed exactly.
      char text[32];
      auto [end, ec] = std::to_chars(text, text + sizeof text, value.as_double(), std::chars_format::fixed);
      if (ec != std::errc()) return Error("timestamp number out of range");
      return parse_epoch_seconds(std::string_view(text, static_cast<std::size_t>(end - text)));
    }
    default: return Error(fmt::format("a timestamp must be a string or a number, got {}", kind_name(value.kind())));
  }
}

void format_iso8601(EpochNanos time, int fraction_digits, ByteBuffer& out) {
  std::int64_t seconds = time / kNanosPerSecond;
  std::int64_t nanos = time % kNanosPerSecond;
  if (nanos < 0) {  // floor
    nanos += kNanosPerSecond;
    --seconds;
  }
  std::int64_t days = seconds / 86400;
  std::int64_t rem = seconds % 86400;
  if (rem < 0) {
    rem += 86400;
    --days;
  }
  auto s = static_cast<unsigned>(rem);
  // Written digit by digit: this runs once per event in timestamp-heavy pipelines.
  char* p = out.ensure(48);
  char* at = p;
  auto put = [&at](std::uint64_t value, int width) {
    for (int i = width - 1; i >= 0; --i) {
      at[i] = static_cast<char>('0' + value % 10);
      value /= 10;
    }
    at += width;
  };
  if (formatted_date.set && formatted_date.days == days) {
    std::memcpy(at, formatted_date.date, 10);
    at += 10;
  } else {
    std::int64_t year;
    unsigned month, day;
    civil_from_days(days, year, month, day);
    // Memoised only for 4-digit years, where the text is 10 bytes.
    const bool memo = year >= 0 && year <= 9999;
    if (!memo) {
      at = fmt::format_to_n(at, 12, "{:04}", year).out;
    } else {
      put(static_cast<std::uint64_t>(year), 4);
    }
    *at++ = '-';
    put(month, 2);
    *at++ = '-';
    put(day, 2);
    if (memo) {
      std::memcpy(formatted_date.date, at - 10, 10);
      formatted_date.days = days;
      formatted_date.set = true;
    }
  }
  *at++ = 'T';
  put(s / 3600, 2);
  *at++ = ':';
  put((s / 60) % 60, 2);
  *at++ = ':';
  put(s % 60, 2);
  fraction_digits = std::clamp(fraction_digits, 0, 9);
  if (fraction_digits > 0) {
    char digits[9];
    std::uint64_t f = static_cast<std::uint64_t>(nanos);
    for (int i = 8; i >= 0; --i, f /= 10) digits[i] = static_cast<char>('0' + f % 10);
    *at++ = '.';
    for (int i = 0; i < fraction_digits; ++i) *at++ = digits[i];
  }
  *at++ = 'Z';
  out.commit(static_cast<std::size_t>(at - p));
}

void format_iso8601_ms(EpochNanos time, ByteBuffer& out) { format_iso8601(time, 3, out); }

std::string format_iso8601_ms(EpochNanos time) {
  ByteBuffer out;
  format_iso8601_ms(time, out);
  return std::string(out.view());
}

EpochNanos wall_clock_now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace weir
