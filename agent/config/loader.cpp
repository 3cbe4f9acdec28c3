#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>

#include "config/config.hpp"
#include "plugin/loader.hpp"
#include "weir/json.hpp"

namespace weir::config {

EnvLookup process_environment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

Result<std::string> interpolate(std::string_view text, const EnvLookup& env) {
  if (text.find('$') == std::string_view::npos) return std::string(text);
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c != '$' || i + 1 >= text.size()) {
      out.push_back(c);
      continue;
    }
    char next = text[i + 1];
    if (next == '$') {
      out.push_back('$');
      ++i;
      continue;
    }
    if (next != '{') {
      out.push_back(c);
      continue;
    }
    auto close = text.find('}', i + 2);
    if (close == std::string_view::npos) return Error(fmt::format("unterminated '${{' in '{}'", text));
    std::string_view body = text.substr(i + 2, close - i - 2);
    std::string_view name = body;
    std::optional<std::string_view> fallback;
    if (auto sep = body.find(":-"); sep != std::string_view::npos) {
      name = body.substr(0, sep);
      fallback = body.substr(sep + 2);
    }
    bool valid_name = !name.empty() && std::all_of(name.begin(), name.end(), [](char ch) {
      return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_';
    });
    if (!valid_name) return Error(fmt::format("'${{{}}}' is not a valid variable reference", body));
    auto value = env(std::string(name));
    if (value && !(value->empty() && fallback)) {
      out += *value;
    } else if (fallback) {
      out += *fallback;
    } else {
      return Error(fmt::format("environment variable '{}' is not set (write ${{{}:-default}} to give a default)", name, name));
    }
    i = close;
  }
  return out;
}

std::string nearest(std::string_view word, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_distance = SIZE_MAX;
  for (const std::string& candidate : candidates) {
    // Levenshtein distance, one row at a time.
    std::vector<std::size_t> row(candidate.size() + 1);
    for (std::size_t j = 0; j <= candidate.size(); ++j) row[j] = j;
    for (std::size_t i = 1; i <= word.size(); ++i) {
      std::size_t diagonal = row[0];
      row[0] = i;
      for (std::size_t j = 1; j <= candidate.size(); ++j) {
        std::size_t above = row[j];
        std::size_t cost = word[i - 1] == candidate[j - 1] ? 0 : 1;
        row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + cost});
        diagonal = above;
      }
    }
    if (row.back() < best_distance) {
      best_distance = row.back();
      best = candidate;
    }
  }
  std::size_t allowed = std::max<std::size_t>(2, word.size() / 3);
  return best_distance <= allowed ? best : std::string();
}

namespace {

std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates) {
  std::string hint = nearest(word, candidates);
  return hint.empty() ? std::string() : fmt::format(" (did you mean '{}'?)", hint);
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += ", ";
    out += item;
  }
  return out;
}

std::string_view yaml_type_name(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Null: return "nothing";
    default: return "a scalar";
  }
}

bool parse_bool(std::string_view text, bool& out) {
  if (text == "true" || text == "True" || text == "TRUE" || text == "yes" || text == "on") return out = true, true;
  if (text == "false" || text == "False" || text == "FALSE" || text == "no" || text == "off") return out = false, true;
  return false;
}

