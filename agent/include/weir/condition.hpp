// weir's condition language, compiled once at load, evaluated per event (filter, route).
//
//   .scope == "draw:object" and (.duration > 100 or not exists(.job_id))
//   .scope in ["save:job", "load:job"]
//   starts_with(.scope, "draw:")   ends_with(.x, "y")   contains(.payload, "error")
//   matches(.user_email, "@example\.org$")             (RE2 syntax)
//
// Fields are `.dotted.paths` (a leading dot; bare names work too unless they are keywords);
// literals are "strings" or 'strings', numbers, true, false, null. Operators: == != < <= > >=,
// in [list], and, or, not, parentheses. A missing field is null. == and != compare numbers
// by value (1 == 1.0); < <= > >= need two numbers or two strings, else they are false.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "weir/event.hpp"
#include "weir/result.hpp"

namespace weir {

class Condition {
 public:
  // Errors name the position: "offset 12: expected an operand, got ')'".
  static Result<Condition> compile(std::string_view text);

  Condition(Condition&&) noexcept;
  Condition& operator=(Condition&&) noexcept;
  ~Condition();

  bool matches(const Event& event) const;
  const std::string& text() const;

 private:
  struct Program;
  explicit Condition(std::unique_ptr<Program> program);
  std::unique_ptr<Program> program_;
};

}  // namespace weir
