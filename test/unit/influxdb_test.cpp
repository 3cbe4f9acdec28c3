// The line-protocol encoder's escaping and types, and what the influxdb sink makes of the
// server's answers (InfluxDB 1.6's texts as Debian's server sends them).
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <string>

#include "plugins/sinks/influxdb/errors.hpp"
#include "plugins/sinks/influxdb/line_protocol.hpp"
#include "weir/json.hpp"

using namespace weir;
using namespace weir::plugins::influxdb;

namespace {

std::string measurement(std::string_view text, Dialect d = Dialect::V1) {
  ByteBuffer out;
  append_measurement(text, d, out);
  return std::string(out.view());
}
std::string key(std::string_view text, Dialect d = Dialect::V1) {
  ByteBuffer out;
  append_tag_or_key(text, d, out);
  return std::string(out.view());
}
std::string string_value(std::string_view text, Dialect d = Dialect::V1) {
  ByteBuffer out;
  append_string_value(text, d, out);
  return std::string(out.view());
}

// Encodes JSON events one after another with one encoder; each result is the line or "!" + the reason.
struct Encoding {
  explicit Encoding(PointMapping mapping) : encoder(std::move(mapping)) {}
  std::string operator()(std::string_view json) {
    auto parsed = parser.parse(json, arena);
    REQUIRE(parsed.ok());
    ByteBuffer out;
    out.append("<");  // what was there before must stay
    Status s = encoder.encode_row(Event{parsed.value(), Value::null()}, out);
    std::string text(out.view());
    REQUIRE(text.rfind("<", 0) == 0);
    if (!s.ok()) {
      CHECK(text == "<");  // nothing half-written
      return "!" + s.error().message();
    }
    REQUIRE(text.back() == '\n');
    return text.substr(1, text.size() - 2);
  }
  Arena arena;
  JsonParser parser;
  PointEncoder encoder;
};

PointMapping luna_mapping(Dialect d = Dialect::V1) {
  PointMapping m;
  m.dialect = d;
  m.measurement_field = FieldPath("series");
  m.tags = {FieldPath("tags")};
  m.fields = {FieldPath("fields")};
  m.timestamp_field = FieldPath("time");
  m.precision = Precision::Milliseconds;
  return m;
}

}  // namespace

TEST_CASE("influxdb: escaping per element", "[influxdb]") {
  // measurement: comma and space
  CHECK(measurement("cpu load,total") == "cpu\\ load\\,total");
  CHECK(measurement("a=b\"c") == "a=b\"c");  // = and " need nothing in a measurement
  // tag keys, tag values, field keys: comma, equals, space
  CHECK(key("host name=a,b") == "host\\ name\\=a\\,b");
  CHECK(key("Zürich ✓") == "Zürich\\ ✓");  // UTF-8 passes through
  CHECK(key("say \"hi\"") == "say\\ \"hi\"");
  // string field values: quote and backslash; newline, CR, tab by dialect
  CHECK(string_value("a\"b\\c") == "\"a\\\"b\\\\c\"");
  CHECK(string_value("l1\nl2\r\tx", Dialect::V2) == "\"l1\\nl2\\r\\tx\"");
  CHECK(string_value("l1\nl2\r\tx", Dialect::V1) == "\"l1\nl2\r\tx\"");  // 1.x reads the raw bytes inside quotes
  CHECK(string_value("") == "\"\"");
}

TEST_CASE("influxdb: control characters dropped where they cannot be escaped", "[influxdb]") {
  CHECK(key("a\nb\tc\x01" "d\x7f") == "abcd");
  CHECK(measurement("m\r\n") == "m");
}

TEST_CASE("influxdb: a backslash never swallows the delimiter", "[influxdb]") {
  // 1.x keeps backslashes as they are, except where one would escape what follows.
  CHECK(key("a\\b") == "a\\b");
  CHECK(key("ends\\") == "ends\\\\");       // trailing: doubled, the delimiter stays a delimiter
  CHECK(key("a\\,b") == "a\\\\\\,b");       // before an escaped comma
  CHECK(key("a\\\\b") == "a\\\\\\b");       // a backslash before a backslash
  CHECK(key("ends\\\n") == "ends\\\\");     // trailing once the control character is gone
  // 2.x reads \\ as one backslash: always doubled.
  CHECK(key("a\\b", Dialect::V2) == "a\\\\b");
  CHECK(key("ends\\", Dialect::V2) == "ends\\\\");
}

