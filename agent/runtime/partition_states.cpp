#include "runtime/partition_states.hpp"

#include <cstring>

#include "weir/log.hpp"

namespace weir::runtime {

std::string encode_partition_snapshot(std::int64_t next_offset, std::string_view state) {
  std::string out(8, '\0');
  std::memcpy(out.data(), &next_offset, 8);
  out += state;
  return out;
}

namespace {

// A partition's snapshots, to the store with the offset they cover.
class PartitionWriter final : public SnapshotWriter {
 public:
  PartitionWriter(std::shared_ptr<PartitionStateStore> store, std::string owner, std::string partition)
      : store_(std::move(store)), owner_(std::move(owner)), partition_(std::move(partition)) {}
  void write(uv_loop_t* /*loop*/, std::uint64_t /*covers*/, std::string_view state, std::function<void(Status)> done) override {
    PartitionSnapshot snapshot;
    std::memcpy(&snapshot.next_offset, state.data(), 8);
    snapshot.state = std::string(state.substr(8));
    store_->write(owner_, partition_, std::move(snapshot), std::move(done));
  }

 private:
  std::shared_ptr<PartitionStateStore> store_;
  std::string owner_, partition_;
};

}  // namespace

PartitionStates::Part& PartitionStates::make_part(const std::string& partition, std::shared_ptr<PartitionStateStore> store,
                                                  std::int64_t next_offset) {
  forget(partition);
  Part& part = parts_[partition];
  part.store = store;
  part.next_offset = next_offset;
  part.state = std::make_shared<TransformState>(loop_, component_, std::make_shared<PartitionWriter>(store, component_, partition),
                                                metrics_, store->snapshot_interval_ms());
  part.state->take_snapshot = [this, partition]() -> std::optional<std::string> {
    auto found = parts_.find(partition);
    if (found == parts_.end()) return std::nullopt;
    std::optional<std::string> state = transform_()->snapshot_partition(partition);
    if (!state) return std::nullopt;
    return encode_partition_snapshot(found->second.next_offset, *state);
  };
  part.state->on_idle = [this] {
    if (idle() && on_idle) on_idle();
  };
  return part;
}

void PartitionStates::assigned(const std::string& partition, std::shared_ptr<PartitionStateStore> store,
                               std::function<void(Result<std::optional<std::int64_t>>)> ready) {
  // Neither `this` nor the store is kept alive by the read (the store holds the callback).
  std::weak_ptr<PartitionStateStore> weak_store = store;
  store->read(component_, partition, [this, alive = std::weak_ptr<bool>(alive_), partition, weak_store,
                                      ready = std::move(ready)](Result<std::optional<PartitionSnapshot>> read) {
    auto store = weak_store.lock();
    if (alive.expired() || !store) return;
    if (!read.ok()) {
      metrics_.errors.add();
      log::error(component_, "state of {}: cannot read it ({}); the partition is not read", partition, read.error().message());
      return ready(read.error());
    }
    std::optional<std::int64_t> resume_at;
    if (read.value()) {
      const PartitionSnapshot& saved = *read.value();
      if (Status restored = transform_()->restore_partition(partition, saved.state); !restored.ok()) {
        // As for a whole state (ADR 007): counted, and the partition starts empty from where
        // the source's own records say.
        metrics_.errors.add();
        log::error(component_, "state of {}: cannot restore it ({}); starting it empty", partition,
                   restored.error().message());
      } else {
        resume_at = saved.next_offset;
        log::info(component_, "state of {} restored ({} bytes, up to offset {})", partition, saved.state.size(),
                  saved.next_offset);
      }
    }
    make_part(partition, store, resume_at.value_or(-1));
    ready(resume_at);
  });
}

void PartitionStates::revoked(const std::string& partition, bool settled) {
  auto found = parts_.find(partition);
  if (found == parts_.end()) return;
  if (!settled) {
    log::warn(component_, "state of {}: let go before its last batches were done; the next owner makes their rows "
              "again from the state saved before them", partition);
  }
  forget(partition);
  if (idle() && on_idle) on_idle();
}

void PartitionStates::forget(const std::string& partition) {
  auto found = parts_.find(partition);
  if (found == parts_.end()) return;
  found->second.state->close();
  parts_.erase(found);
  touched_.erase(partition);
  if (Transform* transform = transform_()) transform->drop_partition(partition);
}

std::optional<std::string> PartitionStates::hold(EventBatch& batch) {
  const PartitionPosition* position = batch.partition();
  auto found = position ? parts_.find(position->partition) : parts_.end();
  if (found == parts_.end()) {
    // A batch still on its way when its partition was let go (after drain_timeout), or
    // one of no partition at all.
    if (unknown_logs_++ % 1000 == 0) {
      log::error(component_, "a batch of {} reached a transform that keeps its state per partition: its state is not saved",
                 position ? "partition " + position->partition + ", which its source no longer reads" : "no partition");
    }
    metrics_.errors.add();
    return position ? std::optional<std::string>(position->partition) : std::nullopt;
  }
  Part& part = found->second;
  if (position->next_offset >= 0) part.next_offset = position->next_offset;
  part.state->hold(batch);
  touched_.insert(position->partition);
  return std::nullopt;
}

void PartitionStates::forget_stray(const std::string& partition) {
  if (parts_.count(partition)) return;  // given to the source again meanwhile
  if (Transform* transform = transform_()) transform->drop_partition(partition);
}

void PartitionStates::processed() {
  for (const std::string& partition : touched_) {
    if (auto found = parts_.find(partition); found != parts_.end()) found->second.state->processed();
  }
  touched_.clear();
}

void PartitionStates::snapshot_now() {
  touched_.clear();
  for (auto& [partition, part] : parts_) part.state->snapshot_now();
}

std::vector<std::string> PartitionStates::partitions() const {
  std::vector<std::string> out;
  for (const auto& [partition, part] : parts_) out.push_back(partition);
  return out;
}

bool PartitionStates::idle() const {
  for (const auto& [partition, part] : parts_) {
    if (!part.state->idle()) return false;
  }
  return true;
}

bool PartitionStates::busy() const {
  for (const auto& [partition, part] : parts_) {
    if (part.state->busy()) return true;
  }
  return false;
}

void PartitionStates::close() {
  alive_.reset();
  for (auto& [partition, part] : parts_) part.state->close();
  parts_.clear();
  touched_.clear();
}

}  // namespace weir::runtime
