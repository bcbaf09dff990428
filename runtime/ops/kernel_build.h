// Internal: the kernel compiler's entry point for env step functions, used by
// EnvProgram (env.cc). Not part of the public API.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "runtime/ops/kernel_interp.h"

namespace mlp::ast {
struct EnvItem;
}  // namespace mlp::ast

namespace mlp::rt::ops::detail {
struct KernelCode;

// A call's callee as the source names it; null with `why` when it is unknown.
using KernelResolver = std::function<const CompiledKernel*(const std::string& text, std::string* why)>;

// Compiles `step` (an EnvItem of kind Step) into `code`, whose source, file,
// line, column and kernel (the env's declared name) are already set. `params`
// are the state fields' types in order (named `fields`), then the action's.
bool CompileEnvStep(const ast::EnvItem& step, const std::vector<std::string>& fields,
                    const std::vector<ScalarType>& params, KernelCode& code, const KernelResolver& resolve,
                    std::string* error);

}  // namespace mlp::rt::ops::detail
