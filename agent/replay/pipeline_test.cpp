#include "replay/pipeline_test.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>

#include "config/config.hpp"
#include "replay/recorded_log.hpp"
#include "replay/replay.hpp"
#include "replay/replay_source.hpp"
#include "runtime/runtime.hpp"
#include "weir/condition.hpp"
#include "weir/json.hpp"
#include "weir/log.hpp"
#include "weir/time.hpp"

namespace weir::replay {

namespace {

struct Outcome {
  std::string name;
  std::string where;
  std::vector<std::string> failures;
  std::vector<std::string> notes;  // golden files written
  double ms = 0;
};

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(fmt::format("cannot read {}", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string input_text(const config::TestInput& input) {
  std::string text;
  for (const std::string& e : input.events) text += e + "\n";
  if (!input.raw.empty()) text += input.raw + (input.raw.back() == '\n' ? "" : "\n");
  if (!input.file.empty()) {  // a recorded log: plain, gzip or zstd
    auto log = RecordedLog::open(input.file);
    if (log.ok()) {
      while (true) {
        auto read = log.value()->read_lines(100000, text);
        if (!read.ok() || read.value() == 0) break;
      }
    }
  }
  return text;
}

// One synthetic component, with every option at its default, from a YAML snippet (a source
// and a sink, so the snippet is a valid pipeline of its own).
config::ComponentConfig synthetic(const std::string& yaml, ComponentKind kind) {
  config::Diagnostics d;
  config::PipelineConfig made = config::load_text(yaml, "<weir test>", d);
  for (auto& c : made.components) {
    if (c.kind == kind) return std::move(c);
  }
  return {};
}

std::string shorten(const std::string& text, std::size_t at_most = 300) {
  return text.size() <= at_most ? text : text.substr(0, at_most) + "...";
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t nl = text.find('\n', at);
    if (nl == std::string::npos) nl = text.size();
    lines.push_back(text.substr(at, nl - at));
    at = nl + 1;
  }
  return lines;
}

// Where two texts first differ, as a few lines of each.
std::string first_difference(const std::string& expected, const std::string& got) {
  auto want = lines_of(expected), have = lines_of(got);
  std::size_t i = 0;
  while (i < want.size() && i < have.size() && want[i] == have[i]) ++i;
  std::string out = fmt::format("first difference at line {} (expected {} lines, got {}):", i + 1, want.size(), have.size());
  for (std::size_t k = i; k < std::min(want.size(), i + 3); ++k) out += "\n      - " + shorten(want[k]);
  for (std::size_t k = i; k < std::min(have.size(), i + 3); ++k) out += "\n      + " + shorten(have[k]);
  return out;
}

std::string seen_events(const std::vector<std::string>& events) {
  std::string out;
  for (std::size_t i = 0; i < events.size() && i < 10; ++i) out += "\n      " + shorten(events[i]);
  if (events.size() > 10) out += fmt::format("\n      ... and {} more", events.size() - 10);
  return out;
}

struct Extracted {
  std::vector<std::string> events;
  std::string encoded;  // a sink's own encoding ("" when it has none)
  bool has_encoding = false;
};

void check_output(const config::TestOutput& output, const Extracted& got, bool update_golden, Outcome& outcome) {
  std::string what = "extract_from " + output.extract_from;
  if (!output.conditions.empty() || output.count) {
    std::vector<Condition> conditions;
    for (const std::string& text : output.conditions) {
      auto compiled = Condition::compile(text);
      if (!compiled.ok()) {
        outcome.failures.push_back(fmt::format("{}: condition '{}': {}", what, text, compiled.error().message()));
        return;
      }
      conditions.push_back(std::move(compiled.value()));
    }
    std::size_t matched = 0;
    JsonParser parser;
    for (const std::string& text : got.events) {
      Arena arena;
      auto parsed = parser.parse(text, arena);
      if (!parsed.ok()) continue;
      Event event{parsed.value(), Value::null()};
      bool all = true;
      for (const Condition& c : conditions) all = all && c.matches(event);
      matched += all;
    }
    std::string conds;
    for (const std::string& c : output.conditions) conds += (conds.empty() ? "" : " and ") + ("(" + c + ")");
    if (conds.empty()) conds = "(any event)";
    bool ok = true;
    std::string expectation;
    if (output.count) {
      ok = matched == static_cast<std::size_t>(*output.count);
      expectation = fmt::format("exactly {} event(s) matching {}", *output.count, conds);
    }
    if (output.match_all) {
      ok = ok && !got.events.empty() && matched == got.events.size();
      expectation += (expectation.empty() ? "" : ", and ") + fmt::format("every event matching {}", conds);
    }
    if (!output.count && !output.match_all) {
      ok = matched >= 1;
      expectation = fmt::format("at least one event matching {}", conds);
    }
    if (!ok) {
      outcome.failures.push_back(fmt::format("{}: expected {}; {} of {} event(s) matched. Seen:{}", what, expectation,
                                             matched, got.events.size(),
                                             got.events.empty() ? std::string(" none") : seen_events(got.events)));
    }
  }
  if (!output.equals_file.empty()) {
    std::string text = got.encoded;
    if (!got.has_encoding) {
      text.clear();
      for (const std::string& e : got.events) text += e + "\n";
    }
    if (update_golden) {
      std::error_code ec;
      auto parent = std::filesystem::path(output.equals_file).parent_path();
      if (!parent.empty()) std::filesystem::create_directories(parent, ec);
      std::ofstream(output.equals_file, std::ios::binary) << text;
      outcome.notes.push_back(fmt::format("wrote {} ({} bytes)", output.equals_file, text.size()));
      return;
    }
    auto expected = read_file(output.equals_file);
    if (!expected.ok()) {
      outcome.failures.push_back(fmt::format("{}: golden file {} missing (run with --update-golden to write it)", what,
                                             output.equals_file));
    } else if (expected.value() != text) {
      outcome.failures.push_back(fmt::format("{}: differs from {}: {}", what, output.equals_file,
                                             first_difference(expected.value(), text)));
    }
  }
}

Outcome run_one(const std::vector<std::string>& configs, const config::TestSpec& test, bool update_golden) {
  Outcome outcome;
  outcome.name = test.name;
  outcome.where = test.where.to_string();
  auto began = std::chrono::steady_clock::now();
  auto fail = [&](std::string why) {
    outcome.failures.push_back(std::move(why));
    outcome.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - began).count();
    return outcome;
  };
  config::Diagnostics diagnostics;
  config::PipelineConfig pipeline = config::load(configs, diagnostics);
  if (!diagnostics.ok()) return fail("the pipeline is invalid: " + diagnostics.errors.front().to_string());
  pipeline.tests.clear();
  auto find = [&](const std::string& name) -> config::ComponentConfig* {
    for (auto& c : pipeline.components) {
      if (c.name == name) return &c;
    }
    return nullptr;
  };
  std::vector<std::string> names;
  for (const auto& c : pipeline.components) names.push_back(c.name);

  // Inputs: into a source's place, or through a synthetic source into a transform or sink.
  std::map<std::string, std::string> source_text;  // by source name
  std::map<std::string, std::vector<std::string>> raw_at_source;
  for (std::size_t i = 0; i < test.inputs.size(); ++i) {
    const config::TestInput& input = test.inputs[i];
    if (!input.file.empty()) {
      if (auto log = RecordedLog::open(input.file); !log.ok()) return fail("input file: " + log.error().message());
    }
    config::ComponentConfig* target = find(input.insert_at);
    if (target == nullptr) {
      std::string hint = config::nearest(input.insert_at, names);
      return fail(fmt::format("insert_at '{}' names no component{}", input.insert_at,
                              hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint)));
    }
    if (target->kind == ComponentKind::Source) {
      config::TestInput rest = input;
      if (!input.raw.empty()) raw_at_source[target->name].push_back(input.raw);  // its own format
      rest.raw.clear();
      source_text[target->name] += input_text(rest);
      continue;
    }
    std::string name = fmt::format("_test_input_{}", i);
    config::ComponentConfig source = synthetic(
        fmt::format("sources:\n  {0}: {{ type: stdin }}\nsinks:\n  _unused: {{ type: blackhole, inputs: [{0}] }}\n", name),
        ComponentKind::Source);
    target->inputs.push_back(config::InputRef{name, input.where});
    source_text[name] = input_text(input);
    pipeline.components.push_back(std::move(source));
  }
  // Outputs: a sink's own capture, or a synthetic sink reading the component (or output).
  std::vector<std::string> extract_from;  // by output: the sink whose capture holds it
  auto extractor = [&](const std::string& from, std::size_t n) -> Result<std::string> {
    std::string base = from.substr(0, from.find('.'));
    config::ComponentConfig* target = find(from);
    if (target == nullptr) target = find(base);
    if (target == nullptr) {
      std::string hint = config::nearest(base, names);
      return Error(fmt::format("'{}' names no component{}", from, hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint)));
    }
    if (target->kind == ComponentKind::Sink && target->name == from) return from;
    std::string name = fmt::format("_test_output_{}", n);
    config::ComponentConfig sink = synthetic(
        fmt::format("sources:\n  _unused: {{ type: stdin }}\nsinks:\n  {}: {{ type: blackhole, inputs: [\"{}\"] }}\n", name, from),
        ComponentKind::Sink);
    pipeline.components.push_back(std::move(sink));
    return name;
  };
  std::size_t extractors = 0;
  for (const auto& output : test.outputs) {
    auto sink = extractor(output.extract_from, extractors++);
    if (!sink.ok()) return fail("extract_from " + sink.error().message());
    extract_from.push_back(sink.value());
  }
  std::vector<std::string> silent_from;
  for (const auto& from : test.no_outputs_from) {
    auto sink = extractor(from, extractors++);
    if (!sink.ok()) return fail("no_outputs_from " + sink.error().message());
    silent_from.push_back(sink.value());
  }

