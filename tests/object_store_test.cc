// Shared-memory buffers and the per-node object store: references, spilling under memory pressure, restores.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "runtime/objects/buffer.h"
#include "runtime/objects/channel.h"
#include "runtime/objects/store.h"

namespace mlp::rt::objects {
namespace {

namespace fs = std::filesystem;

std::string Pattern(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

std::shared_ptr<Buffer> Make(const std::string& bytes) {
  std::string err;
  auto buf = Buffer::Copy(bytes, &err);
  EXPECT_TRUE(buf) << err;
  return buf;
}

// A fresh, empty directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "mlp-objects-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }
  std::vector<fs::path> Files() const {
    std::vector<fs::path> out;
    for (const auto& e : fs::recursive_directory_iterator(path_)) out.push_back(e.path());
    return out;
  }

 private:
  fs::path path_;
};

TEST(Buffer, CreateWriteRead) {
  std::string err;
  auto buf = Buffer::Create(4096, &err);
  ASSERT_TRUE(buf) << err;
  EXPECT_EQ(buf->size(), 4096u);
  EXPECT_GE(buf->fd(), 0);
  ASSERT_TRUE(buf->writable());
  for (size_t i = 0; i < 4096; ++i) EXPECT_EQ(buf->data()[i], 0) << i;  // memfds start zeroed
  for (size_t i = 0; i < 4096; ++i) buf->mutable_data()[i] = static_cast<uint8_t>(i * 7);
  for (size_t i = 0; i < 4096; ++i) ASSERT_EQ(buf->view()[i], static_cast<char>(i * 7)) << i;
}

TEST(Buffer, ZeroSize) {
  std::string err;
  auto buf = Buffer::Create(0, &err);
  ASSERT_TRUE(buf) << err;
  EXPECT_EQ(buf->size(), 0u);
  EXPECT_TRUE(buf->view().empty());
  auto ro = Buffer::FromFd(dup(buf->fd()), 0, &err);
  ASSERT_TRUE(ro) << err;
  EXPECT_TRUE(ro->view().empty());
  auto copy = Buffer::Copy("", &err);
  ASSERT_TRUE(copy) << err;
  EXPECT_EQ(copy->size(), 0u);
}

TEST(Buffer, CopyHoldsTheBytes) {
  std::string bytes = Pattern(10000, 1);
  auto buf = Make(bytes);
  EXPECT_EQ(buf->view(), bytes);
}

TEST(Buffer, FromFdSharesMemoryReadOnly) {
  auto buf = Make(std::string(100, 'a'));
  std::string err;
  auto ro = Buffer::FromFd(dup(buf->fd()), 100, &err);
  ASSERT_TRUE(ro) << err;
  EXPECT_FALSE(ro->writable());
  EXPECT_EQ(ro->mutable_data(), nullptr);
  EXPECT_EQ(ro->view(), std::string(100, 'a'));
  buf->mutable_data()[50] = 'z';  // the same pages, not a copy
  EXPECT_EQ(ro->view()[50], 'z');
  // A prefix of the file may be mapped.
  auto prefix = Buffer::FromFd(dup(buf->fd()), 10, &err);
  ASSERT_TRUE(prefix) << err;
  EXPECT_EQ(prefix->view(), std::string(10, 'a'));
}

TEST(Buffer, CreatedBuffersCannotChangeSize) {
  auto buf = Make("hello");
  // A receiver's mapping must not lose its pages under it (SIGBUS).
  EXPECT_NE(ftruncate(buf->fd(), 1), 0);
  EXPECT_NE(ftruncate(buf->fd(), 1 << 20), 0);
}

TEST(Buffer, FromFdRejectsBadDescriptors) {
  std::string err;
  EXPECT_FALSE(Buffer::FromFd(-1, 10, &err));
  EXPECT_NE(err.find("invalid file descriptor"), std::string::npos) << err;

  auto buf = Make("short");
  int fd = dup(buf->fd());
  EXPECT_FALSE(Buffer::FromFd(fd, 6, &err));
  EXPECT_NE(err.find("expected at least 6"), std::string::npos) << err;
  EXPECT_EQ(fcntl(fd, F_GETFD), -1) << "FromFd owns the fd and closes it on failure";

  int p[2];
  ASSERT_EQ(pipe(p), 0);
  EXPECT_FALSE(Buffer::FromFd(p[0], 0, &err));
  EXPECT_NE(err.find("not a regular file"), std::string::npos) << err;
  close(p[1]);
}

TEST(Buffer, CrossesAFork) {
  auto shared = Make(std::string(64, '.'));
  Channel parent, child;
  std::string err;
  ASSERT_TRUE(Channel::Pair(&parent, &child, &err)) << err;
  const std::string reply = Pattern(100000, 9);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    parent.Close();
    // Write into the parent's buffer through the inherited shared mapping, then answer with a new buffer's fd.
    std::memcpy(shared->mutable_data(), "written by the child", 20);
    std::string e;
    auto out = Buffer::Copy(reply, &e);
    bool ok = out && child.Send("size=" + std::to_string(out->size()), {out->fd()}, &e);
    _exit(ok ? 0 : 1);
  }
  child.Close();
  std::string msg;
  std::vector<int> fds;
  ASSERT_TRUE(parent.Recv(&msg, &fds, &err)) << err;
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(msg, "size=100000");
  ASSERT_EQ(fds.size(), 1u);
  auto got = Buffer::FromFd(fds[0], reply.size(), &err);
  ASSERT_TRUE(got) << err;
  EXPECT_EQ(got->view(), reply);  // the child is gone; the memory lives on through the fd
  EXPECT_EQ(shared->view().substr(0, 20), "written by the child");
}

TEST(Store, PutGetAndReferenceCounting) {
  Store store({});
  std::string err;
  ASSERT_TRUE(store.Put("a", Make("alpha"), &err)) << err;
  EXPECT_TRUE(store.Contains("a"));
  EXPECT_FALSE(store.Contains("b"));
  EXPECT_EQ(store.SizeOf("a"), 5u);
  EXPECT_EQ(store.SizeOf("b"), std::nullopt);
  auto got = store.Get("a", &err);
  ASSERT_TRUE(got) << err;
  EXPECT_EQ(got->view(), "alpha");
  EXPECT_EQ(store.Get("b", &err), nullptr);
  EXPECT_NE(err.find("unknown object b"), std::string::npos) << err;

  store.AddRef("a", 2);
  store.Release("a");
  store.Release("a");
  EXPECT_TRUE(store.Contains("a"));
  EXPECT_EQ(store.Stats().objects, 1u);
  EXPECT_EQ(store.Stats().bytes_in_memory, 5u);
  store.Release("a");
  EXPECT_FALSE(store.Contains("a"));
  EXPECT_EQ(store.Stats().objects, 0u);
  EXPECT_EQ(store.Stats().bytes_in_memory, 0u);
  EXPECT_EQ(store.Stats().evictions_freed, 1u);
  EXPECT_EQ(got->view(), "alpha");  // a holder's buffer outlives the store's entry

  store.AddRef("unknown");  // ignored
  store.Release("unknown");
  EXPECT_TRUE(store.Ids().empty());
}

TEST(Store, PutOfAnExistingIdIsANoOp) {
  Store store({});
  std::string err;
  ASSERT_TRUE(store.Put("x", Make("first"), &err));
  ASSERT_TRUE(store.Put("x", Make("second!"), &err));
  EXPECT_EQ(store.Get("x")->view(), "first");
  EXPECT_EQ(store.Stats().objects, 1u);
  EXPECT_EQ(store.Stats().bytes_in_memory, 5u);
  store.Release("x");  // the second Put added no reference
  EXPECT_FALSE(store.Contains("x"));
}

TEST(Store, PutRejectsEmptyIdAndNullBuffer) {
  Store store({});
  std::string err;
  EXPECT_FALSE(store.Put("", Make("x"), &err));
  EXPECT_NE(err.find("empty"), std::string::npos) << err;
  EXPECT_FALSE(store.Put("a", nullptr, &err));
  EXPECT_NE(err.find("no buffer"), std::string::npos) << err;
  EXPECT_TRUE(store.Ids().empty());
}

TEST(Store, DeleteFreesRegardlessOfReferences) {
  Store store({});
  std::string err;
  ASSERT_TRUE(store.Put("a", Make("bytes"), &err));
  store.AddRef("a", 5);
  EXPECT_TRUE(store.Delete("a"));
  EXPECT_FALSE(store.Contains("a"));
  EXPECT_FALSE(store.Delete("a"));
  EXPECT_EQ(store.Stats().bytes_in_memory, 0u);
}

TEST(Store, SpillsLeastRecentlyUsedAndRestoresIdenticalBytes) {
  TempDir dir;
  Store store({.memory_capacity = 3000, .spill_dir = dir.path()});
  std::string err;
  std::vector<std::string> data;
  for (int i = 0; i < 3; ++i) {
    data.push_back(Pattern(1000, i));
    ASSERT_TRUE(store.Put("o" + std::to_string(i), Make(data.back()), &err)) << err;
  }
  EXPECT_EQ(store.Stats().spills, 0u);
  EXPECT_TRUE(dir.Files().empty());
  // o0 was used last, so o1 is now the least recently used.
  ASSERT_TRUE(store.Get("o0"));
  data.push_back(Pattern(1000, 3));
  ASSERT_TRUE(store.Put("o3", Make(data.back()), &err)) << err;

  StoreStats s = store.Stats();
  EXPECT_EQ(s.objects, 4u);
  EXPECT_EQ(s.spills, 1u);
  EXPECT_EQ(s.bytes_in_memory, 3000u);
  EXPECT_EQ(s.bytes_spilled, 1000u);
  EXPECT_EQ(dir.Files().size(), 1u);
  EXPECT_EQ(store.SizeOf("o1"), 1000u);  // still known while spilled

  auto restored = store.Get("o1", &err);
  ASSERT_TRUE(restored) << err;
  EXPECT_EQ(restored->view(), data[1]);
  s = store.Stats();
  EXPECT_EQ(s.restores, 1u);
  EXPECT_EQ(s.spills, 2u);  // bringing o1 back pushed out the next least recently used (o2)
  EXPECT_EQ(s.bytes_in_memory, 3000u);
  EXPECT_EQ(s.bytes_spilled, 1000u);
  EXPECT_EQ(dir.Files().size(), 1u);  // o1's spill file went when it was restored; o2's is there

  for (int i = 0; i < 4; ++i) {
    auto b = store.Get("o" + std::to_string(i), &err);
    ASSERT_TRUE(b) << err;
    EXPECT_EQ(b->view(), data[i]) << i;
  }
}

TEST(Store, ReadRangesFromMemoryAndFromDisk) {
  TempDir dir;
  Store store({.memory_capacity = 1500, .spill_dir = dir.path()});
  std::string err;
  std::string cold = Pattern(1000, 11), hot = Pattern(1000, 12);
  ASSERT_TRUE(store.Put("cold", Make(cold), &err));
  ASSERT_TRUE(store.Put("hot", Make(hot), &err));
  ASSERT_EQ(store.Stats().spills, 1u);  // "cold" is on disk

  std::string out;
  for (const auto& [id, bytes] : {std::pair{"cold", cold}, std::pair{"hot", hot}}) {
    ASSERT_TRUE(store.Read(id, 0, 1000, &out, &err)) << err;
    EXPECT_EQ(out, bytes);
    ASSERT_TRUE(store.Read(id, 123, 456, &out, &err)) << err;
    EXPECT_EQ(out, bytes.substr(123, 456));
    ASSERT_TRUE(store.Read(id, 1000, 0, &out, &err)) << err;
    EXPECT_EQ(out, "");
    EXPECT_FALSE(store.Read(id, 999, 2, &out, &err));
    EXPECT_NE(err.find("outside object"), std::string::npos) << err;
    EXPECT_FALSE(store.Read(id, 2000, 0, &out, &err));
    EXPECT_FALSE(store.Read(id, 1, SIZE_MAX, &out, &err));  // no overflow in the bounds check
  }
  EXPECT_FALSE(store.Read("missing", 0, 0, &out, &err));
  EXPECT_NE(err.find("unknown object"), std::string::npos) << err;
  // Reading did not bring the spilled object back.
  EXPECT_EQ(store.Stats().restores, 0u);
  EXPECT_EQ(store.Stats().bytes_spilled, 1000u);
}

TEST(Store, BuffersInUseAreNotSpilled) {
  TempDir dir;
  Store store({.memory_capacity = 1000, .spill_dir = dir.path()});
  std::string err;
  auto held = Make(Pattern(800, 1));  // the caller keeps it: in use
  ASSERT_TRUE(store.Put("held", held, &err));
  ASSERT_TRUE(store.Put("free", Make(Pattern(800, 2)), &err));
  StoreStats s = store.Stats();
  EXPECT_EQ(s.spills, 1u);
  EXPECT_EQ(s.bytes_spilled, 800u);  // "free" went, although "held" is older
  std::string out;
  EXPECT_TRUE(store.Read("held", 0, 800, &out, &err)) << err;
  EXPECT_EQ(out, Pattern(800, 1));

  // Everything in memory in use: the store goes over capacity rather than failing.
  auto got = store.Get("free", &err);
  ASSERT_TRUE(got) << err;
  s = store.Stats();
  EXPECT_EQ(s.bytes_in_memory, 1600u);
  EXPECT_EQ(s.spills, 1u);
  EXPECT_GE(s.over_capacity, 1u);

  // Once the holders let go, enforcing capacity spills again.
  held.reset();
  got.reset();
  store.EnforceCapacity();
  EXPECT_LE(store.Stats().bytes_in_memory, 1000u);
  EXPECT_EQ(store.Stats().spills, 2u);
}

TEST(Store, SpillFilesRemovedOnFreeAndOnDestruction) {
  TempDir dir;
  {
    Store store({.memory_capacity = 0, .spill_dir = dir.path()});
    std::string err;
    for (int i = 0; i < 4; ++i) ASSERT_TRUE(store.Put("k" + std::to_string(i), Make(Pattern(100, i)), &err));
    EXPECT_EQ(store.Stats().spills, 4u);
    EXPECT_EQ(dir.Files().size(), 4u);
    store.Release("k0");
    EXPECT_TRUE(store.Delete("k1"));
    EXPECT_EQ(dir.Files().size(), 2u);
    EXPECT_EQ(store.Stats().bytes_spilled, 200u);
  }
  EXPECT_TRUE(dir.Files().empty());
}

TEST(Store, HostileIdsStayInsideTheSpillDirectory) {
  TempDir dir;
  fs::path spill = dir.path() / "spill";
  Store store({.memory_capacity = 0, .spill_dir = spill});
  std::string err;
  std::vector<std::string> ids = {"../escape", "/etc/passwd", "a/b/c", std::string("nul\0byte", 8), ".", "..",
                                  std::string(5000, 'x'), "\xff\xfe weird \n"};
  for (size_t i = 0; i < ids.size(); ++i) ASSERT_TRUE(store.Put(ids[i], Make(Pattern(10, i)), &err)) << err;
  EXPECT_EQ(store.Stats().spills, ids.size());
  EXPECT_EQ(store.Stats().spill_failures, 0u);
  for (const auto& f : dir.Files()) {
    if (f != spill) {
      EXPECT_EQ(f.parent_path(), spill) << f;  // only flat files in spill/
    }
  }
  EXPECT_EQ(dir.Files().size(), ids.size() + 1);  // + the spill directory itself
  for (size_t i = 0; i < ids.size(); ++i) {
    auto b = store.Get(ids[i], &err);
    ASSERT_TRUE(b) << err;
    EXPECT_EQ(b->view(), Pattern(10, i));
  }
}

TEST(Store, WithoutASpillDirectoryMemoryGoesOverCapacity) {
  Store store({.memory_capacity = 10, .spill_dir = {}});
  std::string err;
  ASSERT_TRUE(store.Put("a", Make(Pattern(100, 1)), &err));
  StoreStats s = store.Stats();
  EXPECT_EQ(s.bytes_in_memory, 100u);
  EXPECT_EQ(s.spills, 0u);
  EXPECT_EQ(s.over_capacity, 1u);
  EXPECT_EQ(store.Get("a")->view(), Pattern(100, 1));
}

TEST(Store, RestoreFailsCleanlyWhenTheSpillFileIsGone) {
  TempDir dir;
  Store store({.memory_capacity = 0, .spill_dir = dir.path()});
  std::string err;
  ASSERT_TRUE(store.Put("a", Make("abc"), &err));
  for (const auto& f : dir.Files()) fs::remove(f);
  EXPECT_EQ(store.Get("a", &err), nullptr);
  EXPECT_NE(err.find("spill file"), std::string::npos) << err;
  std::string out;
  EXPECT_FALSE(store.Read("a", 0, 1, &out, &err));
  EXPECT_NE(err.find("spill file"), std::string::npos) << err;
}

TEST(Store, ConcurrentUseKeepsTheBooksStraight) {
  TempDir dir;
  Store store({.memory_capacity = 20000, .spill_dir = dir.path()});
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::string err;
      for (int i = 0; i < 200; ++i) {
        std::string id = std::to_string(t) + "/" + std::to_string(i);
        std::string bytes = Pattern(500, t * 1000 + i);
        if (!store.Put(id, Make(bytes), &err)) failures++;
        auto b = store.Get(id, &err);
        if (!b || b->view() != bytes) failures++;
        std::string out;
        if (!store.Read(id, 10, 20, &out, &err) || out != bytes.substr(10, 20)) failures++;
        if (i % 2 == 0) store.Release(id);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  StoreStats s = store.Stats();
  EXPECT_EQ(s.objects, 400u);
  EXPECT_EQ(s.evictions_freed, 400u);
  EXPECT_EQ(s.bytes_in_memory + s.bytes_spilled, 400u * 500);
  EXPECT_LE(s.bytes_in_memory, 20000u);
  EXPECT_GT(s.spills, 0u);
  EXPECT_EQ(dir.Files().size(), s.bytes_spilled / 500);
}

}  // namespace
}  // namespace mlp::rt::objects
