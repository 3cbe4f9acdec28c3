#include "weir/field_template.hpp"

#include <ctime>

#include <fmt/format.h>

#include "weir/json.hpp"

namespace weir {

Result<FieldTemplate> FieldTemplate::parse(const std::string& text, std::string what) {
  FieldTemplate t;
  t.text_ = text;
  t.what_ = std::move(what);
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t open = text.find("{{", at);
    if (open == std::string::npos) {
      t.segments_.push_back({false, text.substr(at)});
      break;
    }
    if (open > at) t.segments_.push_back({false, text.substr(at, open - at)});
    std::size_t close = text.find("}}", open + 2);
    if (close == std::string::npos) return Error(fmt::format("unclosed '{{{{' in {} '{}'", t.what_, text));
    std::string_view inner = std::string_view(text).substr(open + 2, close - open - 2);
    auto first = inner.find_first_not_of(' ');
    auto last = inner.find_last_not_of(' ');
    std::string field = first == std::string_view::npos ? std::string() : std::string(inner.substr(first, last - first + 1));
    if (field.empty()) return Error(fmt::format("empty '{{{{ }}}}' in {} '{}'", t.what_, text));
    t.segments_.push_back({true, field});
    t.constant_ = false;
    at = close + 2;
  }
  for (const Segment& s : t.segments_) {
    if (!s.is_field && s.text.find('%') != std::string::npos) t.uses_time_ = true;
  }
  if (t.uses_time_) t.constant_ = false;
  return t;
}

Result<std::string> FieldTemplate::render(const Event& event, EpochNanos fallback_time, Pieces pieces) const {
  if (constant_) return text_;
  std::tm tm{};
  if (uses_time_) {
    EpochNanos time = fallback_time;
    if (const Value* ts = event.fields.find("timestamp")) {
      auto parsed = parse_timestamp(*ts);
      if (parsed.ok()) time = parsed.value();
    }
    std::time_t seconds = static_cast<std::time_t>(time / 1'000'000'000 - (time % 1'000'000'000 < 0 ? 1 : 0));
    gmtime_r(&seconds, &tm);
  }
  std::string out;
  for (const Segment& s : segments_) {
    if (s.is_field) {
      const Value* v = event.fields.find_path(s.text);
      if (v == nullptr || v->is_null()) return Error(fmt::format("{} field '{}' is missing", what_, s.text));
      std::string piece = v->is_string() ? std::string(v->as_string()) : to_json(*v);
      if (pieces == Pieces::PathSafe) {
        // A value never climbs out of the directory the template names.
        for (char& c : piece) {
          if (c == '/' || c == '\0') c = '_';
        }
        if (piece == ".." || piece == ".") piece.assign(1, '_');
      }
      out += piece;
    } else if (uses_time_ && s.text.find('%') != std::string::npos) {
      char buffer[512];
      std::size_t n = std::strftime(buffer, sizeof buffer, s.text.c_str(), &tm);
      out.append(buffer, n);
    } else {
      out += s.text;
    }
  }
  return out;
}

}  // namespace weir::plugins
