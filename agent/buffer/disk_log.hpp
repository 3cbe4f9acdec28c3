// The files of a disk buffer: append-only segments of checksummed records, and a ledger of
// the acknowledged position. No libuv here: the disk channel calls these from the loop
// (scan, read, ledger) and from its write and removal jobs on the thread pool.
//
// <dir>/<first event id, 20 digits>.seg   records, each:
//   u32 magic "WRB1" | u32 payload bytes | u64 first event id | u32 events | u32 CRC-32C | payload
//   The CRC covers the 16 header bytes before it and the payload. Event ids count events,
//   not records (Vector's idea): the next record's first id is this one's plus its events,
//   so a gap between two good records says how many events were lost between them.
//   A record set aside at start (made from batches a stateful transform's saved state does
//   not cover, docs/adr/009-state-commit.md) has its magic overwritten with "WRBX": still
//   framed and checked, its ids still count, but it is never delivered.
// <dir>/ledger                            two 32-byte slots (at 0 and 512), written in turn:
//   u32 magic "WRL1" | u32 CRC-32C of the next 24 bytes | u64 save number | u64 acknowledged id
//   | u64 written id
//   Every event id below `acknowledged` was delivered; every one below `written` was made
//   durable (so a scan that finds less knows events are missing, even at the end). Loading
//   takes the valid slot with the higher save number, so a torn save leaves the one before.
//
// Integers are in host byte order (the buffer is not meant to move between machines).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "weir/buffer.hpp"
#include "weir/event.hpp"
#include "weir/result.hpp"

namespace weir::buffer {

inline constexpr std::size_t kRecordHeaderBytes = 24;
inline constexpr std::uint32_t kMaxRecordPayload = 1u << 30;

// A stateful transform's batch a record was made from (the newest per transform): the mark
// its acknowledgement carried.
using RecordMark = Acknowledgement::StateMark;

struct RecordLocation {
  std::uint64_t segment = 0;  // the segment's id (its file name)
  std::uint64_t offset = 0;   // of the record header in the segment
  std::uint32_t payload_bytes = 0;
  std::uint64_t first_id = 0;
  std::uint32_t events = 0;
  bool set_aside = false;          // magic "WRBX"
  std::vector<RecordMark> marks;   // read by the scan for records still to deliver
  std::uint64_t end_id() const { return first_id + events; }
};

// Appends one record (header and payload) to `out`.
void append_record(ByteBuffer& out, std::uint64_t first_id, std::uint32_t events, std::string_view payload);

std::string segment_file_name(std::uint64_t segment);

// What a scan of a buffer directory found: the records still to deliver, and the damage.
struct LogScan {
  std::uint64_t acknowledged = 0;       // from the ledger
  std::uint64_t written = 0;            // from the ledger: ids below it were durable once
  std::uint64_t next_id = 0;            // one past the last good record (at least `acknowledged`)
  std::map<std::uint64_t, std::uint64_t> segment_bytes;  // id -> file size, every segment
  std::vector<RecordLocation> unacknowledged;            // good records at or past `acknowledged`, in order
  std::uint64_t records = 0;            // good records in all segments
  std::uint64_t corrupted_records = 0;  // spans that failed framing or CRC (a torn tail counts as one)
  std::uint64_t torn_tails = 0;         // of them: an incomplete last write at a segment's end
  std::uint64_t events_lost = 0;        // unacknowledged events known missing (id gaps)
  std::uint64_t set_aside_records = 0;  // set aside at an earlier start, not yet acknowledged past
  std::uint64_t set_aside_events = 0;
  std::vector<std::string> problems;    // one line each, for the log and `weir buffer check`
  std::uint64_t unacknowledged_events() const;
};

// Reads every segment of `dir` (which must exist) and the ledger. Damage is reported, never
// fatal: only an unreadable directory or file is an error.
Result<LogScan> scan_log(const std::string& dir);

// Sets records aside for good: their magic becomes "WRBX", each touched segment is
// fdatasynced before this returns.
Status set_aside_records(const std::string& dir, const std::vector<RecordLocation>& records);

// Reads one record's payload into `payload` (resized to it; `padding` spare bytes after it
// for simdjson), checking its framing and CRC again: the file may have been damaged since
// the scan. Open segment files are kept in `open_files` (segment -> fd); close_segment()
// closes one.
class SegmentReader {
 public:
  explicit SegmentReader(std::string dir) : dir_(std::move(dir)) {}
  ~SegmentReader();
  SegmentReader(const SegmentReader&) = delete;
  SegmentReader& operator=(const SegmentReader&) = delete;
  Status read(const RecordLocation& where, std::string& payload);
  void close_segment(std::uint64_t segment);

 private:
  std::string dir_;
  std::map<std::uint64_t, int> fds_;
};

// The writing end: appends groups of records to the current segment and makes them durable.
// Used by one thread at a time (the channel's write job).
class SegmentWriter {
 public:
  SegmentWriter(std::string dir, std::uint64_t segment_bytes) : dir_(std::move(dir)), segment_bytes_(segment_bytes) {}
  ~SegmentWriter();
  SegmentWriter(const SegmentWriter&) = delete;
  SegmentWriter& operator=(const SegmentWriter&) = delete;

  struct Appended {
    std::uint64_t segment = 0;
    std::uint64_t offset = 0;         // where `records` starts
    std::uint64_t segment_bytes = 0;  // the segment's size after it
    bool new_segment = false;
  };
  // Writes `records` (whole records, the first of which starts at `first_id`) at the end of
  // the current segment, or of a new one named `first_id` when the current one is full, and
  // with `sync` returns only after fdatasync. On any error the segment is cut back to where
  // it was and closed (after a failed fsync the kernel's view of its pages is unknown), so
  // the next call starts a new segment: nothing written before is touched.
  Result<Appended> append(std::string_view records, std::uint64_t first_id, bool sync);

 private:
  Status open_segment(std::uint64_t id);
  void close_segment();

  std::string dir_;
  std::uint64_t segment_bytes_;
  int fd_ = -1;
  std::uint64_t segment_ = 0;
  std::uint64_t size_ = 0;
};

class Ledger {
 public:
  explicit Ledger(std::string dir) : dir_(std::move(dir)) {}
  ~Ledger();
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;
  // Opens (creating) the ledger file and reads the acknowledged id; a damaged slot is
  // ignored, two damaged slots read as 0 (everything in the segments is delivered again).
  Status open();
  std::uint64_t acknowledged() const { return acknowledged_; }
  std::uint64_t written() const { return written_; }
  // Writes the next slot (pwrite, no fsync: a crash of the process keeps it; sync() makes
  // it survive the machine).
  Status save(std::uint64_t acknowledged, std::uint64_t written);
  Status sync() const;  // fdatasync, safe from another thread while save() runs
  int fd() const { return fd_; }

 private:
  std::string dir_;
  int fd_ = -1;
  std::uint64_t saves_ = 0;
  std::uint64_t acknowledged_ = 0;
  std::uint64_t written_ = 0;
};

// The ledger slot format, for scan_log and tests: true and the id when the slot is valid.
struct LedgerSlot {
  std::uint64_t save_number = 0, acknowledged = 0, written = 0;
};
inline constexpr std::size_t kLedgerSlotBytes = 32;
inline constexpr std::size_t kLedgerSlotStride = 512;
bool read_ledger_slot(std::string_view slot, LedgerSlot& out);
// Both slots of a ledger file's bytes: the newest valid one, or all zero.
LedgerSlot newest_ledger_slot(std::string_view file);

}  // namespace weir::buffer
