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

Value* FieldPath::lookup(Value& object, const Segment& segment) {
  std::span<Member> members = object.members();  // empty unless an object
  const std::string_view key = segment.name;
  const std::uint32_t hint = segment.hint;
  if (hint < members.size()) {
    std::string_view at = members[hint].key;
    if (at.size() == key.size() && std::memcmp(at.data(), key.data(), key.size()) == 0) return &members[hint].value;
  }
  for (std::uint32_t i = 0; i < members.size(); ++i) {
    std::string_view at = members[i].key;
    if (at.size() == key.size() && (key.empty() || (at.front() == key.front() && std::memcmp(at.data(), key.data(), key.size()) == 0))) {
      segment.hint = i;
      return &members[i].value;
    }
  }
  return nullptr;
}

Value* FieldPath::find(Value& root) const {
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
