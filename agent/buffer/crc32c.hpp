// CRC-32C (Castagnoli, the iSCSI polynomial), from Intel's ISA-L (libisal), which picks the
// fastest kernel the CPU has (SSE4.2 crc32 / PCLMULQDQ) at run time.
#pragma once

#include <isa-l/crc.h>

#include <cstdint>
#include <string_view>

namespace weir::buffer {

// Continues a CRC-32C over `bytes`: start with crc32c({}) == 0 and feed pieces in order.
// ISA-L's crc32_iscsi works on the pre-inverted register without the final inversion, so
// both inversions are done here to give the standard value (crc32c("123456789") == 0xE3069283).
inline std::uint32_t crc32c(std::string_view bytes, std::uint32_t crc = 0) {
  auto* data = reinterpret_cast<unsigned char*>(const_cast<char*>(bytes.data()));
  return ~crc32_iscsi(data, static_cast<int>(bytes.size()), ~crc);
}

}  // namespace weir::buffer
