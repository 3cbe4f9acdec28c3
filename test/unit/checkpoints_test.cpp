// The file source's checkpoint slots: saves alternate, a torn slot falls back to the other.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "plugins/sources/file/checkpoints.hpp"

using weir::plugins::Checkpoints;

namespace {

std::string temp_dir() {
  char pattern[] = "/tmp/weir-checkpoints-XXXXXX";
  REQUIRE(::mkdtemp(pattern) != nullptr);
  return pattern;
}

std::uint64_t offset_of(const std::string& dir, const std::string& fingerprint) {
  Checkpoints loaded(dir);
  REQUIRE(loaded.load(0).ok());
  bool found = false;
  std::uint64_t offset = loaded.offset(fingerprint, "no such fingerprint", found);
  return found ? offset : ~0ull;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST_CASE("checkpoints: saved offsets load back, newest slot wins", "[file][checkpoints]") {
  std::string dir = temp_dir();
  {
    Checkpoints store(dir);
    REQUIRE(store.load(0).ok());
    store.set("abc", 100, "/var/log/a.log", 0);
    store.set("def\"\\", 7, "/var/log/b \"quoted\".log", 0);
    REQUIRE(store.save().ok());
    store.set("abc", 250, "/var/log/a.log", 0);
    REQUIRE(store.save().ok());
  }
  CHECK(offset_of(dir, "abc") == 250);
  CHECK(offset_of(dir, "def\"\\") == 7);
  CHECK(offset_of(dir, "missing") == ~0ull);
  // The two saves went to different slots: the older one still holds 100.
  CHECK(slurp(dir + "/checkpoints.1").find("\"offset\":100") != std::string::npos);
  CHECK(slurp(dir + "/checkpoints.0").find("\"offset\":250") != std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST_CASE("checkpoints: a torn newest slot falls back to the previous save", "[file][checkpoints]") {
  std::string dir = temp_dir();
  {
    Checkpoints store(dir);
    REQUIRE(store.load(0).ok());
    store.set("abc", 100, "a.log", 0);
    REQUIRE(store.save().ok());  // sequence 1, slot 1
    store.set("abc", 200, "a.log", 0);
    REQUIRE(store.save().ok());  // sequence 2, slot 0
  }
  // Tear slot 0: keep its header, lose the end of its body.
  std::string text = slurp(dir + "/checkpoints.0");
  REQUIRE(text.size() > 30);
  std::filesystem::resize_file(dir + "/checkpoints.0", text.size() - 10);
  CHECK(offset_of(dir, "abc") == 100);

  // A save after loading continues the sequence and lands in the torn slot, which wins again.
  {
    Checkpoints store(dir);
    REQUIRE(store.load(0).ok());
    store.set("abc", 300, "a.log", 0);
    REQUIRE(store.save().ok());
  }
  CHECK(offset_of(dir, "abc") == 300);
  std::filesystem::remove_all(dir);
}

TEST_CASE("checkpoints: a shorter save pads the slot instead of truncating it", "[file][checkpoints]") {
  std::string dir = temp_dir();
  Checkpoints store(dir);
  REQUIRE(store.load(0).ok());
  store.set("b", 1234567890123, "/a/long/path/name.log", 0);
  REQUIRE(store.save().ok());  // sequence 1, slot 1
  auto long_size = std::filesystem::file_size(dir + "/checkpoints.1");
  REQUIRE(store.save().ok());  // not dirty: no write, no new sequence
  store.set("b", 5, "b", 0);
  REQUIRE(store.save().ok());  // sequence 2, slot 0
  store.set("b", 4, "b", 0);
  REQUIRE(store.save().ok());  // sequence 3, slot 1: shorter text, same size
  CHECK(std::filesystem::file_size(dir + "/checkpoints.1") == long_size);
  CHECK(std::filesystem::file_size(dir + "/checkpoints.0") < long_size);
  CHECK(offset_of(dir, "b") == 4);
  std::filesystem::remove_all(dir);
}

TEST_CASE("checkpoints: both slots damaged is an error that says what to do", "[file][checkpoints]") {
  std::string dir = temp_dir();
  std::ofstream(dir + "/checkpoints.0") << "garbage";
  std::ofstream(dir + "/checkpoints.1") << "weir-checkpoints v1 5 10 deadbeef\n{}";
  Checkpoints store(dir);
  auto loaded = store.load(0);
  REQUIRE_FALSE(loaded.ok());
  CHECK_THAT(loaded.error().message(), Catch::Contains("damaged") && Catch::Contains("move them away"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("checkpoints: keyed by device, inode and fingerprint; an old fingerprint-only key is taken over once",
          "[file][checkpoints]") {
  std::string dir = temp_dir();
  std::string a = Checkpoints::key(2049, 11, "f00d"), b = Checkpoints::key(2049, 12, "f00d");
  CHECK(a == "2049:11:f00d");
  {
    Checkpoints store(dir);
    REQUIRE(store.load(0).ok());
    store.set("f00d", 500, "old.log", 0);  // what an older weir saved
    REQUIRE(store.save().ok());
  }
  Checkpoints store(dir);
  REQUIRE(store.load(0).ok());
  bool found = false;
  CHECK(store.offset(a, "f00d", found) == 500);  // the first file with that first line takes it over
  CHECK(found);
  CHECK(store.offset(b, "f00d", found) == 0);  // a second file with the same first line starts fresh
  CHECK_FALSE(found);
  store.set(b, 42, "b.log", 0);
  CHECK(store.offset(a, "f00d", found) == 500);
  CHECK(store.offset(b, "f00d", found) == 42);
  CHECK(store.size() == 2);
  std::filesystem::remove_all(dir);
}

TEST_CASE("checkpoints: entries not seen for the retention are pruned, seen ones kept, 'seen' saved",
          "[file][checkpoints]") {
  std::string dir = temp_dir();
  const std::int64_t hour = 3'600'000'000'000;
  {
    Checkpoints store(dir);
    REQUIRE(store.load(0).ok());
    store.set("1:1:gone", 10, "gone.log", 0);
    store.set("1:2:here", 20, "here.log", 0);
    store.seen("1:2:here", 100 * hour, hour);
    CHECK(store.prune(100 * hour, 24 * hour) == 1);
    REQUIRE(store.save().ok());
  }
  CHECK(offset_of(dir, "1:1:gone") == ~0ull);
  CHECK(offset_of(dir, "1:2:here") == 20);
  // Loaded, the kept entry's `seen` is the saved one: pruned once the retention passes it.
  Checkpoints store(dir);
  REQUIRE(store.load(0).ok());
  CHECK(store.prune(110 * hour, 24 * hour) == 0);
  CHECK(store.prune(125 * hour, 24 * hour) == 1);
  std::filesystem::remove_all(dir);
}
