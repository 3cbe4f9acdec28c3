// Bad configurations: each is rejected before anything starts, with file:line:col and,
// where a name was misspelt, the nearest valid one.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "config/config.hpp"
#include "topology/graph.hpp"

using namespace weir;

namespace {

config::EnvLookup fake_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    if (name == "OUT_PATH") return std::string("/tmp/from-env.ndjson");
    if (name == "COUNT") return std::string("42");
    if (name == "EMPTY") return std::string();
    return std::nullopt;
  };
}

// Loads and builds like `weir validate`; returns every diagnostic.
config::Diagnostics check(const std::string& yaml) {
  config::Diagnostics d;
  auto cfg = config::load_text(yaml, "p.yaml", d, fake_env());
  if (d.ok()) topology::build(std::move(cfg), d);
  return d;
}

std::string first_error(const std::string& yaml) {
  auto d = check(yaml);
  REQUIRE_FALSE(d.errors.empty());
  return d.errors.front().to_string();
}

const char* kHeader = "sources:\n  in: { type: stdin }\n";

}  // namespace

TEST_CASE("config: unknown sink type suggests the nearest type") {
  CHECK(first_error(std::string(kHeader) + "sinks:\n  out:\n    type: consol\n    inputs: [in]\n") ==
        "p.yaml:5:11: error: unknown sink type 'consol' for 'out' (did you mean 'console'?)");
}

TEST_CASE("config: unknown source type without a close match has no hint") {
  CHECK(first_error("sources:\n  in: { type: kafkaesque }\nsinks:\n  out: { type: console, inputs: [in] }\n") ==
        "p.yaml:2:15: error: unknown source type 'kafkaesque' for 'in'");
}

TEST_CASE("config: misspelt key gives file:line:col and a hint") {
  CHECK(first_error(std::string(kHeader) + "sinks:\n  out:\n    type: file\n    inputs: [in]\n    pth: /tmp/x\n") ==
        "p.yaml:7:5: error: unknown key 'pth' in sink 'out' (type file) (did you mean 'path'?)");
}

TEST_CASE("config: misspelt nested key") {
  CHECK(first_error(std::string(kHeader) +
                    "sinks:\n  out:\n    type: console\n    inputs: [in]\n    encoding:\n      codek: json\n") ==
        "p.yaml:8:7: error: unknown key 'encoding.codek' in sink 'out' (type console) (did you mean 'codec'?)");
}

TEST_CASE("config: a nested section written as a scalar") {
  CHECK(first_error(std::string(kHeader) + "sinks:\n  out:\n    type: console\n    inputs: [in]\n    encoding: json\n") ==
        "p.yaml:7:15: error: 'encoding' of sink 'out' (type console) must be a mapping (keys: codec), got a scalar");
}

TEST_CASE("config: missing required key") {
  CHECK(first_error(std::string(kHeader) + "sinks:\n  out:\n    type: file\n    inputs: [in]\n") ==
        "p.yaml:4:3: error: sink 'out' (type file) is missing required key 'path'");
}

TEST_CASE("config: missing inputs") {
  CHECK(first_error(std::string(kHeader) + "sinks:\n  out:\n    type: console\n") ==
        "p.yaml:4:3: error: sink 'out' (type console) is missing required key 'inputs'");
}

TEST_CASE("config: empty inputs") {
  CHECK(first_error(std::string(kHeader) + "sinks:\n  out:\n    type: console\n    inputs: []\n") ==
        "p.yaml:6:13: error: 'inputs' of sink 'out' (type console) is empty: list at least one source or transform");
}

TEST_CASE("config: missing type") {
  CHECK(first_error(std::string(kHeader) + "sinks:\n  out:\n    inputs: [in]\n") == "p.yaml:4:3: error: sink 'out' has no 'type'");
}

TEST_CASE("config: integer option given a word") {
  CHECK(first_error("sources:\n  gen:\n    type: demo\n    count: many\nsinks:\n  out: { type: blackhole, inputs: [gen] }\n") ==
        "p.yaml:4:12: error: 'count' of source 'gen' (type demo) must be an integer, got 'many'");
}

