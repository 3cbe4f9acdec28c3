#include <fmt/format.h>

#include "weir/result.hpp"

namespace weir {

std::string SourceLocation::to_string() const {
  if (file.empty()) return {};
  if (line <= 0) return file;
  return fmt::format("{}:{}:{}", file, line, column);
}

std::string Error::to_string(std::string_view severity) const {
  std::string where = where_.to_string();
  if (where.empty()) return fmt::format("{}: {}", severity, message_);
  return fmt::format("{}: {}: {}", where, severity, message_);
}

}  // namespace weir
