#include "line_protocol.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "weir/json.hpp"
#include "weir/time.hpp"

namespace weir::plugins::influxdb {

std::string_view field_type_name(FieldType type) {
  switch (type) {
    case FieldType::Float: return "float";
    case FieldType::Integer: return "integer";
    case FieldType::Unsigned: return "unsigned";
    case FieldType::Boolean: return "boolean";
    case FieldType::String: return "string";
  }
  return "?";
}

Result<FieldType> parse_field_type(std::string_view name) {
  for (FieldType t : {FieldType::Float, FieldType::Integer, FieldType::Unsigned, FieldType::Boolean, FieldType::String}) {
    if (field_type_name(t) == name) return t;
  }
  return Error(fmt::format("unknown field type '{}' (float, integer, unsigned, boolean or string)", name));
}


namespace {

bool is_control(unsigned char c) { return c < 0x20 || c == 0x7f; }

// Names and tags: `specials` are escaped with a backslash, control characters dropped.
// A backslash from the text is doubled (V2: `\\` reads as one) or, for 1.x, which keeps
// backslashes as they are, doubled only where it would otherwise escape what follows it
// (a special character we escape, or the delimiter after the element).
void append_escaped(std::string_view text, std::string_view specials, Dialect dialect, ByteBuffer& out) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (is_control(static_cast<unsigned char>(c))) continue;
    if (c == '\\') {
      if (dialect == Dialect::V2) {
        out.append("\\\\");
        continue;
      }
      // Look past dropped control characters for what the backslash would touch.
      std::size_t next = i + 1;
      while (next < text.size() && is_control(static_cast<unsigned char>(text[next]))) ++next;
      bool touches = next == text.size() || specials.find(text[next]) != std::string_view::npos || text[next] == '\\';
      out.append(touches ? "\\\\" : "\\");
      continue;
    }
    if (specials.find(c) != std::string_view::npos) out.push_back('\\');
    out.push_back(c);
  }
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  std::int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

constexpr double kTwoTo63 = 9223372036854775808.0;
constexpr double kTwoTo64 = 18446744073709551616.0;

// Each precision's option text, name and length in nanoseconds, in one place.
struct Unit {
  Precision precision;
  const char* option;
  const char* name;
  std::int64_t nanos;
};
constexpr Unit kUnits[] = {{Precision::Seconds, "s", "seconds", 1'000'000'000},
                           {Precision::Milliseconds, "ms", "milliseconds", 1'000'000},
                           {Precision::Microseconds, "us", "microseconds", 1'000},
                           {Precision::Nanoseconds, "ns", "nanoseconds", 1}};
const Unit& unit_of(Precision precision) {
  for (const Unit& u : kUnits) {
    if (u.precision == precision) return u;
  }
  return kUnits[3];
}

// A number out of int64 nanoseconds' range in `unit`: the error names the unit it would be a
// present-day time in (2001 to 2286), if one.
Error out_of_range(double magnitude, std::string_view text, Precision unit) {
  std::string hint;
  for (const Unit& other : kUnits) {
    double seconds = std::fabs(magnitude) * static_cast<double>(other.nanos) / 1e9;
    if (other.precision != unit && seconds >= 1e9 && seconds < 1e10) {
      hint = fmt::format(" (it looks like {}: set timestamp.unit: {})", other.name, other.option);
    }
  }
  return Error(fmt::format("{} is out of range for epoch {}{}", text, unit_of(unit).name, hint));
}

}  // namespace

Result<Precision> parse_precision(std::string_view name) {
  for (const Unit& u : kUnits) {
    if (name == u.option) return u.precision;
  }
  return Error(fmt::format("unknown precision '{}' (ns, us, ms or s)", name));
}

Result<EpochNanos> read_timestamp(const Value& v, Precision unit) {
  const std::int64_t factor = unit_of(unit).nanos;
  switch (v.kind()) {
    case Kind::Int: {
      std::int64_t n = v.as_int();
      if (n > INT64_MAX / factor || n < INT64_MIN / factor) return out_of_range(static_cast<double>(n), std::to_string(n), unit);
      return n * factor;
    }
    case Kind::Uint:  // above INT64_MAX: no unit holds it
      return out_of_range(static_cast<double>(v.as_uint()), std::to_string(v.as_uint()), unit);
    case Kind::Double: {
      double d = v.as_double();
      if (unit == Precision::Seconds) {  // exactly, from its shortest decimal form
        auto exact = parse_timestamp(v);
        return exact.ok() ? exact : Result<EpochNanos>(out_of_range(d, fmt::format("{}", d), unit));
      }
      double nanos = d * static_cast<double>(factor);
      if (!std::isfinite(nanos) || std::fabs(nanos) > 9.2e18) return out_of_range(d, fmt::format("{}", d), unit);  // int64 holds < 9.22e18
      return static_cast<EpochNanos>(std::llround(nanos));
    }
    case Kind::String: {  // text that is only a number is read as that number
      std::string_view text = v.as_string();
      std::int64_t n = 0;
      if (auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
          ec == std::errc() && end == text.data() + text.size() && !text.empty()) {
        return read_timestamp(Value::integer(n), unit);
      }
      double d = 0;
      if (auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), d);
          ec == std::errc() && end == text.data() + text.size() && !text.empty() && std::isfinite(d)) {
        return read_timestamp(Value::floating(d), unit);
      }
      break;
    }
    default: break;
  }
  return parse_timestamp(v);  // ISO-8601, or a refusal that says what it got
}

