// A shared-memory byte region that can cross process boundaries as a file descriptor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace mlp::rt::objects {

// Owned through shared_ptr; reading is thread-safe. The fd stays owned by the Buffer (dup it to keep it longer).
class Buffer {
 public:
  // A new writable memfd of `size` bytes (zero-filled). Size 0 is allowed (no mapping, data() is null).
  static std::shared_ptr<Buffer> Create(size_t size, std::string* error);
  // Maps `size` bytes of `fd` read-only. Takes ownership of fd, also on failure (it is closed then).
  // The fd must be a regular file or memfd at least `size` bytes long.
  static std::shared_ptr<Buffer> FromFd(int fd, size_t size, std::string* error);
  // A new memfd buffer holding a copy of `bytes`.
  static std::shared_ptr<Buffer> Copy(std::string_view bytes, std::string* error);

  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  const uint8_t* data() const { return data_; }
  // Null for read-only buffers (those from FromFd).
  uint8_t* mutable_data() { return writable_ ? data_ : nullptr; }
  bool writable() const { return writable_; }
  size_t size() const { return size_; }
  int fd() const { return fd_; }
  std::string_view view() const { return {reinterpret_cast<const char*>(data_), size_}; }

 private:
  Buffer(int fd, uint8_t* data, size_t size, bool writable) : fd_(fd), data_(data), size_(size), writable_(writable) {}

  int fd_;
  uint8_t* data_;
  size_t size_;
  bool writable_;
};

}  // namespace mlp::rt::objects
