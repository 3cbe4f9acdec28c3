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

// `tests:` in a pipeline file, run by `weir test` (agent/replay/pipeline_test.hpp). Paths
// are resolved against the directory of the file that names them.
struct TestInput {
  std::string insert_at;            // a component
  SourceLocation where;
  std::vector<std::string> events;  // JSON, one per event
  std::string file;                 // NDJSON (a recorded log)
  std::string raw;                  // bytes in a source's own format (Source::decode_raw); else NDJSON
};
struct TestOutput {
  std::string extract_from;         // a component or NAME.output
  SourceLocation where;
  std::vector<std::string> conditions;
  std::optional<std::int64_t> count;  // exactly this many match (default: at least one)
  bool match_all = false;             // every event extracted matches
  std::string equals_file;            // exact, ordered comparison with a golden file
};
struct TestSpec {
  std::string name;
  SourceLocation where;
  std::string now;                  // ISO-8601; empty: the clock follows event time
  std::optional<std::uint64_t> seed;
  std::vector<TestInput> inputs;
  std::vector<TestOutput> outputs;
  std::vector<std::string> no_outputs_from;
};

struct PipelineConfig {
  std::vector<std::string> files;
  std::string data_dir = ".weir";
  std::string dead_letter_path;  // empty: <data_dir>/dead_letter.ndjson
  std::string dead_letter_max_size = "100MiB";  // the default file's cap: past it, rotated to <path>.1
  std::uint64_t dead_letter_max_bytes = 100ull << 20;
  std::string api_address;       // empty: the API is off
  std::chrono::nanoseconds shutdown_timeout = std::chrono::seconds(30);
  std::vector<ComponentConfig> components;  // the graph: sources, transforms, sinks
  std::vector<ComponentConfig> apis;        // beside it (`apis:`)
  std::vector<TestSpec> tests;
  std::vector<std::string> plugins;  // plugin files and plugins_dir directories loaded for it
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
