// The default dead-letter file (for components whose `NAME.dead_letter` output nothing
// reads): one JSON line per rejected event or undecodable input, with the component and the
// reason. Capped: past `max_bytes` the file is renamed to <path>.1 (replacing the one
// before) and a new one started.
//
// Written off the loop: a record is formatted on the loop (it reads the event) and queued,
// and a thread of its own writes the queue in chunks, one write and flush per chunk. Under
// a flood of bad input the disk, not the loop, is what waits: writing every bad line on the
// loop made the kernel's dirty-page throttling stall it, and every other component with it
// (measured: a garbage flood cut a neighbour's intake 25-fold). The queue is bounded
// (`max_queued_bytes`); a record that does not fit is not written, and the caller treats it
// as a dead letter that could not be written (counted, and the batch it belongs to fails).
//
// What a queued record still needs, before it is safe, is said through after_written(): the
// runtime holds the acknowledgements of the batches whose dead letters are queued until
// then, so a checkpoint or a 200 never covers a dead letter that a kill -9 could lose.
//
// The record itself, {"timestamp","component","component_type","reason","event"[,"metadata"]}
// or {...,"line","raw"}, is also what a routed dead letter carries as its event.
#pragma once

#include <uv.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "weir/buffer.hpp"
#include "weir/clock.hpp"
#include "weir/event.hpp"
#include "weir/log.hpp"
#include "weir/uv.hpp"

namespace weir::runtime {

class DeadLetterFile {
 public:
  static constexpr std::size_t kMaxQueuedBytes = 16 << 20;

  DeadLetterFile(std::string path, std::uint64_t max_bytes, std::size_t max_queued_bytes = kMaxQueuedBytes);
  ~DeadLetterFile();  // writes what is queued, then stops its thread
  DeadLetterFile(const DeadLetterFile&) = delete;
  DeadLetterFile& operator=(const DeadLetterFile&) = delete;

  // after_written's callbacks run on `loop`, from the writer's wake-up. Before attach (and
  // after detach) they run inside flush().
  Status attach(uv_loop_t* loop);
  void detach();  // before the loop closes

  // Queue one record; false when it cannot be (the queue is full: the disk is slower than
  // the dead letters coming), and then it is not written.
  bool write_event(std::string_view component, std::string_view type, const Event& event, std::string_view reason);
  bool write_raw(std::string_view component, std::string_view type, std::string_view raw, std::uint64_t line,
                 std::string_view reason);
  // Runs `done(true)` once every record queued so far is in the file (now, if none is
  // waiting), or `done(false)` if one of them could not be written.
  void after_written(std::function<void(bool written)> done);
  bool pending() const;  // on the loop: records queued whose results it has not taken yet
  // Waits until what is queued is written and runs the callbacks due (shutdown, summaries).
  void flush();

  void set_clock(const Clock* clock) { clock_ = clock; }  // the pipeline's: the records' timestamp
  const std::string& path() const { return path_; }
  std::uint64_t written() const { return written_.load(std::memory_order_relaxed); }
  std::uint64_t not_queued() const { return not_queued_; }  // refused for a full queue

 private:
  void begin(std::string_view component, std::string_view type, std::string_view reason);
  bool enqueue();
  void writer();  // the thread
  bool write_chunk(std::string_view chunk, const std::vector<std::uint32_t>& line_ends);  // on the writer
  bool open_file();
  void rotate();
  void complete_written();  // on the loop (or in flush)

  const Clock* clock_ = nullptr;
  std::string path_;
  std::uint64_t max_bytes_;
  std::size_t max_queued_bytes_;
  ByteBuffer line_;  // the record being formatted, on the loop

  // Shared with the writer, under mutex_.
  mutable std::mutex mutex_;
  std::condition_variable wake_writer_, chunk_done_;
  ByteBuffer queue_;                      // records not yet taken by the writer
  std::vector<std::uint32_t> queue_ends_;  // where each ends in queue_
  std::size_t writing_bytes_ = 0;         // taken by the writer, not yet written
  std::uint64_t queued_seq_ = 0;          // records queued, ever
  std::uint64_t done_seq_ = 0;            // records the writer is done with (written or failed)
  std::vector<std::pair<std::uint64_t, std::uint64_t>> failed_;  // (first, last) seq of chunks not written
  bool stop_ = false;
  std::thread thread_;

  // The writer's own.
  std::FILE* file_ = nullptr;
  std::uint64_t size_ = 0;
  log::Throttle failure_log_{std::chrono::seconds(10)};

  // The loop's.
  struct Waiter {
    std::uint64_t after;   // seen_seq_ when it was registered: records up to it are not its concern
    std::uint64_t target;  // queued_seq_ then
    std::function<void(bool)> done;
  };
  std::deque<Waiter> waiters_;
  std::uint64_t seen_seq_ = 0;  // records whose results (written or failed) the loop has taken
  std::vector<std::pair<std::uint64_t, std::uint64_t>> failed_seen_;
  UvAsync wake_loop_;
  std::uint64_t not_queued_ = 0;
  log::Throttle full_log_{std::chrono::seconds(10)};
  std::atomic<std::uint64_t> written_{0};
};

}  // namespace weir::runtime
