// JSON in and out. Decoding is simdjson (runtime-dispatched DOM parser, the fastest
// kernel the CPU has); encoding is a hand-written writer into a ByteBuffer.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "weir/buffer.hpp"
#include "weir/result.hpp"
#include "weir/value.hpp"

namespace weir {

class JsonParser {
 public:
  JsonParser();
  ~JsonParser();
  JsonParser(const JsonParser&) = delete;
  JsonParser& operator=(const JsonParser&) = delete;

  // Parses one JSON document into `arena`. `readable` is how many bytes after `text.data()`
  // may be read (simdjson reads up to 64 bytes past the end); when it is smaller than
  // text.size() + 64, the text is copied into a padded scratch buffer first.
  Result<Value> parse(std::string_view text, std::size_t readable, Arena& arena);
  Result<Value> parse(std::string_view text, Arena& arena) { return parse(text, text.size(), arena); }

  // Checks that `text` is a JSON object and says whether it has `key` at its top level,
  // without building values: for edits that can splice text instead of re-encoding.
  Result<bool> object_has_key(std::string_view text, std::string_view key);
  // object_has_key's answer as objects_have_key (and the plugin ABI) give it: 1, 0 or -1.
  static int presence(const Result<bool>& has) { return !has.ok() ? -1 : has.value() ? 1 : 0; }
  // The same for many texts: results[i] is 1 when texts[i] is an object with `key`, 0 when
  // it is one without, -1 when it is not a JSON object. One parse over all of them
  // (simdjson's fixed cost per document was most of a small payload's).
  void objects_have_key(std::span<const std::string_view> texts, std::string_view key, std::span<int> results);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Appends `value` as compact JSON. Doubles use the shortest form that reads back to the
// same double, with ".0" added to integral values so they stay doubles; NaN and
// infinities (which JSON cannot hold) become null.
void write_json(const Value& value, ByteBuffer& out);
void write_json_string(std::string_view text, ByteBuffer& out);  // quoted and escaped
std::string to_json(const Value& value);

// Shortest round-trip form of a double ("0.1", "1e+300", "5.0"), for any encoder.
void write_double(double value, ByteBuffer& out);

// Replaces invalid UTF-8 sequences with U+FFFD. Returns `text` itself when it is valid.
std::string_view valid_utf8(std::string_view text, Arena& arena);

}  // namespace weir
