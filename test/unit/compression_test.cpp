#include <zstd.h>

#include <catch2/catch.hpp>

#include <string>

#include "weir/compression.hpp"

using namespace weir;

namespace {

// A zstd frame without a content size (streamed), so its header keeps the window it was
// compressed with: what a hostile client sends to make the decoder allocate it.
std::string zstd_with_window_log(const std::string& input, int window_log) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, window_log);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0);
  std::string out(ZSTD_compressBound(input.size()) + 1024, '\0');
  ZSTD_outBuffer o{out.data(), out.size(), 0};
  ZSTD_inBuffer in{input.data(), input.size(), 0};
  ZSTD_compressStream2(cctx, &o, &in, ZSTD_e_continue);
  while (ZSTD_compressStream2(cctx, &o, &in, ZSTD_e_end) != 0) {
  }
  ZSTD_freeCCtx(cctx);
  out.resize(o.pos);
  return out;
}

}  // namespace

TEST_CASE("compression: gzip and zstd round-trip, concatenated gzip members are one body") {
  std::string text(100'000, 'x');
  for (std::size_t i = 0; i < text.size(); i += 7) text[i] = static_cast<char>('a' + i % 26);
  auto g = compression::gzip_decompress(compression::gzip_compress(text), 1 << 20);
  REQUIRE(g.ok());
  CHECK(g.value() == text);
  auto z = compression::zstd_decompress(compression::zstd_compress(text), 1 << 20);
  REQUIRE(z.ok());
  CHECK(z.value() == text);
  auto two = compression::gzip_decompress(compression::gzip_compress("ab") + compression::gzip_compress("cd"), 100);
  REQUIRE(two.ok());
  CHECK(two.value() == "abcd");
}

TEST_CASE("compression: a bomb stops at the limit, with no more than the limit produced") {
  std::string zeros(64 << 20, '\0');  // 64 MiB of zeros: about 64 KiB gzip, 2 KiB zstd
  std::string gz = compression::gzip_compress(zeros, 9);
  std::string zs = compression::zstd_compress(zeros, 3);
  zeros = std::string();
  CHECK(gz.size() < 100'000);
  CHECK(zs.size() < 10'000);
  auto g = compression::gzip_decompress(gz, 1 << 20);
  REQUIRE_FALSE(g.ok());
  CHECK(g.error().message() == compression::kTooLarge);
  auto z = compression::zstd_decompress(zs, 1 << 20);
  REQUIRE_FALSE(z.ok());
  CHECK(z.error().message() == compression::kTooLarge);
  // Through the Content-Encoding entry point too, and one byte under the size passes.
  auto exact = compression::decode_content("zstd", compression::zstd_compress(std::string(4096, 'q')), 4096);
  REQUIRE(exact.ok());
  CHECK(exact.value().size() == 4096);
  CHECK_FALSE(compression::decode_content("zstd", compression::zstd_compress(std::string(4097, 'q')), 4096).ok());
}

TEST_CASE("compression: a zstd frame asking for a window over 16 MiB is refused before it is allocated") {
  std::string text(200'000, 'y');
  auto fits = compression::zstd_decompress(zstd_with_window_log(text, compression::kZstdWindowLogMax), 1 << 20);
  REQUIRE(fits.ok());
  CHECK(fits.value() == text);
  auto big = compression::zstd_decompress(zstd_with_window_log(text, 27), 1 << 20);
  REQUIRE_FALSE(big.ok());
  CHECK(big.error().message().find("window over 16 MiB") != std::string::npos);
}

TEST_CASE("compression: truncated and corrupt bodies are errors, not partial bodies") {
  std::string z = compression::zstd_compress(std::string(50'000, 'z'));
  CHECK_FALSE(compression::zstd_decompress(z.substr(0, z.size() / 2), 1 << 20).ok());
  std::string g = compression::gzip_compress(std::string(50'000, 'g'));
  CHECK_FALSE(compression::gzip_decompress(g.substr(0, g.size() / 2), 1 << 20).ok());
  CHECK_FALSE(compression::gzip_decompress("not gzip at all", 1 << 20).ok());
  auto unknown = compression::decode_content("br", "x", 10);
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error().message().find("unsupported Content-Encoding 'br'") != std::string::npos);
}
