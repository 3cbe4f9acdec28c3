// The clickhouse sink's RowBinary: column types read from system.columns, values converted to
// their bytes (checked byte by byte against ClickHouse's layout), refusals naming the column,
// and rows read back for their dead letters.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include "plugins/sinks/clickhouse/row_binary.hpp"
#include "weir/json.hpp"

using namespace weir;
using namespace weir::plugins::clickhouse;

namespace {

std::vector<Column> columns(std::vector<std::pair<std::string, std::string>> spec) {
  std::vector<ColumnInfo> info;
  for (auto& [name, type] : spec) info.push_back({name, type, "", ""});
  auto parsed = binary_columns(info, "UTC");
  REQUIRE(parsed.ok());
  return parsed.value();
}

struct Encoded {
  Status status;
  std::string bytes;
};

Encoded encode(RowBinaryEncoder& encoder, std::string_view json) {
  Arena arena;
  JsonParser parser;
  auto value = parser.parse(json, arena);
  REQUIRE(value.ok());
  ByteBuffer out;
  out.append("prefix");
  Status s = encoder.encode_row(Event{value.value(), Value::null()}, out);
  REQUIRE(out.view().substr(0, 6) == "prefix");
  return {s, std::string(out.view().substr(6))};
}

std::string bytes(std::initializer_list<int> list) {
  std::string s;
  for (int b : list) s.push_back(static_cast<char>(b));
  return s;
}

}  // namespace

TEST_CASE("clickhouse RowBinary: column types as system.columns names them", "[clickhouse]") {
  CHECK(parse_column_type("Nullable(UInt64)", "UTC").value().nullable);
  CHECK(parse_column_type("LowCardinality(String)", "UTC").value().kind == TypeKind::String);
  CHECK(parse_column_type("DateTime('Etc/UTC')", "Europe/Berlin").value().kind == TypeKind::DateTime);
  CHECK(parse_column_type("DateTime64(3, 'UTC')", "UTC").value().size == 3);
  CHECK(parse_column_type("FixedString(16)", "UTC").value().size == 16);
  auto e = parse_column_type("Enum8('a\\'b' = 1, 'c' = -2)", "UTC");
  REQUIRE(e.ok());
  CHECK(e.value().enum_values == std::vector<std::pair<std::string, std::int16_t>>{{"a'b", 1}, {"c", -2}});
  auto arr = parse_column_type("Array(Nullable(String))", "UTC");
  REQUIRE(arr.ok());
  CHECK((arr.value().kind == TypeKind::Array && arr.value().element->nullable));
  // What weir does not write: unknown types, zones other than UTC (local text times).
  CHECK(parse_column_type("Decimal(10, 2)", "UTC").error().message() == "type Decimal(10, 2) is not one weir writes in RowBinary");
  CHECK(parse_column_type("DateTime", "Europe/Berlin").error().message().find("time zone 'Europe/Berlin' is not UTC") != std::string::npos);
  CHECK(!parse_column_type("Enum8('a' = 300)", "UTC").ok());
  CHECK(!parse_column_type("Nullable(Array(String))", "UTC").ok());
}

TEST_CASE("clickhouse RowBinary: DEFAULT expressions other than the type's own refuse the table, naming the column", "[clickhouse]") {
  std::vector<ColumnInfo> info = {{"a", "UInt32", "DEFAULT", "CAST(0, 'UInt32')"},
                                  {"b", "Nullable(UInt64)", "DEFAULT", "CAST(NULL, 'Nullable(UInt64)')"},
                                  {"m", "String", "MATERIALIZED", "toString(a)"}};
  auto ok = binary_columns(info, "UTC");
  REQUIRE(ok.ok());
  REQUIRE(ok.value().size() == 2);  // the MATERIALIZED column is not sent
  info.push_back({"at", "DateTime", "DEFAULT", "now()"});
  CHECK(binary_columns(info, "UTC").error().message() ==
        "column `at` has DEFAULT now(), which RowBinary cannot ask the server for row by row");
  info.back() = {"d", "Decimal(9, 2)", "", ""};
  CHECK(binary_columns(info, "UTC").error().message() == "column `d`: type Decimal(9, 2) is not one weir writes in RowBinary");
}

