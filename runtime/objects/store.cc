#include "runtime/objects/store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

namespace mlp::rt::objects {
namespace {

void SetError(std::string* error, const std::string& what) {
  if (error) *error = what;
}

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

// Spill file names never contain the raw id (it is untrusted): a hex prefix of it for humans, then a sequence
// number that keeps names unique and short whatever the id's length.
std::string SpillName(const std::string& id, uint64_t seq) {
  static const char kHex[] = "0123456789abcdef";
  std::string name;
  for (size_t i = 0; i < id.size() && i < 32; ++i) {
    auto c = static_cast<unsigned char>(id[i]);
    name += kHex[c >> 4];
    name += kHex[c & 15];
  }
  return name + "-" + std::to_string(seq) + ".obj";
}

bool WriteAll(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Reads exactly n bytes at offset; false (with errno, or 0 on a short file) otherwise.
bool PreadAll(int fd, uint8_t* p, size_t n, off_t offset) {
  while (n > 0) {
    ssize_t r = pread(fd, p, n, offset);
    if (r < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (r == 0) {
      errno = 0;
      return false;
    }
    p += r;
    n -= static_cast<size_t>(r);
    offset += r;
  }
  return true;
}

std::string ReadFailure(const std::filesystem::path& path) {
  if (errno == 0) return "spill file " + path.string() + " is shorter than its object";
  return Errno("reading spill file " + path.string());
}

}  // namespace

Store::Store(Options options) : options_(std::move(options)) {
  if (!options_.spill_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(options_.spill_dir, ec);
    spill_enabled_ = !ec && std::filesystem::is_directory(options_.spill_dir, ec);
  }
}

Store::~Store() {
  for (auto& [id, e] : entries_) {
    if (!e.spill_path.empty()) unlink(e.spill_path.c_str());
  }
}

void Store::TouchLocked(Entry& e) { lru_.splice(lru_.end(), lru_, e.lru); }

bool Store::Put(const std::string& id, std::shared_ptr<Buffer> buf, std::string* error) {
  if (id.empty()) {
    SetError(error, "object id is empty");
    return false;
  }
  if (!buf) {
    SetError(error, "object " + id + " has no buffer");
    return false;
  }
  std::lock_guard lock(mu_);
  if (entries_.count(id)) return true;
  Entry& e = entries_[id];
  e.size = buf->size();
  e.refs = 1;
  e.buf = std::move(buf);
  e.lru = lru_.insert(lru_.end(), id);
  stats_.objects++;
  stats_.bytes_in_memory += e.size;
  EnforceCapacityLocked();
  return true;
}

std::shared_ptr<Buffer> Store::Get(const std::string& id, std::string* error) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) {
    SetError(error, "unknown object " + id);
    return nullptr;
  }
  Entry& e = it->second;
  if (e.buf) {
    TouchLocked(e);
    return e.buf;
  }
  // Restore into a fresh memfd rather than mapping the spill file, so the object can be handed to executors like
  // any other and the spill file can go.
  auto buf = Buffer::Create(e.size, error);
  if (!buf) return nullptr;
  int fd = open(e.spill_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    SetError(error, Errno("opening spill file " + e.spill_path.string()));
    return nullptr;
  }
  bool ok = PreadAll(fd, buf->mutable_data(), e.size, 0);
  std::string failure = ok ? "" : ReadFailure(e.spill_path);
  close(fd);
  if (!ok) {
    SetError(error, failure);
    return nullptr;
  }
  unlink(e.spill_path.c_str());
  e.spill_path.clear();
  e.buf = buf;
  e.lru = lru_.insert(lru_.end(), id);
  stats_.restores++;
  stats_.bytes_spilled -= e.size;
  stats_.bytes_in_memory += e.size;
  EnforceCapacityLocked();  // `buf` is held here, so the restored object itself is not spilled again
  return buf;
}

bool Store::Contains(const std::string& id) const {
  std::lock_guard lock(mu_);
  return entries_.count(id) > 0;
}

std::optional<size_t> Store::SizeOf(const std::string& id) const {
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return std::nullopt;
  return it->second.size;
}

bool Store::Read(const std::string& id, size_t offset, size_t len, std::string* out, std::string* error) const {
  std::shared_ptr<Buffer> buf;
  std::filesystem::path path;
  int fd = -1;
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) {
      SetError(error, "unknown object " + id);
      return false;
    }
    const Entry& e = it->second;
    if (offset > e.size || len > e.size - offset) {
      SetError(error, "range [" + std::to_string(offset) + ", +" + std::to_string(len) + ") is outside object " + id +
                          " of " + std::to_string(e.size) + " bytes");
      return false;
    }
    buf = e.buf;
    path = e.spill_path;
    // Opened under the lock so that a concurrent restore or free, which unlinks the file, cannot pull it away.
    if (!buf) {
      fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        SetError(error, Errno("opening spill file " + path.string()));
        return false;
      }
    }
  }
  // The copy happens outside the lock: a buffer stays valid while we hold it, and so does an open file.
  if (buf) {
    out->assign(buf->view().substr(offset, len));
    return true;
  }
  out->resize(len);
  bool ok = PreadAll(fd, reinterpret_cast<uint8_t*>(out->data()), len, static_cast<off_t>(offset));
  std::string failure = ok ? "" : ReadFailure(path);
  close(fd);
  if (!ok) {
    out->clear();
    SetError(error, failure);
  }
  return ok;
}

