#include "weir/compression.hpp"

#include <algorithm>
#include <cstdint>
#include <vector>

#include <isa-l/igzip_lib.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <fmt/format.h>

namespace weir::compression {

Result<std::string> gzip_decompress(std::string_view input, std::size_t max_output) {
  z_stream stream{};
  // 16 + MAX_WBITS: a gzip header and trailer, not a raw zlib stream.
  if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK) return Error("gzip: cannot initialise zlib");
  // The first size: the gzip trailer's ISIZE (the last member's length mod 2^32; exact for
  // the usual one member) when it says more than the input, else 4x the input; never past
  // the limit. A lie only changes where the buffer starts: it grows, or stops at the limit.
  std::size_t hint = std::max<std::size_t>(input.size() * 4, 4096);
  if (input.size() >= 18) {
    const auto* tail = reinterpret_cast<const unsigned char*>(input.data() + input.size() - 4);
    std::size_t isize = tail[0] | (tail[1] << 8) | (tail[2] << 16) | (std::size_t{tail[3]} << 24);
    if (isize >= input.size()) hint = isize + 1;  // + 1: the end is seen without a resize
  }
  std::string out;
  out.resize(std::min<std::size_t>(max_output + 1, hint));
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(input.data()));
  stream.avail_in = static_cast<uInt>(input.size());
  // Where the output goes on: zlib's total_out starts again at 0 with each gzip member.
  std::size_t produced = 0;
  int rc = Z_OK;
  while (true) {
    if (produced == out.size()) {
      if (out.size() > max_output) break;
      out.resize(std::min<std::size_t>(out.size() * 2, max_output + 1));
    }
    stream.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
    stream.avail_out = static_cast<uInt>(std::min<std::size_t>(out.size() - produced, UINT32_MAX));
    uInt room = stream.avail_out;
    rc = inflate(&stream, Z_NO_FLUSH);
    produced += room - stream.avail_out;
    if (rc == Z_STREAM_END) {
      // Concatenated gzip members are one body (what `cat a.gz b.gz` makes).
      if (stream.avail_in == 0) break;
      if (inflateReset(&stream) != Z_OK) break;
      continue;
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) break;
    if (rc == Z_BUF_ERROR && stream.avail_in == 0) break;
  }
  inflateEnd(&stream);
  if (produced > max_output) return Error(std::string(kTooLarge));
  if (rc != Z_STREAM_END) return Error(fmt::format("gzip: corrupt or truncated body ({})", stream.msg ? stream.msg : "incomplete"));
  out.resize(produced);
  return out;
}

namespace {
Error zstd_error(std::size_t code) {
  if (ZSTD_getErrorCode(code) == ZSTD_error_frameParameter_windowTooLarge) {
    return Error(fmt::format("zstd: the frame needs a window over {} MiB (compressed with --long or an ultra "
                             "level); compress with a level up to 19 and no --long",
                             (std::size_t{1} << kZstdWindowLogMax) >> 20));
  }
  return Error(fmt::format("zstd: {}", ZSTD_getErrorName(code)));
}
}  // namespace

Result<std::string> zstd_decompress(std::string_view input, std::size_t max_output) {
  std::unique_ptr<ZSTD_DStream, decltype(&ZSTD_freeDStream)> stream(ZSTD_createDStream(), ZSTD_freeDStream);
  if (!stream) return Error("zstd: cannot create a decompression stream");
  // The window a frame may ask the decoder to allocate: zstd's default limit is 128 MiB
  // (windowLog 27), which one small hostile body could claim. Levels up to 19 need at most
  // 8 MiB; --long and the ultra levels are refused.
  ZSTD_DCtx_setParameter(stream.get(), ZSTD_d_windowLogMax, kZstdWindowLogMax);
  std::string out;
  // The frame's content size, when it states one, as the first capacity (never past the limit).
  unsigned long long stated = ZSTD_getFrameContentSize(input.data(), input.size());
  if (stated != ZSTD_CONTENTSIZE_UNKNOWN && stated != ZSTD_CONTENTSIZE_ERROR) {
    out.reserve(static_cast<std::size_t>(std::min<unsigned long long>(stated, max_output)));
  }
  ZSTD_inBuffer in{input.data(), input.size(), 0};
  std::size_t last = 1;
  char chunk[64 * 1024];
  while (in.pos < in.size) {
    ZSTD_outBuffer o{chunk, sizeof chunk, 0};
    last = ZSTD_decompressStream(stream.get(), &o, &in);
    if (ZSTD_isError(last)) return zstd_error(last);
    if (out.size() + o.pos > max_output) return Error(std::string(kTooLarge));
    out.append(chunk, o.pos);
    if (o.pos == 0 && in.pos < in.size && last == 0) continue;
  }
  // Flush what the decoder still holds.
  while (last != 0) {
    ZSTD_outBuffer o{chunk, sizeof chunk, 0};
    last = ZSTD_decompressStream(stream.get(), &o, &in);
    if (ZSTD_isError(last)) return zstd_error(last);
    if (out.size() + o.pos > max_output) return Error(std::string(kTooLarge));
    out.append(chunk, o.pos);
    if (o.pos == 0) break;
  }
  if (last != 0) return Error("zstd: truncated body");
  return out;
}

