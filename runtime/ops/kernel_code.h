// The kernel interpreter's compiled form, shared with the native tier
// (runtime/jit): a flat array of typed nodes per kernel. Every type is
// resolved at build time (literals are folded or wrapped in Convert nodes), so
// both tiers evaluate exactly the same operations in the same order.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/ops/kernel_interp.h"

namespace mlp::rt::ops {
class CompiledKernel;
namespace detail {
// Static types; Lit* are literals not yet given a type (computed in i64 / f64).
enum class T : uint8_t { Bool, I32, I64, F32, F64, LitInt, LitFloat, Error };

inline std::string_view TName(T t) {
  switch (t) {
    case T::Bool: return "bool";
    case T::I32: return "i32";
    case T::I64: return "i64";
    case T::F32: return "f32";
    case T::F64: return "f64";
    case T::LitInt: return "integer literal";
    case T::LitFloat: return "float literal";
    case T::Error: return "<error>";
  }
  return "?";
}
inline T FromScalar(ScalarType s) { return static_cast<T>(s); }
inline bool IsFloatT(T t) { return t == T::F32 || t == T::F64 || t == T::LitFloat; }
inline bool IsIntT(T t) { return t == T::I32 || t == T::I64 || t == T::LitInt; }
inline bool IsNumericT(T t) { return IsFloatT(t) || IsIntT(t); }
inline bool Assignable(T from, T to) {
  return from == to || (from == T::LitInt && IsNumericT(to)) || (from == T::LitFloat && (to == T::F32 || to == T::F64));
}

inline std::optional<T> ScalarTypeNamed(std::string_view name) {
  if (name == "f32") return T::F32;
  if (name == "f64") return T::F64;
  if (name == "i32") return T::I32;
  if (name == "i64") return T::I64;
  if (name == "bool") return T::Bool;
  return std::nullopt;
}

union Slot {
  double f;
  int64_t i;
};

enum class Op : uint8_t {
  Const, Var, Let, Block, If, And, Or, Not, Neg,
  Add, Sub, Mul, Div, Mod, Lt, Le, Gt, Ge, Eq, Ne,
  Convert, Builtin, Call,
};
enum class Fn : uint8_t { Exp, Log, Sqrt, Sin, Cos, Tanh, Abs, Min, Max, Clamp, Floor, Pow };

struct Node {
  Op op = Op::Const;
  T type = T::Error;  // the value's type
  T in = T::Error;    // operand type (arithmetic, comparison, builtin) or source type (Convert)
  Fn fn = Fn::Exp;
  uint32_t a = 0, b = 0, c = 0;  // children
  uint32_t list = 0, count = 0;  // Block: lets; Call: arguments (indices into KernelCode::lists)
  uint32_t slot = 0;             // Var, Let
  Slot value{};                  // Const
  uint32_t pos = 0;              // byte offset in the kernel's source, for errors
  const CompiledKernel* callee = nullptr;
};

struct KernelCode {
  std::vector<Node> nodes;
  std::vector<uint32_t> lists;
  uint32_t root = 0;
  uint32_t slots = 0;
  std::string source;
  std::string file;
  uint32_t line = 0, column = 0;  // where the source starts in `file`
  std::string kernel;              // its name as written in the source
  // Empty for a kernel, whose result is the value of `root`. An env step has
  // several results: `root` (a Block of Lets) is evaluated for its lets, and
  // then outputs[k] is the value of slot outputs[k] (the final value of each
  // state field in order, then the reward, then done).
  std::vector<uint32_t> outputs;
  std::vector<T> output_types;

  // "file:line:col" of a byte offset inside the source.
  std::string Where(uint32_t pos) const {
    uint32_t l = 1, c = 1;
    for (uint32_t k = 0; k < pos && k < source.size(); ++k) {
      if (source[k] == '\n') {
        ++l;
        c = 1;
      } else {
        ++c;
      }
    }
    uint32_t line_no = line ? line + l - 1 : l;
    uint32_t col_no = l == 1 && column ? column + c - 1 : c;
    return (file.empty() ? std::string("<kernel>") : file) + ":" + std::to_string(line_no) + ":" +
           std::to_string(col_no);
  }
};

}  // namespace detail
}  // namespace mlp::rt::ops
