// The options schema of a component type: one declaration drives validation, defaults and
// the documentation printed by `weir list` (Fluent Bit's config_map idea).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "weir/arena.hpp"
#include "weir/result.hpp"
#include "weir/value.hpp"

namespace weir {

enum class OptionType {
  String,
  Integer,     // int64
  Float,       // double
  Bool,
  Duration,    // "250ms", "1s", "5m", "1h", or a number of seconds
  Bytes,       // "64KiB", "10MiB", "1GB", or a number of bytes
  Enum,        // one of `choices`
  StringList,  // a YAML sequence of strings (a single string is accepted as a list of one)
  Map,         // free-form mapping, kept as a Value (component validates its insides)
  Any,         // free-form value
};
std::string_view option_type_name(OptionType type);

struct OptionSpec {
  std::string name;  // dotted for nested keys: "decoding.codec"
  OptionType type = OptionType::String;
  std::string default_value;  // written as in YAML; empty means no default
  bool required = false;
  std::vector<std::string> choices;  // for Enum
  std::string doc;
};
using OptionSchema = std::vector<OptionSpec>;

// Validated option values of one component, defaults applied.
class Options {
 public:
  Options() = default;
  Options(Options&&) = default;
  Options& operator=(Options&&) = default;

  const std::string& component_name() const { return component_name_; }
  const SourceLocation& component_location() const { return component_location_; }

  bool has(std::string_view name) const { return find(name) != nullptr; }   // set or defaulted
  bool was_set(std::string_view name) const { return locations_.count(std::string(name)) != 0; }

  std::string_view string(std::string_view name) const;
  std::int64_t integer(std::string_view name) const;
  double number(std::string_view name) const;
  bool boolean(std::string_view name) const;
  std::chrono::nanoseconds duration(std::string_view name) const;
  std::uint64_t bytes(std::string_view name) const;
  std::vector<std::string> strings(std::string_view name) const;
  const Value* find(std::string_view name) const;
  // Every value (set or defaulted) as text, for telling whether a reload changed anything.
  std::string fingerprint() const;

  // Where the option was written (or the component, for defaults): for errors a factory
  // reports about an option's value.
  SourceLocation location(std::string_view name) const;
  Error error_at(std::string_view name, std::string message) const { return Error(std::move(message), location(name)); }

  // Used by the config loader and by tests that build components directly.
  void set_component(std::string name, SourceLocation where) {
    component_name_ = std::move(name);
    component_location_ = std::move(where);
  }
  void put(std::string name, Value value, SourceLocation where);  // value must be in arena()
  void put_default(std::string name, Value value);
  Arena& arena() { return *arena_; }

 private:
  std::string component_name_;
  SourceLocation component_location_;
  std::unique_ptr<Arena> arena_ = std::make_unique<Arena>(1024);
  std::map<std::string, Value, std::less<>> values_;
  std::map<std::string, SourceLocation, std::less<>> locations_;
};

// Parses "1s", "250ms", "1.5m", "2h", "100us", "10ns", or a bare number of seconds.
Result<std::chrono::nanoseconds> parse_duration(std::string_view text);
// Parses "512", "64KiB", "10MiB", "1GiB", "10MB", "1kb".
Result<std::uint64_t> parse_bytes(std::string_view text);

}  // namespace weir