void append_measurement(std::string_view name, Dialect dialect, ByteBuffer& out) {
  append_escaped(name, ", ", dialect, out);
}

void append_tag_or_key(std::string_view text, Dialect dialect, ByteBuffer& out) {
  append_escaped(text, ",= ", dialect, out);
}

void append_string_value(std::string_view text, Dialect dialect, ByteBuffer& out) {
  out.push_back('"');
  const bool two_character_escapes = dialect == Dialect::V2;
  for (char c : text) {
    switch (c) {
      case '"': out.append("\\\""); break;
      case '\\': out.append("\\\\"); break;
      case '\n': two_character_escapes ? out.append("\\n") : out.push_back(c); break;
      case '\r': two_character_escapes ? out.append("\\r") : out.push_back(c); break;
      case '\t': two_character_escapes ? out.append("\\t") : out.push_back(c); break;
      default: out.push_back(c);  // other bytes, control characters included, are legal inside quotes
    }
  }
  out.push_back('"');
}

Status append_float(double value, ByteBuffer& out) {
  if (!std::isfinite(value)) return Error(fmt::format("{} cannot be written as a float field", value));
  char text[32];
  auto [end, ec] = std::to_chars(text, text + sizeof text, value);  // shortest round-trip form
  out.append(std::string_view(text, static_cast<std::size_t>(end - text)));
  return {};
}

PointEncoder::PointEncoder(PointMapping mapping) : m_(std::move(mapping)) {
  ByteBuffer escaped;
  append_measurement(m_.measurement, m_.dialect, escaped);
  escaped_measurement_ = std::string(escaped.view());
  // The key a path names a scalar by: its segments joined by the separator, as nested
  // objects' keys are.
  auto key_of = [this](const FieldPath& path) {
    std::string key;
    for (char c : path.text()) {
      if (c == '.') key += m_.separator;
      else key.push_back(c);
    }
    return key;
  };
  for (const FieldPath& tag : m_.tags) tag_keys_.push_back(key_of(tag));
  for (const FieldPath& field : m_.fields) field_keys_.push_back(key_of(field));
}

bool PointEncoder::is_mapped_elsewhere(std::string_view key) const {
  auto same = [&](const FieldPath& p) { return p.depth() == 1 && p.text() == key; };
  if (!m_.measurement_field.empty() && same(m_.measurement_field)) return true;
  if (!m_.timestamp_field.empty() && same(m_.timestamp_field)) return true;
  return std::any_of(m_.tags.begin(), m_.tags.end(), same);
}