namespace {

// A compressed body is sized for the worst case and is often a tenth of it: it is held until
// delivered (with its retries), so the rest goes back to the allocator now. The copy costs a
// tenth of a pass over the input.
void keep_only_used(std::string& out) {
  if (out.capacity() > out.size() + out.size() / 4 + 4096) out.shrink_to_fit();
}

}  // namespace

std::string gzip_compress(std::string_view input, int level) {
  // ISA-L's igzip, not zlib: at its levels 1-2 it writes gzip 4x as fast as zlib's level 3
  // for 15% larger bodies (CVAT rows, tools/bench/clickhouse.py --compression gzip), and
  // every gzip reader (zlib in ClickHouse and InfluxDB) takes what it writes.
  level = std::clamp(level, 0, ISAL_DEF_MAX_LEVEL);
  static constexpr std::uint32_t kLevelBufferSize[] = {ISAL_DEF_LVL0_DEFAULT, ISAL_DEF_LVL1_DEFAULT,
                                                      ISAL_DEF_LVL2_DEFAULT, ISAL_DEF_LVL3_DEFAULT};
  std::vector<std::uint8_t> level_buffer(kLevelBufferSize[level]);
  isal_zstream stream;
  isal_deflate_init(&stream);
  stream.level = static_cast<std::uint32_t>(level);
  stream.level_buf = level_buffer.empty() ? nullptr : level_buffer.data();
  stream.level_buf_size = static_cast<std::uint32_t>(level_buffer.size());
  stream.gzip_flag = IGZIP_GZIP;
  stream.end_of_stream = 1;
  stream.flush = NO_FLUSH;
  stream.next_in = reinterpret_cast<std::uint8_t*>(const_cast<char*>(input.data()));
  stream.avail_in = static_cast<std::uint32_t>(input.size());  // bodies are far below 4 GiB
  std::string out;
  // Incompressible input becomes stored blocks: a few bytes per 64 KiB over the input.
  out.resize(input.size() + input.size() / 64 + 1024);
  std::size_t produced = 0;
  while (stream.internal_state.state != ZSTATE_END) {
    if (produced == out.size()) out.resize(out.size() * 2);
    stream.next_out = reinterpret_cast<std::uint8_t*>(out.data() + produced);
    stream.avail_out = static_cast<std::uint32_t>(std::min<std::size_t>(out.size() - produced, UINT32_MAX));
    std::uint32_t room = stream.avail_out;
    if (isal_deflate(&stream) != COMP_OK) return {};  // only for invalid parameters, which these are not
    produced += room - stream.avail_out;
  }
  out.resize(produced);
  keep_only_used(out);
  return out;
}

std::string zstd_compress(std::string_view input, int level) {
  std::string out;
  out.resize(ZSTD_compressBound(input.size()));
  std::size_t n = ZSTD_compress(out.data(), out.size(), input.data(), input.size(), level);
  out.resize(ZSTD_isError(n) ? 0 : n);
  keep_only_used(out);
  return out;
}

Result<std::string> decode_content(std::string_view encoding, std::string body, std::size_t max_output) {
  if (encoding.empty() || encoding == "identity") {
    if (body.size() > max_output) return Error(std::string(kTooLarge));
    return body;
  }
  if (encoding == "gzip" || encoding == "x-gzip") return gzip_decompress(body, max_output);
  if (encoding == "zstd") return zstd_decompress(body, max_output);
  return Error(fmt::format("unsupported Content-Encoding '{}' (use gzip or zstd)", encoding));
}

}  // namespace weir::compression
