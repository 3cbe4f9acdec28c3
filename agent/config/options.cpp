#include "weir/options.hpp"

#include "weir/json.hpp"

#include <charconv>
#include <cmath>

#include <fmt/format.h>

namespace weir {

std::string_view option_type_name(OptionType type) {
  switch (type) {
    case OptionType::String: return "string";
    case OptionType::Integer: return "integer";
    case OptionType::Float: return "float";
    case OptionType::Bool: return "bool";
    case OptionType::Duration: return "duration";
    case OptionType::Bytes: return "bytes";
    case OptionType::Enum: return "enum";
    case OptionType::StringList: return "list of strings";
    case OptionType::Map: return "map";
    case OptionType::Any: return "any";
  }
  return "unknown";
}

const Value* Options::find(std::string_view name) const {
  auto it = values_.find(name);
  return it == values_.end() ? nullptr : &it->second;
}

std::string_view Options::string(std::string_view name) const {
  const Value* v = find(name);
  return v && v->is_string() ? v->as_string() : std::string_view{};
}

std::int64_t Options::integer(std::string_view name) const {
  const Value* v = find(name);
  return v && v->is_int() ? v->as_int() : 0;
}

double Options::number(std::string_view name) const {
  const Value* v = find(name);
  return v ? v->to_double() : 0.0;
}

bool Options::boolean(std::string_view name) const {
  const Value* v = find(name);
  return v && v->is_bool() && v->as_bool();
}

std::chrono::nanoseconds Options::duration(std::string_view name) const {
  return std::chrono::nanoseconds(integer(name));
}

std::uint64_t Options::bytes(std::string_view name) const {
  const Value* v = find(name);
  if (v == nullptr) return 0;
  return v->is_uint() ? v->as_uint() : static_cast<std::uint64_t>(v->as_int());
}

std::vector<std::string> Options::strings(std::string_view name) const {
  std::vector<std::string> out;
  if (const Value* v = find(name)) {
    for (const Value& item : v->elements()) out.emplace_back(item.as_string());
  }
  return out;
}

SourceLocation Options::location(std::string_view name) const {
  auto it = locations_.find(name);
  return it == locations_.end() ? component_location_ : it->second;
}

void Options::put(std::string name, Value value, SourceLocation where) {
  locations_[name] = std::move(where);
  values_[std::move(name)] = value;
}

void Options::put_default(std::string name, Value value) { values_.emplace(std::move(name), value); }

std::string Options::fingerprint() const {
  std::string out;
  for (const auto& [name, value] : values_) out += name + "=" + to_json(value) + "\n";
  return out;
}

namespace {

bool parse_number_prefix(std::string_view text, double& number, std::string_view& unit) {
  std::size_t i = 0;
  while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || text[i] == '.')) ++i;
  if (i == 0) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + i, number);
  if (ec != std::errc() || end != text.data() + i) return false;
  unit = text.substr(i);
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  return true;
}

}  // namespace

Result<std::chrono::nanoseconds> parse_duration(std::string_view text) {
  double number;
  std::string_view unit;
  if (!parse_number_prefix(text, number, unit)) {
    return Error(fmt::format("'{}' is not a duration (write e.g. 500ms, 1s, 5m, 1h)", text));
  }
  double scale;
  if (unit.empty() || unit == "s" || unit == "sec" || unit == "secs") scale = 1e9;
  else if (unit == "ms") scale = 1e6;
  else if (unit == "us") scale = 1e3;
  else if (unit == "ns") scale = 1;
  else if (unit == "m" || unit == "min") scale = 60e9;
  else if (unit == "h") scale = 3600e9;
  else if (unit == "d") scale = 86400e9;
  else return Error(fmt::format("'{}' has an unknown duration unit '{}' (use ns, us, ms, s, m, h, d)", text, unit));
  double nanos = number * scale;
  if (nanos > 9.2e18) return Error(fmt::format("'{}' is too long a duration", text));
  return std::chrono::nanoseconds(static_cast<std::int64_t>(std::llround(nanos)));
}

Result<std::uint64_t> parse_bytes(std::string_view text) {
  double number;
  std::string_view unit;
  if (!parse_number_prefix(text, number, unit)) {
    return Error(fmt::format("'{}' is not a size (write e.g. 512, 64KiB, 10MiB)", text));
  }
  std::string lower;
  for (char c : unit) lower.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c));
  double scale;
  if (lower.empty() || lower == "b") scale = 1;
  else if (lower == "kib" || lower == "k") scale = 1024.0;
  else if (lower == "mib" || lower == "m") scale = 1024.0 * 1024;
  else if (lower == "gib" || lower == "g") scale = 1024.0 * 1024 * 1024;
  else if (lower == "kb") scale = 1e3;
  else if (lower == "mb") scale = 1e6;
  else if (lower == "gb") scale = 1e9;
  else return Error(fmt::format("'{}' has an unknown size unit '{}' (use B, KiB, MiB, GiB, KB, MB, GB)", text, unit));
  return static_cast<std::uint64_t>(std::llround(number * scale));
}

}  // namespace weir
