#include "buffer/disk_log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "buffer/batch_record.hpp"
#include "buffer/crc32c.hpp"

namespace weir::buffer {

namespace {

constexpr std::uint32_t kRecordMagic = 0x31425257;    // "WRB1" as bytes in the file
constexpr std::uint32_t kSetAsideMagic = 0x58425257;  // "WRBX"
constexpr std::uint32_t kLedgerMagic = 0x314C5257;  // "WRL1"

bool record_magic(std::uint32_t magic) { return magic == kRecordMagic || magic == kSetAsideMagic; }

template <typename T>
T load(const char* at) {
  T value;
  std::memcpy(&value, at, sizeof(T));
  return value;
}
template <typename T>
void store(char* at, T value) {
  std::memcpy(at, &value, sizeof(T));
}

Error os_error(std::string_view what, const std::string& path, int error) {
  return Error(fmt::format("{} {}: {}", what, path, std::strerror(error)));
}

// The record at `offset` of `data`, if it is whole and its CRC matches.
bool good_record(std::string_view data, std::uint64_t offset, RecordLocation& out) {
  if (data.size() < kRecordHeaderBytes || offset > data.size() - kRecordHeaderBytes) return false;
  const char* h = data.data() + offset;
  std::uint32_t magic = load<std::uint32_t>(h);
  if (!record_magic(magic)) return false;
  std::uint32_t length = load<std::uint32_t>(h + 4);
  if (length > kMaxRecordPayload || length > data.size() - offset - kRecordHeaderBytes) return false;
  std::uint32_t crc = crc32c({h + 4, 16});
  crc = crc32c({h + kRecordHeaderBytes, length}, crc);
  if (crc != load<std::uint32_t>(h + 20)) return false;
  out.offset = offset;
  out.payload_bytes = length;
  out.first_id = load<std::uint64_t>(h + 8);
  out.events = load<std::uint32_t>(h + 16);
  out.set_aside = magic == kSetAsideMagic;
  return true;
}

// The next good record after damage at `offset`: the first place past it that holds the
// magic and a whole record with a matching CRC.
std::uint64_t resync(std::string_view data, std::uint64_t offset, RecordLocation& out) {
  static constexpr char magic[3] = {'W', 'R', 'B'};  // then '1', or 'X' when set aside
  for (std::uint64_t at = offset + 1; at + kRecordHeaderBytes <= data.size(); ++at) {
    const void* found = memmem(data.data() + at, data.size() - at, magic, sizeof magic);
    if (!found) break;
    at = static_cast<std::uint64_t>(static_cast<const char*>(found) - data.data());
    if (good_record(data, at, out)) return at;
  }
  return data.size();
}

// An incomplete last write: a header cut short, or a header whose payload runs past the end.
bool torn_at(std::string_view data, std::uint64_t offset) {
  std::uint64_t rest = data.size() - offset;
  if (rest < kRecordHeaderBytes) return true;
  const char* h = data.data() + offset;
  return record_magic(load<std::uint32_t>(h)) && load<std::uint32_t>(h + 4) > rest - kRecordHeaderBytes;
}

Result<std::string> read_whole(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return os_error("cannot open", path, errno);
  std::string data;
  struct stat st {};
  if (fstat(fd, &st) == 0) data.reserve(static_cast<std::size_t>(st.st_size));
  char chunk[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int error = errno;
      ::close(fd);
      return os_error("cannot read", path, error);
    }
    if (n == 0) break;
    data.append(chunk, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return data;
}

bool parse_segment_name(const std::string& name, std::uint64_t& id) {
  if (name.size() != 24 || name.compare(20, 4, ".seg") != 0) return false;
  id = 0;
  for (int i = 0; i < 20; ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    id = id * 10 + static_cast<std::uint64_t>(name[i] - '0');
  }
  return true;
}

Status sync_directory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return os_error("cannot open", dir, errno);
  int rc = fsync(fd);
  int error = errno;
  ::close(fd);
  if (rc != 0) return os_error("cannot fsync", dir, error);
  return {};
}

}  // namespace

void append_record(ByteBuffer& out, std::uint64_t first_id, std::uint32_t events, std::string_view payload) {
  char* h = out.ensure(kRecordHeaderBytes + payload.size());
  store<std::uint32_t>(h, kRecordMagic);
  store<std::uint32_t>(h + 4, static_cast<std::uint32_t>(payload.size()));
  store<std::uint64_t>(h + 8, first_id);
  store<std::uint32_t>(h + 16, events);
  if (!payload.empty()) std::memcpy(h + kRecordHeaderBytes, payload.data(), payload.size());
  std::uint32_t crc = crc32c({h + 4, 16});
  store<std::uint32_t>(h + 20, crc32c(payload, crc));
  out.commit(kRecordHeaderBytes + payload.size());
}

std::string segment_file_name(std::uint64_t segment) { return fmt::format("{:020}.seg", segment); }

std::uint64_t LogScan::unacknowledged_events() const {
  std::uint64_t n = 0;
  for (const RecordLocation& r : unacknowledged) n += r.events;
  return n;
}

bool read_ledger_slot(std::string_view slot, LedgerSlot& out) {
  if (slot.size() < kLedgerSlotBytes || load<std::uint32_t>(slot.data()) != kLedgerMagic) return false;
  if (crc32c(slot.substr(8, 24)) != load<std::uint32_t>(slot.data() + 4)) return false;
  out.save_number = load<std::uint64_t>(slot.data() + 8);
  out.acknowledged = load<std::uint64_t>(slot.data() + 16);
  out.written = load<std::uint64_t>(slot.data() + 24);
  return true;
}

LedgerSlot newest_ledger_slot(std::string_view file) {
  LedgerSlot best;
  for (std::size_t at : {std::size_t{0}, kLedgerSlotStride}) {
    LedgerSlot slot;
    if (at < file.size() && read_ledger_slot(file.substr(at), slot) && slot.save_number >= best.save_number) best = slot;
  }
  return best;
}

Result<LogScan> scan_log(const std::string& dir) {
  LogScan scan;
  std::error_code ec;
  if (std::filesystem::exists(dir + "/ledger", ec)) {
    auto ledger = read_whole(dir + "/ledger");
    if (!ledger.ok()) return ledger.error();
    LedgerSlot slot = newest_ledger_slot(ledger.value());
    if (slot.save_number == 0 && !ledger.value().empty()) {
      scan.problems.push_back("ledger: no valid slot; every record in the segments is delivered again");
    }
    scan.acknowledged = slot.acknowledged;
    scan.written = slot.written;
  }
  std::vector<std::uint64_t> ids;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    std::uint64_t id = 0;
    if (entry.is_regular_file() && parse_segment_name(entry.path().filename().string(), id)) ids.push_back(id);
  }
  if (ec) return Error(fmt::format("cannot list {}: {}", dir, ec.message()));
  std::sort(ids.begin(), ids.end());

