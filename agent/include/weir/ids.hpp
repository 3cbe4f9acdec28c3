// Request ids: the check for an incoming X-Request-Id worth keeping, and fresh UUIDv4s.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace weir {

// 1..200 characters of [A-Za-z0-9._:+/=@-]: what proxies (nginx, Envoy, Heroku) send,
// and nothing that could break a log line or a header.
bool valid_request_id(std::string_view id);

// A random (version 4, RFC 4122 variant) UUID in lower-case 8-4-4-4-12 form.
class UuidGenerator {
 public:
  UuidGenerator();
  std::string next();
  // Writes the 36 characters into `out` (no allocation).
  void next_into(char* out);

 private:
  std::uint64_t next64();
  std::uint64_t state_[4];  // xoshiro256**: fast, and ids need uniqueness, not secrecy
};

}  // namespace weir
