// Text with `{{ field.path }}` placeholders and strftime specifiers (`%Y-%m-%d`), rendered
// per event: fields from the event, time from its `timestamp` field (UTC), or the time of
// writing when it has none. The file sink's paths, the kafka sink's topics. `what` names it
// in errors ("path template", "topic").
#pragma once

#include <string>
#include <vector>

#include "weir/event.hpp"
#include "weir/result.hpp"
#include "weir/time.hpp"

namespace weir {

class FieldTemplate {
 public:
  static Result<FieldTemplate> parse(const std::string& text, std::string what);

  bool is_constant() const { return constant_; }
  const std::string& text() const { return text_; }
  // How a field's value goes in: as it is, or made safe for a path (no '/', NUL, "." or "..").
  enum class Pieces { AsIs, PathSafe };
  // The rendered text, or an error naming the missing field.
  Result<std::string> render(const Event& event, EpochNanos fallback_time, Pieces pieces = Pieces::AsIs) const;

 private:
  struct Segment {
    bool is_field = false;
    std::string text;  // literal (may hold strftime specifiers) or field path
  };
  std::string text_;
  std::string what_;
  std::vector<Segment> segments_;
  bool constant_ = true;
  bool uses_time_ = false;
};

}  // namespace weir::plugins
