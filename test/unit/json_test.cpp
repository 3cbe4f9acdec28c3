// JSON round trip: what goes in comes out, value for value.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "weir/codec.hpp"
#include "weir/json.hpp"

using namespace weir;

namespace {

std::string round_trip(const std::string& text) {
  Arena arena;
  JsonParser parser;
  auto parsed = parser.parse(text, arena);
  REQUIRE(parsed.ok());
  std::string encoded = to_json(parsed.value());
  // Decoding what we wrote gives the same value again.
  Arena arena2;
  auto again = parser.parse(encoded, arena2);
  REQUIRE(again.ok());
  CHECK(again.value() == parsed.value());
  return encoded;
}

}  // namespace

TEST_CASE("json: integers keep every bit") {
  CHECK(round_trip(R"({"a":9223372036854775807,"b":-9223372036854775808,"c":0})") ==
        R"({"a":9223372036854775807,"b":-9223372036854775808,"c":0})");
  CHECK(round_trip(R"({"u":18446744073709551615,"v":9223372036854775808})") ==
        R"({"u":18446744073709551615,"v":9223372036854775808})");
  Arena arena;
  JsonParser parser;
  auto v = parser.parse(R"({"u":18446744073709551615})", arena);
  REQUIRE(v.ok());
  CHECK(v.value().find("u")->is_uint());
  CHECK(v.value().find("u")->as_uint() == std::numeric_limits<std::uint64_t>::max());
}

TEST_CASE("json: doubles use the shortest round-trip form and stay doubles") {
  CHECK(round_trip(R"({"a":0.1,"b":5.0,"c":-0.0,"d":1e300,"e":2.5e-8})") ==
        R"({"a":0.1,"b":5.0,"c":-0.0,"d":1e+300,"e":2.5e-08})");
  CHECK(round_trip(R"([1.7976931348623157e308,5e-324,123456789.123456789])") ==
        R"([1.7976931348623157e+308,5e-324,123456789.12345679])");
  ByteBuffer out;
  write_double(std::nan(""), out);
  out.push_back(' ');
  write_double(std::numeric_limits<double>::infinity(), out);
  CHECK(out.view() == "null null");  // JSON has no NaN or infinity
}

TEST_CASE("json: strings with escapes and any Unicode") {
  CHECK(round_trip(R"({"s":"quote \" backslash \\ slash \/ nl \n tab \t cr \r bs \b ff \f"})") ==
        R"({"s":"quote \" backslash \\ slash / nl \n tab \t cr \r bs \b ff \f"})");
  CHECK(round_trip(R"({"ctl":"\u0000\u0001\u001f","del":"\u007f"})") == "{\"ctl\":\"\\u0000\\u0001\\u001f\",\"del\":\"\x7f\"}");
  CHECK(round_trip(R"({"u":"\u00e9\u4e2d\ud83d\ude00","raw":"żółć 日本 🎉"})") ==
        "{\"u\":\"é中😀\",\"raw\":\"żółć 日本 🎉\"}");
  CHECK(round_trip(R"({"k\"ey\n":"v"})") == R"({"k\"ey\n":"v"})");
}

TEST_CASE("json: nested objects, arrays, null, booleans, empty containers") {
  std::string text = R"({"a":{"b":[1,[2,[3,{}]],[],null,true,false]},"c":null,"d":{}})";
  CHECK(round_trip(text) == text);
}

TEST_CASE("json: numbers keep their kind; whitespace around a document is fine; scalars parse as scalars") {
  CHECK(round_trip(R"( {"i":-9223372036854775808,"u":18446744073709551615,"d":-0.5,"e":1e300,"z":0} )") ==
        R"({"i":-9223372036854775808,"u":18446744073709551615,"d":-0.5,"e":1e+300,"z":0})");
  Arena arena;
  JsonParser parser;
  auto scalar = parser.parse(R"("text")", arena);
  REQUIRE(scalar.ok());
  CHECK(scalar.value().as_string() == "text");
  auto number = parser.parse("42", arena);
  REQUIRE(number.ok());
  CHECK(number.value().as_int() == 42);
  auto array = parser.parse(R"([{"a":[]},"x",null])", arena);
  REQUIRE(array.ok());
  CHECK(to_json(array.value()) == R"([{"a":[]},"x",null])");
  // Strings outlive the parser's buffer, which the next document reuses.
  auto first = parser.parse(R"({"k":"first value","e":"a\nb"})", arena);
  auto second = parser.parse(R"({"k":"second","e":"zzzzzzzzzzzzzzzzzzzzzzzz"})", arena);
  REQUIRE(first.ok());
  REQUIRE(second.ok());
  CHECK(to_json(first.value()) == R"({"k":"first value","e":"a\nb"})");
}

