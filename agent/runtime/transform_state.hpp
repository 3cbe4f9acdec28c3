// Durable state of a transform (Transform::keeps_state): snapshots in
// <data_dir>/state/<component>.{0,1}, consistent with what its sources were told.
//
// The rule: a source hears "delivered" for a batch only once (a) everything the transform
// made of it is delivered downstream (or durable in a disk buffer) and (b) a snapshot of the
// transform's state taken after that batch is on disk. So after any crash the state on disk
// covers exactly the batches whose sources were acknowledged: what was not acknowledged is
// sent again (HTTP clients retry, the file source reads from its checkpoint) and counted
// once, and nothing acknowledged is missing from the state.
//
// How: before the transform sees a batch, the batch's acknowledgements are taken out and
// held here; the batch gets one of ours instead, which says when its downstream is done.
// Snapshots are taken between batches, at most every 50 ms (a state of 80 KB taken after
// every batch cost a quarter of the CVAT pipeline's time), and once more when the input goes
// quiet; the newest one whose batches are all done downstream is written with fdatasync on
// the thread pool, one write at a time; the write releases the acknowledgements it covers.
//
// Batches are numbered across restarts (a snapshot says how many it covers, and numbering
// goes on from there), and our acknowledgement carries the number (a StateMark): disk
// buffers downstream hand a record to their sink only once a written snapshot covers its
// batch, through the shared StateCoverage (docs/adr/009-state-commit.md).
#pragma once

#include <uv.h>

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "buffer/state_coverage.hpp"
#include "weir/event.hpp"
#include "weir/metrics.hpp"
#include "weir/result.hpp"
#include "weir/uv.hpp"

namespace weir::runtime {

// Two slot files written in turn, each: u32 magic "WST1" | u32 CRC-32C of the rest | u64 save
// number | u64 length | state bytes. Loading takes the valid slot with the higher number.
class StateFiles {
 public:
  explicit StateFiles(std::string base) : base_(std::move(base)) {}
  Result<std::optional<std::string>> load();
  Status save(std::string_view state);  // blocking: pwrite, ftruncate, fdatasync
  std::string slot_path(int slot) const { return base_ + "." + std::to_string(slot); }

 private:
  std::string base_;
  std::uint64_t saves_ = 0;
};

// What a transform's snapshot file holds: u64 batches covered | the transform's state.
struct SavedSnapshot {
  std::uint64_t covers = 0;  // batch numbers below this are in `state`
  std::string state;
  bool operator==(const SavedSnapshot&) const = default;
};
std::string encode_snapshot(std::uint64_t covers, std::string_view state);
// The newest snapshot in `files`; nullopt when there is none (or it is too short to be one).
Result<std::optional<SavedSnapshot>> load_snapshot(StateFiles& files);

// Where a TransformState's snapshots go: the two slot files (the default), or, for a
// transform's state of one partition, the partitioned source's store (partition_states.hpp).
class SnapshotWriter {
 public:
  virtual ~SnapshotWriter() = default;
  // Makes `state` (covering the batches numbered below `covers`) durable, then calls `done`
  // on the loop. One write at a time. `state` lives only through the call: what the write
  // needs later it copies (the file writer's record, the store's message).
  virtual void write(uv_loop_t* loop, std::uint64_t covers, std::string_view state, std::function<void(Status)> done) = 0;
};

class TransformState : public std::enable_shared_from_this<TransformState> {
 public:
  TransformState(uv_loop_t* loop, std::string component, std::string base, ComponentMetrics& metrics,
                 std::shared_ptr<buffer::StateCoverage> coverage);
  // Snapshots to `writer`, numbering from 0, with no StateMark on the acknowledgements (no
  // disk buffer waits for this state: docs/adr/017-partitioned-state.md). load() finds none.
  TransformState(uv_loop_t* loop, std::string component, std::shared_ptr<SnapshotWriter> writer, ComponentMetrics& metrics,
                 std::uint64_t snapshot_interval_ms);
  ~TransformState();

  // The last snapshot written: the transform's state (nullopt: none), and the batch numbers
  // it covers, from which numbering goes on. Tells the coverage what it covers (nothing
  // known when there is no readable snapshot).
  Result<std::optional<std::string>> load();
  // Before process(batch): the batch's acknowledgements are held until a snapshot covers it,
  // and the batch carries ours instead.
  void hold(EventBatch& batch) { batch.add_ack(hold(batch.take_acks())); }
  // The same for a batch's acknowledgements alone: ours, numbered, to carry in their place.
  AckRef hold(std::vector<AckRef> acks);
  // Asks the transform for its state; set by the runtime, called on the loop between batches.
  std::function<std::optional<std::string>()> take_snapshot;  // nullopt: the transform could not make one
  // After the transform processed batches: a snapshot now, or soon (the rate limit).
  void processed();
  // At the end (after the transform's flush): a snapshot now.
  void snapshot_now();
  // A snapshot the transform made right after the last batch held (where it ran, off the
  // loop: ADR 015): it covers every batch held so far.
  void snapshot_taken(std::string state);
  // The runtime let go (shutdown): results of a write in flight are ignored.
  void close() {
    closed_ = true;
    retry_.close();
    soon_.close();
  }
  bool busy() const { return writing_; }
  // No acknowledgement held and no write in flight: the pipeline may end.
  bool idle() const { return held_.empty() && !writing_; }
  std::function<void()> on_idle;

 private:
  struct Held {
    std::vector<AckRef> acks;
    bool done = false;
    DeliveryStatus status = DeliveryStatus::Delivered;
    std::string reason;
  };
  struct Snapshot {
    std::uint64_t covers = 0;  // batches [0, covers)
    std::string state;
  };
  void downstream_done(std::uint64_t seq, DeliveryStatus status, const std::string& reason);
  void maybe_write();
  void written(const Snapshot& snapshot, const Status& status);

  uv_loop_t* loop_;
  std::string component_;
  std::shared_ptr<StateFiles> files_;  // null with a writer of another kind
  std::shared_ptr<SnapshotWriter> writer_;
  ComponentMetrics& metrics_;
  std::shared_ptr<buffer::StateCoverage> coverage_;
  std::deque<Held> held_;           // batches [first_, next_)
  std::uint64_t first_ = 0, next_ = 0;
  std::uint64_t covered_ = 0;       // batches a snapshot was taken after
  std::deque<Snapshot> snapshots_;  // taken, not yet written, oldest first
  bool writing_ = false;
  bool closed_ = false;
  UvTimer retry_;
  UvTimer soon_;                    // the rate limit's deferred snapshot
  std::uint64_t last_snapshot_ms_ = 0;
  std::uint64_t snapshot_interval_ms_ = 50;
};

}  // namespace weir::runtime
