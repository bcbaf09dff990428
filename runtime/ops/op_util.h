// Small pieces the stdlib operators share (data_ops.cc, readers.cc): argument
// lookup, task slicing, and deterministic hashing for seeded randomness.
#pragma once

#include <cstdint>
#include <string_view>

#include "plan.pb.h"

namespace mlp::rt::ops {

inline constexpr uint64_t kMaxTaskBytes = 4ull << 30;  // what one task may generate; more needs more shards

// The field `name` of a plan node (a stage's `model = ...`), or null.
inline const plan::v1::Value* Field(const plan::v1::Node& n, std::string_view name) {
  for (const auto& a : n.args()) {
    if (a.name() == name) return &a.value();
  }
  return nullptr;
}

// The argument `name` of an operator application, or null.
inline const plan::v1::Value* Arg(const plan::v1::Call& c, std::string_view name) {
  for (const auto& a : c.args()) {
    if (a.name() == name) return &a.value();
  }
  return nullptr;
}

// Rows [SliceBegin(n, i, count), SliceBegin(n, i + 1, count)) of n belong to
// task i of count, exactly partitioning n (floor(i * n / count), computed
// without overflow).
inline uint64_t SliceBegin(uint64_t n, uint64_t i, uint64_t count) {
  if (count == 0) return i == 0 ? 0 : n;  // a bad context must not divide by zero
  return n / count * i + n % count * i / count;
}

// Deterministic hashing: splitmix64's finaliser, and FNV-1a for strings.
inline uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
inline uint64_t Mix(uint64_t a, uint64_t b) { return Mix(Mix(a) ^ b); }
inline uint64_t HashStr(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

}  // namespace mlp::rt::ops
