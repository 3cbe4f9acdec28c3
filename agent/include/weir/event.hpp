// Events travel in batches. A batch owns (shares) the arena its values live in, keeps the
// input buffers its strings point into alive, and carries the acknowledgement handles of
// the source batches it came from.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "weir/arena.hpp"
#include "weir/value.hpp"

namespace weir {

struct Event {
  Value fields;    // always an object
  Value metadata;  // null, or an object of source facts (request id, file path, offset...)
};

// For loops over a batch decoded on another core, where every first touch of an event is a
// cache miss: at event `i`, asks for the object header of event i + 8 and for the members
// and strings of event i + 4 (whose header was asked for four events earlier).
inline void prefetch_ahead(const std::vector<Event>& events, std::size_t i) {
  if (i + 8 < events.size()) events[i + 8].fields.prefetch_object();
  if (i + 4 < events.size()) events[i + 4].fields.prefetch_members(512);
}

enum class DeliveryStatus {
  Delivered,  // durable at every destination, dead-lettered, or intentionally dropped
  Failed,     // a sink gave up on it (permanent error); the reason says why
};

// One acknowledgement per source batch that asked for it. Every batch derived from that
// source batch (transforms, fan-out copies, sink requests) holds a reference; when the
// last reference goes, the source's callback runs once with the worst status recorded.
// Dropping a reference counts as delivered (Vector's finalizer rule): sinks hold theirs
// until the data is durable, and call fail() when they give up.
class Acknowledgement {
 public:
  using Callback = std::function<void(DeliveryStatus status, const std::string& reason)>;

  explicit Acknowledgement(Callback on_done) : on_done_(std::move(on_done)) {}
  Acknowledgement(const Acknowledgement&) = delete;
  Acknowledgement& operator=(const Acknowledgement&) = delete;
  ~Acknowledgement() {
    if (on_done_) on_done_(status_, reason_);
  }

  void fail(std::string reason) {
    if (status_ == DeliveryStatus::Failed) return;
    status_ = DeliveryStatus::Failed;
    reason_ = std::move(reason);
  }

  // The acknowledgement a stateful transform gives each batch it processes names the
  // transform and the batch's number: a disk buffer downstream keeps the records made from
  // that batch from its sink until the transform's saved state covers the batch, and drops
  // them at start when the state does not (docs/adr/009-state-commit.md).
  struct StateMark {
    std::string owner;        // the transform's name
    std::uint64_t batch = 0;  // its batch number, counted across restarts
    bool operator==(const StateMark&) const = default;
  };
  void set_state_mark(StateMark mark) { mark_ = std::move(mark); }
  const std::optional<StateMark>& state_mark() const { return mark_; }

  static std::shared_ptr<Acknowledgement> make(Callback on_done) {
    return std::make_shared<Acknowledgement>(std::move(on_done));
  }

 private:
  Callback on_done_;
  DeliveryStatus status_ = DeliveryStatus::Delivered;
  std::string reason_;
  std::optional<StateMark> mark_;
};
using AckRef = std::shared_ptr<Acknowledgement>;

// A read buffer whose bytes events may point into; padded for simdjson.
struct InputChunk {
  explicit InputChunk(std::size_t capacity_bytes);
  std::unique_ptr<char[]> bytes;
  std::size_t capacity;  // usable bytes; `padding` more are allocated after them
  static constexpr std::size_t padding = 64;
};

class EventBatch;
using BatchPtr = std::unique_ptr<EventBatch>;

// Sets `value` at the dotted `path` in the event's fields or, when the path starts with '%'
// (how the sources' options name where a fact of the input goes), at the rest of it in the
// event's metadata. The path's keys are copied into `arena`.
void set_field_or_metadata(Arena& arena, Event& event, std::string_view path, Value value);

// Where a batch's events came from in a partitioned input (a Kafka topic's partition): its
// name, and the offset the partition goes on at after them. Set by partitioned sources on
// batches of one partition each; derived batches keep it. A transform that keeps its state
// per partition (Transform::partitions_state, ADR 017) files the batch's effect under it.
struct PartitionPosition {
  std::string partition;
  std::int64_t next_offset = -1;  // -1: not the input's (a transform's own batch of that partition)
};

class EventBatch {
 public:
  EventBatch() : arena_(std::make_shared<Arena>()) {}
  explicit EventBatch(std::shared_ptr<Arena> arena) : arena_(std::move(arena)) {}
  static BatchPtr create() { return std::make_unique<EventBatch>(); }

