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
  format_iso8601_ms(wall_clock_now(), line_);
  line_.append("\",\"component\":");
  write_json_string(component, line_);
  line_.append(",\"component_type\":");
  write_json_string(type, line_);
  line_.append(",\"reason\":");
  write_json_string(reason, line_);
}

void DeadLetterFile::finish() {
  line_.append("}\n");
  if (file_ == nullptr && !open_failed_) {
    std::error_code ec;
    auto parent = std::filesystem::path(path_).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    file_ = std::fopen(path_.c_str(), "ab");
    if (file_ == nullptr) {
      open_failed_ = true;
      log::error("dead_letter", "cannot open {}: {}; dead letters go to the log instead", path_, std::strerror(errno));
    }
  }
  if (file_ != nullptr) {
    std::fwrite(line_.data(), 1, line_.size(), file_);
    std::fflush(file_);
  } else {
    log::error("dead_letter", "{}", std::string_view(line_.data(), line_.size() - 1));
  }
  ++written_;
}

void DeadLetterFile::write_event(std::string_view component, std::string_view type, const Event& event,
                                 std::string_view reason) {
  begin(component, type, reason);
  line_.append(",\"event\":");
  write_json(event.fields, line_);
  if (!event.metadata.is_null()) {
    line_.append(",\"metadata\":");
    write_json(event.metadata, line_);
  }
  finish();
}

void DeadLetterFile::write_raw(std::string_view component, std::string_view type, std::string_view raw,
                               std::uint64_t line, std::string_view reason) {
  begin(component, type, reason);
  if (line > 0) {
    line_.append(",\"line\":");
    line_.append(std::to_string(line));
  }
  line_.append(",\"raw\":");
  Arena scratch(256);
  write_json_string(valid_utf8(raw, scratch), line_);
  finish();
}

}  // namespace weir::runtime
