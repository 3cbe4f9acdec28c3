// The HTTP server as a client reaches it: each input is the bytes one connection sends
// (request lines, headers, chunked or sized bodies, pipelined requests, Content-Encoding
// gzip or zstd with its bombs), then the client's end of sending. The server runs on its
// own libuv loop on loopback with small limits, a HeadersCheck like the http_server
// source's (path, method, bearer token, overload) and a handler that decodes the body with
// the source's BodyDecoder.
//
// Checked after each input, besides what the sanitizers catch:
// - the server closes the connection (no hang: the client has stopped sending);
// - what it wrote is a sequence of whole HTTP/1.1 responses (read back with http-parser in
//   response mode), every status one the server gives, at most one per request begun;
// - it holds nothing afterwards: no connection, no buffered request bytes.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <http_parser.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "plugins/sources/http_server/body_decoder.hpp"
#include "weir/http.hpp"
#include "weir/log.hpp"

namespace {

using namespace weir;

[[noreturn]] void fail(const char* what, const std::string& detail = {}) {
  std::fprintf(stderr, "fuzz_http_request: %s %s\n", what, detail.c_str());
  std::abort();
}

struct Fixture {
  uv_loop_t loop{};
  std::unique_ptr<http::Server> server;
  std::size_t requests_handled = 0;

