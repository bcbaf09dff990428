// Drawings of a plan's DAG for `mlpc graph`: Graphviz dot, Mermaid, JSON.
#pragma once

#include <string>

#include "plan.pb.h"

namespace mlp {

std::string GraphDot(const plan::v1::Plan& plan);
std::string GraphMermaid(const plan::v1::Plan& plan);
std::string GraphJson(const plan::v1::Plan& plan);

}  // namespace mlp