TEST_CASE("json: invalid documents are errors with a reason") {
  Arena arena;
  JsonParser parser;
  for (const char* bad : {"{", R"({"a":})", R"({"a":1,})", "nul", R"({"a":"\x"})", "{\"a\":\"\xff\"}", R"({"a":1} x)",
                          R"({"a":1}{"b":2})", R"([1,2] 3)", R"({"a":[1,2})", R"({"a" 1})", R"({"a":tru})",
                          R"({"a":1e999})", R"({"a":123456789012345678901234567890})", R"("s" x)", R"({"a":[1,]})",
                          "{\"a\":\"tab\there\"}", R"({"a":{"b":1})", R"(})", "{\"a\":nulls}"}) {
    auto r = parser.parse(bad, arena);
    INFO(bad);
    CHECK_FALSE(r.ok());
    if (!r.ok()) CHECK(r.error().message().rfind("invalid JSON: ", 0) == 0);
  }
}

TEST_CASE("json: a bad line is rejected with its number; neighbours survive") {
  std::string input = "{\"n\":1}\n{\"n\":2,}\n\n{\"n\":3}\r\n[1,2]\n   \n{\"n\":\n{\"n\":4}";
  LineDecoder decoder(Codec::Json);
  EventBatch batch;
  std::vector<DecodeRejection> rejected;
  decoder.decode(input.data(), input.size(), input.size(), batch, rejected);
  REQUIRE(batch.size() == 3);
  CHECK(to_json(batch.events()[0].fields) == R"({"n":1})");
  CHECK(to_json(batch.events()[1].fields) == R"({"n":3})");
  CHECK(to_json(batch.events()[2].fields) == R"({"n":4})");
  REQUIRE(rejected.size() == 3);
  CHECK(rejected[0].line == 2);
  CHECK(rejected[0].raw == "{\"n\":2,}");
  CHECK(rejected[0].reason.rfind("invalid JSON", 0) == 0);
  CHECK(rejected[1].line == 5);
  CHECK(rejected[1].reason == "expected a JSON object, got array");
  CHECK(rejected[2].line == 7);
}

TEST_CASE("json: text codec keeps lines as messages, repairing bad UTF-8") {
  std::string input = "hello world\nbad \xff byte\n";
  LineDecoder decoder(Codec::Text);
  EventBatch batch;
  std::vector<DecodeRejection> rejected;
  decoder.decode(input.data(), input.size(), input.size(), batch, rejected);
  REQUIRE(batch.size() == 2);
  CHECK(to_json(batch.events()[0].fields) == R"({"message":"hello world"})");
  CHECK(batch.events()[1].fields.find("message")->as_string() == "bad \xEF\xBF\xBD byte");
}

