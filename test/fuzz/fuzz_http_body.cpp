// Request bodies as the http_server source decodes them: json, ndjson, text and CVAT's
// client format, plain or under Content-Encoding gzip or zstd. The first byte picks the
// codec (bits 0-1) and the encoding (bits 2-3): 0 the rest is the body; 1 and 2 the rest is
// a gzip or zstd stream (bombs included: decompressed with a 1 MiB limit, as the server
// does with max_body_bytes); 3 the rest is compressed here with both, and each must
// decompress back to exactly it, and a limit one byte short must be refused as too large.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "plugins/sources/http_server/body_decoder.hpp"
#include "weir/compression.hpp"

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_http_body: %s\n", what);
  std::abort();
}

void round_trip(const std::string& body) {
  using namespace weir::compression;
  for (const char* coding : {"gzip", "zstd"}) {
    std::string packed = std::string(coding) == "gzip" ? gzip_compress(body) : zstd_compress(body);
    auto back = decode_content(coding, packed, body.size());
    if (!back.ok() || back.value() != body) fail("a compressed body does not decompress to itself");
    if (body.empty()) continue;
    auto short_by_one = decode_content(coding, packed, body.size() - 1);
    if (short_by_one.ok() || short_by_one.error().message() != kTooLarge) fail("a limit one byte short is not refused");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace weir;
  using namespace weir::plugins;
  if (size < 1) return 0;
  static const BodyCodec kCodecs[] = {BodyCodec::Json, BodyCodec::Ndjson, BodyCodec::Text, BodyCodec::CvatClient};
  BodyDecoder decoder(kCodecs[data[0] % 4]);
  std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch ((data[0] >> 2) % 4) {
    case 1:
    case 2: {
      auto decoded = compression::decode_content((data[0] >> 2) % 4 == 1 ? "gzip" : "zstd", std::move(body), 1 << 20);
      if (!decoded.ok()) return 0;  // refused with a reason: the server answers 413 or 415
      if (decoded.value().size() > (1 << 20)) fail("decompressed past the limit");
      body = std::move(decoded.value());
      break;
    }
    case 3: round_trip(body); break;
    default: break;
  }
  EventBatch batch;
  std::vector<BodyRejection> rejected;
  decoder.decode(body, 1'700'000'000'000'000'000, batch, rejected);
  return 0;
}