TEST_CASE("config: boolean option given a word") {
  CHECK(first_error(std::string(kHeader) +
                    "sinks:\n  out:\n    type: file\n    path: /tmp/x\n    inputs: [in]\n    encoding: { codec: csv, csv: { header: maybe, fields: [a] } }\n") ==
        "p.yaml:8:44: error: 'encoding.csv.header' of sink 'out' (type file) must be true or false, got 'maybe'");
}

TEST_CASE("config: enum value misspelt") {
  CHECK(first_error("sources:\n  in:\n    type: stdin\n    decoding: { codec: jsn }\nsinks:\n  out: { type: console, inputs: [in] }\n") ==
        "p.yaml:4:24: error: invalid value 'jsn' for 'decoding.codec' of source 'in' (type stdin): expected one of json, text (did you mean 'json'?)");
}

TEST_CASE("config: bad duration and bad size") {
  CHECK(first_error(std::string(kHeader) + "sinks:\n  out: { type: file, path: /tmp/x, inputs: [in], idle_timeout: 5 parsecs }\n") ==
        "p.yaml:4:64: error: 'idle_timeout' of sink 'out' (type file) must be a duration, got '5 parsecs' has an unknown duration unit 'parsecs' (use ns, us, ms, s, m, h, d)");
  CHECK(first_error("sources:\n  in: { type: stdin, max_line_bytes: lots }\nsinks:\n  out: { type: console, inputs: [in] }\n") ==
        "p.yaml:2:38: error: 'max_line_bytes' of source 'in' (type stdin) must be a size, got 'lots' is not a size (write e.g. 512, 64KiB, 10MiB)");
}

TEST_CASE("config: list option given a mapping") {
  CHECK(first_error(std::string(kHeader) +
                    "sinks:\n  out: { type: file, path: /tmp/x, inputs: [in], encoding: { codec: csv, csv: { fields: { a: 1 } } } }\n") ==
        "p.yaml:4:89: error: 'encoding.csv.fields' of sink 'out' (type file) must be a list of strings, got a mapping");
}

TEST_CASE("config: a bad list item is reported at the item") {
  CHECK(first_error(std::string(kHeader) +
                    "sinks:\n  out:\n    type: file\n    path: /tmp/x\n    inputs: [in]\n    encoding: { codec: csv, csv: { fields: [a, {b: c}] } }\n") ==
        "p.yaml:8:48: error: 'encoding.csv.fields' of sink 'out' (type file) must be a list of strings, got an item that is a mapping");
}

TEST_CASE("config: floats must be finite") {
  CHECK(first_error("sources:\n  gen: { type: demo, rate: inf }\nsinks:\n  out: { type: blackhole, inputs: [gen] }\n") ==
        "p.yaml:2:28: error: 'rate' of source 'gen' (type demo) must be a number, got 'inf'");
}

TEST_CASE("config: unknown input suggests the nearest component") {
  CHECK(first_error("sources:\n  events: { type: stdin }\nsinks:\n  out: { type: console, inputs: [evnts] }\n") ==
        "p.yaml:4:34: error: unknown input 'evnts' in sink 'out' (did you mean 'events'?)");
}

TEST_CASE("config: a sink used as an input") {
  CHECK(first_error(std::string(kHeader) +
                    "sinks:\n  a: { type: console, inputs: [in] }\n  b: { type: console, inputs: [a] }\n") ==
        "p.yaml:5:32: error: input 'a' of sink 'b' is a sink; only sources and transforms produce events (a sink's rejects are 'a.dead_letter')");
}

TEST_CASE("config: unknown named output") {
  CHECK(first_error(std::string(kHeader) +
                    "transforms:\n  split: { type: test_split, inputs: [in] }\nsinks:\n  out: { type: console, inputs: [split.evn] }\n") ==
        "p.yaml:6:34: error: 'split' has no output 'evn' (input of sink 'out'); its outputs are split.even, split.odd");
  CHECK(first_error(std::string(kHeader) + "sinks:\n  out: { type: console, inputs: [in.foo] }\n") ==
        "p.yaml:4:34: error: 'in' has no output 'foo' (input of sink 'out'); it has only its default output, referenced as 'in'");
}

