// The parse limit of this machine: simdjson alone over an NDJSON file, every document fully
// parsed and validated, the ceiling any JSON pipeline on this CPU can reach. Two ways, and
// the faster counts: parse_many over the whole file, and one parse() per line (what weir's
// decoder does; on some CPUs, e.g. AMD EPYC with the icelake kernel, it is the faster).
// Prints one JSON line: {"events":..,"bytes":..,"seconds":..,"method":..}.
#include <simdjson.h>

#include <chrono>
#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: weir-parse-limit FILE.ndjson\n");
    return 2;
  }
  auto text = simdjson::padded_string::load(argv[1]);
  if (text.error()) {
    std::fprintf(stderr, "cannot read %s: %s\n", argv[1], simdjson::error_message(text.error()));
    return 1;
  }
  simdjson::dom::parser parser;
  auto start = std::chrono::steady_clock::now();
  std::size_t events = 0;
  simdjson::dom::document_stream stream;
  if (auto error = parser.parse_many(text.value()).get(stream)) {
    std::fprintf(stderr, "parse_many: %s\n", simdjson::error_message(error));
    return 1;
  }
  for (auto doc : stream) {
    if (doc.error()) {
      std::fprintf(stderr, "document %zu: %s\n", events, simdjson::error_message(doc.error()));
      return 1;
    }
    ++events;
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const char* method = "parse_many";

  // One parse() per line, in place: the bytes after each line (the next lines, then the
  // padded_string's padding) are readable, as simdjson needs.
  start = std::chrono::steady_clock::now();
  std::size_t line_events = 0;
  const char* data = text.value().data();
  const std::size_t size = text.value().size();
  for (std::size_t at = 0; at < size;) {
    const char* newline = static_cast<const char*>(std::memchr(data + at, '\n', size - at));
    std::size_t end = newline != nullptr ? static_cast<std::size_t>(newline - data) : size;
    if (end > at) {
      simdjson::dom::element doc;
      if (auto error = parser.parse(data + at, end - at, false).get(doc)) {
        std::fprintf(stderr, "line %zu: %s\n", line_events + 1, simdjson::error_message(error));
        return 1;
      }
      ++line_events;
    }
    at = end + 1;
  }
  double line_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (line_events == events && line_seconds < seconds) {
    seconds = line_seconds;
    method = "parse per line";
  }
  std::printf("{\"events\":%zu,\"bytes\":%zu,\"seconds\":%.6f,\"method\":\"%s\",\"implementation\":\"%s\"}\n",
              events, text.value().size(), seconds, method, simdjson::get_active_implementation()->name().c_str());
  return 0;
}