// The text of a scalar tag value; false when there is none (null, empty).
template <typename Number>
static void append_number(Number n, ByteBuffer& out) {
  char text[32];
  auto [end, ec] = std::to_chars(text, text + sizeof text, n);
  out.append(std::string_view(text, static_cast<std::size_t>(end - text)));
}

template <typename Number>
static void assign_number(Number n, std::string& text) {
  char digits[32];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, n);
  text.assign(digits, end);
}

static bool scalar_text(const Value& v, std::string& text) {
  text.clear();
  switch (v.kind()) {
    case Kind::Null: return false;
    case Kind::Bool: text = v.as_bool() ? "true" : "false"; return true;
    case Kind::Int: assign_number(v.as_int(), text); return true;
    case Kind::Uint: assign_number(v.as_uint(), text); return true;
    case Kind::Double: assign_number(v.as_double(), text); return true;
    case Kind::String: text = std::string(v.as_string()); return !text.empty();
    case Kind::Array: text = to_json(v); return true;
    case Kind::Object: return false;  // flattened by the caller
  }
  return false;
}

Status PointEncoder::add_tags(const Value& value, std::string_view key, std::vector<Tag>& tags) {
  if (value.is_object()) {
    for (const Member& member : value.members()) {
      std::string nested = key.empty() ? std::string(member.key) : fmt::format("{}{}{}", key, m_.separator, member.key);
      if (Status s = add_tags(member.value, nested, tags); !s.ok()) return s;
    }
    return {};
  }
  if (!scalar_text(value, scalar_text_)) return {};  // empty tag values are omitted
  const std::size_t begin = tag_text_.size();
  append_tag_or_key(key, m_.dialect, tag_text_);
  const std::size_t key_end = tag_text_.size();
  append_tag_or_key(scalar_text_, m_.dialect, tag_text_);
  if (key_end == begin || tag_text_.size() == key_end) {  // nothing left once control characters went
    tag_text_.truncate(begin);
    return {};
  }
  tags.push_back(Tag{static_cast<std::uint32_t>(begin), static_cast<std::uint32_t>(key_end),
                     static_cast<std::uint32_t>(tag_text_.size())});
  return {};
}

Status PointEncoder::add_fields(const Value& value, std::string& key, std::string_view measurement, ByteBuffer& out,
                                bool& first) {
  if (!value.is_object()) return add_field(key, value, measurement, out, first);
  for (const Member& member : value.members()) {
    std::size_t length = key.size();
    if (!key.empty()) key += m_.separator;
    key += member.key;
    Status s = add_fields(member.value, key, measurement, out, first);
    key.resize(length);
    if (!s.ok()) return s;
  }
  return {};
}

