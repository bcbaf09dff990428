// The last compiler phase: the checked pipeline -> the plan (mlp.plan.v1).
#pragma once

#include <string>

#include "compiler/sema/program.h"
#include "plan.pb.h"

namespace mlp {

plan::v1::Plan LowerPlan(const Program& program, const CheckedPipeline& pipeline);

// Lower-case hex SHA-256 of `data`: the plan's content hashes.
std::string Sha256Hex(const std::string& data);

// Protobuf JSON, field names as in plan.proto, indented.
std::string PlanToJson(const plan::v1::Plan& plan);

}  // namespace mlp
