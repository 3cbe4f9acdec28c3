// The influxdb sink's line-protocol encoder, checked by reading its output back with a
// parser written here from the protocol's rules (not the encoder's code): an event made
// from the input (measurement, tags, typed fields, timestamp; any bytes in names and text)
// is encoded for InfluxDB 1.x or 2.x, and when the encoder takes it, its line must parse
// and carry the same measurement, tags, fields with their types and values, and time; when
// it refuses, it must have written nothing.
//
// What each server reads, as the protocol documents it:
// - elements end at an unescaped delimiter; a backslash always takes the byte after it
//   with it while scanning;
// - names and tags: 1.x unescapes only `\,` and `\ ` (measurement) and also `\=` (tag keys,
//   tag values, field keys), keeping every other backslash; 2.x also reads `\\` as one;
// - string field values: `\"` and `\\`, and in 2.x `\n` `\r` `\t`, are unescaped;
// - control characters cannot be carried by names and tags, so the encoder drops them, and
//   a 1.x name keeps a backslash doubled where one backslash would escape what follows.
#include <fuzzer/FuzzedDataProvider.h>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "plugins/sinks/influxdb/line_protocol.hpp"

namespace {

using namespace weir;
using namespace weir::plugins::influxdb;

[[noreturn]] void fail(const std::string& what, std::string_view line) {
  std::fprintf(stderr, "fuzz_line_protocol: %s\nline: %.*s\n", what.c_str(), static_cast<int>(line.size()), line.data());
  std::abort();
}

bool is_control(unsigned char c) { return c < 0x20 || c == 0x7f; }

std::string without_controls(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (!is_control(static_cast<unsigned char>(c))) out.push_back(c);
  }
  return out;
}

// What a 1.x server stores for a name or tag the encoder was given (controls dropped): a
// backslash before one of `specials`, another backslash or the end comes back doubled.
std::string v1_stored(std::string_view text, std::string_view specials) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    out.push_back(text[i]);
    if (text[i] == '\\' && (i + 1 == text.size() || text[i + 1] == '\\' || specials.find(text[i + 1]) != std::string_view::npos)) {
      out.push_back('\\');
    }
  }
  return out;
}

struct Reader {
  std::string_view line;
  Dialect dialect;
  std::size_t at = 0;

  // Up to an unescaped byte of `ends`, unescaped as the server does for `specials`.
  std::string element(std::string_view ends, std::string_view specials) {
    std::string out;
    while (at < line.size() && ends.find(line[at]) == std::string_view::npos) {
      char c = line[at];
      if (c == '\\' && at + 1 < line.size()) {
        char next = line[at + 1];
        if (specials.find(next) != std::string_view::npos || (dialect == Dialect::V2 && next == '\\')) {
          out.push_back(next);
        } else {
          out.push_back('\\');
          out.push_back(next);  // scanning takes it along; 1.x keeps both
        }
        at += 2;
        continue;
      }
      out.push_back(c);
      ++at;
    }
    return out;
  }

  std::string quoted() {
    std::string out;
    ++at;  // the opening quote
    while (true) {
      if (at >= line.size()) fail("a string field has no closing quote", line);
      char c = line[at++];
      if (c == '"') return out;
      if (c == '\\' && at < line.size()) {
        char next = line[at];
        if (next == '"' || next == '\\') {
          out.push_back(next);
          ++at;
          continue;
        }
        if (dialect == Dialect::V2 && (next == 'n' || next == 'r' || next == 't')) {
          out.push_back(next == 'n' ? '\n' : next == 'r' ? '\r' : '\t');
          ++at;
          continue;
        }
      }
      out.push_back(c);
    }
  }

  bool take(char c) {
    if (at < line.size() && line[at] == c) {
      ++at;
      return true;
    }
    return false;
  }
};

struct Field {
  std::string key;
  char type;  // 'i' integer, 'u' unsigned, 'f' float, 'b' boolean, 's' string
  std::string text;  // integers and unsigned in decimal, floats as %a, booleans true/false, strings as they are
};

std::string float_text(double d) {
  char text[64];
  std::snprintf(text, sizeof text, "%a", d);
  return text;
}

struct Point {
  std::string measurement;
  std::map<std::string, std::string> tags;
  std::vector<Field> fields;
  std::optional<std::int64_t> time;
};

