// FieldPath: a dotted field path ("payload.request.id") compiled once and looked up in
// many events.
//
// Each segment remembers where in its object it was found last time and tries that
// position first. Events of one stream mostly share a layout (CVAT's 17 columns in the
// same order), so a lookup usually costs one key comparison per segment instead of a scan
// over the object's members. The hints change on lookup: a FieldPath is not thread-safe,
// and each component keeps its own.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "weir/arena.hpp"
#include "weir/value.hpp"

namespace weir {

class FieldPath {
 public:
  FieldPath() = default;
  explicit FieldPath(std::string_view dotted);

  const std::string& text() const { return text_; }
  bool empty() const { return segments_.empty(); }
  std::size_t depth() const { return segments_.size(); }

  Value* find(Value& root) const {
    if (segments_.size() == 1) return lookup(root, segments_.front());
    return find_nested(root);
  }
  const Value* find(const Value& root) const { return find(const_cast<Value&>(root)); }
  // Sets the value, creating intermediate objects as needed and replacing non-object
  // intermediates. New keys are copied into `arena`, so the event does not depend on
  // this FieldPath outliving it.
  void set(Arena& arena, Value& root, Value value) const;
  bool erase(Value& root) const;

 private:
  struct Segment {
    std::string name;
    mutable std::uint32_t hint = 0;
  };
  // The member of `object` named by `segment`, or nullptr: the hinted position first.
  static Value* lookup(Value& object, const Segment& segment) {
    std::span<Member> members = object.members();  // empty unless an object
    if (segment.hint < members.size() && same_text(members[segment.hint].key, segment.name)) {
      return &members[segment.hint].value;
    }
    return scan(members, segment);
  }
  static Value* scan(std::span<Member> members, const Segment& segment);
  Value* find_nested(Value& root) const;

  std::string text_;
  std::vector<Segment> segments_;
};

}  // namespace weir
