// Whole-buffer compression for HTTP bodies: gzip (written by ISA-L's igzip, read by zlib) and
// zstd. Decompression takes a limit on the output, so a small malicious body cannot expand
// without bound.
#pragma once

#include <string>
#include <string_view>

#include "weir/result.hpp"

namespace weir::compression {

Result<std::string> gzip_decompress(std::string_view input, std::size_t max_output);
Result<std::string> zstd_decompress(std::string_view input, std::size_t max_output);
// level: igzip's, 0 (fastest) to 3 (smallest).
std::string gzip_compress(std::string_view input, int level = 1);
std::string zstd_compress(std::string_view input, int level = 3);

// Undoes a Content-Encoding ("gzip", "x-gzip", "zstd", "identity" or empty).
// An unknown encoding is an error whose message says so.
Result<std::string> decode_content(std::string_view encoding, std::string body, std::size_t max_output);

// Messages of the errors above that mean "the output would pass max_output".
inline constexpr std::string_view kTooLarge = "decompressed body larger than the limit";
// zstd frames may ask for a window of at most 2^this bytes (16 MiB).
inline constexpr int kZstdWindowLogMax = 24;

}  // namespace weir::compression
