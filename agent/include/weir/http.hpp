// An HTTP/1.1 server on the libuv loop, with Node's http-parser doing the parsing.
// Keep-alive, chunked bodies, Expect: 100-continue, gzip/zstd request bodies, body size
// limits per request and across connections, connection limits per server and per client
// address (idle connections shed first), and timeouts that a slow client cannot stretch
// (header from accept, body, idle). Requests on one connection are answered in order; a
// handler may answer later (acknowledgements).
// Used by the http_server source and by the agent's own API (/health, /metrics).
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "weir/result.hpp"

namespace weir::http {

// Percent-decoding (libcurl's): of a URL path, where '+' is a plus sign, and of a query
// component (application/x-www-form-urlencoded), where '+' is a space.
std::string decode_path(std::string_view text);
std::string decode_query_component(std::string_view text);

struct Header {
  std::string name;  // lower case
  std::string value;
};

struct Request {
  std::string method;
  std::string target;  // as sent: path and query
  std::string path;
  std::string query;
  std::vector<Header> headers;
  std::string body;  // after Content-Encoding was undone
  std::string peer;  // "address:port" of the client

  const std::string* header(std::string_view lower_case_name) const;
  // The first value of a query parameter, percent-decoded.
  std::optional<std::string> query_param(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<Header> headers;
  // Sent instead of `body`: this file, read in chunks as the client takes them, so a large
  // download is held in no buffer (Content-Length: its size when opened). One that cannot
  // be opened is answered 500.
  std::string file;

  static Response json(int status, std::string body) { return Response{status, std::move(body), "application/json", {}, {}}; }
  static Response text(int status, std::string body) { return Response{status, std::move(body), "text/plain; charset=utf-8", {}, {}}; }
  // {"error": message}, properly escaped.
  static Response error(int status, std::string_view message);
};

class Connection;

// Answers one request, once. Answering after the client went away does nothing.
class Responder {
 public:
  Responder() = default;
  explicit Responder(std::weak_ptr<Connection> connection) : connection_(std::move(connection)) {}
  void send(Response response);
  bool connected() const { return !connection_.expired(); }

 private:
  std::weak_ptr<Connection> connection_;
};

// Called with the complete request. Must answer through the responder, now or later.
using Handler = std::function<void(Request& request, Responder responder)>;
// Called when the headers are in, before the body is read: a response refuses the request
// (wrong path, bad credentials, overload) without reading a body the client has not sent
// yet (Expect: 100-continue) or that the server would throw away.
using HeadersCheck = std::function<std::optional<Response>(const Request& head)>;

// A request the server answered, for monitoring (http_server's `requests` output). Valid during the
// call only. Anything more is read off the response by whoever wants it (error_text()).
struct AnsweredRequest {
  std::string_view method;  // empty when the request line never arrived whole
  std::string_view path;
  const Response& response;
  double seconds = 0;       // from the request's first byte to its answer
};

// The text of an error response's {"error": ...}, or "".
std::string error_text(const Response& response);

// A bound that cost a client its connection or its request, for the owner's metrics.
enum class Limit {
  Connections,            // max_connections reached with nothing idle to shed: 503, closed
  ConnectionsPerAddress,  // max_connections_per_address: 503, closed
  IdleShed,               // an idle connection closed to make room for a new one
  BufferedBytes,          // max_buffered_bytes: 503 with Retry-After
  HeaderTimeout,          // headers not complete in time (silent sockets included): 408, closed
  BodyTimeout,            // body not complete in time: 408, closed
};
inline constexpr std::size_t kLimitCount = static_cast<std::size_t>(Limit::BodyTimeout) + 1;
std::string_view limit_name(Limit limit);

struct ServerOptions {
  std::string address = "127.0.0.1:0";  // host:port, [v6]:port; port 0 picks a free one
  std::size_t max_body_bytes = 10 << 20;  // one request, after decompression
  // Request bytes held by all connections together: bodies as they arrive and their
  // decompressed form, until the handler has taken them. A request that would pass it is
  // answered 503 with Retry-After, before its body is read when Content-Length says so.
  std::size_t max_buffered_bytes = 128 << 20;
  std::size_t max_connections = 1024;
  // Connections from one client address (0: no limit). Behind a proxy every client has the
  // proxy's address: raise it there.
  std::size_t max_connections_per_address = 256;
  // From accept (a new connection) or from a request's first byte (keep-alive) to the end
  // of the headers: a socket that connects and says nothing is closed after this.
  std::chrono::milliseconds header_timeout{10'000};
  std::chrono::milliseconds body_timeout{30'000};    // end of headers to end of body
  std::chrono::milliseconds idle_timeout{60'000};    // keep-alive: between requests
  std::string log_name = "http";
  // Called after each answer is written out (not for connections refused before a request).
  std::function<void(const AnsweredRequest&)> on_answered;
  std::function<void(Limit)> on_limit;
  std::function<void(std::size_t bytes)> on_buffered;  // each change of what max_buffered_bytes counts
};

class Server {
 public:
  Server(uv_loop_t* loop, ServerOptions options, Handler handler, HeadersCheck check = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  Status start();  // binds and listens
  // Stops listening and closes idle connections; connections with a request in progress
  // are closed once their response is written. `done` runs when none is left.
  void stop(std::function<void()> done);
  std::uint16_t port() const;  // the bound port
  std::size_t connection_count() const;
  std::size_t buffered_bytes() const;  // counted against max_buffered_bytes now

  struct State;

 private:
  std::shared_ptr<State> state_;
};

// ASCII lower case (header names, tokens).
inline std::string lower_case(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  return out;
}

// Whether `path` is `prefix` or below it ("/api/events" is under "/api", "/apis" is not).
inline bool path_is_under(std::string_view path, std::string_view prefix) {
  return path == prefix || (path.size() > prefix.size() && path.starts_with(prefix) && path[prefix.size()] == '/');
}

// Credentials, for a component that checks an Authorization header.
// Equal, in time that depends on the lengths only (libcrypto's CRYPTO_memcmp); an empty
// secret `expected` matches nothing.
bool same_secret(std::string_view given, std::string_view expected);
// "user:password" in standard base64 with padding (libcrypto), as `Authorization: Basic`
// carries it.
std::string basic_credentials(std::string_view user, std::string_view password);

// Parses "host:port" / "[v6]:port" into a socket address.
Result<sockaddr_storage> parse_address(const std::string& address);

std::string_view reason_phrase(int status);

}  // namespace weir::http