TEST_CASE("json: line stream frames reads of any size, and rejects overlong lines whole") {
  std::string input;
  for (int i = 0; i < 2000; ++i) input += "{\"n\":" + std::to_string(i) + ",\"pad\":\"" + std::string(i % 97, 'x') + "\"}\n";
  std::string too_long = "{\"big\":\"" + std::string(5000, 'y') + "\"}\n";
  input.insert(input.find("{\"n\":1000,"), too_long);
  input += "{\"last\":true}";  // no final newline

  for (std::size_t read_size : {1, 7, 4096, 1 << 20}) {
    LineStream stream(Codec::Json, 4096, 8192);
    EventBatch batch;
    std::vector<DecodeRejection> rejected;
    std::size_t at = 0;
    while (at < input.size()) {
      std::size_t space = 0;
      char* dst = stream.read_space(space);
      std::size_t n = std::min({space, read_size, input.size() - at});
      std::memcpy(dst, input.data() + at, n);
      stream.commit(n, batch, rejected);
      at += n;
    }
    stream.finish(batch, rejected);
    INFO("read size " << read_size);
    REQUIRE(batch.size() == 2001);
    CHECK(batch.events()[999].fields.find("n")->as_int() == 999);
    CHECK(batch.events()[1000].fields.find("n")->as_int() == 1000);
    CHECK(batch.events()[2000].fields.find("last")->as_bool());
    REQUIRE(rejected.size() == 1);
    CHECK(rejected[0].line == 1001);
    CHECK(rejected[0].reason == "line longer than max_line_bytes (4096 bytes)");
    CHECK(stream.line_number() == 2002);
    CHECK(stream.bytes_consumed() == input.size());
  }
}

TEST_CASE("json: read-ahead: the next read lands before the accepted lines decode, and changes nothing") {
  std::string input;
  for (int i = 0; i < 3000; ++i) input += "{\"n\":" + std::to_string(i) + ",\"s\":\"" + std::string(i % 53, 'q') + "\"}\n";
  for (std::size_t read_size : {5, 333, 4096}) {
    LineStream stream(Codec::Json, 4096, 8192);
    EventBatch batch;
    std::vector<DecodeRejection> rejected;
    std::size_t at = 0;
    std::size_t space = 0;
    char* dst = stream.read_space(space);
    std::size_t n = std::min({space, read_size, input.size() - at});
    std::memcpy(dst, input.data() + at, n);
    while (n > 0) {
      at += n;
      stream.accept(n, rejected);
      // The next read, as the file source starts it: into the same chunk after the
      // accepted bytes, or a new one. Whatever it writes must not reach these lines.
      dst = stream.read_space(space);
      n = std::min({space, read_size, input.size() - at});
      std::memset(dst, '}', space);  // a read in flight may leave anything there first
      std::memcpy(dst, input.data() + at, n);
      stream.decode_accepted(batch, rejected);
    }
    INFO("read size " << read_size);
    REQUIRE(rejected.empty());
    REQUIRE(batch.size() == 3000);
    for (int i = 0; i < 3000; i += 499) {
      CHECK(batch.events()[i].fields.find("n")->as_int() == i);
      CHECK(batch.events()[i].fields.find("s")->as_string().size() == static_cast<std::size_t>(i % 53));
    }
    CHECK(stream.bytes_consumed() == input.size());
  }
}

TEST_CASE("json: a CRLF line of exactly max_line_bytes passes however the reads are cut") {
  std::string line = "{\"k\":\"" + std::string(90, 'x') + "\"}";  // 98 bytes
  std::string input = line + "\r\n" + line + "\r\n";
  for (std::size_t cut = 1; cut < input.size(); ++cut) {
    LineStream stream(Codec::Json, line.size(), 4096);
    EventBatch batch;
    std::vector<DecodeRejection> rejected;
    for (auto [from, to] : {std::pair<std::size_t, std::size_t>{0, cut}, {cut, input.size()}}) {
      std::size_t space = 0;
      char* dst = stream.read_space(space);
      std::memcpy(dst, input.data() + from, to - from);
      stream.commit(to - from, batch, rejected);
    }
    INFO("cut at " << cut);
    CHECK(rejected.empty());
    CHECK(batch.size() == 2);
  }
}

TEST_CASE("value: paths, set, erase, deep copy") {
  Arena arena;
  Value root = Value::object(arena);
  root.set_path(arena, "payload.request.id", Value::string_view("abc"));
  root.set(arena, "n", Value::integer(1));
  CHECK(to_json(root) == R"({"payload":{"request":{"id":"abc"}},"n":1})");
  REQUIRE(root.find_path("payload.request.id") != nullptr);
  CHECK(root.find_path("payload.request.id")->as_string() == "abc");
  CHECK(root.find_path("payload.nope.id") == nullptr);
  Arena other;
  Value copy = deep_copy(root, other);
  CHECK(copy == root);
  CHECK(root.erase_path("payload.request"));
  CHECK(to_json(root) == R"({"payload":{},"n":1})");
  CHECK(to_json(copy) == R"({"payload":{"request":{"id":"abc"}},"n":1})");
  for (int i = 0; i < 100; ++i) root.set(arena, arena.copy("k" + std::to_string(i)), Value::integer(i));
  CHECK(root.size() == 102);
  CHECK(root.find("k99")->as_int() == 99);
}

