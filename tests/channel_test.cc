// The framed unix-socket channel: message boundaries, large frames, fd passing, EOF and hostile input.
#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "runtime/objects/buffer.h"
#include "runtime/objects/channel.h"

namespace mlp::rt::objects {
namespace {

std::string Pattern(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

int OpenFdCount() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
  closedir(d);
  return n - 1;  // the directory's own fd
}

std::string Header(uint64_t len) {
  std::string h(8, '\0');
  for (int i = 0; i < 8; ++i) h[i] = static_cast<char>(len >> (8 * i));
  return h;
}

void WriteRaw(int fd, const std::string& bytes) { ASSERT_EQ(write(fd, bytes.data(), bytes.size()), (ssize_t)bytes.size()); }

class ChannelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string err;
    ASSERT_TRUE(Channel::Pair(&a_, &b_, &err)) << err;
  }
  Channel a_, b_;
};

TEST_F(ChannelTest, ManyMessagesKeepTheirBoundariesAndOrder) {
  constexpr int kCount = 2000;
  std::thread sender([&] {
    for (int i = 0; i < kCount; ++i) ASSERT_TRUE(a_.Send(Pattern(i % 300, i)));
  });
  std::string msg, err;
  std::vector<int> fds;
  for (int i = 0; i < kCount; ++i) {
    ASSERT_TRUE(b_.Recv(&msg, &fds, &err)) << err;
    ASSERT_EQ(msg, Pattern(i % 300, i)) << i;
    EXPECT_TRUE(fds.empty());
  }
  sender.join();
}

TEST_F(ChannelTest, ConcurrentSendersDoNotInterleaveFrames) {
  std::vector<std::thread> senders;
  for (int t = 0; t < 4; ++t) {
    senders.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) ASSERT_TRUE(a_.Send(std::string(1000 + t * 1000, static_cast<char>('a' + t))));
    });
  }
  std::string msg, err;
  int per_sender[4] = {};
  for (int i = 0; i < 800; ++i) {
    ASSERT_TRUE(b_.Recv(&msg, nullptr, &err)) << err;
    int t = msg.empty() ? -1 : msg[0] - 'a';
    ASSERT_TRUE(t >= 0 && t < 4);
    ASSERT_EQ(msg, std::string(1000 + t * 1000, static_cast<char>('a' + t)));
    per_sender[t]++;
  }
  for (auto& th : senders) th.join();
  for (int n : per_sender) EXPECT_EQ(n, 200);
}

TEST_F(ChannelTest, LargeMessage) {
  const std::string big = Pattern(64u << 20, 5);
  std::thread sender([&] {
    std::string err;
    EXPECT_TRUE(a_.Send(big, {}, &err)) << err;
    EXPECT_TRUE(a_.Send("after")) << err;
  });
  std::string msg, err;
  ASSERT_TRUE(b_.Recv(&msg, nullptr, &err)) << err;
  EXPECT_TRUE(msg == big);
  ASSERT_TRUE(b_.Recv(&msg, nullptr, &err)) << err;
  EXPECT_EQ(msg, "after");
  sender.join();
}