Point read_point(std::string_view line, Dialect dialect) {
  if (line.empty() || line.back() != '\n') fail("the line does not end with a newline", line);
  line.remove_suffix(1);
  Reader r{line, dialect};
  Point p;
  if (!line.empty() && line[0] == '#') fail("the line reads as a comment", line);
  p.measurement = r.element(", ", ", ");
  if (p.measurement.empty()) fail("no measurement", line);
  while (r.take(',')) {
    std::string key = r.element("=", ",= ");
    if (!r.take('=')) fail("a tag without '='", line);
    std::string value = r.element(", ", ",= ");
    if (key.empty() || value.empty()) fail("an empty tag key or value", line);
    if (!p.tags.emplace(key, value).second) fail("a tag key twice", line);
  }
  if (!r.take(' ')) fail("no space before the fields", line);
  do {
    Field f;
    f.key = r.element("=", ",= ");
    if (f.key.empty()) fail("an empty field key", line);
    if (!r.take('=')) fail("a field without '='", line);
    if (r.at < line.size() && line[r.at] == '"') {
      f.type = 's';
      f.text = r.quoted();
    } else {
      std::size_t end = line.find_first_of(", ", r.at);
      if (end == std::string_view::npos) end = line.size();
      std::string_view v = line.substr(r.at, end - r.at);
      r.at = end;
      if (v == "true" || v == "false") {
        f.type = 'b';
        f.text = std::string(v);
      } else if (!v.empty() && (v.back() == 'i' || v.back() == 'u')) {
        f.type = v.back();
        v.remove_suffix(1);
        std::int64_t i = 0;
        std::uint64_t u = 0;
        auto [ptr, ec] = f.type == 'i' ? std::from_chars(v.data(), v.data() + v.size(), i)
                                       : std::from_chars(v.data(), v.data() + v.size(), u);
        if (ec != std::errc() || ptr != v.data() + v.size()) fail("an integer field that does not parse", line);
        f.text = f.type == 'i' ? std::to_string(i) : std::to_string(u);
      } else {
        std::string copy(v);
        char* end_ptr = nullptr;
        double d = std::strtod(copy.c_str(), &end_ptr);
        if (copy.empty() || end_ptr != copy.c_str() + copy.size() || !std::isfinite(d)) fail("a float field that does not parse", line);
        f.type = 'f';
        f.text = float_text(d);
      }
    }
    p.fields.push_back(std::move(f));
  } while (r.take(','));
  if (r.take(' ')) {
    std::string_view v = line.substr(r.at);
    std::int64_t t = 0;
    auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), t);
    if (ec != std::errc() || ptr != v.data() + v.size()) fail("a timestamp that does not parse", line);
    p.time = t;
    r.at = line.size();
  }
  if (r.at != line.size()) fail("bytes after the point", line);
  return p;
}

