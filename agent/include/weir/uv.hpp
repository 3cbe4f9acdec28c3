// RAII for libuv handles. A handle's memory must outlive uv_close() until its close
// callback runs, so the owner's destructor hands the memory to that callback.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>

namespace weir {

template <typename Handle>
class UvHandle {
 public:
  UvHandle() : handle_(std::make_unique<Handle>()) {}
  UvHandle(const UvHandle&) = delete;
  UvHandle& operator=(const UvHandle&) = delete;
  UvHandle(UvHandle&&) noexcept = default;
  UvHandle& operator=(UvHandle&&) noexcept = default;
  ~UvHandle() { close(); }

  Handle* get() { return handle_.get(); }
  uv_handle_t* base() { return reinterpret_cast<uv_handle_t*>(handle_.get()); }
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(handle_.get()); }

  // Call after a successful uv_*_init on get(): from then on the handle belongs to the loop.
  void mark_initialized() { initialized_ = true; }
  bool initialized() const { return initialized_ && handle_ != nullptr; }

  // Closes the handle (idempotent); its memory is freed by the close callback.
  void close() {
    if (!handle_) return;
    if (!initialized_) {
      handle_.reset();
      return;
    }
    uv_handle_t* h = base();
    h->data = nullptr;
    if (!uv_is_closing(h)) {
      handle_.release();
      uv_close(h, [](uv_handle_t* closed) { std::unique_ptr<Handle> owner(reinterpret_cast<Handle*>(closed)); });
    }
    initialized_ = false;
  }

 private:
  std::unique_ptr<Handle> handle_;
  bool initialized_ = false;
};

using UvTimer = UvHandle<uv_timer_t>;
using UvSignal = UvHandle<uv_signal_t>;
using UvIdle = UvHandle<uv_idle_t>;
using UvPipe = UvHandle<uv_pipe_t>;
using UvTty = UvHandle<uv_tty_t>;
using UvTcp = UvHandle<uv_tcp_t>;
using UvAsync = UvHandle<uv_async_t>;

// Runs `job->run()` on the thread pool, then, back on the loop, `job->owner->job_done(*job)`
// unless the owner let go of it meanwhile (set `owner` to null in its destructor); the job is
// freed after that. `Job` has `uv_work_t work`, `run()` and `owner`. On success the pool owns
// the job (the unique_ptr is released, the raw pointer returned); on failure nullptr and `rc`.
template <typename Job>
Job* queue_job(uv_loop_t* loop, std::unique_ptr<Job>& job, int& rc) {
  job->work.data = job.get();
  rc = uv_queue_work(
      loop, &job->work, [](uv_work_t* w) { static_cast<Job*>(w->data)->run(); },
      [](uv_work_t* w, int) {
        std::unique_ptr<Job> done(static_cast<Job*>(w->data));
        if (done->owner != nullptr) done->owner->job_done(*done);
      });
  return rc < 0 ? nullptr : job.release();
}

// Initialises `timer` on `loop` the first time, then (re)starts it: `callback` after
// `timeout_ms`, then every `repeat_ms` when non-zero, with `data` in the handle.
// Returns 0 or a libuv error code.
inline int start_timer(UvTimer& timer, uv_loop_t* loop, void* data, uv_timer_cb callback, std::uint64_t timeout_ms,
                       std::uint64_t repeat_ms = 0) {
  if (!timer.initialized()) {
    if (int rc = uv_timer_init(loop, timer.get()); rc != 0) return rc;
    timer.mark_initialized();
  }
  timer.get()->data = data;
  return uv_timer_start(timer.get(), callback, timeout_ms, repeat_ms);
}

inline std::string uv_error_text(int code) { return std::string(uv_err_name(code)) + ": " + uv_strerror(code); }

}  // namespace weir