TEST_CASE("config: a cycle is named in data-flow order") {
  CHECK(first_error(std::string(kHeader) +
                    "transforms:\n  a: { type: test_tag, inputs: [in, c] }\n  b: { type: test_tag, inputs: [a] }\n"
                    "  c: { type: test_tag, inputs: [b] }\nsinks:\n  out: { type: console, inputs: [c] }\n") ==
        "p.yaml:5:3: error: cycle in the pipeline: b -> c -> a -> b");
}

TEST_CASE("config: a transform reading itself is a cycle") {
  CHECK(first_error(std::string(kHeader) +
                    "transforms:\n  t: { type: test_tag, inputs: [t] }\nsinks:\n  out: { type: console, inputs: [t] }\n") ==
        "p.yaml:4:3: error: cycle in the pipeline: t -> t");
}

TEST_CASE("config: duplicate names across sections") {
  CHECK(first_error(std::string(kHeader) + "sinks:\n  in: { type: console, inputs: [in] }\n") ==
        "p.yaml:4:3: error: duplicate component name 'in' (first defined at p.yaml:2:3)");
}

TEST_CASE("config: input listed twice") {
  CHECK(first_error(std::string(kHeader) + "sinks:\n  out: { type: console, inputs: [in, in] }\n") ==
        "p.yaml:4:38: error: input 'in' is listed twice in sink 'out' (type console)");
}

TEST_CASE("config: unknown section suggests the right one") {
  CHECK(first_error(std::string(kHeader) + "sink:\n  out: { type: console, inputs: [in] }\n") ==
        "p.yaml:3:1: error: unknown section 'sink' (did you mean 'sinks'?)");
}

TEST_CASE("config: invalid YAML points at the problem") {
  CHECK(first_error("sources:\n  in: { type: stdin\nsinks: {}\n") ==
        "p.yaml:3:6: error: invalid YAML: end of map flow not found");
}

TEST_CASE("config: unset environment variable without default") {
  CHECK(first_error(std::string(kHeader) + "sinks:\n  out: { type: file, inputs: [in], path: \"${NOPE}\" }\n") ==
        "p.yaml:4:42: error: environment variable 'NOPE' is not set (write ${NOPE:-default} to give a default)");
}

TEST_CASE("config: no sources, no sinks") {
  auto d = check("sinks:\n  out: { type: console, inputs: [x] }\n");
  REQUIRE(d.errors.size() == 1);
  CHECK(d.errors[0].to_string() == "p.yaml: error: no sources defined");
  CHECK(first_error(kHeader) == "p.yaml: error: no sinks defined");
}

TEST_CASE("config: component names may not hold dots") {
  CHECK(first_error("sources:\n  in.put: { type: stdin }\nsinks:\n  out: { type: console, inputs: [in] }\n") ==
        "p.yaml:2:3: error: source name 'in.put' may hold only letters, digits, '_' and '-'");
}

TEST_CASE("config: a component must be a mapping") {
  CHECK(first_error("sources:\n  in: stdin\nsinks:\n  out: { type: console, inputs: [in] }\n") ==
        "p.yaml:2:3: error: source 'in' must be a mapping of settings, got a scalar");
}

TEST_CASE("config: sources take no inputs") {
  CHECK(first_error("sources:\n  in: { type: stdin, inputs: [x] }\nsinks:\n  out: { type: console, inputs: [in] }\n") ==
        "p.yaml:2:22: error: unknown key 'inputs' in source 'in' (type stdin)");
}

TEST_CASE("config: a factory's own check is reported at the option") {
  CHECK(first_error(std::string(kHeader) + "sinks:\n  out: { type: file, inputs: [in], path: /tmp/x, encoding: { codec: csv } }\n") ==
        "p.yaml:4:62: error: encoding.codec csv needs encoding.csv.fields (the columns)");
}

TEST_CASE("config: every error is reported, not just the first") {
  auto d = check("sources:\n  in: { type: stdn }\nsinks:\n  out: { type: console, inputs: [in], foo: 1, bar: 2 }\n");
  CHECK(d.errors.size() == 3);
}