TEST_CASE("clickhouse RowBinary: values in ClickHouse's byte layout", "[clickhouse]") {
  RowBinaryEncoder encoder(columns({{"s", "String"}, {"n", "Nullable(Int16)"}, {"u", "UInt32"}, {"at", "DateTime"},
                                    {"day", "Date"}, {"id", "UUID"}, {"e", "Enum8('a' = 1, 'b' = -2)"},
                                    {"fs", "FixedString(3)"}, {"t64", "DateTime64(3, 'UTC')"}, {"xs", "Array(Nullable(UInt8))"},
                                    {"f", "Float32"}}),
                           {}, true);
  auto row = encode(encoder,
                    R"({"s":"hé","n":-2,"u":"4294967295","at":"2024-01-01 12:00:00","day":"1970-01-03",)"
                    R"("id":"01234567-89ab-cdef-0011-223344556677","e":"b","fs":"ab","t64":"2024-01-01T12:00:00.123456Z",)"
                    R"("xs":[1,null],"f":1.5})");
  REQUIRE(row.status.ok());
  std::string expected = bytes({3, 'h', 0xc3, 0xa9,                  // String: varint length, bytes
                                0, 0xfe, 0xff,                        // Nullable(Int16): not null, -2
                                0xff, 0xff, 0xff, 0xff,               // UInt32 from a string
                                0x40, 0xa9, 0x92, 0x65,               // DateTime: 1704110400 seconds
                                2, 0,                                 // Date: 2 days
                                0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01,  // UUID: each half little-endian
                                0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00,
                                0xfe,                                 // Enum8 'b' = -2
                                'a', 'b', 0,                          // FixedString(3), zero-padded
                                0x7b, 0x22, 0xe5, 0xc4, 0x8c, 0x01, 0, 0,  // DateTime64(3): 1704110400123 ms
                                2, 0, 1, 1,                           // Array: count, then Nullable(UInt8) 1, NULL
                                0, 0, 0xc0, 0x3f});                   // Float32 1.5
  auto hex = [](const std::string& b) {
    std::string h;
    for (unsigned char c : b) h += fmt::format("{:02x} ", c);
    return h;
  };
  CHECK(hex(row.bytes) == hex(expected));

  // Read back for a dead letter: the columns as the server would have stored them.
  Arena arena;
  auto decoded = encoder.decode_row(row.bytes, arena);
  REQUIRE(decoded.ok());
  ByteBuffer json;
  write_json(decoded.value(), json);
  CHECK(json.view() ==
        R"({"s":"hé","n":-2,"u":4294967295,"at":"2024-01-01T12:00:00Z","day":"1970-01-03",)"
        R"("id":"01234567-89ab-cdef-0011-223344556677","e":"b","fs":"ab","t64":"2024-01-01T12:00:00.123Z",)"
        R"("xs":[1,null],"f":1.5})");
  CHECK(!encoder.decode_row(row.bytes.substr(0, row.bytes.size() - 1), arena).ok());
}

TEST_CASE("clickhouse RowBinary: absent and null fields get the type's default; Nullable gets NULL", "[clickhouse]") {
  RowBinaryEncoder encoder(columns({{"s", "String"}, {"n", "Nullable(String)"}, {"u", "UInt16"}, {"xs", "Array(String)"}}), {},
                           true);
  CHECK(encode(encoder, R"({"u":null})").bytes == bytes({0, 1, 0, 0, 0}));
}

TEST_CASE("clickhouse RowBinary: a value that does not fit its column is refused, naming the column, nothing written",
          "[clickhouse]") {
  RowBinaryEncoder encoder(columns({{"u8", "UInt8"}, {"i8", "Int8"}, {"at", "DateTime"}, {"id", "UUID"}, {"e", "Enum8('a' = 1)"},
                                    {"fs", "FixedString(2)"}}),
                           {}, true);
  auto reason = [&](std::string_view json) {
    Encoded e = encode(encoder, json);
    if (!e.status.ok()) CHECK(e.bytes.empty());
    return e.status.ok() ? std::string("ok") : e.status.error().message();
  };
  CHECK(reason(R"({"u8":256})") == "column `u8` (UInt8): 256 is out of range for UInt8");
  CHECK(reason(R"({"u8":-1})") == "column `u8` (UInt8): -1 is out of range for UInt8");
  CHECK(reason(R"({"u8":1.5})") == "column `u8` (UInt8): 1.5 is not an integer (UInt8)");
  CHECK(reason(R"({"i8":-129})") == "column `i8` (Int8): -129 is out of range for Int8");
  CHECK(reason(R"({"i8":-128})") == "ok");
  CHECK(reason(R"({"at":"yesterday"})") ==
        "column `at` (DateTime): 'yesterday' is neither an ISO-8601 timestamp nor a number of epoch seconds");
  CHECK(reason(R"({"at":"1969-12-31 23:59:59"})") == R"(column `at` (DateTime): "1969-12-31 23:59:59" is outside DateTime's range)");
  CHECK(reason(R"({"id":"0123"})") == R"(column `id` (UUID): "0123" is not a UUID)");
  CHECK(reason(R"({"e":"z"})") == R"(column `e` (Enum8('a' = 1)): "z" is not a value of the Enum)");
  CHECK(reason(R"({"e":1})") == "ok");
  CHECK(reason(R"({"fs":"abc"})") == R"(column `fs` (FixedString(2)): "abc" is longer than FixedString(2))");
}

TEST_CASE("clickhouse RowBinary: fields that are no column, only_fields, strings from other JSON values", "[clickhouse]") {
  std::vector<Column> cols = columns({{"a", "String"}, {"b.c", "UInt8"}});
  RowBinaryEncoder strict(cols, {}, false);
  Encoded unknown = encode(strict, R"({"a":"x","z":1})");
  REQUIRE(!unknown.status.ok());
  CHECK(unknown.status.error().message() == "field 'z' is not a column of the table (skip_unknown_fields is off)");
  CHECK(encode(strict, R"({"a":{"k":[1,true]},"b.c":3})").bytes == bytes({14}) + R"({"k":[1,true]})" + bytes({3}));
  // only_fields: a column's value is the field of its path (b.c inside b), as JSONEachRow writes it.
  RowBinaryEncoder only(cols, {"a", "b.c", "extra"}, false);
  CHECK(encode(only, R"({"a":"x","b":{"c":7},"ignored":1})").bytes == bytes({1, 'x', 7}));
  CHECK(encode(only, R"({"a":"x","extra":1})").status.error().message() ==
        "field 'extra' is not a column of the table (skip_unknown_fields is off)");
  RowBinaryEncoder skip(cols, {}, true);
  CHECK(encode(skip, R"({"a":"x","z":1})").status.ok());
}
