// Errors as values: every fallible call at a component boundary returns Result<T> or Status.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace weir {

// A place in a configuration file, 1-based, for `file:line:col: error: ...` messages.
struct SourceLocation {
  std::string file;
  int line = 0;
  int column = 0;

  bool known() const { return line > 0; }
  std::string to_string() const;  // "file:line:col" or "file" or ""
};

class Error {
 public:
  Error() = default;
  explicit Error(std::string message) : message_(std::move(message)) {}
  Error(std::string message, SourceLocation where) : message_(std::move(message)), where_(std::move(where)) {}

  const std::string& message() const { return message_; }
  const SourceLocation& where() const { return where_; }
  Error& at(SourceLocation where) & {
    if (!where_.known()) where_ = std::move(where);
    return *this;
  }
  Error&& at(SourceLocation where) && { return std::move(at(std::move(where))); }

  // "file:line:col: error: message" (the location part only when known).
  std::string to_string(std::string_view severity = "error") const;

 private:
  std::string message_;
  SourceLocation where_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : state_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(state_); }
  T&& value() && { return std::get<0>(std::move(state_)); }
  const T& value() const& { return std::get<0>(state_); }
  const Error& error() const { return std::get<1>(state_); }
  T* operator->() { return &value(); }
  T& operator*() & { return value(); }

 private:
  std::variant<T, Error> state_;
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)) {}  // NOLINT: implicit by design
  static Status success() { return {}; }

  bool ok() const { return !error_.has_value(); }
  explicit operator bool() const { return ok(); }
  const Error& error() const { return *error_; }

 private:
  std::optional<Error> error_;
};

}  // namespace weir
