// A file path with `{{ field.path }}` placeholders and strftime specifiers (`%Y-%m-%d`),
// rendered per event: fields from the event, time from its `timestamp` field (UTC), or the
// time of writing when it has none.
#pragma once

#include <string>
#include <vector>

#include "weir/event.hpp"
#include "weir/result.hpp"
#include "weir/time.hpp"

namespace weir::plugins {

class PathTemplate {
 public:
  static Result<PathTemplate> parse(const std::string& text);

  bool is_constant() const { return constant_; }
  const std::string& text() const { return text_; }
  // The rendered path, or an error naming the missing field.
  Result<std::string> render(const Event& event, EpochNanos fallback_time) const;

 private:
  struct Segment {
    bool is_field = false;
    std::string text;  // literal (may hold strftime specifiers) or field path
  };
  std::string text_;
  std::vector<Segment> segments_;
  bool constant_ = true;
  bool uses_time_ = false;
};

}  // namespace weir::plugins