Status PointEncoder::add_field(std::string_view key, const Value& value, std::string_view measurement, ByteBuffer& out,
                               bool& first) {
  if (value.is_null()) return {};
  if (key.empty()) return Error("a field has an empty name");
  // The type this field has: pinned, remembered from an earlier point, or given by this value.
  FieldType type;
  bool first_seen = false;
  if (auto pinned = m_.field_types.empty() ? m_.field_types.end() : m_.field_types.find(key); pinned != m_.field_types.end()) {
    type = pinned->second;
  } else {
    lookup_key_.assign(measurement);
    lookup_key_.push_back('\0');
    lookup_key_.append(key);
    if (auto it = remembered_.find(lookup_key_); it != remembered_.end()) {
      type = it->second;
    } else {
      switch (value.kind()) {
        case Kind::Bool: type = FieldType::Boolean; break;
        case Kind::Int: type = FieldType::Integer; break;
        case Kind::Uint:
          type = m_.dialect == Dialect::V2 ? FieldType::Unsigned : FieldType::Integer;
          break;
        case Kind::Double: type = FieldType::Float; break;
        default: type = FieldType::String; break;
      }
      first_seen = remembered_.size() + new_types_.size() < kMaxRememberedTypes;
    }
  }
  if (type == FieldType::Unsigned && m_.dialect == Dialect::V1) type = FieldType::Integer;  // 1.x has no `u`

  std::size_t start = out.size();
  if (!first) out.push_back(',');
  std::size_t key_start = out.size();
  append_tag_or_key(key, m_.dialect, out);
  if (out.size() == key_start) {  // ` =1i` would make the server refuse the whole request
    out.truncate(start);
    return Error(fmt::format("the field key {} is empty once control characters are dropped",
                             to_json(Value::string_view(key))));
  }
  out.push_back('=');
  auto conflict = [&]() {
    out.truncate(start);
    return Error(fmt::format("field '{}' of '{}' is {}, and {} cannot be written as that", key, measurement,
                             field_type_name(type), to_json(value)));
  };
  switch (type) {
    case FieldType::Float: {
      double d;
      if (value.is_double()) d = value.as_double();
      else if (value.is_int()) d = static_cast<double>(value.as_int());
      else if (value.is_uint()) d = static_cast<double>(value.as_uint());
      else return conflict();
      if (Status s = append_float(d, out); !s.ok()) {
        out.truncate(start);
        return Error(fmt::format("field '{}': {}", key, s.error().message()));
      }
      break;
    }
    case FieldType::Integer: {
      std::int64_t i;
      if (value.is_int()) i = value.as_int();
      else if (value.is_uint() && value.as_uint() <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) i = static_cast<std::int64_t>(value.as_uint());
      else if (value.is_double() && std::trunc(value.as_double()) == value.as_double() && value.as_double() >= -kTwoTo63 && value.as_double() < kTwoTo63) i = static_cast<std::int64_t>(value.as_double());
      else return conflict();
      append_number(i, out);
      out.push_back('i');
      break;
    }
    case FieldType::Unsigned: {
      std::uint64_t u;
      if (value.is_uint()) u = value.as_uint();
      else if (value.is_int() && value.as_int() >= 0) u = static_cast<std::uint64_t>(value.as_int());
      else if (value.is_double() && std::trunc(value.as_double()) == value.as_double() && value.as_double() >= 0 && value.as_double() < kTwoTo64) u = static_cast<std::uint64_t>(value.as_double());
      else return conflict();
      append_number(u, out);
      out.push_back('u');
      break;
    }
    case FieldType::Boolean:
      if (!value.is_bool()) return conflict();
      out.append(value.as_bool() ? "true" : "false");
      break;
    case FieldType::String:
      if (value.is_string()) append_string_value(value.as_string(), m_.dialect, out);
      else if (value.is_double() && !std::isfinite(value.as_double())) return conflict();
      else if (value.is_array() || value.is_object()) append_string_value(to_json(value), m_.dialect, out);
      else {
        scalar_text(value, scalar_text_);
        append_string_value(scalar_text_, m_.dialect, out);
      }
      break;
  }
  if (first_seen) new_types_.emplace_back(lookup_key_, type);  // remembered once the point is written
  first = false;
  return {};
}

