// Resource amounts as fixed-point integers, so that scheduling arithmetic is
// exact and deterministic: thousandths of a cpu/gpu/custom unit, bytes of memory.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace mlp::rt::sched {

struct ResourceSet {
  int64_t cpu_milli = 0;
  int64_t gpu_milli = 0;
  int64_t memory_bytes = 0;
  // Custom resources ("tpu", "license"), in thousandths. A name that is absent counts as 0.
  std::map<std::string, int64_t> custom_milli;

  bool operator==(const ResourceSet&) const = default;
};

// True when every amount in `need` is at most the same amount in `available`.
bool Fits(const ResourceSet& need, const ResourceSet& available);
// Component-wise sum and difference, saturating at the int64 limits; custom entries that end at 0 are dropped.
ResourceSet Add(const ResourceSet& a, const ResourceSet& b);
ResourceSet Subtract(const ResourceSet& a, const ResourceSet& b);
bool IsZero(const ResourceSet& r);
// True when some amount is negative (never valid in a request).
bool HasNegative(const ResourceSet& r);

// "cpu 1.5, gpu 0, memory 2 GiB, tpu 1": cpu, gpu and memory always, then the custom resources listed.
std::string ToString(const ResourceSet& r);
// Only the non-zero amounts, "cpu 2, memory 512 MiB"; "no resources" when all are zero.
std::string ToStringNonZero(const ResourceSet& r);
// 1500 -> "1.5", 4000 -> "4", 1 -> "0.001".
std::string FormatMilli(int64_t milli);
// 2147483648 -> "2 GiB", 1536 -> "1.5 KiB", 100 -> "100 B"; amounts not exact to two decimals also show the bytes.
std::string FormatBytes(int64_t bytes);

}  // namespace mlp::rt::sched
