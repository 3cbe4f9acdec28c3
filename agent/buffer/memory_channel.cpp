#include <deque>

#include "buffer/channel.hpp"

namespace weir::buffer {

namespace {

class MemoryChannel final : public Channel {
 public:
  explicit MemoryChannel(ChannelLimits limits) : limits_(limits) {}

  // Bytes are what the queued events take in memory (their arenas), measured as they come
  // in: a transform that adds to a batch later does so downstream, in its own channel.
  void push(BatchPtr batch) override {
    std::uint64_t bytes = batch->memory_bytes();
    events_ += batch->size();
    bytes_ += bytes;
    queue_.push_back({std::move(batch), bytes});
  }
  bool full() const override { return events_ >= limits_.max_events || bytes_ >= limits_.max_bytes; }
  bool readable() const override { return !queue_.empty(); }
  BatchPtr pop() override {
    Queued front = std::move(queue_.front());
    queue_.pop_front();
    events_ -= front.batch->size();
    bytes_ -= front.bytes;
    return std::move(front.batch);
  }
  bool idle() const override { return queue_.empty(); }
  std::uint64_t events() const override { return events_; }
  std::uint64_t bytes() const override { return bytes_; }

 private:
  ChannelLimits limits_;
  struct Queued {
    BatchPtr batch;
    std::uint64_t bytes;
  };
  std::deque<Queued> queue_;
  std::uint64_t events_ = 0;
  std::uint64_t bytes_ = 0;
};

}  // namespace

std::unique_ptr<Channel> make_memory_channel(ChannelLimits limits) { return std::make_unique<MemoryChannel>(limits); }

}  // namespace weir::buffer
