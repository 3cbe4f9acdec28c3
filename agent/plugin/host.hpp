// The host side of the plugin ABI (weir/plugin.h): the function table weir hands every
// plugin, and the handles behind its opaque types. A plugin's values, paths, buffers and
// metrics are weir's own objects seen through opaque pointers, so the ABI adds one
// indirect call per operation and no copies.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "weir/component.hpp"
#include "weir/ids.hpp"
#include "weir/json.hpp"
#include "weir/options.hpp"
#include "weir/plugin.h"
#include "weir/result.hpp"

// The opaque types whose layout is the host's alone.
struct weir_error {
  std::optional<weir::Error> error;
};

namespace weir::plugin {

const weir_host& host_table();

struct HostOptions : weir_options {
  explicit HostOptions(const Options& o) : weir_options{&host_table()}, options(&o) {}
  const Options* options;
};

// One transform instance's context. `ctx` is the engine's, set for the length of each call
// into the plugin.
struct HostContext : weir_context {
  HostContext() : weir_context{&host_table()} {}
  TransformContext* ctx = nullptr;
  std::size_t output_count = 1;
  std::string plugin_name;  // for messages
  std::unique_ptr<JsonParser> parser;  // made on first use
  std::optional<UuidGenerator> uuids;  // seeded from the context's random() on first use
  std::uint64_t bad_outputs = 0;
};

struct HostBatch : weir_batch {
  HostBatch(BatchPtr b, HostContext* c, bool made_by_plugin)
      : weir_batch{&host_table()}, batch(std::move(b)), arena(&batch->arena()), context(c), heap(made_by_plugin),
        serial(serials.fetch_add(1, std::memory_order_relaxed) + 1) {}
  BatchPtr batch;            // null once emitted
  Arena* arena;              // the batch's, looked up once (every write allocates in it)
  HostContext* context;
  bool heap;                 // from batch_new: deleted when emitted or released
  std::vector<std::uint8_t> gone;  // per event: 1 removed (counted as discarded), 2 moved or rejected
  std::size_t removed = 0;   // events marked 1
  std::size_t moved = 0;     // events marked 2
  // batch_move_event's last source, by serial (an address could be reused by the next
  // batch): its arenas and acknowledgements are taken on once per source.
  std::uint64_t last_adopted = 0;
  std::uint64_t serial;
  // Any thread: a transform that runs off the loop makes batches on a decoding thread.
  static inline std::atomic<std::uint64_t> serials{0};

  bool is_gone(std::size_t i) const { return i < gone.size() && gone[i] != 0; }
  void mark(std::size_t i, std::uint8_t how);
  // The batch without its removed, moved and rejected events.
  BatchPtr take_compacted();
  // Events still in it (not removed, moved or rejected).
  std::size_t remaining() const { return batch == nullptr ? 0 : batch->size() - removed - moved; }
};

}  // namespace weir::plugin
