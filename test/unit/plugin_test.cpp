// The plugin ABI and SDK from the host's side: transforms written on weir/sdk.hpp, registered
// through the checks a loaded plugin passes, run by the engine's Transform interface.
#include <catch2/catch.hpp>

#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <fmt/format.h>

#include <cstring>
#include <stdexcept>

#include "config/config.hpp"
#include "metrics/prometheus.hpp"
#include "plugin/loader.hpp"
#include "pipeline_helpers.hpp"
#include "test_components.hpp"
#include "topology/graph.hpp"
#include "weir/registry.hpp"
#include "weir/sdk.hpp"

namespace {

using namespace weir::sdk;

struct Throwing {
  static constexpr const char* type = "test_sdk_throwing";
  static constexpr const char* summary = "Throws on every batch";
  static inline const std::vector<Option> options = {};
  explicit Throwing(const Options&) {}
  void process(Batch&, Context&) { throw std::runtime_error("boom"); }
};

// .drop: dropped; .bad: rejected; else .seen = true (counted in seen_events_total).
struct Mixed {
  static constexpr const char* type = "test_sdk_mixed";
  static constexpr const char* summary = "Drops, rejects and marks events";
  static inline const std::vector<Option> options = {
      {.name = "mark", .type = OptionType::String, .default_value = "seen", .doc = "The field set on kept events."},
      {.name = "mode", .type = OptionType::Enum, .default_value = "all", .choices = {"all", "none"}, .doc = "A choice."}};
  explicit Mixed(const Options& o) : mark_(o.string("mark")) {
    if (mark_.text() == "inputs") o.fail("mark", "mark cannot be called inputs");
  }
  void process(Batch& batch, Context& ctx) {
    Counter seen = ctx.counter("seen_events_total", "Events marked.");
    for (Event event : batch) {
      if (event.get("drop").as_bool()) {
        event.drop();
      } else if (event.get("bad")) {
        event.reject("bad one: " + std::string(event.get("bad").as_string()));
      } else {
        event.set(mark_, true);
        seen.add();
      }
    }
    ctx.emit(batch);
  }
  Path mark_;
};

// Holds every event until flush, counting them in its state; odd .n go to output `odd`.
struct Holding {
  static constexpr const char* type = "test_sdk_holding";
  static constexpr const char* summary = "Holds events until flush";
  static inline const std::vector<Option> options = {};
  static inline const std::vector<const char*> outputs = {"odd"};
  explicit Holding(const Options&) {}
  void process(Batch& batch, Context& ctx) {
    if (!held_) held_.emplace(ctx.new_batch());
    for (std::size_t i = 0; i < batch.size(); ++i) held_->move_from(batch, i);
    count_ += batch.size();
  }
  void flush(Context& ctx) {
    if (!held_) return;
    Batch even = ctx.new_batch(), odd = ctx.new_batch();
    for (std::size_t i = 0; i < held_->size(); ++i) {
      ((*held_)[i].get("n").as_int() % 2 == 0 ? even : odd).move_from(*held_, i);
    }
    ctx.emit(even, 0);
    ctx.emit(odd, 1);
    held_.reset();
  }
  std::string snapshot() const { return std::to_string(count_); }
  void restore(std::string_view state) { count_ = std::stoull(std::string(state)); }
  std::optional<Batch> held_;
  std::uint64_t count_ = 0;
};

// Prefixes .name with the metadata's %source through the bulk reader and writer.
struct Bulk {
  static constexpr const char* type = "test_sdk_bulk";
  static constexpr const char* summary = "Bulk reads and writes";
  static inline const std::vector<Option> options = {};
  explicit Bulk(const Options&) {}
  void process(Batch& batch, Context& ctx) {
    FieldReader<2> read(batch, name_, source_);
    StringWriter write(batch);
    for (Event event : batch) {
      auto [name, source] = read(event);
      if (!name.is_string()) continue;
      std::string text = std::string(source.is_string() ? source.as_string() : "none") + ":" + std::string(name.as_string());
      std::memcpy(write.set(name, text.size()), text.data(), text.size());
    }
    write.flush();
    ctx.emit(batch);
  }
  Path name_{"name"}, source_{"%source"};
};

// Emits nothing: its events go nowhere, counted.
struct Swallow {
  static constexpr const char* type = "test_sdk_swallow";
  static constexpr const char* summary = "Emits nothing";
  static inline const std::vector<Option> options = {};
  explicit Swallow(const Options&) {}
  void process(Batch&, Context&) {}
};

// Moves the events into a batch of its own, then throws.
struct Unwinding {
  static constexpr const char* type = "test_sdk_unwinding";
  static constexpr const char* summary = "Throws holding events";
  static inline const std::vector<Option> options = {};
  explicit Unwinding(const Options&) {}
  void process(Batch& batch, Context& ctx) {
    Batch mine = ctx.new_batch();
    for (std::size_t i = 0; i < batch.size(); ++i) mine.move_from(batch, i);
    throw std::runtime_error("gone wrong");
  }
};

// Writes metadata through a "%" path and strings through a writer it never flushes itself.
struct Writing {
  static constexpr const char* type = "test_sdk_writing";
  static constexpr const char* summary = "Writes metadata and strings";
  static inline const std::vector<Option> options = {};
  explicit Writing(const Options&) {}
  void process(Batch& batch, Context& ctx) {
    FieldReader<1> read(batch, name_);
    StringWriter write(batch);
    for (Event event : batch) {
      event.set(seen_, true);
      auto [name] = read(event);
      if (name.is_string()) std::memcpy(write.set(name, 2), "ok", 2);
    }
    ctx.emit(batch);  // the writer's pending strings land before the batch leaves
  }
  Path name_{"name"}, seen_{"%seen"};
};

// Writes "ok" into every .name, then moves the batch away and tries one more write through
// the same writer: the writer lands what it holds on the move and refuses after it.
struct Late {
  static constexpr const char* type = "test_sdk_late";
  static constexpr const char* summary = "Writes after its batch moved";
  static inline const std::vector<Option> options = {};
  explicit Late(const Options&) {}
  void process(Batch& batch, Context& ctx) {
    FieldReader<1> read(batch, name_);
    StringWriter write(batch);
    Value last;
    for (Event event : batch) {
      auto [name] = read(event);
      if (!name.is_string()) continue;
      std::memcpy(write.set(name, 2), "ok", 2);
      last = name;
    }
    Batch moved = std::move(batch);
    try {
      std::memcpy(write.set(last, 2), "no", 2);
    } catch (const std::logic_error& e) {
      refusals.push_back(e.what());
    }
    ctx.emit(moved);
  }
  static inline std::vector<std::string> refusals;
  Path name_{"name"};
};

// Its snapshot fails.
struct BadState {
  static constexpr const char* type = "test_sdk_bad_state";
  static constexpr const char* summary = "Cannot save its state";
  static inline const std::vector<Option> options = {};
  explicit BadState(const Options&) {}
  void process(Batch& batch, Context& ctx) { ctx.emit(batch); }
  std::string snapshot() const { throw std::runtime_error("disk of the mind is full"); }
  void restore(std::string_view) {}
};

// Uses the rest of the host: removes .secret, lists the fields' keys and kinds, stamps the
// pipeline's time and a random number, sets a gauge to the batch's last .n and logs a line.
struct Inspecting {
  static constexpr const char* type = "test_sdk_inspecting";
  static constexpr const char* summary = "Removes, iterates, stamps, logs";
  static inline const std::vector<Option> options = {};
  explicit Inspecting(const Options&) {}
  void process(Batch& batch, Context& ctx) {
    Gauge last_n = ctx.gauge("last_n", "The last .n seen.");
    std::size_t removed = 0;
    for (Event event : batch) {
      if (event.remove(secret_)) ++removed;
      std::string keys;
      Value fields = event.fields();
      for (std::size_t i = 0; i < fields.size(); ++i) {
        static constexpr const char* kKinds[] = {"null", "bool", "int", "uint", "double", "string", "array", "object"};
        keys += std::string(keys.empty() ? "" : ",") + std::string(fields.key(i)) + ":" +
                kKinds[static_cast<int>(fields.member(i).kind())];
      }
      event.set(keys_, keys);
      event.set(at_, ctx.now());
      event.set(random_, static_cast<std::int64_t>(ctx.random() >> 1));
      last_n.set(static_cast<double>(event.get("n").as_int()));
    }
    ctx.warn("removed " + std::to_string(removed) + " secrets");
    ctx.emit(batch);
  }
  Path secret_{"secret"}, keys_{"keys"}, at_{"at"}, random_{"random"};
};

// Says process() may run where the batch was decoded (ABI 1.2's off_loop).
struct OffLoop {
  static constexpr const char* type = "test_sdk_off_loop";
  static constexpr const char* summary = "May run off the loop";
  static constexpr bool runs_off_loop = true;
  static inline const std::vector<Option> options = {};
  explicit OffLoop(const Options&) {}
  void process(Batch& batch, Context& ctx) { ctx.emit(batch); }
};

WEIR_REGISTER_SDK_TRANSFORMS(Throwing, Mixed, Holding, Bulk, Swallow, Unwinding, Writing, Late, BadState, Inspecting, OffLoop);

using weir::testing::TransformHarness;

}  // namespace

