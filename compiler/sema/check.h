// The checking phase: names, types, operator schemas, params, kernels, envs,
// cycles, resources. Input: the loaded program; output: the checked pipeline
// (complete only when `diags` has no errors).
#pragma once

#include <memory>

#include "compiler/base/diagnostics.h"
#include "compiler/sema/program.h"

namespace mlp {

std::unique_ptr<CheckedPipeline> Check(const Program& program, const CheckOptions& options,
                                       Diagnostics& diags);

}  // namespace mlp
