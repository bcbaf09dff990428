// Kernel nodes to LLVM IR. Internal to runtime/jit.
#pragma once

#include <memory>
#include <string>

#include "runtime/ops/kernel_interp.h"

namespace llvm {
class LLVMContext;
class Module;
}  // namespace llvm

namespace mlp::rt::jit {

// Entry points every lowered module defines (those that apply to the kernel):
// see ops::NativeFns for their contracts.
inline constexpr const char* kMapFn = "mlp_map";
inline constexpr const char* kCallFn = "mlp_call";
inline constexpr const char* kFilterFn = "mlp_filter";
inline constexpr const char* kReduceFn = "mlp_reduce";

struct LoweredEntries {
  bool map = false, call = false, filter = false, reduce = false;
};

// The module of `k`, its callees (internal functions) and its drivers, not
// yet optimised and without a target; null with `error` on a node the
// lowering does not know (a bug: the interpreter's builder rejects bad code).
std::unique_ptr<llvm::Module> LowerKernel(const ops::CompiledKernel& k, llvm::LLVMContext& ctx,
                                          LoweredEntries* entries, std::string* error);

}  // namespace mlp::rt::jit
