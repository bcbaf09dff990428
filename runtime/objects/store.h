// The per-node object store: immutable blobs by id, reference counted, spilled to disk under memory pressure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/objects/buffer.h"

namespace mlp::rt::objects {

struct StoreStats {
  size_t objects = 0;
  size_t bytes_in_memory = 0;  // sizes of memory-resident objects
  size_t bytes_spilled = 0;    // sizes of objects that live only on disk
  uint64_t spills = 0;         // objects written to disk
  uint64_t restores = 0;       // spilled objects brought back by Get
  uint64_t evictions_freed = 0;  // objects freed by Release reaching zero or by Delete
  uint64_t over_capacity = 0;  // times memory stayed above capacity because everything left was in use
  uint64_t spill_failures = 0;  // spill writes that failed (the object stayed in memory)
};

// Thread-safe. Disk I/O for spills and restores happens under the store's lock (simple, not concurrent).
class Store {
 public:
  struct Options {
    size_t memory_capacity = 1ull << 30;
    // Where spilled objects go; created if missing. Empty disables spilling.
    std::filesystem::path spill_dir;
  };

  explicit Store(Options options);
  ~Store();  // removes its spill files
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Adds an object with one reference. Putting an id that exists is a no-op returning true (objects are
  // immutable). May spill other objects. Fails on an empty id or a null buffer.
  bool Put(const std::string& id, std::shared_ptr<Buffer> buf, std::string* error);
  // The object's bytes, restored from disk if spilled (which may spill others); nullptr if unknown or unreadable.
  std::shared_ptr<Buffer> Get(const std::string& id, std::string* error = nullptr);
  bool Contains(const std::string& id) const;
  std::optional<size_t> SizeOf(const std::string& id) const;
  // Reads [offset, offset+len) into out without restoring a spilled object; fails if the range is out of bounds.
  bool Read(const std::string& id, size_t offset, size_t len, std::string* out, std::string* error) const;
  // Unknown ids are ignored.
  void AddRef(const std::string& id, int n = 1);
  // At zero references the object is freed: memory and spill file.
  void Release(const std::string& id, int n = 1);
  // Frees regardless of references; false if unknown.
  bool Delete(const std::string& id);
  // Spills until under capacity, as after a Put; useful once holders have dropped buffers they had in use.
  void EnforceCapacity();
  std::vector<std::string> Ids() const;  // sorted
  StoreStats Stats() const;

 private:
  struct Entry {
    size_t size = 0;
    int refs = 0;
    std::shared_ptr<Buffer> buf;  // null while spilled
    std::filesystem::path spill_path;  // empty unless spilled
    std::list<std::string>::iterator lru;  // valid while resident
  };

  void TouchLocked(Entry& e);
  void FreeLocked(std::unordered_map<std::string, Entry>::iterator it);
  void EnforceCapacityLocked();
  bool SpillLocked(const std::string& id, Entry& e);

  const Options options_;
  bool spill_enabled_ = false;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
  std::list<std::string> lru_;  // resident ids, least recently used first
  StoreStats stats_;
  uint64_t spill_seq_ = 0;
};

}  // namespace mlp::rt::objects