void Store::AddRef(const std::string& id, int n) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  if (it != entries_.end()) it->second.refs += n;
}

void Store::Release(const std::string& id, int n) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  it->second.refs -= n;
  if (it->second.refs <= 0) FreeLocked(it);
}

bool Store::Delete(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return false;
  FreeLocked(it);
  return true;
}

void Store::FreeLocked(std::unordered_map<std::string, Entry>::iterator it) {
  Entry& e = it->second;
  if (e.buf) {
    lru_.erase(e.lru);
    stats_.bytes_in_memory -= e.size;
  } else {
    unlink(e.spill_path.c_str());
    stats_.bytes_spilled -= e.size;
  }
  stats_.objects--;
  stats_.evictions_freed++;
  entries_.erase(it);
}

void Store::EnforceCapacity() {
  std::lock_guard lock(mu_);
  EnforceCapacityLocked();
}

void Store::EnforceCapacityLocked() {
  if (stats_.bytes_in_memory <= options_.memory_capacity) return;
  if (spill_enabled_) {
    for (auto it = lru_.begin(); it != lru_.end() && stats_.bytes_in_memory > options_.memory_capacity;) {
      std::string id = *it;  // a copy: SpillLocked removes this node from the list
      ++it;
      Entry& e = entries_.at(id);
      if (e.buf.use_count() > 1) continue;  // someone else holds it: spilling would not free the memory
      SpillLocked(id, e);
    }
  }
  if (stats_.bytes_in_memory > options_.memory_capacity) stats_.over_capacity++;
}

bool Store::SpillLocked(const std::string& id, Entry& e) {
  std::filesystem::path path;
  int fd = -1;
  // O_EXCL so that stores sharing a directory never overwrite each other's files.
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    path = options_.spill_dir / SpillName(id, spill_seq_++);
    fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    stats_.spill_failures++;
    return false;
  }
  bool ok = WriteAll(fd, e.buf->data(), e.size);
  ok = (close(fd) == 0) && ok;
  if (!ok) {
    unlink(path.c_str());
    stats_.spill_failures++;
    return false;
  }
  lru_.erase(e.lru);
  e.buf.reset();
  e.spill_path = path;
  stats_.spills++;
  stats_.bytes_in_memory -= e.size;
  stats_.bytes_spilled += e.size;
  return true;
}

std::vector<std::string> Store::Ids() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> ids;
  ids.reserve(entries_.size());
  for (const auto& [id, e] : entries_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

StoreStats Store::Stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace mlp::rt::objects