TEST_CASE("plugin sdk: a transform that throws on every batch has every event dead-lettered and counted") {
  TransformHarness h("test_sdk_throwing");
  for (int round = 0; round < 3; ++round) {
    auto out = h.feed({R"({"n":1})", R"({"n":2})"});
    CHECK(out.empty());
  }
  CHECK(h.metrics().errors.get() == 3);
  REQUIRE(h.dead.size() == 6);
  CHECK(h.dead[0] == R"(transform failed: boom {"n":1})");
}

TEST_CASE("plugin sdk: drop, reject and set; removed events counted, rejected ones dead-lettered, metrics named") {
  TransformHarness h("test_sdk_mixed");
  auto out = h.feed({R"({"n":1})", R"({"n":2,"drop":true})", R"({"n":3,"bad":"x"})", R"({"n":4})"});
  REQUIRE(out.size() == 2);
  CHECK(out[0] == R"({"n":1,"seen":true})");
  CHECK(out[1] == R"({"n":4,"seen":true})");
  CHECK(h.metrics().events_dropped.get() == 1);
  REQUIRE(h.dead.size() == 1);
  CHECK(h.dead[0] == R"(bad one: x {"n":3,"bad":"x"})");
  std::vector<weir::metrics::ComponentRow> rows = {{"t", "transform", "test_sdk_mixed", &h.metrics()}};
  std::string text = weir::metrics::render_prometheus(rows, {});
  CHECK(text.find("# TYPE weir_plugin_seen_events_total counter") != std::string::npos);
  CHECK(text.find(R"(weir_plugin_seen_events_total{component_id="t",component_kind="transform",component_type="test_sdk_mixed"} 2)") !=
        std::string::npos);
}

