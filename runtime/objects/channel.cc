#include "runtime/objects/channel.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

namespace mlp::rt::objects {
namespace {

void SetError(std::string* error, const std::string& what) {
  if (error) *error = what;
}

std::string Errno(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

// Waits until the socket is ready, for fds that were handed to us in non-blocking mode.
void WaitFor(int fd, short events) {
  pollfd p{fd, events, 0};
  while (poll(&p, 1, -1) < 0 && errno == EINTR) {
  }
}

void CloseAll(std::vector<int>* fds) {
  for (int fd : *fds) close(fd);
  fds->clear();
}

// Largest single payload read, so a forged length does not allocate its whole size before any bytes arrive.
constexpr size_t kReadChunk = 16u << 20;

}  // namespace

bool Channel::Pair(Channel* a, Channel* b, std::string* error) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    SetError(error, Errno("socketpair"));
    return false;
  }
  *a = Channel(sv[0]);
  *b = Channel(sv[1]);
  return true;
}

Channel::Channel(int fd) : fd_(fd) {}

Channel::~Channel() { Close(); }

Channel::Channel(Channel&& other) noexcept : fd_(other.Release()), max_message_(other.max_message_) {}

Channel& Channel::operator=(Channel&& other) noexcept {
  if (this != &other) {
    Close();
    fd_ = other.Release();
    max_message_ = other.max_message_;
  }
  return *this;
}

int Channel::Release() {
  int fd = fd_;
  fd_ = -1;
  return fd;
}

void Channel::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

void Channel::Shutdown() {
  if (fd_ >= 0) shutdown(fd_, SHUT_RDWR);
}

bool Channel::Send(std::string_view msg, const std::vector<int>& fds, std::string* error) {
  if (fd_ < 0) {
    SetError(error, "channel is closed");
    return false;
  }
  if (fds.size() > kMaxFds) {
    SetError(error, "too many file descriptors: " + std::to_string(fds.size()) + " > " + std::to_string(kMaxFds));
    return false;
  }
  for (int f : fds) {
    if (f < 0) {
      SetError(error, "invalid file descriptor " + std::to_string(f));
      return false;
    }
  }
  uint8_t header[8];
  uint64_t len = msg.size();
  for (int i = 0; i < 8; ++i) header[i] = static_cast<uint8_t>(len >> (8 * i));

  alignas(cmsghdr) char control[CMSG_SPACE(kMaxFds * sizeof(int))];
  std::lock_guard lock(*send_mu_);
  size_t sent = 0;  // bytes of header + payload already written
  const size_t total = sizeof(header) + msg.size();
  bool fds_pending = !fds.empty();
  while (sent < total) {
    iovec iov[2];
    int niov = 0;
    if (sent < sizeof(header)) {
      iov[niov++] = {header + sent, sizeof(header) - sent};
      if (!msg.empty()) iov[niov++] = {const_cast<char*>(msg.data()), msg.size()};
    } else {
      size_t off = sent - sizeof(header);
      iov[niov++] = {const_cast<char*>(msg.data()) + off, msg.size() - off};
    }
    msghdr mh{};
    mh.msg_iov = iov;
    mh.msg_iovlen = static_cast<size_t>(niov);
    if (fds_pending) {
      std::memset(control, 0, sizeof(control));
      mh.msg_control = control;
      mh.msg_controllen = CMSG_SPACE(fds.size() * sizeof(int));
      cmsghdr* c = CMSG_FIRSTHDR(&mh);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
      std::memcpy(CMSG_DATA(c), fds.data(), fds.size() * sizeof(int));
    }
    ssize_t n = sendmsg(fd_, &mh, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        WaitFor(fd_, POLLOUT);
        continue;
      }
      SetError(error, Errno("sendmsg"));
      return false;
    }
    // Once any byte went out, the fds went with it.
    if (n > 0) fds_pending = false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

bool Channel::Recv(std::string* msg, std::vector<int>* fds, std::string* error) {
  msg->clear();
  if (fds) fds->clear();
  std::vector<int> got_fds;
  if (fd_ < 0) {
    SetError(error, "channel is closed");
    return false;
  }
  std::lock_guard lock(*recv_mu_);
  alignas(cmsghdr) char control[CMSG_SPACE(kMaxFds * sizeof(int))];

  // Receives exactly n bytes into p, collecting fds. Reading exactly up to the frame's end never touches the next
  // frame, so its fds are not picked up early.
  auto read_exact = [&](char* p, size_t n, bool at_frame_start) -> bool {
    size_t done = 0;
    while (done < n) {
      iovec iov{p + done, n - done};
      msghdr mh{};
      mh.msg_iov = &iov;
      mh.msg_iovlen = 1;
      mh.msg_control = control;
      mh.msg_controllen = sizeof(control);
      ssize_t r = recvmsg(fd_, &mh, MSG_CMSG_CLOEXEC);
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          WaitFor(fd_, POLLIN);
          continue;
        }
        SetError(error, Errno("recvmsg"));
        return false;
      }
      for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
          int f;
          std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
          got_fds.push_back(f);
        }
      }
      if (mh.msg_flags & MSG_CTRUNC) {
        SetError(error, "message carried more than " + std::to_string(kMaxFds) + " file descriptors");
        return false;
      }
      if (r == 0) {
        SetError(error, at_frame_start && done == 0 ? "channel closed by peer (EOF)"
                                                     : "channel closed by peer in the middle of a frame");
        return false;
      }
      done += static_cast<size_t>(r);
    }
    if (got_fds.size() > kMaxFds) {
      SetError(error, "message carried more than " + std::to_string(kMaxFds) + " file descriptors");
      return false;
    }
    return true;
  };

  uint8_t header[8];
  if (!read_exact(reinterpret_cast<char*>(header), sizeof(header), true)) {
    CloseAll(&got_fds);
    return false;
  }
  uint64_t len = 0;
  for (int i = 0; i < 8; ++i) len |= static_cast<uint64_t>(header[i]) << (8 * i);
  if (len > max_message_) {
    SetError(error, "frame of " + std::to_string(len) + " bytes exceeds the limit of " +
                        std::to_string(max_message_) + " bytes");
    CloseAll(&got_fds);
    return false;
  }
  size_t have = 0;
  while (have < len) {
    size_t want = std::min<size_t>(len - have, kReadChunk);
    msg->resize(have + want);
    if (!read_exact(msg->data() + have, want, false)) {
      msg->clear();
      CloseAll(&got_fds);
      return false;
    }
    have += want;
  }
  if (fds) {
    *fds = std::move(got_fds);
  } else {
    CloseAll(&got_fds);  // the caller does not want them; do not leak them
  }
  return true;
}

}  // namespace mlp::rt::objects
