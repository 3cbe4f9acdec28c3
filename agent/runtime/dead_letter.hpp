// The dead-letter file: one JSON line per rejected event or undecodable input, with the
// component and the reason. Written synchronously: rejections are rare, and a dead letter
// must not wait in memory behind the data that is flowing.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

#include "weir/buffer.hpp"
#include "weir/event.hpp"

namespace weir::runtime {

class DeadLetterFile {
 public:
  explicit DeadLetterFile(std::string path) : path_(std::move(path)) {}
  ~DeadLetterFile();
  DeadLetterFile(const DeadLetterFile&) = delete;
  DeadLetterFile& operator=(const DeadLetterFile&) = delete;

  void write_event(std::string_view component, std::string_view type, const Event& event, std::string_view reason);
  void write_raw(std::string_view component, std::string_view type, std::string_view raw, std::uint64_t line,
                 std::string_view reason);
  const std::string& path() const { return path_; }
  std::uint64_t written() const { return written_; }

 private:
  void begin(std::string_view component, std::string_view type, std::string_view reason);
  void finish();

  std::string path_;
  std::FILE* file_ = nullptr;
  bool open_failed_ = false;
  ByteBuffer line_;
  std::uint64_t written_ = 0;
};

}  // namespace weir::runtime