TEST_CASE("plugin sdk: an option error thrown by the constructor points at the option") {
  weir::config::Diagnostics d;
  auto cfg = weir::config::load_text(
      "sources:\n  in: { type: stdin }\ntransforms:\n  t:\n    type: test_sdk_mixed\n    inputs: [in]\n    mark: inputs\n"
      "sinks:\n  out: { type: blackhole, inputs: [t] }\n",
      "p.yaml", d);
  REQUIRE(d.ok());
  weir::topology::build(std::move(cfg), d);
  REQUIRE(d.errors.size() == 1);
  CHECK(d.errors[0].to_string() == "p.yaml:7:5: error: mark cannot be called inputs");
  // The schema is weir's: an enum value outside its choices is refused before the plugin sees it.
  weir::config::Diagnostics d2;
  weir::config::load_text("sources:\n  in: { type: stdin }\ntransforms:\n  t: { type: test_sdk_mixed, inputs: [in], mode: some }\n"
                          "sinks:\n  out: { type: blackhole, inputs: [t] }\n",
                          "q.yaml", d2);
  REQUIRE(d2.errors.size() == 1);
  CHECK(d2.errors[0].message().find("expected one of all, none") != std::string::npos);
}

TEST_CASE("plugin sdk: held events keep their source's acknowledgement until emitted; outputs and state") {
  TransformHarness h("test_sdk_holding", "", "t.odd");
  int acked = 0;
  h.next_ack = weir::Acknowledgement::make([&](weir::DeliveryStatus, const std::string&) { ++acked; });
  CHECK(h.feed({R"({"n":1})", R"({"n":2})", R"({"n":3})"}).empty());
  CHECK(acked == 0);  // the events live on in the transform's own batch
  CHECK(h.snapshot() == "3");
  auto out = h.flush();
  REQUIRE(out.size() == 3);
  CHECK(h.outputs == std::vector<std::size_t>{0, 1, 1});
  CHECK(acked == 0);
  h.last.reset();
  CHECK(h.flush().empty());  // the harness lets go of the other batch it kept
  CHECK(acked == 1);         // released with the last batch holding its events
  REQUIRE(h.restore("41").ok());
  CHECK(h.snapshot() == "41");
}

