// Loading pipeline files: YAML -> interpolated, schema-checked component configs.
// Internal to the agent; plugins see only their Options.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "weir/component.hpp"
#include "weir/options.hpp"
#include "weir/registry.hpp"
#include "weir/result.hpp"

namespace weir::config {

struct InputRef {
  std::string text;  // "name" or "name.output"
  SourceLocation where;
};

struct ComponentConfig {
  std::string name;
  ComponentKind kind = ComponentKind::Source;
  std::string type;
  SourceLocation where;  // of the component's key
  std::vector<InputRef> inputs;
  const ComponentType* descriptor = nullptr;
  Options options;
};

struct PipelineConfig {
  std::vector<std::string> files;
  std::string data_dir = ".weir";
  std::string dead_letter_path;  // empty: <data_dir>/dead_letter.ndjson
  std::string dead_letter_max_size = "100MiB";  // the default file's cap: past it, rotated to <path>.1
  std::uint64_t dead_letter_max_bytes = 100ull << 20;
  std::string api_address;       // empty: the API is off
  std::chrono::nanoseconds shutdown_timeout = std::chrono::seconds(30);
  std::vector<ComponentConfig> components;
};

struct Diagnostics {
  std::vector<Error> errors;
  std::vector<Error> warnings;
  bool ok() const { return errors.empty(); }
};

using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
EnvLookup process_environment();

// `${VAR}`, `${VAR:-default}` and `$$` (a literal `$`). An unset variable without a
// default is an error, so a missing secret never becomes an empty string silently.
Result<std::string> interpolate(std::string_view text, const EnvLookup& env);

// Loads and validates one or more files or directories (every *.yaml / *.yml in them, in
// name order) into one pipeline. Problems are collected in `diagnostics`, all of them,
// each with its file:line:col.
PipelineConfig load(const std::vector<std::string>& paths, Diagnostics& diagnostics,
                    const EnvLookup& env = process_environment());

// Loads from YAML text (tests, stdin); `name` stands in for the file name in messages.
PipelineConfig load_text(const std::string& text, const std::string& name, Diagnostics& diagnostics,
                         const EnvLookup& env = process_environment());

// The candidate closest to `word` by edit distance, or "" when none is close enough.
std::string nearest(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace weir::config
