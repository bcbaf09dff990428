// Rendering diagnostics for people (clang-style text with the source line and
// a caret) and for machines (JSON, SARIF 2.1.0).
#pragma once

#include <string>

#include "compiler/base/diagnostics.h"

namespace mlp {

std::string RenderText(const SourceManager& sm, const Diagnostics& diags, bool color);
std::string RenderJson(const SourceManager& sm, const Diagnostics& diags);
std::string RenderSarif(const SourceManager& sm, const Diagnostics& diags, const std::string& tool_version);

}  // namespace mlp