  std::uint64_t expected = scan.acknowledged;  // the next unacknowledged id a record should start at
  scan.next_id = scan.acknowledged;
  auto missing = [&](std::uint64_t upto, const std::string& where) {
    scan.events_lost += upto - expected;
    scan.problems.push_back(fmt::format("events {}..{} are missing ({})", expected, upto - 1, where));
  };
  for (std::uint64_t id : ids) {
    std::string name = segment_file_name(id);
    auto data = read_whole(dir + "/" + name);
    if (!data.ok()) return data.error();
    std::string_view bytes = data.value();
    scan.segment_bytes[id] = bytes.size();
    std::uint64_t offset = 0;
    while (offset < bytes.size()) {
      RecordLocation record;
      if (!good_record(bytes, offset, record)) {
        std::uint64_t next = resync(bytes, offset, record);
        bool torn = next == bytes.size() && torn_at(bytes, offset);
        ++scan.corrupted_records;
        if (torn) ++scan.torn_tails;
        scan.problems.push_back(fmt::format("{} at byte {}: {} ({} bytes skipped)", name, offset,
                                            torn ? "torn last write" : "damaged record (framing or CRC)",
                                            next - offset));
        offset = next;
        continue;
      }
      record.segment = id;
      ++scan.records;
      scan.next_id = std::max(scan.next_id, record.end_id());
      offset += kRecordHeaderBytes + record.payload_bytes;
      if (record.end_id() <= scan.acknowledged) continue;  // delivered before
      if (record.first_id < expected) {
        scan.problems.push_back(fmt::format("{} at byte {}: record of ids {}..{} overlaps the one before; skipped",
                                            name, record.offset, record.first_id, record.end_id() - 1));
        continue;
      }
      if (record.first_id > expected) missing(record.first_id, fmt::format("before {} byte {}", name, record.offset));
      expected = record.end_id();
      if (record.set_aside) {
        ++scan.set_aside_records;
        scan.set_aside_events += record.events;
        continue;
      }
      record.marks = read_marks(bytes.substr(record.offset + kRecordHeaderBytes, record.payload_bytes));
      scan.unacknowledged.push_back(std::move(record));
    }
  }
  if (scan.written > expected) missing(scan.written, "after the last good record");
  scan.next_id = std::max({scan.next_id, expected, scan.written});
  return scan;
}

