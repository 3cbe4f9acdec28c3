#include "checkpoints.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string_view>

#include <fmt/format.h>

#include "weir/arena.hpp"
#include "weir/buffer.hpp"
#include "weir/json.hpp"

namespace weir::plugins {
namespace {

constexpr std::string_view kMagic = "weir-checkpoints v1";

std::uint32_t crc_of(std::string_view body) {
  return static_cast<std::uint32_t>(
      crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size())));
}

// A slot's content: "weir-checkpoints v1 <sequence> <length> <crc32>\n<body>", possibly
// followed by padding. Returns false when it is missing, torn or not ours.
bool parse_slot(std::string_view text, std::uint64_t& sequence, std::string_view& body) {
  std::size_t eol = text.find('\n');
  if (eol == std::string_view::npos || text.substr(0, kMagic.size()) != kMagic) return false;
  unsigned long long seq = 0, length = 0;
  unsigned int crc = 0;
  std::string header(text.substr(kMagic.size(), eol - kMagic.size()));
  if (std::sscanf(header.c_str(), " %llu %llu %x", &seq, &length, &crc) != 3) return false;
  if (length > text.size() - eol - 1) return false;
  body = text.substr(eol + 1, length);
  if (crc_of(body) != crc) return false;
  sequence = seq;
  return true;
}

std::string read_all(int fd) {
  std::string text;
  char chunk[65536];
  std::int64_t offset = 0;
  for (;;) {
    ssize_t n = ::pread(fd, chunk, sizeof chunk, offset);
    if (n <= 0) break;
    text.append(chunk, static_cast<std::size_t>(n));
    offset += n;
  }
  return text;
}

}  // namespace

Checkpoints::Checkpoints(std::string directory) : directory_(std::move(directory)) {}

Checkpoints::~Checkpoints() {
  for (Slot& slot : slots_) {
    if (slot.fd >= 0) ::close(slot.fd);
  }
}

std::string Checkpoints::slot_path(int slot) const { return fmt::format("{}/checkpoints.{}", directory_, slot); }

Status Checkpoints::open_slots() {
  std::error_code ec;
  std::filesystem::create_directories(directory_, ec);
  for (int i = 0; i < 2; ++i) {
    if (slots_[i].fd >= 0) continue;
    int fd = ::open(slot_path(i).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return Error(fmt::format("cannot open {}: {}", slot_path(i), std::strerror(errno)));
    struct stat st {};
    slots_[i].fd = fd;
    slots_[i].written = ::fstat(fd, &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
  }
  return {};
}

Status Checkpoints::load(std::int64_t now) {
  if (Status opened = open_slots(); !opened.ok()) return opened;
  std::string texts[2];
  std::string_view best_body;
  bool found = false, damaged = false;
  for (int i = 0; i < 2; ++i) {
    texts[i] = read_all(slots_[i].fd);
    std::uint64_t sequence = 0;
    std::string_view body;
    if (parse_slot(texts[i], sequence, body)) {
      if (!found || sequence > sequence_) {
        sequence_ = sequence;
        best_body = body;
      }
      found = true;
    } else if (!texts[i].empty()) {
      damaged = true;  // torn by a crash, most likely: the other slot holds the previous save
    }
  }
  if (!found) {
    if (damaged) {
      return Error(fmt::format("checkpoint files {} and {} are damaged; move them away to start over",
                               slot_path(0), slot_path(1)));
    }
    return {};  // first run
  }
  Arena arena;
  JsonParser parser;
  auto parsed = parser.parse(best_body, arena);
  if (!parsed.ok() || !parsed.value().is_object()) {
    return Error(fmt::format("checkpoint file {} is damaged ({}); move it away to start over", slot_path(sequence_ % 2),
                             parsed.ok() ? "not an object" : parsed.error().message()));
  }
  for (const Member& m : parsed.value().members()) {
    const Value* offset = m.value.find("offset");
    const Value* file = m.value.find("file");
    const Value* seen = m.value.find("seen");
    if (offset == nullptr || !offset->is_int()) continue;
    entries_[std::string(m.key)] = Entry{static_cast<std::uint64_t>(offset->as_int()),
                                          file && file->is_string() ? std::string(file->as_string()) : std::string(),
                                          seen && seen->is_int() ? seen->as_int() : now};
  }
  return {};
}

Status Checkpoints::save() {
  if (!dirty_) return {};
  if (Status opened = open_slots(); !opened.ok()) return opened;
  ByteBuffer body;
  body.push_back('{');
  bool first = true;
  for (const auto& [fingerprint, entry] : entries_) {
    if (!first) body.push_back(',');
    first = false;
    body.append("\n");
    write_json_string(fingerprint, body);
    body.append(fmt::format(":{{\"offset\":{},\"seen\":{},\"file\":", entry.offset, entry.seen));
    write_json_string(entry.file, body);
    body.push_back('}');
  }
  body.append("\n}\n");
  std::string_view body_text(body.data(), body.size());
  std::uint64_t sequence = sequence_ + 1;
  std::string text = fmt::format("{} {} {} {:08x}\n", kMagic, sequence, body_text.size(), crc_of(body_text));
  text.append(body_text);
  Slot& slot = slots_[sequence % 2];
  // Never shrink the file: truncating frees blocks, which is what this scheme avoids.
  if (text.size() < slot.written) text.append(slot.written - text.size(), ' ');
  std::size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::pwrite(slot.fd, text.data() + done, text.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Error(fmt::format("cannot write {}: {}", slot_path(sequence % 2), std::strerror(errno)));
    done += static_cast<std::size_t>(n);
  }
  slot.written = std::max<std::uint64_t>(slot.written, text.size());
  sequence_ = sequence;
  dirty_ = false;
  return {};
}

std::string Checkpoints::key(std::uint64_t device, std::uint64_t inode, const std::string& fingerprint) {
  return fmt::format("{}:{}:{}", device, inode, fingerprint);
}

std::uint64_t Checkpoints::offset(const std::string& key, const std::string& fingerprint, bool& found) {
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    auto legacy = entries_.find(fingerprint);
    if (legacy == entries_.end()) {
      found = false;
      return 0;
    }
    it = entries_.emplace(key, legacy->second).first;
    entries_.erase(legacy);
    dirty_ = true;
  }
  found = true;
  return it->second.offset;
}

void Checkpoints::set(const std::string& key, std::uint64_t offset, const std::string& path, std::int64_t now) {
  Entry& entry = entries_[key];
  entry.seen = now;
  if (entry.offset == offset && entry.file == path) return;
  entry.offset = offset;
  entry.file = path;
  dirty_ = true;
}

void Checkpoints::seen(const std::string& key, std::int64_t now, std::int64_t stale) {
  auto it = entries_.find(key);
  if (it == entries_.end() || now - it->second.seen < stale) return;
  it->second.seen = now;
  dirty_ = true;
}

std::size_t Checkpoints::prune(std::int64_t now, std::int64_t retention) {
  std::size_t removed = std::erase_if(entries_, [&](const auto& entry) { return now - entry.second.seen > retention; });
  if (removed > 0) dirty_ = true;
  return removed;
}

}  // namespace weir::plugins
