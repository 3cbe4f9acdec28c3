// InfluxDB line protocol, written exactly: `measurement,tag=v field=1i,other="x" 1700000000000000000`.
//
// Escaping is per element (measurement: comma and space; tag keys, tag values and field keys:
// comma, equals and space; string field values: double quote and backslash, with newline,
// carriage return and tab as two-character escapes). Bytes that no element can carry (control
// characters in names and tags) are dropped. Servers differ, and the Dialect says which one
// reads the line:
// - backslashes in names and tags: InfluxDB 1.x keeps them as they are (it only unescapes
//   `\,` `\=` and `\ `), 2.x reads `\\` as one; a backslash is never left where it would
//   swallow the delimiter after it (1.x then keeps it doubled: a trailing or escaping-looking
//   backslash is the one thing 1.x cannot store as it was);
// - newline, carriage return and tab in string fields: 2.x unescapes `\n` `\r` `\t`, 1.x
//   stores them as two characters but takes the raw byte inside the quotes, so each gets
//   what reads back as the original text.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "weir/buffer.hpp"
#include "weir/event.hpp"
#include "weir/field_path.hpp"
#include "weir/http_batch_sink.hpp"
#include "weir/result.hpp"
#include "weir/time.hpp"

namespace weir::plugins::influxdb {

enum class Dialect { V1, V2 };  // InfluxDB 1.x /write, or 2.x /api/v2/write
enum class FieldType : std::uint8_t { Float, Integer, Unsigned, Boolean, String };
enum class Precision { Nanoseconds, Microseconds, Milliseconds, Seconds };

std::string_view field_type_name(FieldType type);
Result<FieldType> parse_field_type(std::string_view name);
Result<Precision> parse_precision(std::string_view name);  // ns | us | ms | s
// A point's time: a number (or text that is only a number) counts `unit`s since the
// epoch; other text is ISO-8601. Out of range: an error naming the unit the number would
// fit, if one.
Result<EpochNanos> read_timestamp(const Value& value, Precision unit);

// The elements, escaped for `dialect`.
void append_measurement(std::string_view name, Dialect dialect, ByteBuffer& out);
void append_tag_or_key(std::string_view text, Dialect dialect, ByteBuffer& out);  // tag keys and values, field keys
void append_string_value(std::string_view text, Dialect dialect, ByteBuffer& out);  // with its quotes
// Shortest text that reads back as the same double; NaN and infinities are refused.
Status append_float(double value, ByteBuffer& out);

// Text-keyed maps looked up by string_view without making a string.
struct TextHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
};
template <typename V>
using TextMap = std::unordered_map<std::string, V, TextHash, std::equal_to<>>;

// How events become points.
struct PointMapping {
  std::string measurement;            // static name; used when measurement_field is absent
  FieldPath measurement_field;        // empty: not used
  std::vector<FieldPath> tags;        // a path to an object: each member is a tag
  std::vector<FieldPath> fields;      // empty: every field that is not a tag, the time or the measurement
  FieldPath timestamp_field;          // empty: no timestamp (the server's time)
  Precision precision = Precision::Nanoseconds;
  // The unit of numeric timestamps (numbers, and text that is only a number); unset: the
  // precision. ISO-8601 text is read as what it says.
  std::optional<Precision> number_unit;
  std::string separator = "_";        // joins the keys of nested objects: {"a":{"b":1}} -> a_b=1
  TextMap<FieldType> field_types;  // pinned types, by field key
  Dialect dialect = Dialect::V1;
};

// Writes events as points; remembers each field's type per measurement, so a field keeps the
// type its first point gave it (an integer field takes 2.0 as 2i and refuses 2.5; a float
// field takes 2 as 2). Not thread-safe: one upload at a time (http::RowEncoder's contract).
class PointEncoder final : public http::RowEncoder {
 public:
  explicit PointEncoder(PointMapping mapping);
  Status encode_row(const Event& event, ByteBuffer& out) override;
  // The remembered types survive a restart (a field that was integer stays integer, so the
  // server does not refuse its next point for a type conflict): {"measurement\u0000field": type}.
  std::uint64_t state_version() const override { return remembered_.size(); }
  std::string state() const override;
  Status restore(std::string_view state) override;

  // Remembered types at most; past that, new fields are typed by their value alone.
  static constexpr std::size_t kMaxRememberedTypes = 100'000;

 private:
  struct Tag {  // escaped key and value, in tag_text_: [begin, key_end) and [key_end, end)
    std::uint32_t begin, key_end, end;
  };
  Status add_tags(const Value& value, std::string_view key, std::vector<Tag>& tags);
  Status add_fields(const Value& value, std::string& key, std::string_view measurement, ByteBuffer& out, bool& first);
  Status add_field(std::string_view key, const Value& value, std::string_view measurement, ByteBuffer& out, bool& first);
  bool is_mapped_elsewhere(std::string_view top_level_key) const;

  PointMapping m_;
  std::string escaped_measurement_;  // of m_.measurement
  std::vector<std::string> tag_keys_;    // for each m_.tags entry: its key when it is a scalar
  std::vector<std::string> field_keys_;  // the same for m_.fields
  TextMap<FieldType> remembered_;  // "measurement\0field" -> type
  std::vector<std::pair<std::string, FieldType>> new_types_;  // of the point being written
  std::string lookup_key_;
  std::vector<Tag> tags_;
  ByteBuffer tag_text_;
  std::string scalar_text_;
};

}  // namespace weir::plugins::influxdb
