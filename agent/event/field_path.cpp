#include "weir/field_path.hpp"

#include <cstring>

namespace weir {

FieldPath::FieldPath(std::string_view dotted) : text_(dotted) {
  if (dotted.empty()) return;
  for (;;) {
    auto dot = dotted.find('.');
    segments_.push_back(Segment{std::string(dotted.substr(0, dot))});
    if (dot == std::string_view::npos) break;
    dotted.remove_prefix(dot + 1);
  }
}

Value* FieldPath::scan(std::span<Member> members, const Segment& segment) {
  for (std::uint32_t i = 0; i < members.size(); ++i) {
    if (same_text(members[i].key, segment.name)) {
      segment.hint = i;
      return &members[i].value;
    }
  }
  return nullptr;
}

Value* FieldPath::find_nested(Value& root) const {
  Value* at = &root;
  for (const Segment& segment : segments_) {
    at = lookup(*at, segment);
    if (at == nullptr) return nullptr;
  }
  return segments_.empty() ? nullptr : at;
}

void FieldPath::set(Arena& arena, Value& root, Value value) const {
  if (segments_.empty()) return;
  Value* at = &root;
  if (!at->is_object()) *at = Value::object(arena, 4);
  for (std::size_t i = 0; i < segments_.size(); ++i) {
    const Segment& segment = segments_[i];
    bool last = i + 1 == segments_.size();
    Value* next = lookup(*at, segment);
    if (next == nullptr) {
      at->append_member(arena, arena.copy(segment.name), last ? value : Value::object(arena, 4));
      segment.hint = static_cast<std::uint32_t>(at->size() - 1);
      next = &at->members().back().value;
      if (last) return;
    } else if (last) {
      *next = value;
      return;
    } else if (!next->is_object()) {
      *next = Value::object(arena, 4);
    }
    at = next;
  }
}

bool FieldPath::erase(Value& root) const {
  if (segments_.empty()) return false;
  Value* parent = &root;
  for (std::size_t i = 0; i + 1 < segments_.size(); ++i) {
    parent = lookup(*parent, segments_[i]);
    if (parent == nullptr) return false;
  }
  return parent->erase(segments_.back().name);
}

}  // namespace weir
