// The edges of the graph: every transform and sink reads its input from a channel the
// runtime owns. Components never see which kind it is.
//
// - memory: a queue bounded by events and bytes.
// - disk: a log of checksummed records in <data_dir>/buffers/<sink>/. A batch's
//   acknowledgements are released (delivered, as far as its source is concerned) only once
//   its record is durable; the batch handed to the sink carries an acknowledgement of the
//   record instead, which moves the ledger when the sink delivers it.
//
// All calls are on the loop thread.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "buffer/state_coverage.hpp"
#include "weir/event.hpp"
#include "weir/metrics.hpp"
#include "weir/result.hpp"

namespace weir::buffer {

struct ChannelLimits {
  std::size_t max_events = 4096;
  std::uint64_t max_bytes = 64ull << 20;
};

class Channel {
 public:
  virtual ~Channel() = default;
  // Takes a batch; the caller checked full() (or drops by policy when it is).
  virtual void push(BatchPtr batch) = 0;
  // Producers must wait (when_full: block) or new batches are dropped (drop_newest).
  virtual bool full() const = 0;
  virtual bool readable() const = 0;  // pop() has a batch now
  virtual BatchPtr pop() = 0;
  // Nothing held that the consumer has yet to get (or, after stop_reading(), to persist).
  virtual bool idle() const = 0;
  virtual std::uint64_t events() const = 0;  // waiting, for the buffer gauge
  virtual std::uint64_t bytes() const = 0;
  // Shutdown: hand nothing more out; what is held stays where it is (a disk buffer keeps
  // it for the next start). A memory channel keeps handing out: it has nowhere to keep it.
  virtual void stop_reading() {}
  virtual bool durable() const { return false; }
  // File work in flight on the thread pool: the loop must outlive it.
  virtual bool busy() const { return false; }

  // Set by the runtime: called when the channel became readable or has room again.
  std::function<void()> on_change;
};

std::unique_ptr<Channel> make_memory_channel(ChannelLimits limits);

struct DiskChannelOptions {
  std::string directory;       // created if missing
  std::string component;       // for log lines
  ChannelLimits memory;        // events not yet durable, and unread batches kept in memory
  std::uint64_t max_size = 1ull << 30;
  bool sync = true;            // fdatasync before acknowledging (buffer.sync: always)
  // The stateful transforms upstream: records made from batches their saved state does not
  // cover yet wait for it, and at start such records from before are set aside.
  std::shared_ptr<StateCoverage> coverage;
};

// Opens (and recovers) a disk buffer: damage is logged and counted in `metrics`, never fatal.
Result<std::unique_ptr<Channel>> open_disk_channel(uv_loop_t* loop, DiskChannelOptions options,
                                                   ComponentMetrics& metrics);

}  // namespace weir::buffer