TEST_CASE("influxdb: floats shortest round-trip, NaN and infinities refused", "[influxdb]") {
  auto text = [](double d) {
    ByteBuffer out;
    REQUIRE(append_float(d, out).ok());
    return std::string(out.view());
  };
  CHECK(text(1.234) == "1.234");
  CHECK(text(0.1) == "0.1");
  CHECK(text(5.0) == "5");
  CHECK(text(-1.5e300) == "-1.5e+300");
  CHECK(std::stod(text(0.1 + 0.2)) == 0.1 + 0.2);
  ByteBuffer out;
  CHECK_FALSE(append_float(std::nan(""), out).ok());
  CHECK_FALSE(append_float(std::numeric_limits<double>::infinity(), out).ok());
  CHECK(out.size() == 0);
}

TEST_CASE("influxdb: the LUNA points from the seed document", "[influxdb]") {
  Encoding encode(luna_mapping());
  CHECK(encode(R"({"series":"requests","time":"2018-09-12T11:22:25.123Z","tags":{"service":"luna-faces","route":"POST:/faces","status_code":204},"fields":{"request_id":"1536751345,6a5c2191-3e9b-f5a4-fc45-3abf43625c5f","execution_time":1.234}})") ==
        "requests,route=POST:/faces,service=luna-faces,status_code=204 "
        "request_id=\"1536751345,6a5c2191-3e9b-f5a4-fc45-3abf43625c5f\",execution_time=1.234 1536751345123");
  // A number counts timestamp.unit: named seconds here, written at the precision (ms).
  PointMapping seconds = luna_mapping();
  seconds.number_unit = Precision::Seconds;
  Encoding in_seconds(std::move(seconds));
  CHECK(in_seconds(R"({"series":"errors","time":1536751345.5,"tags":{"service":"luna-faces","route":"POST:/faces","status_code":400,"error_code":13037},"fields":{"request_id":"r1"}})") ==
        "errors,error_code=13037,route=POST:/faces,service=luna-faces,status_code=400 request_id=\"r1\" 1536751345500");
}

TEST_CASE("influxdb: types, and a field keeps its type across points", "[influxdb]") {
  PointMapping m;
  m.measurement = "m";
  Encoding encode(m);
  CHECK(encode(R"({"i":5,"f":1.5,"b":true,"s":"x","n":null})") == "m i=5i,f=1.5,b=true,s=\"x\"");
  CHECK(encode(R"({"i":7.0,"f":2})") == "m i=7i,f=2");  // integral float into an integer field; int into a float field
  CHECK(encode(R"({"i":7.5})").rfind("!field 'i' of 'm' is integer", 0) == 0);
  CHECK(encode(R"({"b":"yes"})").rfind("!field 'b' of 'm' is boolean", 0) == 0);
  CHECK(encode(R"({"s":12})") == "m s=\"12\"");  // a string field takes the number's text
  // A refused point does not fix the type of its fields.
  CHECK(encode(R"({"new":1,"i":0.5})").rfind("!", 0) == 0);
  CHECK(encode(R"({"new":1.25})") == "m new=1.25");
  // Types are per measurement.
  CHECK(encode(R"({"x":1})") == "m x=1i");
  // unsigned: `u` on 2.x; 1.x has none, so integers there.
  PointMapping v2 = m;
  v2.dialect = Dialect::V2;
  Encoding encode2(v2);
  CHECK(encode2(R"({"u":18446744073709551615})") == "m u=18446744073709551615u");
  CHECK(encode(R"({"u":9223372036854775807})") == "m u=9223372036854775807i");
  CHECK(encode(R"({"u2":18446744073709551615})").rfind("!", 0) == 0);  // too large for 1.x's integers
}

TEST_CASE("influxdb: remembered types survive a restart through the encoder's state", "[influxdb]") {
  PointMapping m;
  m.measurement = "m";
  Encoding before(m);
  CHECK(before(R"({"i":5,"s":"x"})") == "m i=5i,s=\"x\"");
  std::string state = before.encoder.state();
  CHECK(before.encoder.state_version() == 2);
  Encoding after(m);
  REQUIRE(after.encoder.restore(state).ok());
  CHECK(after.encoder.state() == state);
  CHECK(after(R"({"i":7.0,"s":12})") == "m i=7i,s=\"12\"");  // the types it had, not the values' own
  CHECK(after(R"({"i":7.5})").rfind("!field 'i' of 'm' is integer", 0) == 0);
  Encoding fresh(m);
  CHECK(fresh(R"({"i":7.0})") == "m i=7");  // what a restart without the state would have sent
  CHECK_FALSE(fresh.encoder.restore(R"({"m\u0000i":"decimal"})").ok());
  CHECK_FALSE(fresh.encoder.restore("[]").ok());
}

