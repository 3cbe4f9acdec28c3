#include "weir/json.hpp"

#include <simdjson.h>

#include <charconv>
#include <cmath>
#include <cstring>
#include <vector>

namespace weir {

struct JsonParser::Impl {
  simdjson::dom::parser parser;
  std::vector<char> scratch;  // padded copy for text without readable padding
};

JsonParser::JsonParser() : impl_(std::make_unique<Impl>()) {}
JsonParser::~JsonParser() = default;

namespace {

Value convert(simdjson::dom::element element, Arena& arena) {
  using simdjson::dom::element_type;
  switch (element.type()) {
    case element_type::OBJECT: {
      simdjson::dom::object object = element.get_object().value_unsafe();
      Value out = Value::object(arena, static_cast<std::uint32_t>(object.size()));
      for (auto field : object) {
        out.append_member(arena, arena.copy(field.key), convert(field.value, arena));
      }
      return out;
    }
    case element_type::ARRAY: {
      simdjson::dom::array array = element.get_array().value_unsafe();
      Value out = Value::array(arena, static_cast<std::uint32_t>(array.size()));
      for (auto item : array) out.push_back(arena, convert(item, arena));
      return out;
    }
    case element_type::STRING: return Value::string(arena, element.get_string().value_unsafe());
    case element_type::INT64: return Value::integer(element.get_int64().value_unsafe());
    case element_type::UINT64: return Value::uinteger(element.get_uint64().value_unsafe());
    case element_type::DOUBLE: return Value::floating(element.get_double().value_unsafe());
    case element_type::BOOL: return Value::boolean(element.get_bool().value_unsafe());
    case element_type::NULL_VALUE: return Value::null();
  }
  return Value::null();
}

}  // namespace

Result<Value> JsonParser::parse(std::string_view text, std::size_t readable, Arena& arena) {
  const char* data = text.data();
  if (readable < text.size() + simdjson::SIMDJSON_PADDING) {
    impl_->scratch.resize(text.size() + simdjson::SIMDJSON_PADDING);
    std::memcpy(impl_->scratch.data(), text.data(), text.size());
    std::memset(impl_->scratch.data() + text.size(), 0, simdjson::SIMDJSON_PADDING);
    data = impl_->scratch.data();
  }
  auto parsed = impl_->parser.parse(data, text.size(), false);
  if (parsed.error()) {
    std::string reason = "invalid JSON: ";
    reason += simdjson::error_message(parsed.error());
    if (parsed.error() == simdjson::NUMBER_ERROR) {
      reason += " (integers must fit in int64 or uint64)";
    }
    return Error(std::move(reason));
  }
  return convert(parsed.value_unsafe(), arena);
}

// ---- encoding ---------------------------------------------------------------------------

namespace {

// 0: copy as is; otherwise the character after the backslash ('u' for \u00XX).
constexpr auto kEscape = [] {
  std::array<char, 256> table{};
  for (int c = 0; c < 0x20; ++c) table[c] = 'u';
  table['"'] = '"';
  table['\\'] = '\\';
  table['\b'] = 'b';
  table['\f'] = 'f';
  table['\n'] = 'n';
  table['\r'] = 'r';
  table['\t'] = 't';
  return table;
}();

void write_value(const Value& value, ByteBuffer& out);

}  // namespace

namespace {

// Non-zero when any of the 8 bytes in `word` is below 0x20, '"' or '\\'. May report a
// clean word as dirty (a borrow crossing bytes), never the other way round; a dirty word
// only sends those 8 bytes down the byte-by-byte path.
inline std::uint64_t needs_escape(std::uint64_t word) {
  constexpr std::uint64_t ones = 0x0101010101010101ULL;
  constexpr std::uint64_t highs = 0x8080808080808080ULL;
  auto zero_byte = [](std::uint64_t v) { return (v - ones) & ~v & highs; };
  std::uint64_t below_space = (word - ones * 0x20) & ~word & highs;
  return below_space | zero_byte(word ^ (ones * '"')) | zero_byte(word ^ (ones * '\\'));
}

}  // namespace

void write_json_string(std::string_view text, ByteBuffer& out) {
  // Worst case every byte becomes \u00XX.
  char* p = out.ensure(text.size() * 6 + 2);
  char* start = p;
  *p++ = '"';
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = s + text.size();
  while (s < end) {
    // Eight clean bytes at a time: most strings have nothing to escape.
    while (end - s >= 8) {
      std::uint64_t word;
      std::memcpy(&word, s, 8);
      if (needs_escape(word)) break;
      std::memcpy(p, s, 8);
      p += 8;
      s += 8;
    }
    const unsigned char* stop = end - s > 8 ? s + 8 : end;
    for (; s < stop; ++s) {
      char code = kEscape[*s];
      if (code == 0) {
        *p++ = static_cast<char>(*s);
        continue;
      }
      *p++ = '\\';
      *p++ = code;
      if (code == 'u') {
        static constexpr char hex[] = "0123456789abcdef";
        *p++ = '0';
        *p++ = '0';
        *p++ = hex[*s >> 4];
        *p++ = hex[*s & 0xF];
      }
    }
  }
  *p++ = '"';
  out.commit(static_cast<std::size_t>(p - start));
}

void write_double(double value, ByteBuffer& out) {
  if (!std::isfinite(value)) {
    out.append("null");
    return;
  }
  char* p = out.ensure(32);
  auto [end, ec] = std::to_chars(p, p + 30, value);
  (void)ec;
  // Keep it a double on the way back: "5" would read as an integer.
  bool integral_looking = true;
  for (char* c = p; c < end; ++c) {
    if (*c == '.' || *c == 'e' || *c == 'E' || *c == 'n' || *c == 'i') {
      integral_looking = false;
      break;
    }
  }
  if (integral_looking) {
    *end++ = '.';
    *end++ = '0';
  }
  out.commit(static_cast<std::size_t>(end - p));
}

namespace {

void write_value(const Value& value, ByteBuffer& out) {
  switch (value.kind()) {
    case Kind::Null: out.append("null"); return;
    case Kind::Bool: out.append(value.as_bool() ? "true" : "false"); return;
    case Kind::Int: {
      char* p = out.ensure(24);
      auto [end, ec] = std::to_chars(p, p + 24, value.as_int());
      (void)ec;
      out.commit(static_cast<std::size_t>(end - p));
      return;
    }
    case Kind::Uint: {
      char* p = out.ensure(24);
      auto [end, ec] = std::to_chars(p, p + 24, value.as_uint());
      (void)ec;
      out.commit(static_cast<std::size_t>(end - p));
      return;
    }
    case Kind::Double: write_double(value.as_double(), out); return;
    case Kind::String: write_json_string(value.as_string(), out); return;
    case Kind::Array: {
      out.push_back('[');
      bool first = true;
      for (const Value& item : value.elements()) {
        if (!first) out.push_back(',');
        first = false;
        write_value(item, out);
      }
      out.push_back(']');
      return;
    }
    case Kind::Object: {
      out.push_back('{');
      bool first = true;
      for (const Member& m : value.members()) {
        if (!first) out.push_back(',');
        first = false;
        write_json_string(m.key, out);
        out.push_back(':');
        write_value(m.value, out);
      }
      out.push_back('}');
      return;
    }
  }
}

}  // namespace

void write_json(const Value& value, ByteBuffer& out) { write_value(value, out); }

std::string to_json(const Value& value) {
  ByteBuffer out;
  write_value(value, out);
  return std::string(out.view());
}

std::string_view valid_utf8(std::string_view text, Arena& arena) {
  if (simdjson::validate_utf8(text.data(), text.size())) return text;
  // Slow path, rare: rebuild with U+FFFD for every byte that does not start a valid sequence.
  std::string fixed;
  fixed.reserve(text.size() + 16);
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  std::size_t n = text.size(), i = 0;
  while (i < n) {
    unsigned char c = s[i];
    std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = len != 0 && i + len <= n;
    for (std::size_t k = 1; ok && k < len; ++k) ok = (s[i + k] & 0xC0) == 0x80;
    if (ok && len > 1 && !simdjson::validate_utf8(text.data() + i, len)) ok = false;  // overlong, surrogates
    if (ok) {
      fixed.append(text.data() + i, len);
      i += len;
    } else {
      fixed.append("\xEF\xBF\xBD");
      ++i;
    }
  }
  return arena.copy(fixed);
}

}  // namespace weir
