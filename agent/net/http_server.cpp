#include <curl/curl.h>
#include <http_parser.h>

#include <chrono>
#include <algorithm>
#include <cstring>
#include <unordered_map>

#include <fmt/format.h>

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include "weir/compression.hpp"
#include "weir/http.hpp"
#include "weir/io.hpp"
#include "weir/json.hpp"
#include "weir/log.hpp"
#include "weir/uv.hpp"

namespace weir::http {

std::string decode_path(std::string_view text) {
  if (text.find('%') == std::string_view::npos) return std::string(text);
  int size = 0;
  // libcurl ignores the handle since 7.82 (Debian 12 has 7.88). A request target is at most
  // the parser's header limit, far below INT_MAX.
  char* decoded = curl_easy_unescape(nullptr, text.data(), static_cast<int>(text.size()), &size);
  if (decoded == nullptr) return std::string(text);
  std::string out(decoded, static_cast<std::size_t>(size));
  curl_free(decoded);
  return out;
}

std::string decode_query_component(std::string_view text) {
  std::string plus_as_space(text);
  std::replace(plus_as_space.begin(), plus_as_space.end(), '+', ' ');
  return decode_path(plus_as_space);
}

namespace {

// "address:port" of the client ("[v6]:port"), and its address alone in `address`.
std::string peer_name(uv_tcp_t* tcp, std::string& address) {
  sockaddr_storage addr{};
  int len = sizeof addr;
  if (uv_tcp_getpeername(tcp, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    address = "unknown";
    return address;
  }
  char host[64] = {0};
  if (addr.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
    uv_ip6_name(a, host, sizeof host);
    address = host;
    return fmt::format("[{}]:{}", host, ntohs(a->sin6_port));
  }
  auto* a = reinterpret_cast<sockaddr_in*>(&addr);
  uv_ip4_name(a, host, sizeof host);
  address = host;
  return fmt::format("{}:{}", host, ntohs(a->sin_port));
}

}  // namespace

std::string_view limit_name(Limit limit) {
  switch (limit) {
    case Limit::Connections: return "max_connections";
    case Limit::ConnectionsPerAddress: return "max_connections_per_address";
    case Limit::IdleShed: return "idle_shed";
    case Limit::BufferedBytes: return "max_buffered_bytes";
    case Limit::HeaderTimeout: return "header_timeout";
    case Limit::BodyTimeout: return "body_timeout";
  }
  return "unknown";
}

Response Response::error(int status, std::string_view message) {
  ByteBuffer body;
  body.append("{\"error\":");
  write_json_string(message, body);
  body.push_back('}');
  return json(status, std::string(body.view()));
}

std::string error_text(const Response& response) {
  if (response.status < 400 || !response.body.starts_with("{")) return {};
  Arena arena;
  JsonParser parser;
  auto parsed = parser.parse(response.body, arena);
  if (!parsed.ok()) return {};
  const Value* e = parsed.value().find("error");
  return e != nullptr && e->is_string() ? std::string(e->as_string()) : std::string();
}

const std::string* Request::header(std::string_view name) const {
  for (const Header& h : headers) {
    if (h.name == name) return &h.value;
  }
  return nullptr;
}

std::optional<std::string> Request::query_param(std::string_view name) const {
  std::string_view rest = query;
  while (!rest.empty()) {
    auto amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    auto eq = pair.find('=');
    if (decode_query_component(pair.substr(0, eq)) == name) {
      return eq == std::string_view::npos ? std::string() : decode_query_component(pair.substr(eq + 1));
    }
    if (amp == std::string_view::npos) break;
    rest.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

std::string_view reason_phrase(int status) {
  switch (status) {
#define WEIR_HTTP_REASON(num, name, string) \
  case num: return #string;
    HTTP_STATUS_MAP(WEIR_HTTP_REASON)
#undef WEIR_HTTP_REASON
    default: return "Unknown";
  }
}

bool same_secret(std::string_view given, std::string_view expected) {
  return !expected.empty() && given.size() == expected.size() &&
         CRYPTO_memcmp(given.data(), expected.data(), given.size()) == 0;
}

std::string basic_credentials(std::string_view user, std::string_view password) {
  std::string plain = std::string(user) + ":" + std::string(password);
  std::string out(4 * ((plain.size() + 2) / 3), '\0');
  int written = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(plain.data()), static_cast<int>(plain.size()));
  out.resize(written < 0 ? 0 : static_cast<std::size_t>(written));
  return out;
}

Result<sockaddr_storage> parse_address(const std::string& address) {
  sockaddr_storage storage{};
  std::string host;
  std::string port;
  if (!address.empty() && address.front() == '[') {
    auto close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':') {
      return Error(fmt::format("'{}' is not host:port", address));
    }
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    auto colon = address.rfind(':');
    if (colon == std::string::npos) return Error(fmt::format("'{}' is not host:port (e.g. 0.0.0.0:8282)", address));
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
  }
  int port_number = -1;
  try {
    std::size_t used = 0;
    port_number = std::stoi(port, &used);
    if (used != port.size()) port_number = -1;
  } catch (...) {
    port_number = -1;
  }
  if (port_number < 0 || port_number > 65535) return Error(fmt::format("'{}' has no valid port", address));
  if (host == "localhost") host = "127.0.0.1";
  if (host.empty()) host = "0.0.0.0";
  if (uv_ip4_addr(host.c_str(), port_number, reinterpret_cast<sockaddr_in*>(&storage)) == 0) return storage;
  if (uv_ip6_addr(host.c_str(), port_number, reinterpret_cast<sockaddr_in6*>(&storage)) == 0) return storage;
  return Error(fmt::format("'{}' is not an IP address (write e.g. 0.0.0.0:8282 or [::1]:8282)", host));
}

// ---- connections ----------------------------------------------------------------------

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  explicit Connection(Server::State* server);
  Status accept(uv_stream_t* listener);
  void respond(Response response);
  void close();
  bool busy() const { return phase_ == Phase::Handling; }
  // Between requests (or before the first) with nothing of the next one read: may be shed.
  bool idle() const { return phase_ == Phase::Idle && pending_.empty() && counted_; }
  std::uint64_t idle_since() const { return idle_since_; }
  const std::string& address() const { return address_; }
  void close_when_answered() { close_after_response_ = true; }
  // Counted in its address's connections (not a connection refused at accept).
  bool counted_ = false;

