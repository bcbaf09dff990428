// The canonical formatter behind `mlpc fmt`: prints a parsed file back as .mlp
// text in the one layout every example obeys, keeping every comment in order.
#pragma once

#include <string>

#include "compiler/base/source.h"
#include "compiler/parse/ast.h"

namespace mlp {

// Formats `file`, which was parsed from `sm`, without changing its meaning:
// parsing the result gives the same AST (ranges aside) and the same comments,
// and formatting the result again gives the same text. Meant for files that
// parsed without errors; a partial AST formats, but may lose what failed to parse.
std::string Format(const SourceManager& sm, const ast::File& file);

}  // namespace mlp