  topology::Graph graph = topology::build(std::move(pipeline), diagnostics);
  if (!diagnostics.ok()) return fail("the pipeline with the test's inputs is invalid: " + diagnostics.errors.front().to_string());
  auto clock = std::make_shared<InputClock>();
  if (!test.now.empty()) {
    auto now = parse_iso8601(test.now);
    if (!now.ok()) return fail("now: " + now.error().message());
    clock->fix_at(now.value());
  }
  for (topology::Node& node : graph.nodes) {
    if (node.kind != ComponentKind::Source) continue;
    ReplayInput input;
    input.clock = clock;
    const std::string& name = graph.component(node).name;
    if (auto text = source_text.find(name); text != source_text.end()) input.text = text->second;
    for (const std::string& raw : raw_at_source[name]) {
      // Through the source's own decoder (its codec: NDJSON, text, CVAT's client batches...);
      // the events go in as NDJSON, after the test's other inputs.
      EventBatch decoded;
      if (!node.source->decode_raw(raw, clock->now(), decoded, input.rejected)) {
        input.text += raw + (raw.back() == '\n' ? "" : "\n");
        continue;
      }
      ByteBuffer lines;
      for (const Event& e : decoded.events()) {
        write_json(e.fields, lines);
        lines.push_back('\n');
      }
      input.text += std::string(lines.view());
    }
    node.source = std::make_unique<ReplaySource>(std::move(input), node.source->outputs());
  }
  std::map<std::string, std::shared_ptr<CaptureStore>> stores;
  for (auto& [name, store] : capture_sinks(graph, "")) stores[name] = store;

