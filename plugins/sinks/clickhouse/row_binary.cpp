#include "row_binary.hpp"

#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include "weir/json.hpp"
#include "weir/time.hpp"

namespace weir::plugins::clickhouse {
namespace {

static_assert(std::endian::native == std::endian::little, "RowBinary is little-endian; so is every machine weir builds on");

std::string_view trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

// "Name(inner)" -> inner, when `type` is exactly that.
bool unwrap(std::string_view type, std::string_view name, std::string_view& inner) {
  if (type.size() < name.size() + 2 || type.substr(0, name.size()) != name || type[name.size()] != '(' || type.back() != ')') {
    return false;
  }
  inner = trim(type.substr(name.size() + 1, type.size() - name.size() - 2));
  return true;
}

// A single-quoted literal at the start of `text` (backslash escapes), advancing past it.
bool quoted(std::string_view& text, std::string& out) {
  if (text.empty() || text.front() != '\'') return false;
  out.clear();
  for (std::size_t i = 1; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\\' && i + 1 < text.size()) {
      out.push_back(text[++i]);
    } else if (c == '\'') {
      text.remove_prefix(i + 1);
      return true;
    } else {
      out.push_back(c);
    }
  }
  return false;
}

bool is_utc(std::string_view zone) {
  static constexpr std::string_view kUtc[] = {"UTC", "Etc/UTC", "UCT", "Etc/UCT", "GMT", "Etc/GMT", "GMT0", "Etc/GMT0",
                                              "Etc/GMT+0", "Etc/GMT-0", "Universal", "Etc/Universal", "Zulu", "Etc/Zulu",
                                              "Greenwich", "Etc/Greenwich"};
  for (std::string_view z : kUtc) {
    if (zone == z) return true;
  }
  return false;
}

Result<ColumnType> parse_type(std::string_view type, std::string_view server_zone) {
  type = trim(type);
  std::string_view inner;
  auto unsupported = [&](std::string_view why = {}) -> Error {
    return Error(why.empty() ? fmt::format("type {} is not one weir writes in RowBinary", type)
                             : fmt::format("type {}: {}", type, why));
  };
  if (unwrap(type, "LowCardinality", inner)) return parse_type(inner, server_zone);  // RowBinary: the inner type's bytes
  if (unwrap(type, "Nullable", inner)) {
    auto t = parse_type(inner, server_zone);
    if (!t.ok()) return t;
    if (t.value().nullable || t.value().kind == TypeKind::Array) return unsupported();
    t.value().nullable = true;
    return t;
  }
  if (unwrap(type, "Array", inner)) {
    auto element = parse_type(inner, server_zone);
    if (!element.ok()) return element.error();
    ColumnType t;
    t.kind = TypeKind::Array;
    t.element = std::make_shared<ColumnType>(std::move(element.value()));
    return t;
  }
  ColumnType t;
  if (unwrap(type, "FixedString", inner)) {
    std::uint32_t n = 0;
    auto [end, ec] = std::from_chars(inner.data(), inner.data() + inner.size(), n);
    if (ec != std::errc() || end != inner.data() + inner.size() || n == 0) return unsupported();
    t.kind = TypeKind::FixedString;
    t.size = n;
    return t;
  }
  std::string zone(server_zone);
  if (type == "DateTime" || unwrap(type, "DateTime", inner)) {
    t.kind = TypeKind::DateTime;
    if (type != "DateTime" && !quoted(inner, zone)) return unsupported();
    if (!is_utc(zone)) return unsupported(fmt::format("time zone '{}' is not UTC (text times without an offset are local to it)", zone));
    return t;
  }
  if (unwrap(type, "DateTime64", inner)) {
    t.kind = TypeKind::DateTime64;
    std::string_view precision = inner.substr(0, inner.find(','));
    auto [end, ec] = std::from_chars(precision.data(), precision.data() + precision.size(), t.size);
    if (ec != std::errc() || trim(std::string_view(end, precision.data() + precision.size() - end)) != "" || t.size > 9) {
      return unsupported();
    }
    if (precision.size() < inner.size()) {
      std::string_view rest = trim(inner.substr(precision.size() + 1));
      if (!quoted(rest, zone) || !trim(rest).empty()) return unsupported();
    }
    if (!is_utc(zone)) return unsupported(fmt::format("time zone '{}' is not UTC (text times without an offset are local to it)", zone));
    return t;
  }
  bool enum8 = unwrap(type, "Enum8", inner);
  if (enum8 || unwrap(type, "Enum16", inner)) {
    t.kind = enum8 ? TypeKind::Enum8 : TypeKind::Enum16;
    std::string name;
    while (!inner.empty()) {
      if (!quoted(inner, name)) return unsupported();
      inner = trim(inner);
      if (inner.empty() || inner.front() != '=') return unsupported();
      inner = trim(inner.substr(1));
      std::int16_t value = 0;
      auto [end, ec] = std::from_chars(inner.data(), inner.data() + inner.size(), value);
      if (ec != std::errc() || (enum8 && (value < -128 || value > 127))) return unsupported();
      t.enum_values.emplace_back(name, value);
      inner = trim(inner.substr(static_cast<std::size_t>(end - inner.data())));
      if (!inner.empty()) {
        if (inner.front() != ',') return unsupported();
        inner = trim(inner.substr(1));
      }
    }
    if (t.enum_values.empty()) return unsupported();
    return t;
  }
  static constexpr std::pair<std::string_view, TypeKind> kSimple[] = {
      {"String", TypeKind::String}, {"Int8", TypeKind::Int8},       {"Int16", TypeKind::Int16},
      {"Int32", TypeKind::Int32},   {"Int64", TypeKind::Int64},     {"UInt8", TypeKind::UInt8},
      {"UInt16", TypeKind::UInt16}, {"UInt32", TypeKind::UInt32},   {"UInt64", TypeKind::UInt64},
      {"Float32", TypeKind::Float32}, {"Float64", TypeKind::Float64}, {"Date", TypeKind::Date},
      {"UUID", TypeKind::UUID}, {"Bool", TypeKind::UInt8}};  // Bool (22.x) is a UInt8 of 0 or 1 on the wire
  for (auto [name, kind] : kSimple) {
    if (type == name) {
      t.kind = kind;
      return t;
    }
  }
  return unsupported();
}

// ---- writing ------------------------------------------------------------------------------

template <typename T>
void put(ByteBuffer& out, T value) {
  std::memcpy(out.ensure(sizeof value), &value, sizeof value);
  out.commit(sizeof value);
}

void put_varint(ByteBuffer& out, std::uint64_t n) {
  char* p = out.ensure(10);
  std::size_t used = 0;
  while (n >= 0x80) {
    p[used++] = static_cast<char>((n & 0x7f) | 0x80);
    n >>= 7;
  }
  p[used++] = static_cast<char>(n);
  out.commit(used);
}

void put_string(ByteBuffer& out, std::string_view s) {
  put_varint(out, s.size());
  out.append(s);
}

// A JSON value as an integer: integers, integral strings, booleans.
bool integer_of(const Value& v, bool& negative, std::uint64_t& magnitude) {
  switch (v.kind()) {
    case Kind::Int:
      negative = v.as_int() < 0;
      magnitude = negative ? 0 - static_cast<std::uint64_t>(v.as_int()) : static_cast<std::uint64_t>(v.as_int());
      return true;
    case Kind::Uint: negative = false; magnitude = v.as_uint(); return true;
    case Kind::Bool: negative = false; magnitude = v.as_bool() ? 1 : 0; return true;
    case Kind::Double: {
      double d = v.as_double();
      if (!(std::trunc(d) == d) || std::fabs(d) >= 18446744073709551616.0) return false;
      negative = d < 0;
      magnitude = static_cast<std::uint64_t>(std::fabs(d));
      return true;
    }
    case Kind::String: {
      std::string_view s = v.as_string();
      negative = !s.empty() && s.front() == '-';
      if (negative || (!s.empty() && s.front() == '+')) s.remove_prefix(1);
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), magnitude);
      return !s.empty() && ec == std::errc() && end == s.data() + s.size();
    }
    default: return false;
  }
}