 private:
  enum class Phase { Idle, Headers, Body, Handling, Sending, Closed };

  // A response's file (Response::file), sent a chunk at a time: the next is read (on the
  // thread pool) once the socket has taken the one before.
  struct FileBody {
    int fd = -1;
    std::uint64_t left = 0;
    std::int64_t offset = 0;
    bool then_close = false;
    std::shared_ptr<char[]> chunk;
    AsyncRead read;
    ~FileBody() {
      read.cancel();
      if (fd >= 0) ::close(fd);
    }
  };
  static constexpr std::size_t kFileChunk = 256 * 1024;
  void send_next_chunk();
  void after_response(bool then_close);

  static int on_message_begin(http_parser* p);
  static int on_url(http_parser* p, const char* at, std::size_t len);
  static int on_header_field(http_parser* p, const char* at, std::size_t len);
  static int on_header_value(http_parser* p, const char* at, std::size_t len);
  static int on_headers_complete(http_parser* p);
  static int on_body(http_parser* p, const char* at, std::size_t len);
  static int on_message_complete(http_parser* p);
  static const http_parser_settings kSettings;

  void start_reading();
  void on_read(ssize_t nread);
  void feed(const char* data, std::size_t size);
  void dispatch();
  void reject(Response response);  // answer and close, before the request was complete
  void write(std::string bytes, bool then_close);
  void write_chunk(std::string_view bytes);  // a file body's, then the next chunk
  void after_last_write();
  void arm_timer(std::chrono::milliseconds timeout);
  void report_answer(const Response& response);
  void on_timeout();
  void report(Limit limit);
  // Bytes of this connection's request counted against max_buffered_bytes.
  void hold_exactly(std::size_t bytes);  // now holds `bytes` in all
  void release_held();
  std::size_t buffered_room() const;  // what max_buffered_bytes still allows, all connections counted

