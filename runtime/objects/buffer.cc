#include "runtime/objects/buffer.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace mlp::rt::objects {
namespace {

void SetError(std::string* error, const std::string& what) {
  if (error) *error = what;
}

std::string Errno(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

}  // namespace

std::shared_ptr<Buffer> Buffer::Create(size_t size, std::string* error) {
  int fd = memfd_create("mlp-object", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) {
    SetError(error, Errno("memfd_create"));
    return nullptr;
  }
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    SetError(error, Errno("ftruncate"));
    close(fd);
    return nullptr;
  }
  // A receiver maps the fd; if the size could change later, its reads past the new end would raise SIGBUS.
  // Contents stay writable so the producer can fill the buffer after creating it.
  (void)fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  uint8_t* data = nullptr;
  if (size > 0) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      SetError(error, Errno("mmap"));
      close(fd);
      return nullptr;
    }
    data = static_cast<uint8_t*>(p);
  }
  return std::shared_ptr<Buffer>(new Buffer(fd, data, size, true));
}

std::shared_ptr<Buffer> Buffer::FromFd(int fd, size_t size, std::string* error) {
  if (fd < 0) {
    SetError(error, "invalid file descriptor " + std::to_string(fd));
    return nullptr;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    SetError(error, Errno("fstat"));
    close(fd);
    return nullptr;
  }
  if (!S_ISREG(st.st_mode)) {
    SetError(error, "file descriptor is not a regular file or memfd");
    close(fd);
    return nullptr;
  }
  if (st.st_size < 0 || static_cast<uint64_t>(st.st_size) < size) {
    SetError(error, "file descriptor holds " + std::to_string(st.st_size) + " bytes, expected at least " +
                        std::to_string(size));
    close(fd);
    return nullptr;
  }
  // Best effort against a sender shrinking the memfd under our mapping (SIGBUS); fails harmlessly on plain files
  // and on memfds that do not allow sealing.
  (void)fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK);
  uint8_t* data = nullptr;
  if (size > 0) {
    void* p = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      SetError(error, Errno("mmap"));
      close(fd);
      return nullptr;
    }
    data = static_cast<uint8_t*>(p);
  }
  return std::shared_ptr<Buffer>(new Buffer(fd, data, size, false));
}

std::shared_ptr<Buffer> Buffer::Copy(std::string_view bytes, std::string* error) {
  auto buf = Create(bytes.size(), error);
  if (buf && !bytes.empty()) std::memcpy(buf->mutable_data(), bytes.data(), bytes.size());
  return buf;
}

Buffer::~Buffer() {
  if (data_) munmap(data_, size_);
  if (fd_ >= 0) close(fd_);
}

}  // namespace mlp::rt::objects