  int code;
  {
    IsolatedRun isolated(graph, "test", clock, test.seed.value_or(0), "");
    isolated.options.handle_signals = false;
    runtime::Runtime rt(graph, isolated.options);
    code = rt.run();
  }
  if (code != 0) outcome.failures.push_back(fmt::format("the pipeline exited {} (see the log above)", code));

  auto extracted = [&](const std::string& sink) {
    Extracted got;
    const CaptureStore& store = *stores.at(sink);
    got.events = store.events;
    got.encoded = store.encoded;
    got.has_encoding = !store.format.empty();
    return got;
  };
  for (std::size_t i = 0; i < test.outputs.size(); ++i) {
    check_output(test.outputs[i], extracted(extract_from[i]), update_golden, outcome);
  }
  for (std::size_t i = 0; i < test.no_outputs_from.size(); ++i) {
    Extracted got = extracted(silent_from[i]);
    if (!got.events.empty()) {
      outcome.failures.push_back(fmt::format("no_outputs_from {}: expected no events, got {}:{}", test.no_outputs_from[i],
                                             got.events.size(), seen_events(got.events)));
    }
  }
  outcome.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - began).count();
  return outcome;
}

std::string xml_escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

void write_junit(const std::string& path, const std::vector<Outcome>& outcomes) {
  std::size_t failed = 0;
  double seconds = 0;
  for (const Outcome& o : outcomes) {
    failed += !o.failures.empty();
    seconds += o.ms / 1000;
  }
  std::string xml = fmt::format("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"weir test\" tests=\"{}\" "
                                "failures=\"{}\" time=\"{:.3f}\">\n", outcomes.size(), failed, seconds);
  for (const Outcome& o : outcomes) {
    xml += fmt::format("  <testcase name=\"{}\" classname=\"{}\" time=\"{:.3f}\"", xml_escape(o.name), xml_escape(o.where),
                       o.ms / 1000);
    if (o.failures.empty()) {
      xml += "/>\n";
      continue;
    }
    std::string all;
    for (const std::string& f : o.failures) all += f + "\n";
    xml += fmt::format(">\n    <failure message=\"{}\">{}</failure>\n  </testcase>\n", xml_escape(shorten(o.failures.front(), 200)),
                       xml_escape(all));
  }
  xml += "</testsuite>\n";
  std::ofstream(path, std::ios::binary) << xml;
}

}  // namespace

