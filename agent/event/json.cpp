#include "weir/json.hpp"

#include <simdjson.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <vector>

namespace weir {

struct JsonParser::Impl {
  simdjson::dom::parser parser;
  std::vector<char> scratch;  // padded copy for text without readable padding
  std::vector<std::size_t> ends;  // objects_have_key: where each text ends in `scratch`
};

JsonParser::JsonParser() : impl_(std::make_unique<Impl>()) {}
JsonParser::~JsonParser() = default;

namespace {

// The span of the parser's string buffer that a document's strings occupy.
struct StringSpan {
  const char* low = nullptr;
  const char* high = nullptr;
  void add(std::string_view text) {
    if (low == nullptr || text.data() < low) low = text.data();
    if (text.data() + text.size() > high) high = text.data() + text.size();
  }
};

// Room for members added to a decoded event later (enrich, request_id, the sources'
// metadata fields) without copying the members it already has.
constexpr std::uint32_t kRootHeadroom = 4;

// First pass: values whose strings still point into the parser's buffer. `headroom`:
// spare member slots for an object (the document's root only).
Value convert(simdjson::dom::element element, Arena& arena, StringSpan& strings, std::uint32_t headroom = 0) {
  using simdjson::dom::element_type;
  switch (element.type()) {
    case element_type::OBJECT: {
      simdjson::dom::object object = element.get_object().value_unsafe();
      Value out = Value::object(arena, static_cast<std::uint32_t>(object.size()) + headroom);
      for (auto field : object) {
        strings.add(field.key);
        out.append_member(arena, field.key, convert(field.value, arena, strings));
      }
      return out;
    }
    case element_type::ARRAY: {
      simdjson::dom::array array = element.get_array().value_unsafe();
      Value out = Value::array(arena, static_cast<std::uint32_t>(array.size()));
      for (auto item : array) out.push_back(arena, convert(item, arena, strings));
      return out;
    }
    case element_type::STRING: {
      std::string_view text = element.get_string().value_unsafe();
      strings.add(text);
      return Value::string_view(text);
    }
    case element_type::INT64: return Value::integer(element.get_int64().value_unsafe());
    case element_type::UINT64: return Value::uinteger(element.get_uint64().value_unsafe());
    case element_type::DOUBLE: return Value::floating(element.get_double().value_unsafe());
    case element_type::BOOL: return Value::boolean(element.get_bool().value_unsafe());
    case element_type::NULL_VALUE: return Value::null();
  }
  return Value::null();
}

std::string_view moved(std::string_view text, std::ptrdiff_t delta) { return {text.data() + delta, text.size()}; }

// Second pass: every string moved by `delta`, into the arena copy of the span.
void relocate(Value& value, std::ptrdiff_t delta) {
  switch (value.kind()) {
    case Kind::String: value = Value::string_view(moved(value.as_string(), delta)); return;
    case Kind::Array:
      for (Value& item : value.elements()) relocate(item, delta);
      return;
    case Kind::Object:
      for (Member& m : value.members()) {
        m.key = moved(m.key, delta);
        relocate(m.value, delta);
      }
      return;
    default: return;
  }
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
  // All strings of one document sit together in the parser's string buffer, which the next
  // document reuses: one copy of that span into the arena replaces a copy per string.
  StringSpan strings;
  Value value = convert(parsed.value_unsafe(), arena, strings, kRootHeadroom);
  if (strings.low != nullptr) {
    auto size = static_cast<std::size_t>(strings.high - strings.low);
    char* copy = static_cast<char*>(arena.allocate(size ? size : 1, 1));
    std::memcpy(copy, strings.low, size);
    relocate(value, copy - strings.low);
  }
  return value;
}

namespace {

bool has_member(simdjson::dom::object object, std::string_view key) {
  for (auto field : object) {
    if (field.key == key) return true;
  }
  return false;
}

}  // namespace

Result<bool> JsonParser::object_has_key(std::string_view text, std::string_view key) {
  impl_->scratch.resize(text.size() + simdjson::SIMDJSON_PADDING);
  std::memcpy(impl_->scratch.data(), text.data(), text.size());
  auto parsed = impl_->parser.parse(impl_->scratch.data(), text.size(), false);
  if (parsed.error()) return Error(std::string("invalid JSON: ") + simdjson::error_message(parsed.error()));
  simdjson::dom::object object;
  if (parsed.value_unsafe().get_object().get(object)) return Error("not a JSON object");
  return has_member(object, key);
}

namespace {

bool json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

}  // namespace

void JsonParser::objects_have_key(std::span<const std::string_view> texts, std::string_view key, std::span<int> results) {
  constexpr int kUnknown = 2;
  std::fill(results.begin(), results.end(), kUnknown);
  if (texts.size() > 1) {
    // The texts one per line, read as one stream of documents. Only a prefix is trusted:
    // text k counts once every text before it was one whole object (so the parser's state at
    // text k's start is outside any string) and a document starts at text k's first
    // non-space byte and ends within it, followed by spaces only. The first text that is not
    // ends the stream's part; it and the rest are parsed one by one.
    std::vector<char>& joined = impl_->scratch;
    std::vector<std::size_t>& ends = impl_->ends;
    std::size_t total = 0;
    for (std::string_view text : texts) total += text.size() + 1;
    joined.resize(total + simdjson::SIMDJSON_PADDING);
    ends.clear();
    std::size_t at = 0;
    for (std::string_view text : texts) {
      if (!text.empty()) std::memcpy(joined.data() + at, text.data(), text.size());
      at += text.size();
      ends.push_back(at);
      joined[at++] = '\n';
    }
    std::memset(joined.data() + at, 0, simdjson::SIMDJSON_PADDING);
    simdjson::dom::document_stream stream;
    // One batch for the whole stream (no second thread, no document cut at a batch's end).
    const std::size_t batch_size = std::max<std::size_t>(total, simdjson::dom::MINIMAL_BATCH_SIZE);
    if (!impl_->parser.parse_many(joined.data(), total, batch_size).get(stream)) {
      std::size_t k = 0, start = 0;
      for (auto it = stream.begin(); it != stream.end() && k < texts.size(); ++it) {
        std::size_t first = start;
        while (first < ends[k] && json_space(joined[first])) ++first;
        if (it.current_index() != first) break;
        simdjson::dom::element element;
        simdjson::dom::object object;
        if ((*it).get(element) || element.get_object().get(object)) break;
        std::size_t end = first + it.source().size();
        if (end > ends[k]) break;
        while (end < ends[k] && json_space(joined[end])) ++end;
        if (end != ends[k]) break;
        results[k] = has_member(object, key) ? 1 : 0;
        start = ends[k] + 1;
        ++k;
      }
    }
  }
  for (std::size_t i = 0; i < texts.size(); ++i) {
    if (results[i] != kUnknown) continue;
    results[i] = presence(object_has_key(texts[i], key));
  }
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


}  // namespace

namespace {

// High bit set in every byte of `word` that is below 0x20, '"' or '\\'. A borrow can also
// flag a byte above a flagged one, never below it: the lowest flag is always exact.
inline std::uint64_t needs_escape(std::uint64_t word) {
  constexpr std::uint64_t ones = 0x0101010101010101ULL;
  constexpr std::uint64_t highs = 0x8080808080808080ULL;
  auto zero_byte = [](std::uint64_t v) { return (v - ones) & ~v & highs; };
  std::uint64_t below_space = (word - ones * 0x20) & ~word & highs;
  return below_space | zero_byte(word ^ (ones * '"')) | zero_byte(word ^ (ones * '\\'));
}

inline char* write_escape(unsigned char c, char* p) {
  char code = kEscape[c];
  *p++ = '\\';
  *p++ = code;
  if (code == 'u') {
    static constexpr char hex[] = "0123456789abcdef";
    *p++ = '0';
    *p++ = '0';
    *p++ = hex[c >> 4];
    *p++ = hex[c & 0xF];
  }
  return p;
}

}  // namespace

namespace {

// Writes `text` quoted and escaped at `p`, which has room for text.size() * 6 + 2 bytes (every
// byte as \u00XX). Blocks are stored whole before they are checked: the room is there,
// and the bytes after an escape are simply written again.
inline char* write_string_at(std::string_view text, char* p) {
  *p++ = '"';
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = s + text.size();
#if defined(__SSE2__)
  const __m128i quote = _mm_set1_epi8('"');
  const __m128i backslash = _mm_set1_epi8('\\');
  const __m128i last_control = _mm_set1_epi8(0x1F);
  while (end - s >= 16) {
    __m128i block = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), block);
    __m128i hits = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(block, quote), _mm_cmpeq_epi8(block, backslash)),
                                _mm_cmpeq_epi8(_mm_max_epu8(block, last_control), last_control));
    auto mask = static_cast<unsigned>(_mm_movemask_epi8(hits));
    if (mask == 0) {
      s += 16;
      p += 16;
      continue;
    }
    unsigned clean = static_cast<unsigned>(__builtin_ctz(mask));
    s += clean;
    p += clean;
    p = write_escape(*s++, p);
  }