  Server::State* server_;
  UvTcp tcp_;
  UvTimer timer_;
  http_parser parser_{};
  Phase phase_ = Phase::Idle;
  Request request_;
  bool last_was_value_ = false;
  bool keep_alive_ = true;
  bool request_ready_ = false;
  bool close_after_response_ = false;
  std::string pending_;  // bytes after a complete request (pipelining), parsed once it is answered
  std::unique_ptr<char[]> read_buffer_;  // on the first read: a silent socket costs no buffer
  std::string peer_;
  std::string address_;  // peer_ without the port
  std::size_t held_ = 0;
  std::size_t requests_ = 0;  // begun on this connection
  std::uint64_t idle_since_ = 0;  // uv_now of the last change to Idle
  // Refused mid-request: the client may still be sending. Closing with unread bytes sends
  // RST, which can destroy the answer before the client reads it; so after the answer the
  // connection is half-closed and what still comes is read and dropped, for kLinger at most.
  bool linger_ = false;
  bool lingering_ = false;
  static constexpr std::chrono::milliseconds kLinger{2'000};
  // Of the request being answered, for ServerOptions::on_answered.
  std::string answered_method_, answered_path_;
  std::chrono::steady_clock::time_point request_began_{};
  std::unique_ptr<FileBody> file_body_;
};

struct Server::State : std::enable_shared_from_this<Server::State> {
  uv_loop_t* loop = nullptr;
  ServerOptions options;
  Handler handler;
  HeadersCheck check;
  UvTcp listener;
  std::uint16_t port = 0;
  bool stopping = false;
  std::vector<std::shared_ptr<Connection>> connections;
  std::unordered_map<std::string, std::size_t> per_address;  // counted connections by client address
  std::size_t held_bytes = 0;  // Connection::hold_exactly, over all connections
  std::function<void()> on_stopped;
  log::Throttle refusal_log{std::chrono::seconds(1)};

  void report(Limit limit) const {
    if (options.on_limit) options.on_limit(limit);
  }

  void on_connection() {
    auto connection = std::make_shared<Connection>(this);
    if (!connection->accept(listener.stream()).ok()) return;
    const std::string& address = connection->address();
    if (options.max_connections_per_address > 0) {
      auto it = per_address.find(address);
      if (it != per_address.end() && it->second >= options.max_connections_per_address && !shed_idle(&address)) {
        return refuse(std::move(connection), Limit::ConnectionsPerAddress,
                      fmt::format("too many connections from {} (max_connections_per_address {})", address,
                                  options.max_connections_per_address));
      }
    }
    // Near the limit, idle connections (kept alive, or silent since accept) make room, the
    // longest idle first: sockets that say nothing cannot lock out a client that talks.
    std::size_t near = options.max_connections - options.max_connections / 8;
    while (connections.size() >= near && shed_idle(nullptr)) {
    }
    if (connections.size() >= options.max_connections) {
      return refuse(std::move(connection), Limit::Connections,
                    fmt::format("too many connections ({} open, max_connections)", connections.size()));
    }
    connection->counted_ = true;
    ++per_address[address];
    connections.push_back(std::move(connection));
  }

  // Answers 503 and closes; logged at most once a second, with the count of the others.
  void refuse(std::shared_ptr<Connection> connection, Limit limit, std::string message) {
    report(limit);
    if (auto held_back = refusal_log.pass()) {
      if (*held_back > 0) {
        log::warn(options.log_name, "refusing a connection from {}: {} ({} more refused since the last such line)",
                  connection->address(), message, *held_back);
      } else {
        log::warn(options.log_name, "refusing a connection from {}: {}", connection->address(), message);
      }
    }
    connections.push_back(connection);
    auto refused = Response::error(503, message);
    refused.headers.push_back({"retry-after", "1"});
    connection->close_when_answered();
    connection->respond(std::move(refused));
  }

  // Closes the connection idle the longest (of `address`, if given); false if none is idle.
  bool shed_idle(const std::string* address) {
    Connection* oldest = nullptr;
    for (const auto& c : connections) {
      if (!c->idle() || (address != nullptr && c->address() != *address)) continue;
      if (oldest == nullptr || c->idle_since() < oldest->idle_since()) oldest = c.get();
    }
    if (oldest == nullptr) return false;
    report(Limit::IdleShed);
    log::debug(options.log_name, "closing an idle connection from {} to make room", oldest->address());
    oldest->close();
    return true;
  }