bool parse_int(std::string_view text, std::int64_t& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

bool parse_float(std::string_view text, double& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size() && std::isfinite(out);
}

const std::vector<std::string> kTopLevelKeys = {"data_dir", "api", "dead_letter", "shutdown_timeout", "plugins",
                                                "plugins_dir", "sources", "transforms", "sinks", "apis", "tests"};

class Loader {
 public:
  Loader(PipelineConfig& out, Diagnostics& diag, const EnvLookup& env) : out_(out), diag_(diag), env_(env) {}

  void load_root(const YAML::Node& root, const std::string& file) {
    file_ = file;
    if (!root || root.IsNull()) {
      warn(fmt::format("{} is empty", file), {file});
      return;
    }
    if (!root.IsMap()) {
      error(fmt::format("a pipeline file must be a mapping of sections ({}), got {}", joined(kTopLevelKeys),
                        yaml_type_name(root)),
            at(root));
      return;
    }
    for (auto entry : root) {
      const std::string key = entry.first.Scalar();
      const YAML::Node& value = entry.second;
      if (key == "sources") load_section(value, ComponentKind::Source, at(entry.first));
      else if (key == "transforms") load_section(value, ComponentKind::Transform, at(entry.first));
      else if (key == "sinks") load_section(value, ComponentKind::Sink, at(entry.first));
      else if (key == "apis") load_section(value, ComponentKind::Api, at(entry.first));
      else if (key == "data_dir") set_global("data_dir", value, out_.data_dir);
      else if (key == "shutdown_timeout") load_shutdown_timeout(value);
      else if (key == "api") load_subsection(value, "api", {{"address", &out_.api_address}});
      else if (key == "tests") load_tests(value);
      else if (key == "plugins" || key == "plugins_dir") continue;  // loaded first, by load_plugins
      else if (key == "dead_letter") load_subsection(value, "dead_letter", {{"path", &out_.dead_letter_path}, {"max_size", &out_.dead_letter_max_size}});
      else error(fmt::format("unknown section '{}'{}", key, did_you_mean(key, kTopLevelKeys)), at(entry.first));
    }
  }

  // `plugins: [path, ...]` and `plugins_dir: DIR` (paths relative to the file): loaded
  // before any file's components are read, so every file may use their types.
  void load_plugins(const YAML::Node& root, const std::string& file) {
    file_ = file;
    if (!root || !root.IsMap()) return;
    std::string base = std::filesystem::path(file).parent_path().string();
    auto resolved = [&](const std::string& p) {
      return p.empty() || p[0] == '/' || base.empty() ? p : (std::filesystem::path(base) / p).string();
    };
    for (auto entry : root) {
      const std::string key = entry.first.Scalar();
      const YAML::Node& value = entry.second;
      if (key == "plugins") {
        if (!value.IsSequence() && !value.IsScalar()) {
          error(fmt::format("'plugins' must be a list of plugin files, got {}", yaml_type_name(value)), at(value));
          continue;
        }
        std::vector<YAML::Node> items;
        if (value.IsScalar()) items.push_back(value);
        for (const auto& item : value) items.push_back(item);
        for (const auto& item : items) {
          auto path = scalar(item, "a plugin file");
          if (!path) continue;
          std::string where = resolved(*path);
          if (Status loaded = plugin::load_file(where); !loaded.ok()) error(loaded.error().message(), at(item));
          else out_.plugins.push_back(std::move(where));
        }
      } else if (key == "plugins_dir") {
        auto dir = scalar(value, "'plugins_dir'");
        if (!dir) continue;
        std::string where = resolved(*dir);
        if (Status loaded = plugin::load_dir(where); !loaded.ok()) error(loaded.error().message(), at(value));
        else out_.plugins.push_back(std::move(where));
      }
    }
  }

 private:
  SourceLocation at(const YAML::Node& node) const {
    YAML::Mark mark = node.Mark();
    if (mark.is_null()) return {file_};
    return {file_, mark.line + 1, mark.column + 1};
  }
  void error(std::string message, SourceLocation where) { diag_.errors.emplace_back(std::move(message), std::move(where)); }
  void warn(std::string message, SourceLocation where) { diag_.warnings.emplace_back(std::move(message), std::move(where)); }

  // `tests:` (read here so their mistakes have a file:line:col; run by `weir test`).
  void load_tests(const YAML::Node& node) {
    if (!node.IsSequence()) return error(fmt::format("'tests' must be a list, got {}", yaml_type_name(node)), at(node));
    std::string base = std::filesystem::path(file_).parent_path().string();
    auto path_of = [&](const std::string& p) {
      return p.empty() || p[0] == '/' || base.empty() ? p : (std::filesystem::path(base) / p).string();
    };
    auto text = [&](const YAML::Node& n, std::string_view what) { return scalar(n, what).value_or(""); };
    auto list = [&](const YAML::Node& n, std::string_view what) {
      std::vector<std::string> out;
      if (n.IsScalar()) {
        out.push_back(text(n, what));
      } else if (n.IsSequence()) {
        for (const auto& item : n) out.push_back(text(item, what));
      } else {
        error(fmt::format("{} must be a list of strings", what), at(n));
      }
      return out;
    };
    auto unknown = [&](const YAML::Node& key, std::string_view in, const std::vector<std::string>& keys) {
      error(fmt::format("unknown key '{}' in {}{}", key.Scalar(), in, did_you_mean(key.Scalar(), keys)), at(key));
    };
    auto whole = [&](const YAML::Node& n, std::string_view what) -> std::optional<std::int64_t> {
      std::int64_t value = 0;
      if (!parse_int(text(n, what), value) || value < 0) {
        error(fmt::format("{} must be a whole number", what), at(n));
        return std::nullopt;
      }
      return value;
    };
    for (const auto& item : node) {
      if (!item.IsMap()) {
        error("a test must be a mapping (name, inputs, outputs, ...)", at(item));
        continue;
      }
      TestSpec test;
      test.where = at(item);
      for (auto entry : item) {
        const std::string key = entry.first.Scalar();
        const YAML::Node& v = entry.second;
        if (key == "name") {
          test.name = text(v, "a test's name");
        } else if (key == "now") {
          test.now = text(v, "now");
        } else if (key == "seed") {
          if (auto seed = whole(v, "seed")) test.seed = static_cast<std::uint64_t>(*seed);
        } else if (key == "inputs" && v.IsSequence()) {
          for (const auto& in : v) test.inputs.push_back(load_test_input(in, path_of, text, unknown));
        } else if (key == "outputs" && v.IsSequence()) {
          for (const auto& out : v) test.outputs.push_back(load_test_output(out, path_of, text, list, whole, unknown));
        } else if (key == "no_outputs_from") {
          test.no_outputs_from = list(v, "no_outputs_from");
        } else if (key == "inputs" || key == "outputs") {
          error(fmt::format("'{}' must be a list", key), at(v));
        } else {
          unknown(entry.first, "a test", {"name", "now", "seed", "inputs", "outputs", "no_outputs_from"});
        }
      }
      if (test.name.empty()) error("a test needs a name", test.where);
      if (test.inputs.empty()) error(fmt::format("test '{}' has no inputs", test.name), test.where);
      if (test.outputs.empty() && test.no_outputs_from.empty()) {
        error(fmt::format("test '{}' asserts nothing: give outputs or no_outputs_from", test.name), test.where);
      }
      out_.tests.push_back(std::move(test));
    }
  }

  TestInput load_test_input(const YAML::Node& in, auto& path_of, auto& text, auto& unknown) {
    TestInput input;
    input.where = at(in);
    if (!in.IsMap()) {
      error("an input must be a mapping (insert_at, events | file | raw)", at(in));
      return input;
    }
    for (auto field : in) {
      const std::string k = field.first.Scalar();
      if (k == "insert_at") {
        input.insert_at = text(field.second, "insert_at");
      } else if (k == "file") {
        input.file = path_of(text(field.second, "file"));
      } else if (k == "raw") {
        input.raw = text(field.second, "raw");
      } else if (k == "events" && !field.second.IsSequence()) {
        error("events must be a list of events", at(field.second));
      } else if (k == "events") {
        Arena arena;
        for (const auto& e : field.second) {
          if (auto value = to_value(e, arena)) input.events.push_back(to_json(*value));
        }
      } else {
        unknown(field.first, "a test input", {"insert_at", "events", "file", "raw"});
      }
    }
    if (input.insert_at.empty()) error("an input needs insert_at: the component the events go into", input.where);
    if (input.events.empty() && input.file.empty() && input.raw.empty()) error("an input needs events, file or raw", input.where);
    return input;
  }

  TestOutput load_test_output(const YAML::Node& out, auto& path_of, auto& text, auto& list, auto& whole, auto& unknown) {
    TestOutput output;
    output.where = at(out);
    if (!out.IsMap()) {
      error("an output must be a mapping (extract_from, conditions, count, match, equals_file)", at(out));
      return output;
    }
    for (auto field : out) {
      const std::string k = field.first.Scalar();
      if (k == "extract_from") {
        output.extract_from = text(field.second, "extract_from");
      } else if (k == "conditions") {
        output.conditions = list(field.second, "conditions");
      } else if (k == "equals_file") {
        output.equals_file = path_of(text(field.second, "equals_file"));
      } else if (k == "count") {
        output.count = whole(field.second, "count");
      } else if (k == "match") {
        std::string m = text(field.second, "match");
        if (m != "all" && m != "any") error("match must be 'all' or 'any'", at(field.second));
        output.match_all = m == "all";
      } else {
        unknown(field.first, "a test output", {"extract_from", "conditions", "count", "match", "equals_file"});
      }
    }
    if (output.extract_from.empty()) error("an output needs extract_from: a component or NAME.output", output.where);
    if (output.conditions.empty() && output.equals_file.empty() && !output.count) {
      error("an output asserts nothing: give conditions, count or equals_file", output.where);
    }
    return output;
  }

  std::optional<std::string> scalar(const YAML::Node& node, std::string_view what) {
    if (node.IsNull()) {  // `null`, `~`, `Null` or nothing: YAML's null, not the text
      error(fmt::format("{} is YAML's null (null, ~ or nothing): quote it (\"null\") if you mean the text", what), at(node));
      return std::nullopt;
    }
    if (!node.IsScalar()) {
      error(fmt::format("{} must be a scalar, got {}", what, yaml_type_name(node)), at(node));
      return std::nullopt;
    }
    auto text = interpolate(node.Scalar(), env_);
    if (!text.ok()) {
      error(text.error().message(), at(node));
      return std::nullopt;
    }
    return std::move(text.value());
  }

  void set_global(const std::string& key, const YAML::Node& value, std::string& target) {
    auto text = scalar(value, fmt::format("'{}'", key));
    if (!text) return;
    auto [it, inserted] = globals_.emplace(key, std::make_pair(*text, at(value)));
    if (!inserted && it->second.first != *text) {
      error(fmt::format("'{}' is set to '{}' here and to '{}' at {}", key, *text, it->second.first,
                        it->second.second.to_string()),
            at(value));
      return;
    }
    target = *text;
  }

  void load_shutdown_timeout(const YAML::Node& value) {
    std::string text;
    set_global("shutdown_timeout", value, text);
    if (text.empty()) return;
    auto parsed = parse_duration(text);
    if (!parsed.ok()) return error(parsed.error().message(), at(value));
    out_.shutdown_timeout = parsed.value();
  }

  void load_subsection(const YAML::Node& node, const std::string& section,
                       const std::vector<std::pair<std::string, std::string*>>& keys) {
    if (!node.IsMap()) return error(fmt::format("'{}' must be a mapping, got {}", section, yaml_type_name(node)), at(node));
    std::vector<std::string> names;
    for (const auto& [name, target] : keys) names.push_back(name);
    for (auto entry : node) {
      std::string key = entry.first.Scalar();
      auto it = std::find_if(keys.begin(), keys.end(), [&](const auto& k) { return k.first == key; });
      if (it == keys.end()) {
        error(fmt::format("unknown key '{}' in '{}'{}", key, section, did_you_mean(key, names)), at(entry.first));
        continue;
      }
      set_global(section + "." + key, entry.second, *it->second);
    }
  }

  void load_section(const YAML::Node& section, ComponentKind kind, SourceLocation section_where) {
    std::string_view kind_name = component_kind_name(kind);
    if (section.IsNull()) return;
    if (!section.IsMap()) {
      return error(fmt::format("'{}s' must be a mapping of {} names to their settings, got {}", kind_name, kind_name,
                               yaml_type_name(section)),
                   section_where);
    }
    for (auto entry : section) {
      std::string name = entry.first.Scalar();
      SourceLocation where = at(entry.first);
      if (entry.first.IsNull()) {
        error(fmt::format("a {} is named with YAML's null (null, ~ or nothing), which YAML reads as no name: quote it "
                          "(\"null\") to use it as a name",
                          kind_name),
              where);
        continue;
      }
      bool valid = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
      });
      if (!valid) {
        error(fmt::format("{} name '{}' may hold only letters, digits, '_' and '-'", kind_name, name), where);
        continue;
      }
      auto [seen, inserted] = names_.emplace(name, where);
      if (!inserted) {
        error(fmt::format("duplicate component name '{}' (first defined at {})", name, seen->second.to_string()), where);
        continue;
      }
      load_component(name, kind, where, entry.second);
    }
  }

  void load_component(const std::string& name, ComponentKind kind, const SourceLocation& where, const YAML::Node& node) {
    std::string_view kind_name = component_kind_name(kind);
    if (!node.IsMap()) {
      return error(fmt::format("{} '{}' must be a mapping of settings, got {}", kind_name, name, yaml_type_name(node)),
                   where);
    }
    ComponentConfig component;
    component.name = name;
    component.kind = kind;
    component.where = where;
    component.options.set_component(name, where);

    YAML::Node type_node = node["type"];
    if (!type_node) return error(fmt::format("{} '{}' has no 'type'", kind_name, name), where);
    auto type_text = scalar(type_node, "'type'");
    if (!type_text) return;
    component.type = *type_text;
    component.descriptor = Registry::global().find(kind, component.type);
    if (component.descriptor == nullptr) {
      return error(fmt::format("unknown {} type '{}' for '{}'{}", kind_name, component.type, name,
                               did_you_mean(component.type, Registry::global().type_names(kind))),
                   at(type_node));
    }
    std::string what = fmt::format("{} '{}' (type {})", kind_name, name, component.type);

    schema_ = common_options(kind);
    schema_.insert(schema_.end(), component.descriptor->options.begin(), component.descriptor->options.end());

    std::size_t errors_before = diag_.errors.size();
    walk(node, "", component, what);

    if (kind == ComponentKind::Transform || kind == ComponentKind::Sink) {
      if (!node["inputs"]) {
        error(fmt::format("{} is missing required key 'inputs'", what), where);
      } else if (component.inputs.empty() && diag_.errors.size() == errors_before) {
        error(fmt::format("'inputs' of {} is empty: list at least one source or transform", what), at(node["inputs"]));
      }
    }
    for (const OptionSpec& spec : schema_) {
      if (spec.name == "type" || spec.name == "inputs") continue;
      if (spec.required && !component.options.was_set(spec.name)) {
        error(fmt::format("{} is missing required key '{}'", what, spec.name), where);
      } else if (!spec.default_value.empty() && !component.options.has(spec.name)) {
        YAML::Node default_node = YAML::Load(spec.default_value);
        auto value = convert(spec, default_node, component.options.arena(), what);
        if (value) component.options.put_default(spec.name, *value);
      }
    }
    (kind == ComponentKind::Api ? out_.apis : out_.components).push_back(std::move(component));
  }

  // Candidates for a key under `prefix`: the next segment of every schema name below it.
  std::vector<std::string> keys_under(const std::string& prefix) const {
    std::vector<std::string> keys;
    for (const OptionSpec& spec : schema_) {
      if (spec.name.compare(0, prefix.size(), prefix) != 0) continue;
      std::string rest = spec.name.substr(prefix.size());
      rest = rest.substr(0, rest.find('.'));
      if (std::find(keys.begin(), keys.end(), rest) == keys.end()) keys.push_back(rest);
    }
    return keys;
  }

  void walk(const YAML::Node& map, const std::string& prefix, ComponentConfig& component, const std::string& what) {
    for (auto entry : map) {
      std::string key = entry.first.Scalar();
      std::string full = prefix + key;
      const YAML::Node& value = entry.second;
      if (full == "type") continue;
      if (full == "inputs" && (component.kind == ComponentKind::Transform || component.kind == ComponentKind::Sink)) {
        load_inputs(value, component, what);
        continue;
      }
      auto spec = std::find_if(schema_.begin(), schema_.end(), [&](const OptionSpec& s) { return s.name == full; });
      if (spec != schema_.end()) {
        auto converted = convert(*spec, value, component.options.arena(), what);
        if (converted) component.options.put(full, *converted, at(entry.first));
        continue;
      }
      std::string nested = full + ".";
      bool is_parent = std::any_of(schema_.begin(), schema_.end(),
                                   [&](const OptionSpec& s) { return s.name.compare(0, nested.size(), nested) == 0; });
      if (is_parent) {
        if (!value.IsMap()) {
          error(fmt::format("'{}' of {} must be a mapping (keys: {}), got {}", full, what, joined(keys_under(nested)),
                            yaml_type_name(value)),
                at(value));
        } else {
          walk(value, nested, component, what);
        }
        continue;
      }
      error(fmt::format("unknown key '{}' in {}{}", full, what, did_you_mean(key, keys_under(prefix))), at(entry.first));
    }
  }

  void load_inputs(const YAML::Node& node, ComponentConfig& component, const std::string& what) {
    auto add = [&](const YAML::Node& item) {
      auto text = scalar(item, fmt::format("an input of {}", what));
      if (!text) return;
      for (const InputRef& existing : component.inputs) {
        if (existing.text == *text) return error(fmt::format("input '{}' is listed twice in {}", *text, what), at(item));
      }
      component.inputs.push_back({*text, at(item)});
    };
    if (node.IsScalar()) return add(node);
    if (!node.IsSequence()) {
      return error(fmt::format("'inputs' of {} must be a list of component names, got {}", what, yaml_type_name(node)),
                   at(node));
    }
    for (const auto& item : node) add(item);
  }

  // YAML scalar resolution for free-form values: quoted scalars stay strings.
  std::optional<Value> to_value(const YAML::Node& node, Arena& arena) {
    switch (node.Type()) {
      case YAML::NodeType::Null:
      case YAML::NodeType::Undefined: return Value::null();
      case YAML::NodeType::Sequence: {
        Value out = Value::array(arena, static_cast<std::uint32_t>(node.size()));
        for (const auto& item : node) {
          auto v = to_value(item, arena);
          if (!v) return std::nullopt;
          out.push_back(arena, *v);
        }
        return out;
      }
      case YAML::NodeType::Map: {
        Value out = Value::object(arena, static_cast<std::uint32_t>(node.size()));
        for (auto entry : node) {
          auto v = to_value(entry.second, arena);
          if (!v) return std::nullopt;
          out.set(arena, arena.copy(entry.first.Scalar()), *v);
        }
        return out;
      }
      case YAML::NodeType::Scalar: {
        auto text = scalar(node, "a value");
        if (!text) return std::nullopt;
        if (node.Tag() == "!") return Value::string(arena, *text);
        bool b;
        std::int64_t i;
        double d;
        if (*text == "null" || *text == "~") return Value::null();
        if (parse_bool(*text, b)) return Value::boolean(b);
        if (parse_int(*text, i)) return Value::integer(i);
        if (parse_float(*text, d)) return Value::floating(d);
        return Value::string(arena, *text);
      }
    }
    return std::nullopt;
  }

  std::optional<Value> convert(const OptionSpec& spec, const YAML::Node& node, Arena& arena, const std::string& what) {
    auto wrong_at = [&](const YAML::Node& where, std::string_view expected, std::string_view got) -> std::optional<Value> {
      error(fmt::format("'{}' of {} must be {}, got {}", spec.name, what, expected, got), at(where));
      return std::nullopt;
    };
    auto wrong = [&](std::string_view expected, std::string_view got) { return wrong_at(node, expected, got); };
    switch (spec.type) {
      case OptionType::Map:
        if (!node.IsMap()) return wrong("a mapping", yaml_type_name(node));
        return to_value(node, arena);
      case OptionType::Any: return to_value(node, arena);
      case OptionType::StringList: {
        if (node.IsScalar()) {
          auto text = scalar(node, "a value");
          if (!text) return std::nullopt;
          Value list = Value::array(arena, 1);
          list.push_back(arena, Value::string(arena, *text));
          return list;
        }
        if (!node.IsSequence()) return wrong("a list of strings", yaml_type_name(node));
        Value list = Value::array(arena, static_cast<std::uint32_t>(node.size()));
        for (const auto& item : node) {
          if (!item.IsScalar()) {
            return wrong_at(item, "a list of strings", fmt::format("an item that is {}", yaml_type_name(item)));
          }
          auto text = scalar(item, "a value");
          if (!text) return std::nullopt;
          list.push_back(arena, Value::string(arena, *text));
        }
        return list;
      }
      default: break;
    }
    if (!node.IsScalar()) return wrong(fmt::format("a {}", option_type_name(spec.type)), yaml_type_name(node));
    auto text = scalar(node, fmt::format("'{}'", spec.name));
    if (!text) return std::nullopt;
    std::string quoted = fmt::format("'{}'", *text);
    switch (spec.type) {
      case OptionType::String: return Value::string(arena, *text);
      case OptionType::Integer: {
        std::int64_t i;
        if (!parse_int(*text, i)) return wrong("an integer", quoted);
        return Value::integer(i);
      }
      case OptionType::Float: {
        double d;
        if (!parse_float(*text, d)) return wrong("a number", quoted);
        return Value::floating(d);
      }
      case OptionType::Bool: {
        bool b;
        if (!parse_bool(*text, b)) return wrong("true or false", quoted);
        return Value::boolean(b);
      }
      case OptionType::Duration: {
        auto d = parse_duration(*text);
        if (!d.ok()) return wrong("a duration", d.error().message());
        return Value::integer(d.value().count());
      }
      case OptionType::Bytes: {
        auto b = parse_bytes(*text);
        if (!b.ok()) return wrong("a size", b.error().message());
        return Value::uinteger(b.value());
      }
      case OptionType::Enum: {
        if (std::find(spec.choices.begin(), spec.choices.end(), *text) == spec.choices.end()) {
          error(fmt::format("invalid value '{}' for '{}' of {}: expected one of {}{}", *text, spec.name, what,
                            joined(spec.choices), did_you_mean(*text, spec.choices)),
                at(node));
          return std::nullopt;
        }
        return Value::string(arena, *text);
      }
      default: return std::nullopt;
    }
  }

  PipelineConfig& out_;
  Diagnostics& diag_;
  const EnvLookup& env_;
  std::string file_;
  OptionSchema schema_;
  std::map<std::string, SourceLocation> names_;
  std::map<std::string, std::pair<std::string, SourceLocation>> globals_;
};

