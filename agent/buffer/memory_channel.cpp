#include <deque>

#include "buffer/channel.hpp"

namespace weir::buffer {

namespace {

class MemoryChannel final : public Channel {
 public:
  explicit MemoryChannel(ChannelLimits limits) : limits_(limits) {}

  void push(BatchPtr batch) override {
    events_ += batch->size();
    bytes_ += batch->byte_size();
    queue_.push_back(std::move(batch));
  }
  bool full() const override { return events_ >= limits_.max_events || bytes_ >= limits_.max_bytes; }
  bool readable() const override { return !queue_.empty(); }
  BatchPtr pop() override {
    BatchPtr batch = std::move(queue_.front());
    queue_.pop_front();
    events_ -= batch->size();
    bytes_ -= batch->byte_size();
    return batch;
  }
  bool idle() const override { return queue_.empty(); }
  std::uint64_t events() const override { return events_; }
  std::uint64_t bytes() const override { return bytes_; }

 private:
  ChannelLimits limits_;
  std::deque<BatchPtr> queue_;
  std::uint64_t events_ = 0;
  std::uint64_t bytes_ = 0;
};

}  // namespace

std::unique_ptr<Channel> make_memory_channel(ChannelLimits limits) { return std::make_unique<MemoryChannel>(limits); }

}  // namespace weir::buffer
