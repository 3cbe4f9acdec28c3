// ClickHouse's RowBinary format, built from the table's schema: each row is its columns'
// values one after the other, little-endian, with no names and no text to parse, so the
// server only copies bytes into its columns. Which column types weir encodes, and how an
// event's JSON values convert to them, is decided here, once per column, when the schema is
// read (system.columns); a value that does not convert is the row's dead letter.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "weir/arena.hpp"
#include "weir/field_path.hpp"
#include "weir/http_batch_sink.hpp"
#include "weir/result.hpp"
#include "weir/value.hpp"

namespace weir::plugins::clickhouse {

enum class TypeKind {
  String, FixedString, Int8, Int16, Int32, Int64, UInt8, UInt16, UInt32, UInt64, Float32, Float64,
  Date, DateTime, DateTime64, UUID, Enum8, Enum16, Array,
};

struct ColumnType {
  TypeKind kind = TypeKind::String;
  bool nullable = false;
  std::uint32_t size = 0;      // FixedString(N); DateTime64's precision (0-9)
  std::vector<std::pair<std::string, std::int16_t>> enum_values;  // Enum8/16: name = value
  std::shared_ptr<ColumnType> element;                            // Array(T)
};

// A column type as system.columns names it ("Nullable(UInt64)", "DateTime('Etc/UTC')",
// "LowCardinality(String)", "Array(Nullable(String))", "Enum8('a' = 1, 'b' = 2)"), or why
// weir cannot write it in RowBinary (a type it does not know, a time zone other than UTC:
// a text time without an offset would be read in that zone, which weir cannot compute).
// `server_zone` is the server's time zone, for DateTime columns that name none.
Result<ColumnType> parse_column_type(std::string_view type, std::string_view server_zone);

struct Column {
  std::string name;
  std::string type;  // as the server spells it
  ColumnType parsed;
};

// A column of system.columns: `default_kind` is "", DEFAULT, MATERIALIZED or ALIAS.
struct ColumnInfo {
  std::string name, type, default_kind, default_expression;
};

// The columns weir sends in RowBinary (MATERIALIZED and ALIAS ones cannot be inserted and are
// left out), or why the table cannot be written that way: a type weir does not encode, or a
// DEFAULT expression other than the type's own default (RowBinary cannot ask the server for
// it row by row). The message names the column.
Result<std::vector<Column>> binary_columns(const std::vector<ColumnInfo>& columns, std::string_view server_zone);

// A quoted identifier for the query text: `name`, with ` and \ escaped.
std::string quoted_identifier(std::string_view name);

// Whether Native can carry the column (LowCardinality has a serialization of its own there).
bool native_can_write(std::string_view type);

class RowBinaryEncoder final : public http::RowEncoder {
 public:
  // `only_fields`: the fields sent (by path, each the column of its own name); empty: every
  // top-level field is the column of its name. `skip_unknown_fields`: a field that is not a
  // column is ignored; otherwise the row is refused, as the server refuses it in JSONEachRow.
  RowBinaryEncoder(std::vector<Column> columns, const std::vector<std::string>& only_fields, bool skip_unknown_fields);

  Status encode_row(const Event& event, ByteBuffer& out) override;

  // The rows of `upload` (RowBinary, as encode_row wrote them) as one Native block, when this
  // encoder was made for Native: the same values column by column, which the server copies
  // into its columns without a call per value. Rows stay RowBinary in the upload, so a split
  // and a dead letter work on them as on any rows.
  bool wire_body(const http::Upload& upload, ByteBuffer& out) const override;
  void send_native(bool native) { native_ = native; }
  bool native() const { return native_; }

  // A row as sent, back as an object of its columns (for its dead letter).
  Result<Value> decode_row(std::string_view row, Arena& arena) const;
  // The insert's column list: "(`a`, `b`)".
  const std::string& column_list() const { return column_list_; }
  const std::vector<Column>& columns() const { return columns_; }

 private:
  std::vector<Column> columns_;
  std::vector<FieldPath> paths_;  // per column, where its value is
  std::vector<FieldPath> unlisted_;  // only_fields that are no column
  bool only_fields_ = false;
  bool skip_unknown_ = false;
  bool native_ = false;
  std::string column_list_;
};

}  // namespace weir::plugins::clickhouse
