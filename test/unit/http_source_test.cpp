// The http_server source inside a running pipeline, driven by libcurl from another thread:
// every event of a request carries that request's id in its metadata.
#include <catch2/catch.hpp>

#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <thread>

#include "config/config.hpp"
#include "runtime/runtime.hpp"
#include "test_components.hpp"
#include "topology/graph.hpp"
#include "weir/uv.hpp"

using namespace weir;
using testing::Probe;

namespace {

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

long post(int port, const std::string& body, const std::string& request_id) {
  CURL* curl = curl_easy_init();
  std::string url = "http://127.0.0.1:" + std::to_string(port) + "/";
  curl_slist* headers = nullptr;
  if (!request_id.empty()) headers = curl_slist_append(headers, ("X-Request-Id: " + request_id).c_str());
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, +[](char*, size_t size, size_t n, void*) { return size * n; });
  long status = 0;
  for (int attempt = 0; attempt < 100; ++attempt) {  // until the server listens
    if (curl_easy_perform(curl) == CURLE_OK) {
      curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return status;
}

// Runs `graph` until `client`, on its own thread, is done; returns run()'s code.
int run_with_client(topology::Graph& graph, const std::function<void()>& client) {
  runtime::Runtime rt(graph, {.handle_signals = false, .print_summary = false});
  std::atomic<bool> client_done{false};
  std::thread thread([&] {
    client();
    client_done = true;
  });
  // The runtime belongs to the loop thread: a timer there notices the client is done.
  struct Watch {
    std::atomic<bool>* done;
    runtime::Runtime* rt;
  } watch{&client_done, &rt};
  UvTimer timer;
  start_timer(
      timer, rt.loop(), &watch,
      [](uv_timer_t* t) {
        auto* w = static_cast<Watch*>(t->data);
        if (*w->done) {
          uv_timer_stop(t);
          w->rt->shutdown();
        }
      },
      10, 10);
  int rc = rt.run();
  thread.join();
  return rc;
}

}  // namespace

TEST_CASE("http_server: the request id reaches every event's metadata") {
  Probe::get().reset();
  int port = free_port();
  config::Diagnostics d;
  auto cfg = config::load_text("sources:\n  in: { type: http_server, address: \"127.0.0.1:" + std::to_string(port) +
                                   "\", headers_to_fields: { x-team: \"%team\" } }\n"
                                   "sinks:\n  k: { type: test_sink, inputs: [in], metadata: true }\n",
                               "test.yaml", d);
  REQUIRE(d.ok());
  auto graph = topology::build(std::move(cfg), d);
  REQUIRE(d.ok());
  long first = 0, second = 0;
  int rc = run_with_client(graph, [&] {
    first = post(port, "{\"n\":1}\n{\"n\":2}\n", "trace-1");
    second = post(port, "{\"n\":3}", "");
  });
  REQUIRE(rc == 0);
  CHECK(first == 200);
  CHECK(second == 200);
  auto& got = Probe::get().received["k"];
  REQUIRE(got.size() == 3);
  CHECK(got[0] == R"({"fields":{"n":1},"metadata":{"request_id":"trace-1"}})");
  CHECK(got[1] == R"({"fields":{"n":2},"metadata":{"request_id":"trace-1"}})");
  CHECK(got[2].find(R"({"fields":{"n":3},"metadata":{"request_id":")") == 0);
  CHECK(got[2].size() == std::string(R"({"fields":{"n":3},"metadata":{"request_id":""}})").size() + 36);
}

TEST_CASE("http_server: NAME.requests is an ordinary output: a record per answer, shown in the graph") {
  Probe::get().reset();
  int port = free_port();
  config::Diagnostics d;
  auto cfg = config::load_text("sources:\n  in: { type: http_server, address: \"127.0.0.1:" + std::to_string(port) +
                                   "\" }\n"
                                   "transforms:\n  self: { type: monitoring, inputs: [in.requests], service: weir }\n"
                                   "sinks:\n  k: { type: test_sink, inputs: [in] }\n"
                                   "  raw: { type: test_sink, inputs: [in.requests] }\n"
                                   "  points: { type: test_sink, inputs: [self] }\n",
                               "test.yaml", d);
  REQUIRE(d.ok());
  auto graph = topology::build(std::move(cfg), d);
  REQUIRE(d.ok());
  CHECK(topology::to_dot(graph).find("\"in\" -> \"self\" [label=\"requests\"];") != std::string::npos);
  long good = 0, bad = 0;
  int rc = run_with_client(graph, [&] {
    good = post(port, "{\"n\":1}", "trace-ok");
    bad = post(port, "{not json", "trace-bad");
  });
  REQUIRE(rc == 0);
  CHECK(good == 200);
  CHECK(bad == 400);
  CHECK(Probe::get().received["k"].size() == 1);
  // The records are emitted when the source stops (its timer is 1 s): both answers, in order.
  auto& raw = Probe::get().received["raw"];
  REQUIRE(raw.size() == 2);
  CHECK(raw[0].find(R"({"method":"POST","resource":"/","status_code":200,"request_id":"trace-ok","execution_time":)") == 0);
  CHECK(raw[0].find(R"("tags":{"component":"in"}})") != std::string::npos);
  CHECK(raw[0].find("\"fields\"") == std::string::npos);
  CHECK(raw[1].find(R"("status_code":400,"request_id":"trace-bad")") != std::string::npos);
  CHECK(raw[1].find(R"("fields":{"error":")") != std::string::npos);
  // Through `monitoring`: a requests point for each, an errors point for the failed one.
  auto& points = Probe::get().received["points"];
  REQUIRE(points.size() == 3);
  CHECK(points[0].find(R"("series":"requests")") != std::string::npos);
  CHECK(points[0].find(R"("service":"weir")") != std::string::npos);
  CHECK(points[0].find(R"("route":"POST:/")") != std::string::npos);
  CHECK(points[2].find(R"("series":"errors")") != std::string::npos);
}
