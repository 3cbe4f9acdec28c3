#include <curl/curl.h>
#include <http_parser.h>

#include <chrono>
#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "weir/compression.hpp"
#include "weir/http.hpp"
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

std::string peer_name(uv_tcp_t* tcp) {
  sockaddr_storage addr{};
  int len = sizeof addr;
  if (uv_tcp_getpeername(tcp, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "unknown";
  char host[64] = {0};
  if (addr.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
    uv_ip6_name(a, host, sizeof host);
    return fmt::format("[{}]:{}", host, ntohs(a->sin6_port));
  }
  auto* a = reinterpret_cast<sockaddr_in*>(&addr);
  uv_ip4_name(a, host, sizeof host);
  return fmt::format("{}:{}", host, ntohs(a->sin_port));
}

}  // namespace

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
  void close_when_answered() { close_after_response_ = true; }

 private:
  enum class Phase { Idle, Headers, Body, Handling, Closed };

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
  void arm_timer(std::chrono::milliseconds timeout);
  void report_answer(const Response& response);
  void on_timeout();

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
  std::unique_ptr<char[]> read_buffer_;
  std::string peer_;
  // Of the request being answered, for ServerOptions::on_answered.
  std::string answered_method_, answered_path_;
  std::chrono::steady_clock::time_point request_began_{};
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
  std::function<void()> on_stopped;

  void on_connection() {
    auto connection = std::make_shared<Connection>(this);
    if (!connection->accept(listener.stream()).ok()) return;
    if (connections.size() >= options.max_connections) {
      log::warn(options.log_name, "refusing a connection: {} open (max_connections)", connections.size());
      connections.push_back(connection);
      auto refused = Response::error(503, "too many connections");
      refused.headers.push_back({"retry-after", "1"});
      connection->close_when_answered();
      connection->respond(std::move(refused));
      return;
    }
    connections.push_back(std::move(connection));
  }

  void remove(Connection* connection) {
    auto it = std::find_if(connections.begin(), connections.end(), [&](const auto& c) { return c.get() == connection; });
    if (it != connections.end()) connections.erase(it);
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
  peer_ = peer_name(tcp_.get());
  read_buffer_ = std::make_unique_for_overwrite<char[]>(64 * 1024);
  arm_timer(server_->options.idle_timeout);
  start_reading();
  return {};
}

void Connection::start_reading() {
  if (phase_ == Phase::Closed) return;
  uv_read_start(
      tcp_.stream(),
      [](uv_handle_t* h, std::size_t, uv_buf_t* buf) {
        auto* self = static_cast<Connection*>(h->data);
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
    if (phase_ != Phase::Handling) close();
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
  server_->handler(request, Responder(weak_from_this()));
}

void Responder::send(Response response) {
  if (auto connection = connection_.lock()) connection->respond(std::move(response));
  connection_.reset();
}

void Connection::respond(Response response) {
  if (phase_ == Phase::Closed) return;
  bool was_handling = phase_ == Phase::Handling;
  bool then_close = !keep_alive_ || close_after_response_ || server_->stopping || !was_handling;
  std::string head = fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
                                 response.status, reason_phrase(response.status), response.content_type,
                                 response.body.size(), then_close ? "close" : "keep-alive");
  for (const Header& h : response.headers) head += h.name + ": " + h.value + "\r\n";
  head += "\r\n";
  head += response.body;
  write(std::move(head), then_close);
  if (server_->options.on_answered) report_answer(response);
  if (then_close) {
    phase_ = Phase::Closed;
    return;
  }
  // Ready for the next request on this connection, starting with what already arrived.
  phase_ = Phase::Idle;
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
    if (done->then_close) done->connection->close();
  });
  if (rc != 0) {
    close();
    return;
  }
  (void)req.release();  // the callback takes it back
}

void Connection::close() {
  if (!tcp_.initialized() && !timer_.initialized()) return;
  auto keep = shared_from_this();
  phase_ = Phase::Closed;
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
    case Phase::Idle: close(); return;
    case Phase::Headers:
    case Phase::Body:
      log::debug(server_->options.log_name, "{}: request not complete in time, closing", peer_);
      reject(Response::error(408, "request not complete in time"));
      return;
    default: return;
  }
}

int Connection::on_message_begin(http_parser* p) {
  auto* self = static_cast<Connection*>(p->data);
  self->phase_ = Phase::Headers;
  self->request_began_ = std::chrono::steady_clock::now();
  self->answered_method_.clear();
  self->answered_path_.clear();
  self->request_ = Request();
  self->request_.peer = self->peer_;
  self->last_was_value_ = false;
  self->arm_timer(self->server_->options.header_timeout);
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
  self->request_.body.append(at, len);
  return 0;
}

int Connection::on_message_complete(http_parser* p) {
  auto* self = static_cast<Connection*>(p->data);
  Request& r = self->request_;
  const std::string* encoding = r.header("content-encoding");
  if (encoding != nullptr) {
    auto decoded = compression::decode_content(lower_case(*encoding), std::move(r.body), self->server_->options.max_body_bytes);
    if (!decoded.ok()) {
      bool too_large = decoded.error().message() == compression::kTooLarge;
      self->reject(Response::error(too_large ? 413 : 415, decoded.error().message()));
      return -1;
    }
    r.body = std::move(decoded.value());
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

}  // namespace weir::http
