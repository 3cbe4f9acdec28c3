// Logging to stderr: "2026-01-01T12:00:00.123Z INFO  weir: message". Components log with
// their name as the target so ops can grep one component.
#pragma once

#include <fmt/format.h>

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

}  // namespace weir::log
