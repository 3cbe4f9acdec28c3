#include "weir/value.hpp"

#include <algorithm>
#include <cstring>

namespace weir {

std::string_view kind_name(Kind kind) {
  switch (kind) {
    case Kind::Null: return "null";
    case Kind::Bool: return "boolean";
    case Kind::Int: return "integer";
    case Kind::Uint: return "integer";
    case Kind::Double: return "float";
    case Kind::String: return "string";
    case Kind::Array: return "array";
    case Kind::Object: return "object";
  }
  return "unknown";
}

Value Value::object(Arena& arena, std::uint32_t capacity) {
  Value v(Kind::Object);
  auto* data = arena.allocate_array<ObjectData>(1);
  data->items = capacity ? arena.allocate_array<Member>(capacity) : nullptr;
  data->size = 0;
  data->capacity = capacity;
  v.object_ = data;
  return v;
}

Value Value::array(Arena& arena, std::uint32_t capacity) {
  Value v(Kind::Array);
  auto* data = arena.allocate_array<ArrayData>(1);
  data->items = capacity ? arena.allocate_array<Value>(capacity) : nullptr;
  data->size = 0;
  data->capacity = capacity;
  v.array_ = data;
  return v;
}

double Value::to_double() const {
  switch (kind_) {
    case Kind::Int: return static_cast<double>(int_);
    case Kind::Uint: return static_cast<double>(uint_);
    case Kind::Double: return double_;
    case Kind::Bool: return bool_ ? 1.0 : 0.0;
    default: return 0.0;
  }
}

std::span<Value> Value::elements() {
  if (kind_ != Kind::Array) return {};
  return {array_->items, array_->size};
}
std::span<const Value> Value::elements() const {
  if (kind_ != Kind::Array) return {};
  return {array_->items, array_->size};
}

std::size_t Value::size() const {
  switch (kind_) {
    case Kind::Object: return object_->size;
    case Kind::Array: return array_->size;
    case Kind::String: return length_;
    default: return 0;
  }
}

Value* Value::find(std::string_view key) {
  if (kind_ != Kind::Object) return nullptr;
  for (std::uint32_t i = 0; i < object_->size; ++i) {
    if (same_text(object_->items[i].key, key)) return &object_->items[i].value;
  }
  return nullptr;
}

const Value* Value::find(std::string_view key) const { return const_cast<Value*>(this)->find(key); }

void Value::grow_object(Arena& arena) {
  ObjectData* o = object_;
  std::uint32_t grown = o->capacity ? o->capacity * 2 : 4;
  Member* items = arena.allocate_array<Member>(grown);
  if (o->size) std::memcpy(static_cast<void*>(items), o->items, sizeof(Member) * o->size);
  o->items = items;
  o->capacity = grown;
}

void Value::set(Arena& arena, std::string_view key, Value value) {
  if (Value* existing = find(key)) {
    *existing = value;
    return;
  }
  append_member(arena, key, value);
}

bool Value::erase(std::string_view key) {
  if (kind_ != Kind::Object) return false;
  ObjectData* o = object_;
  for (std::uint32_t i = 0; i < o->size; ++i) {
    if (o->items[i].key == key) {
      std::memmove(static_cast<void*>(o->items + i), o->items + i + 1, sizeof(Member) * (o->size - i - 1));
      --o->size;
      return true;
    }
  }
  return false;
}

void Value::push_back(Arena& arena, Value value) {
  ArrayData* a = array_;
  if (a->size == a->capacity) {
    std::uint32_t grown = a->capacity ? a->capacity * 2 : 4;
    Value* items = arena.allocate_array<Value>(grown);
    if (a->size) std::memcpy(static_cast<void*>(items), a->items, sizeof(Value) * a->size);
    a->items = items;
    a->capacity = grown;
  }
  a->items[a->size++] = value;
}

Value* Value::find_path(std::string_view path) {
  Value* at = this;
  while (at) {
    auto dot = path.find('.');
    if (dot == std::string_view::npos) return at->find(path);
    at = at->find(path.substr(0, dot));
    path.remove_prefix(dot + 1);
  }
  return nullptr;
}

const Value* Value::find_path(std::string_view path) const { return const_cast<Value*>(this)->find_path(path); }

void Value::set_path(Arena& arena, std::string_view path, Value value) {
  Value* at = this;
  for (;;) {
    auto dot = path.find('.');
    if (dot == std::string_view::npos) {
      at->set(arena, path, value);
      return;
    }
    std::string_view head = path.substr(0, dot);
    Value* next = at->find(head);
    if (next == nullptr || !next->is_object()) {
      at->set(arena, head, Value::object(arena, 4));
      next = at->find(head);
    }
    at = next;
    path.remove_prefix(dot + 1);
  }
}

bool Value::erase_path(std::string_view path) {
  auto dot = path.rfind('.');
  if (dot == std::string_view::npos) return erase(path);
  Value* parent = find_path(path.substr(0, dot));
  return parent != nullptr && parent->erase(path.substr(dot + 1));
}

bool operator==(const Value& a, const Value& b) {
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Kind::Null: return true;
    case Kind::Bool: return a.as_bool() == b.as_bool();
    case Kind::Int: return a.as_int() == b.as_int();
    case Kind::Uint: return a.as_uint() == b.as_uint();
    // Bitwise, so that -0.0 != 0.0 and a round trip is checked exactly.
    case Kind::Double: {
      double x = a.as_double(), y = b.as_double();
      return std::memcmp(&x, &y, sizeof x) == 0;
    }
    case Kind::String: return a.as_string() == b.as_string();
    case Kind::Array: {
      auto x = a.elements(), y = b.elements();
      return std::equal(x.begin(), x.end(), y.begin(), y.end());
    }
    case Kind::Object: {
      auto x = a.members(), y = b.members();
      if (x.size() != y.size()) return false;
      for (const Member& m : x) {
        const Value* other = b.find(m.key);
        if (other == nullptr || !(*other == m.value)) return false;
      }
      return true;
    }
  }
  return false;
}

Value deep_copy(const Value& value, Arena& arena) {
  switch (value.kind()) {
    case Kind::String: return Value::string(arena, value.as_string());
    case Kind::Array: {
      Value copy = Value::array(arena, static_cast<std::uint32_t>(value.size()));
      for (const Value& item : value.elements()) copy.push_back(arena, deep_copy(item, arena));
      return copy;
    }
    case Kind::Object: {
      Value copy = Value::object(arena, static_cast<std::uint32_t>(value.size()));
      for (const Member& m : value.members()) copy.append_member(arena, arena.copy(m.key), deep_copy(m.value, arena));
      return copy;
    }
    default: return value;
  }
}

}  // namespace weir