TEST_CASE("config: a component with no path to a sink is a warning") {
  auto d = check("sources:\n  in: { type: stdin }\n  lonely: { type: stdin }\nsinks:\n  out: { type: console, inputs: [in] }\n");
  REQUIRE(d.ok());
  REQUIRE(d.warnings.size() == 1);
  CHECK(d.warnings[0].to_string("warning") ==
        "p.yaml:3:3: warning: source 'lonely' has no path to any sink: its events will be discarded");
}

TEST_CASE("config: environment interpolation") {
  CHECK(config::interpolate("a${COUNT}b", fake_env()).value() == "a42b");
  CHECK(config::interpolate("${MISSING:-x.y}", fake_env()).value() == "x.y");
  CHECK(config::interpolate("${EMPTY:-fallback}", fake_env()).value() == "fallback");
  CHECK(config::interpolate("${EMPTY}", fake_env()).value() == "");
  CHECK(config::interpolate("cost: $$5 and $HOME", fake_env()).value() == "cost: $5 and $HOME");
  CHECK(config::interpolate("$${COUNT}", fake_env()).value() == "${COUNT}");
  CHECK_FALSE(config::interpolate("${UNCLOSED", fake_env()).ok());
  CHECK_FALSE(config::interpolate("${bad name}", fake_env()).ok());

  config::Diagnostics d;
  auto cfg = config::load_text("sources:\n  g: { type: demo, count: \"${COUNT}\" }\nsinks:\n  o: { type: file, inputs: [g], path: \"${OUT_PATH}\" }\n",
                               "p.yaml", d, fake_env());
  REQUIRE(d.ok());
  CHECK(cfg.components[0].options.integer("count") == 42);
  CHECK(cfg.components[1].options.string("path") == "/tmp/from-env.ndjson");
  CHECK(cfg.components[0].options.integer("users") == 5);  // default applied
}

TEST_CASE("config: several files merge into one graph; conflicts are errors") {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / "weir-config-merge";
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "10-sources.yaml") << "data_dir: /tmp/a\nsources:\n  in: { type: stdin }\n";
  std::ofstream(dir / "20-sinks.yml") << "sinks:\n  out: { type: console, inputs: [in] }\n";
  std::ofstream(dir / "ignored.txt") << "not yaml";
  config::Diagnostics d;
  auto cfg = config::load({dir.string()}, d, fake_env());
  REQUIRE(d.ok());
  CHECK(cfg.components.size() == 2);
  CHECK(cfg.data_dir == "/tmp/a");
  CHECK(cfg.dead_letter_path == "/tmp/a/dead_letter.ndjson");

  std::ofstream(dir / "30-more.yaml") << "data_dir: /tmp/b\nsinks:\n  in: { type: console, inputs: [in] }\n";
  config::Diagnostics d2;
  config::load({dir.string()}, d2, fake_env());
  REQUIRE(d2.errors.size() == 2);
  CHECK(d2.errors[0].to_string() == (dir / "30-more.yaml").string() + ":1:11: error: 'data_dir' is set to '/tmp/b' here and to '/tmp/a' at " + (dir / "10-sources.yaml").string() + ":1:11");
  CHECK(d2.errors[1].to_string() == (dir / "30-more.yaml").string() + ":3:3: error: duplicate component name 'in' (first defined at " + (dir / "10-sources.yaml").string() + ":3:3)");
  fs::remove_all(dir);
}

TEST_CASE("config: durations and sizes") {
  CHECK(parse_duration("250ms").value() == std::chrono::milliseconds(250));
  CHECK(parse_duration("1.5m").value() == std::chrono::seconds(90));
  CHECK(parse_duration("2").value() == std::chrono::seconds(2));
  CHECK(parse_bytes("64KiB").value() == 65536);
  CHECK(parse_bytes("10MB").value() == 10'000'000);
  CHECK_FALSE(parse_bytes("-1").ok());
}

TEST_CASE("config: nearest name") {
  CHECK(config::nearest("consol", {"console", "blackhole", "file"}) == "console");
  CHECK(config::nearest("zzzzzz", {"console", "blackhole", "file"}).empty());
}

