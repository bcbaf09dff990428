// The last compiler phase: the checked pipeline -> the plan (mlp.plan.v1).
#pragma once

#include <string>

#include "compiler/sema/program.h"
#include "plan.pb.h"

namespace mlp {

plan::v1::Plan LowerPlan(const Program& program, const CheckedPipeline& pipeline);

// Protobuf JSON, field names as in plan.proto, indented.
std::string PlanToJson(const plan::v1::Plan& plan);

}  // namespace mlp
