// Request bodies as the http_server source decodes them: json, ndjson, text and CVAT's
// client format (the first byte picks the codec).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "plugins/sources/http_server/body_decoder.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace weir;
  using namespace weir::plugins;
  if (size < 1) return 0;
  static const BodyCodec kCodecs[] = {BodyCodec::Json, BodyCodec::Ndjson, BodyCodec::Text, BodyCodec::CvatClient};
  BodyDecoder decoder(kCodecs[data[0] % 4]);
  std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  EventBatch batch;
  std::vector<BodyRejection> rejected;
  decoder.decode(body, 1'700'000'000'000'000'000, batch, rejected);
  return 0;
}