std::string shown(const Value& v) {
  ByteBuffer b;
  write_json(v, b);
  std::string s(b.view().substr(0, 200));
  return s;
}

template <typename T>
Status put_integer(const Value& v, ByteBuffer& out, std::string_view type) {
  bool negative = false;
  std::uint64_t magnitude = 0;
  if (!integer_of(v, negative, magnitude)) return Error(fmt::format("{} is not an integer ({})", shown(v), type));
  bool fits;
  T value;
  if constexpr (std::is_signed_v<T>) {
    std::uint64_t limit = negative ? static_cast<std::uint64_t>(std::numeric_limits<T>::max()) + 1
                                   : static_cast<std::uint64_t>(std::numeric_limits<T>::max());
    fits = magnitude <= limit;
    value = static_cast<T>(negative ? static_cast<T>(0 - magnitude) : static_cast<T>(magnitude));
  } else {
    fits = (!negative || magnitude == 0) && magnitude <= std::numeric_limits<T>::max();
    value = static_cast<T>(magnitude);
  }
  if (!fits) return Error(fmt::format("{} is out of range for {}", shown(v), type));
  put(out, value);
  return {};
}

Status put_float(const Value& v, ByteBuffer& out, bool is_double) {
  double d = 0;
  switch (v.kind()) {
    case Kind::Int: case Kind::Uint: case Kind::Double: d = v.to_double(); break;
    case Kind::Bool: d = v.as_bool() ? 1 : 0; break;
    case Kind::String: {
      std::string_view s = v.as_string();
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
      if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return Error(fmt::format("{} is not a number", shown(v)));
      break;
    }
    default: return Error(fmt::format("{} is not a number", shown(v)));
  }
  if (is_double) put(out, d);
  else put(out, static_cast<float>(d));
  return {};
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// ClickHouse keeps a UUID as two 64-bit halves, each little-endian on the wire.
Status put_uuid(const Value& v, ByteBuffer& out) {
  std::string_view s = v.is_string() ? v.as_string() : std::string_view();
  std::uint64_t half[2] = {0, 0};
  int digits = 0;
  bool ok = s.size() == 36;
  for (std::size_t i = 0; ok && i < s.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      ok = s[i] == '-';
      continue;
    }
    int d = hex_digit(s[i]);
    ok = d >= 0;
    half[digits / 16] = half[digits / 16] << 4 | static_cast<std::uint64_t>(d);
    ++digits;
  }
  if (!ok) return Error(fmt::format("{} is not a UUID", shown(v)));
  put(out, half[0]);
  put(out, half[1]);
  return {};
}