Status set_aside_records(const std::string& dir, const std::vector<RecordLocation>& records) {
  std::map<std::uint64_t, std::vector<std::uint64_t>> offsets;  // per segment
  for (const RecordLocation& r : records) offsets[r.segment].push_back(r.offset);
  for (const auto& [segment, at] : offsets) {
    std::string path = dir + "/" + segment_file_name(segment);
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return os_error("cannot open", path, errno);
    char magic[4];
    store<std::uint32_t>(magic, kSetAsideMagic);
    for (std::uint64_t offset : at) {
      if (pwrite(fd, magic, sizeof magic, static_cast<off_t>(offset)) != static_cast<ssize_t>(sizeof magic)) {
        int error = errno ? errno : ENOSPC;
        ::close(fd);
        return os_error("cannot write", path, error);
      }
    }
    int rc = fdatasync(fd);
    int error = errno;
    ::close(fd);
    if (rc != 0) return os_error("cannot fdatasync", path, error);
  }
  return {};
}

SegmentReader::~SegmentReader() {
  for (auto& [id, fd] : fds_) ::close(fd);
}

void SegmentReader::close_segment(std::uint64_t segment) {
  auto it = fds_.find(segment);
  if (it == fds_.end()) return;
  ::close(it->second);
  fds_.erase(it);
}

