// The kernel interpreter: the plan's kernels, parsed with the compiler's front
// end, type-checked again (the plan may come from anywhere), and evaluated by a
// tree walker. f32 arithmetic is done in float; integer arithmetic wraps on
// overflow; integer division or remainder by zero, and converting NaN or an
// out-of-range float to an integer, are errors that name the kernel's
// file:line:col. Every kernel counts its calls, for a later JIT tier.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "plan.pb.h"
#include "runtime/ops/table.h"

namespace mlp::rt::ops {

enum class ScalarType : uint8_t { Bool, I32, I64, F32, F64 };
std::string_view ScalarTypeName(ScalarType t);

// One kernel value. Floats live in `f` (an f32 is a float widened exactly),
// integers and bools in `i` (an i32 sign-extended, a bool 0 or 1).
struct Scalar {
  ScalarType type = ScalarType::F64;
  union {
    double f;
    int64_t i;
  };
  Scalar() : f(0) {}
  static Scalar F32(float v);
  static Scalar F64(double v);
  static Scalar I32(int32_t v);
  static Scalar I64(int64_t v);
  static Scalar Bool(bool v);
};

namespace detail {
struct KernelCode;
class Evaluator;
}  // namespace detail

class CompiledKernel {
 public:
  CompiledKernel();
  ~CompiledKernel();
  const std::string& name() const { return name_; }
  const std::vector<ScalarType>& params() const { return params_; }
  ScalarType result() const { return result_; }
  // Calls so far, nested calls from other kernels included.
  uint64_t calls() const { return calls_.load(std::memory_order_relaxed); }
  // Evaluates once. Arguments must match the parameter types exactly.
  bool Call(std::span<const Scalar> args, Scalar* out, std::string* error) const;

 private:
  friend class KernelProgram;
  friend class detail::Evaluator;
  friend bool MapColumns(const CompiledKernel&, std::span<const Column* const>, Column*, std::string*);
  std::string name_;
  std::vector<ScalarType> params_;
  ScalarType result_ = ScalarType::F64;
  mutable std::atomic<uint64_t> calls_{0};
  std::unique_ptr<detail::KernelCode> code_;
};

class KernelProgram {
 public:
  // Parses, resolves and checks every kernel of the plan; null with `error`
  // (naming the kernel and its location) when one is invalid.
  static std::unique_ptr<KernelProgram> Build(const plan::v1::Plan& plan, std::string* error);
  const CompiledKernel* Find(std::string_view name) const;
  size_t size() const { return kernels_.size(); }
  ~KernelProgram();

 private:
  KernelProgram() = default;
  std::vector<std::unique_ptr<CompiledKernel>> kernels_;
};

// Elementwise over whole columns: element k of the output is the kernel of
// element k of each argument. The arguments have equal element counts; a
// column's dtype converts to its parameter's type when both are numbers (u8
// pixels into an f32 kernel), bool only to bool. The output has the first
// argument's name, shape and rows, and the kernel's result type.
bool MapColumns(const CompiledKernel& k, std::span<const Column* const> args, Column* out, std::string* error);
// A bool kernel of one parameter over a column: mask[r] is true when the
// kernel holds for every element of row r.
bool FilterMask(const CompiledKernel& k, const Column& arg, std::vector<uint8_t>* mask, std::string* error);

DType ToDType(ScalarType t);

}  // namespace mlp::rt::ops
