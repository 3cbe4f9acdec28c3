#include "weir/ids.hpp"

#include <array>
#include <cstring>

#include <algorithm>

namespace weir {

bool valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > 200) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == ':' || c == '+' || c == '/' || c == '=' || c == '@' || c == '-';
  });
}

std::string UuidGenerator::next() {
  char out[36];
  next_into(out);
  return std::string(out, 36);
}

namespace {

// "00".."ff" for every byte value: two digits per table load.
constexpr auto kHexPairs = [] {
  std::array<char, 512> table{};
  constexpr char digits[] = "0123456789abcdef";
  for (int i = 0; i < 256; ++i) {
    table[2 * i] = digits[i >> 4];
    table[2 * i + 1] = digits[i & 15];
  }
  return table;
}();

// The 8 bytes of `word`, most significant first, as 16 hex digits at `out`.
inline void put_hex(std::uint64_t word, char* out) {
  for (int i = 0; i < 8; ++i) std::memcpy(out + 2 * i, &kHexPairs[2 * ((word >> (56 - 8 * i)) & 0xFF)], 2);
}

}  // namespace

void UuidGenerator::next_into(char* out) {
  std::uint64_t high = random_.next(), low = random_.next();
  high = (high & 0xFFFFFFFFFFFF0FFFULL) | 0x0000000000004000ULL;  // version 4
  low = (low & 0x3FFFFFFFFFFFFFFFULL) | 0x8000000000000000ULL;    // variant 10xx
  // 32 digits, then moved apart into 8-4-4-4-12 form.
  char digits[32];
  put_hex(high, digits);
  put_hex(low, digits + 16);
  std::memcpy(out, digits, 8);
  out[8] = '-';
  std::memcpy(out + 9, digits + 8, 4);
  out[13] = '-';
  std::memcpy(out + 14, digits + 12, 4);
  out[18] = '-';
  std::memcpy(out + 19, digits + 16, 4);
  out[23] = '-';
  std::memcpy(out + 24, digits + 20, 12);
}

}  // namespace weir