#endif
  while (std::endian::native == std::endian::little && end - s >= 8) {
    std::uint64_t word;
    std::memcpy(&word, s, 8);
    std::memcpy(p, s, 8);
    std::uint64_t mask = needs_escape(word);
    if (mask == 0) {
      s += 8;
      p += 8;
      continue;
    }
    unsigned clean = static_cast<unsigned>(__builtin_ctzll(mask)) / 8;  // little-endian byte order
    s += clean;
    p += clean;
    p = write_escape(*s++, p);
  }
  for (; s < end; ++s) {
    if (kEscape[*s] == 0) *p++ = static_cast<char>(*s);
    else p = write_escape(*s, p);
  }
  *p++ = '"';
  return p;
}

}  // namespace

namespace {

constexpr std::size_t kNumberBound = 32;  // int64, uint64 and shortest doubles with ".0"

// An upper bound of the encoded size, so the writer below needs no capacity checks.
std::size_t json_bound(const Value& value) {
  switch (value.kind()) {
    case Kind::String: return value.size() * 6 + 2;
    case Kind::Array: {
      std::size_t total = 2;
      for (const Value& item : value.elements()) total += json_bound(item) + 1;
      return total;
    }
    case Kind::Object: {
      std::size_t total = 2;
      for (const Member& m : value.members()) total += m.key.size() * 6 + 4 + json_bound(m.value);
      return total;
    }
    default: return kNumberBound;
  }
}

char* write_double_at(double value, char* p) {
  if (!std::isfinite(value)) {
    std::memcpy(p, "null", 4);
    return p + 4;
  }
  auto [end, ec] = std::to_chars(p, p + 30, value);
  (void)ec;
  // Keep it a double on the way back: "5" would read as an integer.
  for (char* c = p; c < end; ++c) {
    if (*c == '.' || *c == 'e' || *c == 'E') return end;
  }
  *end++ = '.';
  *end++ = '0';
  return end;
}

char* write_value_at(const Value& value, char* p) {
  switch (value.kind()) {
    case Kind::Null: std::memcpy(p, "null", 4); return p + 4;
    case Kind::Bool:
      if (value.as_bool()) {
        std::memcpy(p, "true", 4);
        return p + 4;
      }
      std::memcpy(p, "false", 5);
      return p + 5;
    case Kind::Int: return std::to_chars(p, p + kNumberBound, value.as_int()).ptr;
    case Kind::Uint: return std::to_chars(p, p + kNumberBound, value.as_uint()).ptr;
    case Kind::Double: return write_double_at(value.as_double(), p);
    case Kind::String: return write_string_at(value.as_string(), p);
    case Kind::Array: {
      *p++ = '[';
      bool first = true;
      for (const Value& item : value.elements()) {
        if (!first) *p++ = ',';
        first = false;
        p = write_value_at(item, p);
      }
      *p++ = ']';
      return p;
    }
    case Kind::Object: {
      *p++ = '{';
      bool first = true;
      for (const Member& m : value.members()) {
        if (!first) *p++ = ',';
        first = false;
        p = write_string_at(m.key, p);
        *p++ = ':';
        p = write_value_at(m.value, p);
      }
      *p++ = '}';
      return p;
    }
  }
  return p;
}

}  // namespace

void write_json_string(std::string_view text, ByteBuffer& out) {
  char* p = out.ensure(text.size() * 6 + 2);
  out.commit(static_cast<std::size_t>(write_string_at(text, p) - p));
}

void write_double(double value, ByteBuffer& out) {
  char* p = out.ensure(kNumberBound);
  out.commit(static_cast<std::size_t>(write_double_at(value, p) - p));
}

void write_json(const Value& value, ByteBuffer& out) {
  char* p = out.ensure(json_bound(value));
  out.commit(static_cast<std::size_t>(write_value_at(value, p) - p));
}

std::string to_json(const Value& value) {
  ByteBuffer out;
  write_json(value, out);
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
