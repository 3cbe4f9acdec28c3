#include "weir/ids.hpp"

#include <algorithm>

namespace weir {

bool valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > 200) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == ':' || c == '+' || c == '/' || c == '=' || c == '@' || c == '-';
  });
}

UuidGenerator::UuidGenerator() {
  std::random_device seed;
  std::seed_seq sequence{seed(), seed(), seed(), seed()};
  random_.seed(sequence);
}

std::string UuidGenerator::next() {
  std::uint64_t high = random_(), low = random_();
  high = (high & 0xFFFFFFFFFFFF0FFFULL) | 0x0000000000004000ULL;  // version 4
  low = (low & 0x3FFFFFFFFFFFFFFFULL) | 0x8000000000000000ULL;    // variant 10xx
  static constexpr char hex[] = "0123456789abcdef";
  std::string out(36, '-');
  int at = 0;
  for (int i = 0; i < 32; ++i) {
    if (at == 8 || at == 13 || at == 18 || at == 23) ++at;
    std::uint64_t word = i < 16 ? high : low;
    int shift = 60 - 4 * (i % 16);
    out[at++] = hex[(word >> shift) & 0xF];
  }
  return out;
}

}  // namespace weir
