#include "runtime/dead_letter.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "weir/json.hpp"
#include "weir/log.hpp"
#include "weir/time.hpp"

namespace weir::runtime {

DeadLetterFile::~DeadLetterFile() {
  if (file_ != nullptr) std::fclose(file_);
}

void DeadLetterFile::begin(std::string_view component, std::string_view type, std::string_view reason) {
  line_.clear();
  line_.append("{\"timestamp\":\"");
  format_iso8601_ms(clock_ ? clock_->now() : wall_clock_now(), line_);
  line_.append("\",\"component\":");
  write_json_string(component, line_);
  line_.append(",\"component_type\":");
  write_json_string(type, line_);
  line_.append(",\"reason\":");
  write_json_string(reason, line_);
}

bool DeadLetterFile::finish() {
  line_.append("}\n");
  if (file_ != nullptr && size_ + line_.size() > max_bytes_ && size_ > 0) rotate();
  if (file_ == nullptr && !open_failed_) {
    std::error_code ec;
    auto parent = std::filesystem::path(path_).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    file_ = std::fopen(path_.c_str(), "ab");
    if (file_ == nullptr) {
      open_failed_ = true;
      log::error("dead_letter", "cannot open {}: {}; dead letters go to the log and are not delivered", path_,
                 std::strerror(errno));
    } else {
      size_ = std::filesystem::file_size(path_, ec);
      if (ec) size_ = 0;
    }
  }
  bool written = false;
  if (file_ != nullptr) {
    written = std::fwrite(line_.data(), 1, line_.size(), file_) == line_.size() && std::fflush(file_) == 0;
    if (written) {
      size_ += line_.size();
    } else {
      log::error("dead_letter", "cannot write {}: {}; the event is not delivered", path_, std::strerror(errno));
      std::clearerr(file_);
    }
  }
  if (!written) log::error("dead_letter", "{}", std::string_view(line_.data(), line_.size() - 1));
  if (written) ++written_;
  return written;
}

void DeadLetterFile::rotate() {
  std::fclose(file_);
  file_ = nullptr;
  std::string old = path_ + ".1";
  if (std::rename(path_.c_str(), old.c_str()) != 0) {
    log::error("dead_letter", "cannot rotate {}: {}", path_, std::strerror(errno));
  } else {
    log::info("dead_letter", "{} reached {} bytes: moved to {}", path_, size_, old);
  }
  size_ = 0;
}

bool DeadLetterFile::write_event(std::string_view component, std::string_view type, const Event& event,
                                 std::string_view reason) {
  begin(component, type, reason);
  line_.append(",\"event\":");
  write_json(event.fields, line_);
  if (!event.metadata.is_null()) {
    line_.append(",\"metadata\":");
    write_json(event.metadata, line_);
  }
  return finish();
}

bool DeadLetterFile::write_raw(std::string_view component, std::string_view type, std::string_view raw,
                               std::uint64_t line, std::string_view reason) {
  begin(component, type, reason);
  if (line > 0) {
    line_.append(",\"line\":");
    line_.append(std::to_string(line));
  }
  line_.append(",\"raw\":");
  Arena scratch(256);
  write_json_string(valid_utf8(raw, scratch), line_);
  return finish();
}

}  // namespace weir::runtime