Result<EpochNanos> time_of(const Value& v) {
  if (v.is_bool() || v.is_object() || v.is_array()) return Error(fmt::format("{} is not a time", shown(v)));
  return parse_timestamp(v);
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

Status put_value(const ColumnType& t, const Value* v, ByteBuffer& out);

// The type's own default: what the server gives a column absent from the row.
void put_default(const ColumnType& t, ByteBuffer& out) {
  if (t.nullable) {
    put<std::uint8_t>(out, 1);
    return;
  }
  switch (t.kind) {
    case TypeKind::String: case TypeKind::Array: put<std::uint8_t>(out, 0); return;
    case TypeKind::FixedString: std::memset(out.ensure(t.size), 0, t.size); out.commit(t.size); return;
    case TypeKind::Int8: case TypeKind::UInt8: put<std::uint8_t>(out, 0); return;
    case TypeKind::Int16: case TypeKind::UInt16: case TypeKind::Date: put<std::uint16_t>(out, 0); return;
    case TypeKind::Int32: case TypeKind::UInt32: case TypeKind::DateTime: put<std::uint32_t>(out, 0); return;
    case TypeKind::Int64: case TypeKind::UInt64: case TypeKind::DateTime64: put<std::uint64_t>(out, 0); return;
    case TypeKind::Float32: put<float>(out, 0); return;
    case TypeKind::Float64: put<double>(out, 0); return;
    case TypeKind::UUID: put<std::uint64_t>(out, 0); put<std::uint64_t>(out, 0); return;
    case TypeKind::Enum8: put<std::int8_t>(out, static_cast<std::int8_t>(t.enum_values.front().second)); return;
    case TypeKind::Enum16: put<std::int16_t>(out, t.enum_values.front().second); return;
  }
}

Status put_present(const ColumnType& t, const Value& v, ByteBuffer& out) {
  switch (t.kind) {
    case TypeKind::String:
      if (v.is_string()) {
        put_string(out, v.as_string());
      } else {  // numbers, booleans, objects and arrays as their JSON text, as current servers read them
        ByteBuffer text;
        write_json(v, text);
        put_string(out, text.view());
      }
      return {};
    case TypeKind::FixedString: {
      if (!v.is_string()) return Error(fmt::format("{} is not a string (FixedString({}))", shown(v), t.size));
      std::string_view s = v.as_string();
      if (s.size() > t.size) return Error(fmt::format("{} is longer than FixedString({})", shown(v), t.size));
      char* p = out.ensure(t.size);
      std::memcpy(p, s.data(), s.size());
      std::memset(p + s.size(), 0, t.size - s.size());
      out.commit(t.size);
      return {};
    }
    case TypeKind::Int8: return put_integer<std::int8_t>(v, out, "Int8");
    case TypeKind::Int16: return put_integer<std::int16_t>(v, out, "Int16");
    case TypeKind::Int32: return put_integer<std::int32_t>(v, out, "Int32");
    case TypeKind::Int64: return put_integer<std::int64_t>(v, out, "Int64");
    case TypeKind::UInt8: return put_integer<std::uint8_t>(v, out, "UInt8");
    case TypeKind::UInt16: return put_integer<std::uint16_t>(v, out, "UInt16");
    case TypeKind::UInt32: return put_integer<std::uint32_t>(v, out, "UInt32");
    case TypeKind::UInt64: return put_integer<std::uint64_t>(v, out, "UInt64");
    case TypeKind::Float32: return put_float(v, out, false);
    case TypeKind::Float64: return put_float(v, out, true);
    case TypeKind::Date: {
      std::int64_t days;
      bool negative = false;
      std::uint64_t n = 0;
      if (!v.is_string() && integer_of(v, negative, n)) {
        days = negative ? -static_cast<std::int64_t>(n) : static_cast<std::int64_t>(n);
      } else if (v.is_string() && v.as_string().size() == 10) {
        std::string text = std::string(v.as_string()) + "T00:00:00Z";
        auto at = parse_iso8601(text);
        if (!at.ok()) return Error(fmt::format("{} is not a date (YYYY-MM-DD)", shown(v)));
        days = floor_div(at.value(), 86'400'000'000'000);
      } else {
        return Error(fmt::format("{} is not a date (YYYY-MM-DD)", shown(v)));
      }
      if (days < 0 || days > 65535) return Error(fmt::format("{} is outside Date's range (1970-01-01 to 2149-06-06)", shown(v)));
      put(out, static_cast<std::uint16_t>(days));
      return {};
    }
    case TypeKind::DateTime: {
      auto at = time_of(v);
      if (!at.ok()) return at.error();
      std::int64_t seconds = floor_div(at.value(), 1'000'000'000);
      if (seconds < 0 || seconds > 4294967295) return Error(fmt::format("{} is outside DateTime's range", shown(v)));
      put(out, static_cast<std::uint32_t>(seconds));
      return {};
    }
    case TypeKind::DateTime64: {
      auto at = time_of(v);
      if (!at.ok()) return at.error();
      std::int64_t scale = 1;
      for (std::uint32_t i = t.size; i < 9; ++i) scale *= 10;
      put(out, floor_div(at.value(), scale));
      return {};
    }
    case TypeKind::UUID: return put_uuid(v, out);
    case TypeKind::Enum8: case TypeKind::Enum16: {
      bool negative = false;
      std::uint64_t n = 0;
      for (const auto& [name, value] : t.enum_values) {
        bool match = v.is_string() ? v.as_string() == name
                                   : integer_of(v, negative, n) && n <= 32768 &&
                                         (negative ? -static_cast<std::int64_t>(n) : static_cast<std::int64_t>(n)) == value;
        if (!match) continue;
        if (t.kind == TypeKind::Enum8) put(out, static_cast<std::int8_t>(value));
        else put(out, value);
        return {};
      }
      return Error(fmt::format("{} is not a value of the Enum", shown(v)));
    }
    case TypeKind::Array: {
      if (!v.is_array()) return Error(fmt::format("{} is not an array", shown(v)));
      put_varint(out, v.elements().size());
      for (const Value& element : v.elements()) {
        if (Status s = put_value(*t.element, &element, out); !s.ok()) return s;
      }
      return {};
    }
  }
  return Error("unknown type");
}

Status put_value(const ColumnType& t, const Value* v, ByteBuffer& out) {
  if (v == nullptr || v->is_null()) {
    put_default(t, out);  // null in a column that is not Nullable: its default, as input_format_null_as_default
    return {};
  }
  if (t.nullable) put<std::uint8_t>(out, 0);
  return put_present(t, *v, out);
}

// ---- reading back (dead letters) ----------------------------------------------------------

struct Reader {
  std::string_view in;
  std::size_t at = 0;
  template <typename T>
  bool get(T& value) {
    if (in.size() - at < sizeof value) return false;
    std::memcpy(&value, in.data() + at, sizeof value);
    at += sizeof value;
    return true;
  }
  bool varint(std::uint64_t& n) {
    n = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      std::uint8_t b;
      if (!get(b)) return false;
      n |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;
  }
  bool bytes(std::size_t n, std::string_view& out) {
    if (in.size() - at < n) return false;
    out = in.substr(at, n);
    at += n;
    return true;
  }
};

std::string time_text(EpochNanos t, int digits) {
  ByteBuffer b;
  format_iso8601(t, digits, b);
  return std::string(b.view());
}

bool read_value(const ColumnType& t, Reader& r, Arena& arena, Value& out) {
  if (t.nullable) {
    std::uint8_t is_null;
    if (!r.get(is_null)) return false;
    if (is_null) {
      out = Value::null();
      return true;
    }
  }
  auto number = [&](auto sample) {
    decltype(sample) x;
    if (!r.get(x)) return false;
    if constexpr (std::is_floating_point_v<decltype(x)>) out = Value::floating(x);
    else if constexpr (std::is_same_v<decltype(x), std::uint64_t>) out = Value::uinteger(x);
    else out = Value::integer(static_cast<std::int64_t>(x));
    return true;
  };
  switch (t.kind) {
    case TypeKind::String: {
      std::uint64_t n;
      std::string_view s;
      if (!r.varint(n) || !r.bytes(n, s)) return false;
      out = Value::string(arena, s);
      return true;
    }
    case TypeKind::FixedString: {
      std::string_view s;
      if (!r.bytes(t.size, s)) return false;
      while (!s.empty() && s.back() == '\0') s.remove_suffix(1);
      out = Value::string(arena, s);
      return true;
    }
    case TypeKind::Int8: return number(std::int8_t{});
    case TypeKind::Int16: return number(std::int16_t{});
    case TypeKind::Int32: return number(std::int32_t{});
    case TypeKind::Int64: return number(std::int64_t{});
    case TypeKind::UInt8: return number(std::uint8_t{});
    case TypeKind::UInt16: return number(std::uint16_t{});
    case TypeKind::UInt32: return number(std::uint32_t{});
    case TypeKind::UInt64: return number(std::uint64_t{});
    case TypeKind::Float32: return number(float{});
    case TypeKind::Float64: return number(double{});
    case TypeKind::Date: {
      std::uint16_t days;
      if (!r.get(days)) return false;
      out = Value::string(arena, time_text(static_cast<EpochNanos>(days) * 86'400'000'000'000, 0).substr(0, 10));
      return true;
    }
    case TypeKind::DateTime: {
      std::uint32_t s;
      if (!r.get(s)) return false;
      out = Value::string(arena, time_text(static_cast<EpochNanos>(s) * 1'000'000'000, 0));
      return true;
    }
    case TypeKind::DateTime64: {
      std::int64_t ticks;
      if (!r.get(ticks)) return false;
      std::int64_t scale = 1;
      for (std::uint32_t i = t.size; i < 9; ++i) scale *= 10;
      out = Value::string(arena, time_text(ticks * scale, static_cast<int>(t.size)));
      return true;
    }
    case TypeKind::UUID: {
      std::uint64_t half[2];
      if (!r.get(half[0]) || !r.get(half[1])) return false;
      std::string text = fmt::format("{:016x}{:016x}", half[0], half[1]);
      text = text.substr(0, 8) + "-" + text.substr(8, 4) + "-" + text.substr(12, 4) + "-" + text.substr(16, 4) + "-" + text.substr(20);
      out = Value::string(arena, text);
      return true;
    }
    case TypeKind::Enum8: case TypeKind::Enum16: {
      std::int16_t value;
      if (t.kind == TypeKind::Enum8) {
        std::int8_t v8;
        if (!r.get(v8)) return false;
        value = v8;
      } else if (!r.get(value)) {
        return false;
      }
      for (const auto& [name, v] : t.enum_values) {
        if (v == value) {
          out = Value::string(arena, name);
          return true;
        }
      }
      out = Value::integer(value);
      return true;
    }
    case TypeKind::Array: {
      std::uint64_t n;
      if (!r.varint(n) || n > r.in.size()) return false;
      out = Value::array(arena, static_cast<std::uint32_t>(n));
      for (std::uint64_t i = 0; i < n; ++i) {
        Value element;
        if (!read_value(*t.element, r, arena, element)) return false;
        out.push_back(arena, element);
      }
      return true;
    }
  }
  return false;
}

// Whether a DEFAULT expression is the type's own default (what RowBinary writes for an
// absent field): 18.16 prints `DEFAULT NULL` of a Nullable column as CAST(NULL, '<type>').
bool is_type_default(const ColumnType& t, std::string_view expression) {
  expression = trim(expression);
  if (expression.starts_with("CAST(") && expression.ends_with(")")) {
    expression = trim(expression.substr(5, expression.find(',') == std::string_view::npos ? 0 : expression.find(',') - 5));
  }
  if (t.nullable) return expression == "NULL";
  if (t.kind == TypeKind::String || t.kind == TypeKind::FixedString) return expression == "''";
  return expression == "0" || expression == "0." || expression == "0.0";
}

// ---- Native: the same values, column by column -------------------------------------------

// A varint that put_varint wrote (so well formed): its value, and the bytes it takes.
std::size_t varint(const char* p, std::uint64_t& n) {
  std::size_t used = 0;
  n = 0;
  for (int shift = 0;; shift += 7) {
    auto b = static_cast<std::uint8_t>(p[used++]);
    n |= static_cast<std::uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return used;
  }
}

// The size of one RowBinary value of `t` at `data` (written by put_value, so well formed).
std::size_t value_size(const ColumnType& t, const char* data) {
  std::size_t at = 0;
  if (t.nullable) {
    if (data[0] != 0) return 1;
    at = 1;
  }
  std::uint64_t n = 0;
  switch (t.kind) {
    case TypeKind::String: { std::size_t used = varint(data + at, n); return at + used + n; }
    case TypeKind::FixedString: return at + t.size;
    case TypeKind::Int8: case TypeKind::UInt8: case TypeKind::Enum8: return at + 1;
    case TypeKind::Int16: case TypeKind::UInt16: case TypeKind::Date: case TypeKind::Enum16: return at + 2;
    case TypeKind::Int32: case TypeKind::UInt32: case TypeKind::DateTime: case TypeKind::Float32: return at + 4;
    case TypeKind::Int64: case TypeKind::UInt64: case TypeKind::DateTime64: case TypeKind::Float64: return at + 8;
    case TypeKind::UUID: return at + 16;
    case TypeKind::Array: {
      at += varint(data + at, n);
      for (std::uint64_t i = 0; i < n; ++i) at += value_size(*t.element, data + at);
      return at;
    }
  }
  return at;
}

// A column of `values` (each one RowBinary value of `t`) in Native's layout: Nullable as the
// null map, then every value of the inner type (a default where null); Array as the
// cumulative offsets, then the column of all elements; everything else as its bytes.
void write_column(const ColumnType& t, const std::vector<std::string_view>& values, ByteBuffer& out) {
  if (t.nullable) {
    ColumnType inner = t;
    inner.nullable = false;
    ByteBuffer defaults;
    put_default(inner, defaults);
    std::vector<std::string_view> present;
    present.reserve(values.size());
    char* map = out.ensure(values.size());
    for (std::size_t i = 0; i < values.size(); ++i) {
      const bool is_null = values[i][0] != 0;
      map[i] = is_null ? 1 : 0;
      present.push_back(is_null ? std::string_view(defaults.data(), defaults.size()) : values[i].substr(1));
    }
    out.commit(values.size());
    // `defaults` outlives the inner column's writing, which copies from it.
    write_column(inner, present, out);
    return;
  }
  if (t.kind == TypeKind::Array) {
    std::vector<std::string_view> elements;
    std::uint64_t total = 0;
    for (std::string_view v : values) {
      std::uint64_t n = 0;
      std::size_t at = varint(v.data(), n);
      for (std::uint64_t i = 0; i < n; ++i) {
        std::size_t size = value_size(*t.element, v.data() + at);
        elements.push_back(v.substr(at, size));
        at += size;
      }
      total += n;
      put(out, total);
    }
    write_column(*t.element, elements, out);
    return;
  }
  std::size_t bytes = 0;
  for (std::string_view v : values) bytes += v.size();
  char* p = out.ensure(bytes);
  for (std::string_view v : values) {
    std::memcpy(p, v.data(), v.size());
    p += v.size();
  }
  out.commit(bytes);
}

}  // namespace

std::string quoted_identifier(std::string_view name) {
  std::string out = "`";
  for (char c : name) {
    if (c == '`' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('`');
  return out;
}

bool native_can_write(std::string_view type) { return type.find("LowCardinality") == std::string_view::npos; }

bool RowBinaryEncoder::wire_body(const http::Upload& upload, ByteBuffer& out) const {
  if (!native_) return false;
  const std::size_t rows = upload.encoded_rows();
  const char* body = upload.body.data();
  // Where each row's next column starts; each column is then copied out of all rows in one
  // pass (two for Nullable: the null map, then the values), without a list of values.
  std::vector<std::uint32_t> at(rows);
  for (std::size_t r = 0; r < rows; ++r) at[r] = r == 0 ? 0 : upload.row_ends[r - 1];
  out.reserve(upload.body.size() + upload.body.size() / 8 + 1024);
  put_varint(out, columns_.size());
  put_varint(out, rows);
  std::vector<std::string_view> values;
  for (const Column& column : columns_) {
    put_string(out, column.name);
    put_string(out, column.type);
    const ColumnType& t = column.parsed;
    if (t.kind == TypeKind::Array) {  // offsets and nested columns: through the general writer
      values.clear();
      for (std::size_t r = 0; r < rows; ++r) {
        std::size_t size = value_size(t, body + at[r]);
        values.emplace_back(body + at[r], size);
        at[r] += static_cast<std::uint32_t>(size);
      }
      write_column(t, values, out);
      continue;
    }
    ColumnType inner = t;
    inner.nullable = false;
    ByteBuffer defaults;
    put_default(inner, defaults);
    if (t.nullable) {
      char* map = out.ensure(rows);
      for (std::size_t r = 0; r < rows; ++r) map[r] = body[at[r]] != 0 ? 1 : 0;
      out.commit(rows);
    }
    for (std::size_t r = 0; r < rows; ++r) {
      const char* p = body + at[r];
      if (t.nullable) {
        ++at[r];
        if (*p++ != 0) {
          out.append(defaults.view());
          continue;
        }
      }
      std::size_t size = value_size(inner, p);
      out.append(std::string_view(p, size));
      at[r] += static_cast<std::uint32_t>(size);
    }
  }
  return true;
}

Result<ColumnType> parse_column_type(std::string_view type, std::string_view server_zone) {
  return parse_type(type, server_zone);
}

Result<std::vector<Column>> binary_columns(const std::vector<ColumnInfo>& columns, std::string_view server_zone) {
  std::vector<Column> out;
  for (const ColumnInfo& c : columns) {
    if (c.default_kind == "MATERIALIZED" || c.default_kind == "ALIAS") continue;
    auto parsed = parse_type(c.type, server_zone);
    if (!parsed.ok()) return Error(fmt::format("column `{}`: {}", c.name, parsed.error().message()));
    if (!c.default_kind.empty() && !is_type_default(parsed.value(), c.default_expression)) {
      return Error(fmt::format("column `{}` has DEFAULT {}, which RowBinary cannot ask the server for row by row", c.name,
                               c.default_expression));
    }
    out.push_back(Column{c.name, c.type, std::move(parsed.value())});
  }
  if (out.empty()) return Error("the table has no column weir can insert");
  return out;
}

RowBinaryEncoder::RowBinaryEncoder(std::vector<Column> columns, const std::vector<std::string>& only_fields,
                                   bool skip_unknown_fields)
    : columns_(std::move(columns)), only_fields_(!only_fields.empty()), skip_unknown_(skip_unknown_fields) {
  column_list_ = "(";
  for (const Column& c : columns_) {
    if (column_list_.size() > 1) column_list_ += ", ";
    column_list_ += quoted_identifier(c.name);
    // With only_fields, a column's value is the field of that path, when it is listed (as
    // JSONEachRow writes the key "a.b" from the path a.b); otherwise the top-level member.
    bool listed = !only_fields_;
    for (const std::string& f : only_fields) listed = listed || f == c.name;
    paths_.emplace_back(listed && (only_fields_ || c.name.find('.') == std::string::npos) ? FieldPath(c.name) : FieldPath());
  }
  column_list_ += ")";
  for (const std::string& f : only_fields) {
    bool is_column = false;
    for (const Column& c : columns_) is_column = is_column || c.name == f;
    if (!is_column) unlisted_.emplace_back(f);
  }
}

Status RowBinaryEncoder::encode_row(const Event& event, ByteBuffer& out) {
  const std::size_t before = out.size();
  std::size_t found = 0;
  for (std::size_t i = 0; i < columns_.size(); ++i) {
    const Value* v = nullptr;
    if (!paths_[i].empty()) v = paths_[i].find(event.fields);
    else if (!only_fields_) v = event.fields.find(columns_[i].name);  // a top-level key with a dot in it
    if (v != nullptr) ++found;
    if (Status s = put_value(columns_[i].parsed, v, out); !s.ok()) {
      out.truncate(before);
      return Error(fmt::format("column `{}` ({}): {}", columns_[i].name, columns_[i].type, s.error().message()));
    }
  }
  if (!skip_unknown_) {
    // A field that is no column: refused, as the server refuses it in JSONEachRow.
    std::string_view unknown;
    if (only_fields_) {
      for (const FieldPath& f : unlisted_) {
        if (f.find(event.fields) != nullptr) {
          unknown = f.text();
          break;
        }
      }
    } else if (found < event.fields.members().size()) {
      for (const Member& m : event.fields.members()) {
        bool is_column = false;
        for (const Column& c : columns_) is_column = is_column || c.name == m.key;
        if (!is_column) {
          unknown = m.key;
          break;
        }
      }
    }
    if (!unknown.empty()) {
      out.truncate(before);
      return Error(fmt::format("field '{}' is not a column of the table (skip_unknown_fields is off)", unknown));
    }
  }
  return {};
}

Result<Value> RowBinaryEncoder::decode_row(std::string_view row, Arena& arena) const {
  Reader r{row};
  Value object = Value::object(arena, static_cast<std::uint32_t>(columns_.size()));
  for (const Column& c : columns_) {
    Value v;
    if (!read_value(c.parsed, r, arena, v)) return Error(fmt::format("the row ends inside column `{}`", c.name));
    object.append_member(arena, arena.copy(c.name), v);
  }
  if (r.at != row.size()) return Error("bytes left after the last column");
  return object;
}

}  // namespace weir::plugins::clickhouse
