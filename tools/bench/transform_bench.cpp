// weir-transform-bench -c PIPELINE.yaml [-c OTHER.yaml] FILE.ndjson: the time a chain of
// transforms takes by itself. The file is read and decoded into batches the way the stdin
// source does it (256 KiB reads), untimed; then each batch goes through the pipeline's
// transforms, in the order their inputs chain them, and only those process() calls are
// timed. Prints one JSON
// line: {"events":..,"seconds":..,"per_transform":{"name":seconds,..}}. With two pipelines,
// every batch goes through both chains (a copy through one), in alternating order, and the
// line holds both: {"events":..,"a":{..},"b":{..}}: the way to compare two transforms.
//
// The difference of two whole-pipeline runs (bench.py prints that too) also counts the
// runtime's hand-offs between components; this counts the transforms' own work.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <cstdio>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "config/config.hpp"
#include "topology/graph.hpp"
#include "weir/codec.hpp"
#include "weir/component.hpp"
#include "weir/field_path.hpp"
#include "weir/metrics.hpp"
#include "weir/registry.hpp"

namespace {

using namespace weir;

// Collects what a transform emits; the next transform takes it from here.
class ChainContext final : public TransformContext {
 public:
  explicit ChainContext(std::string name) : name_(std::move(name)) {}
  uv_loop_t* loop() override { return nullptr; }
  const std::string& name() const override { return name_; }
  const std::string& type() const override { return name_; }
  const std::string& data_dir() const override { return data_dir_; }
  ComponentMetrics& metrics() override { return metrics_; }
  const Clock& clock() const override { return clock_; }
  Random& random() override { return random_; }
  bool dead_letter(const Event&, std::string_view) override { return ++dead_letters, true; }
  bool dead_letter_raw(std::string_view, std::uint64_t, std::string_view) override { return ++dead_letters, true; }
  void hold_until_dead_letters_written(std::vector<AckRef>) override {}  // nothing is written
  void fail_pipeline(std::string_view reason) override {
    std::fprintf(stderr, "%s failed the pipeline: %.*s\n", name_.c_str(), static_cast<int>(reason.size()), reason.data());
  }
  void emit(BatchPtr batch, std::size_t) override { out.push_back(std::move(batch)); }

  std::vector<BatchPtr> out;
  std::uint64_t dead_letters = 0;

 private:
  std::string name_, data_dir_ = "/tmp";
  ComponentMetrics metrics_;
  SystemClock clock_;
  Random random_{1};
};

// The built-in side of the plugin-overhead comparison (tools/bench/plugins/ has the same
// two on the SDK): a transform that passes batches on, and one that prefixes a field.
class BenchNoop final : public Transform {
 public:
  static Result<std::unique_ptr<BenchNoop>> create(const Options&) { return std::make_unique<BenchNoop>(); }
  void process(BatchPtr batch, TransformContext& ctx) override { ctx.emit(std::move(batch)); }
};

class BenchRewrite final : public Transform {
 public:
  static Result<std::unique_ptr<BenchRewrite>> create(const Options& o) {
    auto self = std::make_unique<BenchRewrite>();
    self->field_ = FieldPath(o.string("field"));
    return self;
  }
  void process(BatchPtr batch, TransformContext& ctx) override {
    Arena& arena = batch->arena();
    std::vector<Event>& events = batch->events();
    for (std::size_t i = 0; i < events.size(); ++i) {
      prefetch_ahead(events, i);  // as weir's own transforms do
      Value* value = field_.find(events[i].fields);
      if (value == nullptr || !value->is_string()) continue;
      std::string_view text = value->as_string();
      char* out = static_cast<char*>(arena.allocate(text.size() + 2, 1));
      out[0] = 'u';
      out[1] = '-';
      std::memcpy(out + 2, text.data(), text.size());
      *value = Value::string_view(std::string_view(out, text.size() + 2));
    }
    ctx.emit(std::move(batch));
  }

 private:
  FieldPath field_;
};

const OptionSchema kRewriteSchema = {
    {.name = "field", .type = OptionType::String, .default_value = "user_name", .doc = "The field."}};
WEIR_REGISTER_TRANSFORM("bench_noop", "Passes batches on untouched (benchmark)", OptionSchema{}, BenchNoop::create);
WEIR_REGISTER_TRANSFORM("bench_rewrite", "Prefixes a string field (benchmark)", kRewriteSchema, BenchRewrite::create);

// One pipeline's chain of transforms: from the (single) source, the transform that takes
// the previous component as its input, and so on.
struct Chain {
  topology::Graph graph;
  std::vector<std::size_t> nodes;
  std::vector<std::unique_ptr<ChainContext>> contexts;
  std::vector<double> seconds;
  std::uint64_t events_out = 0;

