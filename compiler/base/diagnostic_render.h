// Rendering diagnostics for people (clang-style text with the source line and
// a caret) and for machines (JSON, SARIF 2.1.0).
#pragma once

#include <string>

#include "compiler/base/diagnostics.h"

namespace mlp {

#include <vector>

// The diagnostics of one compilation and the sources they point into.
struct DiagSource {
  const SourceManager* sm;
  const Diagnostics* diags;
};

std::string RenderText(const SourceManager& sm, const Diagnostics& diags, bool color);
// One document for any number of compilations (`mlpc check a.mlp b.mlp`).
std::string RenderJson(const std::vector<DiagSource>& sources);
std::string RenderSarif(const std::vector<DiagSource>& sources, const std::string& tool_version);

}  // namespace mlp
