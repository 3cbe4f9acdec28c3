// weir's command line: run | validate | list | graph | replay | buffer check | help | --version.
#include <sys/resource.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "buffer/disk_log.hpp"
#include "cli/tap.hpp"
#include "cli/top.hpp"
#include "config/config.hpp"
#include "replay/pipeline_test.hpp"
#include "replay/replay.hpp"
#include "runtime/runtime.hpp"
#include "topology/graph.hpp"
#include "weir/log.hpp"
#include "plugin/loader.hpp"
#include "weir/options.hpp"
#include "weir/plugin.h"
#include "weir/registry.hpp"
#include "weir/time.hpp"

#ifndef WEIR_VERSION
#define WEIR_VERSION "0.0.0"
#endif

namespace {

using namespace weir;

constexpr std::string_view kUsage = R"(weir: a telemetry pipeline agent (sources -> transforms -> sinks)

usage:
  weir run      -c FILE|DIR [-c ...]   run a pipeline until its sources end or SIGINT/SIGTERM;
                                       SIGHUP (or POST /reload on the API) reloads the config
  weir validate -c FILE|DIR [-c ...]   check a pipeline without starting it (exit 0 when valid)
  weir graph    -c FILE|DIR [-c ...]   print the pipeline as a Graphviz DOT graph
  weir list     [TYPE] [-c FILE]       every component type with its options and defaults (with
                                       -c or --plugin, the plugins' types too)
  weir replay   -c FILE --input LOG [--input-into SOURCE] [--capture DIR] [--speed max|1x|Nx]
                [--seed N] [--now TIME] [--batch-events N] [--fail-on-dead-letter]
                                       feed a recorded NDJSON log (gzip/zstd too) into a source in
                                       place of its live input, deterministically; --capture keeps
                                       what every sink would send in DIR instead of sending it
  weir tap      --api ADDRESS COMPONENT[.output]... [--limit N] [--interval D] [--output FILE]
                [--duration D]         print (or record, ready for weir replay) a sample of the
                                       events leaving components of a running weir
  weir top      --api ADDRESS [--interval D] [--sort name|in|out|errors|buffer] [--iterations N]
                                       a running weir's components, refreshed: events in/out per
                                       second and in total, bytes/s, errors, dead letters, buffer
                                       fill (keys: n i o e b sort, q quits)
  weir test     -c FILE [-c TESTS] [--junit FILE] [--update-golden]
                                       run the pipeline's `tests:` in memory (exit 0 when all pass)
  weir buffer check DIR... | -c FILE   report the state of disk buffers offline: records to
                                       deliver, damage found (exit 0 intact, 1 damaged, 2 unreadable)
  weir help                            this text
  weir --version

options:
  -c, --config PATH     pipeline file, or a directory of *.yaml files; repeat to merge
  --log-level LEVEL     trace, debug, info (default), warn, error, off (or WEIR_LOG)
  -w, --watch-config    run: reload when a config file changes (polled every second)
  --plugin PATH         load a transform plugin (a .so built with weir's SDK) first; repeatable
)";

struct Args {
  std::string verb;
  std::vector<std::string> configs;
  std::vector<std::string> rest;
  std::vector<std::string> plugins;  // --plugin PATH, any verb
  std::string error;
  bool watch_config = false;
  bool log_level_set = false;
  // Options with a value, by name (--input LOG, ...), and flags.
  std::map<std::string, std::string> values;
  std::set<std::string> flags;
};

// The options of the verbs beyond run: which take a value, which are flags.
const std::set<std::string> kValueOptions = {"--input", "--input-into", "--capture", "--speed", "--seed",
                                             "--now", "--batch-events", "--junit", "--api", "--limit",
                                             "--interval", "--output", "--duration", "--sort", "--iterations"};
const std::set<std::string> kFlagOptions = {"--fail-on-dead-letter", "--update-golden"};

Args parse_args(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-c" || arg == "--config") {
      if (i + 1 >= argc) {
        args.error = arg + " needs a path";
        return args;
      }
      args.configs.push_back(argv[++i]);
    } else if (arg == "--plugin") {
      if (i + 1 >= argc) {
        args.error = "--plugin needs a path";
        return args;
      }
      args.plugins.push_back(argv[++i]);
    } else if (arg.rfind("--config=", 0) == 0) {
      args.configs.push_back(arg.substr(9));
    } else if (arg == "--log-level") {
      if (i + 1 >= argc) {
        args.error = "--log-level needs a level";
        return args;
      }
      log::Level level;
      if (!log::parse_level(argv[++i], level)) {
        args.error = fmt::format("unknown log level '{}'", argv[i]);
        return args;
      }
      log::set_level(level);
      args.log_level_set = true;
    } else if (kValueOptions.count(arg)) {
      if (i + 1 >= argc) {
        args.error = arg + " needs a value";
        return args;
      }
      args.values[arg] = argv[++i];
    } else if (kFlagOptions.count(arg)) {
      args.flags.insert(arg);
    } else if (arg == "--watch-config" || arg == "-w") {
      args.watch_config = true;
    } else if (arg == "--version" || arg == "-V") {
      args.verb = "version";
    } else if (arg == "--help" || arg == "-h") {
      args.verb = "help";
    } else if (args.verb.empty()) {
      args.verb = arg;
    } else if (!arg.empty() && arg[0] == '-') {
      args.error = fmt::format("unknown option '{}'", arg);
      return args;
    } else {
      args.rest.push_back(arg);
    }
  }
  return args;
}

