#include "runtime/sched/resources.h"

#include <limits>

namespace mlp::rt::sched {
namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

int64_t SatAdd(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? kMax : kMin;
  return r;
}

int64_t SatSub(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_sub_overflow(a, b, &r)) return b < 0 ? kMax : kMin;
  return r;
}

template <typename Op>
ResourceSet Combine(const ResourceSet& a, const ResourceSet& b, Op op) {
  ResourceSet r;
  r.cpu_milli = op(a.cpu_milli, b.cpu_milli);
  r.gpu_milli = op(a.gpu_milli, b.gpu_milli);
  r.memory_bytes = op(a.memory_bytes, b.memory_bytes);
  r.custom_milli = a.custom_milli;
  for (const auto& [name, v] : b.custom_milli) {
    int64_t& x = r.custom_milli[name];  // absent counts as 0
    x = op(x, v);
  }
  std::erase_if(r.custom_milli, [](const auto& kv) { return kv.second == 0; });
  return r;
}

// The magnitude of v as unsigned, so that INT64_MIN formats without overflow.
uint64_t Magnitude(int64_t v) { return v < 0 ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v); }

}  // namespace

bool Fits(const ResourceSet& need, const ResourceSet& available) {
  if (need.cpu_milli > available.cpu_milli || need.gpu_milli > available.gpu_milli ||
      need.memory_bytes > available.memory_bytes) {
    return false;
  }
  for (const auto& [name, v] : need.custom_milli) {
    auto it = available.custom_milli.find(name);
    if (v > (it == available.custom_milli.end() ? 0 : it->second)) return false;
  }
  return true;
}

ResourceSet Add(const ResourceSet& a, const ResourceSet& b) { return Combine(a, b, SatAdd); }
ResourceSet Subtract(const ResourceSet& a, const ResourceSet& b) { return Combine(a, b, SatSub); }

bool IsZero(const ResourceSet& r) {
  if (r.cpu_milli != 0 || r.gpu_milli != 0 || r.memory_bytes != 0) return false;
  for (const auto& kv : r.custom_milli) {
    if (kv.second != 0) return false;
  }
  return true;
}

bool HasNegative(const ResourceSet& r) {
  if (r.cpu_milli < 0 || r.gpu_milli < 0 || r.memory_bytes < 0) return true;
  for (const auto& kv : r.custom_milli) {
    if (kv.second < 0) return true;
  }
  return false;
}

std::string FormatMilli(int64_t milli) {
  uint64_t m = Magnitude(milli);
  std::string s = (milli < 0 ? "-" : "") + std::to_string(m / 1000);
  uint64_t frac = m % 1000;
  if (frac != 0) {
    std::string digits = std::to_string(frac);
    digits.insert(0, 3 - digits.size(), '0');
    while (digits.back() == '0') digits.pop_back();
    s += "." + digits;
  }
  return s;
}

std::string FormatBytes(int64_t bytes) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  uint64_t m = Magnitude(bytes);
  const std::string sign = bytes < 0 ? "-" : "";
  if (m < 1024) return sign + std::to_string(m) + " B";
  int unit = 0;
  uint64_t size = 1024;
  while (unit + 1 < 6 && m / size >= 1024) {
    size *= 1024;
    ++unit;
  }
  uint64_t whole = m / size;
  uint64_t rem = m % size;
  // Hundredths of the unit, truncated; size >= 1024 and rem < size <= 2^60, so go through 1024ths to stay in range.
  uint64_t hundredths = rem / (size / 1024) * 100 / 1024;
  std::string s = sign + std::to_string(whole);
  if (hundredths != 0) {
    std::string digits = std::to_string(hundredths);
    if (digits.size() < 2) digits.insert(0, "0");
    while (digits.back() == '0') digits.pop_back();
    s += "." + digits;
  }
  s += std::string(" ") + kUnits[unit];
  // Two decimals lose the exact amount; say it, so a message never reads "needs 2 GiB; has 2 GiB".
  // Sizes are powers of two, so only whole quarters of a unit are exact in hundredths.
  bool exact = rem % (size / 4) == 0;
  if (!exact) s += " (" + sign + std::to_string(m) + " B)";
  return s;
}

std::string ToString(const ResourceSet& r) {
  std::string s = "cpu " + FormatMilli(r.cpu_milli) + ", gpu " + FormatMilli(r.gpu_milli) + ", memory " +
                  FormatBytes(r.memory_bytes);
  for (const auto& [name, v] : r.custom_milli) s += ", " + name + " " + FormatMilli(v);
  return s;
}

std::string ToStringNonZero(const ResourceSet& r) {
  std::string s;
  auto add = [&s](const std::string& part) { s += (s.empty() ? "" : ", ") + part; };
  if (r.cpu_milli != 0) add("cpu " + FormatMilli(r.cpu_milli));
  if (r.gpu_milli != 0) add("gpu " + FormatMilli(r.gpu_milli));
  if (r.memory_bytes != 0) add("memory " + FormatBytes(r.memory_bytes));
  for (const auto& [name, v] : r.custom_milli) {
    if (v != 0) add(name + " " + FormatMilli(v));
  }
  return s.empty() ? "no resources" : s;
}

}  // namespace mlp::rt::sched
