#include "weir/ids.hpp"

#include <algorithm>
#include <random>

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
  for (auto& word : state_) word = (static_cast<std::uint64_t>(seed()) << 32) ^ seed();
  if ((state_[0] | state_[1] | state_[2] | state_[3]) == 0) state_[0] = 1;
}

std::uint64_t UuidGenerator::next64() {
  auto rotl = [](std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
  std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
  std::uint64_t t = state_[1] << 17;
  state_[2] ^= state_[0];
  state_[3] ^= state_[1];
  state_[1] ^= state_[2];
  state_[0] ^= state_[3];
  state_[2] ^= t;
  state_[3] = rotl(state_[3], 45);
  return result;
}

std::string UuidGenerator::next() {
  char out[36];
  next_into(out);
  return std::string(out, 36);
}

void UuidGenerator::next_into(char* out) {
  std::uint64_t high = next64(), low = next64();
  high = (high & 0xFFFFFFFFFFFF0FFFULL) | 0x0000000000004000ULL;  // version 4
  low = (low & 0x3FFFFFFFFFFFFFFFULL) | 0x8000000000000000ULL;    // variant 10xx
  static constexpr char hex[] = "0123456789abcdef";
  // Where each of the 32 hex digits goes in 8-4-4-4-12 form.
  static constexpr unsigned char at[32] = {0,  1,  2,  3,  4,  5,  6,  7,  9,  10, 11, 12, 14, 15, 16, 17,
                                           19, 20, 21, 22, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35};
  out[8] = out[13] = out[18] = out[23] = '-';
  for (int i = 0; i < 16; ++i) {
    out[at[i]] = hex[(high >> (60 - 4 * i)) & 0xF];
    out[at[16 + i]] = hex[(low >> (60 - 4 * i)) & 0xF];
  }
}

}  // namespace weir
