// The state of a transform that keeps it per partition of a partitioned source (ADR 017):
// one TransformState per partition the source was given, whose snapshots (the transform's
// snapshot_partition, with the input offset it covers) go to the source's store instead of
// local files. The rule of ADR 007 holds per partition: the source hears "delivered" for a
// batch only once the partition's snapshot taken after it is in the store, and a snapshot
// goes to the store only once the batches it covers are done downstream. So the store
// always holds a state that matches what the source committed, and the weir that takes the
// partition over restores it and reads on from the offset it covers.
#pragma once

#include <uv.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "runtime/transform_state.hpp"
#include "weir/component.hpp"

namespace weir::runtime {

class PartitionStates {
 public:
  // `transform()` is asked each time (a reload may replace the instance).
  PartitionStates(uv_loop_t* loop, std::string component, ComponentMetrics& metrics, std::function<Transform*()> transform)
      : loop_(loop), component_(std::move(component)), metrics_(metrics), transform_(std::move(transform)) {}

  // The source was given `partition`: its last snapshot is read from `store` and restored,
  // then `ready` says the offset it covers (nullopt: none saved).
  void assigned(const std::string& partition, std::shared_ptr<PartitionStateStore> store,
                std::function<void(Result<std::optional<std::int64_t>>)> ready);
  // The source let it go: the transform forgets it (after its last snapshot is written, when
  // one is being written).
  void revoked(const std::string& partition, bool settled);

  // Before process(batch): its acknowledgements are held by its partition's state. A batch
  // of no partition the source was given is not held (logged), and the name of its
  // partition is returned: once processed, what the transform made of it is dropped
  // (forget_stray), as the partition's state is being kept elsewhere.
  std::optional<std::string> hold(EventBatch& batch);
  void forget_stray(const std::string& partition);
  // After the transform processed batches: a snapshot of each partition they touched, now or soon.
  void processed();
  // At the end (after the flush): a snapshot of every partition now.
  void snapshot_now();

  std::vector<std::string> partitions() const;  // those the source was given
  bool idle() const;
  bool busy() const;
  void close();
  std::function<void()> on_idle;

 private:
  struct Part {
    std::shared_ptr<TransformState> state;
    std::shared_ptr<PartitionStateStore> store;
    std::int64_t next_offset = -1;  // after the last batch of the input held
    bool forget_when_idle = false;
  };
  Part& make_part(const std::string& partition, std::shared_ptr<PartitionStateStore> store, std::int64_t next_offset);
  void forget(const std::string& partition);

  uv_loop_t* loop_;
  std::string component_;
  ComponentMetrics& metrics_;
  std::function<Transform*()> transform_;
  std::map<std::string, Part> parts_;
  std::set<std::string> touched_;
  std::uint64_t unknown_logs_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // reset by close()
};

// A partition snapshot as TransformState carries it: u64 offset | the transform's state.
std::string encode_partition_snapshot(std::int64_t next_offset, std::string_view state);

}  // namespace weir::runtime
