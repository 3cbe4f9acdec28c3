// A recorded NDJSON log (what `weir tap --output` writes, or any file of JSON lines), plain,
// gzip or zstd (told by its first bytes, not its name), read as whole lines. Blocking reads:
// used off the loop, by one thread at a time.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>

#include "weir/result.hpp"

namespace weir::replay {

class RecordedLog {
 public:
  // A file, or (`path` empty) the NDJSON text itself.
  static Result<std::unique_ptr<RecordedLog>> open(const std::string& path);
  static std::unique_ptr<RecordedLog> from_text(std::string text);
  ~RecordedLog();

  // Appends up to `max_lines` whole lines (each with its '\n'; a last line without one gets
  // it) to `out`. Returns the number appended: 0 at the end. An error is a read or
  // decompression failure, with the file's name.
  Result<std::size_t> read_lines(std::size_t max_lines, std::string& out);

  std::uint64_t bytes_read() const { return bytes_read_; }   // of the file, as stored
  std::uint64_t total_bytes() const { return total_bytes_; }  // the file's size
  const std::string& name() const { return name_; }

 private:
  enum class Format { Plain, Gzip, Zstd };
  RecordedLog() = default;
  // More decompressed bytes into pending_; false at the end.
  Result<bool> fill();

  std::string name_;
  std::FILE* file_ = nullptr;
  Format format_ = Format::Plain;
  struct Inflater;
  std::unique_ptr<Inflater> inflater_;
  std::string raw_;      // read from the file, not yet decompressed
  std::size_t raw_at_ = 0;
  std::string pending_;  // decompressed, not yet handed out
  std::size_t pending_at_ = 0;
  bool file_done_ = false;
  std::uint64_t bytes_read_ = 0, total_bytes_ = 0;
};

}  // namespace weir::replay
