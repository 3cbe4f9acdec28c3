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

// Opens (creating parent directories and the file) for appending; returns the fd or a
// negative libuv error code.
int open_for_append(const std::string& path);

}  // namespace weir