  Status load(const std::string& path) {
    config::Diagnostics diagnostics;
    graph = topology::build(config::load({path}, diagnostics), diagnostics);
    if (!diagnostics.ok()) return diagnostics.errors.front();
    std::size_t previous = graph.nodes.size();
    for (std::size_t i = 0; i < graph.nodes.size(); ++i) {
      if (graph.nodes[i].kind == ComponentKind::Source) previous = i;
    }
    for (bool found = true; found;) {
      found = false;
      for (std::size_t i = 0; i < graph.nodes.size(); ++i) {
        const auto& node = graph.nodes[i];
        if (node.transform && node.inputs.size() == 1 && node.inputs[0].node == previous) {
          nodes.push_back(i);
          previous = i;
          found = true;
          break;
        }
      }
    }
    if (nodes.empty()) return Error(path + ": no transform takes the source's output");
    for (std::size_t i : nodes) {
      contexts.push_back(std::make_unique<ChainContext>(graph.name(i)));
      if (Status started = graph.nodes[i].transform->start(*contexts.back()); !started.ok()) return started;
    }
    seconds.assign(nodes.size(), 0.0);
    return {};
  }

  // Each transform's process() calls timed, in chain order.
  void process(BatchPtr batch) {
    std::vector<BatchPtr> batches;
    batches.push_back(std::move(batch));
    for (std::size_t t = 0; t < nodes.size(); ++t) {
      auto start = std::chrono::steady_clock::now();
      for (BatchPtr& b : batches) graph.nodes[nodes[t]].transform->process(std::move(b), *contexts[t]);
      seconds[t] += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      batches = std::move(contexts[t]->out);
      contexts[t]->out.clear();
    }
    for (const BatchPtr& b : batches) events_out += b->size();
  }

  void flush() {
    for (std::size_t t = 0; t < nodes.size(); ++t) graph.nodes[nodes[t]].transform->flush(*contexts[t]);
  }

  std::string report() const {
    double total = 0;
    std::string per;
    std::uint64_t dead = 0;
    for (std::size_t t = 0; t < nodes.size(); ++t) {
      total += seconds[t];
      dead += contexts[t]->dead_letters;
      per += fmt::format("{}\"{}\":{:.6f}", t ? "," : "", graph.name(nodes[t]), seconds[t]);
    }
    return fmt::format("\"events_out\":{},\"dead_letters\":{},\"seconds\":{:.6f},\"per_transform\":{{{}}}", events_out,
                       dead, total, per);
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> configs;
  std::string file;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "-c" && i + 1 < argc) configs.push_back(argv[++i]);
    else if (file.empty()) file = argv[i];
  }
  if (configs.empty() || configs.size() > 2 || file.empty()) {
    std::fprintf(stderr, "usage: weir-transform-bench -c PIPELINE.yaml [-c OTHER.yaml] FILE.ndjson\n");
    return 2;
  }
  std::vector<Chain> chains(configs.size());
  for (std::size_t c = 0; c < configs.size(); ++c) {
    if (Status loaded = chains[c].load(configs[c]); !loaded.ok()) {
      std::fprintf(stderr, "%s\n", loaded.error().to_string().c_str());
      return 2;
    }
  }

  int fd = ::open(file.c_str(), O_RDONLY);
  if (fd < 0) {
    std::perror(file.c_str());
    return 1;
  }
  LineStream stream(Codec::Json, 100 << 10);
  std::vector<DecodeRejection> rejected;
  std::uint64_t events_in = 0, round = 0;
  for (;;) {
    std::size_t available = 0;
    char* space = stream.read_space(available);
    ssize_t n = ::read(fd, space, available);
    auto batch = EventBatch::create();
    rejected.clear();
    if (n > 0) stream.commit(static_cast<std::size_t>(n), *batch, rejected);
    else stream.finish(*batch, rejected);
    events_in += batch->size();
    if (chains.size() == 1) {
      chains[0].process(std::move(batch));
    } else {
      // Two chains compared: each batch through both (a copy for one), the order
      // alternating, so a slow spell of the machine and the first touch of the batch's
      // memory fall on both alike.
      BatchPtr copy = batch->clone();
      bool first_a = (round++ % 2) == 0;
      chains[first_a ? 0 : 1].process(std::move(batch));
      chains[first_a ? 1 : 0].process(std::move(copy));
    }
    if (n <= 0) break;
  }
  ::close(fd);
  for (Chain& chain : chains) chain.flush();
  if (chains.size() == 1) {
    std::printf("{\"events\":%llu,%s}\n", static_cast<unsigned long long>(events_in), chains[0].report().c_str());
  } else {
    std::printf("{\"events\":%llu,\"a\":{%s},\"b\":{%s}}\n", static_cast<unsigned long long>(events_in),
                chains[0].report().c_str(), chains[1].report().c_str());
  }
  return 0;
}
