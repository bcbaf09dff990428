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

class CompiledKernel;
class EnvProgram;
namespace detail {
struct KernelCode;
class Evaluator;
}  // namespace detail

// Which tier runs kernels. auto: interpret, and compile a kernel to native
// code in the background once it is hot; on: compile before first use; off:
// interpret only.
enum class JitMode : uint8_t { Auto, On, Off };
bool ParseJitMode(std::string_view s, JitMode* out);
std::string_view JitModeName(JitMode m);
// The process default: $MLPC_JIT (auto|on|off), else auto.
JitMode DefaultJitMode();

// A kernel's native entry points. Each returns 0 when every check passed, or a
// nonzero site id when one failed (integer division by zero, a NaN or
// out-of-range conversion); the caller then re-runs the failing element in the
// interpreter, which says what failed and where, so both tiers report the same
// error. Arrays hold values of the parameter's exact type (bool: one byte).
struct NativeFns {
  // out[e] = kernel(args[0][e], args[1][e], ...) for e in [0, n).
  uint32_t (*map)(const void* const* args, void* out, int64_t n) = nullptr;
  // One call on 8-byte slots (doubles for floats, int64 for integers and
  // bools); an env step writes one slot per output.
  uint32_t (*call)(const void* args, void* out) = nullptr;
  // bool kernels of one parameter: the elements of `in` that hold, in order,
  // into `out`; *kept of them.
  uint32_t (*filter)(const void* in, void* out, int64_t n, int64_t* kept) = nullptr;
  // number kernels of one parameter: *acc += kernel(in[e]) in element order
  // (in the result type; integers wrap).
  uint32_t (*reduce)(const void* in, int64_t n, void* acc) = nullptr;
};

// Compiled code of one kernel (and its callees); unloaded when destroyed.
class NativeCode {
 public:
  virtual ~NativeCode() = default;
  NativeFns fns;
};

// The native tier (runtime/jit installs one). Must be thread-safe.
class NativeBackend {
 public:
  virtual ~NativeBackend() = default;
  virtual std::unique_ptr<NativeCode> Compile(const CompiledKernel& k, std::string* error) = 0;
};
void SetNativeBackend(NativeBackend* backend);
NativeBackend* GetNativeBackend();

// Native entry points to generate (NativeFns). map and call are what the
// runtime's operators use; filter and reduce cost compile time, so they are
// generated only when asked for.
enum NativeDriver : uint8_t { kDriverMap = 1, kDriverCall = 2, kDriverFilter = 4, kDriverReduce = 8 };

struct KernelOptions {
  JitMode jit = DefaultJitMode();
  uint8_t drivers = kDriverMap | kDriverCall;
  // auto: interpreted evaluations (nested calls included) before a kernel is
  // compiled in the background.
  uint64_t hot_calls = 20000;
  // Tests: the call that starts a background compile waits for it, so the
  // swap happens at a known point.
  bool wait_for_compile = false;
};

class CompiledKernel {
 public:
  CompiledKernel();
  ~CompiledKernel();
  const std::string& name() const { return name_; }
  const std::vector<ScalarType>& params() const { return params_; }
  ScalarType result() const { return result_; }
  // Interpreted calls so far, nested calls from other kernels included.
  uint64_t calls() const { return calls_.load(std::memory_order_relaxed); }
  // Elements (or calls) run by native code so far.
  uint64_t native_calls() const { return native_calls_.load(std::memory_order_relaxed); }
  // Evaluates once. Arguments must match the parameter types exactly.
  bool Call(std::span<const Scalar> args, Scalar* out, std::string* error) const;
  // An env step (several results): `out` gets one value per output.
  bool CallMulti(std::span<const Scalar> args, std::vector<Scalar>* out, std::string* error) const;

  // The native code, once compiled (null before, and always with jit off).
  const NativeCode* native() const { return native_.load(std::memory_order_acquire); }
  // jit on: compiles now if not yet compiled (false with `error` when that
  // fails). auto: starts a background compile once the kernel is hot. off:
  // nothing. Called by the drivers between chunks of work.
  bool Tier(std::string* error) const;
  // Blocks until a background compile started by Tier() has finished.
  void WaitForNative() const;
  const detail::KernelCode& code() const { return *code_; }
  // Result types of an env step (empty for a kernel).
  const std::vector<ScalarType>& outputs() const { return outputs_; }
  const KernelOptions& options() const { return options_; }

 private:
  friend class KernelProgram;
  friend class EnvProgram;  // builds env step kernels (env.cc)
  friend class detail::Evaluator;
  friend bool MapColumns(const CompiledKernel&, std::span<const Column* const>, Column*, std::string*);
  friend bool FilterMask(const CompiledKernel&, const Column&, std::vector<uint8_t>*, std::string*);
  std::string name_;
  std::vector<ScalarType> params_;
  ScalarType result_ = ScalarType::F64;
  std::vector<ScalarType> outputs_;
  mutable std::atomic<uint64_t> calls_{0};
  mutable std::atomic<uint64_t> native_calls_{0};
  std::unique_ptr<detail::KernelCode> code_;
  KernelOptions options_;
  struct TierState;
  std::unique_ptr<TierState> tier_;
  mutable std::atomic<const NativeCode*> native_{nullptr};
};

class KernelProgram {
 public:
  // Parses, resolves and checks every kernel of the plan; null with `error`
  // (naming the kernel and its location) when one is invalid.
  static std::unique_ptr<KernelProgram> Build(const plan::v1::Plan& plan, std::string* error,
                                              const KernelOptions& options = {});
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
