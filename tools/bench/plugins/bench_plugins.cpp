// Transforms for measuring the plugin ABI's cost (tools/bench/bench.py, "plugin overhead"):
// the same two transforms as weir-transform-bench's built-in bench_noop and bench_rewrite,
// written on the SDK and loaded from this .so.
#include <cstring>
#include <string>
#include <vector>

#include "weir/sdk.hpp"

namespace {

using namespace weir::sdk;

struct NoopPlugin {
  static constexpr const char* type = "bench_noop_plugin";
  static constexpr const char* summary = "Passes batches on untouched (benchmark)";
  static inline const std::vector<Option> options = {};
  explicit NoopPlugin(const Options&) {}
  void process(Batch& batch, Context& ctx) { ctx.emit(batch); }
};

// `user_name` becomes "u-" + user_name.
struct RewritePlugin {
  static constexpr const char* type = "bench_rewrite_plugin";
  static constexpr const char* summary = "Prefixes a string field (benchmark)";
  static inline const std::vector<Option> options = {
      {.name = "field", .type = OptionType::String, .default_value = "user_name", .doc = "The field."}};
  explicit RewritePlugin(const Options& o) : field_(o.string("field")) {}
  void process(Batch& batch, Context& ctx) {
    FieldReader<1> read(batch, field_);
    StringWriter write(batch);
    for (Event event : batch) {
      auto [value] = read(event);
      if (!value.is_string()) continue;
      std::string_view text = value.as_string();
      char* out = write.set(value, text.size() + 2);
      out[0] = 'u';
      out[1] = '-';
      std::memcpy(out + 2, text.data(), text.size());
    }
    write.flush();
    ctx.emit(batch);
  }
  Path field_;
};

}  // namespace

WEIR_PLUGIN("bench", "1.0.0", NoopPlugin, RewritePlugin)
