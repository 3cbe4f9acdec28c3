#include "weir/arena.hpp"

#include <algorithm>
#include <cstdint>

namespace weir {

void* Arena::allocate_slow(std::size_t bytes, std::size_t align) {
  // Blocks double up to 1 MiB so small batches stay small and big ones take few mallocs.
  std::size_t block = std::max(next_block_bytes_, bytes + align);
  next_block_bytes_ = std::min<std::size_t>(next_block_bytes_ * 2, 1 << 20);
  blocks_.push_back(std::make_unique_for_overwrite<char[]>(block));
  reserved_ += block;
  cursor_ = blocks_.back().get();
  end_ = cursor_ + block;
  auto at = (reinterpret_cast<std::uintptr_t>(cursor_) + (align - 1)) & ~(std::uintptr_t(align) - 1);
  cursor_ = reinterpret_cast<char*>(at + bytes);
  return reinterpret_cast<void*>(at);
}

}  // namespace weir