TEST_CASE("json: string escaping matches a byte-by-byte reference at every offset") {
  auto reference = [](std::string_view s) {
    std::string out = "\"";
    for (unsigned char c : s) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
          if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
          } else {
            out += static_cast<char>(c);
          }
      }
    }
    return out + "\"";
  };
  const std::string specials[] = {"\"", "\\", "\n", "\x01", "\x1f", " ", "\x7f", "\xc3\xa9", "\xe2\x82\xac", "!", "]"};
  for (std::size_t len = 0; len < 40; ++len) {
    for (const std::string& special : specials) {
      for (std::size_t at = 0; at <= len; ++at) {
        std::string s(len, 'a');
        s.insert(at, special);
        ByteBuffer out;
        write_json_string(s, out);
        REQUIRE(out.view() == reference(s));
      }
    }
  }
}

// object_has_key one text at a time, as the reference for the batched call.
static int has_key_alone(JsonParser& parser, std::string_view text, std::string_view key) {
  auto has = parser.object_has_key(text, key);
  return JsonParser::presence(has);
}

TEST_CASE("json: objects_have_key answers for each text what object_has_key does alone, whatever its neighbours") {
  // Texts that end a stream of documents early or could shift what follows them: open
  // strings and brackets, two documents in one text, scalars, spaces, bad UTF-8, escapes.
  const std::vector<std::string> pieces = {
      R"({"frame":3})", R"({"from":0,"to":2,"step":2})", R"({"request":{"id":"x"}})", R"(  {"a":1}  )", "{}",
      R"({"a":"unterminated)", R"({"a":[1})", "[1,2]", "5", R"("request")", "", "   ", R"({"a":1} {"b":2})",
      R"({"a":1}x)", "null", "{\"a\":\"\xff\"}", R"({"q":"\"}{\"request\":1"})", R"({"request":1,"request":2})",
      "{\n\"request\"\n:\n1\n}", R"({"a":"\\"})", "}", "{", R"({"nested":{"request":1}})", "\t{\"request\":0}\r"};
  JsonParser parser;
  std::vector<int> expected(pieces.size());
  for (std::size_t i = 0; i < pieces.size(); ++i) expected[i] = has_key_alone(parser, pieces[i], "request");
  CHECK(expected[0] == 0);
  CHECK(expected[2] == 1);
  CHECK(expected[5] == -1);
  // Every ordered pair and triple of pieces as a batch, and all of them at once.
  auto check_batch = [&](const std::vector<std::size_t>& which) {
    std::vector<std::string_view> texts;
    for (std::size_t i : which) texts.push_back(pieces[i]);
    std::vector<int> results(texts.size(), 9);
    parser.objects_have_key(texts, "request", results);
    for (std::size_t k = 0; k < which.size(); ++k) {
      if (results[k] != expected[which[k]]) {
        FAIL_CHECK("text " << k << " of the batch, " << pieces[which[k]] << ": " << results[k] << " instead of "
                           << expected[which[k]]);
      }
    }
  };
  for (std::size_t a = 0; a < pieces.size(); ++a) {
    for (std::size_t b = 0; b < pieces.size(); ++b) {
      check_batch({a, b});
      for (std::size_t c = 0; c < pieces.size(); c += 3) check_batch({a, b, c});
    }
  }
  std::vector<std::size_t> all(pieces.size());
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
  check_batch(all);
  // A long run of good ones, the common case, answered by the stream.
  std::vector<std::size_t> many(700, 0);
  for (std::size_t i = 0; i < many.size(); i += 7) many[i] = 2;
  check_batch(many);
  check_batch({});
}
