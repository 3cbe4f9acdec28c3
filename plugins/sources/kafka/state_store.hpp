// Where the kafka source keeps the state that transforms downstream keep per partition
// (ADR 017): a topic of its own (`state_topic`, compacted in production), partition N of it
// holding the state of input partition N, one message per (transform, input partition)
// snapshot, keyed by both, so compaction keeps the last. A weir given input partition N
// reads partition N of the state topic from its start to its end and restores the last
// snapshot of each transform: the message says the input offset it covers.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <string>

#include "weir/component.hpp"
#include "weir/kafka.hpp"

namespace weir::plugins {

class KafkaStateStore final : public PartitionStateStore, public std::enable_shared_from_this<KafkaStateStore> {
 public:
  KafkaStateStore(std::string component, std::string topic, std::uint64_t interval_ms)
      : component_(std::move(component)), topic_(std::move(topic)), interval_ms_(interval_ms) {}
  ~KafkaStateStore() override;

  // `properties`: the source's connection properties (bootstrap servers, security, ...).
  Status start(uv_loop_t* loop, const std::map<std::string, std::string>& properties,
               const std::map<std::string, std::string>& user_properties);

  void read(const std::string& owner, const std::string& partition,
            std::function<void(Result<std::optional<PartitionSnapshot>>)> done) override;
  void write(const std::string& owner, const std::string& partition, PartitionSnapshot snapshot,
             std::function<void(Status)> done) override;
  std::uint64_t snapshot_interval_ms() const override { return interval_ms_; }

  // A message's value: "<next_offset>\n<state>".
  static std::string encode(const PartitionSnapshot& snapshot);
  static Result<PartitionSnapshot> decode(std::string_view value);
  // An input partition's name ("events/3") -> its number; -1 when it names none.
  static std::int32_t partition_number(const std::string& partition);

 private:
  struct Read {
    std::string key;
    std::function<void(Result<std::optional<PartitionSnapshot>>)> done;
    std::optional<std::string> last;  // the newest value seen for the key
  };
  struct Write {
    std::string key, value;
    std::function<void(Status)> done;
  };
  void serve_reader();
  void serve_producer();
  void start_reading(std::int32_t partition);
  void finish_reads(std::int32_t partition, const std::optional<std::string>& error);

  std::string component_, topic_;
  std::uint64_t interval_ms_;
  kafka::Handle producer_, reader_;
  kafka::Queue producer_queue_, reader_queue_;
  kafka::QueueWatch producer_watch_, reader_watch_;
  kafka::Topic producer_topic_;
  std::map<std::int32_t, std::deque<Read>> reads_;   // by state topic partition, while it is read
  std::map<std::int32_t, std::deque<Read>> queued_;  // asked while their partition was being read
  std::deque<std::unique_ptr<Write>> writes_;      // in flight, each its own opaque
};

}  // namespace weir::plugins
