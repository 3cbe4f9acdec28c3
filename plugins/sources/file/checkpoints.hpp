// File source checkpoints: fingerprint -> offset of the first byte not yet delivered,
// kept in <data_dir>/<component>/checkpoints.json and replaced atomically (temp + rename),
// so a crash leaves either the old or the new file, never half of one.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "weir/result.hpp"

namespace weir::plugins {

class Checkpoints {
 public:
  explicit Checkpoints(std::string path) : path_(std::move(path)) {}

  Status load();
  Status save();  // only when something changed
  std::uint64_t offset(const std::string& fingerprint, bool& found) const;
  void set(const std::string& fingerprint, std::uint64_t offset, const std::string& path);
  const std::string& path() const { return path_; }

 private:
  struct Entry {
    std::uint64_t offset = 0;
    std::string file;  // last path seen, for people reading the file
  };
  std::string path_;
  std::map<std::string, Entry> entries_;
  bool dirty_ = false;
};

}  // namespace weir::plugins