int run_pipeline_tests(const TestRunOptions& options) {
  config::Diagnostics diagnostics;
  config::PipelineConfig pipeline = config::load(options.configs, diagnostics);
  if (diagnostics.ok()) {
    config::Diagnostics built;
    topology::build(config::load(options.configs, built), built);  // the pipeline alone must be valid too
    diagnostics.errors.insert(diagnostics.errors.end(), built.errors.begin(), built.errors.end());
  }
  for (const Error& e : diagnostics.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
  if (!diagnostics.ok()) {
    std::fprintf(stderr, "%zu error(s): no test was run\n", diagnostics.errors.size());
    return 2;
  }
  if (pipeline.tests.empty()) {
    std::fprintf(stderr, "error: no tests in %s: add a `tests:` list (see docs/testing.md)\n",
                 pipeline.files.empty() ? "the pipeline" : pipeline.files.front().c_str());
    return 2;
  }
  std::vector<Outcome> outcomes;
  std::size_t failed = 0;
  for (const config::TestSpec& test : pipeline.tests) {
    Outcome o = run_one(options.configs, test, options.update_golden);
    std::printf("%s  %s  (%.0f ms)\n", o.failures.empty() ? "PASS" : "FAIL", o.name.c_str(), o.ms);
    for (const std::string& f : o.failures) std::printf("    %s\n", f.c_str());
    for (const std::string& n : o.notes) std::printf("    %s\n", n.c_str());
    failed += !o.failures.empty();
    outcomes.push_back(std::move(o));
  }
  std::printf("%zu test(s): %zu passed, %zu failed\n", outcomes.size(), outcomes.size() - failed, failed);
  if (!options.junit.empty()) write_junit(options.junit, outcomes);
  return failed == 0 ? 0 : 1;
}

}  // namespace weir::replay
