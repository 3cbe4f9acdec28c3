#include <fmt/format.h>

#include "weir/result.hpp"

namespace weir {

std::string SourceLocation::to_string() const {
  if (file.empty()) return {};
  if (line <= 0) return file;
  return fmt::format("{}:{}:{}", file, line, column);
}

std::string Error::to_string() const {
  std::string where = where_.to_string();
  if (where.empty()) return "error: " + message_;
  return where + ": error: " + message_;
}

}  // namespace weir
