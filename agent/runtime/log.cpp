#include "weir/log.hpp"

#include <atomic>
#include <cstdio>
#include <mutex>

#include "weir/buffer.hpp"
#include "weir/time.hpp"

namespace weir::log {

namespace {
std::atomic<Level> g_level{Level::Info};
std::mutex g_write;
}  // namespace

void set_level(Level level) { g_level.store(level); }
Level level() { return g_level.load(std::memory_order_relaxed); }

bool parse_level(std::string_view text, Level& out) {
  static constexpr std::pair<std::string_view, Level> names[] = {
      {"trace", Level::Trace}, {"debug", Level::Debug}, {"info", Level::Info},
      {"warn", Level::Warn},   {"error", Level::Error}, {"off", Level::Off}};
  for (auto [name, value] : names) {
    if (name == text) {
      out = value;
      return true;
    }
  }
  return false;
}

void write(Level lvl, std::string_view target, std::string_view message) {
  static constexpr std::string_view labels[] = {"TRACE", "DEBUG", "INFO ", "WARN ", "ERROR", "OFF  "};
  ByteBuffer line(128 + message.size());
  format_iso8601_ms(wall_clock_now(), line);
  line.push_back(' ');
  line.append(labels[static_cast<int>(lvl)]);
  line.push_back(' ');
  line.append(target);
  line.append(": ");
  line.append(message);
  line.push_back('\n');
  std::lock_guard lock(g_write);
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace weir::log
