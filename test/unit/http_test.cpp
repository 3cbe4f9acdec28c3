#include <catch2/catch.hpp>

#include "weir/http.hpp"
#include "weir/http_client.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <optional>

using namespace weir::http;

TEST_CASE("http: a URL path keeps '+' (only a query turns it into a space)") {
  CHECK(decode_path("/events/a+b") == "/events/a+b");
  CHECK(decode_path("/events/a%20b%2Bc") == "/events/a b+c");
  CHECK(decode_path("/plain") == "/plain");
  CHECK(decode_path("/bad%zz%4") == "/bad%zz%4");  // malformed escapes stay as they are
  CHECK(decode_query_component("a+b%2Bc") == "a b+c");
  Request r;
  r.query = "team=red+blue&x=%C3%A9";
  CHECK(r.query_param("team").value() == "red blue");
  CHECK(r.query_param("x").value() == "\xC3\xA9");
  CHECK_FALSE(r.query_param("y").has_value());
}

TEST_CASE("http: query values percent-encoded by libcurl (all but A-Z a-z 0-9 - . _ ~)") {
  CHECK(url_encode("my org") == "my%20org");
  CHECK(url_encode("b/rp") == "b%2Frp");
  CHECK(url_encode("a-b.c_d~e") == "a-b.c_d~e");
  CHECK(url_encode("\xC3\xA9+&=") == "%C3%A9%2B%26%3D");
  CHECK(url_encode("") == "");
  CHECK(url_encode(std::string_view("a\0b", 3)) == "a%00b");
}

TEST_CASE("http: which endpoints are on this machine (compression: auto sends those uncompressed)") {
  for (const char* url : {"http://127.0.0.1:8123", "http://127.1.2.3", "http://localhost:8086/", "http://LOCALHOST",
                          "https://ch.localhost:8443", "http://[::1]:8123", "http://user:pw@127.0.0.1:8123/"}) {
    CAPTURE(url);
    CHECK(url_host_is_loopback(url));
  }
  for (const char* url : {"http://clickhouse:8123", "http://10.0.0.7:8123", "http://128.0.0.1", "http://[::2]:8123",
                          "http://localhost.example.org", "http://127.0.0.1.example.org", "not a url", ""}) {
    CAPTURE(url);
    CHECK_FALSE(url_host_is_loopback(url));
  }
}

namespace {
// A server and a client on one loop, run until `done` says so (or 10 s pass).
void run_until(uv_loop_t* loop, const std::function<bool()>& done) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done() && std::chrono::steady_clock::now() < deadline) uv_run(loop, UV_RUN_ONCE);
}
}  // namespace

TEST_CASE("http: a response from a file goes out in chunks, and a client taking it in pieces can pause") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  std::string path = "/tmp/weir-http-file-test-" + std::to_string(::getpid());
  std::string content;
  for (int i = 0; content.size() < 3'000'000; ++i) content += "row " + std::to_string(i) + ", with a comma\r\n";
  {
    FILE* f = std::fopen(path.c_str(), "wb");
    REQUIRE(f != nullptr);
    std::fwrite(content.data(), 1, content.size(), f);
    std::fclose(f);
  }
  {
    ServerOptions options;
    Server server(&loop, options, [&](Request& request, Responder responder) {
      Response r;
      r.content_type = "text/csv";
      if (request.path == "/file") r.file = path;
      else if (request.path == "/missing") r.file = path + ".missing";
      else r.body = "small";
      responder.send(std::move(r));
    });
    REQUIRE(server.start().ok());
    std::string base = "http://127.0.0.1:" + std::to_string(server.port());
    Client client(&loop);

    std::string received;
    int pauses = 0;
    std::uint64_t id = 0;
    std::optional<ClientResponse> answer;
    ClientRequest get;
    get.method = "GET";
    get.url = base + "/file";
    // Takes every other piece only after a pause, resumed from the loop.
    bool refuse_next = true;
    get.on_body = [&](std::string_view piece) {
      if (refuse_next) {
        refuse_next = false;
        ++pauses;
        auto* resume = new uv_timer_t;
        uv_timer_init(&loop, resume);
        resume->data = new std::function<void()>([&] { client.resume(id); });
        uv_timer_start(resume, [](uv_timer_t* t) {
          auto* call = static_cast<std::function<void()>*>(t->data);
          (*call)();
          delete call;
          uv_close(reinterpret_cast<uv_handle_t*>(t), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
        }, 1, 0);
        return false;
      }
      refuse_next = true;
      received.append(piece);
      return true;
    };
    id = client.send(get, [&](ClientResponse r) { answer = std::move(r); });
    run_until(&loop, [&] { return answer.has_value(); });
    REQUIRE(answer.has_value());
    CHECK(answer->status == 200);
    CHECK(answer->body.empty());  // the body went to on_body
    CHECK(*answer->header("content-length") == std::to_string(content.size()));
    CHECK(received.size() == content.size());
    CHECK(received == content);
    CHECK(pauses > 1);

    // The connection goes on after a file; a file that cannot be opened is a 500.
    std::optional<ClientResponse> small, missing;
    ClientRequest again = get;
    again.on_body = nullptr;
    again.url = base + "/small";
    client.send(again, [&](ClientResponse r) { small = std::move(r); });
    again.url = base + "/missing";
    client.send(again, [&](ClientResponse r) { missing = std::move(r); });
    run_until(&loop, [&] { return small.has_value() && missing.has_value(); });
    REQUIRE(small.has_value());
    CHECK(small->body == "small");
    REQUIRE(missing.has_value());
    CHECK(missing->status == 500);

    bool stopped = false;
    server.stop([&] { stopped = true; });
    run_until(&loop, [&] { return stopped; });
  }
  while (uv_run(&loop, UV_RUN_NOWAIT) != 0) {
  }
  uv_loop_close(&loop);
  std::remove(path.c_str());
}
