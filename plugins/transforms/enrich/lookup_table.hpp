// A lookup table for `enrich`: rows of a CSV (with a header) or NDJSON file, keyed by one
// column. Loaded whole into its own arena; replaced as a whole when the file changes.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "weir/arena.hpp"
#include "weir/result.hpp"
#include "weir/value.hpp"

namespace weir::plugins {

class LookupTable {
 public:
  // CSV cells that are integers become integers, empty cells null; NDJSON keeps its types.
  static Result<std::shared_ptr<LookupTable>> load(const std::string& path, const std::string& key_column);

  const Value* find(std::string_view key) const;  // the row (an object), or null
  std::size_t size() const { return rows_.size(); }

  // The text a key value is looked up by: strings as they are, numbers in decimal.
  static std::string key_text(const Value& value);

 private:
  Arena arena_{1 << 20};
  std::unordered_map<std::string_view, Value> rows_;
};

}  // namespace weir::plugins
