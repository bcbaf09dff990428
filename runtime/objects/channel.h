// A framed message channel over a unix stream socket; each message may carry file descriptors.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace mlp::rt::objects {

// Frame: 8-byte little-endian payload length, then the payload; fds ride on the frame's first bytes.
// Send and Recv are each serialized by their own lock, so one sender and one receiver thread can work at once.
// After Recv fails, the stream may be mid-frame: close the channel.
class Channel {
 public:
  static constexpr size_t kDefaultMaxMessage = 256ull << 20;
  static constexpr size_t kMaxFds = 64;

  // socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC).
  static bool Pair(Channel* a, Channel* b, std::string* error);

  explicit Channel(int fd = -1);  // takes ownership
  ~Channel();
  Channel(Channel&& other) noexcept;
  Channel& operator=(Channel&& other) noexcept;
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // Sends one message. The kernel duplicates the fds; the caller keeps its own. Never raises SIGPIPE.
  bool Send(std::string_view msg, const std::vector<int>& fds = {}, std::string* error = nullptr);
  // Blocks for one whole message. False on EOF (error says "closed") or error. Rejects frames longer than
  // max_message and more than kMaxFds fds. `fds` is replaced by the received fds, which the caller then owns (on
  // failure they are closed here; with fds == nullptr they are closed too).
  bool Recv(std::string* msg, std::vector<int>* fds, std::string* error);

  void set_max_message(size_t n) { max_message_ = n; }
  size_t max_message() const { return max_message_; }
  int fd() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release();  // gives up ownership of the fd
  void Close();
  // Wakes a Recv blocked in another thread (it sees EOF) without closing the fd under it.
  void Shutdown();

 private:
  int fd_ = -1;
  size_t max_message_ = kDefaultMaxMessage;
  std::unique_ptr<std::mutex> send_mu_ = std::make_unique<std::mutex>();
  std::unique_ptr<std::mutex> recv_mu_ = std::make_unique<std::mutex>();
};

}  // namespace mlp::rt::objects
