// Logging to stderr: "2026-01-01T12:00:00.123Z INFO  weir: message". Components log with
// their name as the target so ops can grep one component.
#pragma once

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

namespace weir::log {

enum class Level { Trace = 0, Debug = 1, Info = 2, Warn = 3, Error = 4, Off = 5 };

void set_level(Level level);
Level level();
bool parse_level(std::string_view text, Level& out);
void write(Level level, std::string_view target, std::string_view message);

template <typename... Args>
void emit(Level lvl, std::string_view target, fmt::format_string<Args...> format, Args&&... args) {
  if (lvl < level()) return;
  write(lvl, target, fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void debug(std::string_view target, fmt::format_string<Args...> f, Args&&... a) { emit(Level::Debug, target, f, std::forward<Args>(a)...); }
template <typename... Args>
void info(std::string_view target, fmt::format_string<Args...> f, Args&&... a) { emit(Level::Info, target, f, std::forward<Args>(a)...); }
template <typename... Args>
void warn(std::string_view target, fmt::format_string<Args...> f, Args&&... a) { emit(Level::Warn, target, f, std::forward<Args>(a)...); }
template <typename... Args>
void error(std::string_view target, fmt::format_string<Args...> f, Args&&... a) { emit(Level::Error, target, f, std::forward<Args>(a)...); }

// A line that may come in a flood (refused connections, a plugin failing on every batch):
// let through at most once per `interval`, with the count of those held back meanwhile.
// Log lines only, never anything that reaches an event: the steady clock is fine here.
class Throttle {
 public:
  explicit Throttle(std::chrono::milliseconds interval) : interval_(interval) {}
  // When this occurrence may be logged: how many were held back since the last one that was.
  std::optional<std::uint64_t> pass() {
    auto now = std::chrono::steady_clock::now();
    if (logged_ && now - last_ < interval_) {
      ++held_back_;
      return std::nullopt;
    }
    logged_ = true;
    last_ = now;
    std::uint64_t held = held_back_;
    held_back_ = 0;
    return held;
  }

 private:
  std::chrono::milliseconds interval_;
  std::chrono::steady_clock::time_point last_{};
  bool logged_ = false;
  std::uint64_t held_back_ = 0;
};

}  // namespace weir::log
