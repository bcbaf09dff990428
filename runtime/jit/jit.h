// The native tier for kernels: LLVM IR from the interpreter's typed nodes
// (runtime/ops/kernel_code.h), optimised for the host CPU with the new pass
// manager, and run through ORC LLJIT. Each kernel gets its own resource
// tracker, so destroying its NativeCode unloads it. Compiled objects are
// cached on disk, keyed by a hash of the IR, the CPU and its features.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "runtime/ops/kernel_interp.h"

namespace mlp::rt::jit {

bool EmitIR(const ops::CompiledKernel& k, bool optimized, std::string* ir, std::string* error);

struct JitOptions {
  std::string cache_dir;  // empty: no disk cache
  int opt_level = 2;      // 0..3
  // Loops over columns (map, filter, reduce) call glibc's vector math
  // (libmvec) for exp, log, sin, cos, pow and tanh: several times faster, and
  // within glibc's error bounds (a few ulp) instead of bit-identical to the
  // interpreter. Single calls (`call`: env steps, tune trials) stay exact.
  // Jit::Global() turns it on unless MLPC_JIT_VECTOR_MATH=0.
  bool vector_math = false;
};

struct JitStats {
  uint64_t compiles = 0;       // kernels compiled from IR to machine code
  uint64_t cache_hits = 0;     // objects loaded from the disk cache
  uint64_t cache_rejects = 0;  // cache files found but unusable (corrupt, truncated): rebuilt
};

class Jit : public ops::NativeBackend {
 public:
  // A JIT for the host CPU; null with `error` when LLVM cannot target it.
  static std::unique_ptr<Jit> Create(const JitOptions& options, std::string* error);
  // The process's JIT, created on first use, caching in DefaultCacheDir(),
  // with vector math unless $MLPC_JIT_VECTOR_MATH is 0.
  static Jit* Global();
  ~Jit() override;

  std::unique_ptr<ops::NativeCode> Compile(const ops::CompiledKernel& k, std::string* error) override;
  JitStats stats() const;
  const std::string& cpu() const;

 private:
  friend bool EmitIR(const ops::CompiledKernel& k, bool optimized, std::string* ir, std::string* error);
  Jit();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// $MLPC_JIT_CACHE, else $XDG_CACHE_HOME/mlpc/jit, else $HOME/.cache/mlpc/jit
// ("" when none is set: no disk cache).
std::string DefaultCacheDir();

// The LLVM IR of a kernel with its drivers, before or after optimisation.
bool EmitIR(const ops::CompiledKernel& k, bool optimized, std::string* ir, std::string* error);

// The IR of every kernel of a plan, each after a `; kernel NAME` line
// (`mlpc compile --emit llvm`; optimised for the host with `optimized`).
bool EmitPlanIR(const plan::v1::Plan& plan, bool optimized, std::string* ir, std::string* error);

// Makes Jit::Global() the native tier of every KernelProgram in this process.
void Install();

}  // namespace mlp::rt::jit