std::optional<YAML::Node> parse_yaml(const std::string& text, const std::string& name, Diagnostics& diagnostics) {
  try {
    return YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    diagnostics.errors.emplace_back(fmt::format("invalid YAML: {}", e.msg),
                                    SourceLocation{name, e.mark.line + 1, e.mark.column + 1});
  } catch (const YAML::Exception& e) {
    diagnostics.errors.emplace_back(fmt::format("invalid YAML: {}", e.what()), SourceLocation{name});
  }
  return std::nullopt;
}

void finish(PipelineConfig& config, Diagnostics& diagnostics) {
  if (config.dead_letter_path.empty()) config.dead_letter_path = config.data_dir + "/dead_letter.ndjson";
  if (auto bytes = parse_bytes(config.dead_letter_max_size); bytes.ok() && bytes.value() > 0) {
    config.dead_letter_max_bytes = bytes.value();
  } else {
    diagnostics.errors.emplace_back(fmt::format("dead_letter.max_size: '{}' is not a size above 0 (e.g. 100MiB)",
                                                config.dead_letter_max_size),
                                    SourceLocation{config.files.empty() ? std::string() : config.files.front()});
  }
  if (!diagnostics.ok()) return;
  auto count = [&](ComponentKind kind) {
    return std::count_if(config.components.begin(), config.components.end(),
                         [&](const ComponentConfig& c) { return c.kind == kind; });
  };
  std::string where = config.files.empty() ? std::string() : config.files.front();
  for (const ComponentConfig& api : config.apis) {
    if (config.api_address.empty() && !api.options.has("address")) {
      diagnostics.errors.emplace_back(
          fmt::format("api '{}' has no 'address' and weir's API server is off: set api.address, or its own address",
                      api.name),
          api.where);
    }
  }
  // A weir that only serves APIs (reading what other weirs wrote) needs no pipeline.
  if (!config.apis.empty() && config.components.empty()) return;
  if (count(ComponentKind::Source) == 0) diagnostics.errors.emplace_back("no sources defined", SourceLocation{where});
  if (count(ComponentKind::Sink) == 0) diagnostics.errors.emplace_back("no sinks defined", SourceLocation{where});
}

}  // namespace

