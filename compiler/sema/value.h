// Compile-time values of the configuration language: what a field, an
// operator argument or a param evaluates to once params are substituted,
// strings interpolated and units applied.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "compiler/base/source.h"
#include "stdlib/schema/schema.h"

namespace mlp {

struct Value {
  Value() = default;  // not an aggregate: clang needs it complete inside std::pair below
  enum class Tag : uint8_t {
    Error,      // a value whose error was already reported
    Int, Float, Bool, String, Path,
    Duration,   // i: nanoseconds
    Size,       // i: bytes
    List, Map,
    Call,       // s: operator; entries: arguments by name (defaults filled in)
    Ref,        // s: stage; field: output ("" = the stage itself)
    Kernel,     // s: kernel name
    Env,        // s: env name
    Symbol,     // s: a bare name (an enum choice or a zero-argument operator)
    Predicate,  // s: canonical source text; items: metric names as String
  };
  Tag tag = Tag::Error;
  schema::Kind kind = schema::Kind::Any;  // Call: the op's result; Ref: the output's kind
  int64_t i = 0;
  double f = 0;
  bool b = false;
  std::string s;
  std::string field;
  std::vector<Value> items;                          // List, Predicate
  std::vector<std::pair<std::string, Value>> entries;  // Map, Call
  Range range;

  static Value Error() { return Value{}; }
  static Value Int(int64_t x, Range r = {}) {
    Value v;
    v.tag = Tag::Int;
    v.i = x;
    v.range = r;
    return v;
  }
  static Value Float(double x, Range r = {}) {
    Value v;
    v.tag = Tag::Float;
    v.f = x;
    v.range = r;
    return v;
  }
  bool is_error() const { return tag == Tag::Error; }
  const Value* Find(std::string_view key) const {
    for (const auto& [k, v] : entries) {
      if (k == key) return &v;
    }
    return nullptr;
  }
};

// "int", "string", "dataset", "train stage" ...: what the user is told a value is.
std::string DescribeType(const Value& v);
// Canonical mlp text of a value, e.g. `adam(lr: 0.001)`, `2GiB`.
std::string ToSource(const Value& v);

}  // namespace mlp