namespace {

weir_transform_type valid_type(const char* name) {
  weir_transform_type t{};
  t.type = name;
  t.summary = "x";
  t.create = [](const weir_options*, weir_error*) -> void* { return nullptr; };
  t.destroy = [](void*) {};
  t.process = [](void*, weir_context*, weir_batch*, weir_error*) { return static_cast<int>(WEIR_OK); };
  return t;
}

weir_plugin descriptor(const weir_transform_type* types, std::size_t count) {
  weir_plugin p{};
  p.abi_major = WEIR_ABI_MAJOR;
  p.abi_minor = WEIR_ABI_MINOR;
  p.size = sizeof(weir_plugin);
  p.name = "checks";
  p.version = "0";
  p.transform_type_size = sizeof(weir_transform_type);
  p.option_size = sizeof(weir_option);
  p.transforms = types;
  p.transform_count = count;
  return p;
}

std::string refusal(const weir_plugin& p) {
  auto status = weir::plugin::register_plugin(&p, "/x/checks.so");
  return status.ok() ? std::string("registered") : status.error().message();
}

}  // namespace

TEST_CASE("plugin loader: malformed descriptors are refused whole, with the reason") {
  weir_transform_type types[2] = {valid_type("test_check_a"), valid_type("request_id")};
  CHECK(refusal(descriptor(types, 2)).find("transform type 'request_id': a built-in transform has that type") != std::string::npos);
  CHECK(weir::Registry::global().find(weir::ComponentKind::Transform, "test_check_a") == nullptr);  // nothing half-loaded

  weir_transform_type no_process = valid_type("test_check_b");
  no_process.process = nullptr;
  CHECK(refusal(descriptor(&no_process, 1)).find("create, destroy and process are required") != std::string::npos);

  weir_transform_type stateful = valid_type("test_check_c");
  stateful.keeps_state = 1;
  CHECK(refusal(descriptor(&stateful, 1)).find("keeps_state needs snapshot and restore") != std::string::npos);

  const char* const choices[] = {"a", "b", nullptr};
  weir_option bad_default = {"mode", WEIR_OPTION_ENUM, 0, "c", choices, "doc"};
  weir_transform_type with_option = valid_type("test_check_d");
  with_option.options = &bad_default;
  with_option.option_count = 1;
  CHECK(refusal(descriptor(&with_option, 1)).find("option 'mode' defaults to 'c', not one of its choices") != std::string::npos);
  weir_option reserved = {"inputs", WEIR_OPTION_STRING, 0, nullptr, nullptr, "doc"};
  with_option.options = &reserved;
  CHECK(refusal(descriptor(&with_option, 1)).find("option 'inputs' is weir's own") != std::string::npos);

  weir_transform_type bad_name = valid_type("Bad Name");
  CHECK(refusal(descriptor(&bad_name, 1)).find("[a-z][a-z0-9_]*") != std::string::npos);

  weir_plugin short_one = descriptor(types, 1);
  short_one.size = 40;
  CHECK(refusal(short_one).find("shorter than ABI") != std::string::npos);

  weir_transform_type ok = valid_type("test_check_ok");
  CHECK(refusal(descriptor(&ok, 1)) == "registered");
  CHECK(refusal(descriptor(&ok, 1)).find("already registered by plugin checks 0 (/x/checks.so)") != std::string::npos);
}

TEST_CASE("plugin loader: a file that is not a weir plugin is refused with its path") {
  auto missing = weir::plugin::load_file("/nonexistent/plugin.so");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message().find("plugin /nonexistent/plugin.so: ") == 0);
  // A real shared library without the entry symbol: libc, found where dladdr lives.
  Dl_info info{};
  REQUIRE(dladdr(reinterpret_cast<void*>(&dladdr), &info) != 0);
  auto foreign = weir::plugin::load_file(info.dli_fname);
  REQUIRE_FALSE(foreign.ok());
  CHECK(foreign.error().message().find("exports no weir_plugin_entry symbol") != std::string::npos);
}