PipelineConfig load_text(const std::string& text, const std::string& name, Diagnostics& diagnostics,
                         const EnvLookup& env) {
  PipelineConfig config;
  config.files.push_back(name);
  Loader loader(config, diagnostics, env);
  if (auto root = parse_yaml(text, name, diagnostics)) {
    loader.load_plugins(*root, name);
    loader.load_root(*root, name);
  }
  finish(config, diagnostics);
  return config;
}

PipelineConfig load(const std::vector<std::string>& paths, Diagnostics& diagnostics, const EnvLookup& env) {
  namespace fs = std::filesystem;
  PipelineConfig config;
  for (const std::string& path : paths) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      std::vector<std::string> found;
      for (const auto& entry : fs::directory_iterator(path, ec)) {
        auto ext = entry.path().extension();
        if (entry.is_regular_file() && (ext == ".yaml" || ext == ".yml")) found.push_back(entry.path().string());
      }
      std::sort(found.begin(), found.end());
      if (found.empty()) diagnostics.errors.emplace_back("directory holds no *.yaml or *.yml files", SourceLocation{path});
      config.files.insert(config.files.end(), found.begin(), found.end());
    } else {
      config.files.push_back(path);
    }
  }
  Loader loader(config, diagnostics, env);
  std::vector<std::pair<std::string, YAML::Node>> roots;
  for (const std::string& file : config.files) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      diagnostics.errors.emplace_back(fmt::format("cannot read config file: {}", std::strerror(errno)), SourceLocation{file});
      continue;
    }
    std::stringstream text;
    text << in.rdbuf();
    if (auto root = parse_yaml(text.str(), file, diagnostics)) roots.emplace_back(file, std::move(*root));
  }
  for (const auto& [file, root] : roots) loader.load_plugins(root, file);
  for (const auto& [file, root] : roots) loader.load_root(root, file);
  finish(config, diagnostics);
  return config;
}

}  // namespace weir::config