void print_diagnostics(const config::Diagnostics& diagnostics) {
  for (const Error& w : diagnostics.warnings) std::fprintf(stderr, "%s\n", w.to_string("warning").c_str());
  for (const Error& e : diagnostics.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
}

// Loads, validates and builds; prints problems. Returns false when the pipeline is invalid.
bool load_graph(const Args& args, topology::Graph& graph) {
  if (args.configs.empty()) {
    std::fprintf(stderr, "error: no pipeline given: pass -c FILE (see `weir help`)\n");
    return false;
  }
  config::Diagnostics diagnostics;
  config::PipelineConfig config = config::load(args.configs, diagnostics);
  if (diagnostics.ok()) graph = topology::build(std::move(config), diagnostics);
  print_diagnostics(diagnostics);
  if (!diagnostics.ok()) {
    std::fprintf(stderr, "%zu error(s): the pipeline was not started\n", diagnostics.errors.size());
    return false;
  }
  return true;
}

int list_types(const Args& args) {
  if (!args.configs.empty()) {  // for the plugins the pipeline loads
    config::Diagnostics diagnostics;
    config::load(args.configs, diagnostics);
    if (!diagnostics.ok()) {
      print_diagnostics(diagnostics);
      return 2;
    }
  }
  for (const ComponentType* t : Registry::global().all()) {
    if (!args.rest.empty() && std::find(args.rest.begin(), args.rest.end(), t->type) == args.rest.end()) continue;
    std::string out = fmt::format("{} {}\n  {}\n", component_kind_name(t->kind), t->type, t->summary);
    if (!t->origin.empty()) out += fmt::format("  from {}\n", t->origin);
    OptionSchema all = common_options(t->kind);
    all.insert(all.end(), t->options.begin(), t->options.end());
    for (const OptionSpec& o : all) {
      std::string type(option_type_name(o.type));
      if (o.type == OptionType::Enum) {
        type.clear();
        for (const auto& c : o.choices) type += (type.empty() ? "" : "|") + c;
      }
      std::string detail = o.required ? "required" : o.default_value.empty() ? "optional" : "default " + o.default_value;
      out += fmt::format("    {:<26} {:<18} {:<18} {}\n", o.name, type, detail, o.doc);
    }
    std::fputs(out.c_str(), stdout);
    std::fputs("\n", stdout);
  }
  return 0;
}

// `weir buffer check`: the scan a disk buffer does at start, without starting anything.
int check_buffers(const Args& args) {
  std::vector<std::string> dirs(args.rest.begin() + 1, args.rest.end());
  if (!args.configs.empty()) {
    topology::Graph graph;
    if (!load_graph(args, graph)) return 2;
    for (const auto& component : graph.config.components) {
      if (component.kind == ComponentKind::Sink && component.options.string("buffer.type") == "disk") {
        dirs.push_back(graph.config.data_dir + "/buffers/" + component.name);
      }
    }
  }
  if (dirs.empty()) {
    std::fprintf(stderr, "error: weir buffer check needs buffer directories or -c FILE with disk buffers\n");
    return 2;
  }
  int worst = 0;
  for (const std::string& dir : dirs) {
    auto scanned = buffer::scan_log(dir);
    if (!scanned.ok()) {
      std::printf("%s: unreadable: %s\n", dir.c_str(), scanned.error().message().c_str());
      worst = 2;
      continue;
    }
    const buffer::LogScan& scan = scanned.value();
    std::uint64_t bytes = 0;
    for (auto [id, size] : scan.segment_bytes) bytes += size;
    std::string out = fmt::format(
        "{}: {}\n  {} segment(s), {} bytes; ledger: delivered below event {}, written below {}\n"
        "  {} good record(s), {} damaged ({} torn last write(s)); {} event(s) in {} record(s) to deliver; {} event(s) "
        "known missing; {} event(s) in {} record(s) set aside (made after their transform's last saved state)\n",
        dir, scan.problems.empty() ? "intact" : "DAMAGED", scan.segment_bytes.size(), bytes, scan.acknowledged,
        scan.written, scan.records, scan.corrupted_records, scan.torn_tails, scan.unacknowledged_events(),
        scan.unacknowledged.size(), scan.events_lost, scan.set_aside_events, scan.set_aside_records);
    for (const std::string& problem : scan.problems) out += "  problem: " + problem + "\n";
    std::fputs(out.c_str(), stdout);
    if (!scan.problems.empty()) worst = std::max(worst, 1);
  }
  return worst;
}

// `weir replay`: the options into ReplayOptions, with clear errors for bad values.
int replay_command(const Args& args) {
  replay::ReplayOptions options;
  options.configs = args.configs;
  options.configs.insert(options.configs.end(), args.rest.begin(), args.rest.end());
  auto value = [&](const std::string& name) {
    auto found = args.values.find(name);
    return found == args.values.end() ? std::string() : found->second;
  };
  auto bad = [](const std::string& what) {
    std::fprintf(stderr, "error: %s\n", what.c_str());
    return 2;
  };
  if (options.configs.empty()) return bad("weir replay needs a pipeline: -c FILE");
  options.input = value("--input");
  if (options.input.empty()) return bad("weir replay needs a recorded log: --input LOG");
  options.input_into = value("--input-into");
  options.capture_dir = value("--capture");
  if (std::string speed = value("--speed"); !speed.empty() && speed != "max") {
    char* end = nullptr;
    double factor = std::strtod(speed.c_str(), &end);
    if (end == speed.c_str() || !(factor > 0) || (std::string(end) != "x" && *end != '\0')) {
      return bad(fmt::format("--speed takes max, 1x or Nx (N a positive number), not '{}'", speed));
    }
    options.speed = factor;
  }
  if (std::string seed = value("--seed"); !seed.empty()) {
    char* end = nullptr;
    options.seed = std::strtoull(seed.c_str(), &end, 10);
    if (end == seed.c_str() || *end != '\0') return bad(fmt::format("--seed takes a whole number, not '{}'", seed));
  }
  if (std::string now = value("--now"); !now.empty()) {
    auto at = parse_iso8601(now);
    if (!at.ok()) return bad(fmt::format("--now: {}", at.error().message()));
    options.now = at.value();
  }
  if (std::string n = value("--batch-events"); !n.empty()) {
    char* end = nullptr;
    long long events = std::strtoll(n.c_str(), &end, 10);
    if (end == n.c_str() || *end != '\0' || events < 1) return bad("--batch-events takes a number above 0");
    options.batch_events = static_cast<std::size_t>(events);
  }
  options.fail_on_dead_letter = args.flags.count("--fail-on-dead-letter") > 0;
  return replay::run_replay(options);
}

}  // namespace

