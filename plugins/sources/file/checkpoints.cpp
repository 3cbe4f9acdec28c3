#include "checkpoints.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "weir/json.hpp"

namespace weir::plugins {

Status Checkpoints::load() {
  std::ifstream in(path_);
  if (!in) return {};  // first run
  std::stringstream text;
  text << in.rdbuf();
  Arena arena;
  JsonParser parser;
  auto parsed = parser.parse(text.str(), arena);
  if (!parsed.ok() || !parsed.value().is_object()) {
    return Error(fmt::format("checkpoint file {} is damaged ({}); move it away to start over", path_,
                             parsed.ok() ? "not an object" : parsed.error().message()));
  }
  for (const Member& m : parsed.value().members()) {
    const Value* offset = m.value.find("offset");
    const Value* file = m.value.find("file");
    if (offset == nullptr || !offset->is_int()) continue;
    entries_[std::string(m.key)] = Entry{static_cast<std::uint64_t>(offset->as_int()),
                                          file && file->is_string() ? std::string(file->as_string()) : std::string()};
  }
  return {};
}

Status Checkpoints::save() {
  if (!dirty_) return {};
  ByteBuffer out;
  out.push_back('{');
  bool first = true;
  for (const auto& [fingerprint, entry] : entries_) {
    if (!first) out.push_back(',');
    first = false;
    out.append("\n");
    write_json_string(fingerprint, out);
    out.append(fmt::format(":{{\"offset\":{},\"file\":", entry.offset));
    write_json_string(entry.file, out);
    out.push_back('}');
  }
  out.append("\n}\n");
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path_).parent_path(), ec);
  std::string temp = path_ + ".tmp";
  std::FILE* f = std::fopen(temp.c_str(), "wb");
  if (f == nullptr) return Error(fmt::format("cannot write {}: {}", temp, std::strerror(errno)));
  bool written = std::fwrite(out.data(), 1, out.size(), f) == out.size();
  written = std::fclose(f) == 0 && written;
  if (!written || std::rename(temp.c_str(), path_.c_str()) != 0) {
    return Error(fmt::format("cannot write {}: {}", path_, std::strerror(errno)));
  }
  dirty_ = false;
  return {};
}

std::uint64_t Checkpoints::offset(const std::string& fingerprint, bool& found) const {
  auto it = entries_.find(fingerprint);
  found = it != entries_.end();
  return found ? it->second.offset : 0;
}

void Checkpoints::set(const std::string& fingerprint, std::uint64_t offset, const std::string& path) {
  Entry& entry = entries_[fingerprint];
  if (entry.offset == offset && entry.file == path) return;
  entry.offset = offset;
  entry.file = path;
  dirty_ = true;
}

}  // namespace weir::plugins