  void remove(Connection* connection) {
    auto it = std::find_if(connections.begin(), connections.end(), [&](const auto& c) { return c.get() == connection; });
    if (it != connections.end()) {
      if ((*it)->counted_) {
        auto count = per_address.find((*it)->address());
        if (count != per_address.end() && --count->second == 0) per_address.erase(count);
      }
      connections.erase(it);
    }
    if (stopping && connections.empty() && on_stopped) {
      auto done = std::move(on_stopped);
      on_stopped = nullptr;
      done();
    }
  }
};

const http_parser_settings Connection::kSettings = [] {
  http_parser_settings s{};
  s.on_message_begin = on_message_begin;
  s.on_url = on_url;
  s.on_header_field = on_header_field;
  s.on_header_value = on_header_value;
  s.on_headers_complete = on_headers_complete;
  s.on_body = on_body;
  s.on_message_complete = on_message_complete;
  return s;
}();

Connection::Connection(Server::State* server) : server_(server) {
  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
}

Status Connection::accept(uv_stream_t* listener) {
  if (int rc = uv_tcp_init(server_->loop, tcp_.get()); rc != 0) return Error(uv_error_text(rc));
  tcp_.mark_initialized();
  tcp_.get()->data = this;
  if (int rc = uv_accept(listener, tcp_.stream()); rc != 0) {
    tcp_.close();
    return Error(uv_error_text(rc));
  }
  uv_tcp_nodelay(tcp_.get(), 1);
  peer_ = peer_name(tcp_.get(), address_);
  idle_since_ = uv_now(server_->loop);
  // The first request's headers are due header_timeout after accept, not after its first
  // byte: a socket that says nothing holds a connection for that long at most.
  arm_timer(server_->options.header_timeout);
  start_reading();
  return {};
}

void Connection::start_reading() {
  if (phase_ == Phase::Closed) return;
  uv_read_start(
      tcp_.stream(),
      [](uv_handle_t* h, std::size_t, uv_buf_t* buf) {
        auto* self = static_cast<Connection*>(h->data);
        if (!self->read_buffer_) self->read_buffer_ = std::make_unique_for_overwrite<char[]>(64 * 1024);
        *buf = uv_buf_init(self->read_buffer_.get(), 64 * 1024);
      },
      [](uv_stream_t* s, ssize_t nread, const uv_buf_t*) {
        if (auto* self = static_cast<Connection*>(s->data)) self->on_read(nread);
      });
}

void Connection::on_read(ssize_t nread) {
  auto keep = shared_from_this();
  if (nread == 0) return;
  if (nread < 0) {  // EOF or reset: nothing more will come
    if (phase_ == Phase::Sending) file_body_->then_close = true;
    else if (phase_ != Phase::Handling) close();
    else close_after_response_ = true;
    return;
  }
  feed(read_buffer_.get(), static_cast<std::size_t>(nread));
}

void Connection::feed(const char* data, std::size_t size) {
  if (phase_ == Phase::Closed) return;
  std::size_t parsed = http_parser_execute(&parser_, &kSettings, data, size);
  auto error = HTTP_PARSER_ERRNO(&parser_);
  if (error == HPE_PAUSED) {
    pending_.append(data + parsed, size - parsed);
    uv_read_stop(tcp_.stream());
    if (request_ready_) dispatch();
    return;
  }
  if (error != HPE_OK) {
    if (phase_ == Phase::Closed || phase_ == Phase::Handling) return;  // already answered by a callback
    reject(Response::error(400, fmt::format("malformed HTTP request: {}", http_errno_description(error))));
  }
}

void Connection::dispatch() {
  request_ready_ = false;
  phase_ = Phase::Handling;
  uv_timer_stop(timer_.get());
  Request request = std::move(request_);
  request_ = Request();
  // The handler takes the body now (the http_server source decodes it into a batch before
  // it returns; from there the pipeline's buffers bound it): nothing else runs on the loop
  // meanwhile, so releasing first counts the same and a synchronous answer may start the
  // next request on this connection cleanly.
  release_held();
  server_->handler(request, Responder(weak_from_this()));
}

void Responder::send(Response response) {
  if (auto connection = connection_.lock()) connection->respond(std::move(response));
  connection_.reset();
}

void Connection::respond(Response response) {
  if (phase_ == Phase::Closed || phase_ == Phase::Sending) return;  // (a second answer to one request)
  bool was_handling = phase_ == Phase::Handling;
  bool then_close = !keep_alive_ || close_after_response_ || server_->stopping || !was_handling;
  std::unique_ptr<FileBody> file;
  if (!response.file.empty()) {
    file = std::make_unique<FileBody>();
    file->fd = ::open(response.file.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (file->fd < 0 || ::fstat(file->fd, &st) != 0) {
      log::warn(server_->options.log_name, "cannot open {} to answer with: {}", response.file, std::strerror(errno));
      response = Response::error(500, "the answer's file cannot be read");
      file.reset();
    } else {
      file->left = static_cast<std::uint64_t>(st.st_size);
      file->then_close = then_close;
    }
  }
  std::string head = fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
                                 response.status, reason_phrase(response.status), response.content_type,
                                 file ? file->left : response.body.size(), then_close ? "close" : "keep-alive");
  for (const Header& h : response.headers) head += h.name + ": " + h.value + "\r\n";
  head += "\r\n";
  if (server_->options.on_answered) report_answer(response);
  if (file && file->left > 0) {
    write(std::move(head), false);
    if (phase_ == Phase::Closed) return;  // the write failed: closed
    file_body_ = std::move(file);
    phase_ = Phase::Sending;
    return send_next_chunk();
  }
  head += response.body;
  write(std::move(head), then_close);
  after_response(then_close);
}

void Connection::send_next_chunk() {
  FileBody& f = *file_body_;
  if (f.left == 0) {
    bool then_close = f.then_close;
    file_body_.reset();
    if (then_close) {
      phase_ = Phase::Closed;
      return after_last_write();
    }
    return after_response(false);
  }
  if (!f.chunk) f.chunk = std::shared_ptr<char[]>(new char[kFileChunk]);
  std::size_t size = static_cast<std::size_t>(std::min<std::uint64_t>(f.left, kFileChunk));
  // A client that stops reading holds the connection no longer than an idle one.
  arm_timer(server_->options.idle_timeout);
  int rc = f.read.start(server_->loop, f.fd, f.chunk.get(), size, f.offset, f.chunk,
                        [self = weak_from_this()](ssize_t result) {
                          auto connection = self.lock();
                          if (!connection || connection->phase_ != Phase::Sending || !connection->file_body_) return;
                          FileBody& body = *connection->file_body_;
                          if (result <= 0) {  // the file shrank or cannot be read: the length sent is a lie now
                            log::warn(connection->server_->options.log_name, "{}: an answer's file ended early",
                                      connection->peer_);
                            return connection->close();
                          }
                          body.offset += result;
                          body.left -= static_cast<std::uint64_t>(result);
                          connection->write_chunk(std::string_view(body.chunk.get(), static_cast<std::size_t>(result)));
                        });
  if (rc != 0) close();
}

void Connection::after_response(bool then_close) {
  if (then_close) {
    phase_ = Phase::Closed;
    return;
  }
  // Ready for the next request on this connection, starting with what already arrived.
  phase_ = Phase::Idle;
  idle_since_ = uv_now(server_->loop);
  http_parser_pause(&parser_, 0);
  arm_timer(server_->options.idle_timeout);
  std::string pending = std::move(pending_);
  pending_.clear();
  start_reading();
  if (!pending.empty()) feed(pending.data(), pending.size());
}

void Connection::report_answer(const Response& response) {
  double seconds = request_began_ == std::chrono::steady_clock::time_point{}
                       ? 0
                       : std::chrono::duration<double>(std::chrono::steady_clock::now() - request_began_).count();
  server_->options.on_answered(AnsweredRequest{answered_method_, answered_path_, response, seconds});
}

void Connection::reject(Response response) {
  request_.body = std::string();  // not needed for the answer: give its bytes back now
  release_held();
  linger_ = true;
  keep_alive_ = false;
  close_after_response_ = true;
  phase_ = Phase::Handling;
  respond(std::move(response));
}

void Connection::write(std::string bytes, bool then_close) {
  struct WriteRequest {
    uv_write_t request{};
    std::string bytes;
    std::shared_ptr<Connection> connection;
    bool then_close = false;
  };
  auto req = std::make_unique<WriteRequest>(WriteRequest{{}, std::move(bytes), shared_from_this(), then_close});
  uv_buf_t buf = uv_buf_init(req->bytes.data(), static_cast<unsigned>(req->bytes.size()));
  int rc = uv_write(&req->request, tcp_.stream(), &buf, 1, [](uv_write_t* w, int) {
    std::unique_ptr<WriteRequest> done(reinterpret_cast<WriteRequest*>(w));  // owned by libuv until now
    if (done->then_close) done->connection->after_last_write();
  });
  if (rc != 0) {
    close();
    return;
  }
  (void)req.release();  // the callback takes it back
}

void Connection::write_chunk(std::string_view bytes) {
  struct ChunkWrite {
    uv_write_t request{};
    std::shared_ptr<char[]> keep;  // the chunk's memory, until written
    std::shared_ptr<Connection> connection;
  };
  auto req = std::make_unique<ChunkWrite>(ChunkWrite{{}, file_body_->chunk, shared_from_this()});
  uv_buf_t buf = uv_buf_init(const_cast<char*>(bytes.data()), static_cast<unsigned>(bytes.size()));
  int rc = uv_write(&req->request, tcp_.stream(), &buf, 1, [](uv_write_t* w, int status) {
    std::unique_ptr<ChunkWrite> done(reinterpret_cast<ChunkWrite*>(w));
    Connection& c = *done->connection;
    if (status != 0 || c.phase_ != Phase::Sending || !c.file_body_) return c.close();
    c.send_next_chunk();
  });
  if (rc != 0) return close();
  (void)req.release();
}

void Connection::after_last_write() {
  if (!linger_ || !tcp_.initialized() || server_ == nullptr) return close();
  lingering_ = true;
  auto* shutdown = new uv_shutdown_t{};
  if (uv_shutdown(shutdown, tcp_.stream(), [](uv_shutdown_t* req, int) { delete req; }) != 0) {
    delete shutdown;
    return close();
  }
  arm_timer(kLinger);  // on_timeout closes; so does the client's EOF (on_read)
}

void Connection::close() {
  if (!tcp_.initialized() && !timer_.initialized()) return;
  auto keep = shared_from_this();
  phase_ = Phase::Closed;
  release_held();
  tcp_.close();
  timer_.close();
  if (server_ != nullptr) {
    Server::State* server = server_;
    server_ = nullptr;
    server->remove(this);
  }
}

void Connection::arm_timer(std::chrono::milliseconds timeout) {
  start_timer(timer_, server_->loop, this, [](uv_timer_t* t) { static_cast<Connection*>(t->data)->on_timeout(); },
              static_cast<std::uint64_t>(timeout.count()));
}

void Connection::on_timeout() {
  auto keep = shared_from_this();
  switch (phase_) {
    case Phase::Idle:
      if (requests_ == 0) report(Limit::HeaderTimeout);  // connected and never said a thing
      close();
      return;
    case Phase::Headers:
    case Phase::Body:
      report(phase_ == Phase::Headers ? Limit::HeaderTimeout : Limit::BodyTimeout);
      log::debug(server_->options.log_name, "{}: request not complete in time, closing", peer_);
      reject(Response::error(408, "request not complete in time"));
      return;
    case Phase::Closed:
      if (lingering_) close();
      return;
    case Phase::Sending:  // the client took no part of the answer for idle_timeout
      log::debug(server_->options.log_name, "{}: the client stopped reading an answer, closing", peer_);
      close();
      return;
    default: return;
  }
}

void Connection::report(Limit limit) {
  if (server_ != nullptr) server_->report(limit);
}

void Connection::hold_exactly(std::size_t bytes) {
  server_->held_bytes = server_->held_bytes - held_ + bytes;
  held_ = bytes;
  if (server_->options.on_buffered) server_->options.on_buffered(server_->held_bytes);
}

void Connection::release_held() {
  if (held_ != 0 && server_ != nullptr) hold_exactly(0);
}

std::size_t Connection::buffered_room() const {
  std::size_t cap = server_->options.max_buffered_bytes;
  return server_->held_bytes >= cap ? 0 : cap - server_->held_bytes;
}

namespace {
Response buffer_full(std::size_t cap) {
  auto r = Response::error(
      503, fmt::format("the server holds as many request bytes as it may (max_buffered_bytes {}): retry later", cap));
  r.headers.push_back({"retry-after", "1"});
  return r;
}
}  // namespace

int Connection::on_message_begin(http_parser* p) {
  auto* self = static_cast<Connection*>(p->data);
  self->phase_ = Phase::Headers;
  ++self->requests_;
  self->request_began_ = std::chrono::steady_clock::now();
  self->answered_method_.clear();
  self->answered_path_.clear();
  self->request_ = Request();
  self->request_.peer = self->peer_;
  self->last_was_value_ = false;
  // The first request's headers are already timed from accept.
  if (self->requests_ > 1) self->arm_timer(self->server_->options.header_timeout);
  return 0;
}

int Connection::on_url(http_parser* p, const char* at, std::size_t len) {
  auto* self = static_cast<Connection*>(p->data);
  if (self->request_.target.size() + len > 16 * 1024) return -1;
  self->request_.target.append(at, len);
  return 0;
}

int Connection::on_header_field(http_parser* p, const char* at, std::size_t len) {
  auto* self = static_cast<Connection*>(p->data);
  auto& headers = self->request_.headers;
  if (headers.empty() || self->last_was_value_) headers.emplace_back();
  headers.back().name.append(at, len);
  self->last_was_value_ = false;
  return 0;
}

int Connection::on_header_value(http_parser* p, const char* at, std::size_t len) {
  auto* self = static_cast<Connection*>(p->data);
  if (self->request_.headers.empty()) return -1;
  self->request_.headers.back().value.append(at, len);
  self->last_was_value_ = true;
  return 0;
}

int Connection::on_headers_complete(http_parser* p) {
  auto* self = static_cast<Connection*>(p->data);
  Request& r = self->request_;
  for (Header& h : r.headers) h.name = lower_case(h.name);
  r.method = http_method_str(static_cast<http_method>(p->method));
  auto q = r.target.find('?');
  r.path = decode_path(std::string_view(r.target).substr(0, q));
  r.query = q == std::string::npos ? std::string() : r.target.substr(q + 1);
  self->answered_method_ = r.method;
  self->answered_path_ = r.path;
  self->keep_alive_ = http_should_keep_alive(p) != 0;
  const ServerOptions& options = self->server_->options;
  if ((p->flags & F_CONTENTLENGTH) && p->content_length > options.max_body_bytes) {
    self->reject(Response::error(
        413, fmt::format("body of {} bytes is over max_body_bytes ({})", p->content_length, options.max_body_bytes)));
    return -1;
  }
  if (self->server_->check) {
    if (auto refusal = self->server_->check(r)) {
      self->reject(std::move(*refusal));
      return -1;
    }
  }
  // The bytes this body will add, if it says, must fit beside what all connections hold
  // now; said before the client sends them (with Expect: 100-continue, before it even may).
  std::size_t declared = (p->flags & F_CONTENTLENGTH) ? static_cast<std::size_t>(p->content_length) : 0;
  if (self->buffered_room() == 0 || declared > self->buffered_room()) {
    self->report(Limit::BufferedBytes);
    self->reject(buffer_full(options.max_buffered_bytes));
    return -1;
  }
  const std::string* expect = r.header("expect");
  if (expect != nullptr && lower_case(*expect) == "100-continue") self->write("HTTP/1.1 100 Continue\r\n\r\n", false);
  self->phase_ = Phase::Body;
  self->arm_timer(options.body_timeout);
  return 0;
}

int Connection::on_body(http_parser* p, const char* at, std::size_t len) {
  auto* self = static_cast<Connection*>(p->data);
  std::size_t limit = self->server_->options.max_body_bytes;
  if (self->request_.body.size() + len > limit) {
    self->reject(Response::error(413, fmt::format("body over max_body_bytes ({})", limit)));
    return -1;
  }
  // Counted as the memory it takes: the body's capacity, grown here (doubling, but never
  // past a declared Content-Length) so that what is counted is what is allocated.
  std::string& body = self->request_.body;
  if (body.size() + len > body.capacity()) {
    std::size_t want = std::max(body.size() + len, std::min(2 * body.capacity(), limit));
    // http-parser has already taken this chunk off content_length: it is what remains.
    if (p->flags & F_CONTENTLENGTH) want = std::min(want, body.size() + len + static_cast<std::size_t>(p->content_length));
    if (want - self->held_ > self->buffered_room()) {
      self->report(Limit::BufferedBytes);
      self->reject(buffer_full(self->server_->options.max_buffered_bytes));
      return -1;
    }
    // Not body.reserve(want): libstdc++ grows to at least twice the old capacity, past a
    // declared length and past what was counted. A new string gets exactly `want`.
    std::string grown;
    grown.reserve(want);
    grown.append(body);
    body.swap(grown);
  }
  body.append(at, len);
  self->hold_exactly(body.capacity());
  return 0;
}

int Connection::on_message_complete(http_parser* p) {
  auto* self = static_cast<Connection*>(p->data);
  Request& r = self->request_;
  const std::string* encoding = r.header("content-encoding");
  std::string coding = encoding == nullptr ? std::string() : lower_case(*encoding);
  if (!coding.empty() && coding != "identity") {
    // The decompressed body is held beside the compressed one until it is whole: it may
    // use what is left of max_buffered_bytes, up to max_body_bytes.
    std::size_t max_body = self->server_->options.max_body_bytes;
    std::size_t room = self->buffered_room();
    std::size_t limit = std::min(max_body, room);
    auto decoded = compression::decode_content(coding, std::move(r.body), limit);
    if (!decoded.ok()) {
      bool too_large = decoded.error().message() == compression::kTooLarge;
      if (too_large && limit < max_body) {
        self->report(Limit::BufferedBytes);
        self->reject(buffer_full(self->server_->options.max_buffered_bytes));
        return -1;
      }
      self->reject(Response::error(too_large ? 413 : 415,
                                   too_large ? fmt::format("decompressed body over max_body_bytes ({})", max_body)
                                             : decoded.error().message()));
      return -1;
    }
    r.body = std::move(decoded.value());
    // The decoder's buffer grows by doubling: past 1/8 unused, a copy gives the rest back.
    if (r.body.capacity() - r.body.size() > r.body.size() / 8) r.body.shrink_to_fit();
    self->hold_exactly(r.body.capacity());
  }
  self->request_ready_ = true;
  http_parser_pause(p, 1);  // one request at a time: the next waits until this one is answered
  return 0;
}

// ---- server -----------------------------------------------------------------------------

Server::Server(uv_loop_t* loop, ServerOptions options, Handler handler, HeadersCheck check)
    : state_(std::make_shared<State>()) {
  state_->loop = loop;
  state_->options = std::move(options);
  state_->handler = std::move(handler);
  state_->check = std::move(check);
}

Server::~Server() {
  state_->stopping = true;
  state_->on_stopped = nullptr;
  auto connections = state_->connections;
  for (auto& c : connections) c->close();
  state_->listener.close();
}

Status Server::start() {
  auto address = parse_address(state_->options.address);
  if (!address.ok()) return address.error();
  if (int rc = uv_tcp_init(state_->loop, state_->listener.get()); rc != 0) return Error(uv_error_text(rc));
  state_->listener.mark_initialized();
  state_->listener.get()->data = state_.get();
  if (int rc = uv_tcp_bind(state_->listener.get(), reinterpret_cast<const sockaddr*>(&address.value()), 0); rc != 0) {
    return Error(fmt::format("cannot bind {}: {}", state_->options.address, uv_error_text(rc)));
  }
  int rc = uv_listen(state_->listener.stream(), 511, [](uv_stream_t* s, int status) {
    if (status == 0 && s->data != nullptr) static_cast<State*>(s->data)->on_connection();
  });
  if (rc != 0) return Error(fmt::format("cannot listen on {}: {}", state_->options.address, uv_error_text(rc)));
  sockaddr_storage bound{};
  int len = sizeof bound;
  uv_tcp_getsockname(state_->listener.get(), reinterpret_cast<sockaddr*>(&bound), &len);
  state_->port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                   : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return {};
}

void Server::stop(std::function<void()> done) {
  state_->stopping = true;
  state_->listener.close();
  state_->on_stopped = std::move(done);
  auto connections = state_->connections;
  for (auto& c : connections) {
    if (c->busy()) c->close_when_answered();
    else c->close();
  }
  if (state_->connections.empty() && state_->on_stopped) {
    auto callback = std::move(state_->on_stopped);
    state_->on_stopped = nullptr;
    callback();
  }
}

std::uint16_t Server::port() const { return state_->port; }
std::size_t Server::connection_count() const { return state_->connections.size(); }
std::size_t Server::buffered_bytes() const { return state_->held_bytes; }

}  // namespace weir::http
