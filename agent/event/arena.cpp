#include "weir/arena.hpp"

#include <algorithm>
#include <cstdint>
#include <mutex>

namespace weir {
namespace {

// Blocks of freed arenas, kept for the next arenas. Batches come and go thousands of times
// a second; giving their blocks back to malloc, which gives large ones back to the kernel,
// costs a page fault per 4 KiB every time the memory is touched again (measured at several
// percent of a transform pipeline). One pool for all threads: batches are often decoded on
// the thread pool and freed on the loop, so a pool per thread would only ever fill on one
// side. A block is taken or given a few hundred times a second, so a mutex costs nothing.
// Only the standard block sizes are kept, and no more than kPoolBytes.
struct BlockPool {
  static constexpr std::size_t kPoolBytes = 32 << 20;
  std::mutex mutex;
  std::vector<std::pair<std::size_t, std::unique_ptr<char[]>>> blocks;
  std::size_t bytes = 0;

  std::unique_ptr<char[]> take(std::size_t size) {
    {
      std::lock_guard lock(mutex);
      for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) {
        if (it->first == size) {
          std::unique_ptr<char[]> block = std::move(it->second);
          blocks.erase(std::next(it).base());
          bytes -= size;
          return block;
        }
      }
    }
    return std::make_unique_for_overwrite<char[]>(size);
  }

  void give(std::size_t size, std::unique_ptr<char[]> block) {
    std::lock_guard lock(mutex);
    if (bytes + size > kPoolBytes) return;  // freed here
    bytes += size;
    blocks.emplace_back(size, std::move(block));
  }
};

BlockPool& pool() {
  static BlockPool* shared = new BlockPool;  // never destroyed: arenas may die after main()
  return *shared;
}

constexpr std::size_t kMaxBlock = 1 << 20;

bool standard_size(std::size_t size) { return size >= 16 * 1024 && size <= kMaxBlock && (size & (size - 1)) == 0; }

}  // namespace

Arena::~Arena() {
  for (Block& block : blocks_) {
    if (standard_size(block.size)) pool().give(block.size, std::move(block.memory));
  }
}

void* Arena::allocate_slow(std::size_t bytes, std::size_t align) {
  // Blocks double up to 1 MiB so small batches stay small and big ones take few mallocs.
  std::size_t block = std::max(next_block_bytes_, bytes + align);
  next_block_bytes_ = std::min<std::size_t>(next_block_bytes_ * 2, kMaxBlock);
  blocks_.push_back(Block{standard_size(block) ? pool().take(block) : std::make_unique_for_overwrite<char[]>(block), block});
  reserved_ += block;
  cursor_ = blocks_.back().memory.get();
  end_ = cursor_ + block;
  auto at = (reinterpret_cast<std::uintptr_t>(cursor_) + (align - 1)) & ~(std::uintptr_t(align) - 1);
  cursor_ = reinterpret_cast<char*>(at + bytes);
  return reinterpret_cast<void*>(at);
}

}  // namespace weir
