// weir-discard-receiver: a minimal HTTP/1.1 server that reads each request's body and
// throws it away, answering 200 "Ok.". The far end for measuring a sink's own ceiling
// (tools/bench/clickhouse.py): written in C++ so that the receiver is not the bottleneck.
// Prints its port on stdout; one thread per connection; keep-alive; Content-Length bodies.
// With `--clickhouse COLUMNS`, it also answers the clickhouse sink's two questions at start
// as ClickHouse 18.16 would (the version query: "18.16.1, Etc/UTC, no dedup token"; the
// system.columns query: the file COLUMNS, JSONEachRow rows of name, type, default_kind,
// default_expression), so that the sink picks the binary format it would pick against a
// real server: the ceiling measured is that of the sink's default path.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <strings.h>
#include <thread>
#include <vector>

namespace {

std::string g_columns;  // --clickhouse: the system.columns answer
bool g_clickhouse = false;

std::string answer(std::string_view body) {
  return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

void serve(int fd) {
  std::vector<char> buffer(1 << 20);
  std::string head;
  std::size_t have = 0;  // bytes of the next request already read into buffer
  static const char kAnswer[] = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nOk.\n";
  for (;;) {
    // Headers.
    std::size_t end;
    while ((end = std::string_view(buffer.data(), have).find("\r\n\r\n")) == std::string_view::npos) {
      if (have == buffer.size()) buffer.resize(buffer.size() * 2);
      ssize_t n = ::read(fd, buffer.data() + have, buffer.size() - have);
      if (n <= 0) return ::close(fd), void();
      have += static_cast<std::size_t>(n);
    }
    std::string_view headers(buffer.data(), end);
    std::size_t length = 0;
    for (std::size_t at = 0; at < headers.size();) {
      std::size_t eol = headers.find("\r\n", at);
      std::string_view line = headers.substr(at, eol == std::string_view::npos ? std::string_view::npos : eol - at);
      if (line.size() > 15 && ::strncasecmp(line.data(), "content-length:", 15) == 0) {
        length = std::strtoull(std::string(line.substr(15)).c_str(), nullptr, 10);
      }
      if (eol == std::string_view::npos) break;
      at = eol + 2;
    }
    // Body: what is already buffered, then the rest straight from the socket.
    std::size_t body_start = end + 4;
    std::size_t buffered = have - body_start;
    std::size_t take = buffered < length ? buffered : length;
    std::size_t left = length - take;
    std::memmove(buffer.data(), buffer.data() + body_start + take, buffered - take);
    have = buffered - take;
    while (left > 0) {
      ssize_t n = ::read(fd, buffer.data() + have, std::min(left, buffer.size() - have));
      if (n <= 0) return ::close(fd), void();
      left -= static_cast<std::size_t>(n);
    }
    std::string_view request_line = headers.substr(0, headers.find("\r\n"));
    std::string reply = kAnswer;
    if (g_clickhouse && request_line.find("version%28%29") != std::string_view::npos) {
      reply = answer("18.16.1\tEtc/UTC\t0\n");
    } else if (g_clickhouse && request_line.find("system.columns") != std::string_view::npos) {
      reply = answer(g_columns);
    }
    if (::write(fd, reply.data(), reply.size()) < 0) return ::close(fd), void();
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string_view(argv[1]) == "--clickhouse") {
    std::ifstream in(argv[2]);
    if (!in) return std::fprintf(stderr, "weir-discard-receiver: cannot read %s\n", argv[2]), 2;
    std::ostringstream text;
    text << in.rdbuf();
    g_columns = text.str();
    g_clickhouse = true;
  } else if (argc != 1) {
    return std::fprintf(stderr, "usage: weir-discard-receiver [--clickhouse COLUMNS.jsonl]\n"), 2;
  }
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof address;
  if (::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 || ::listen(listener, 64) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
    std::perror("weir-discard-receiver");
    return 1;
  }
  std::printf("%d\n", ntohs(address.sin_port));
  std::fflush(stdout);
  for (;;) {
    int fd = ::accept(listener, nullptr, nullptr);
    if (fd >= 0) std::thread(serve, fd).detach();
  }
}
