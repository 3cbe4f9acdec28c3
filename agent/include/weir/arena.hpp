// A bump allocator owned by a batch: every string, array and object of the batch's events
// lives here and is freed at once when the last batch holding the arena goes away.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

namespace weir {

class Arena {
 public:
  explicit Arena(std::size_t first_block_bytes = 16 * 1024) : next_block_bytes_(first_block_bytes) {}
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  void* allocate(std::size_t bytes, std::size_t align = alignof(std::max_align_t)) {
    auto at = (reinterpret_cast<std::uintptr_t>(cursor_) + (align - 1)) & ~(std::uintptr_t(align) - 1);
    if (cursor_ == nullptr || at + bytes > reinterpret_cast<std::uintptr_t>(end_)) return allocate_slow(bytes, align);
    cursor_ = reinterpret_cast<char*>(at + bytes);
    return reinterpret_cast<void*>(at);
  }

  template <typename T>
  T* allocate_array(std::size_t count) {
    return static_cast<T*>(allocate(sizeof(T) * (count ? count : 1), alignof(T)));
  }

  // Copies `text` into the arena; the view stays valid as long as the arena.
  std::string_view copy(std::string_view text) {
    if (text.empty()) return {};
    auto* dst = static_cast<char*>(allocate(text.size(), 1));
    std::memcpy(dst, text.data(), text.size());
    return {dst, text.size()};
  }

  std::size_t bytes_reserved() const { return reserved_; }

 private:
  void* allocate_slow(std::size_t bytes, std::size_t align);

  struct Block {
    std::unique_ptr<char[]> memory;
    std::size_t size;
  };
  std::vector<Block> blocks_;
  char* cursor_ = nullptr;
  char* end_ = nullptr;
  std::size_t next_block_bytes_;
  std::size_t reserved_ = 0;
};

}  // namespace weir
