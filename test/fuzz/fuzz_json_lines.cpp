// NDJSON lines as the stdin and file sources decode them (LineStream, fed in reads of
// fuzzer-chosen sizes), and the round trip: every event decoded, encoded and decoded again
// encodes to the same text. The same lines as texts for JsonParser::objects_have_key (what
// request_id asks of payloads): each answer equals object_has_key's for that text alone.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "weir/codec.hpp"
#include "weir/json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace weir;
  if (size < 1) return 0;
  const std::size_t read_size = 1 + data[0] % 97;  // the first byte cuts the input into reads
  LineStream stream(Codec::Json, 4096, 1024);
  EventBatch batch;
  std::vector<DecodeRejection> rejected;
  for (std::size_t at = 1; at < size;) {
    std::size_t available = 0;
    char* space = stream.read_space(available);
    std::size_t n = std::min({available, read_size, size - at});
    std::memcpy(space, data + at, n);
    at += n;
    stream.commit(n, batch, rejected);
  }
  stream.finish(batch, rejected);
  JsonParser parser;
  for (const Event& event : batch.events()) {
    std::string once = to_json(event.fields);
    Arena arena;
    auto again = parser.parse(once, arena);
    if (!again.ok()) __builtin_trap();              // what weir writes, weir reads
    if (to_json(again.value()) != once) __builtin_trap();  // and it is stable
  }
  std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::vector<std::string_view> texts;
  for (std::size_t start = 0; start <= input.size();) {
    std::size_t end = std::min(input.find('\n', start), input.size());
    texts.push_back(input.substr(start, end - start));
    start = end + 1;
  }
  std::vector<int> together(texts.size());
  parser.objects_have_key(texts, "request", together);
  for (std::size_t i = 0; i < texts.size(); ++i) {
    auto alone = parser.object_has_key(texts[i], "request");
    if (together[i] != weir::JsonParser::presence(alone)) __builtin_trap();
  }
  return 0;
}
