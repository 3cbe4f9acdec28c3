// Writing to a file descriptor without blocking the loop: writes run on libuv's thread
// pool one at a time, in order, and each completion callback runs back on the loop.
// A sink acknowledges a batch from that callback, once write(2) has taken the bytes.
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>

#include "weir/buffer.hpp"

namespace weir {

class FdWriter {
 public:
  // `status` is 0 or a negative libuv error code.
  using Done = std::function<void(int status)>;

  // With `owns_fd` the descriptor is closed when the writer goes away.
  FdWriter(uv_loop_t* loop, int fd, bool owns_fd);
  ~FdWriter();
  FdWriter(const FdWriter&) = delete;
  FdWriter& operator=(const FdWriter&) = delete;

  void write(ByteBuffer bytes, Done done);
  std::size_t pending_bytes() const;
  bool idle() const;
  // Runs `callback` (once) as soon as nothing is queued or in flight.
  void when_idle(std::function<void()> callback);
  int fd() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

// One read from a file descriptor on the thread pool. The memory read into is kept alive
// by `buffer_owner` until the read ends, even when the owner of this object is gone, and
// `done` is not called after cancel() or destruction: a source can stop at any time.
class AsyncRead {
 public:
  AsyncRead() = default;
  AsyncRead(const AsyncRead&) = delete;
  AsyncRead& operator=(const AsyncRead&) = delete;
  ~AsyncRead() { cancel(); }

  // `offset` -1 reads at the current position (pipes, stdin). `done(result)`: bytes read,
  // 0 at end of file, or a negative libuv error. Returns 0 or a libuv error code.
  int start(uv_loop_t* loop, int fd, char* into, std::size_t size, std::int64_t offset,
            std::shared_ptr<const void> buffer_owner, std::function<void(ssize_t result)> done);
  bool in_flight() const { return op_ != nullptr; }
  void cancel();

 private:
  struct Op;
  std::shared_ptr<Op> op_;
};

// Opens (creating parent directories and the file) for appending; returns the fd or a
// negative libuv error code.
int open_for_append(const std::string& path);

}  // namespace weir