TEST_CASE("influxdb: pinned types, nested objects, tags sorted, empty tags omitted", "[influxdb]") {
  PointMapping m;
  m.measurement = "http";
  m.tags = {FieldPath("zone"), FieldPath("host"), FieldPath("empty"), FieldPath("req.method")};
  m.field_types = {{"latency", FieldType::Float}};
  Encoding encode(m);
  CHECK(encode(R"({"zone":"eu","host":"a b","empty":"","req":{"method":"GET"},"latency":3,"resp":{"code":200,"size":{"body":12}}})") ==
        "http,host=a\\ b,req_method=GET,zone=eu req_method=\"GET\",latency=3,resp_code=200i,resp_size_body=12i");
}

TEST_CASE("influxdb: points that cannot be written are refused with a reason", "[influxdb]") {
  Encoding encode(luna_mapping());
  CHECK(encode(R"({"tags":{"a":"b"},"fields":{"x":1}})") .rfind("!no measurement", 0) == 0);
  CHECK(encode(R"({"series":"s","fields":{}})").rfind("!the point has no fields", 0) == 0);
  CHECK(encode(R"({"series":"s","fields":{"x":null}})").rfind("!the point has no fields", 0) == 0);
  CHECK(encode(R"({"series":"#s","fields":{"x":1}})").rfind("!a measurement must not start with '#'", 0) == 0);
  CHECK(encode(R"({"series":"s","time":"yesterday","fields":{"x":1}})").rfind("!timestamp field 'time'", 0) == 0);
  // Found by fuzz_line_protocol: names that are empty or a comment once control characters
  // are dropped. The server refused the whole request for ` =1i`, and read `#s x=1i` as a comment.
  CHECK(encode(R"({"series":"\u0001#s","fields":{"x":1}})").rfind("!a measurement must not start with '#'", 0) == 0);
  CHECK(encode(R"({"series":"s","fields":{"\u0001\u0002":1,"x":2}})") ==
        "!the field key \"\\u0001\\u0002\" is empty once control characters are dropped");
  CHECK(encode(R"({"series":"s","fields":{"a\u0001":1}})") == "s a=1i");
  // No time: the server's.
  CHECK(encode(R"({"series":"s","fields":{"x":1}})") == "s x=1i");
  // Precision floors: 1.9999 s at ms is 1999, before 1970 too.
  CHECK(encode(R"({"series":"s","time":"1969-12-31T23:59:59.9995Z","fields":{"x":1}})") == "s x=1i -1");
}

namespace {
http::Upload upload_of(std::initializer_list<std::string_view> rows) {
  http::Upload u;
  for (std::string_view row : rows) {
    u.body.append(row);
    u.body.push_back('\n');
    u.row_ends.push_back(static_cast<std::uint32_t>(u.body.size()));
  }
  u.rows = u.row_ends.size();
  return u;
}
http::ClientResponse answer(int status, std::string body) {
  http::ClientResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}
}  // namespace

TEST_CASE("influxdb: answers sorted into delivered, retry, refused lines, bisect and setup", "[influxdb]") {
  http::Upload u = upload_of({"m v=1i 1", "m,t=a v= 2", "m v=3i 3", "m v=\"it's\" 4"});
  CHECK(classify(Dialect::V1, u, answer(204, "")).outcome == http::Outcome::Delivered);
  http::ClientResponse transport;
  transport.transport_error = "Connection refused";
  CHECK(classify(Dialect::V1, u, transport).outcome == http::Outcome::Retry);
  CHECK(classify(Dialect::V1, u, answer(503, "")).outcome == http::Outcome::Retry);
  CHECK(classify(Dialect::V1, u, answer(429, "")).outcome == http::Outcome::Retry);

  // 1.6's partial write names the line it could not parse: that one is refused, the rest written.
  auto partial = classify(Dialect::V1, u, answer(400, R"({"error":"partial write: unable to parse 'm,t=a v= 2': missing field value dropped=0"})"));
  CHECK(partial.outcome == http::Outcome::SomeRowsRefused);
  CHECK(partial.refused_rows == std::vector<std::uint32_t>{1});
  CHECK(partial.message.find("missing field value") != std::string::npos);
  // Two named lines (joined by a newline in the body), one with a quote inside.
  auto two = classify(Dialect::V1, u, answer(400, "{\"error\":\"partial write: unable to parse 'm,t=a v= 2': missing field value\\nunable to parse 'm v=\\\"it's\\\" 4': bad dropped=0\"}"));
  CHECK(two.outcome == http::Outcome::SomeRowsRefused);
  CHECK(two.refused_rows == std::vector<std::uint32_t>{1, 3});
  // A type conflict names no line: bisect. So does 2.x, which rejects the whole body.
  CHECK(classify(Dialect::V1, u, answer(400, R"({"error":"partial write: field type conflict: input field \"v\" on measurement \"m\" is type float, already exists as type integer dropped=1"})")).outcome ==
        http::Outcome::BadRows);
  CHECK(classify(Dialect::V2, u, answer(400, R"({"code":"invalid","message":"unable to parse 'm,t=a v= 2': missing field value"})")).outcome ==
        http::Outcome::BadRows);
  // A named line we did not send (cut text): bisect rather than guess.
  CHECK(classify(Dialect::V1, u, answer(400, R"({"error":"partial write: unable to parse 'm,t=a v= 2...': x dropped=0"})")).outcome ==
        http::Outcome::BadRows);
  CHECK(classify(Dialect::V1, u, answer(413, "")).outcome == http::Outcome::BadRows);
  auto missing = classify(Dialect::V1, u, answer(404, R"({"error":"database not found: \"nope\""})"));
  CHECK(missing.outcome == http::Outcome::Setup);
  CHECK(missing.message == "database not found: \"nope\"");
  CHECK(classify(Dialect::V1, u, answer(401, R"({"error":"authorization failed"})")).outcome == http::Outcome::Setup);
  CHECK(classify(Dialect::V1, u, answer(403, "")).outcome == http::Outcome::Setup);
  // The header when the body says nothing.
  http::ClientResponse with_header = answer(500, "");
  with_header.headers.push_back({"x-influxdb-error", "engine: cache-max-memory-size exceeded"});
  auto overloaded = classify(Dialect::V1, u, with_header);
  CHECK(overloaded.outcome == http::Outcome::Retry);
  CHECK(overloaded.message == "engine: cache-max-memory-size exceeded");
}

TEST_CASE("influxdb: numeric timestamps are read in timestamp.unit (default: the precision), with a hint when off", "[influxdb]") {
  Encoding ms(luna_mapping());  // precision ms, no unit: numbers are milliseconds
  CHECK(ms(R"({"series":"s","time":1704110400123,"fields":{"x":1}})") == "s x=1i 1704110400123");
  CHECK(ms(R"({"series":"s","time":"1704110400123","fields":{"x":1}})") == "s x=1i 1704110400123");
  CHECK(ms(R"({"series":"s","time":"2024-01-01T12:00:00.123Z","fields":{"x":1}})") == "s x=1i 1704110400123");
  PointMapping seconds_in = luna_mapping();
  seconds_in.number_unit = Precision::Seconds;  // numbers are seconds, written at ms
  Encoding s_to_ms(std::move(seconds_in));
  CHECK(s_to_ms(R"({"series":"s","time":1704110400.5,"fields":{"x":1}})") == "s x=1i 1704110400500");
  CHECK(s_to_ms(R"({"series":"s","time":1704110400,"fields":{"x":1}})") == "s x=1i 1704110400000");
  std::string refused = s_to_ms(R"({"series":"s","time":1704110400123,"fields":{"x":1}})");
  CHECK(refused.rfind("!timestamp field 'time': 1704110400123 is out of range for epoch seconds", 0) == 0);
  CHECK(refused.find("it looks like milliseconds: set timestamp.unit: ms") != std::string::npos);
  PointMapping ns = luna_mapping();
  ns.precision = Precision::Nanoseconds;
  Encoding nanos(std::move(ns));
  CHECK(nanos(R"({"series":"s","time":1704110400123456789,"fields":{"x":1}})") == "s x=1i 1704110400123456789");
  CHECK(nanos(R"({"series":"s","time":18446744073709551615,"fields":{"x":1}})").rfind("!timestamp field 'time'", 0) == 0);
}