TEST_CASE("config: a bad condition is reported at load with its position") {
  CHECK(first_error(std::string(kHeader) +
                    "transforms:\n  f: { type: filter, inputs: [in], condition: \".a =< 5\" }\nsinks:\n  out: { type: console, inputs: [f] }\n") ==
        "p.yaml:4:36: error: condition: offset 3: unexpected character '='");
  CHECK(first_error(std::string(kHeader) +
                    "transforms:\n  r: { type: route, inputs: [in], route: { a: \".x == 1\" } }\nsinks:\n  out: { type: console, inputs: [r] }\n") ==
        "p.yaml:6:34: error: 'r' has no output '' (input of sink 'out'); its outputs are r.a, r._unmatched");
}

TEST_CASE("config: a name or an input that YAML read as null says so, and that quoting fixes it") {
  for (const char* spelling : {"null", "~", "Null", "NULL"}) {
    std::string yaml = std::string(kHeader) + "sinks:\n  " + spelling + ": { type: blackhole, inputs: [in] }\n";
    CHECK(first_error(yaml) == "p.yaml:4:3: error: a sink is named with YAML's null (null, ~ or nothing), which YAML "
                               "reads as no name: quote it (\"null\") to use it as a name");
  }
  CHECK(first_error(std::string(kHeader) + "sinks:\n  out: { type: blackhole, inputs: [null] }\n") ==
        "p.yaml:4:36: error: an input of sink 'out' (type blackhole) is YAML's null (null, ~ or nothing): quote it (\"null\") if you mean the text");
  auto d = check(std::string(kHeader) + "transforms:\n  \"null\": { type: filter, inputs: [in], condition: '.a == 1' }\n"
                 "sinks:\n  out: { type: blackhole, inputs: [\"null\"] }\n");
  CHECK(d.ok());
}

TEST_CASE("config: apis stand beside the graph, checked like any component") {
  const char* api = "api: { address: \"127.0.0.1:0\" }\n"
                    "apis:\n  analytics:\n    type: analytics\n    endpoint: http://127.0.0.1:8123\n"
                    "    access: { tokens: [\"t\"] }\n";
  // A weir of APIs alone needs no sources or sinks.
  CHECK(check(api).ok());
  CHECK(first_error("apis:\n  a:\n    type: analytics\n    endpoint: http://x\n    access: { tokens: [t] }\n")
            .find("api 'a' has no 'address' and weir's API server is off") != std::string::npos);
  CHECK(first_error("api: { address: \"127.0.0.1:0\" }\napis:\n  a: { type: analytic }\n").find("unknown api type 'analytic'") !=
        std::string::npos);
  CHECK(first_error("api: { address: \"127.0.0.1:0\" }\napis:\n  a: { type: analytics, endpoint: \"http://x\", inputs: [in] }\n")
            .find("unknown key 'inputs'") != std::string::npos);
  CHECK(first_error("api: { address: \"127.0.0.1:0\" }\napis:\n  a: { type: analytics, endpoint: \"http://x\", "
                    "access: { tokens: [\"${EMPTY}\"] } }\n")
            .find("an access token is empty") != std::string::npos);
  CHECK(first_error("api: { address: \"127.0.0.1:0\" }\napis:\n  a: { type: analytics, endpoint: \"http://x\" }\n")
            .find("would be open to anyone") != std::string::npos);
  // Two on weir's API server may not claim the same paths; one on its own address may.
  std::string two = std::string(api) + "  again:\n    type: analytics\n    endpoint: http://127.0.0.1:8123\n"
                                       "    access: { tokens: [\"t\"] }\n";
  CHECK(first_error(two).find("api 'again' claims /api/events, and api 'analytics' claims /api/events: give one its own address") != std::string::npos);
  CHECK(check(two + "    address: 127.0.0.1:0\n").ok());
  // A name is unique across every kind.
  CHECK(first_error(std::string(kHeader) + "sinks:\n  out: { type: blackhole, inputs: [in] }\n" + api +
                    "  in: { type: analytics, endpoint: \"http://x\", access: { tokens: [t] } }\n")
            .find("duplicate component name 'in'") != std::string::npos);
}
