// The default dead-letter file (for components whose `NAME.dead_letter` output nothing
// reads): one JSON line per rejected event or undecodable input, with the component and the
// reason. Written synchronously: rejections are rare, and a dead letter must not wait in
// memory behind the data that is flowing. Capped: past `max_bytes` the file is renamed to
// <path>.1 (replacing the one before) and a new one started.
//
// The record itself, {"timestamp","component","component_type","reason","event"[,"metadata"]}
// or {...,"line","raw"}, is also what a routed dead letter carries as its event.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

#include "weir/buffer.hpp"
#include "weir/clock.hpp"
#include "weir/event.hpp"

namespace weir::runtime {

class DeadLetterFile {
 public:
  DeadLetterFile(std::string path, std::uint64_t max_bytes) : path_(std::move(path)), max_bytes_(max_bytes) {}
  ~DeadLetterFile();
  DeadLetterFile(const DeadLetterFile&) = delete;
  DeadLetterFile& operator=(const DeadLetterFile&) = delete;

  // False when it could not be written (the file cannot be opened or written: full disk):
  // the line went to the log, and the event counts as not delivered.
  bool write_event(std::string_view component, std::string_view type, const Event& event, std::string_view reason);
  bool write_raw(std::string_view component, std::string_view type, std::string_view raw, std::uint64_t line,
                 std::string_view reason);
  void set_clock(const Clock* clock) { clock_ = clock; }  // the pipeline's: the records' timestamp
  const std::string& path() const { return path_; }
  std::uint64_t written() const { return written_; }

 private:
  void begin(std::string_view component, std::string_view type, std::string_view reason);
  bool finish();
  void rotate();

  const Clock* clock_ = nullptr;
  std::string path_;
  std::uint64_t max_bytes_;
  std::uint64_t size_ = 0;
  std::FILE* file_ = nullptr;
  bool open_failed_ = false;
  ByteBuffer line_;
  std::uint64_t written_ = 0;
};

}  // namespace weir::runtime