TEST_F(ChannelTest, PassesFileDescriptors) {
  std::string err;
  auto one = Buffer::Copy("first buffer", &err);
  auto two = Buffer::Copy(Pattern(5000, 2), &err);
  ASSERT_TRUE(one && two) << err;
  ASSERT_TRUE(a_.Send("two buffers", {one->fd(), two->fd()}, &err)) << err;
  ASSERT_TRUE(a_.Send("", {one->fd()}, &err)) << err;  // an empty payload still carries fds
  ASSERT_TRUE(a_.Send("none", {}, &err)) << err;
  // The sender keeps its own descriptors.
  EXPECT_NE(fcntl(one->fd(), F_GETFD), -1);

  std::string msg;
  std::vector<int> fds;
  ASSERT_TRUE(b_.Recv(&msg, &fds, &err)) << err;
  EXPECT_EQ(msg, "two buffers");
  ASSERT_EQ(fds.size(), 2u);
  EXPECT_NE(fds[0], one->fd());
  EXPECT_TRUE(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
  auto r1 = Buffer::FromFd(fds[0], 12, &err);
  auto r2 = Buffer::FromFd(fds[1], 5000, &err);
  ASSERT_TRUE(r1 && r2) << err;
  EXPECT_EQ(r1->view(), "first buffer");
  EXPECT_EQ(r2->view(), Pattern(5000, 2));

  ASSERT_TRUE(b_.Recv(&msg, &fds, &err)) << err;
  EXPECT_EQ(msg, "");
  ASSERT_EQ(fds.size(), 1u);
  close(fds[0]);
  ASSERT_TRUE(b_.Recv(&msg, &fds, &err)) << err;
  EXPECT_EQ(msg, "none");
  EXPECT_TRUE(fds.empty());
}

TEST_F(ChannelTest, UnwantedDescriptorsAreClosedNotLeaked) {
  std::string err;
  auto buf = Buffer::Copy("x", &err);
  ASSERT_TRUE(buf) << err;
  int before = OpenFdCount();
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(a_.Send("m", {buf->fd(), buf->fd()}));
  std::string msg;
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(b_.Recv(&msg, nullptr, &err)) << err;
  EXPECT_EQ(OpenFdCount(), before);
}

TEST_F(ChannelTest, TooManyDescriptors) {
  std::string err;
  auto buf = Buffer::Copy("x", &err);
  ASSERT_TRUE(buf) << err;
  std::vector<int> many(Channel::kMaxFds + 1, buf->fd());
  EXPECT_FALSE(a_.Send("m", many, &err));
  EXPECT_NE(err.find("too many file descriptors"), std::string::npos) << err;
  EXPECT_FALSE(a_.Send("m", {-1}, &err));
  EXPECT_NE(err.find("invalid file descriptor"), std::string::npos) << err;

  // A peer that bypasses Send and attaches 100 fds to one frame: rejected, and none of them leak.
  int before = OpenFdCount();
  std::string frame = Header(1) + "m";
  iovec iov{frame.data(), frame.size()};
  std::vector<int> fds(100, buf->fd());
  std::vector<char> control(CMSG_SPACE(fds.size() * sizeof(int)));
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control.data();
  mh.msg_controllen = control.size();
  cmsghdr* c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
  std::memcpy(CMSG_DATA(c), fds.data(), fds.size() * sizeof(int));
  ASSERT_EQ(sendmsg(a_.fd(), &mh, 0), (ssize_t)frame.size());
  std::string msg;
  std::vector<int> got;
  EXPECT_FALSE(b_.Recv(&msg, &got, &err));
  EXPECT_NE(err.find("more than 64 file descriptors"), std::string::npos) << err;
  EXPECT_TRUE(got.empty());
  EXPECT_EQ(OpenFdCount(), before);
}

TEST_F(ChannelTest, EndOfFile) {
  ASSERT_TRUE(a_.Send("last"));
  a_.Close();
  std::string msg, err;
  ASSERT_TRUE(b_.Recv(&msg, nullptr, &err)) << err;
  EXPECT_EQ(msg, "last");
  EXPECT_FALSE(b_.Recv(&msg, nullptr, &err));
  EXPECT_NE(err.find("EOF"), std::string::npos) << err;
}

TEST_F(ChannelTest, EndOfFileInsideAFrame) {
  WriteRaw(a_.fd(), Header(100) + "only ten..");
  a_.Close();
  std::string msg, err;
  EXPECT_FALSE(b_.Recv(&msg, nullptr, &err));
  EXPECT_NE(err.find("middle of a frame"), std::string::npos) << err;
  EXPECT_TRUE(msg.empty());
}

TEST_F(ChannelTest, EndOfFileInsideTheHeader) {
  WriteRaw(a_.fd(), std::string("\x05\x00\x00", 3));
  a_.Close();
  std::string msg, err;
  EXPECT_FALSE(b_.Recv(&msg, nullptr, &err));
  EXPECT_NE(err.find("middle of a frame"), std::string::npos) << err;
}

TEST_F(ChannelTest, OversizedFrameIsRejected) {
  WriteRaw(a_.fd(), Header(Channel::kDefaultMaxMessage + 1));
  std::string msg, err;
  EXPECT_FALSE(b_.Recv(&msg, nullptr, &err));
  EXPECT_NE(err.find("exceeds the limit"), std::string::npos) << err;

  Channel c, d;
  ASSERT_TRUE(Channel::Pair(&c, &d, &err)) << err;
  d.set_max_message(16);
  ASSERT_TRUE(c.Send(std::string(16, 'x')));
  ASSERT_TRUE(c.Send(std::string(17, 'x')));
  ASSERT_TRUE(d.Recv(&msg, nullptr, &err)) << err;
  EXPECT_EQ(msg, std::string(16, 'x'));
  EXPECT_FALSE(d.Recv(&msg, nullptr, &err));
  EXPECT_NE(err.find("frame of 17 bytes exceeds the limit of 16 bytes"), std::string::npos) << err;
}

TEST(Channel, GarbageBytesDoNotCrash) {
  std::mt19937 rng(42);
  for (int round = 0; round < 200; ++round) {
    Channel a, b;
    std::string err;
    ASSERT_TRUE(Channel::Pair(&a, &b, &err)) << err;
    b.set_max_message(1 << 16);
    std::string junk = Pattern(rng() % 64, round);
    if (round % 2) junk = Header(rng() % 100) + junk;  // plausible lengths too, so some frames parse
    WriteRaw(a.fd(), junk);
    a.Close();
    std::string msg;
    std::vector<int> fds;
    int frames = 0;
    while (b.Recv(&msg, &fds, &err)) {
      ASSERT_LE(msg.size(), 1u << 16);
      ASSERT_LT(++frames, 100);
    }
    EXPECT_FALSE(err.empty());
  }
}

TEST_F(ChannelTest, SendToAClosedPeerFailsWithoutSigpipe) {
  b_.Close();
  std::string err;
  // Without MSG_NOSIGNAL this would kill the test binary.
  EXPECT_FALSE(a_.Send(std::string(1 << 20, 'x'), {}, &err));
  EXPECT_NE(err.find("sendmsg"), std::string::npos) << err;
}

TEST_F(ChannelTest, ClosedChannelReportsIt) {
  a_.Close();
  EXPECT_FALSE(a_.valid());
  std::string msg, err;
  EXPECT_FALSE(a_.Send("x", {}, &err));
  EXPECT_NE(err.find("closed"), std::string::npos) << err;
  EXPECT_FALSE(a_.Recv(&msg, nullptr, &err));
  EXPECT_NE(err.find("closed"), std::string::npos) << err;
}

TEST_F(ChannelTest, MoveAndRelease) {
  Channel moved(std::move(a_));
  EXPECT_FALSE(a_.valid());
  ASSERT_TRUE(moved.Send("via moved"));
  std::string msg, err;
  ASSERT_TRUE(b_.Recv(&msg, nullptr, &err)) << err;
  EXPECT_EQ(msg, "via moved");
  int raw = moved.Release();
  EXPECT_FALSE(moved.valid());
  Channel again(raw);
  ASSERT_TRUE(again.Send("via raw"));
  ASSERT_TRUE(b_.Recv(&msg, nullptr, &err)) << err;
  EXPECT_EQ(msg, "via raw");
}

TEST_F(ChannelTest, ShutdownWakesABlockedReceiver) {
  std::string err;
  bool received = true;
  std::thread receiver([&] {
    std::string msg;
    received = b_.Recv(&msg, nullptr, &err);
  });
  b_.Shutdown();
  receiver.join();
  EXPECT_FALSE(received);
  EXPECT_NE(err.find("EOF"), std::string::npos) << err;
}

TEST_F(ChannelTest, NonBlockingSocketsStillDeliverWholeFrames) {
  fcntl(a_.fd(), F_SETFL, fcntl(a_.fd(), F_GETFL) | O_NONBLOCK);
  fcntl(b_.fd(), F_SETFL, fcntl(b_.fd(), F_GETFL) | O_NONBLOCK);
  const std::string big = Pattern(8u << 20, 3);
  std::thread sender([&] {
    std::string err;
    EXPECT_TRUE(a_.Send(big, {}, &err)) << err;
  });
  std::string msg, err;
  ASSERT_TRUE(b_.Recv(&msg, nullptr, &err)) << err;
  EXPECT_TRUE(msg == big);
  sender.join();
}

}  // namespace
}  // namespace mlp::rt::objects