std::string field_key_from(FuzzedDataProvider& in) { return in.ConsumeRandomLengthString(12); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  PointMapping mapping;
  mapping.dialect = in.ConsumeBool() ? Dialect::V2 : Dialect::V1;
  mapping.measurement = "fallback";
  mapping.measurement_field = FieldPath("m");
  mapping.tags = {FieldPath("t")};
  mapping.timestamp_field = FieldPath("ts");
  const Dialect dialect = mapping.dialect;

  Arena arena;
  Event event;
  event.fields = Value::object(arena);
  Point expected;
  expected.measurement = "fallback";
  std::string must_refuse;  // why the encoder must refuse the point, if it must

  if (in.ConsumeBool()) {
    std::string m = in.ConsumeRandomLengthString(16);
    event.fields.append_member(arena, "m", Value::string(arena, m));
    if (!m.empty()) expected.measurement = m;
  }
  if (expected.measurement.front() == '#') must_refuse = "a measurement starting with '#'";
  std::string stored_measurement = without_controls(expected.measurement);
  if (stored_measurement.empty()) must_refuse = "a measurement of control characters only";
  else if (stored_measurement.front() == '#') must_refuse = "a measurement that starts with '#' once control characters are dropped";
  expected.measurement = dialect == Dialect::V1 ? v1_stored(stored_measurement, ", ") : stored_measurement;

  Value tags = Value::object(arena);
  for (int n = in.ConsumeIntegralInRange(0, 4); n > 0; --n) {
    std::string key = in.ConsumeRandomLengthString(10);
    std::string value = in.ConsumeRandomLengthString(10);
    tags.append_member(arena, arena.copy(key), Value::string(arena, value));
    std::string k = without_controls(key), v = without_controls(value);
    if (value.empty() || k.empty() || v.empty()) continue;  // omitted
    if (dialect == Dialect::V1) {
      k = v1_stored(k, ",= ");
      v = v1_stored(v, ",= ");
    }
    expected.tags.emplace(k, v);  // the first value of a key is the one written
  }
  event.fields.append_member(arena, "t", tags);

  std::set<std::string> keys;
  for (int n = in.ConsumeIntegralInRange(1, 5); n > 0; --n) {
    std::string key = field_key_from(in);
    if (key == "m" || key == "t" || key == "ts" || !keys.insert(key).second) continue;
    Value value;
    Field f;
    switch (in.ConsumeIntegralInRange(0, 5)) {
      case 0: {
        auto i = in.ConsumeIntegral<std::int64_t>();
        value = Value::integer(i);
        f = {key, 'i', std::to_string(i)};
        break;
      }
      case 1: {
        auto u = in.ConsumeIntegralInRange<std::uint64_t>(std::uint64_t(INT64_MAX) + 1, UINT64_MAX);
        value = Value::uinteger(u);
        if (dialect == Dialect::V1) must_refuse = "an unsigned value past int64 for 1.x";  // 1.x has no unsigned type
        f = {key, 'u', std::to_string(u)};
        break;
      }
      case 2: {
        double d = in.ConsumeFloatingPoint<double>();
        if (in.ConsumeBool()) d = std::nan("");
        value = Value::floating(d);
        if (!std::isfinite(d)) must_refuse = "a float that is not finite";
        f = {key, 'f', std::isfinite(d) ? float_text(d) : ""};
        break;
      }
      case 3: {
        bool b = in.ConsumeBool();
        value = Value::boolean(b);
        f = {key, 'b', b ? "true" : "false"};
        break;
      }
      case 4: {
        std::string s = in.ConsumeRandomLengthString(24);
        value = Value::string(arena, s);
        f = {key, 's', s};
        break;
      }
      default: value = Value::null(); break;  // not written
    }
    event.fields.append_member(arena, arena.copy(key), value);
    if (value.is_null()) continue;
    if (key.empty()) must_refuse = "an empty field key";
    std::string k = without_controls(key);
    if (k.empty()) must_refuse = "a field key of control characters only";
    f.key = dialect == Dialect::V1 ? v1_stored(k, ",= ") : k;
    expected.fields.push_back(std::move(f));
  }
  if (expected.fields.empty()) must_refuse = "no fields";
  if (in.ConsumeBool()) {
    auto t = in.ConsumeIntegral<std::int64_t>();
    event.fields.append_member(arena, "ts", Value::integer(t));
    expected.time = t;
  }

  PointEncoder encoder(mapping);
  ByteBuffer out;
  out.append("previous\n");
  Status written = encoder.encode_row(event, out);
  std::string_view line = out.view().substr(9);
  if (!written.ok()) {
    if (!line.empty()) fail("refused, but wrote: " + written.error().message(), line);
    if (must_refuse.empty()) fail("refused a point it can write: " + written.error().message(), "");
    return 0;
  }
  if (!must_refuse.empty()) fail("wrote a point it must refuse: " + must_refuse, line);
  Point got = read_point(line, dialect);
  if (got.measurement != expected.measurement) fail("measurement '" + got.measurement + "', not '" + expected.measurement + "'", line);
  if (got.tags != expected.tags) fail("the tags differ", line);
  if (got.fields.size() != expected.fields.size()) fail("the number of fields differs", line);
  for (std::size_t i = 0; i < got.fields.size(); ++i) {
    const Field& g = got.fields[i];
    const Field& e = expected.fields[i];
    if (g.key != e.key || g.type != e.type || g.text != e.text) {
      fail("field " + std::to_string(i) + " reads '" + g.key + "' " + g.type + " '" + g.text + "', not '" + e.key + "' " +
               e.type + " '" + e.text + "'",
           line);
    }
  }
  if (got.time != expected.time) fail("the time differs", line);
  return 0;
}
