// The dead-letter file's writer thread: records land in order, after_written() runs once
// they are in the file (and not before), a full queue refuses instead of waiting, and a
// file that cannot be written fails the callbacks that cover it.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/dead_letter.hpp"

using weir::runtime::DeadLetterFile;

namespace {

std::string temp_dir() {
  char pattern[] = "/tmp/weir-dead-letter-XXXXXX";
  REQUIRE(::mkdtemp(pattern) != nullptr);
  return pattern;
}

std::vector<std::string> lines_of(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Runs the loop until `done` or about 5 s.
template <typename Done>
void run_until(uv_loop_t* loop, Done done) {
  for (int i = 0; i < 5000 && !done(); ++i) {
    uv_run(loop, UV_RUN_NOWAIT);
    ::usleep(1000);
  }
}

}  // namespace

TEST_CASE("dead-letter file: records in order, and after_written once they are in the file") {
  std::string dir = temp_dir();
  std::string path = dir + "/letters.ndjson";
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    DeadLetterFile file(path, 1 << 30);
    REQUIRE(file.attach(&loop).ok());
    bool nothing_pending = false;
    file.after_written([&](bool ok) { nothing_pending = ok; });
    CHECK(nothing_pending);  // nothing queued: at once

    for (int i = 0; i < 1000; ++i) REQUIRE(file.write_raw("in", "stdin", "line " + std::to_string(i), i + 1, "bad"));
    int called = 0;
    bool written = false;
    std::size_t lines_then = 0;
    file.after_written([&](bool ok) {
      ++called;
      written = ok;
      lines_then = lines_of(path).size();
    });
    run_until(&loop, [&] { return called > 0; });
    REQUIRE(called == 1);
    CHECK(written);
    CHECK(lines_then == 1000);  // every record before the callback is in the file
    CHECK(file.written() == 1000);
    CHECK_FALSE(file.pending());
    file.detach();
  }
  auto lines = lines_of(path);
  REQUIRE(lines.size() == 1000);
  for (int i : {0, 1, 998, 999}) {
    CHECK(lines[i].find("\"line\":" + std::to_string(i + 1) + ",\"raw\":\"line " + std::to_string(i) + "\"") !=
          std::string::npos);
  }
  uv_run(&loop, UV_RUN_NOWAIT);  // the async handle's close callback frees it
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("dead-letter file: a full queue refuses at once, and the writer catches up") {
  // The file is a FIFO nobody reads yet: the writer blocks opening it, as on a stalled disk.
  std::string dir = temp_dir();
  std::string path = dir + "/stalled";
  REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
  DeadLetterFile file(path, 1 << 30, 4096);
  std::size_t queued = 0;
  while (file.write_raw("in", "http_server", std::string(100, 'x'), 0, "not JSON")) ++queued;
  CHECK(queued > 10);
  CHECK(queued < 40);  // about 4 KiB of records of about 200 bytes
  CHECK(file.not_queued() == 1);
  CHECK(file.pending());

  // A reader appears: everything queued reaches it, and the queue takes records again.
  int reader = ::open(path.c_str(), O_RDONLY);
  REQUIRE(reader >= 0);
  std::string got;
  char buffer[65536];
  while (static_cast<std::size_t>(std::count(got.begin(), got.end(), '\n')) < queued) {
    ssize_t n = ::read(reader, buffer, sizeof buffer);
    REQUIRE(n > 0);
    got.append(buffer, static_cast<std::size_t>(n));
  }
  file.flush();
  CHECK(file.written() == queued);
  CHECK(file.write_raw("in", "http_server", "again", 0, "not JSON"));
  file.flush();
  ssize_t n = ::read(reader, buffer, sizeof buffer);
  REQUIRE(n > 0);
  CHECK(std::string(buffer, static_cast<std::size_t>(n)).find("\"raw\":\"again\"") != std::string::npos);
  ::close(reader);
}

TEST_CASE("dead-letter file: a write that fails fails the callbacks covering it, and the next file works") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    DeadLetterFile full("/dev/full", 1 << 30);
    REQUIRE(full.attach(&loop).ok());
    REQUIRE(full.write_raw("in", "stdin", "x", 1, "bad"));
    std::vector<bool> results;
    full.after_written([&](bool ok) { results.push_back(ok); });
    full.flush();  // runs the callbacks due
    CHECK(results == std::vector<bool>{false});
    CHECK(full.written() == 0);
    full.detach();
  }
  uv_run(&loop, UV_RUN_NOWAIT);  // the async handle's close callback frees it
  CHECK(uv_loop_close(&loop) == 0);
}