TEST_CASE("plugin sdk: FieldReader and StringWriter across their chunks, metadata through % paths") {
  TransformHarness h("test_sdk_bulk");
  std::vector<std::string> events, metadata;
  constexpr int kEvents = 300;  // several reader and writer chunks (64 values each), the last one partial
  for (int i = 0; i < kEvents; ++i) {
    events.push_back(i % 10 == 3 ? R"({"n":)" + std::to_string(i) + "}" : R"({"name":"u)" + std::to_string(i) + R"("})");
    metadata.push_back(i % 2 == 0 ? R"({"source":"s)" + std::to_string(i) + R"("})" : "null");
  }
  auto out = h.feed(events, metadata);
  REQUIRE(out.size() == kEvents);
  for (int i = 0; i < kEvents; ++i) {
    std::string want = i % 10 == 3 ? R"({"n":)" + std::to_string(i) + "}"
                                   : R"({"name":")" + (i % 2 == 0 ? "s" + std::to_string(i) : std::string("none")) + ":u" +
                                         std::to_string(i) + R"("})";
    CHECK(out[i] == want);
  }
}

TEST_CASE("plugin loader: the ABI check names the file, both versions and the rebuild; a failing init refuses") {
  weir_transform_type ok = valid_type("test_check_init");
  weir_plugin p = descriptor(&ok, 1);
  p.source_dir = "/src/mine";
  CHECK(weir::plugin::check_abi(&p, "/x/mine.so").ok());
  p.abi_major = WEIR_ABI_MAJOR + 1;
  auto major = weir::plugin::check_abi(&p, "/x/mine.so");
  REQUIRE_FALSE(major.ok());
  CHECK(major.error().message().find("plugin /x/mine.so (checks 0) was built for weir plugin ABI " +
                                     std::to_string(WEIR_ABI_MAJOR + 1) + ".") == 0);
  CHECK(major.error().message().find("rebuild it against this weir's SDK: cmake -S /src/mine -B /src/mine/build") !=
        std::string::npos);
  p.abi_major = WEIR_ABI_MAJOR;
  p.abi_minor = WEIR_ABI_MINOR + 1;
  auto minor = weir::plugin::check_abi(&p, "/x/mine.so");
  REQUIRE_FALSE(minor.ok());
  CHECK(minor.error().message().find("newer than this weir's") != std::string::npos);

  p.abi_minor = WEIR_ABI_MINOR;
  p.init = [](const weir_host* host, weir_error* error) {
    host->error_set(error, weir_str{"no licence file", 15});
    return static_cast<int>(WEIR_FAILED);
  };
  CHECK(refusal(p) == "plugin /x/checks.so: failed to initialise: no licence file");
  CHECK(weir::Registry::global().find(weir::ComponentKind::Transform, "test_check_init") == nullptr);
}

TEST_CASE("plugin sdk: nothing goes unseen: unemitted events are counted, an unwound batch of its own dead-lettered") {
  TransformHarness swallow("test_sdk_swallow");
  CHECK(swallow.feed({R"({"n":1})", R"({"n":2})"}).empty());
  CHECK(swallow.metrics().events_dropped.get() == 2);

  TransformHarness unwinding("test_sdk_unwinding");
  CHECK(unwinding.feed({R"({"n":1})", R"({"n":2})"}).empty());
  REQUIRE(unwinding.dead.size() == 2);
  CHECK(unwinding.dead[0] == R"(transform failed: an exception unwound the batch holding the event {"n":1})");
  CHECK(unwinding.metrics().errors.get() == 1);
}

TEST_CASE("plugin sdk: held events from many batches keep every source's acknowledgement (not one batch's address)") {
  TransformHarness h("test_sdk_holding", "", "t.odd");
  int acked = 0;
  for (int b = 0; b < 5; ++b) {  // each input batch is freed after process: the next may reuse its address
    h.next_ack = weir::Acknowledgement::make([&](weir::DeliveryStatus, const std::string&) { ++acked; });
    h.feed({R"({"n":)" + std::to_string(2 * b) + "}", R"({"n":)" + std::to_string(2 * b + 1) + "}"});
  }
  CHECK(acked == 0);
  CHECK(h.flush().size() == 10);
  h.last.reset();
  h.flush();
  CHECK(acked == 5);
}

