// An HTTP client on the libuv loop: libcurl's multi interface with its sockets watched by
// uv_poll handles and its timeouts by a uv_timer, so requests never block the loop and no
// thread is made per request. Connections are kept alive and reused between requests.
// Used by sinks that write to HTTP services (ClickHouse, InfluxDB).
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "weir/http.hpp"

namespace weir::http {

struct ClientRequest {
  std::string method = "POST";
  std::string url;
  std::vector<Header> headers;  // sent as given
  std::string body;
  // Sent instead of `body` when set, without a copy: a large body the caller keeps (for
  // retries) and guarantees alive until the request's callback runs or the client is gone.
  std::optional<std::string_view> borrowed_body;
  std::string user, password;  // basic auth when `user` is not empty
  std::chrono::milliseconds timeout{30'000};
  std::chrono::milliseconds connect_timeout{5'000};
  // What of the body ClientResponse::body keeps; the rest is read and dropped.
  std::size_t max_response_bytes = 1 << 20;
  // A 2xx answer's body, handed over piece by piece as it arrives instead of kept in
  // ClientResponse::body (which then stays empty): a download no buffer has to hold. False
  // takes nothing: the transfer pauses until Client::resume(), and the same piece comes again.
  std::function<bool(std::string_view piece)> on_body;
};

struct ClientResponse {
  int status = 0;               // 0: no HTTP answer (transport failure)
  std::string transport_error;  // why, when status is 0
  std::vector<Header> headers;  // names in lower case
  std::string body;             // at most 1 MiB is kept
  double seconds = 0;           // from send to answer

  const std::string* header(std::string_view lower_case_name) const;
};

class Client {
 public:
  using Callback = std::function<void(ClientResponse)>;

  explicit Client(uv_loop_t* loop);
  // Requests still in flight are abandoned: their callbacks are not called. Do not destroy
  // a client from inside one of its callbacks.
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Starts a request; `done` runs on the loop with the response. Never blocks. Returns the
  // request's id (for resume and cancel).
  std::uint64_t send(ClientRequest request, Callback done);
  // A transfer paused by its on_body goes on (its piece comes again, maybe at once).
  void resume(std::uint64_t id);
  // Abandons a request in flight: `done` is not called. Unknown ids are ignored.
  void cancel(std::uint64_t id);
  std::size_t in_flight() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One request, waited for: for checks before the loop runs (a sink's required healthcheck).
ClientResponse send_blocking(const ClientRequest& request);

// Percent-encodes `text` for a URL query value.
std::string url_encode(std::string_view text);

// Whether the URL's host is this machine: localhost, 127.0.0.0/8 or [::1] (as libcurl's URL
// parser reads the host). False for a URL it cannot parse.
bool url_host_is_loopback(const std::string& url);

}  // namespace weir::http
