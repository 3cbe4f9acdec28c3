#include "weir/event.hpp"

#include <algorithm>

namespace weir {

InputChunk::InputChunk(std::size_t capacity_bytes)
    : bytes(std::make_unique_for_overwrite<char[]>(capacity_bytes + padding)), capacity(capacity_bytes) {}

void set_field_or_metadata(Arena& arena, Event& event, std::string_view path, Value value) {
  bool meta = !path.empty() && path.front() == '%';
  Value& target = meta ? event.metadata : event.fields;
  if (!target.is_object()) target = Value::object(arena, 4);
  target.set_path(arena, arena.copy(meta ? path.substr(1) : path), value);
}

BatchPtr EventBatch::derive() const {
  auto batch = std::make_unique<EventBatch>(arena_);
  batch->extra_arenas_ = extra_arenas_;
  batch->retained_ = retained_;
  batch->acks_ = acks_;
  batch->created_at_ = created_at_;
  batch->partition_ = partition_;
  return batch;
}

BatchPtr EventBatch::clone() const {
  auto batch = std::make_unique<EventBatch>();
  Arena& arena = batch->arena();
  batch->events_.reserve(events_.size());
  for (const Event& event : events_) {
    batch->events_.push_back(Event{deep_copy(event.fields, arena), deep_copy(event.metadata, arena)});
  }
  batch->acks_ = acks_;
  batch->byte_size_ = byte_size_;
  batch->created_at_ = created_at_;
  batch->partition_ = partition_;
  return batch;
}

void EventBatch::adopt_from(const EventBatch& other) {
  auto add_once = [](auto& into, const auto& item) {
    if (std::find(into.begin(), into.end(), item) == into.end()) into.push_back(item);
  };
  if (other.arena_ != arena_) add_once(extra_arenas_, other.arena_);
  for (const auto& arena : other.extra_arenas_) {
    if (arena != arena_) add_once(extra_arenas_, arena);
  }
  for (const auto& buffer : other.retained_) add_once(retained_, buffer);
  for (const auto& ack : other.acks_) add_once(acks_, ack);
}

void EventBatch::absorb(EventBatch&& other) {
  if (other.arena_ != arena_) extra_arenas_.push_back(std::move(other.arena_));
  for (auto& arena : other.extra_arenas_) extra_arenas_.push_back(std::move(arena));
  if (events_.empty()) {
    events_ = std::move(other.events_);
  } else {
    events_.insert(events_.end(), other.events_.begin(), other.events_.end());
  }
  for (auto& buffer : other.retained_) retained_.push_back(std::move(buffer));
  for (auto& ack : other.acks_) acks_.push_back(std::move(ack));
  byte_size_ += other.byte_size_;
  other.events_.clear();
  other.retained_.clear();
  other.acks_.clear();
  other.byte_size_ = 0;
}

}  // namespace weir
