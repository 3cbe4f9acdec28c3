// The parse limit of this machine: simdjson alone over an NDJSON file (parse_many, every
// document fully parsed and validated), the ceiling any JSON pipeline on this CPU can reach.
// Prints one JSON line: {"events":..,"bytes":..,"seconds":..}.
#include <simdjson.h>

#include <chrono>
#include <cstdio>

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
  std::printf("{\"events\":%zu,\"bytes\":%zu,\"seconds\":%.6f,\"implementation\":\"%s\"}\n", events,
              text.value().size(), seconds, simdjson::get_active_implementation()->name().c_str());
  return 0;
}
