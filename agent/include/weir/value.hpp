// Value: one JSON-like datum (null, bool, int64, uint64, double, string, array, object).
// A Value is 16 trivially copyable bytes; strings, arrays and objects point into an Arena
// (or, for strings, into an input buffer the batch keeps alive), so copying a Value never
// copies its contents. Use deep_copy() to move a value into another arena.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include "weir/arena.hpp"

namespace weir {

enum class Kind : std::uint8_t { Null, Bool, Int, Uint, Double, String, Array, Object };
std::string_view kind_name(Kind kind);

struct Member;
struct ObjectData;
struct ArrayData;

class Value {
 public:
  Value() : kind_(Kind::Null), length_(0), int_(0) {}

  static Value null() { return {}; }
  static Value boolean(bool b) { Value v(Kind::Bool); v.bool_ = b; return v; }
  static Value integer(std::int64_t i) { Value v(Kind::Int); v.int_ = i; return v; }
  // Non-negative values that fit int64 are stored as Int, so equal numbers compare equal.
  static Value uinteger(std::uint64_t u) {
    if (u <= std::uint64_t(INT64_MAX)) return integer(std::int64_t(u));
    Value v(Kind::Uint); v.uint_ = u; return v;
  }
  static Value floating(double d) { Value v(Kind::Double); v.double_ = d; return v; }
  // The caller guarantees `text` outlives the value (arena or retained input buffer).
  static Value string_view(std::string_view text) {
    Value v(Kind::String);
    v.string_ = text.data();
    v.length_ = static_cast<std::uint32_t>(text.size());
    return v;
  }
  static Value string(Arena& arena, std::string_view text) { return string_view(arena.copy(text)); }
  static Value object(Arena& arena, std::uint32_t capacity = 8);
  static Value array(Arena& arena, std::uint32_t capacity = 4);

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::Null; }
  bool is_bool() const { return kind_ == Kind::Bool; }
  bool is_int() const { return kind_ == Kind::Int; }
  bool is_uint() const { return kind_ == Kind::Uint; }
  bool is_double() const { return kind_ == Kind::Double; }
  bool is_number() const { return kind_ == Kind::Int || kind_ == Kind::Uint || kind_ == Kind::Double; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_array() const { return kind_ == Kind::Array; }
  bool is_object() const { return kind_ == Kind::Object; }

  bool as_bool() const { return bool_; }
  std::int64_t as_int() const { return int_; }
  std::uint64_t as_uint() const { return uint_; }
  double as_double() const { return double_; }
  std::string_view as_string() const { return {string_, length_}; }
  // Any number as double (lossy above 2^53), for comparisons and arithmetic.
  double to_double() const;

  // Objects. Keys are views; set() copies nothing, so pass keys that live long enough
  // (string literals, arena copies).
  std::span<Member> members();
  std::span<const Member> members() const;
  Value* find(std::string_view key);
  const Value* find(std::string_view key) const;
  void set(Arena& arena, std::string_view key, Value value);
  bool erase(std::string_view key);
  // Appends without checking for an existing key (decoders; keys known to be unique).
  inline void append_member(Arena& arena, std::string_view key, Value value);

  // Dotted paths ("payload.request.id") through nested objects.
  Value* find_path(std::string_view path);
  const Value* find_path(std::string_view path) const;
  // Creates intermediate objects as needed; replaces non-object intermediates.
  void set_path(Arena& arena, std::string_view path, Value value);
  bool erase_path(std::string_view path);

  // Arrays.
  std::span<Value> elements();
  std::span<const Value> elements() const;
  void push_back(Arena& arena, Value value);

  std::size_t size() const;  // members, elements or string bytes

  // Hints for loops over the events of a batch decoded on another core, where every first
  // touch of an event is a cache miss. prefetch_object() asks for an object's header;
  // prefetch_members(), once that header is in, for its members and the strings decoded
  // after them (`after` bytes past the members).
  void prefetch_object() const {
    if (kind_ == Kind::Object) __builtin_prefetch(object_);
  }
  inline void prefetch_members(std::size_t after) const;

 private:
  explicit Value(Kind kind) : kind_(kind), length_(0), int_(0) {}
  void grow_object(Arena& arena);

  Kind kind_;
  std::uint32_t length_;  // string bytes
  union {
    bool bool_;
    std::int64_t int_;
    std::uint64_t uint_;
    double double_;
    const char* string_;
    ObjectData* object_;
    ArrayData* array_;
  };
};

struct Member {
  std::string_view key;
  Value value;
};

struct ObjectData {
  Member* items;
  std::uint32_t size;
  std::uint32_t capacity;
};

struct ArrayData {
  Value* items;
  std::uint32_t size;
  std::uint32_t capacity;
};

inline std::span<Member> Value::members() {
  if (kind_ != Kind::Object) return {};
  return {object_->items, object_->size};
}
inline std::span<const Member> Value::members() const {
  if (kind_ != Kind::Object) return {};
  return {object_->items, object_->size};
}

// Equality of two short strings without a call: most field names are 2..16 bytes, compared
// as two overlapping loads from each end (never past either string).
inline bool same_text(std::string_view a, std::string_view b) {
  const std::size_t n = a.size();
  if (n != b.size()) return false;
  const char* x = a.data();
  const char* y = b.data();
  if (n >= 8 && n <= 16) {
    std::uint64_t x0, x1, y0, y1;
    std::memcpy(&x0, x, 8);
    std::memcpy(&y0, y, 8);
    std::memcpy(&x1, x + n - 8, 8);
    std::memcpy(&y1, y + n - 8, 8);
    return ((x0 ^ y0) | (x1 ^ y1)) == 0;
  }
  if (n >= 4 && n < 8) {
    std::uint32_t x0, x1, y0, y1;
    std::memcpy(&x0, x, 4);
    std::memcpy(&y0, y, 4);
    std::memcpy(&x1, x + n - 4, 4);
    std::memcpy(&y1, y + n - 4, 4);
    return ((x0 ^ y0) | (x1 ^ y1)) == 0;
  }
  if (n < 4) {
    for (std::size_t i = 0; i < n; ++i) {
      if (x[i] != y[i]) return false;
    }
    return true;
  }
  return std::memcmp(x, y, n) == 0;
}

inline void Value::prefetch_members(std::size_t after) const {
  if (kind_ != Kind::Object) return;
  const char* from = reinterpret_cast<const char*>(object_->items);
  const char* to = from + object_->size * sizeof(Member) + after;
  for (const char* p = from; p < to; p += 64) __builtin_prefetch(p);
}

inline void Value::append_member(Arena& arena, std::string_view key, Value value) {
  if (object_->size == object_->capacity) grow_object(arena);
  object_->items[object_->size++] = Member{key, value};
}

// Structural equality; Int and Uint compare by numeric value, Double only with Double.
bool operator==(const Value& a, const Value& b);

// Copies the whole tree, strings included, into `arena`.
Value deep_copy(const Value& value, Arena& arena);

}  // namespace weir