  Arena& arena() { return *arena_; }
  const std::shared_ptr<Arena>& shared_arena() const { return arena_; }

  std::vector<Event>& events() { return events_; }
  const std::vector<Event>& events() const { return events_; }
  std::size_t size() const { return events_.size(); }
  bool empty() const { return events_.empty(); }

  // Starts a new event with an empty object, in this batch's arena.
  Event& add_event(std::uint32_t capacity = 8) {
    events_.push_back(Event{Value::object(*arena_, capacity), Value::null()});
    return events_.back();
  }

  // Bytes of input these events were decoded from (or an estimate), for metrics.
  // When the source made the batch (steady clock, ns); derived batches and copies keep it.
  std::int64_t created_at() const { return created_at_; }
  static std::int64_t steady_now() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }

  std::uint64_t byte_size() const { return byte_size_; }
  // What the events take in memory: the blocks of every arena the batch holds (an arena
  // shared with another batch is counted in both).
  std::uint64_t memory_bytes() const {
    std::uint64_t bytes = arena_->bytes_reserved() + events_.capacity() * sizeof(Event);
    for (const auto& arena : extra_arenas_) bytes += arena->bytes_reserved();
    return bytes;
  }
  void add_byte_size(std::uint64_t bytes) { byte_size_ += bytes; }
  void set_byte_size(std::uint64_t bytes) { byte_size_ = bytes; }

  void retain(std::shared_ptr<const void> buffer) { retained_.push_back(std::move(buffer)); }

  // Set on batches read from a disk buffer: the buffer's id of the first event (the others
  // follow in order), the same after a restart, for sinks that make idempotent requests.
  void set_partition(std::shared_ptr<const PartitionPosition> position) { partition_ = std::move(position); }
  // Null: not from a partitioned input.
  const PartitionPosition* partition() const { return partition_.get(); }

  void set_first_event_id(std::uint64_t id) { first_event_id_ = id; }
  std::optional<std::uint64_t> first_event_id() const { return first_event_id_; }

  void add_ack(AckRef ack) {
    if (ack) acks_.push_back(std::move(ack));
  }
  const std::vector<AckRef>& acks() const { return acks_; }
  // Sinks that encode a batch and drop it before the write completes take the handles
  // with them, and release them once the data is durable.
  std::vector<AckRef> take_acks() { return std::move(acks_); }
  void fail(const std::string& reason) {
    for (auto& ack : acks_) ack->fail(reason);
  }

  // An empty batch sharing this one's arena, buffers and acknowledgements: for splitting
  // events between outputs without copying them. Each event must end up in one batch only.
  BatchPtr derive() const;
  // A deep copy in a fresh arena (fan-out to several consumers that may each modify it);
  // shares the acknowledgements.
  BatchPtr clone() const;
  // Moves every event, buffer and ack of `other` into this batch (arenas are shared).
  void absorb(EventBatch&& other);
  // Keeps alive what `other`'s events point into (its arenas and input buffers) and takes
  // on its acknowledgements, so events can be copied from it into this batch one by one.
  void adopt_from(const EventBatch& other);

 private:
  std::shared_ptr<Arena> arena_;
  std::vector<std::shared_ptr<Arena>> extra_arenas_;
  std::vector<Event> events_;
  std::vector<std::shared_ptr<const void>> retained_;
  std::vector<AckRef> acks_;
  std::uint64_t byte_size_ = 0;
  std::int64_t created_at_ = steady_now();
  std::optional<std::uint64_t> first_event_id_;
  std::shared_ptr<const PartitionPosition> partition_;
};

}  // namespace weir