Status SegmentReader::read(const RecordLocation& where, std::string& payload) {
  auto it = fds_.find(where.segment);
  if (it == fds_.end()) {
    std::string path = dir_ + "/" + segment_file_name(where.segment);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return os_error("cannot open", path, errno);
    it = fds_.emplace(where.segment, fd).first;
  }
  std::string record(kRecordHeaderBytes + where.payload_bytes, '\0');
  std::size_t done = 0;
  while (done < record.size()) {
    ssize_t n = pread(it->second, record.data() + done, record.size() - done, static_cast<off_t>(where.offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return os_error("cannot read", segment_file_name(where.segment), errno);
    if (n == 0) return Error(fmt::format("{} ends inside the record at byte {}", segment_file_name(where.segment), where.offset));
    done += static_cast<std::size_t>(n);
  }
  RecordLocation found;
  if (!good_record(record, 0, found) || found.first_id != where.first_id || found.events != where.events) {
    return Error(fmt::format("{} at byte {}: the record no longer matches its CRC", segment_file_name(where.segment),
                             where.offset));
  }
  payload.assign(record, kRecordHeaderBytes, std::string::npos);
  return {};
}

SegmentWriter::~SegmentWriter() { close_segment(); }

void SegmentWriter::close_segment() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Status SegmentWriter::open_segment(std::uint64_t id) {
  std::string path = dir_ + "/" + segment_file_name(id);
  // A file of that name can only hold a torn write that was never acknowledged (the scan
  // starts new ids after every good record), so it is emptied.
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return os_error("cannot create", path, errno);
  fd_ = fd;
  segment_ = id;
  size_ = 0;
  return sync_directory(dir_);  // the new name survives a crash of the machine
}

Result<SegmentWriter::Appended> SegmentWriter::append(std::string_view records, std::uint64_t first_id, bool sync) {
  Appended out;
  if (fd_ >= 0 && size_ > 0 && size_ + records.size() > segment_bytes_) close_segment();
  if (fd_ < 0) {
    if (Status opened = open_segment(first_id); !opened.ok()) {
      close_segment();
      return opened.error();
    }
    out.new_segment = true;
  }
  out.segment = segment_;
  out.offset = size_;
  std::string path = dir_ + "/" + segment_file_name(segment_);
  auto fail = [&](std::string_view what, int error) -> Error {
    // Cut back what this call wrote, so no later scan finds half of it (best effort: the
    // CRC tells a torn record anyway), and start the next append in a new segment.
    if (ftruncate(fd_, static_cast<off_t>(out.offset)) != 0) { /* the scan will see a torn tail */ }
    close_segment();
    return os_error(what, path, error);
  };
  std::size_t done = 0;
  while (done < records.size()) {
    ssize_t n = pwrite(fd_, records.data() + done, records.size() - done, static_cast<off_t>(size_ + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("cannot write", errno);
    if (n == 0) return fail("cannot write", ENOSPC);
    done += static_cast<std::size_t>(n);
  }
  if (sync && fdatasync(fd_) != 0) return fail("cannot fdatasync", errno);
  size_ += records.size();
  out.segment_bytes = size_;
  return out;
}

Ledger::~Ledger() {
  if (fd_ >= 0) ::close(fd_);
}

Status Ledger::open() {
  std::string path = dir_ + "/ledger";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) return os_error("cannot open", path, errno);
  char file[kLedgerSlotStride + kLedgerSlotBytes] = {};
  ssize_t n = pread(fd_, file, sizeof file, 0);
  if (n < 0) return os_error("cannot read", path, errno);
  LedgerSlot slot = newest_ledger_slot({file, static_cast<std::size_t>(n)});
  saves_ = slot.save_number;
  acknowledged_ = slot.acknowledged;
  written_ = slot.written;
  return {};
}

Status Ledger::save(std::uint64_t acknowledged, std::uint64_t written) {
  char slot[kLedgerSlotBytes];
  std::uint64_t save_number = saves_ + 1;
  store<std::uint32_t>(slot, kLedgerMagic);
  store<std::uint64_t>(slot + 8, save_number);
  store<std::uint64_t>(slot + 16, acknowledged);
  store<std::uint64_t>(slot + 24, written);
  store<std::uint32_t>(slot + 4, crc32c({slot + 8, 24}));
  off_t at = (save_number % 2) ? 0 : static_cast<off_t>(kLedgerSlotStride);
  if (pwrite(fd_, slot, sizeof slot, at) != static_cast<ssize_t>(sizeof slot)) {
    return os_error("cannot write", dir_ + "/ledger", errno ? errno : ENOSPC);
  }
  saves_ = save_number;
  acknowledged_ = acknowledged;
  written_ = written;
  return {};
}

Status Ledger::sync() const {
  if (fdatasync(fd_) != 0) return os_error("cannot fdatasync", dir_ + "/ledger", errno);
  return {};
}

}  // namespace weir::buffer
