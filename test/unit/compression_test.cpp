#include <zlib.h>
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

// gzip at zlib's level 9, the densest bomb a client can send (weir's own gzip, igzip, packs
// zeros about 3x less tightly).
std::string zlib_gzip_9(const std::string& input) {
  z_stream stream{};
  deflateInit2(&stream, 9, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&stream, static_cast<uLong>(input.size())), '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(input.data()));
  stream.avail_in = static_cast<uInt>(input.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  deflate(&stream, Z_FINISH);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  return out;
}

const std::string kEmpty;  // a body of no bytes

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

TEST_CASE("compression: every gzip level writes what zlib reads back, incompressible input included") {
  std::string text;
  for (int i = 0; i < 20'000; ++i) text += "{\"scope\":\"change:frame\",\"job_id\":" + std::to_string(i % 97) + "}\n";
  std::string noise(1 << 20, '\0');
  std::uint64_t x = 88172645463325252ULL;  // xorshift: bytes no compressor can shrink
  for (char& c : noise) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    c = static_cast<char>(x);
  }
  for (int level = -1; level <= 4; ++level) {  // out of range is clamped to 0..3
    CAPTURE(level);
    for (const std::string* input : std::initializer_list<const std::string*>{&text, &noise, &kEmpty}) {
      std::string packed = compression::gzip_compress(*input, level);
      REQUIRE(packed.size() >= 18);  // a gzip header and trailer at least
      CHECK(static_cast<unsigned char>(packed[0]) == 0x1f);
      CHECK(static_cast<unsigned char>(packed[1]) == 0x8b);
      auto back = compression::gzip_decompress(packed, 4 << 20);
      REQUIRE(back.ok());
      CHECK(back.value() == *input);
    }
  }
  CHECK(compression::gzip_compress(text, 1).size() * 5 < text.size());
}

TEST_CASE("compression: a bomb stops at the limit, with no more than the limit produced") {
  std::string zeros(64 << 20, '\0');  // 64 MiB of zeros: about 64 KiB gzip, 2 KiB zstd
  std::string gz = zlib_gzip_9(zeros);
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