  Fixture() {
    log::set_level(log::Level::Off);
    uv_loop_init(&loop);
    http::ServerOptions options;
    options.address = "127.0.0.1:0";
    options.max_body_bytes = 64 << 10;       // small, so that bodies and bombs reach it
    options.max_buffered_bytes = 96 << 10;   // less than two bodies: the shared cap is reached too
    options.max_connections = 8;
    server = std::make_unique<http::Server>(
        &loop, options,
        [this](http::Request& request, http::Responder responder) {
          ++requests_handled;
          plugins::BodyCodec codec = request.path == "/ndjson" ? plugins::BodyCodec::Ndjson
                                     : request.path == "/text" ? plugins::BodyCodec::Text
                                     : request.path == "/cvat" ? plugins::BodyCodec::CvatClient
                                                               : plugins::BodyCodec::Json;
          EventBatch batch;
          std::vector<plugins::BodyRejection> rejected;
          plugins::BodyDecoder(codec).decode(request.body, 1'700'000'000'000'000'000, batch, rejected);
          auto q = request.query_param("status");  // the query decoder, and an answer the handler picks
          int status = q && *q == "503" ? 503 : rejected.empty() ? 200 : 400;
          responder.send(http::Response::json(status, "{\"accepted\":" + std::to_string(batch.size()) + "}"));
        },
        [](const http::Request& head) -> std::optional<http::Response> {
          if (head.path == "/missing") return http::Response::error(404, "no events are taken here");
          if (head.method != "POST" && head.method != "PUT") return http::Response::error(405, "use POST");
          const std::string* auth = head.header("authorization");
          if (auth != nullptr && *auth != "Bearer secret") return http::Response::error(401, "wrong credentials");
          if (head.header("x-overload") != nullptr) return http::Response::error(503, "pipeline is full");
          return std::nullopt;
        });
    if (!server->start().ok()) fail("cannot start the server");
  }
};

Fixture& fixture() {
  static Fixture* f = new Fixture();  // lives for the process: libFuzzer exits without unwinding
  return *f;
}

// Runs the loop until the server has closed the client's connection; returns what it wrote.
std::string exchange(Fixture& f, const std::uint8_t* data, std::size_t size) {
  int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (client < 0) fail("socket:", std::strerror(errno));
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(f.server->port());
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // Non-blocking, so that a signal (libFuzzer's timer) cannot cut the connect short.
  fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK);
  if (connect(client, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
    if (errno != EINPROGRESS) fail("connect:", std::strerror(errno));
    pollfd writable{client, POLLOUT, 0};
    while (poll(&writable, 1, 10'000) < 0 && errno == EINTR) {
    }
    int error = 0;
    socklen_t length = sizeof error;
    getsockopt(client, SOL_SOCKET, SO_ERROR, &error, &length);
    if (error != 0) fail("connect:", std::strerror(error));
  }
  // Closed with RST once the answer is read: no TIME_WAIT, so millions of runs do not use
  // up the ephemeral ports (seen after 875k runs: connect failed).
  linger abort_on_close{1, 0};
  setsockopt(client, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close);
  std::size_t sent = 0;
  bool shut = false;
  std::string answer;
  for (int rounds = 0;; ++rounds) {
    if (rounds > 200'000) fail("the server did not close the connection");
    if (sent < size) {
      ssize_t n = send(client, data + sent, size - sent, MSG_NOSIGNAL);
      if (n > 0) sent += static_cast<std::size_t>(n);
      else if (n < 0 && errno != EAGAIN && errno != EINTR) sent = size;  // the server has closed: what is left is not read
    }
    if (sent == size && !shut) {
      shutdown(client, SHUT_WR);
      shut = true;
    }
    char buffer[16384];
    ssize_t n = recv(client, buffer, sizeof buffer, 0);
    if (n > 0) {
      answer.append(buffer, static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) break;  // closed (or reset after the answer)
    pollfd fds[2] = {{uv_backend_fd(&f.loop), POLLIN, 0}, {client, POLLIN, 0}};
    int timeout = uv_backend_timeout(&f.loop);
    poll(fds, 2, timeout < 0 || timeout > 5 ? 5 : timeout);
    uv_run(&f.loop, UV_RUN_NOWAIT);
  }
  close(client);
  // The server's side of the close runs on the loop.
  for (int i = 0; i < 1000 && f.server->connection_count() > 0; ++i) {
    pollfd fd{uv_backend_fd(&f.loop), POLLIN, 0};
    poll(&fd, 1, 1);
    uv_run(&f.loop, UV_RUN_NOWAIT);
  }
  return answer;
}

struct Responses {
  std::vector<int> statuses;
  bool complete = false;
};

int on_response_complete(http_parser* p) {
  auto* r = static_cast<Responses*>(p->data);
  r->statuses.push_back(static_cast<int>(p->status_code));
  r->complete = true;
  return 0;
}

void check_responses(const std::string& answer, std::size_t requests_begun_at_most) {
  if (answer.empty()) return;
  Responses responses;
  http_parser parser{};
  http_parser_init(&parser, HTTP_RESPONSE);
  parser.data = &responses;
  http_parser_settings settings{};
  settings.on_message_begin = [](http_parser* p) {
    static_cast<Responses*>(p->data)->complete = false;
    return 0;
  };
  settings.on_message_complete = on_response_complete;
  std::size_t parsed = http_parser_execute(&parser, &settings, answer.data(), answer.size());
  if (HTTP_PARSER_ERRNO(&parser) != HPE_OK || parsed != answer.size()) {
    fail("the server wrote a malformed response:", answer.substr(0, 512));
  }
  if (!responses.complete) fail("the server's last response is cut short:", answer.substr(0, 512));
  for (int status : responses.statuses) {
    switch (status) {
      case 100: case 200: case 400: case 401: case 404: case 405: case 408: case 413: case 415: case 503: break;
      default: fail("unexpected status", std::to_string(status));
    }
  }
  std::size_t answers = 0;
  for (int status : responses.statuses) answers += status != 100;
  if (answers > requests_begun_at_most + 1) fail("more answers than requests:", answer.substr(0, 512));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Fixture& f = fixture();
  std::string answer = exchange(f, data, size);
  // A request begins with a method, so there are at most as many as there are line ends + 1.
  std::size_t line_ends = 0;
  for (std::size_t i = 0; i < size; ++i) line_ends += data[i] == '\n';
  check_responses(answer, line_ends);
  if (f.server->connection_count() != 0) fail("a connection is still open after the client closed");
  if (f.server->buffered_bytes() != 0) fail("request bytes still counted after the connection closed");
  return 0;
}
