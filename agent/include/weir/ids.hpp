// Request ids: the check for an incoming X-Request-Id worth keeping, and fresh UUIDv4s.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "weir/clock.hpp"

namespace weir {

// 1..200 characters of [A-Za-z0-9._:+/=@-]: what proxies (nginx, Envoy, Heroku) send,
// and nothing that could break a log line or a header.
bool valid_request_id(std::string_view id);

// Random (version 4, RFC 4122 variant) UUIDs in lower-case 8-4-4-4-12 form, from a seed
// (a component's: ctx.random().next() at start), so the same seed gives the same ids.
class UuidGenerator {
 public:
  explicit UuidGenerator(std::uint64_t seed = 0) : random_(seed) {}
  void reseed(std::uint64_t seed) { random_.reseed(seed); }
  std::string next();
  // Writes the 36 characters into `out` (no allocation).
  void next_into(char* out);

 private:
  Random random_;
};

}  // namespace weir
