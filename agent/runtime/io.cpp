#include "weir/io.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>

#include "weir/uv.hpp"

namespace weir {

// Shared between the writer and the request in flight, so a completion that arrives after
// the writer is gone (abandoned shutdown) touches nothing freed.
struct FdWriter::State : std::enable_shared_from_this<FdWriter::State> {
  struct Pending {
    ByteBuffer bytes;
    std::size_t written = 0;
    Done done;
  };
  uv_loop_t* loop = nullptr;
  int fd = -1;
  bool owns_fd = false;
  bool alive = true;
  bool in_flight = false;
  std::deque<Pending> queue;
  std::size_t pending_bytes = 0;
  std::function<void()> on_idle;
  uv_fs_t request{};
  UvTimer retry;
  std::shared_ptr<State> self_while_in_flight;

  void pump() {
    if (in_flight || queue.empty()) return;
    Pending& head = queue.front();
    uv_buf_t buf = uv_buf_init(head.bytes.data() + head.written, static_cast<unsigned>(head.bytes.size() - head.written));
    request.data = this;
    int rc = uv_fs_write(loop, &request, fd, &buf, 1, -1, [](uv_fs_t* req) {
      auto* state = static_cast<State*>(req->data);
      std::shared_ptr<State> keep = std::move(state->self_while_in_flight);
      auto result = req->result;
      uv_fs_req_cleanup(req);
      state->in_flight = false;
      if (!state->alive) {
        // The writer went while this write was in flight: the descriptor is closed now.
        if (state->owns_fd && state->fd >= 0) {
          uv_fs_t close_request;
          uv_fs_close(nullptr, &close_request, state->fd, nullptr);
          uv_fs_req_cleanup(&close_request);
        }
        return;
      }
      state->completed(result);
    });
    if (rc < 0) {
      completed(rc);
      return;
    }
    in_flight = true;
    self_while_in_flight = shared_from_this();
  }

  void completed(ssize_t result) {
    if (result == UV_EAGAIN) {
      // A non-blocking descriptor (shared with another process) is full: try again shortly.
      if (start_timer(retry, loop, this, [](uv_timer_t* t) { static_cast<State*>(t->data)->pump(); }, 5) == 0) return;
    }
    Pending& head = queue.front();
    if (result >= 0) {
      head.written += static_cast<std::size_t>(result);
      if (head.written < head.bytes.size() && result > 0) {
        pump();  // a short write (pipes): send the rest
        return;
      }
    }
    Pending done = std::move(queue.front());
    queue.pop_front();
    pending_bytes -= done.bytes.size();
    int status = result < 0 ? static_cast<int>(result) : (done.written < done.bytes.size() ? UV_EIO : 0);
    if (done.done) done.done(status);
    if (!alive) return;
    pump();
    if (!in_flight && queue.empty() && on_idle) {
      auto callback = std::move(on_idle);
      on_idle = nullptr;
      callback();
    }
  }
};

FdWriter::FdWriter(uv_loop_t* loop, int fd, bool owns_fd) : state_(std::make_shared<State>()) {
  state_->loop = loop;
  state_->fd = fd;
  state_->owns_fd = owns_fd;
}

FdWriter::~FdWriter() {
  state_->alive = false;
  state_->retry.close();
  if (state_->owns_fd && state_->fd >= 0 && !state_->in_flight) {
    uv_fs_t req;
    uv_fs_close(nullptr, &req, state_->fd, nullptr);
    uv_fs_req_cleanup(&req);
  }
}

void FdWriter::write(ByteBuffer bytes, Done done) {
  if (bytes.empty()) {
    if (done) done(0);
    return;
  }
  state_->pending_bytes += bytes.size();
  state_->queue.push_back(State::Pending{std::move(bytes), 0, std::move(done)});
  state_->pump();
}

std::size_t FdWriter::pending_bytes() const { return state_->pending_bytes; }
bool FdWriter::idle() const { return !state_->in_flight && state_->queue.empty(); }
int FdWriter::fd() const { return state_->fd; }

void FdWriter::when_idle(std::function<void()> callback) {
  if (idle()) {
    callback();
    return;
  }
  state_->on_idle = std::move(callback);
}

struct AsyncRead::Op {
  uv_fs_t request{};
  uv_buf_t buffer{};
  std::shared_ptr<const void> buffer_owner;
  std::function<void(ssize_t)> done;
  std::shared_ptr<Op> self;  // alive while the thread pool has the request
  AsyncRead* owner = nullptr;
};

int AsyncRead::start(uv_loop_t* loop, int fd, char* into, std::size_t size, std::int64_t offset,
                     std::shared_ptr<const void> buffer_owner, std::function<void(ssize_t)> done) {
  cancel();
  auto op = std::make_shared<Op>();
  op->buffer = uv_buf_init(into, static_cast<unsigned>(size));
  op->buffer_owner = std::move(buffer_owner);
  op->done = std::move(done);
  op->owner = this;
  op->request.data = op.get();
  int rc = uv_fs_read(loop, &op->request, fd, &op->buffer, 1, offset, [](uv_fs_t* req) {
    auto* op = static_cast<Op*>(req->data);
    std::shared_ptr<Op> keep = std::move(op->self);
    ssize_t result = req->result;
    uv_fs_req_cleanup(req);
    if (op->owner == nullptr) return;  // cancelled
    op->owner->op_.reset();
    auto done = std::move(op->done);
    done(result);
  });
  if (rc < 0) return rc;
  op->self = op;
  op_ = std::move(op);
  return 0;
}

void AsyncRead::cancel() {
  if (op_) op_->owner = nullptr;
  op_.reset();
}

int open_for_append(const std::string& path) {
  std::error_code ec;
  auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  uv_fs_t req;
  int fd = uv_fs_open(nullptr, &req, path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644, nullptr);
  uv_fs_req_cleanup(&req);
  return fd;
}

}  // namespace weir