TEST_CASE("plugin sdk: % paths write metadata; a writer's strings land when its batch is emitted; a failed snapshot saves nothing") {
  TransformHarness h("test_sdk_writing");
  auto out = h.feed({R"({"name":"x"})", R"({"n":1})"});
  REQUIRE(out.size() == 2);
  CHECK(out[0] == R"({"name":"ok"})");
  CHECK(out[1] == R"({"n":1})");
  REQUIRE(h.last != nullptr);
  CHECK(weir::to_json(h.last->events()[1].metadata) == R"({"seen":true})");

  // A writer whose batch moved away landed its 70 values (more than one chunk) first and
  // takes no more: the late write is refused, not written into a batch it no longer knows.
  TransformHarness late("test_sdk_late");
  std::vector<std::string> names(70, R"({"name":"x"})");
  names.push_back(R"({"n":1})");
  auto written = late.feed(names);
  REQUIRE(written.size() == 71);
  for (std::size_t i = 0; i < 70; ++i) CHECK(written[i] == R"({"name":"ok"})");
  CHECK(written[70] == R"({"n":1})");
  REQUIRE(Late::refusals.size() == 1);
  CHECK(Late::refusals[0] == std::string("StringWriter: its batch was emitted"));
  CHECK(late.metrics().errors.get() == 0);

  TransformHarness bad("test_sdk_bad_state");
  CHECK_FALSE(bad.try_snapshot().has_value());
}

TEST_CASE("plugin sdk: remove by path, members with their kinds, the pipeline's clock and random source, gauges, log") {
  TransformHarness h("test_sdk_inspecting");
  h.clock_.advance_to(1700000000123456789);
  // The log goes to stderr: catch it in a file for the length of the call.
  std::FILE* caught = std::tmpfile();
  REQUIRE(caught != nullptr);
  std::fflush(stderr);
  int saved = dup(2);
  dup2(fileno(caught), 2);
  auto out = h.feed({R"({"n":1,"secret":"s","o":{"a":[1]}})", R"({"n":7,"x":-2,"y":2.5,"z":null,"b":true})"});
  std::fflush(stderr);
  dup2(saved, 2);
  close(saved);
  std::string log(4096, '\0');
  std::rewind(caught);
  log.resize(std::fread(log.data(), 1, log.size(), caught));
  std::fclose(caught);
  CHECK(log.find("removed 1 secrets") != std::string::npos);
  CHECK(log.find(" t: ") != std::string::npos);  // under the component's name

  weir::Random expected(1);  // the harness's random source, seeded 1: the plugin draws from it
  std::uint64_t first = expected.next() >> 1, second = expected.next() >> 1;
  REQUIRE(out.size() == 2);
  CHECK(out[0] == fmt::format(R"({{"n":1,"o":{{"a":[1]}},"keys":"n:int,o:object","at":1700000000123456789,"random":{}}})", first));
  CHECK(out[1] == fmt::format(R"({{"n":7,"x":-2,"y":2.5,"z":null,"b":true,"keys":"n:int,x:int,y:double,z:null,b:bool",)"
                              R"("at":1700000000123456789,"random":{}}})", second));
  std::vector<weir::metrics::ComponentRow> rows = {{"t", "transform", "test_sdk_inspecting", &h.metrics()}};
  std::string text = weir::metrics::render_prometheus(rows, {});
  CHECK(text.find("# TYPE weir_plugin_last_n gauge") != std::string::npos);
  CHECK(text.find(R"(weir_plugin_last_n{component_id="t",component_kind="transform",component_type="test_sdk_inspecting"} 7)") !=
        std::string::npos);
}

TEST_CASE("plugin sdk: runs_off_loop reaches the descriptor's off_loop and the engine; without it, 0") {
  CHECK(weir::sdk::detail::transform_type<OffLoop>().off_loop == 1);
  CHECK(weir::sdk::detail::transform_type<Bulk>().off_loop == 0);
  auto graph = weir::testing::build(
      "sources:\n  in: { type: stdin }\ntransforms:\n  a: { type: test_sdk_off_loop, inputs: [in] }\n"
      "  b: { type: test_sdk_bulk, inputs: [a] }\nsinks:\n  out: { type: blackhole, inputs: [b] }\n");
  std::map<std::string, bool> off_loop;
  for (std::size_t i = 0; i < graph.nodes.size(); ++i) {
    if (graph.nodes[i].transform) off_loop[graph.name(i)] = graph.nodes[i].transform->runs_off_loop();
  }
  CHECK(off_loop == std::map<std::string, bool>{{"a", true}, {"b", false}});
}
