// A lookup table for `enrich`: rows of a CSV (with a header) or NDJSON file, keyed by one
// column. Loaded whole into its own arena; replaced as a whole when the file changes.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "weir/arena.hpp"
#include "weir/result.hpp"
#include "weir/value.hpp"

namespace weir::plugins {

class LookupTable {
 public:
  // CSV cells that are integers become integers, empty cells null; NDJSON keeps its types.
  static Result<std::shared_ptr<LookupTable>> load(const std::string& path, const std::string& key_column);
  // The same from the file's text; `name` is what errors call it (its path).
  enum class Format { Csv, Ndjson };
  static Result<std::shared_ptr<LookupTable>> parse(std::string_view text, Format format, const std::string& key_column,
                                                    std::string_view name);

  const Value* find(std::string_view key) const;  // the row (an object), or null
  std::size_t size() const { return rows_.size(); }

  // The text a key value is looked up by: strings as they are, numbers in decimal.
  static std::string key_text(const Value& value);

 private:
  struct Row {
    std::string_view key;  // in arena_
    Value value;
  };
  // Open addressing over `rows_`: each slot holds 32 bits of the key's hash and the row's
  // index + 1 (0: empty), at most half full. A node-based map made loading a 1M-row table
  // a million allocations and cache misses (half the load time), and freeing it as slow.
  struct Slot {
    std::uint32_t hash_tag = 0;
    std::uint32_t row = 0;
  };
  void reserve(std::size_t rows);
  void insert_or_assign(std::string_view key, Value value);

  Arena arena_{1 << 20};
  std::vector<Row> rows_;
  std::vector<Slot> slots_;
};

}  // namespace weir::plugins