// The soft limit on open files up to the hard one (as Go's runtime and nginx's
// worker_rlimit_nofile do): Debian's default soft 1024 is less than http_server's
// max_connections plus its files and sockets to sinks.
void raise_open_file_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
  limit.rlim_cur = limit.rlim_max;
  (void)setrlimit(RLIMIT_NOFILE, &limit);  // if refused, the old limit stands: EMFILE is handled
}

int main(int argc, char** argv) {
  raise_open_file_limit();
  std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGHUP, SIG_IGN);  // until the runtime's handler reloads: never fatal
  if (const char* env_level = std::getenv("WEIR_LOG")) {
    log::Level level;
    if (log::parse_level(env_level, level)) log::set_level(level);
  }
  Args args = parse_args(argc, argv);
  if (!args.error.empty()) {
    std::fprintf(stderr, "error: %s\n\n%s", args.error.c_str(), std::string(kUsage).c_str());
    return 2;
  }
  if (args.verb.empty() || args.verb == "help") {
    std::fputs(std::string(kUsage).c_str(), args.verb.empty() ? stderr : stdout);
    return args.verb.empty() ? 2 : 0;
  }
  for (const std::string& path : args.plugins) {
    if (Status loaded = plugin::load_file(path); !loaded.ok()) {
      std::fprintf(stderr, "error: %s\n", loaded.error().message().c_str());
      return 2;
    }
  }
  if (args.verb == "version") {
    std::printf("weir %s (plugin ABI %d.%d)\n", WEIR_VERSION, WEIR_ABI_MAJOR, WEIR_ABI_MINOR);
    return 0;
  }
  if (args.verb == "list") return list_types(args);
  if (args.verb == "replay") return replay_command(args);
  auto value = [&](const char* name) {  // a verb's option, "" when not given
    auto found = args.values.find(name);
    return found == args.values.end() ? std::string() : found->second;
  };
  if (args.verb == "tap") {
    cli::TapOptions options;
    options.api = value("--api");
    options.components = args.rest;
    if (options.api.empty() || options.components.empty()) {
      std::fprintf(stderr, "error: usage: weir tap --api ADDRESS COMPONENT[.output]...\n");
      return 2;
    }
    if (std::string limit = value("--limit"); !limit.empty()) options.limit = std::strtoull(limit.c_str(), nullptr, 10);
    if (std::string interval = value("--interval"); !interval.empty()) options.interval = interval;
    options.output = value("--output");
    if (std::string duration = value("--duration"); !duration.empty()) {
      auto parsed = parse_duration(duration);
      if (!parsed.ok()) {
        std::fprintf(stderr, "error: --duration: %s\n", parsed.error().message().c_str());
        return 2;
      }
      options.duration = std::chrono::duration_cast<std::chrono::milliseconds>(parsed.value());
    }
    return cli::run_tap(options);
  }
  if (args.verb == "top") {
    cli::TopOptions options;
    options.api = value("--api");
    if (options.api.empty()) {
      std::fprintf(stderr, "error: usage: weir top --api ADDRESS [--interval D] [--sort KEY] [--iterations N]\n");
      return 2;
    }
    if (std::string interval = value("--interval"); !interval.empty()) {
      auto parsed = parse_duration(interval);
      if (!parsed.ok() || parsed.value() < std::chrono::milliseconds(100)) {
        std::fprintf(stderr, "error: --interval: a duration of at least 100ms, e.g. 1s\n");
        return 2;
      }
      options.interval = std::chrono::duration_cast<std::chrono::milliseconds>(parsed.value());
    }
    if (std::string sort = value("--sort"); !sort.empty()) {
      if (sort != "name" && sort != "in" && sort != "out" && sort != "errors" && sort != "buffer") {
        std::fprintf(stderr, "error: --sort: one of name, in, out, errors, buffer\n");
        return 2;
      }
      options.sort = sort;
    }
    if (std::string n = value("--iterations"); !n.empty()) options.iterations = std::atoi(n.c_str());
    return cli::run_top(options);
  }
  if (args.verb == "test") {
    replay::TestRunOptions options;
    options.configs = args.configs;
    options.configs.insert(options.configs.end(), args.rest.begin(), args.rest.end());
    if (options.configs.empty()) {
      std::fprintf(stderr, "error: weir test needs a pipeline: -c FILE\n");
      return 2;
    }
    if (auto junit = args.values.find("--junit"); junit != args.values.end()) options.junit = junit->second;
    options.update_golden = args.flags.count("--update-golden") > 0;
    // The components' own log lines only when they matter: a test's report is its output.
    if (!args.log_level_set && std::getenv("WEIR_LOG") == nullptr) log::set_level(log::Level::Error);
    return replay::run_pipeline_tests(options);
  }
  if (!args.values.empty() || !args.flags.empty()) {
    std::string given = !args.values.empty() ? args.values.begin()->first : *args.flags.begin();
    std::fprintf(stderr, "error: %s is an option of weir replay and weir test, not of weir %s\n", given.c_str(),
                 args.verb.c_str());
    return 2;
  }
  if (args.verb == "buffer") {
    if (args.rest.empty() || args.rest.front() != "check") {
      std::fprintf(stderr, "error: usage: weir buffer check DIR... | -c FILE\n");
      return 2;
    }
    return check_buffers(args);
  }
  if (args.verb == "validate" || args.verb == "graph" || args.verb == "run") {
    args.configs.insert(args.configs.end(), args.rest.begin(), args.rest.end());
    topology::Graph graph;
    if (!load_graph(args, graph)) return 1;
    if (args.verb == "validate") {
      std::printf("valid: %s", topology::summary(graph).c_str());
      return 0;
    }
    if (args.verb == "graph") {
      std::fputs(topology::to_dot(graph).c_str(), stdout);
      return 0;
    }
    runtime::RunOptions run_options;
    run_options.watch_config = args.watch_config;
    runtime::Runtime runtime(graph, run_options);
    int code = runtime.run();
    if (runtime.abandoned()) {
      // libuv joins its thread pool at exit, and a write stuck in it would hang us there.
      std::fflush(stdout);
      std::fflush(stderr);
      std::_Exit(code);
    }
    return code;
  }
  std::fprintf(stderr, "error: unknown command '%s'\n\n%s", args.verb.c_str(), std::string(kUsage).c_str());
  return 2;
}