Status PointEncoder::encode_row(const Event& event, ByteBuffer& out) {
  const std::size_t start = out.size();
  new_types_.clear();
  auto fail = [&](Status s) {
    out.truncate(start);
    return s;
  };

  // Measurement.
  std::string_view measurement = m_.measurement;
  std::string measurement_text;
  if (!m_.measurement_field.empty()) {
    const Value* v = m_.measurement_field.find(event.fields);
    if (v != nullptr && scalar_text(*v, measurement_text)) measurement = measurement_text;
  }
  if (measurement.empty()) {
    return Error(fmt::format("no measurement: field '{}' is absent and no static measurement is set",
                             m_.measurement_field.text()));
  }
  if (measurement.data() == m_.measurement.data()) out.append(escaped_measurement_);
  else append_measurement(measurement, m_.dialect, out);
  if (out.size() == start) return Error("the measurement is empty once control characters are dropped");
  // Checked on what is written: control characters before a '#' are dropped.
  if (out.view()[start] == '#') return fail(Error("a measurement must not start with '#' (a comment line)"));

  // Tags, sorted by key (bytewise, as the server keeps them).
  tags_.clear();
  tag_text_.truncate(0);
  for (std::size_t i = 0; i < m_.tags.size(); ++i) {
    const Value* v = m_.tags[i].find(event.fields);
    if (v == nullptr) continue;
    if (Status s = add_tags(*v, v->is_object() ? std::string_view() : std::string_view(tag_keys_[i]), tags_); !s.ok()) {
      return fail(s);
    }
  }
  std::string_view text = tag_text_.view();
  auto key_of = [text](const Tag& t) { return text.substr(t.begin, t.key_end - t.begin); };
  std::stable_sort(tags_.begin(), tags_.end(), [&](const Tag& a, const Tag& b) { return key_of(a) < key_of(b); });
  for (std::size_t i = 0; i < tags_.size(); ++i) {
    if (i > 0 && key_of(tags_[i]) == key_of(tags_[i - 1])) continue;  // one value per key: the first
    out.push_back(',');
    out.append(key_of(tags_[i]));
    out.push_back('=');
    out.append(text.substr(tags_[i].key_end, tags_[i].end - tags_[i].key_end));
  }

  // Fields.
  out.push_back(' ');
  const std::size_t fields_start = out.size();
  bool first = true;
  std::string key;
  if (m_.fields.empty()) {
    for (const Member& member : event.fields.members()) {
      if (is_mapped_elsewhere(member.key)) continue;
      key.assign(member.key);
      if (Status s = add_fields(member.value, key, measurement, out, first); !s.ok()) return fail(s);
    }
  } else {
    for (std::size_t i = 0; i < m_.fields.size(); ++i) {
      const Value* v = m_.fields[i].find(event.fields);
      if (v == nullptr) continue;
      if (v->is_object()) key.clear();  // its members are named by their own keys
      else key = field_keys_[i];
      if (Status s = add_fields(*v, key, measurement, out, first); !s.ok()) return fail(s);
    }
  }
  if (out.size() == fields_start) return fail(Error("the point has no fields (every field is absent or null)"));

  // Timestamp.
  if (!m_.timestamp_field.empty()) {
    const Value* v = m_.timestamp_field.find(event.fields);
    if (v != nullptr && !v->is_null()) {
      auto time = read_timestamp(*v, m_.number_unit.value_or(m_.precision));
      if (!time.ok()) {
        return fail(Error(fmt::format("timestamp field '{}': {}", m_.timestamp_field.text(), time.error().message())));
      }
      std::int64_t nanos = time.value();
      out.push_back(' ');
      append_number(floor_div(nanos, unit_of(m_.precision).nanos), out);
    }
  }
  out.push_back('\n');
  for (auto& [field, type] : new_types_) remembered_.emplace(std::move(field), type);
  return {};
}

std::string PointEncoder::state() const {
  std::vector<std::pair<std::string_view, FieldType>> types(remembered_.begin(), remembered_.end());
  std::sort(types.begin(), types.end());  // the same types, the same bytes
  ByteBuffer out;
  out.push_back('{');
  for (std::size_t i = 0; i < types.size(); ++i) {
    if (i) out.push_back(',');
    write_json_string(types[i].first, out);
    out.push_back(':');
    write_json_string(field_type_name(types[i].second), out);
  }
  out.push_back('}');
  return std::string(out.view());
}

Status PointEncoder::restore(std::string_view state) {
  Arena arena;
  JsonParser parser;
  auto parsed = parser.parse(state, arena);
  if (!parsed.ok()) return parsed.error();
  if (!parsed.value().is_object()) return Error("not an object of field types");
  TextMap<FieldType> types;
  for (const auto& member : parsed.value().members()) {
    if (!member.value.is_string()) return Error("a field type is not a string");
    auto type = parse_field_type(member.value.as_string());
    if (!type.ok()) return type.error();
    if (types.size() < kMaxRememberedTypes) types.emplace(std::string(member.key), type.value());
  }
  remembered_ = std::move(types);
  return {};
}

}  // namespace weir::plugins::influxdb
