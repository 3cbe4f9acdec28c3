// A growable byte buffer for encoders: append without bounds checks after ensure().
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <string_view>
#include <utility>

namespace weir {

class ByteBuffer {
 public:
  ByteBuffer() = default;
  explicit ByteBuffer(std::size_t capacity) { reserve(capacity); }
  // A moved-from buffer is empty, with no capacity (the defaults kept its size and capacity
  // beside a null pointer, for the next append to write through).
  ByteBuffer(ByteBuffer&& other) noexcept
      : data_(std::move(other.data_)), size_(std::exchange(other.size_, 0)), capacity_(std::exchange(other.capacity_, 0)) {}
  ByteBuffer& operator=(ByteBuffer&& other) noexcept {
    data_ = std::move(other.data_);
    size_ = std::exchange(other.size_, 0);
    capacity_ = std::exchange(other.capacity_, 0);
    return *this;
  }
  std::size_t capacity() const { return capacity_; }

  const char* data() const { return data_.get(); }
  char* data() { return data_.get(); }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::string_view view() const { return {data_.get(), size_}; }
  void clear() { size_ = 0; }
  void truncate(std::size_t size) { if (size < size_) size_ = size; }

  void reserve(std::size_t capacity) {
    if (capacity <= capacity_) return;
    std::size_t grown = capacity_ ? capacity_ * 2 : 256;
    if (grown < capacity) grown = capacity;
    auto bigger = std::make_unique_for_overwrite<char[]>(grown);
    if (size_) std::memcpy(bigger.get(), data_.get(), size_);
    data_ = std::move(bigger);
    capacity_ = grown;
  }
  // Makes room for `extra` more bytes and returns where they go; commit() what was used.
  char* ensure(std::size_t extra) {
    if (size_ + extra > capacity_) reserve(size_ + extra);
    return data_.get() + size_;
  }
  void commit(std::size_t used) { size_ += used; }

  void append(std::string_view text) {
    if (text.empty()) return;  // an empty view may have a null data()
    std::memcpy(ensure(text.size()), text.data(), text.size());
    size_ += text.size();
  }
  void push_back(char c) {
    *ensure(1) = c;
    ++size_;
  }

 private:
  std::unique_ptr<char[]> data_;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

}  // namespace weir
